//! Suppressions: valgrind's, LeakSanitizer's and memtrace's formats, the ones valgrind
//! and `--gen-suppressions` generate, and the built-in ones for the Rust runtime.

use super::*;

/// A suppression file of `tests/suppressions/`.
fn supp_file(name: &str) -> String {
    root()
        .join("tests/suppressions")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// `(matched_stacks, matched_blocks, matched_bytes)` of the suppression `name`.
fn matched(c: &Checked, name: &str) -> (u64, u64, u64) {
    let s = c.json()["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no suppression {name}: {:#}", c.json()["suppressions"]));
    (
        s["matched_stacks"].as_u64().unwrap(),
        s["matched_blocks"].as_u64().unwrap(),
        s["matched_bytes"].as_u64().unwrap(),
    )
}

/// (bytes, blocks) summed over the judged process's leaks with `function` and `status`.
fn at(c: &Checked, function: &str, status: &str) -> (u64, u64) {
    leaks_at(c.judged(), function)
        .into_iter()
        .filter(|e| e.2 == status)
        .fold((0, 0), |(b, n), e| (b + e.0, n + e.1))
}

/// valgrind's own format, as valgrind documents it (`...`, `*`/`?`, mangled names,
/// `match-leak-kinds`, `obj:`, `src:`, entries of other kinds ignored): heap.c's four
/// targeted leaks are suppressed, its two others fail the gate, and the counts are exact
/// (every leak of heap.c is definitely lost, which the default kinds count).
#[test]
fn valgrind_suppression_file() {
    let vg = supp_file("valgrind.supp");
    let (_d, c) = check_fixture("heap", &["-s", &vg], &[]);
    c.assert_code(FAILED);
    assert!(
        c.stderr()
            .contains("2 entries of other kinds than leaks ignored"),
        "{}",
        c.stderr()
    );
    assert_eq!(matched(&c, "heap-leak_malloc"), (1, 3, 300));
    assert_eq!(matched(&c, "heap-leak_strdup"), (1, 1, 16));
    assert_eq!(matched(&c, "heap-leak_calloc"), (1, 1, 120));
    assert_eq!(matched(&c, "heap-leak_aligned"), (4, 4, 1736));
    assert_eq!(at(&c, "leak_realloc_chain", "counted"), (200, 1));
    assert_eq!(at(&c, "leak_reallocarray", "counted"), (240, 1));
    assert_eq!(c.judged()["counted_bytes"], 440);
    assert_eq!(c.json()["suppressions"][0]["format"], "valgrind");
    assert!(
        c.stderr()
            .contains("300 bytes in 3 blocks (1 stack): heap-leak_malloc"),
        "{}",
        c.stderr()
    );

    let (_d, c) = check_fixture("cpp", &["-s", &vg], &[]);
    c.assert_code(FAILED);
    assert_eq!(matched(&c, "cpp-leak_cpp"), (1, 1, 100));
    assert_eq!(at(&c, "ns::Widget::make()", "counted"), (40, 1));
    assert_eq!(c.judged()["counted_bytes"], 40);

    // 39 of thread_leak_site's 40 blocks are definitely lost; one is still reachable
    // (the global `sink` holds it: whichever thread stored there last).
    let (_d, c) = check_fixture("threads", &["-s", &vg], &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "threads-thread_leak_site").1, 39);
    let (_d, c) = check_fixture("threads", &all_kinds(&["-s", &vg]), &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "threads-thread_leak_site").2, 2880);
}

/// LeakSanitizer's format: substrings, `^`/`$` anchors, demangled C++ names.
#[test]
fn lsan_suppression_file() {
    let lsan = supp_file("lsan.supp");
    let (_d, c) = check_fixture("heap", &all_kinds(&["-s", &lsan]), &[]);
    c.assert_code(FAILED);
    assert_eq!(matched(&c, "leak_realloc_chain"), (1, 1, 200));
    assert_eq!(matched(&c, "^leak_reallocarray$"), (1, 1, 240));
    assert_eq!(c.judged()["counted_bytes"], 2612 - 440);
    assert_eq!(c.json()["suppressions"][0]["format"], "lsan");
    let (_d, c) = check_fixture("cpp", &["-s", &lsan], &[]);
    assert_eq!(matched(&c, "ns::Widget::make"), (1, 1, 40));
    assert_eq!(at(&c, "leak_cpp(int)", "counted"), (100, 1));
}

