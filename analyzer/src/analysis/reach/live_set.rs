//! The heap blocks live at the end of a raw log, found without merging its
//! streams (`analysis::last_events`, on every core): what the scan at exit
//! (`memtrace __scan`) needs, while the process it scans waits. The full
//! replay ([`crate::analysis::replay`]) merges every stream by time and keeps
//! per-stack totals, the peak and the series; the live set needs none of
//! that.
//!
//! Blocks are as the process holds them: a sampled record's block is its
//! requested size, not the bytes it stands for.
//!
//! Uses `crate::analysis::last_events`, `crate::log`, `crate::pack`'s
//! [`Progress`] (for [`end_state_after`]), and the replay's
//! [`Seed`] and [`Config`]; equal to the replay's live set on every log (the
//! tests below compare the two).

use memtrace_format::{DecodeError, Record};

use super::{Block, ExitScan};
use crate::analysis::last_events::{self, Key, Latest, Route};
use crate::analysis::replay::{Config, Seed};
use crate::error::Result;
use crate::log::{Index, Log, exit_scan_values};
use crate::pack::Progress;

/// What a log says at its end, for the scan.
#[derive(Debug, Default)]
pub struct EndState {
    /// Live heap blocks, sorted by address.
    pub blocks: Vec<Block>,
    /// The last `KIND_EXIT_SCAN` record, if any.
    pub exit: Option<ExitScan>,
}

/// The blocks live at the end of raw `log` (after `cfg.until`'s cut, if
/// any), starting from the blocks of `seed` (address, size), and its last
/// exit-scan record.
/// Errors as the merge's: a corrupt record in a whole chunk; a record cut by
/// the end of a truncated file ends its stream quietly.
pub fn end_state(log: &Log, index: &Index, cfg: Config, seed: &[(u64, u64)]) -> Result<EndState> {
    if index.packed.is_some() {
        return packed_end_state(log, index, cfg, seed);
    }
    let keep = |key: Key| match cfg.until == 0 || key.0 <= cfg.until {
        true => Route::Table,
        false => Route::Drop,
    };
    let latest = last_events::scan(log, index, seed, &keep, &exit_record)?;
    Ok(EndState {
        blocks: blocks(&latest),
        exit: latest_exit(latest.picked),
    })
}

/// [`end_state`] of raw `log`, whose first events a
/// [`LivePack`](crate::pack::LivePack) packed while it was written
/// (`memtrace run`'s live packer, asked by the scan at exit), `packed`
/// being how far: the live blocks after those events, updated with the rest
/// of the log alone, which is all that is read. `None` when the log is not
/// the one the packer read (it changed under it). A fork child's inherited
/// blocks are not known here: the caller asks only for a log that forked
/// from nothing.
pub fn end_state_after(log: &Log, packed: &Progress) -> Result<Option<EndState>> {
    let header = log.header()?;
    let fin = log.index(&header)?;
    let Some((rest, half)) = packed.rest(&fin) else {
        return Ok(None);
    };
    // A REALLOC whose first half was packed already: its release is in the
    // live blocks, and must not come again after the blocks' later events.
    let skip: Vec<Option<u64>> = (rest.streams.iter().zip(&half))
        .map(|(s, &h)| s.chunks.first().filter(|_| h).map(|c| c.body.0 as u64 * 2))
        .collect();
    let keep = |key: Key| match skip.get(key.1 as usize) {
        Some(Some(first)) if *first == key.2 => Route::Drop,
        _ => Route::Table,
    };
    let latest = last_events::scan(log, &rest, packed.live_blocks(), &keep, &exit_record)?;
    Ok(Some(EndState {
        blocks: blocks(&latest),
        exit: latest_exit(latest.picked)
            .or_else(|| packed.exit_scan().and_then(ExitScan::from_values)),
    }))
}

/// The values of an exit-scan record, the one other record the scan needs.
fn exit_record(_: Key, r: &Record<'_>) -> std::result::Result<Option<Vec<u64>>, DecodeError> {
    exit_scan_values(r).transpose()
}

fn blocks(latest: &Latest<Vec<u64>>) -> Vec<Block> {
    (latest.live().into_iter())
        .map(|(addr, size)| Block { addr, size })
        .collect()
}

fn latest_exit(picked: Vec<(Key, Vec<u64>)>) -> Option<ExitScan> {
    (picked.into_iter())
        .max_by_key(|(key, _)| *key)
        .and_then(|(_, v)| ExitScan::from_values(&v))
}

