//! The replay's tests: counting, sampling, the peak, mappings and brk.

use super::machine::estimate;
use super::*;
use crate::log::Log;
use crate::testlog::*;
use std::path::Path;

fn run(b: &LogBuilder) -> Outcome {
    let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    replay(&log, &idx, Config::of(&h)).unwrap()
}

/// The README example: 7 allocs, 7 frees, 4,323 bytes allocated, nothing leaked.
#[test]
fn valgrind_counting_example() {
    let mut c = LogBuilder::chunk(T0);
    let t = |i: u64| T0 + i * 10;
    c.alloc(t(1), 0x100, 10, 1) // malloc(10)
        .free(t(2), 0) // free(NULL)
        .realloc(t(3), t(3) + 1, 0x100, 0x200, 100, 2) // realloc(p, 100)
        .realloc(t(4), t(4) + 1, 0, 0x300, 5, 3) // realloc(NULL, 5)
        .realloc(t(5), t(5) + 1, 0x300, 0, 0, 3) // realloc(q, 0)
        .alloc(t(6), 0x400, 0, 4) // malloc(0)
        .alloc(t(7), 0x500, 100, 5) // posix_memalign
        .free(t(8), 0x500)
        .alloc(t(9), 0x600, 12, 6) // calloc(3, 4)
        .alloc(t(10), 0x700, 4096, 7) // stdout buffer
        .free(t(11), 0x200)
        .free(t(12), 0x400)
        .free(t(13), 0x600)
        .put(|b| memtrace_format::encode::freeres(b, 1, 1))
        .free(t(14), 0x700)
        .put(|b| memtrace_format::encode::freeres(b, 1, 2));
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(
        (
            o.counts.allocations,
            o.counts.frees,
            o.counts.bytes_allocated
        ),
        (7, 7, 4323)
    );
    assert_eq!(o.counts.libc_freeres_frees, 1);
    assert_eq!(o.counts.unknown_frees, 0);
    assert_eq!(o.leaked_heap_bytes, 0);
    assert!(o.heap_leaks.is_empty());
}

/// A sampled log: SAMPLED records stand for `k * T` bytes and about
/// `k * T / size` blocks; plain ALLOC records (at least `T`) are exact.
#[test]
fn sampled_records_are_scaled() {
    let t = |i: u64| T0 + i * 10;
    let mut c = LogBuilder::chunk(T0);
    c.sampled(t(1), 0x100, 100, 1, 1) // 4096 bytes, ~41 blocks
        .sampled(t(2), 0x200, 1000, 1, 2) // 8192 bytes, ~8.2 blocks
        .alloc(t(3), 0x300, 10_000, 2) // exact
        .free(t(4), 0x100)
        .free(t(5), 0x300);
    let mut b = LogBuilder::new();
    b.push(0, &c);
    b.set_u64(memtrace_format::hdr::off::SAMPLE_INTERVAL, 4096);
    let o = run(&b);
    assert_eq!(o.counts.bytes_allocated, 4096 + 8192 + 10_000);
    assert!(
        (49..=51).contains(&o.counts.allocations),
        "{}",
        o.counts.allocations
    );
    assert_eq!(o.counts.peak_heap_bytes, 4096 + 8192 + 10_000);
    assert_eq!(o.leaked_heap_bytes, 8192);
    assert_eq!(o.heap_leaks.len(), 1);
    assert!((8..=9).contains(&o.heap_leaks[0].count));
    assert_eq!(o.allocated[0].stack, 1);
    assert_eq!(o.allocated[0].bytes, 4096 + 8192);
    assert_eq!(o.allocated[1].bytes, 10_000);
    assert_eq!(o.allocated[1].count, 1);
    // Rounding the counts at random keeps their sum unbiased.
    let n: u64 = (0..10_000u64)
        .map(|i| estimate(1000, 1, 4096, i * 7919).1 as u64)
        .sum();
    assert!((40_700..=41_200).contains(&n), "{n}");
}

