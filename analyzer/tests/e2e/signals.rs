//! signals.c: allocation inside signal handlers.

use crate::util::trace;

const NO_ARGS: &[&str] = &[];

// Blocks leaked in SIGUSR1 (raise, 5x) and SIGALRM (setitimer, 3x) handlers are all there.
#[test]
fn signal_handler_leaks() {
    let t = trace("signals", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_leak("heap", "usr1_leak_site", 320, 5);
    r.assert_leak("heap", "alarm_leak_site", 96, 3);
    r.assert_heap_leaked(416, 8);
    assert_eq!(r.summary("allocations"), 8);
    assert_eq!(r.summary("frees"), 0);
}
