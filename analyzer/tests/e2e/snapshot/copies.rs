//! The frozen copies a snapshot is taken from: they die with their `memtrace run`, and
//! exit by themselves when nobody reads them.

use super::*;

/// A frozen copy dies with its `memtrace run`: the copy (left unread by the test hook
/// MEMTRACE_TEST_IGNORE_COPIES, so that `memtrace run` is killed while it holds one) is
/// gone within 3 s of `memtrace run`'s SIGKILL, whether it was made with CLONE_PARENT
/// (the server is memtrace run's child) or through an intermediate child (the server
/// is a shell's child). The server goes on serving.
#[test]
fn a_frozen_copy_dies_with_memtrace_run() {
    for via_shell in [false, true] {
        let mut s = Server::launch_env(
            &["--snapshot-signal", "USR2"],
            &[],
            via_shell,
            &[("MEMTRACE_TEST_IGNORE_COPIES", "1")],
        );
        assert_eq!(s.ppid() == s.run.id(), !via_shell);
        s.requests(2);
        let copy = bare_signal_copy(&s);
        // Held, unread, by its living memtrace run: still there a second later. This
        // sleep is the behaviour under test (the copy must not leave by itself while
        // its memtrace run lives; its idle lifetime is 10 s), not a wait for an event.
        std::thread::sleep(Duration::from_secs(1));
        assert!(running(copy), "the copy must wait to be read");
        s.run.kill().unwrap();
        let _ = s.run.wait();
        assert!(
            within(Duration::from_secs(3), || !running(copy)
                && mapping_the_log(s.dir.path(), s.pid).is_empty()),
            "via_shell {via_shell}: frozen copy {copy} outlived memtrace run: {:?}",
            mapping_the_log(s.dir.path(), s.pid)
        );
        quit_orphan(s);
    }
}

/// A frozen copy nobody reads (MEMTRACE_TEST_IGNORE_COPIES: memtrace run finds it but
/// leaves it alone, as a wedged one would) exits by itself after its idle lifetime
/// (10 s), not 600 s, while memtrace run lives on; `memtrace snapshot` meanwhile gives
/// up after its --timeout with the reason.
#[test]
fn an_unread_frozen_copy_exits_by_itself() {
    let mut s = Server::launch_env(
        &["--snapshot-signal", "USR2"],
        &[],
        false,
        &[("MEMTRACE_TEST_IGNORE_COPIES", "1")],
    );
    s.requests(2);
    let started = Instant::now();
    let out = output_with_timeout(
        memtrace()
            .args(["snapshot", "--timeout", "2"])
            .arg(s.pid.to_string()),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "no snapshot after 2 s: `memtrace run` (pid {}) still runs but wrote none",
            s.run.id()
        )),
        "{err}"
    );
    let run = s.run.id();
    let copies: Vec<u32> = mapping_the_log(s.dir.path(), s.pid)
        .into_iter()
        .filter(|(_, ppid, comm)| *ppid == run && comm == "memtrace-snap")
        .map(|c| c.0)
        .collect();
    assert_eq!(copies.len(), 1, "one unread copy");
    let copy = copies[0];
    assert!(
        within(Duration::from_secs(20), || !running(copy)),
        "the unread copy {copy} still runs {:?} after the snapshot was asked",
        started.elapsed()
    );
    let lived = started.elapsed();
    assert!(lived >= Duration::from_secs(5), "gone too soon: {lived:?}");
    assert!(
        s.run.try_wait().unwrap().is_none(),
        "memtrace run still runs: the copy left by itself"
    );
    s.requests(1);
    let (stderr, _dir) = s.quit();
    assert!(!stderr.contains("snapshot written"), "{stderr}");
}