/// A packed log's events come merged: replayed in order, the catalog taking
/// the exit record (a packed log is never scanned at exit; this keeps the
/// function total).
fn packed_end_state(
    log: &Log,
    index: &Index,
    cfg: Config,
    seed: &[(u64, u64)],
) -> Result<EndState> {
    let block = |size| crate::analysis::replay::Block {
        size,
        stack: 0,
        count: 1,
        time: 0,
    };
    let seed = Seed {
        blocks: seed
            .iter()
            .map(|&(addr, size)| (addr, block(size)))
            .collect(),
        ..Seed::default()
    };
    let mut cat = crate::analysis::catalog::Catalog::default();
    let out = crate::analysis::replay::replay_seeded(log, index, cfg, Some(&seed), |ev| {
        cat.observe(ev, log, index)
    })?;
    Ok(EndState {
        blocks: out
            .live
            .iter()
            .map(|(addr, b)| Block {
                addr: *addr,
                size: b.size,
            })
            .collect(),
        exit: cat.exit_scan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::LivePack;
    use crate::testlog::*;
    use memtrace_format::kernel::KIND_EXIT_SCAN;
    use std::path::Path;

    /// `b`'s log, its index and its configuration cut at `until` (0: none).
    fn open(b: &LogBuilder, until: u64) -> (Log, Index, Config) {
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let cfg = Config {
            until,
            ..Config::of(&h)
        };
        (log, idx, cfg)
    }

    /// The replay's live set and exit record, the reference.
    fn by_replay(b: &LogBuilder, until: u64) -> (Vec<Block>, Option<ExitScan>) {
        let (log, idx, cfg) = open(b, until);
        let mut cat = crate::analysis::catalog::Catalog::default();
        let out = crate::analysis::replay::replay_seeded(&log, &idx, cfg, None, |ev| {
            cat.observe(ev, &log, &idx)
        })
        .unwrap();
        let blocks = out
            .live
            .iter()
            .map(|(a, b)| Block {
                addr: *a,
                size: b.size,
            })
            .collect();
        (blocks, cat.exit_scan)
    }

    fn by_end_state(b: &LogBuilder, until: u64) -> (Vec<Block>, Option<ExitScan>) {
        let (log, idx, cfg) = open(b, until);
        let e = end_state(&log, &idx, cfg, &[]).unwrap();
        (e.blocks, e.exit)
    }

    /// xorshift64*: a fixed sequence, so a failure can be replayed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Four threads allocate, free and reallocate 64 shared addresses, with
    /// ties in time between threads and inside one, in 400 chunks (so that
    /// the pass runs on several workers), with exit records on two threads;
    /// and its last time.
    fn sharing_addresses() -> (LogBuilder, u64) {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut b = LogBuilder::new();
        let mut time = [T0; 4];
        for chunk in 0..400u64 {
            let stream = rng.below(4) as usize;
            let mut c = LogBuilder::chunk(time[stream]);
            for _ in 0..50 {
                // Mostly later, sometimes the same instant.
                let t = time[stream] + rng.below(3);
                time[stream] = t;
                let addr = 0x1000 + 16 * rng.below(64);
                match rng.below(10) {
                    0..=3 => c.alloc(t, addr, 1 + rng.below(100), 1),
                    4..=6 => c.free(t, addr),
                    7 => c.free(t, 0),
                    _ => {
                        let new = [0, addr, 0x1000 + 16 * rng.below(64)][rng.below(3) as usize];
                        let size = rng.below(4) * 8;
                        let after = t + rng.below(2);
                        time[stream] = after;
                        c.realloc(t, after, [0, addr][rng.below(2) as usize], new, size, 2)
                    }
                };
            }
            if chunk % 97 == 5 {
                let t = time[stream];
                let v: Vec<u64> = (0..16).map(|i| chunk * 100 + i).collect();
                let d = c.dt(t);
                c.put(|o| memtrace_format::encode::kernel(o, d, KIND_EXIT_SCAN, &v));
            }
            b.push(stream as u32, &c);
            // The other threads catch up now and then.
            if chunk % 7 == 0 {
                let m = *time.iter().max().unwrap();
                time = [m; 4];
            }
        }
        (b, *time.iter().max().unwrap())
    }

    /// On [`sharing_addresses`]'s log the live set and the exit record equal
    /// the replay's, whole and cut at several moments.
    #[test]
    fn equals_the_replay_on_threads_sharing_addresses() {
        let (b, end) = sharing_addresses();
        let whole = by_replay(&b, 0);
        assert!(whole.0.len() > 10, "{}", whole.0.len());
        assert!(whole.1.is_some());
        assert_eq!(by_end_state(&b, 0), whole);
        for until in [T0 + 1, (T0 + end) / 2, end - 3, end] {
            assert_eq!(
                by_end_state(&b, until),
                by_replay(&b, until),
                "until {until}"
            );
        }
    }

    /// The end state from a live packer's blocks and the rest of the log
    /// equals the replay's, whichever times the packer read up to: before
    /// the first record, between a REALLOC's halves (ties in time, on four
    /// threads sharing addresses, make such cuts), past exit records, and
    /// to the end.
    #[test]
    fn after_a_live_pack_equals_the_replay() {
        let (b, end) = sharing_addresses();
        let whole = by_replay(&b, 0);
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("raw.mtr");
        std::fs::write(&raw, &b.bytes).unwrap();
        let mid = (T0 + end) / 2;
        let steps: [&[u64]; 5] = [
            &[],
            &[T0 - 1],
            &[T0 + 1, T0 + 2, mid],
            &[mid, mid + 1, end - 3, end - 2],
            &[end],
        ];
        for steps in steps {
            let mut lp = LivePack::new(&raw).unwrap();
            for &u in steps {
                lp.advance(u).unwrap();
            }
            let log = Log::open(&raw).unwrap();
            let e = end_state_after(&log, &lp.progress())
                .unwrap()
                .expect("the log it read");
            assert_eq!((e.blocks, e.exit), whole, "steps {steps:?}");
        }
        // A packer that read all of it has nothing left to read.
        let mut lp = LivePack::new(&raw).unwrap();
        assert!(lp.advance(u64::MAX).unwrap() > 0);
        let p = lp.progress();
        assert!(p.exit_scan().is_some());
        let got: Vec<(u64, u64)> = whole.0.iter().map(|b| (b.addr, b.size)).collect();
        assert_eq!(p.live_blocks(), got);
    }

    /// A REALLOC cut between its halves by the live packer: its old block,
    /// released by the first half and allocated again by another thread at
    /// the same instant, stays live; the second half's block comes from
    /// the rest of the log.
    #[test]
    fn after_a_live_pack_a_released_block_allocated_again_stays() {
        let mut a = LogBuilder::chunk(T0);
        a.alloc(T0 + 1, 0xa0, 8, 1)
            .realloc(T0 + 2, T0 + 3, 0xa0, 0xb0, 16, 1);
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 2, 0xa0, 32, 1);
        let mut b = LogBuilder::new();
        b.push(0, &a).push(1, &c);
        let want = vec![
            Block {
                addr: 0xa0,
                size: 32,
            },
            Block {
                addr: 0xb0,
                size: 16,
            },
        ];
        assert_eq!(by_replay(&b, 0).0, want);
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("raw.mtr");
        std::fs::write(&raw, &b.bytes).unwrap();
        let mut lp = LivePack::new(&raw).unwrap();
        assert_eq!(lp.advance(T0 + 2).unwrap(), 3);
        assert_eq!(lp.progress().live_blocks(), [(0xa0, 32)]);
        let log = Log::open(&raw).unwrap();
        let e = end_state_after(&log, &lp.progress()).unwrap().unwrap();
        assert_eq!(e.blocks, want);
    }

    /// A fork child's inherited blocks are live until it frees them; a
    /// sampled block is its requested size, and a record cut by the end of
    /// a truncated file ends its stream quietly.
    #[test]
    fn seed_sampled_and_truncated() {
        let mut c = LogBuilder::chunk(T0);
        c.free(T0 + 1, 0x10)
            .sampled(T0 + 2, 0x40, 24, 3, 5)
            .alloc(T0 + 3, 0x80, 8, 1);
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let seed = [(0x10, 16), (0x20, 32)];
        let (log, idx, cfg) = open(&b, 0);
        let e = end_state(&log, &idx, cfg, &seed).unwrap();
        let got: Vec<(u64, u64)> = e.blocks.iter().map(|b| (b.addr, b.size)).collect();
        assert_eq!(got, [(0x20, 32), (0x40, 24), (0x80, 8)]);
        assert!(e.exit.is_none());

        // Cut inside the last record: the two before it stand.
        let cut =
            memtrace_format::HEADER_SIZE + memtrace_format::CHUNK_HEADER_SIZE + c.body.len() - 2;
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes[..cut]);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let e = end_state(&log, &idx, Config::of(&h), &[]).unwrap();
        let got: Vec<(u64, u64)> = e.blocks.iter().map(|b| (b.addr, b.size)).collect();
        assert_eq!(got, [(0x40, 24)]);
    }
}
