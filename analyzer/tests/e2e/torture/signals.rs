//! Signal handlers that allocate during malloc, longjmp out of allocating chains, C++
//! exceptions through many frames, and siglongjmp out of memtrace's hooks.

use super::*;

/// torture_sigmalloc in `mode`: the handler's leaks equal its own count; totals exact;
/// nested_hooks may be > 0 (a handler that interrupts a hook enters the second level).
fn signal_during_malloc(mode: &str, threads: u64) {
    let t = run("torture_sigmalloc", &[mode, "300000"], 60);
    t.assert_exit(0);
    let p = kv(&t.stdout());
    let (iters, h) = (val(&p, "iterations"), val(&p, "handled"));
    assert!(h > 0, "the handler ran: {p:?}");
    let r = t.report();
    r.assert_complete();
    r.assert_ended("exit");
    r.assert_leak("heap", "handler_leak_site", 24 * h, h);
    r.assert_heap_leaked(24 * h, h);
    // ITERS + warm-up + stdout buffer + the sender thread's DTV, plus two per signal.
    assert_eq!(r.summary("allocations"), iters + 2 + threads + 2 * h);
    assert_eq!(r.summary("frees"), iters + 2 + threads + h);
    eprintln!(
        "{mode}: {h} signals handled, nested_hooks {}",
        r.summary("nested_hooks")
    );
}

// A second thread pthread_kill()s the main thread as fast as it can while it loops in
// malloc/free; the handler allocates: the program finishes, its leaks are all counted.
#[test]
fn signal_handler_allocates_during_malloc_pthread_kill() {
    signal_during_malloc("kill", 1);
}

// The same with a 100 us ITIMER_PROF timer (SIGPROF) instead of a sender thread.
#[test]
fn signal_handler_allocates_during_malloc_itimer_prof() {
    signal_during_malloc("prof", 0);
}

// 200 rounds of a 300-deep allocating recursion left by longjmp, plus one 1000 deep
// (beyond the 512-frame limit): leaks exact per site, everything else freed.
#[test]
fn longjmp_out_of_deep_allocating_chain() {
    let t = run("torture_longjmp", &["200"], 60);
    t.assert_exit(0);
    let p = kv(&t.stdout());
    let (lb, lk) = (val(&p, "leaked_bytes"), val(&p, "leaked_blocks"));
    assert_eq!((lb, lk), (110 * 200 + 23, 6 * 200 + 1));
    let r = t.report();
    r.assert_complete();
    r.assert_heap_leaked(lb, lk);
    r.assert_leak("heap", "chain_alloc_site", 110 * 200, 6 * 200);
    r.assert_leak("heap", "deep_leak_site", 23, 1);
    let deep = r
        .leaks("heap")
        .into_iter()
        .find(|l| stack_has(l, &fn_is("deep_leak_site")))
        .unwrap();
    let frames = deep["stack"].as_array().unwrap();
    assert!(
        frames.len() <= 512 + 8 && frames.len() >= 500,
        "the 1000-deep stack is truncated near 512 frames: {}",
        frames.len()
    );
    assert_eq!(
        r.summary("allocations") - r.summary("frees"),
        lk,
        "{}",
        r.v["summary"]
    );
}

// 300 std::runtime_errors thrown through 100 frames of strings and vectors: the RAII
// blocks freed during unwinding are not leaks; the raw `new`s are, exactly.
#[test]
fn cxx_exceptions_through_many_frames() {
    let t = run("torture_exceptions", &["300"], 60);
    t.assert_exit(0);
    let p = kv(&t.stdout());
    assert_eq!(val(&p, "caught"), 300);
    let (lb, lk) = (val(&p, "leaked_bytes"), val(&p, "leaked_blocks"));
    assert_eq!((lb, lk), (561 * 300, 11 * 300));
    let r = t.report();
    r.assert_complete();
    r.assert_leak("heap", "exc_leak_site(int)", lb, lk);
    r.assert_heap_leaked(lb, lk);
    assert!(
        r.leaks("heap")
            .iter()
            .all(|l| stack_has(l, &fn_is("level(int)"))),
        "every leak is under level()\n{}",
        r.describe_leaks()
    );
}

// A thread that a signal handler siglongjmp()s out of memtrace's hooks, 3,000 times, goes on
// being recorded: every later event is there (the exact sites of longjmp_hook.c's header),
// none is lost or counted as nested, and the hook levels it left are counted (between 1 and
// one per jump: the handler calls no hook). Before, the thread's hook level stayed open and
// everything after the second jump was lost (20,079 events in one run, 1 allocation seen).
#[test]
fn a_thread_longjmping_out_of_hooks_keeps_recording() {
    let t = run("longjmp_hook", &[] as &[&str], 60);
    t.assert_exit(0);
    assert_eq!(t.stdout(), "jumps 3000\n");
    let r = t.report();
    r.assert_leak("heap", "leak_site", 48_000, 1_000);
    r.assert_leak("heap", "new_site", 12_000, 500);
    assert_eq!(r.summary("events_lost"), 0);
    assert_eq!(r.summary("nested_hooks"), 0);
    let left = r.summary("abandoned_hooks");
    assert!((1..=3000).contains(&left), "abandoned_hooks {left}");
}
