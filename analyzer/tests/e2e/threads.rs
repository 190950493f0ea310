//! threads.c: concurrent allocation.

use crate::util::{Valgrind, assert_heap_totals, has_tls_segment, oracle, preload_lib, trace};

const NO_ARGS: &[&str] = &[];

// 8 threads x 5 blocks of 16*(i+1) bytes at thread_leak_site: 2880 bytes in 40 blocks.
#[test]
fn threads_leak_exactly() {
    let t = trace("threads", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_leak("heap", "thread_leak_site", 2880, 40);
    r.assert_no_leak("heap", "churn");
}

// Totals with 8 threads equal valgrind's: no event lost or double-counted.
#[test]
fn threads_totals_match_valgrind() {
    let t = trace("threads", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    let o = oracle(
        "threads",
        NO_ARGS,
        Valgrind {
            in_use_bytes: 2880,
            in_use_blocks: 40,
            allocs: 80_048,
            frees: 80_008,
            // A preload with TLS makes each thread's DTV one 16-byte slot larger
            // (libtlstwin.c explains).
            bytes_allocated: 2_851_456
                + if has_tls_segment(&preload_lib()) {
                    8 * 16
                } else {
                    0
                },
        },
    );
    assert_heap_totals(&r, &o);
}
