//! heap.c and pvalloc.c: the malloc family.

use crate::util::{Valgrind, assert_heap_totals, oracle, report_with, trace};

const NO_ARGS: &[&str] = &[];

// Each leak site of heap.c reports its exact bytes and blocks.
#[test]
fn heap_leak_sites() {
    let t = trace("heap", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_leak("heap", "leak_malloc", 300, 3);
    r.assert_leak("heap", "leak_calloc", 120, 1);
    r.assert_leak("heap", "leak_realloc_chain", 200, 1);
    r.assert_leak("heap", "leak_aligned", 1736, 4);
    r.assert_leak("heap", "leak_strdup", 16, 1);
    r.assert_leak("heap", "leak_reallocarray", 240, 1);
    r.assert_no_leak("heap", "churn");
    r.assert_no_leak("heap", "big_peak");
    r.assert_heap_leaked(2612, 11);
    // Frames carry file and line: calloc's caller is leak_calloc in heap.c.
    let f = r
        .leak_frame("heap", "leak_calloc")
        .expect("a frame in leak_calloc");
    let file = f["file"].as_str().unwrap_or("");
    assert!(
        file.ends_with("tests/fixtures/heap.c"),
        "leak_calloc's file: {f}"
    );
    assert!(
        f["line"].as_u64().is_some_and(|l| l > 0),
        "leak_calloc's line: {f}"
    );
    assert_eq!(f["inlined"], false, "leak_calloc is noinline: {f}");
    assert_eq!(
        r.leaks("mmap").len(),
        0,
        "no mmap leaks\n{}",
        r.describe_leaks()
    );
    r.assert_ended("exit");
}

// allocations, frees, bytes_allocated and the live total at exit equal valgrind's.
#[test]
fn heap_totals_match_valgrind() {
    let t = trace("heap", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    let o = oracle(
        "heap",
        NO_ARGS,
        Valgrind {
            in_use_bytes: 2612,
            in_use_blocks: 11,
            allocs: 22,
            frees: 11,
            bytes_allocated: 10_492_875,
        },
    );
    assert_heap_totals(&r, &o);
}

// The 10 MiB block freed early is the peak: peak_heap_bytes is exactly 10 MiB.
#[test]
fn heap_peak() {
    let t = trace("heap", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    assert_eq!(
        r.summary("peak_heap_bytes"),
        10 * 1024 * 1024,
        "{}",
        r.describe_leaks()
    );
    let p = r.peak_site("big_peak");
    assert_eq!(
        (p.bytes, p.count),
        (10 * 1024 * 1024, 1),
        "peak entry of big_peak: {}",
        r.v["peak"]
    );
}

// pvalloc (which valgrind 3.19 cannot run) is counted and its leak reported.
#[test]
fn pvalloc_leak() {
    let t = trace("pvalloc", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_leak("heap", "leak_pvalloc", 8192, 1);
    r.assert_heap_leaked(8192, 1);
    assert_eq!(r.summary("allocations"), 2);
    assert_eq!(r.summary("frees"), 1);
    assert_eq!(r.summary("bytes_allocated"), 12288);
}

/// Temporary allocations (freed before their thread's next allocation) are counted and
/// ranked by stack, per thread, exactly as temporary.c's header states.
#[test]
fn temporary_allocations() {
    let t = trace("temporary", &[] as &[&str]);
    t.assert_exit(0);
    let r = report_with(&t.only_log(), &["--top", "100"]);
    let s = |site: &str| {
        let x = r.temporary_site(site);
        (x.count, x.bytes)
    };
    assert_eq!(s("temp_site"), (100, 6400));
    assert_eq!(s("pair_second_site"), (10, 480));
    assert_eq!(s("pair_first_site"), (0, 0));
    assert_eq!(s("thread_temp_site"), (2000, 32000));
    assert_eq!(s("final_site"), (1, 8));
    assert_eq!(s("kept_site"), (0, 0));
    assert_eq!(r.v["summary"]["temporary_allocations"], 2111);
    assert_eq!(r.v["summary"]["temporary_bytes"], 38888);
    r.assert_leak("heap", "kept_site", 24, 1);
}
