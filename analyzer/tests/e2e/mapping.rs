//! mmap.c and brk.c: mappings and the program break.

use crate::util::trace;

const NO_ARGS: &[&str] = &[];

// Partial munmap, mmap64 and mremap leave exact page counts; a fully unmapped region is
// not reported; peak and call counts are exact.
#[test]
fn mmap_partial_unmap_and_mremap() {
    let t = trace("mmap", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    // 8 pages minus 3 in the middle: what is left is still the one region.
    r.assert_leak("mmap", "mmap_partial_site", 5 * 4096, 1);
    r.assert_leak("mmap", "mmap64_site", 4096, 1);
    // 2 pages grown to 6 by mremap: one region.
    r.assert_leak("mmap", "mremap_site", 6 * 4096, 1);
    r.assert_no_leak("mmap", "mmap_freed_site");
    assert_eq!(
        r.summary("leaked_mmap_bytes"),
        12 * 4096,
        "{}",
        r.describe_leaks()
    );
    assert_eq!(
        r.summary("leaked_mmap_regions"),
        3,
        "{}",
        r.describe_leaks()
    );
    assert_eq!(
        r.summary("peak_mmap_bytes"),
        16 * 4096,
        "{}",
        r.describe_leaks()
    );
    assert_eq!(r.summary("mmap_calls"), 4);
    assert_eq!(r.summary("munmap_calls"), 2);
    assert_eq!(r.summary("allocations"), 0);
    r.assert_heap_leaked(0, 0);
    assert!(r.leaks("heap").is_empty(), "{}", r.describe_leaks());
}

// sbrk/brk growth by the program shows in the brk section and brk_growth_bytes.
#[test]
fn brk_growth_is_reported() {
    let t = trace("brk", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    assert_eq!(r.brk_site("sbrk_site").bytes, 65536, "brk: {}", r.v["brk"]);
    assert_eq!(r.brk_site("brk_site").bytes, 8192, "brk: {}", r.v["brk"]);
    assert!(
        r.summary("brk_growth_bytes") >= 65536 + 8192,
        "brk_growth_bytes {} < 73728",
        r.summary("brk_growth_bytes")
    );
    assert_eq!(r.summary("allocations"), 0);
    r.assert_heap_leaked(0, 0);
}
