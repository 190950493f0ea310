//! Abrupt ends: _exit, abort() and SIGKILL while threads allocate.

use super::*;

// _exit(7) while 4 threads are inside malloc/free: ended "_exit", status 7, the main
// thread's leak exact.
#[test]
fn underscore_exit_while_threads_allocate() {
    let t = run("torture_exit", &["_exit"], 60);
    t.assert_exit(7);
    let r = t.report();
    r.assert_ended("_exit");
    assert_eq!(r.process("exit_status"), 7, "process = {}", r.v["process"]);
    r.assert_leak("heap", "exit_leak_site", 5000, 5);
    assert_eq!(r.summary("events_lost"), 0);
}

/// `memtrace run -- torture_exit ARGS` in a fresh directory, logs `log.%p.mtr`.
fn run_via_memtrace(args: &[&OsStr]) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .env("MEMTRACE_OUTPUT", dir.path().join("log.%p.mtr"))
        .arg("run")
        .arg("--")
        .arg(fixture("torture_exit"))
        .args(args);
    (dir, cmd)
}

// abort() while 4 threads allocate, through `memtrace run`: the run fails, the report
// says ended "abnormal" by SIGABRT, and the leak from before the abort is there.
#[test]
fn abort_while_threads_allocate_via_run() {
    let (dir, mut cmd) = run_via_memtrace(&[OsStr::new("abort")]);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(
        !out.status.success(),
        "memtrace run fails like its target\n{}",
        describe(&out)
    );
    let code = out.status.code().or(out.status.signal().map(|s| 128 + s));
    assert_eq!(code, Some(128 + 6), "{}", describe(&out));
    let r = only_report(dir.path());
    r.assert_ended("abnormal");
    assert!(r.summary_bool("ended_abnormally"));
    assert_eq!(r.process("signal"), 6, "process = {}", r.v["process"]);
    r.assert_leak("heap", "exit_leak_site", 5000, 5);
    assert_eq!(r.summary("events_lost"), 0);
}

// SIGKILL while 4 threads allocate, through `memtrace run`: ended "abnormal", signal 9,
// the leak from before is there, the log (possibly with a torn record) is readable.
#[test]
fn sigkill_while_threads_allocate_via_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .env("MEMTRACE_OUTPUT", logs.join("log.%p.mtr"))
        .arg("run")
        .arg("--")
        .arg(fixture("torture_exit"))
        .arg("kill")
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn memtrace run");
    wait_for_file(&marker, &mut child);
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the target's pid, which memtrace run has not reaped yet (it
    // waits for it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    let st = wait_timeout(&mut child, Duration::from_secs(60)).expect("memtrace run ends");
    assert!(!st.success(), "memtrace run fails: {st:?}");
    let r = only_report(&logs);
    assert_eq!(pid_of(&r), pid as u64);
    r.assert_ended("abnormal");
    assert_eq!(r.process("signal"), 9, "process = {}", r.v["process"]);
    r.assert_leak("heap", "exit_leak_site", 5000, 5);
}
