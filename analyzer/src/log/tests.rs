//! Tests of opening, indexing and merging logs, and of the SIGBUS guard.

use std::fs::File;

use memtrace_format::CHUNK_HEADER_SIZE;

use super::*;
use crate::testlog::*;

fn times(log: &Log) -> Vec<(u64, usize, bool)> {
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    log.merge(&idx)
        .map(|e| e.unwrap())
        .filter(|e| e.record.time().is_some())
        .map(|e| (e.time - T0, e.stream, e.realloc_end))
        .collect()
}

/// Streams are merged by time; each stream keeps its file order; a realloc appears at both of its times.
#[test]
fn merge_orders_streams_by_time() {
    let mut b = LogBuilder::new();
    let mut c0 = LogBuilder::chunk(T0);
    c0.alloc(T0 + 1, 0x10, 1, 0).alloc(T0 + 5, 0x20, 1, 0);
    let mut c1 = LogBuilder::chunk(T0);
    c1.alloc(T0 + 2, 0x30, 1, 0)
        .realloc(T0 + 3, T0 + 7, 0x30, 0x40, 2, 0);
    let mut c2 = LogBuilder::chunk(T0 + 8);
    c2.free(T0 + 9, 0x10);
    b.push(0, &c0).push(1, &c1).push(0, &c2);
    let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
    assert_eq!(
        times(&log),
        vec![
            (1, 0, false),
            (2, 1, false),
            (3, 1, false),
            (5, 0, false),
            (7, 1, true),
            (9, 0, false)
        ]
    );
}

/// Events of different streams at the same time come out in stream order,
/// also when the stream just taken has the tie (the hot stream's shortcut).
#[test]
fn merge_breaks_ties_by_stream() {
    let mut b = LogBuilder::new();
    let mut c0 = LogBuilder::chunk(T0);
    c0.alloc(T0 + 7, 0x10, 1, 0);
    let mut c1 = LogBuilder::chunk(T0);
    c1.alloc(T0 + 1, 0x20, 1, 0).alloc(T0 + 7, 0x30, 1, 0);
    b.push(0, &c0).push(1, &c1);
    let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
    assert_eq!(
        times(&log),
        vec![(1, 1, false), (7, 0, false), (7, 1, false)]
    );
}

/// A chunk whose seq says it comes first is read first even if it lies later in the file.
#[test]
fn chunks_follow_seq() {
    let mut b = LogBuilder::new();
    let mut first = LogBuilder::chunk(T0);
    first.alloc(T0 + 1, 0x10, 1, 0);
    let mut second = LogBuilder::chunk(T0 + 2);
    second.alloc(T0 + 3, 0x20, 1, 0);
    b.push(0, &first).push(0, &second);
    // Swap the two chunks in the file.
    let (a, rest) = b.bytes.split_at(4096 + 4096);
    let mut swapped = a[..4096].to_vec();
    swapped.extend_from_slice(rest);
    swapped.extend_from_slice(&a[4096..]);
    let log = Log::from_bytes(Path::new("t.mtr"), &swapped);
    assert_eq!(times(&log), vec![(1, 0, false), (3, 0, false)]);
}

/// Empty slots are counted and skipped; a garbage chunk header is an error naming the file.
#[test]
fn empty_slots_and_bad_chunks() {
    let mut b = LogBuilder::new();
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, 1, 0);
    b.empty_slot().push(0, &c);
    let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    assert_eq!(idx.empty_slots, 1);
    assert_eq!(log.merge(&idx).count(), 1);

    b.bytes[4096] = b'X';
    let log = Log::from_bytes(Path::new("bad.mtr"), &b.bytes);
    let h = log.header().unwrap();
    let err = log.index(&h).unwrap_err().to_string();
    assert!(
        err.contains("bad.mtr") && err.contains("corrupt chunk"),
        "{err}"
    );
}

/// A corrupt record in an intact chunk is an error; the same damage at a truncated end is not.
#[test]
fn corrupt_record_vs_truncation() {
    let mut b = LogBuilder::new();
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, 1, 0);
    let n = c.body.len();
    c.alloc(T0 + 2, 0x20, 1, 0);
    b.push(0, &c);
    let mut bad = b.bytes.clone();
    // Second record's length points past the chunk.
    let o = 4096 + CHUNK_HEADER_SIZE + n;
    bad[o..o + 2].copy_from_slice(&60000u16.to_le_bytes());
    let log = Log::from_bytes(Path::new("c.mtr"), &bad);
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    let err = log.merge(&idx).find_map(|e| e.err()).expect("an error");
    assert!(err.to_string().contains("corrupt record"), "{err}");

    // Cut the file in the middle of the second record.
    let cut = &b.bytes[..o + 5];
    let log = Log::from_bytes(Path::new("t.mtr"), cut);
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    assert!(idx.truncated);
    let mut m = log.merge(&idx);
    assert_eq!(m.by_ref().collect::<Result<Vec<_>>>().unwrap().len(), 1);
    assert_eq!(m.cut_records(), 1);
}

