//! The report's tests: whole analyses of small logs, damaged ones included.

use std::path::{Path, PathBuf};

use super::*;
use crate::testlog::*;
use memtrace_format::hdr::off;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memtrace-report-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A clean log: process fields, wait status, leaks with unresolved stacks.
#[test]
fn analyze_small_log() {
    let mut c = LogBuilder::chunk(T0);
    c.stack(1, &[0x1234, 0x5678])
        .alloc(T0 + 2_000_000, 0x10, 40, 1)
        .alloc(T0 + 3_000_000, 0x20, 2, 9);
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(T0 + 5_000_000);
    b.set_u32(off::RUN_FLAGS, 1)
        .set_u32(off::RUN_WAIT_STATUS, 3 << 8);
    let d = tmpdir("small");
    let p = write(&d, "a.mtr", &b.bytes);
    let r = analyze(&p, &Options::default()).unwrap();
    assert_eq!(r.process.cmdline, vec!["prog", "arg"]);
    assert_eq!(r.process.ended, Ended::Exit);
    assert_eq!(r.process.exit_status, Some(3));
    assert_eq!(r.process.duration_ms, 5.0);
    assert_eq!(r.summary.peak_heap_time_ms, 3.0);
    assert_eq!(r.heap_leaks.len(), 2);
    assert_eq!(r.heap_leaks[0].stack.len(), 2);
    assert_eq!(r.heap_leaks[0].stack[0].address, 0x1234);
    assert!(r.heap_leaks[1].stack.is_empty());
    assert!(!r.summary.ended_abnormally && !r.summary.truncated);
    std::fs::remove_dir_all(d).unwrap();
}

/// REACH records: a log with the heuristic codes gives each leak and the summary the
/// heuristics' breakdown of its still reachable blocks (a block listed under a
/// heuristic only is still reachable too); one without them (older logs) gives an
/// empty one. The text and JSON reports say it.
#[test]
fn reach_records_with_heuristics() {
    use memtrace_format::{encode, kernel::*};
    let with = |heur: bool| -> Report {
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234])
            .stack(2, &[0x5678])
            .alloc(T0 + 1, 0x1000, 88, 1)
            .alloc(T0 + 2, 0x2000, 56, 1)
            .alloc(T0 + 3, 0x3000, 8, 1)
            .alloc(T0 + 4, 0x4000, 72, 2);
        c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_POSSIBLE, 0x4000]))
            .put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE, 0x1000, 0x1000]));
        if heur {
            c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE_NEWARRAY, 0x1000]))
                .put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE_LENGTH64, 0x3000]));
        } else {
            c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE, 0x3000]));
        }
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        analyze_bytes(&b.bytes, &Options::default()).unwrap()
    };
    let r = with(true);
    assert_eq!(
        r.summary.leak_kinds,
        Some([(0, 0), (0, 0), (72, 1), (152, 3)])
    );
    assert_eq!(r.summary.leak_heuristics, [(0, 0), (8, 1), (88, 1), (0, 0)]);
    let one = r.heap_leaks.iter().find(|s| s.bytes == 152).unwrap();
    assert_eq!(one.heuristics, [(0, 0), (8, 1), (88, 1), (0, 0)]);
    assert_eq!(
        kinds_text_via(one.kinds.as_ref().unwrap(), &one.heuristics),
        "152 bytes in 3 blocks still reachable, of which via heuristic length64: 8 bytes \
         in 1 block, newarray: 88 bytes in 1 block"
    );
    let two = r.heap_leaks.iter().find(|s| s.bytes == 72).unwrap();
    assert_eq!(two.heuristics, Heurs::default());
    let mut text = Vec::new();
    crate::render::text::render(&r, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(
            "    still reachable: 152 bytes in 3 blocks\n\
             \x20                      of which reachable via heuristic:\n\
             \x20                        length64           : 8 bytes in 1 block\n\
             \x20                        newarray           : 88 bytes in 1 block\n"
        ),
        "{text}"
    );
    let mut json = Vec::new();
    crate::render::json::render(&r, &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v["summary"]["leak_kinds"]["reachable"],
        serde_json::json!({"bytes": 152, "count": 3, "heuristics": {
            "length64": {"bytes": 8, "count": 1}, "newarray": {"bytes": 88, "count": 1}}})
    );
    assert_eq!(
        v["summary"]["leak_kinds"]["possible"],
        serde_json::json!({"bytes": 72, "count": 1})
    );

    let old = with(false);
    assert_eq!(old.summary.leak_kinds, r.summary.leak_kinds);
    assert_eq!(old.summary.leak_heuristics, Heurs::default());
    let mut text = Vec::new();
    crate::render::text::render(&old, &mut text).unwrap();
    assert!(!String::from_utf8(text).unwrap().contains("heuristic"));
    let mut json = Vec::new();
    crate::render::json::render(&old, &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v["summary"]["leak_kinds"]["reachable"]["heuristics"],
        serde_json::json!({})
    );
}

