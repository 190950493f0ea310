//! `memtrace report DIR`: the tree of a run's processes at once, with the
//! totals, in text and JSON; `--pid` for one process's full report.
//! `tree.c` states the figures (its child execs `reach.c`).

use crate::util::*;
use std::path::Path;

/// `memtrace run` of tree.c into `dir`: exits 3, as tree.c does.
fn run_tree(dir: &Path) {
    let mut cmd = memtrace();
    cmd.arg("run")
        .arg("-o")
        .arg(dir.join("%e.%p.mtr"))
        .arg("--")
        .arg(fixture("tree"))
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (program, depth, ended, exit status, leaked bytes, leaked blocks).
type Row<'a> = (
    String,
    usize,
    &'a str,
    Option<i64>,
    Option<u64>,
    Option<u64>,
);

fn report_of(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut cmd = memtrace();
    cmd.arg("report").args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn report_of_a_run_directory_is_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    run_tree(dir.path());
    let (code, json) = report_of(&["--format".as_ref(), "json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows: Vec<Row> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["exe"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                p["depth"].as_u64().unwrap() as usize,
                p["ended"].as_str().unwrap(),
                p["exit_status"].as_i64(),
                p["leaked_bytes"].as_u64(),
                p["leaked_blocks"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("tree".to_owned(), 0, "exit", Some(3), Some(0), Some(0)),
            ("tree".to_owned(), 1, "exec", None, None, None),
            ("reach".to_owned(), 2, "exit", Some(0), Some(176), Some(5)),
        ],
        "{json}"
    );
    let t = &v["totals"];
    assert_eq!(
        (
            t["logs"].as_u64(),
            t["processes"].as_u64(),
            t["leaked_bytes"].as_u64(),
            t["leaked_blocks"].as_u64()
        ),
        (Some(3), Some(2), Some(176), Some(5)),
        "{json}"
    );
    assert_eq!(
        (t["exited"].as_u64(), t["classified"].as_u64()),
        (Some(2), Some(2))
    );

    let (_, text) = report_of(&[dir.path().as_os_str()]);
    assert!(
        text.starts_with("memtrace report of 3 logs (2 processes;"),
        "{text}"
    );
    let reach = text
        .lines()
        .find(|l| l.trim_start().starts_with("reach "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        reach.contains("exit 0") && reach.contains("176 B (5)"),
        "{reach}"
    );
    assert!(
        text.contains("total: 176 B in 5 blocks leaked by 2 logs that exited (2 classified)"),
        "{text}"
    );

    // One process's details: the reach image's pid is the fork child's.
    let pid = v["processes"][2]["pid"].as_u64().unwrap().to_string();
    let (code, one) = report_of(&["--pid".as_ref(), pid.as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(0));
    assert_eq!(
        one.matches("memtrace report for ").count(),
        2,
        "the fork image and reach's:\n{one}"
    );
    assert!(
        one.contains("definitely lost: 80 bytes in 2 blocks"),
        "{one}"
    );
}

/// `memtrace run -- tree REACH` without `-o`, in `cwd`: its stderr.
fn run_tree_in(cwd: &Path) -> String {
    let mut cmd = memtrace();
    cmd.current_dir(cwd)
        .arg("run")
        .arg("--")
        .arg(fixture("tree"))
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    err
}

// Without `-o`, a run's logs all go into one new directory of the current one,
// memtrace.<exe>.<pid>/ (the command's pid), mode 0700, beside nothing else; a second
// run makes its own; the one line memtrace prints names it and how to read it.
#[test]
fn a_tree_run_writes_every_log_into_one_new_directory() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let err = run_tree_in(cwd.path());
    let dirs = run_dirs_in(cwd.path());
    assert_eq!(dirs.len(), 1, "{dirs:?}\n{err}");
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        1,
        "nothing but the run directory in the working directory"
    );
    let dir = &dirs[0];
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{name}");
    let logs = logs_in(dir);
    assert_eq!(logs.len(), 3, "{logs:?}");
    let top = logs
        .iter()
        .map(|l| report(l))
        .find(|r| r.process("exit_status") == 3)
        .expect("the top process's log");
    let pid = top.process("pid").as_u64().unwrap();
    assert_eq!(name, format!("memtrace.tree.{pid}"));
    for l in &logs {
        assert_eq!(l.parent(), Some(dir.as_path()));
        let mode = std::fs::metadata(l).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", l.display());
    }
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("memtrace:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!("memtrace: 3 logs of 2 processes in {name}/ ("))
            && lines[0].ends_with(&format!(") — memtrace report {name}/")),
        "{err}"
    );

    // The line's command reads the directory: the tree's three rows.
    let mut cmd = memtrace();
    cmd.current_dir(cwd.path())
        .args(["report", &format!("{name}/")]);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("memtrace report of 3 logs (2 processes;"),
        "{text}"
    );

    run_tree_in(cwd.path());
    assert_eq!(
        run_dirs_in(cwd.path()).len(),
        2,
        "a second run, a second directory"
    );
}

// A single process's run directory reads as its log: `memtrace report DIR` prints
// exactly what `memtrace report LOG` prints (the short text, the full one, JSON).
#[test]
fn report_of_a_one_process_run_directory_is_its_log_report() {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(cwd.path())
        .args(["run", "--"])
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let dirs = run_dirs_in(cwd.path());
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let logs = logs_in(&dirs[0]);
    assert_eq!(logs.len(), 1, "{logs:?}");
    for opts in [&[][..], &["--full"][..], &["--format", "json"][..]] {
        let of = |p: &Path| {
            let mut a: Vec<&std::ffi::OsStr> = opts.iter().map(std::ffi::OsStr::new).collect();
            a.push(p.as_os_str());
            report_of(&a)
        };
        let (code_d, text_d) = of(&dirs[0]);
        let (code_l, text_l) = of(&logs[0]);
        assert_eq!(code_d, Some(0), "{opts:?}");
        assert_eq!(code_l, Some(0), "{opts:?}");
        if opts.contains(&"json") {
            let v: serde_json::Value = serde_json::from_str(&text_l).unwrap();
            let d = &v["summary"]["leak_kinds"]["definite"];
            assert_eq!(
                (d["bytes"].as_u64(), d["count"].as_u64()),
                (Some(80), Some(2))
            );
        } else {
            assert!(
                text_l.contains("80 bytes in 2 blocks"),
                "{opts:?}: {text_l}"
            );
        }
        assert_eq!(text_d, text_l, "{opts:?}");
    }
}
