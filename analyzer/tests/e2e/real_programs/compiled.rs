//! Compiled programs: ripgrep (Rust), a C++ program with threads and exceptions, and
//! programs linked against jemalloc and tcmalloc.

use super::*;

// A Rust program: Debian's ripgrep (Rust's std allocator calls malloc), searching the
// system's headers in path order (one thread, deterministic): ~13,000 allocations, equal
// to valgrind's.
#[test]
fn ripgrep_matches_valgrind() {
    let rg = require_tool("/usr/bin/rg", "ripgrep");
    let s = Scratch::new(&[], |_| {}).compared_with_valgrind();
    let cmd = argv![
        rg,
        "--sort",
        "path",
        "--count",
        "-e",
        "malloc|free",
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/linux"
    ];
    let runs = s.bare_then_traced(std::slice::from_ref(&cmd));
    assert_success("rg", &runs[0]);
    assert!(
        String::from_utf8_lossy(&runs[0].output.stdout)
            .lines()
            .count()
            > 10,
        "rg found matches"
    );
    let r = s.only_report(runs[0].pid, "rg");
    assert_exited_with_allocations(&r, 1000);
    let v = s.valgrind(&cmd, true);
    assert_matches_valgrind("rg", &r, &v);
}

/// The argv running fixture `name` (built by util::fixture).
fn fixture_argv(name: &str) -> Vec<OsString> {
    argv![fixture(name)]
}

// A C++ program with 4 std::threads, exceptions thrown in each and carried to main with
// std::exception_ptr: ~31,000 allocations, all freed, equal to valgrind's.
#[test]
fn cpp_threads_and_exceptions_match_valgrind() {
    let s = Scratch::new(&[], |_| {}).compared_with_valgrind();
    let cmd = fixture_argv("cpp_threads");
    let runs = s.bare_then_traced(std::slice::from_ref(&cmd));
    assert_success("cpp_threads", &runs[0]);
    assert_eq!(
        String::from_utf8_lossy(&runs[0].output.stderr),
        "rethrown in main: worker 2 gives up\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&runs[0].output.stdout)
            .lines()
            .count(),
        4
    );
    let r = s.only_report(runs[0].pid, "cpp_threads");
    assert_exited_with_allocations(&r, 10_000);
    r.assert_heap_leaked(0, 0);
    let v = s.valgrind(&cmd, true);
    assert_matches_valgrind("cpp_threads", &r, &v);
}

/// jemalloc_prog / tcmalloc_prog: see alloc_workload.h for the expected numbers.
fn own_allocator_program(name: &str, allocator: &str, own_new_arrays: u64) {
    let s = Scratch::new(&[], |_| {});
    let runs = s.bare_then_traced(&[fixture_argv(name)]);
    assert_success(name, &runs[0]);
    let out = String::from_utf8_lossy(&runs[0].output.stdout).into_owned();
    assert!(
        out.contains(&format!(
            "allocator={allocator} holds the program's blocks: yes"
        )),
        "{name}: the program's malloc must still be {allocator}'s:\n{out}"
    );
    let r = s.only_report(runs[0].pid, name);
    assert_exited_with_allocations(&r, 0);
    assert_eq!(
        (r.summary("allocations"), r.summary("frees")),
        (2506 + own_new_arrays, 2406),
        "{name}: (allocations, frees)\n{}",
        r.describe_leaks()
    );
    r.assert_leak("heap", "leak_site", 10_000, 100);
    // tcmalloc's own two start-up `new[]`s: 24 bytes, never freed.
    r.assert_heap_leaked(10_000 + 12 * own_new_arrays, 100 + own_new_arrays);
}

// A program linked against Debian's libjemalloc2: its calls reach jemalloc (jemalloc's
// statistics grow by the blocks it holds) and are all recorded.
#[test]
fn jemalloc_program_traced_through_jemalloc() {
    require_tool("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2");
    own_allocator_program("jemalloc_prog", "jemalloc", 0);
}

// A program linked against Debian's libtcmalloc-minimal4: likewise, through tcmalloc.
#[test]
fn tcmalloc_program_traced_through_tcmalloc() {
    require_tool(
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    );
    own_allocator_program("tcmalloc_prog", "tcmalloc", 2);
}

// C++ new/delete in programs linked against jemalloc or tcmalloc: both libraries define
// operator new and delete themselves, without calling malloc, so memtrace interposes the
// operators too (regression: with only the malloc family hooked, the report showed 2
// allocations and no leak).
#[test]
fn cpp_new_through_jemalloc_and_tcmalloc_is_traced() {
    require_tool("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2");
    require_tool(
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    );
    let mut failures = Vec::new();
    for name in ["jemalloc_new", "tcmalloc_new"] {
        let s = Scratch::new(&[], |_| {});
        let runs = s.bare_then_traced(&[fixture_argv(name)]);
        assert_success(name, &runs[0]);
        let r = s.only_report(runs[0].pid, name);
        let leak = r.leak_site("heap", "new_leak_site()");
        let got = (r.summary("allocations"), r.summary("frees"), leak.bytes);
        if got.0 < 1001 || got.1 < 1000 || (leak.bytes, leak.count) != (4, 1) {
            failures.push(format!(
                "{name}: allocations {}, frees {}, new_leak_site leak {} bytes; expected \
                 >= 1001, >= 1000, 4 bytes in 1 block",
                got.0, got.1, got.2
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "operator new/delete of the program's allocator are not recorded:\n{}",
        failures.join("\n")
    );
}
