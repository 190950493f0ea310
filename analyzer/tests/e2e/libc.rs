//! only_libc.c: libc's own allocations (stdio, fopen, setlocale, tz) are not leaks.

use crate::util::{Valgrind, assert_heap_totals, oracle, trace};

const NO_ARGS: &[&str] = &[];

// A program that frees everything reports no leak at all, and totals equal valgrind's.
#[test]
fn libc_allocations_are_not_leaks() {
    let t = trace("only_libc", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    assert!(
        r.leaks("heap").is_empty(),
        "no leaks\n{}",
        r.describe_leaks()
    );
    assert!(
        r.leaks("mmap").is_empty(),
        "no leaks\n{}",
        r.describe_leaks()
    );
    r.assert_no_nested_hooks();
    r.assert_heap_leaked(0, 0);
    assert_eq!(r.summary("allocations"), r.summary("frees"));
    let o = oracle(
        "only_libc",
        NO_ARGS,
        Valgrind {
            in_use_bytes: 0,
            in_use_blocks: 0,
            allocs: 207,
            frees: 207,
            bytes_allocated: 33_067,
        },
    );
    assert_heap_totals(&r, &o);
}
