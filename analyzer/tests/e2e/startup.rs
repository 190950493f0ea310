//! ctor.c, jemalloc.c, rpath_main.c: what happens around the program rather than in it:
//! allocations before main, an allocator brought by the program, and the dynamic linker's
//! view of who called dlopen; and what libmemtrace.so itself brings into every process.

use crate::util::{fixture, trace};

const NO_ARGS: &[&str] = &[];

// Allocations made by constructors (before main) are recorded: memtrace is initialised first.
#[test]
fn constructor_allocations_are_recorded() {
    let t = trace("ctor", NO_ARGS);
    t.assert_exit(0);
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_leak("heap", "ctor_leak_site", 123, 1);
    r.assert_leak("heap", "main_leak_site", 10, 1);
    r.assert_heap_leaked(133, 2);
    assert_eq!(r.summary("allocations"), 3, "allocations");
    assert_eq!(r.summary("frees"), 1, "frees");
    assert_eq!(r.summary("bytes_allocated"), 183, "bytes_allocated");
    assert_eq!(
        r.summary("unknown_frees"),
        0,
        "no frees of blocks from before tracing"
    );
}

// A program linked against jemalloc keeps jemalloc (mallctl works), and memtrace records
// its allocations exactly.
#[test]
fn jemalloc_program_keeps_its_allocator() {
    let t = trace("jemalloc", NO_ARGS);
    t.assert_exit(0);
    assert!(
        t.stdout().contains("allocator=jemalloc"),
        "the program must still run on jemalloc: {}",
        t.describe()
    );
    let r = t.report();
    r.assert_complete();
    r.assert_no_nested_hooks();
    r.assert_leak("heap", "je_leak_site", 300, 3);
    r.assert_leak("heap", "je_strdup_site", 19, 1);
    r.assert_heap_leaked(319, 4);
    assert_eq!(r.summary("allocations"), 1008, "allocations");
    assert_eq!(r.summary("frees"), 1004, "frees");
}

// dlopen by bare name through the program's RUNPATH still works under memtrace (the hook
// keeps the caller's return address), and the library's leak is attributed to it.
#[test]
fn dlopen_uses_the_callers_runpath() {
    // Build the library next to the program: RUNPATH is $ORIGIN.
    let lib = fixture("libdlleak");
    let prog = fixture("rpath_main");
    assert_eq!(lib.parent(), prog.parent(), "fixtures share a directory");
    let t = trace("rpath_main", NO_ARGS);
    t.assert_exit(0);
    assert!(t.stdout().contains("found"), "{}", t.describe());
    let r = t.report();
    r.assert_complete();
    r.assert_leak("heap", "lib_leak_site", 666, 2);
}

// libmemtrace.so is loaded into every process of a traced tree, so each shared object it
// needs is opened, mapped and relocated once more per process (libm alone measured about
// 0.1 ms per /bin/true). It needs the C library, the dynamic linker and libgcc's unwinder
// (which Rust's standard library links, and the unwinder cross-check calls) — nothing else.
#[test]
fn library_needs_only_libc_and_the_unwinder() {
    use object::elf;
    use object::read::elf::{Dyn, FileHeader};
    let data = std::fs::read(crate::util::preload_lib()).expect("read libmemtrace.so");
    let data = &data[..];
    let hdr = elf::FileHeader64::<object::Endianness>::parse(data).expect("an ELF file");
    let endian = hdr.endian().expect("endianness");
    let sections = hdr.sections(endian, data).expect("section table");
    let (dynamic, link) = sections
        .dynamic(endian, data)
        .expect("dynamic section")
        .expect("a shared object has one");
    let strings = sections.strings(endian, data, link).expect("its strings");
    let mut needed: Vec<String> = dynamic
        .iter()
        .filter(|d| d.tag32(endian) == Some(elf::DT_NEEDED))
        .map(|d| String::from_utf8_lossy(d.string(endian, strings).expect("name")).into_owned())
        .collect();
    needed.sort();
    assert_eq!(
        needed,
        ["ld-linux-x86-64.so.2", "libc.so.6", "libgcc_s.so.1"],
        "DT_NEEDED of libmemtrace.so"
    );
}
