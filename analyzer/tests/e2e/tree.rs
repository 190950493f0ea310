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