/// A truncated log still reports and says so; bad inputs are errors naming the file.
#[test]
fn truncated_and_bad_inputs() {
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, 40, 1);
    let mut b = LogBuilder::new();
    b.push(0, &c).empty_slot();
    let d = tmpdir("bad");
    let p = write(&d, "trunc.mtr", &b.bytes[..8192 + 100]);
    let r = analyze(&p, &Options::default()).unwrap();
    assert!(r.summary.truncated && r.summary.ended_abnormally);
    assert_eq!(r.summary.leaked_heap_bytes, 40);
    assert!(r.warnings[0].contains("truncated"));

    let cases: [(&str, &[u8], &str); 5] = [
        ("empty.mtr", b"", "empty file"),
        (
            "text.mtr",
            b"hello world, this is not a log",
            "not a memtrace log",
        ),
        ("short.mtr", &b.bytes[..100], "truncated inside the header"),
        (
            "v2.mtr",
            &{
                let mut v = b.bytes.clone();
                v[8] = 2;
                v
            },
            "version 2",
        ),
        (
            "chunk.mtr",
            &{
                let mut v = b.bytes.clone();
                v[4096] ^= 0xff;
                v
            },
            "corrupt chunk",
        ),
    ];
    for (name, bytes, msg) in cases {
        let p = write(&d, name, bytes);
        let e = analyze(&p, &Options::default()).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(msg), "{name}: {e}");
    }
    let e = analyze(&d.join("missing.mtr"), &Options::default()).unwrap_err();
    assert!(e.to_string().contains("missing.mtr"));
    std::fs::remove_dir_all(d).unwrap();
}

/// In-memory analysis: every prefix and many byte flips of a small log give
/// a report or an error, never a panic.
#[test]
fn analyze_bytes_on_damaged_logs() {
    let mut c = LogBuilder::chunk(T0);
    c.stack(1, &[0x1234, 0x5678])
        .alloc(T0 + 2, 0x10, 40, 1)
        .realloc(T0 + 3, T0 + 4, 0x10, 0x20, 80, 1)
        .mmap(T0 + 5, 0x7000_0000, 8192, 0x22, 1)
        .munmap(T0 + 6, 0x7000_1000, 4096);
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(T0 + 10);
    let r = analyze_bytes(&b.bytes, &Options::default()).unwrap();
    assert_eq!(r.summary.leaked_heap_bytes, 80);
    assert_eq!(r.heap_leaks[0].stack.len(), 2);
    let body = 4096 + memtrace_format::CHUNK_HEADER_SIZE;
    for cut in (0..b.bytes.len())
        .step_by(97)
        .chain(body..body + c.body.len())
    {
        let _ = analyze_bytes(&b.bytes[..cut], &Options::default());
    }
    for i in body..body + c.body.len() {
        for bit in 0..8 {
            let mut v = b.bytes.clone();
            v[i] ^= 1 << bit;
            let _ = analyze_bytes(&v, &Options::default());
        }
    }
}

/// Every input of the fuzz corpus of the `analyze` target, and every crash
/// the fuzzer ever saved, goes through the pipeline without a panic (on
/// stable, in a debug build: integer overflow panics here too).
#[test]
fn fuzz_corpus_and_artifacts() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/analyze", "artifacts/analyze"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        for e in entries {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            if let Ok(r) = analyze_bytes(&bytes, &Options::default()) {
                crate::render::text::render(&r, &mut std::io::sink()).unwrap();
                crate::render::json::render(&r, &mut std::io::sink()).unwrap();
            }
            n += 1;
        }
    }
    assert!(n > 0, "no corpus in {}", fuzz.display());
}

