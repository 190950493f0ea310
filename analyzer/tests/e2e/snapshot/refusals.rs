//! What `memtrace snapshot` refuses, at once and with the reason: an untraced process,
//! one with snapshots off, one that took the signal over, one whose `memtrace run` is
//! gone, a plain LD_PRELOAD.

use super::*;

/// `memtrace snapshot` refuses, with a clear message, a process that is not traced or
/// whose snapshots are off, and sends it nothing.
#[test]
fn snapshot_refuses_untraced_processes() {
    let fail = |pid: u32| -> String {
        let out = output_with_timeout(memtrace().arg("snapshot").arg(pid.to_string()), TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut sleeper = clean_command("sleep").arg("30").spawn().unwrap();
    let e = fail(sleeper.id());
    assert!(e.contains("is not traced by memtrace"), "{e}");
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "sleep must not be signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let mut s = Server::start(&["--snapshot-signal", "none"]);
    s.requests(1);
    let e = fail(s.pid);
    assert!(e.contains("not started with snapshots on"), "{e}");
    s.requests(1);
    let (_, dir) = s.quit();
    assert!(!Path::new(&dir.path().join("x")).exists());
    assert!(
        !logs_in(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".snap")),
        "no snapshot was taken"
    );
    let e = fail(u32::MAX / 2);
    assert!(e.contains("no process"), "{e}");
}

/// A program that takes memtrace's snapshot signal over with a handler of its own
/// (sigaction) is not sent it: `memtrace snapshot` refuses at once, with the reason, and
/// the program goes on serving.
#[test]
fn snapshot_refuses_a_program_that_took_the_signal() {
    let mut s = Server::start(&["--snapshot-signal", "USR2"]);
    s.requests(1);
    s.say("take", "taken");
    let out = output_with_timeout(memtrace().arg("snapshot").arg(s.pid.to_string()), TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "process {} installed its own handler for signal {}, memtrace's snapshot signal: memtrace's handler is gone; not sending it",
            s.pid,
            libc::SIGUSR2
        )),
        "{err}"
    );
    s.requests(1);
    let (_, dir) = s.quit();
    assert!(
        !logs_in(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".snap")),
        "no snapshot was taken"
    );
}

/// A server that outlived its `memtrace run` (killed; the server was a shell's child, or
/// memtrace run's own): `memtrace snapshot` refuses at once, naming the reason, and
/// sends nothing; the bare signal makes a copy that finds no memtrace run and exits at
/// once instead of waiting to be read. The server goes on serving.
#[test]
fn snapshot_refuses_when_memtrace_run_is_gone() {
    for via_shell in [false, true] {
        let mut s = Server::launch(&["--snapshot-signal", "USR2"], &[], via_shell);
        s.requests(1);
        let run = s.run.id();
        s.run.kill().unwrap();
        let _ = s.run.wait();
        let t = Instant::now();
        let out = output_with_timeout(memtrace().arg("snapshot").arg(s.pid.to_string()), TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "`memtrace run` (pid {run}), which writes the snapshots of process {}, is gone: the process outlived it",
                s.pid
            )),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        s.requests(1);
        // The bare signal: a copy is made, finds its memtrace run gone, and exits.
        // SAFETY: kill(2) on the server's pid, which handles SIGUSR2 (memtrace's handler).
        assert_eq!(unsafe { libc::kill(s.pid as i32, libc::SIGUSR2) }, 0);
        // The server answers only after its handler ran, and the handler makes the copy
        // before it returns: the copy exists (or has exited) once this request is
        // answered. It must then be gone "at once": well before its 10 s idle
        // lifetime, so the wait is bounded by 5 s (and ends as soon as it is gone).
        s.requests(1);
        assert!(
            within(Duration::from_secs(5), || mapping_the_log(
                s.dir.path(),
                s.pid
            )
            .is_empty()),
            "via_shell {via_shell}: a frozen copy was left: {:?}",
            mapping_the_log(s.dir.path(), s.pid)
        );
        assert!(
            !logs_in(s.dir.path())
                .iter()
                .any(|p| p.to_string_lossy().contains(".snap")),
            "no snapshot was taken"
        );
        quit_orphan(s);
    }
}

/// Under a plain LD_PRELOAD (no memtrace run) that still names a snapshot signal,
/// `memtrace snapshot` refuses at once with the reason, and sends nothing.
#[test]
fn snapshot_refuses_a_plain_ld_preload() {
    let dir = tempfile::tempdir().unwrap();
    let child = traced_command("server", dir.path(), "%p.mtr")
        .env("MEMTRACE_SNAPSHOT_SIGNAL", libc::SIGUSR2.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = Server::attach(child, dir);
    s.requests(1);
    let out = output_with_timeout(memtrace().arg("snapshot").arg(s.pid.to_string()), TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "process {} was not started by `memtrace run` (no MEMTRACE_RUN_PID: a plain LD_PRELOAD?)",
            s.pid
        )),
        "{err}"
    );
    s.requests(1);
    let (_, dir) = s.quit();
    assert!(
        !logs_in(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".snap")),
        "no snapshot was taken"
    );
}
