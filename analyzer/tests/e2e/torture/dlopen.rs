//! dlopen/dlclose of the same library, leaking inside it, 1,000 times.

use super::*;

// dlopen/dlclose of the same library 1,000 times, leaking inside it each time: all 1,000
// leaks symbolized to the unloaded library, nothing else leaks.
#[test]
fn dlopen_dlclose_same_library_1000_times() {
    let lib = fixture("libtorture_dl");
    let t = run("torture_dlopen", &[lib.as_os_str(), OsStr::new("1000")], 60);
    t.assert_exit(0);
    let p = kv(&t.stdout());
    let (lb, lk) = (val(&p, "leaked_bytes"), val(&p, "leaked_blocks"));
    assert_eq!((lb, lk), (10_000, 1000));
    let r = t.report();
    r.assert_complete();
    r.assert_leak("heap", "torture_dl_leak_site", lb, lk);
    r.assert_heap_leaked(lb, lk);
    for l in r.leaks("heap") {
        let frames = l["stack"].as_array().unwrap();
        let f = frames
            .iter()
            .find(|f| f["function"] == "torture_dl_leak_site")
            .expect("leak in the library");
        let file = f["file"].as_str().unwrap_or("");
        let module = f["module"].as_str().unwrap_or("");
        assert!(
            file.ends_with("libtorture_dl.c") && module.ends_with("libtorture_dl.so"),
            "frame {f}"
        );
        assert!(
            stack_has(l, &fn_is("dl_cycle")),
            "called from dl_cycle: {l}"
        );
    }
}