/// `--from`/`--to`: the window is `[from, to)` — a block allocated at `from`
/// counts, one allocated at `to` does not, a free at `to` has not happened
/// yet — and the exit's kinds apply only to a window reaching the end.
#[test]
fn window_bounds_and_kinds() {
    use crate::report::window::{Asked, Moment};
    use memtrace_format::{encode, kernel::*};
    const MS: u64 = 1_000_000;
    let mut c = LogBuilder::chunk(T0);
    c.stack(1, &[0x1234])
        .stack(2, &[0x5678])
        .alloc(T0 + MS, 0x1000, 10, 1) // before the window
        .alloc(T0 + 2 * MS, 0x2000, 20, 2) // at `from`
        .alloc(T0 + 3 * MS, 0x3000, 30, 2) // freed in the window
        .free(T0 + 4 * MS, 0x3000)
        .free(T0 + 5 * MS, 0x2000) // at `to`: not yet
        .alloc(T0 + 5 * MS, 0x5000, 50, 1); // at `to`: not in it
    // Both still reachable at exit (addresses delta-encoded: 0x1000, 0x5000).
    c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE, 0x1000, 0x4000]));
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(T0 + 10 * MS);
    let at = |ms: u64| Some(Moment::Since(ms * MS));
    let with = |from, to| {
        let window = Asked { from, to };
        analyze_bytes(
            &b.bytes,
            &Options {
                window,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let r = with(at(2), at(5));
    let w = r.summary.window.clone().unwrap();
    assert_eq!((w.from_ns, w.to_ns, w.end_ns), (2 * MS, 5 * MS, 10 * MS));
    assert!(w.before_end());
    assert_eq!((w.allocations, w.frees, w.bytes_allocated), (2, 1, 50));
    assert_eq!((w.peak_heap_bytes, w.peak_heap_time_ms), (60, 3.0));
    assert_eq!((w.live_bytes, w.live_blocks), (30, 2));
    assert_eq!((w.end_bytes, w.end_blocks), (60, 2));
    assert_eq!(
        (r.summary.leaked_heap_bytes, r.summary.leaked_heap_blocks),
        (20, 1)
    );
    assert_eq!(r.summary.leak_kinds, None);
    assert_eq!(r.heap_leaks.len(), 1);
    assert_eq!((r.heap_leaks[0].bytes, r.heap_leaks[0].kinds), (20, None));
    // The rest of the summary stays the whole run's.
    assert_eq!(r.summary.allocations, 4);

    // To the end (a `--to` past it is the end): the exit's kinds apply.
    for to in [None, at(60)] {
        let r = with(at(2), to);
        let w = r.summary.window.clone().unwrap();
        assert_eq!((w.to_ns, w.before_end()), (10 * MS, false));
        assert_eq!(
            (r.summary.leaked_heap_bytes, r.summary.leaked_heap_blocks),
            (50, 1)
        );
        assert_eq!(
            r.summary.leak_kinds,
            Some([(0, 0), (0, 0), (0, 0), (50, 1)])
        );
        assert_eq!(
            r.heap_leaks[0].kinds,
            Some([(0, 0), (0, 0), (0, 0), (50, 1)])
        );
    }
    // Half of the run: the first 5 ms.
    let r = with(None, Some(Moment::Percent(50.0)));
    let w = r.summary.window.clone().unwrap();
    assert_eq!((w.from_ns, w.to_ns), (0, 5 * MS));
    assert_eq!(
        (r.summary.leaked_heap_bytes, r.summary.leaked_heap_blocks),
        (30, 2)
    );
    // Refused: `--from` after `--to`, and past the end.
    for (from, to) in [(at(4), at(3)), (at(11), None)] {
        let window = Asked { from, to };
        let e = analyze_bytes(
            &b.bytes,
            &Options {
                window,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, crate::Error::Window(_)), "{e}");
    }
}