/// Frees of blocks from before tracing (here inside libc's clean-up) count only as unknown.
#[test]
fn unknown_frees_are_not_frees() {
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, 8, 1)
        .put(|b| memtrace_format::encode::freeres(b, 1, 1))
        .free(T0 + 3, 0x10)
        .free(T0 + 4, 0x5000)
        .realloc(T0 + 5, T0 + 6, 0x6000, 0x7000, 4, 2)
        .put(|b| memtrace_format::encode::freeres(b, 1, 2));
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(o.counts.frees, 1);
    assert_eq!(o.counts.libc_freeres_frees, 1);
    assert_eq!(o.counts.unknown_frees, 2);
    assert_eq!(o.counts.allocations, 2);
    assert_eq!(o.leaked_heap_bytes, 4);
}

/// A failed realloc keeps the old block; leaks are grouped by stack, largest first.
#[test]
fn leaks_grouped_by_stack() {
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, 8, 1)
        .alloc(T0 + 2, 0x20, 8, 1)
        .alloc(T0 + 3, 0x30, 100, 2)
        .realloc(T0 + 4, T0 + 5, 0x30, 0, 1 << 40, 3) // failed
        .alloc(T0 + 6, 0, 5, 4) // failed malloc
        .free(T0 + 7, 0x999); // unknown
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(o.counts.allocations, 3);
    assert_eq!(o.counts.frees, 0);
    assert_eq!(o.counts.unknown_frees, 1);
    assert_eq!(
        o.heap_leaks,
        vec![
            StackTotal {
                stack: 2,
                bytes: 100,
                count: 1
            },
            StackTotal {
                stack: 1,
                bytes: 16,
                count: 2
            }
        ]
    );
    assert_eq!((o.leaked_heap_bytes, o.leaked_heap_blocks), (116, 3));
}

/// The peak is found at its first moment and grouped by the stacks live then.
#[test]
fn peak_is_grouped_at_its_moment() {
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1_000_000, 0x10, 50, 1)
        .alloc(T0 + 2_000_000, 0x20, 70, 2)
        .free(T0 + 3_000_000, 0x20)
        .alloc(T0 + 4_000_000, 0x30, 60, 3)
        .free(T0 + 5_000_000, 0x10)
        .alloc(T0 + 6_000_000, 0x40, 10, 4);
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(o.counts.peak_heap_bytes, 120);
    assert_eq!(o.counts.peak_heap_time, T0 + 2_000_000);
    assert_eq!(
        o.peak,
        vec![
            StackTotal {
                stack: 2,
                bytes: 70,
                count: 1
            },
            StackTotal {
                stack: 1,
                bytes: 50,
                count: 1
            }
        ]
    );
}

/// Reallocating to an address another thread frees in between is ordered by the realloc's two times.
#[test]
fn realloc_times_interleave_with_other_streams() {
    let mut a = LogBuilder::chunk(T0);
    a.alloc(T0 + 1, 0x10, 8, 1)
        .realloc(T0 + 10, T0 + 30, 0x10, 0x20, 16, 2);
    let mut other = LogBuilder::chunk(T0);
    // Thread B frees 0x20 after A's realloc began but before it returned it,
    // and gets 0x10 after A released it.
    other
        .alloc(T0 + 2, 0x20, 4, 3)
        .free(T0 + 20, 0x20)
        .alloc(T0 + 25, 0x10, 4, 3);
    let mut b = LogBuilder::new();
    b.push(0, &a).push(1, &other);
    let o = run(&b);
    assert_eq!(o.counts.unknown_frees, 0);
    assert_eq!(o.counts.anomalies, 0);
    assert_eq!(o.leaked_heap_bytes, 16 + 4);
}

/// An allocation over a live address counts the old block as gone (an anomaly).
#[test]
fn double_alloc_is_an_anomaly() {
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, 8, 1).alloc(T0 + 2, 0x10, 16, 2);
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(o.counts.anomalies, 1);
    assert_eq!(o.leaked_heap_bytes, 16);
}

