//! A program's own `__lsan_default_suppressions()` is honored by `memtrace
//! check`, as LeakSanitizer honors it, for that program only, and listed.
//! `lsan_defaults.c` states the figures; LSan itself (gcc -fsanitize=leak)
//! is the oracle.

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds lsan_defaults.c into `dir` with `flags`.
fn build(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new(require_tool("gcc", "gcc"))
        .args(["-O1", "-g", "-Wall"])
        .args(flags)
        .arg(root().join("tests/fixtures/lsan_defaults.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "gcc {flags:?} failed");
    out
}

/// (matched blocks, matched bytes) per suppression that matched.
fn used(json: &Value) -> BTreeMap<String, (u64, u64)> {
    json["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["matched_stacks"].as_u64().unwrap() > 0)
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                (
                    s["matched_blocks"].as_u64().unwrap(),
                    s["matched_bytes"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// `memtrace check --json` with `args`: (exit status, stderr, JSON).
fn check(dir: &Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, String, Value) {
    let json = dir.join("check.json");
    let mut cmd = memtrace();
    cmd.current_dir(dir)
        .arg("check")
        .arg("--json")
        .arg(&json)
        .args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let v = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        v,
    )
}

const SUPPRESSED: [(&str, (u64, u64)); 2] = [("kept_quiet", (1, 64)), ("quiet_helper", (2, 16))];

/// memtrace check: 32 bytes in 1 block count, the program's two entries
/// suppress the rest, and the summary says where they came from.
#[test]
fn program_suppressions_are_honored_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "lsd", &[]);
    let logs = dir.path().join("lsd.%p.mtr");
    let (code, err, v) = check(
        dir.path(),
        &[
            "-o".as_ref(),
            logs.as_os_str(),
            "--".as_ref(),
            exe.as_os_str(),
        ],
    );
    assert_eq!(code, Some(23), "{err}");
    let p = &v["processes"][0];
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(32), Some(1)),
        "{err}"
    );
    let expected: BTreeMap<String, (u64, u64)> = SUPPRESSED
        .iter()
        .map(|(n, f)| (n.to_string(), *f))
        .collect();
    assert_eq!(used(&v), expected, "{err}");
    let from = format!(
        "{}: 2 suppressions from its __lsan_default_suppressions()",
        exe.display()
    );
    assert!(err.contains(&from), "{err}");
    for (name, _) in SUPPRESSED {
        let s = v["suppressions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        let file = format!("{}: __lsan_default_suppressions()", exe.display());
        assert_eq!(
            (s["file"].as_str(), s["format"].as_str()),
            (Some(file.as_str()), Some("lsan"))
        );
    }
}

/// LeakSanitizer on the same source: the same leaked total and the same
/// suppressions used (count and bytes per template).
#[test]
fn program_suppressions_match_lsan() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "lsd_lsan", &["-fsanitize=leak"]);
    let out = Command::new(&exe)
        .env("LSAN_OPTIONS", "print_suppressions=1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(23));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SUMMARY: LeakSanitizer: 32 byte(s) leaked in 1 allocation(s)."),
        "{err}"
    );
    let table: BTreeMap<String, (u64, u64)> = err
        .lines()
        .skip_while(|l| !l.contains("count      bytes template"))
        .skip(1)
        .take_while(|l| !l.starts_with("---"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (
                w[2].to_owned(),
                (w[0].parse().unwrap(), w[1].parse().unwrap()),
            )
        })
        .collect();
    let expected: BTreeMap<String, (u64, u64)> = SUPPRESSED
        .iter()
        .map(|(n, f)| (n.to_string(), *f))
        .collect();
    assert_eq!(table, expected, "LSan's suppressions used:\n{err}");
}

/// Judged together, the program's entries apply to its own process only: the
/// same code built without the hook counts all of its 112 bytes in 4 blocks.
#[test]
fn program_suppressions_apply_to_their_program_only() {
    let dir = tempfile::tempdir().unwrap();
    let with = build(dir.path(), "with_hook", &[]);
    let without = build(
        dir.path(),
        "without_hook",
        &["-D__lsan_default_suppressions=no_hook"],
    );
    let mut logs = Vec::new();
    for exe in [&with, &without] {
        let mut cmd = clean_command(exe);
        cmd.env("LD_PRELOAD", preload_lib()).env(
            "MEMTRACE_OUTPUT",
            dir.path().join(format!(
                "{}.%p.mtr",
                exe.file_name().unwrap().to_str().unwrap()
            )),
        );
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(out.status.success());
    }
    for l in logs_in(dir.path()) {
        logs.push(l.into_os_string());
    }
    assert_eq!(logs.len(), 2, "{logs:?}");
    let args: Vec<&std::ffi::OsStr> = logs.iter().map(|l| l.as_os_str()).collect();
    let (code, err, v) = check(dir.path(), &args);
    assert_eq!(code, Some(23), "{err}");
    let by_exe: BTreeMap<String, (u64, u64)> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let exe = p["exe"].as_str().unwrap();
            let name = exe.rsplit('/').next().unwrap().to_owned();
            (
                name,
                (
                    p["counted_bytes"].as_u64().unwrap(),
                    p["counted_blocks"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (u64, u64)> = [
        ("with_hook".to_owned(), (32, 1)),
        ("without_hook".to_owned(), (112, 4)),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_exe, expected, "{err}");
}