/// memtrace's own format: terms anywhere in the stack, mangled names, byte limits (a
/// suppression over its limit suppresses nothing and the summary says so). Every kind
/// of leak counts here.
#[test]
fn memtrace_suppression_file() {
    let own = supp_file("memtrace.supp");
    let (_d, c) = check_fixture("threads", &all_kinds(&["-s", &own]), &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "threads"), (1, 40, 2880));
    let (_d, c) = check_fixture("pvalloc", &["-s", &own], &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "pvalloc"), (1, 1, 8192));
    let (_d, c) = check_fixture("cpp", &["-s", &own], &[]);
    assert_eq!(matched(&c, "cpp-array"), (1, 1, 100));
    assert_eq!(c.judged()["counted_bytes"], 40);
    // mmap leaks: 20480 bytes at mmap_partial_site, exactly its max:20k.
    let (_d, c) = check_fixture("mmap", &["-s", &own, "--mmap-leaks"], &[]);
    c.assert_code(FAILED);
    assert_eq!(matched(&c, "mmap-partial"), (1, 1, 20480));
    assert_eq!(c.judged()["counted_bytes"], 49152 - 20480);

    // Over its limit, a suppression lets its leaks count.
    let dir = tempfile::tempdir().unwrap();
    let tight = dir.path().join("tight.supp");
    std::fs::write(&tight, "suppress threads fun:thread_leak_site max:2k\n").unwrap();
    let (_d, c) = check_fixture("threads", &all_kinds(&["-s", tight.to_str().unwrap()]), &[]);
    c.assert_code(FAILED);
    assert_eq!(c.json()["suppressions"][0]["over_limit"], 1);
    assert_eq!(at(&c, "thread_leak_site", "counted"), (2880, 40));
    assert!(
        c.stderr().contains("over its max of 2,048"),
        "{}",
        c.stderr()
    );
}

/// The suppressions valgrind itself generates for heap.c (`--gen-suppressions=all`, each
/// with `match-leak-kinds: definite`) suppress every one of its leaks: memtrace finds
/// them all definitely lost, as memcheck does.
#[test]
fn suppressions_generated_by_valgrind() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vg.log");
    let out = clean_command(require_valgrind())
        .args([
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--gen-suppressions=all",
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(fixture("heap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // valgrind's log prefixes its own lines with ==PID==; suppressions are unprefixed.
    let text = std::fs::read_to_string(&log).unwrap();
    let supp: String = text
        .lines()
        .filter(|l| !l.starts_with("=="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(supp.matches("Memcheck:Leak").count() >= 6, "{text}");
    let file = dir.path().join("generated.supp");
    std::fs::write(&file, &supp).unwrap();
    let (_d, c) = check_fixture("heap", &["-s", file.to_str().unwrap()], &[]);
    c.assert_code(0);
    let total: u64 = c.json()["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["matched_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2612, "{supp}");
}

/// `--gen-suppressions` prints entries that, used as suppression files, make the same
/// run pass: in each of the three formats, with every kind of leak counted (valgrind's
/// entries name the kinds of their leak).
#[test]
fn gen_suppressions_round_trip() {
    for format in ["memtrace", "valgrind", "lsan"] {
        let opt = format!("--gen-suppressions={format}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("gen.{format}.supp"));
        let (_d, c) = check_fixture(
            "heap",
            &all_kinds(&[&opt, "--gen-suppressions-file", file.to_str().unwrap()]),
            &[],
        );
        c.assert_code(FAILED);
        assert_eq!(
            c.stdout(),
            "heap fixture done\n",
            "the program's stdout is its own"
        );
        let printed = std::fs::read_to_string(&file).unwrap();
        let (_d, c) = check_fixture("heap", &all_kinds(&["-s", file.to_str().unwrap()]), &[]);
        c.assert_code(0);
        assert_eq!(c.json()["suppressions"][0]["format"], format, "{printed}");
        let total: u64 = c.json()["suppressions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["matched_bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 2612, "{format}:\n{printed}");
    }
    // The default prints memtrace's and valgrind's formats, on stderr, for the leaks
    // that count (definitely lost, here).
    let (_d, c) = check_fixture("heap", &["--gen-suppressions"], &[]);
    let printed = c.stderr();
    assert!(
        printed.contains("suppress leak_malloc") && printed.contains("Memcheck:Leak"),
        "{printed}"
    );
    assert!(
        printed.contains("   match-leak-kinds: definite\n   fun:malloc\n   fun:leak_malloc\n"),
        "{printed}"
    );
    assert!(!printed.contains("match-leak-kinds: all"), "{printed}");
}

/// The Rust runtime's one-time allocations (the main thread's handle and guard info) are
/// still reachable, so they do not count by default; with every kind counted, the
/// built-in suppressions take them out: either way a Rust program's verdict is its own
/// leaks exactly.
#[test]
fn rust_runtime_is_suppressed_by_default() {
    let (_d, c) = check_fixture("rust_leak", &[], &[]);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(2200), Some(4))
    );
    assert!(
        p["not_counted"]["reachable"]["bytes"].as_u64() > Some(0),
        "{p:#}"
    );
    let (_d, c) = check_fixture("rust_leak", &["--no-default-suppressions"], &[]);
    c.assert_code(FAILED);
    assert_eq!(c.judged()["counted_bytes"], 2200);

    let (_d, c) = check_fixture("rust_leak", &all_kinds(&[]), &[]);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(2200), Some(4))
    );
    assert_eq!(at(&c, "rust_leak::leak_rust_box", "counted"), (1000, 1));
    assert_eq!(at(&c, "rust_leak::leak_rust_vec", "counted"), (1200, 3));
    let builtin: Vec<&Value> = c.json()["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["file"] == "<built-in>")
        .collect();
    assert!(
        builtin
            .iter()
            .any(|s| s["matched_bytes"].as_u64() > Some(0)),
        "{builtin:?}"
    );

    let (_d, c) = check_fixture("rust_leak", &all_kinds(&["--no-default-suppressions"]), &[]);
    c.assert_code(FAILED);
    assert!(c.judged()["counted_bytes"].as_u64().unwrap() > 2200);
    assert!(c.json()["suppressions"].as_array().unwrap().is_empty());
}