/// Partial munmap leaves the rest counted to the byte; MAP_FIXED replaces; failures are ignored.
#[test]
fn mmap_partial_unmap_and_fixed() {
    let mut c = LogBuilder::chunk(T0);
    let base = 0x7f00_0000_0000u64;
    c.mmap(T0 + 1, base, 10 * 4096 - 100, 0x22, 1) // 10 pages
        .munmap(T0 + 2, base + 4096, 4096) // hole: pages 1
        .munmap(T0 + 3, base + 9 * 4096, 10) // last page
        .mmap(T0 + 4, base + 5 * 4096, 4096, 0x32, 2) // MAP_FIXED over page 5
        .mmap(T0 + 5, u64::MAX, 4096, 0x22, 3) // MAP_FAILED
        .mmap(T0 + 6, 0, 4096, 0x22, 3);
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(o.counts.peak_mmap_bytes, 10 * 4096);
    assert_eq!(o.leaked_mmap_bytes, 8 * 4096);
    assert_eq!(o.counts.mmap_calls, 4);
    assert_eq!(o.counts.munmap_calls, 2);
    assert_eq!(
        o.mmap_leaks,
        vec![
            StackTotal {
                stack: 1,
                bytes: 7 * 4096,
                count: 1
            },
            StackTotal {
                stack: 2,
                bytes: 4096,
                count: 1
            }
        ]
    );
    assert_eq!(o.leaked_mmap_regions, 2);
}

/// mremap moves the range and takes the mremap's stack.
#[test]
fn mremap_moves_region() {
    let mut c = LogBuilder::chunk(T0);
    c.mmap(T0 + 1, 0x10000, 8192, 0x22, 1)
        .put(|b| memtrace_format::encode::mremap(b, 1, 0x10000, 8192, 0x40000, 3 * 4096, 1, 5));
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(
        o.mmap_leaks,
        vec![StackTotal {
            stack: 5,
            bytes: 3 * 4096,
            count: 1
        }]
    );
    assert_eq!(o.counts.peak_mmap_bytes, 3 * 4096);
}

/// Region bookkeeping splits and merges exactly at the requested bytes.
#[test]
fn regions_unmap_splits() {
    let mut r = Regions::default();
    r.map(100, 200, 1);
    r.map(300, 400, 1);
    r.unmap(150, 350);
    assert_eq!(r.bytes(), 50 + 50);
    assert_eq!(r.regions(), 2);
    r.unmap(0, 1000);
    assert_eq!(r.bytes(), 0);
}

/// brk growth is summed per stack.
#[test]
fn brk_by_stack() {
    let mut c = LogBuilder::chunk(T0);
    c.put(|b| {
        memtrace_format::encode::brk(b, 1, memtrace_format::Func::Sbrk, 4096, 0x1000, 0x2000, 7)
    })
    .put(|b| {
        memtrace_format::encode::brk(b, 1, memtrace_format::Func::Sbrk, 4096, 0x2000, 0x3000, 7)
    })
    .put(|b| {
        memtrace_format::encode::brk(b, 1, memtrace_format::Func::Brk, 0x3800, 0x3000, 0x3800, 8)
    });
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(
        o.brk,
        vec![
            BrkTotal {
                stack: 7,
                bytes: 0x2000
            },
            BrkTotal {
                stack: 8,
                bytes: 0x800
            }
        ]
    );
    assert_eq!(
        (o.counts.first_brk, o.counts.last_brk),
        (Some(0x1000), Some(0x3800))
    );
}

/// Hostile sizes: sums saturate instead of overflowing (debug builds used to
/// panic on `live_bytes -= size` after a saturated sum, and when summing
/// leaks or brk growth of one stack).
#[test]
fn hostile_sizes_saturate() {
    let big = u64::MAX - 1;
    let mut c = LogBuilder::chunk(T0);
    c.alloc(T0 + 1, 0x10, big, 1)
        .alloc(T0 + 2, 0x20, 10, 1)
        .free(T0 + 3, 0x10)
        .free(T0 + 4, 0x20)
        .alloc(T0 + 5, 0x30, big, 2)
        .alloc(T0 + 6, 0x40, big, 2)
        .alloc(T0 + 7, 0x40, 5, 2); // over a live block
    for (t, old, new) in [(8, 0, u64::MAX / 2 + 1), (9, u64::MAX / 2 + 1, u64::MAX)] {
        c.put(|b| memtrace_format::encode::brk(b, t, memtrace_format::Func::Sbrk, 0, old, new, 3));
        c.put(|b| memtrace_format::encode::brk(b, t, memtrace_format::Func::Sbrk, 0, new, old, 4));
    }
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    assert_eq!(o.counts.peak_heap_bytes, u64::MAX);
    assert_eq!(o.counts.anomalies, 1);
    assert_eq!(o.heap_leaks[0].stack, 2);
    assert_eq!(o.heap_leaks[0].count, 2);
}