/// A stream longer than the release window read from a real file: the
/// consumed pages are released as it goes and every record still comes out.
#[test]
fn releases_consumed_pages_of_a_mapped_file() {
    let mut b = LogBuilder::new();
    let mut n = 0;
    for k in 0..3 {
        let mut c = LogBuilder::chunk(T0 + k * 1_000_000);
        for i in 0..40_000u64 {
            c.alloc(T0 + k * 1_000_000 + i, 0x1000 + i * 16, 8, 1);
            n += 1;
        }
        b.push(0, &c);
    }
    assert!(b.bytes.len() > 2 * RELEASE_WINDOW);
    let dir = std::env::temp_dir().join(format!("memtrace-log-release-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("big.mtr");
    std::fs::write(&p, &b.bytes).unwrap();
    let log = Log::open(&p).unwrap();
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    for _ in 0..2 {
        assert_eq!(log.merge(&idx).filter(|e| e.is_ok()).count(), n);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A log of three 40,000-record chunks written to `dir/name`.
fn big_log_file(dir: &Path, name: &str) -> (PathBuf, usize) {
    let mut b = LogBuilder::new();
    let mut n = 0;
    for k in 0..3 {
        let mut c = LogBuilder::chunk(T0 + k * 1_000_000);
        for i in 0..40_000u64 {
            c.alloc(T0 + k * 1_000_000 + i, 0x1000 + i * 16, 8, 1);
            n += 1;
        }
        b.push(0, &c);
    }
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, &b.bytes).unwrap();
    (p, n)
}

fn shrank_message(p: &Path) -> String {
    format!(
        "{}: the file shrank while it was being read (truncated by another process)",
        p.display()
    )
}

/// A file truncated by another process after it was indexed: the pages
/// past the new end would raise SIGBUS; the merge reads zeros instead and
/// ends with the one-line error, and so does every later pass.
#[test]
fn truncated_while_merging_is_an_error_not_sigbus() {
    let dir = std::env::temp_dir().join(format!("memtrace-log-shrink-{}", std::process::id()));
    let (p, n) = big_log_file(&dir, "shrink.mtr");
    let log = Log::open(&p).unwrap();
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    assert!(!log.shrank());
    // The index walk released its pages: the merge faults them in again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(3 * 4096)
        .unwrap();
    let mut ok = 0;
    let mut errs = Vec::new();
    for ev in log.merge(&idx) {
        match ev {
            Ok(_) => ok += 1,
            Err(e) => errs.push(e.to_string()),
        }
    }
    assert_eq!(errs, vec![shrank_message(&p)]);
    assert!(
        ok < n,
        "{ok} of {n} records read from a file cut to 3 pages"
    );
    assert!(log.shrank());
    assert_eq!(log.index(&h).unwrap_err().to_string(), shrank_message(&p));
    // Another log opened afterwards is not affected.
    let (q, _) = big_log_file(&dir, "intact.mtr");
    let other = Log::open(&q).unwrap();
    let oh = other.header().unwrap();
    let oidx = other.index(&oh).unwrap();
    assert_eq!(other.merge(&oidx).filter(|e| e.is_ok()).count(), n);
    assert!(!other.shrank());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Truncated after it was opened, before anything was read: the whole
/// pipeline (header, index, catalog, replays) ends with the one-line error.
#[test]
fn truncated_before_analysis_is_an_error_not_sigbus() {
    let dir = std::env::temp_dir().join(format!("memtrace-log-shrink2-{}", std::process::id()));
    let (p, _) = big_log_file(&dir, "shrink.mtr");
    let log = Log::open(&p).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(2 * 4096)
        .unwrap();
    let err = crate::report::analyze_log(
        &log,
        &crate::Options::default(),
        crate::analysis::symbolize::Symbolizer::disabled(),
    )
    .expect_err("an error");
    assert_eq!(err.to_string(), shrank_message(&p));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A SIGBUS outside every log mapping still kills the process, as it
/// would without the handler: the test runs itself in a child that maps
/// a file of its own, truncates it and reads past its end, once a log is
/// open (the handler installed).
#[test]
fn foreign_sigbus_still_kills() {
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("memtrace-log-foreign-{}", std::process::id()));
    if std::env::var_os("MEMTRACE_TEST_FOREIGN_SIGBUS").is_some() {
        let dir = PathBuf::from(std::env::var_os("MEMTRACE_TEST_FOREIGN_SIGBUS").unwrap());
        let (p, _) = big_log_file(&dir, "guarded.mtr");
        let log = Log::open(&p).unwrap();
        assert!(log.bus.is_some(), "the log is guarded");
        let q = dir.join("foreign");
        std::fs::write(&q, vec![1u8; 1 << 16]).unwrap();
        let f = File::open(&q).unwrap();
        // SAFETY: a read-only mapping of our own file; the read past
        // its new end is the SIGBUS under test.
        let map = unsafe { Mmap::map(&f) }.unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&q)
            .unwrap()
            .set_len(0)
            .unwrap();
        // SAFETY: inside the mapping; the page is gone from the file.
        let v = unsafe { std::ptr::read_volatile(map.as_ptr().add(8192)) };
        // Reached only if the handler swallowed the fault.
        std::process::exit(i32::from(v) + 50);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "log::tests::foreign_sigbus_still_kills",
            "--nocapture",
        ])
        .env("MEMTRACE_TEST_FOREIGN_SIGBUS", &dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGBUS),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// More streams than [`SWEEP_STREAMS`], interleaved record by record: the
/// merge sweeps the mapping as it goes and still yields every record in
/// time order.
#[test]
fn many_streams_sweep() {
    let n = SWEEP_STREAMS as u64 + 200;
    let mut b = LogBuilder::new();
    for s in 0..n {
        let mut c = LogBuilder::chunk(T0);
        for k in 0..20 {
            c.alloc(T0 + 1 + k * n + s, 0x1000 + (s * 20 + k) * 16, 8, 1);
        }
        b.push(s as u32, &c);
    }
    let dir = std::env::temp_dir().join(format!("memtrace-log-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("streams.mtr");
    std::fs::write(&p, &b.bytes).unwrap();
    let log = Log::open(&p).unwrap();
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    let times: Vec<u64> = log.merge(&idx).map(|e| e.unwrap().time - T0).collect();
    assert_eq!(times, (1..=20 * n).collect::<Vec<_>>());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The decoding thread's hand-off (the path of every log over a MiB)
/// gives the consumer the merge's own events, in its order: allocations
/// and frees (which cross in slim form), sampled allocations, reallocs
/// at both times, mappings and stacks, from two streams, raw and packed.
#[test]
fn hand_off_yields_the_merge() {
    let mut b = LogBuilder::new();
    for k in 0..12u64 {
        for stream in 0..2u32 {
            let base = T0 + k * 1_000_000 + stream as u64;
            let mut c = LogBuilder::chunk(base);
            if k == 0 {
                c.stack(1 + stream, &[0x1000, 0x2000 + stream as u64]);
            }
            for i in 0..4_000u64 {
                let t = base + 2 + i * 16;
                let a = 0x10_0000 + ((stream as u64) << 32) + (k * 4_000 + i) * 64;
                match i % 8 {
                    0 => c.sampled(t, a, 48, 1 + stream, 2),
                    1 => c.realloc(t, t + 3, a - 64, a, 96, 1 + stream),
                    2 => c.mmap(t, a << 4, 8192, 0x22, 1 + stream),
                    3 | 5 => c.free(t, a - 128),
                    _ => c.alloc(t, a, 16 + i % 300, 1 + stream),
                };
            }
            b.push(stream, &c);
        }
    }
    b.ended(T0 + 20_000_000);
    let raw = Log::from_bytes(Path::new("handoff.mtr"), &b.bytes);
    let mut packed = std::io::Cursor::new(Vec::new());
    crate::pack::pack(&raw, &mut packed).unwrap();
    let packed = packed.into_inner();
    let packed_log = Log::from_bytes(Path::new("handoff.mtz"), &packed);
    for log in [&raw, &packed_log] {
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let merged: Vec<_> = log
            .merge(&idx)
            .map(|e| {
                let e = e.unwrap();
                (e.chunk_offset, event_key(&e))
            })
            .collect();
        let mut handed = Vec::new();
        // Handed off whatever the log's size.
        handoff::hand_off(log, &idx, 0, |e, _| {
            handed.push((e.chunk_offset, event_key(e)));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            merged.len(),
            12 * 2 * 4_000 + 2 + 12 * 2 * 500,
            "{}",
            log.is_packed()
        );
        assert!(handed == merged, "packed: {}", log.is_packed());
    }
}
