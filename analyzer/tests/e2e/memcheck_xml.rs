//! `memtrace check --xml FILE`: memcheck's XML (protocol 4), against memcheck's
//! own XML of the same program and suppressions, and read by a real consumer
//! of memcheck's XML, ValgrindCI's `valgrind-ci` (PyPI; `scripts/deps.sh`
//! installs it into `target/pytools`).
//!
//! `reach.c` (its header states the kinds) with `tests/suppressions/reach.supp`
//! and every kind counted: errors for plain_lost's 48 bytes in 1 block
//! (definitely lost) and lost_list's 96 bytes in 3 blocks (indirectly lost);
//! suppressed: reach-lost_list-definite once, reach-kept_by_interior once,
//! reach-still-reachable twice (kept_by_global's and kept_child's records).

use crate::util::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The text of each `<tag>...</tag>` inside `s`, in order.
fn tags<'a>(s: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let j = after.find(&close).expect("closed tag");
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// (kind, leaked bytes, leaked blocks, the first function of the program's
/// own source file) of each leak error, sorted. The bytes are the record's
/// own blocks': where memcheck adds the indirectly lost bytes a definitely
/// lost block holds (`128 (32 direct, 96 indirect) bytes ...`), its direct
/// part, which memtrace's record states (see `render/verdict/memcheck.rs`).
fn leak_errors(xml: &str) -> Vec<(String, u64, u64, String)> {
    let mut v: Vec<_> = tags(xml, "error")
        .into_iter()
        .map(|e| {
            let kind = tags(e, "kind")[0].to_owned();
            let text = tags(e, "text")[0];
            let bytes = match text
                .split_once(" (")
                .and_then(|(_, r)| r.split_once(" direct"))
            {
                Some((direct, _)) => direct.parse().unwrap(),
                None => tags(e, "leakedbytes")[0].parse().unwrap(),
            };
            let blocks = tags(e, "leakedblocks")[0].parse().unwrap();
            let func = tags(e, "frame")
                .into_iter()
                .find(|f| tags(f, "file").first() == Some(&"reach.c"))
                .map(|f| tags(f, "fn")[0].to_owned())
                .unwrap_or_default();
            (kind, bytes, blocks, func)
        })
        .collect();
    v.sort();
    v
}

/// count per suppression name of `<suppcounts>`, for the names of reach.supp.
fn supp_counts(xml: &str) -> BTreeMap<String, u64> {
    let sc = tags(xml, "suppcounts");
    tags(sc.first().copied().unwrap_or(""), "pair")
        .into_iter()
        .map(|p| {
            (
                tags(p, "name")[0].to_owned(),
                tags(p, "count")[0].parse().unwrap(),
            )
        })
        .filter(|(n, _)| n.starts_with("reach-"))
        .collect()
}

fn supp() -> PathBuf {
    root().join("tests/suppressions/reach.supp")
}

/// `memtrace check --xml` on reach with `extra` options; (exit status, XML).
fn memtrace_xml(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let xml = dir.join("memtrace.xml");
    let mut cmd = memtrace();
    cmd.current_dir(dir)
        .arg("check")
        .arg("-o")
        .arg(dir.join("reach.%p.mtr"))
        .arg("--xml")
        .arg(&xml)
        .args(extra)
        .arg("--")
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let text = std::fs::read_to_string(&xml)
        .unwrap_or_else(|e| panic!("no XML ({e}):\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), text)
}

/// memcheck's XML of reach with `extra` options.
fn memcheck_xml(dir: &Path, extra: &[&str]) -> String {
    let xml = dir.join("memcheck.xml");
    let mut cmd = clean_command(require_valgrind());
    cmd.current_dir(dir)
        .arg("--xml=yes")
        .arg(format!("--xml-file={}", xml.display()))
        .arg("--leak-check=full")
        .args(extra)
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, std::time::Duration::from_secs(600));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&xml).unwrap()
}

/// `valgrind-ci FILE --summary`: the errors by source line and kind.
fn valgrind_ci_summary(xml: &Path) -> String {
    let local = root().join("target/pytools/bin/valgrind-ci");
    let tool = if local.is_file() {
        local
    } else {
        require_tool(
            "valgrind-ci",
            "python3 -m pip install valgrindci==0.3.0 (scripts/deps.sh)",
        )
    };
    let out = Command::new(tool)
        .arg(xml)
        .arg("--summary")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// With reach.supp and every kind counted, memtrace's XML has memcheck's
/// leak errors and suppression counts, and ValgrindCI reads the same
/// summary from both.
#[test]
fn memcheck_xml_matches_memcheck_with_suppressions() {
    let dir = tempfile::tempdir().unwrap();
    let supp = supp();
    let supp_arg = supp.to_str().unwrap();
    let (code, ours) = memtrace_xml(dir.path(), &["--leak-kinds", "all", "-s", supp_arg]);
    assert_eq!(code, Some(23), "the leaks that count fail the gate");
    let theirs = memcheck_xml(
        dir.path(),
        &[
            "--show-leak-kinds=all",
            "--errors-for-leak-kinds=all",
            &format!("--suppressions={supp_arg}"),
        ],
    );
    let expected = vec![
        (
            "Leak_DefinitelyLost".to_owned(),
            48,
            1,
            "plain_lost".to_owned(),
        ),
        (
            "Leak_IndirectlyLost".to_owned(),
            96,
            3,
            "lost_list".to_owned(),
        ),
    ];
    assert_eq!(
        leak_errors(&theirs),
        expected,
        "memcheck, as reach.c's header says"
    );
    assert_eq!(leak_errors(&ours), expected, "memtrace's XML:\n{ours}");
    let supps: BTreeMap<String, u64> = [
        ("reach-kept_by_interior", 1),
        ("reach-lost_list-definite", 1),
        ("reach-still-reachable", 2),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_owned(), c))
    .collect();
    assert_eq!(supp_counts(&theirs), supps, "memcheck's suppcounts");
    assert_eq!(supp_counts(&ours), supps, "memtrace's suppcounts:\n{ours}");
    assert_eq!(tags(&ours, "protocolversion"), ["4"]);

    let ours_summary = valgrind_ci_summary(&dir.path().join("memtrace.xml"));
    let theirs_summary = valgrind_ci_summary(&dir.path().join("memcheck.xml"));
    assert!(ours_summary.contains("2 errors"), "{ours_summary}");
    assert_eq!(
        ours_summary, theirs_summary,
        "ValgrindCI's summary of memtrace's XML vs memcheck's"
    );
}

/// By default the gate counts the definitely and indirectly lost blocks:
/// memtrace's XML lists those, as memcheck's does with
/// `--show-leak-kinds=definite,indirect`.
#[test]
fn memcheck_xml_default_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let (code, ours) = memtrace_xml(dir.path(), &[]);
    assert_eq!(code, Some(23));
    let theirs = memcheck_xml(
        dir.path(),
        &[
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
        ],
    );
    let expected = vec![
        (
            "Leak_DefinitelyLost".to_owned(),
            32,
            1,
            "lost_list".to_owned(),
        ),
        (
            "Leak_DefinitelyLost".to_owned(),
            48,
            1,
            "plain_lost".to_owned(),
        ),
        (
            "Leak_IndirectlyLost".to_owned(),
            96,
            3,
            "lost_list".to_owned(),
        ),
    ];
    assert_eq!(leak_errors(&theirs), expected);
    assert_eq!(leak_errors(&ours), expected, "{ours}");
}