/// The peak picture kept during the pass equals the one a second replay
/// up to the peak computes, on a pseudo-random log with many stacks.
#[test]
fn peak_picture_equals_replay_up_to_the_peak() {
    let mut c = LogBuilder::chunk(T0);
    let mut live: Vec<u64> = Vec::new();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut t = T0;
    for i in 0..3000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += 1000;
        if live.is_empty() || !x.is_multiple_of(3) {
            let addr = 0x1000 + i * 0x100;
            c.alloc(t, addr, 1 + x % 997, (x % 50) as u32 + 1);
            live.push(addr);
        } else {
            let k = (x as usize / 3) % live.len();
            c.free(t, live.swap_remove(k));
        }
    }
    let mut b = LogBuilder::new();
    b.push(0, &c);
    let o = run(&b);
    let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    let at = o.counts.peak_event.expect("a peak");
    let mut p = Replay::new(Config::of(&h));
    for ev in log.merge(&idx) {
        p.apply(&ev.unwrap());
        if p.events() > at {
            break;
        }
    }
    assert!(!o.peak.is_empty());
    assert_eq!(o.peak, p.heap_by_stack());
}

/// The journal of the mappings' changes rebuilds, at every moment, what a
/// second replay of the log up to that moment finds: maps, partial unmaps,
/// MAP_FIXED over a mapping, a moving mremap, an mremap keeping its old
/// range (MREMAP_DONTUNMAP), failed calls, on two threads between heap
/// events.
#[test]
fn journal_rebuilds_the_mappings_of_every_moment() {
    let base = 0x7f00_0000_0000u64;
    let t = |i: u64| T0 + i * 10;
    let mut a = LogBuilder::chunk(T0);
    a.mmap(t(1), base, 10 * 4096 - 100, 0x22, 1)
        .alloc(t(2), 0x100, 10, 7)
        .munmap(t(4), base + 4096, 4096)
        .mmap(t(6), base + 5 * 4096, 4096, 0x32, 2)
        .mmap(t(7), u64::MAX, 4096, 0x22, 3)
        .free(t(8), 0x100);
    let d = a.dt(t(10));
    a.put(|b| {
        memtrace_format::encode::mremap(b, d, base, 3 * 4096, base + (1 << 20), 5 * 4096, 1, 4)
    });
    a.munmap(t(12), base + 9 * 4096, 10);
    let mut b2 = LogBuilder::chunk(T0);
    b2.mmap(t(3), base + (1 << 24), 8192, 0x22, 5)
        .alloc(t(5), 0x200, 20, 8);
    let d = b2.dt(t(9));
    b2.put(|b| {
        memtrace_format::encode::mremap(b, d, base + (1 << 24), 8192, base + (1 << 25), 4096, 3, 6)
    });
    b2.munmap(t(11), base + (1 << 24), 4096);
    let mut b = LogBuilder::new();
    b.push(0, &a).push(1, &b2);
    let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
    let h = log.header().unwrap();
    let idx = log.index(&h).unwrap();
    let o = replay(&log, &idx, Config::of(&h)).unwrap();
    assert_eq!(o.counts.mmap_calls, 4);
    for i in 0..=13 {
        for at in [t(i), t(i) + 5] {
            let again = mapped_at(&log, &idx, Config::of(&h), at).unwrap();
            let rebuilt = o
                .journal
                .at(at)
                .expect("a short journal is kept")
                .by_stack();
            assert_eq!(rebuilt, again, "mappings at {at}");
        }
    }
    // Something is mapped at the end, and it is what the end replay holds.
    let end = o.journal.at(u64::MAX).unwrap();
    assert_eq!(end.bytes(), o.leaked_mmap_bytes);
    assert!(end.bytes() > 0);
}

