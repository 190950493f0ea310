//! dlopen_main.c with libdlleak.so and libdlother.so: leaks in a library unloaded before exit.

use crate::util::{Report, fixture, fn_is, stack_has, trace};

fn assert_frame_in(r: &Report, func: &str, file_suffix: &str, module_part: &str) {
    let f = r.leak_frame("heap", func).unwrap_or_else(|| {
        panic!(
            "no leak stack has a frame in {func}\n{}",
            r.describe_leaks()
        )
    });
    let file = f["file"].as_str().unwrap_or("");
    assert!(
        file.ends_with(file_suffix),
        "{func}'s file is {file:?}, expected *{file_suffix}: {f}"
    );
    let module = f["module"].as_str().unwrap_or("");
    assert!(
        module.contains(module_part),
        "{func}'s module is {module:?}: {f}"
    );
    assert!(
        f["line"].as_u64().is_some_and(|l| l > 0),
        "{func} has a line: {f}"
    );
}

// A leak inside a dlclose'd library symbolizes to its function and file; a library loaded
// later (possibly at the same addresses) does not take its frames over.
#[test]
fn dlclosed_library_leak_is_symbolized() {
    let t = trace(
        "dlopen_main",
        &[fixture("libdlleak"), fixture("libdlother")],
    );
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_leak("heap", "lib_leak_site", 666, 2);
    r.assert_leak("heap", "other_leak_site", 444, 1);
    assert_frame_in(&r, "lib_leak_site", "libdlleak.c", "libdlleak.so");
    assert_frame_in(&r, "other_leak_site", "libdlother.c", "libdlother.so");
    let (a, b) = (fn_is("lib_leak_site"), fn_is("other_leak_site"));
    let mixed = r
        .leaks("heap")
        .into_iter()
        .filter(|l| stack_has(l, &a) && stack_has(l, &b))
        .count();
    assert_eq!(
        mixed,
        0,
        "no stack mixes both libraries\n{}",
        r.describe_leaks()
    );
    // The frame that called into each library is main's.
    assert!(
        r.leaks("heap")
            .into_iter()
            .filter(|l| stack_has(l, &a))
            .all(|l| stack_has(l, &fn_is("dl_leak")) && stack_has(l, &fn_is("main"))),
        "lib_leak_site <- dl_leak <- main\n{}",
        r.describe_leaks()
    );
}
