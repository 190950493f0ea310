//! Test helpers shared by the formats' tests (frames, stacks, parsing a
//! text), and the tests across formats: detection, loading, the example
//! files of `tests/suppressions/`.

use super::*;

pub(super) fn frame(function: Option<&str>, mangled: Option<&str>, file: Option<&str>) -> Frame {
    Frame {
        function: function.map(Into::into),
        mangled: mangled.map(Into::into),
        file: file.map(Into::into),
        line: file.map(|_| 10),
        module: Some("/usr/bin/app".into()),
        address: 0x1000,
        offset: None,
        inlined: false,
    }
}

pub(super) fn fun(name: &str) -> Frame {
    frame(Some(name), None, Some(&format!("/src/{name}.c")))
}

pub(super) fn bare(module: Option<&str>) -> Frame {
    Frame {
        function: None,
        mangled: None,
        file: None,
        line: None,
        module: module.map(Into::into),
        address: 0x2000,
        offset: None,
        inlined: false,
    }
}

pub(super) fn stack(names: &[&str]) -> Vec<Frame> {
    names.iter().map(|n| fun(n)).collect()
}

pub(super) fn p(text: &str) -> SuppressionFile {
    parse(text, Path::new("t.supp")).unwrap()
}

pub(super) fn one(text: &str) -> Suppression {
    let f = p(text);
    assert_eq!(f.entries.len(), 1, "{text}");
    f.entries.into_iter().next().unwrap()
}

pub(super) fn error(text: &str) -> String {
    parse(text, Path::new("t.supp")).unwrap_err()
}

#[test]
fn detection() {
    assert_eq!(p("").syntax, None);
    assert_eq!(p("# only\n\n  # comments\n").syntax, None);
    assert_eq!(
        p("# c\n\nsuppress a fun:x\n").syntax,
        Some(Syntax::Memtrace)
    );
    assert_eq!(p("\n# c\nleak:x\n").syntax, Some(Syntax::Lsan));
    assert_eq!(p("race:x\nleak:y\n").syntax, Some(Syntax::Lsan));
    assert_eq!(
        p("{\n n\n Memcheck:Leak\n fun:f\n}\n").syntax,
        Some(Syntax::Valgrind)
    );
    let e = error("# header\n\nhello world\n");
    assert!(e.starts_with("t.supp:3: "), "{e}");
    assert!(
        e.contains("memtrace") && e.contains("LeakSanitizer") && e.contains("valgrind"),
        "{e}"
    );
    assert!(error("foo:bar\n").starts_with("t.supp:1: "));
    assert_eq!(Syntax::Memtrace.as_str(), "memtrace");
    assert_eq!(Syntax::Lsan.as_str(), "lsan");
    assert_eq!(Syntax::Valgrind.as_str(), "valgrind");
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.supp");
    std::fs::write(&path, "# x\nsuppress a fun:f\n").unwrap();
    let f = load(&path).unwrap();
    assert_eq!(f.path, path);
    assert_eq!(f.entries[0].file, path);
    assert_eq!(f.entries[0].line, 2);
    let missing = dir.path().join("missing.supp");
    let e = load(&missing).unwrap_err();
    assert!(e.starts_with(&missing.display().to_string()), "{e}");
    std::fs::write(&path, "suppress a fun:f\nbad line\n").unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.starts_with(&format!("{}:2: ", path.display())), "{e}");
}

