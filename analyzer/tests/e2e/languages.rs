//! cpp.cpp and rust_leak.rs: demangled C++ and Rust leak sites.

use crate::util::{Valgrind, assert_heap_totals, fn_contains, oracle, trace};

const NO_ARGS: &[&str] = &[];

// C++: leaks at ns::Widget::make() (40 B) and leak_cpp(int) (100 B) with demangled names;
// caught exceptions and containers leak nothing.
#[test]
fn cpp_leaks_demangled() {
    let t = trace("cpp", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_leak("heap", "ns::Widget::make()", 40, 1);
    r.assert_leak("heap", "leak_cpp(int)", 100, 1);
    r.assert_heap_leaked(140, 2);
    let exc = r.leak_site_by("heap", &fn_contains("__cxa_allocate_exception"));
    assert_eq!(
        exc.bytes,
        0,
        "exception objects are not leaks\n{}",
        r.describe_leaks()
    );
    r.assert_no_leak("heap", "thrower(int)");
    r.assert_no_leak("heap", "containers()");
}

// C++ totals equal valgrind's (libstdc++'s emergency pool is freed at exit).
#[test]
fn cpp_totals_match_valgrind() {
    let t = trace("cpp", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    let o = oracle(
        "cpp",
        NO_ARGS,
        Valgrind {
            in_use_bytes: 140,
            in_use_blocks: 2,
            allocs: 81,
            frees: 79,
            bytes_allocated: 91_251,
        },
    );
    assert_heap_totals(&r, &o);
}

// Rust: Box::leak (1000 B) and mem::forget of 3 Vecs (3 x 400 B) at demangled Rust paths.
#[test]
fn rust_leaks_demangled() {
    let t = trace("rust_leak", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    let b = r.leak_site_by("heap", &fn_contains("rust_leak::leak_rust_box"));
    assert_eq!(
        (b.bytes, b.count),
        (1000, 1),
        "Box::leak site\n{}",
        r.describe_leaks()
    );
    let v = r.leak_site_by("heap", &fn_contains("rust_leak::leak_rust_vec"));
    assert_eq!(
        (v.bytes, v.count),
        (1200, 3),
        "mem::forget site\n{}",
        r.describe_leaks()
    );
}
