//! Pass and fail, the exit statuses, and memtrace's own failures.

use std::path::Path;

use super::*;

/// A clean program passes (0) and its logs are removed; a leak fails with 23, names
/// the stack on stderr, and keeps the logs; `--error-exitcode` changes the status. By
/// default only the definitely (and indirectly) lost blocks count: of leak_item's two
/// blocks, the first (the second stays in the global `sink`, still reachable).
#[test]
fn pass_fail_and_error_exitcode() {
    let (_d, c) = check_gate(&[], &[]);
    c.assert_code(0);
    assert!(
        c.stderr().contains("memtrace check: passed"),
        "{}",
        c.stderr()
    );
    assert_eq!(c.json()["passed"], true);
    let log = c.judged()["log"].as_str().unwrap().to_owned();
    assert!(
        !Path::new(&log).exists(),
        "the temporary logs are removed on success"
    );

    let (_d, c) = check_gate(&[], &["items", "2"]);
    c.assert_code(FAILED);
    let err = c.stderr();
    assert!(err.contains("FAILED") && err.contains("leak_item"), "{err}");
    assert!(
        err.contains(
            "counting definitely and indirectly lost blocks (--leak-kinds definite,indirect)"
        ),
        "{err}"
    );
    assert!(
        err.contains("100 bytes in 1 block\n          (100 bytes in 1 block definitely lost)\n"),
        "{err}"
    );
    assert!(
        err.contains("100 bytes in 1 block still reachable not counted"),
        "{err}"
    );
    let p = c.judged();
    assert_eq!(leaks_at(p, "leak_item"), vec![(100, 1, "counted".into())]);
    assert_eq!(p["counted_bytes"], 100);
    assert_eq!(p["not_counted"]["reachable"]["bytes"], 100);
    assert_eq!(rules_failed(p), vec!["max-leaked-bytes"]);
    let log = p["log"].as_str().unwrap();
    assert!(Path::new(log).exists(), "the logs are kept on failure");
    let kept = Path::new(log).parent().unwrap().display().to_string();
    assert!(
        err.contains(&format!(
            "memtrace check: 1 log kept in {kept}/ — memtrace report {kept}/ (--pid "
        )),
        "one line names where the logs are kept: {err}"
    );
    report(Path::new(log)).assert_leak("heap", "leak_item", 200, 2);
    std::fs::remove_dir_all(Path::new(log).parent().unwrap()).unwrap();

    let (_d, c) = check_gate(&["--error-exitcode", "7"], &["items", "2"]);
    c.assert_code(7);
    assert_eq!(c.json()["exit_status"], 7);
    let (_d, c) = check_gate(&["--error-exitcode", "0"], &["items", "2"]);
    c.assert_code(0);
    assert_eq!(
        c.json()["passed"],
        false,
        "report only: the verdict still says it"
    );
}

/// The command's own failure is never masked: its status wins over the gate's.
#[test]
fn command_failure_is_not_masked() {
    let (_d, c) = check_gate(&[], &["exit", "3"]);
    c.assert_code(3);
    assert!(c.stderr().contains("the command failed"), "{}", c.stderr());
    assert_eq!(c.json()["command"]["exit_status"], 3);
    let (_d, c) = check_gate(&[], &["items", "2", "exit", "4"]);
    c.assert_code(4);
    assert_eq!(c.json()["passed"], false);
    // Killed by a signal: 128 + the signal, and the process is not judged.
    let dir = tempfile::tempdir().unwrap();
    let c = check_in(dir.path(), &["--", "sh", "-c", "kill -9 $$"]);
    c.assert_code(128 + 9);
    assert_eq!(c.json()["command"]["signal"], 9);
    let top = &c.processes()[0];
    assert_eq!(top["judged"], false);
    assert!(
        top["skipped"].as_str().unwrap().contains("signal 9"),
        "{top:#}"
    );
}

/// memtrace's own failures exit 2 with one clear line, and nothing is judged.
#[test]
fn memtrace_failures_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let junk = d.join("junk.mtr");
    std::fs::write(&junk, b"not a log").unwrap();
    std::fs::write(d.join("bad.supp"), "this is no suppression\n").unwrap();
    let gate = fixture("gate");
    let gate = gate.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["missing.mtr"], "missing.mtr"),
        (vec!["junk.mtr"], "junk.mtr"),
        (vec![], "nothing to check"),
        (vec!["junk.mtr", "--", gate], "not both"),
        (vec!["-s", "bad.supp", "--", gate], "bad.supp:1"),
        (vec!["-s", "nope.supp", "--", gate], "nope.supp"),
        (vec!["--baseline", "junk.mtr", "--", gate], "junk.mtr"),
        (vec!["--max-leaked-bytes", "lots", "--", gate], "lots"),
        (vec!["--tolerance", "x%", "--", gate], "x%"),
        (vec!["--gen-suppressions=xml", "--", gate], "xml"),
        (vec!["--", "/nonexistent/program"], "/nonexistent/program"),
    ];
    for (args, needle) in cases {
        let c = check_in(d, &args);
        assert_eq!(c.code(), Some(2), "{args:?}: {}", c.stderr());
        assert!(c.stderr().contains(needle), "{args:?}: {}", c.stderr());
    }
    // A static program writes no log: the gate cannot vouch for it.
    let c = check_in(d, &["--", "/bin/true"]);
    if c.code() == Some(2) {
        assert!(c.stderr().contains("nothing was traced"), "{}", c.stderr());
    } else {
        c.assert_code(0); // /bin/true is dynamic on this machine
    }
}

/// A big tree's summary stays short: more than 10 processes that passed are
/// one line, more than 3 images replaced by exec another; each is in the
/// JSON still. A shell loop of 12 `/bin/true`: bash and its 12 children
/// (each forked, then exec'd) are 25 logs: 13 that passed, 12 exec'd images.
#[test]
fn summary_of_a_big_tree_groups_its_quiet_processes() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do /bin/true; done";
    let c = check_in(dir.path(), &["--", "/bin/bash", "-c", script]);
    c.assert_code(0);
    let err = c.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("  ok    13 processes leaked nothing that counts; peak heap up to "),
        "{err}"
    );
    assert!(
        lines[1]
            .starts_with("  skip  12 images replaced by exec (their heap went with them): pids "),
        "{err}"
    );
    let procs = c.processes();
    assert_eq!(procs.len(), 25, "every process is in the JSON");
    assert_eq!(procs.iter().filter(|p| p["judged"] == true).count(), 13);
}

// `--keep-logs` keeps a passing check's logs too, packed, in a run directory
// memtrace.<exe>.<pid>/ of the current directory (as `memtrace run` makes it, 0700),
// named in one line with the command that reads it; nothing goes to $TMPDIR.
#[test]
fn keep_logs_keeps_a_passing_checks_logs_in_a_run_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let gate = fixture("gate");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .env("TMPDIR", scratch.path())
        .args(["check", "--keep-logs", "--"])
        .arg(&gate);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let dirs = run_dirs_in(dir.path());
    assert_eq!(dirs.len(), 1, "{dirs:?}\n{err}");
    let name = dirs[0].file_name().unwrap().to_string_lossy().into_owned();
    let mode = std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let logs = logs_in(&dirs[0]);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let pid = report(&logs[0]).process("pid").as_u64().unwrap();
    assert_eq!(name, format!("memtrace.gate.{pid}"));
    assert_eq!(
        &std::fs::read(&logs[0]).unwrap()[..8],
        b"MEMTRPAK",
        "packed"
    );
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("memtrace check: 1 log kept in {name}/ — memtrace report {name}/"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}