#[test]
fn example_files() {
    let f = p(include_str!("../../../../tests/suppressions/valgrind.supp"));
    assert_eq!(f.syntax, Some(Syntax::Valgrind));
    assert_eq!(f.entries.len(), 7);
    assert_eq!(f.ignored, 2);
    let kinds: Vec<&[String]> = f.entries.iter().map(|e| e.leak_kinds()).collect();
    assert!(kinds.contains(&&["definite".to_string(), "possible".to_string()][..]));

    let f = p(include_str!("../../../../tests/suppressions/reach.supp"));
    assert_eq!(f.syntax, Some(Syntax::Valgrind));
    let kinds: Vec<&[Kind]> = f.entries.iter().map(|e| e.kinds()).collect();
    use Kind::*;
    assert_eq!(
        kinds,
        [
            &[DefinitelyLost][..],
            &[PossiblyLost, StillReachable][..],
            &[PossiblyLost][..],
            &[StillReachable][..]
        ]
    );

    let f = p(include_str!("../../../../tests/suppressions/lsan.supp"));
    assert_eq!(f.syntax, Some(Syntax::Lsan));
    assert_eq!(f.entries.len(), 4);
    assert_eq!(f.ignored, 0);

    let f = p(include_str!("../../../../tests/suppressions/memtrace.supp"));
    assert_eq!(f.syntax, Some(Syntax::Memtrace));
    assert_eq!(f.entries.len(), 5);
    assert!(f.entries.iter().any(|e| e.limit.is_some()));
}

/// The stacks memtrace records for the fixtures' leaks (innermost first,
/// from the allocator's caller), as far as the entries look; `heap` and
/// `lib` make the others.
struct Fixtures {
    strdup: Vec<Frame>,
    widget: Vec<Frame>,
    cpp: Vec<Frame>,
    other: Vec<Frame>,
    dl: Vec<Frame>,
    thread: Vec<Frame>,
}

/// A leak of heap.c's function `f`, called by `main`.
fn heap(f: &str) -> Vec<Frame> {
    vec![
        frame(Some(f), None, Some("/w/tests/fixtures/heap.c")),
        fun("main"),
    ]
}

/// A leak of a dlopen'd library `so`: `site` called by `outer`, by `main`.
fn lib(site: &str, outer: &str, so: &str) -> Vec<Frame> {
    vec![
        Frame {
            module: Some(format!("/t/e2e-fixtures/{so}").into()),
            ..frame(Some(site), None, Some("/w/tests/fixtures/x.c"))
        },
        Frame {
            module: Some(format!("/t/e2e-fixtures/{so}").into()),
            ..frame(Some(outer), None, Some("/w/tests/fixtures/x.c"))
        },
        fun("main"),
    ]
}

fn fixtures() -> Fixtures {
    let strdup = vec![
        Frame {
            module: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
            ..frame(Some("__strdup"), None, None)
        },
        frame(Some("leak_strdup"), None, Some("/w/tests/fixtures/heap.c")),
        fun("main"),
    ];
    let widget = vec![
        frame(
            Some("ns::Widget::make()"),
            Some("_ZN2ns6Widget4makeEv"),
            Some("/w/tests/fixtures/cpp.cpp"),
        ),
        fun("main"),
    ];
    let cpp = vec![
        frame(
            Some("leak_cpp(int)"),
            Some("_Z8leak_cppi"),
            Some("/w/tests/fixtures/cpp.cpp"),
        ),
        fun("main"),
    ];
    let other = lib("other_leak_site", "other_leak", "libdlother.so");
    let dl = lib("lib_leak_site", "dl_leak", "libdlleak.so");
    let thread = vec![
        frame(
            Some("thread_leak_site"),
            None,
            Some("/w/tests/fixtures/threads.c"),
        ),
        fun("worker"),
        fun("start_thread"),
    ];
    Fixtures {
        strdup,
        widget,
        cpp,
        other,
        dl,
        thread,
    }
}

