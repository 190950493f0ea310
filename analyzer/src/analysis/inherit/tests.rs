//! The inheritance of fork children, on logs built here.

use super::*;
use crate::report::{Options, analyze};
use crate::testlog::*;
use memtrace_format::hdr::off;

fn fork(c: &mut ChunkBuilder, t: u64, pid: u64) {
    let d = c.dt(t);
    c.put(|b| memtrace_format::encode::fork(b, d, pid, 0, b""));
}

/// A log of `pid`, forked from `from` (0: none), started at `start`, ended at `end`.
fn log(pid: u32, from: u32, start: u64, end: u64, c: &ChunkBuilder) -> Vec<u8> {
    let mut b = LogBuilder::new();
    b.set_u32(off::PID, pid)
        .set_u32(off::FORKED_FROM, from)
        .set_u64(off::START_MONO, start);
    b.push(0, c).ended(end);
    b.bytes
}

/// Pid 42 allocates A (40 bytes) and B (60), maps 8 KiB, forks pid 43 (an earlier
/// child had that pid too) and goes on (C, and A freed: after the fork). The child
/// frees B, allocates D (10 bytes) and forks pid 44, which allocates nothing.
fn tree(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut p = LogBuilder::chunk(T0);
    p.stack(1, &[0x1111]).stack(2, &[0x2222]);
    fork(&mut p, T0 + 5, 43);
    p.alloc(T0 + 10, 0xa0, 40, 1)
        .alloc(T0 + 20, 0xb0, 60, 2)
        .mmap(T0 + 25, 0x7000_0000, 8192, 0x22, 2);
    fork(&mut p, T0 + 40, 43);
    p.alloc(T0 + 41, 0xc0, 70, 1).free(T0 + 42, 0xa0);
    let mut c = LogBuilder::chunk(T0 + 45);
    c.stack(1, &[0x9999])
        .free(T0 + 50, 0xb0)
        .alloc(T0 + 51, 0xd0, 10, 1);
    fork(&mut c, T0 + 55, 44);
    let g = LogBuilder::chunk(T0 + 60);
    let paths = (dir.join("p.mtr"), dir.join("c.mtr"), dir.join("g.mtr"));
    std::fs::write(&paths.0, log(42, 0, T0, T0 + 100, &p)).unwrap();
    std::fs::write(&paths.1, log(43, 42, T0 + 45, T0 + 90, &c)).unwrap();
    std::fs::write(&paths.2, log(44, 43, T0 + 60, T0 + 80, &g)).unwrap();
    paths
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memtrace-inherit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (bytes, count, innermost frame) of each heap leak.
fn leaks(r: &crate::Report) -> Vec<(u64, u64, u64)> {
    r.heap_leaks
        .iter()
        .map(|s| (s.bytes, s.count, s.stack.first().map_or(0, |f| f.address)))
        .collect()
}

/// The child starts with A, B and the mapping, cut at its own FORK record (not the
/// earlier child's with the same pid, nor the parent's events after it): B's free is
/// an ordinary free, A and D are its leaks with their own frames.
#[test]
fn child_is_seeded_at_its_fork() {
    let d = tmpdir("child");
    let (p, c, _) = tree(&d);
    let inh = live_at_start(&c, &[]).unwrap().unwrap();
    assert_eq!(inh.parent_log, p);
    assert_eq!((inh.parent_pid, inh.at), (42, T0 + 40));
    assert_eq!(
        (inh.blocks(), inh.bytes(), inh.mmap_bytes()),
        (2, 100, 8192)
    );
    let ids: Vec<u32> = inh.stacks.iter().map(|s| s.id).collect();
    assert_eq!(ids, [FIRST_STACK, FIRST_STACK - 1]);
    assert_eq!(inh.stacks[0].frames, [0x1111]);
    assert_eq!(inh.stacks[0].first_use, Some(T0 + 10));
    assert!(
        live_at_start(&p, &[]).unwrap().is_none(),
        "not a fork child"
    );

    let r = analyze(&c, &Options::default()).unwrap();
    assert_eq!(leaks(&r), [(40, 1, 0x1111), (10, 1, 0x9999)]);
    let s = &r.summary;
    assert_eq!((s.frees, s.unknown_frees, s.allocations), (1, 0, 1));
    assert_eq!((s.inherited_blocks, s.inherited_bytes), (2, 100));
    assert_eq!(s.inherited.as_ref().unwrap().mmap_bytes, 8192);
    assert_eq!((s.peak_heap_bytes, s.leaked_mmap_bytes), (100, 8192));
    assert_eq!(r.mmap_leaks[0].stack[0].address, 0x2222);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    std::fs::remove_dir_all(d).unwrap();
}

/// A block of another thread whose STACK record comes after the cut in the merged
/// order still gets its frames; the pass stops once it has them.
#[test]
fn stack_defined_after_the_cut() {
    let d = tmpdir("late");
    let mut p0 = LogBuilder::chunk(T0);
    p0.stack(1, &[0x1111]).alloc(T0 + 10, 0xa0, 40, 1);
    fork(&mut p0, T0 + 40, 43);
    let mut p1 = LogBuilder::chunk(T0 + 20);
    p1.alloc(T0 + 30, 0xe0, 5, 3)
        .alloc(T0 + 60, 0xf0, 6, 1)
        .stack(3, &[0x3333]);
    let mut b = LogBuilder::new();
    b.push(0, &p0).push(1, &p1).ended(T0 + 100);
    std::fs::write(d.join("p.mtr"), &b.bytes).unwrap();
    let c = LogBuilder::chunk(T0 + 45);
    let child = d.join("c.mtr");
    std::fs::write(&child, log(43, 42, T0 + 45, T0 + 90, &c)).unwrap();
    let inh = live_at_start(&child, &[]).unwrap().unwrap();
    let frames: Vec<&[u64]> = inh.stacks.iter().map(|s| &s.frames[..]).collect();
    assert_eq!(frames, [&[0x1111][..], &[0x3333][..]]);
    assert_eq!((inh.blocks(), inh.bytes()), (2, 45));
    std::fs::remove_dir_all(d).unwrap();
}

/// The grandchild inherits through the child: the parent's A and the child's D.
#[test]
fn grandchild_inherits_through_its_parent() {
    let d = tmpdir("grand");
    let (_, c, g) = tree(&d);
    let inh = live_at_start(&g, &[]).unwrap().unwrap();
    assert_eq!(
        (inh.parent_log.as_path(), inh.parent_pid),
        (c.as_path(), 43)
    );
    let r = analyze(&g, &Options::default()).unwrap();
    assert_eq!(leaks(&r), [(40, 1, 0x1111), (10, 1, 0x9999)]);
    assert_eq!(r.summary.leaked_mmap_bytes, 8192);
    assert_eq!(
        (r.summary.inherited_blocks, r.summary.inherited_bytes),
        (2, 50)
    );
    std::fs::remove_dir_all(d).unwrap();
}

/// Without the parent's log: an error for live_at_start, one warning in the report,
/// which holds only the child's own events. A log given as a peer is found first;
/// one of the wrong lifetime is not the parent.
#[test]
fn missing_parent_and_peers() {
    let d = tmpdir("missing");
    let (p, c, _) = tree(&d);
    let alone = d.join("alone");
    std::fs::create_dir(&alone).unwrap();
    let c2 = alone.join("c.mtr");
    std::fs::copy(&c, &c2).unwrap();
    let e = live_at_start(&c2, &[]).unwrap_err().to_string();
    assert!(e.contains("its parent (pid 42) was not found"), "{e}");
    let r = analyze(&c2, &Options::default()).unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.summary.inherited.is_none());
    assert_eq!((r.summary.frees, r.summary.unknown_frees), (0, 1));
    assert_eq!(leaks(&r), [(10, 1, 0x9999)]);

    let inh = live_at_start(&c2, std::slice::from_ref(&p))
        .unwrap()
        .unwrap();
    assert_eq!(inh.parent_log, p);
    let opts = Options {
        peers: vec![p.clone()],
        ..Default::default()
    };
    assert_eq!(analyze(&c2, &opts).unwrap().summary.inherited_blocks, 2);
    let r = analyze(
        &c2,
        &Options {
            no_inherit: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.warnings.is_empty() && r.summary.inherited.is_none());

    // A log of pid 42 that ended before the child started is not its parent.
    let mut early = std::fs::read(&p).unwrap();
    early[off::END_MONO..off::END_MONO + 8].copy_from_slice(&(T0 + 44).to_le_bytes());
    let e2 = alone.join("early.mtr");
    std::fs::write(&e2, early).unwrap();
    assert!(live_at_start(&c2, &[]).is_err());
    std::fs::remove_dir_all(d).unwrap();
}

/// The blocks alone (`blocks::at_start`, the exit scan's) are the full inheritance's,
/// by address and size, for the child, the grandchild, a block whose stack is defined
/// after the cut, and a parent's log given as a peer; none for a process that is no
/// fork child, for a parent's log that is not found, or one over the size limit.
#[test]
fn blocks_alone_are_the_full_inheritances() {
    let d = tmpdir("blocks");
    let (p, c, g) = tree(&d);
    let by_full = |log: &Path, peers: &[PathBuf]| -> Vec<(u64, u64)> {
        let inh = live_at_start(log, peers).unwrap().unwrap();
        inh.seed.blocks.iter().map(|(a, b)| (*a, b.size)).collect()
    };
    let alone = |log: &Path, peers: &[PathBuf], max: u64| -> Option<Vec<(u64, u64)>> {
        let l = Log::open(log).unwrap();
        let h = l.header().unwrap();
        blocks::at_start(log, &h, peers, max)
    };
    assert_eq!(alone(&c, &[], u64::MAX).unwrap(), [(0xa0, 40), (0xb0, 60)]);
    assert_eq!(alone(&c, &[], u64::MAX).unwrap(), by_full(&c, &[]));
    assert_eq!(alone(&g, &[], u64::MAX).unwrap(), [(0xa0, 40), (0xd0, 10)]);
    assert_eq!(alone(&g, &[], u64::MAX).unwrap(), by_full(&g, &[]));
    assert_eq!(alone(&p, &[], u64::MAX), None, "not a fork child");
    let size = std::fs::metadata(&p).unwrap().len();
    assert_eq!(
        alone(&c, &[], size - 1),
        None,
        "the parent's log is too large"
    );
    assert!(alone(&c, &[], size).is_some());

    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let c2 = elsewhere.join("c.mtr");
    std::fs::copy(&c, &c2).unwrap();
    assert_eq!(alone(&c2, &[], u64::MAX), None, "no parent's log beside it");
    assert_eq!(
        alone(&c2, std::slice::from_ref(&p), u64::MAX).unwrap(),
        [(0xa0, 40), (0xb0, 60)]
    );

    // Another thread's block whose STACK record comes after the cut.
    let mut p0 = LogBuilder::chunk(T0);
    p0.stack(1, &[0x1111]).alloc(T0 + 10, 0xa0, 40, 1);
    fork(&mut p0, T0 + 40, 43);
    let mut p1 = LogBuilder::chunk(T0 + 20);
    p1.alloc(T0 + 30, 0xe0, 5, 3)
        .realloc(T0 + 35, T0 + 38, 0xe0, 0xe8, 7, 3)
        .alloc(T0 + 60, 0xf0, 6, 1)
        .stack(3, &[0x3333]);
    let mut b = LogBuilder::new();
    b.push(0, &p0).push(1, &p1).ended(T0 + 100);
    let late = d.join("late");
    std::fs::create_dir(&late).unwrap();
    std::fs::write(late.join("p.mtr"), &b.bytes).unwrap();
    let child = late.join("c.mtr");
    std::fs::write(
        &child,
        log(43, 42, T0 + 45, T0 + 90, &LogBuilder::chunk(T0 + 45)),
    )
    .unwrap();
    assert_eq!(
        alone(&child, &[], u64::MAX).unwrap(),
        [(0xa0, 40), (0xe8, 7)]
    );
    assert_eq!(alone(&child, &[], u64::MAX).unwrap(), by_full(&child, &[]));
    std::fs::remove_dir_all(d).unwrap();
}

/// The parent's log is looked for first among the files whose names hold its pid.
#[test]
fn names_holding_the_pid() {
    assert!(holds_number("log.42.mtr", "42"));
    assert!(holds_number("42", "42"));
    assert!(holds_number("x.420.42", "42"));
    assert!(!holds_number("log.420.mtr", "42"));
    assert!(!holds_number("log.142.mtr", "42"));
    assert!(!holds_number("log.mtr", "42"));
}

/// The two ways to the blocks at the cut agree: without merging (`keyed`, for a raw
/// log) and merged (`to_cut`, for a packed one). Four threads allocate, free and
/// reallocate 48 shared addresses with ties in time, and fork pid 43 now and then
/// (more often than the merge keeps copies), in 300 chunks; the child starts at
/// several moments, before, between and after the FORK records. Time goes by in
/// steps of 1 ns (every event inside `keyed`'s side window) and of 40 ms (the cut
/// before the window, FORK records older than FORK_WINDOW).
#[test]
fn keyed_and_merged_cuts_agree() {
    for unit in [1, 40_000_000] {
        keyed_and_merged_agree_in_steps_of(unit);
    }
}

fn keyed_and_merged_agree_in_steps_of(unit: u64) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut below = |n: u64| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    let mut b = LogBuilder::new();
    b.set_u32(off::PID, 42);
    let mut time = [T0; 4];
    for _ in 0..300 {
        let stream = below(4) as usize;
        let mut c = LogBuilder::chunk(time[stream]);
        for _ in 0..40 {
            let t = time[stream] + below(2) * unit;
            time[stream] = t;
            let addr = 0x1000 + 16 * below(48);
            match below(12) {
                0..=3 => c.alloc(t, addr, 1 + below(100), 1),
                4..=6 => c.free(t, addr),
                7 => {
                    fork(&mut c, t, 43);
                    &mut c
                }
                _ => {
                    let new = [0, addr, 0x1000 + 16 * below(48)][below(3) as usize];
                    let after = t + below(2) * unit;
                    time[stream] = after;
                    c.realloc(t, after, [0, addr][below(2) as usize], new, below(4) * 8, 2)
                }
            };
        }
        b.push(stream as u32, &c);
    }
    let end = *time.iter().max().unwrap();
    b.ended(end + 10);
    let log = Log::from_bytes(Path::new("p.mtr"), &b.bytes);
    let h = log.header().unwrap();
    let index = log.index(&h).unwrap();
    let cfg = Config::of(&h);
    let seed = [(0x1000, 5), (0x9000, 7)];
    // Finely over the first 16 FORK records (each a cut of its own), then
    // coarsely to the end.
    let starts = (0..=60u64)
        .map(|i| T0 + (end - T0) * i / 2000)
        .chain((1..=10).map(|i| T0 + (end - T0) * i / 10));
    for start in starts {
        let child = Child {
            pid: 43,
            forked_from: 42,
            start,
        };
        let keyed = blocks::keyed(&log, &index, cfg, child, &seed).unwrap();
        let merged = blocks::to_cut(&log, &index, cfg, child, &seed).unwrap();
        assert_eq!(
            keyed,
            merged,
            "steps of {unit} ns, child started at T0 + {}",
            start - T0
        );
    }
}