/// A journal past its bound keeps nothing and says so, so that the caller
/// replays the log instead.
#[test]
fn journal_gives_up_past_its_bound() {
    let mut j = Journal::default();
    for i in 0..JOURNAL_MAX as u64 {
        let start = i * 8192;
        j.record(
            i,
            Change::Map {
                start,
                end: start + 4096,
                stack: 1,
            },
        );
    }
    assert_eq!(j.at(u64::MAX).unwrap().bytes(), JOURNAL_MAX as u64 * 4096);
    j.record(
        JOURNAL_MAX as u64,
        Change::Unmap {
            start: 0,
            end: 4096,
        },
    );
    assert!(j.at(0).is_none());
    assert!(j.at(u64::MAX).is_none());
}

/// A packed log's replay keeps its blocks by slot, a raw log's by address,
/// and a seed's by address in both: the same log, raw and packed, replays to
/// the same outcome from the same seed. The log frees a seeded block,
/// allocates over a live seeded address and over a live address of its own
/// (anomalies both), reallocates by slot, reallocates a seeded block, fails
/// a realloc, and leaves blocks of either kind live.
#[test]
fn slots_replay_as_addresses_do() {
    let t = |i: u64| T0 + i * 1000;
    let mut c = LogBuilder::chunk(T0);
    c.alloc(t(1), 0x1000, 10, 1)
        .alloc(t(2), 0x2000, 20, 1)
        .free(t(3), 0x9000) // seeded
        .alloc(t(4), 0x9100, 30, 2) // over a live seeded block
        .alloc(t(5), 0x1000, 40, 2) // over its own live block
        .realloc(t(6), t(7), 0x2000, 0x3000, 50, 1) // by slot, moves
        .realloc(t(8), t(9), 0x9200, 0x9300, 60, 1) // a seeded block
        .realloc(t(10), t(11), 0x3000, 0, 1 << 40, 1) // fails, keeps it
        .free(t(12), 0x1000)
        .free(t(13), 0x4444) // never allocated
        .alloc(t(14), 0x5000, 70, 3);
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(t(20));
    let raw = Log::from_bytes(Path::new("slots.mtr"), &b.bytes);
    let mut packed = std::io::Cursor::new(Vec::new());
    crate::pack::pack(&raw, &mut packed).unwrap();
    let packed = packed.into_inner();
    let packed = Log::from_bytes(Path::new("slots.mtz"), &packed);
    let block = |size, stack| Block {
        size,
        stack,
        count: 1,
        time: T0,
    };
    let seed = Seed {
        blocks: vec![
            (0x9000, block(1, 9)),
            (0x9100, block(2, 9)),
            (0x9200, block(3, 9)),
            (0x9400, block(4, 9)),
        ],
        regions: Vec::new(),
        funcs: Vec::new(),
    };
    let outcome = |log: &Log| {
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        replay_seeded(log, &idx, Config::of(&h), Some(&seed), |_| Ok(())).unwrap()
    };
    let (a, b) = (outcome(&raw), outcome(&packed));
    assert!(packed.is_packed());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!((a.counts.anomalies, a.counts.unknown_frees), (2, 1));
    // Live at the end: 0x3000 (50), 0x5000 (70), 0x9100's new block (30),
    // 0x9300 (60) and the untouched seeded 0x9400 (4).
    let live: Vec<(u64, u64)> = b.live.iter().map(|(a, bl)| (*a, bl.size)).collect();
    assert_eq!(
        live,
        [
            (0x3000, 50),
            (0x5000, 70),
            (0x9100, 30),
            (0x9300, 60),
            (0x9400, 4)
        ]
    );
    assert_eq!(b.leaked_heap_bytes, 50 + 70 + 30 + 60 + 4);
}