/// The names of the entries of `text` that match the stack.
fn names(text: &str, st: &[Frame], func: Option<Func>) -> Vec<String> {
    p(text)
        .entries
        .iter()
        .filter(|e| e.matches(st, func))
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn example_files_target_fixture_stacks() {
    valgrind_example_targets();
    lsan_example_targets();
    memtrace_example_targets();
}

fn valgrind_example_targets() {
    let Fixtures {
        strdup,
        widget,
        cpp,
        other,
        dl,
        thread,
    } = fixtures();
    use Func::*;
    let vg = include_str!("../../../../tests/suppressions/valgrind.supp");
    assert_eq!(
        names(vg, &heap("leak_malloc"), Some(Malloc)),
        ["heap-leak_malloc"]
    );
    assert_eq!(names(vg, &strdup, Some(Malloc)), ["heap-leak_strdup"]);
    assert_eq!(
        names(vg, &heap("leak_calloc"), Some(Calloc)),
        ["heap-leak_calloc"]
    );
    for f in [PosixMemalign, AlignedAlloc, Memalign, Valloc] {
        assert_eq!(
            names(vg, &heap("leak_aligned"), Some(f)),
            ["heap-leak_aligned"],
            "{f:?}"
        );
    }
    assert_eq!(names(vg, &cpp, Some(NewArray)), ["cpp-leak_cpp"]);
    assert_eq!(names(vg, &other, Some(Malloc)), ["dlopen-other_leak_site"]);
    assert_eq!(
        names(vg, &thread, Some(Malloc)),
        ["threads-thread_leak_site"]
    );
    assert!(names(vg, &heap("leak_realloc_chain"), Some(Realloc)).is_empty());
    assert!(names(vg, &widget, Some(New)).is_empty());
    assert!(names(vg, &dl, Some(Malloc)).is_empty());
}

fn lsan_example_targets() {
    let Fixtures {
        widget, other, dl, ..
    } = fixtures();
    use Func::*;
    let lsan = include_str!("../../../../tests/suppressions/lsan.supp");
    assert_eq!(
        names(lsan, &heap("leak_realloc_chain"), Some(Realloc)),
        ["leak_realloc_chain"]
    );
    assert_eq!(
        names(lsan, &heap("leak_reallocarray"), Some(Reallocarray)),
        ["^leak_reallocarray$"]
    );
    assert_eq!(names(lsan, &dl, Some(Malloc)), ["libdlleak.so"]);
    assert_eq!(names(lsan, &widget, Some(New)), ["ns::Widget::make"]);
    assert!(names(lsan, &heap("leak_malloc"), Some(Malloc)).is_empty());
    assert!(names(lsan, &other, Some(Malloc)).is_empty());
}

fn memtrace_example_targets() {
    let Fixtures {
        cpp, dl, thread, ..
    } = fixtures();
    use Func::*;
    let mt = include_str!("../../../../tests/suppressions/memtrace.supp");
    let pv = vec![
        frame(
            Some("leak_pvalloc"),
            None,
            Some("/w/tests/fixtures/pvalloc.c"),
        ),
        fun("main"),
    ];
    assert_eq!(names(mt, &pv, Some(Pvalloc)), ["pvalloc"]);
    assert_eq!(names(mt, &thread, Some(Malloc)), ["threads"]);
    assert_eq!(names(mt, &cpp, Some(NewArray)), ["cpp-array"]);
    assert_eq!(names(mt, &dl, Some(Malloc)), ["dlopen-unloaded"]);
    let mmap = |f: &str| {
        vec![
            frame(Some(f), None, Some("/w/tests/fixtures/mmap.c")),
            fun("main"),
        ]
    };
    assert_eq!(
        names(mt, &mmap("mmap_partial_site"), Some(Mmap)),
        ["mmap-partial"]
    );
    assert!(names(mt, &mmap("mmap64_site"), Some(Mmap64)).is_empty());
    assert!(names(mt, &heap("leak_malloc"), Some(Malloc)).is_empty());
    let mp = p(mt);
    let partial = mp
        .entries
        .iter()
        .find(|e| e.name == "mmap-partial")
        .unwrap();
    assert_eq!(partial.limit, Some(20480));
    let threads = mp.entries.iter().find(|e| e.name == "threads").unwrap();
    assert_eq!(threads.limit, Some(4096));
}
