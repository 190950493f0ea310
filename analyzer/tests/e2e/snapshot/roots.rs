//! The roots of a snapshot's scan (other threads' stacks, thread-local storage), and
//! what it misses (a hidden pointer), told afterwards.

use super::*;

/// Other threads' stacks and every thread's thread-local storage are roots in a
/// snapshot and at exit: a block kept only by a local of a thread blocked in read(2),
/// or only by a `__thread` variable (the worker's, main's), is still reachable, while
/// the requests' blocks keep their kinds.
#[test]
fn a_blocked_threads_stack_is_a_root() {
    let mut s = Server::start_with(&[], &["worker"]);
    s.requests(4);
    let snap = s.snapshot();
    let (_, dir) = s.quit();
    let end = logs_in(dir.path())
        .into_iter()
        .find(|p| !p.to_string_lossy().contains(".snap"))
        .expect("the run's log");
    for r in [report(&snap), report(&end)] {
        assert_eq!(
            kind_at(&r, "reachable", "worker_block"),
            (96, 1),
            "{}",
            r.log.display()
        );
        assert_eq!(kind_at(&r, "definite", "worker_block"), (0, 0));
        assert_eq!(kind_at(&r, "reachable", "worker_tls"), (48, 1));
        assert_eq!(kind_at(&r, "reachable", "main_tls"), (24, 1));
        assert_eq!(kind_at(&r, "definite", "handle_request"), (256 * 4, 4));
        assert_eq!(kind_at(&r, "indirect", "make_header"), (32 * 4, 4));
        assert_eq!(kind_at(&r, "reachable", "new_session"), (64 * 4, 4));
        let k = &r.v["summary"]["leak_kinds"];
        assert_eq!(k["definite"]["bytes"], 256 * 4, "{k}");
        assert_eq!(k["indirect"]["bytes"], 32 * 4, "{k}");
    }
}

/// A limit of the scan, and how the user can tell: a block whose only pointer is
/// XOR-ed looks definitely lost in a snapshot; once the program frees it, `report
/// --since` that snapshot says so.
#[test]
fn hidden_pointers_are_missed_and_then_told() {
    let mut s = Server::start(&[]);
    s.requests(2);
    s.say("hide", "hidden");
    let snap = s.snapshot();
    s.say("unhide", "unhidden");
    s.requests(1);
    let later = s.snapshot();
    let (_, _dir) = s.quit();
    let r = report(&snap);
    assert_eq!(kind_at(&r, "definite", "hide_block"), (128, 1));
    let since = report_with(&later, &["--since", snap.to_str().unwrap()]);
    let f = &since.v["live_filter"];
    assert_eq!(f["lost_then_freed"]["bytes"], 128, "{f}");
    assert_eq!(f["lost_then_freed"]["count"], 1, "{f}");
    assert_requests(&since, 1);
    let out = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(&snap)
            .arg(&later),
        TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("128 bytes in 1 block classified lost in")
            && text.contains("were freed since"),
        "{text}"
    );
}

/// tests/fixtures/oracle_own_memory.c in a snapshot: memtrace's own memory (the thread
/// state that keeps the unwinder's last walk, with the rbp a frame held) is no root, nor
/// are the stale words below the interrupted stack pointer (the signal frame, the dead
/// red zone) and in the vector registers of a thread inside a system call; the
/// program's live memory is. The kinds are memcheck's (the header's), as at exit,
/// where the oracle tests check them all.
#[test]
fn memtraces_own_memory_is_no_root_in_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_while_waiting(dir.path(), &[], "oracle_own_memory");
    let end = logs_in(dir.path())
        .into_iter()
        .find(|p| !p.to_string_lossy().contains(".snap"))
        .expect("the run's log");
    for r in [report(&snap), report(&end)] {
        let at = |kind: &str, f: &str| kind_at(&r, kind, f);
        let what = r.log.display();
        assert_eq!(at("possible", "keep_inner"), (48, 1), "{what}");
        // keep_small's block, whose stack passes keep_inner, is its only reachable one.
        assert_eq!(at("reachable", "keep_small"), (16, 1), "{what}");
        assert_eq!(at("reachable", "keep_inner"), (16, 1), "{what}");
    }
    assert_eq!(report(&snap).process("ended"), "snapshot");
    // At exit the blocked thread is stopped and its registers read; in the snapshot's
    // frozen copy it does not exist, and its stack is scanned whole (the README's
    // limits), so its block is asserted at exit only.
    assert_eq!(kind_at(&report(&end), "definite", "blocked_xmm"), (80, 1));
}
