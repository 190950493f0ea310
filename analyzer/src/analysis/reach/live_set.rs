//! The heap blocks live at the end of a raw log, found without merging its
//! streams: what the scan at exit (`memtrace __scan`) needs, while the
//! process it scans waits.
//!
//! The full replay ([`crate::analysis::replay`]) merges every stream by time
//! and keeps per-stack totals, the peak and the series. The live set needs
//! none of that: a block is live at the end if the last event on its address
//! is an allocation. "Last" is the merge's order — time, then stream, then
//! position in the stream — which is a key each record carries by itself, so
//! the chunks can be decoded in any order, on every core, each worker keeping
//! the latest event per address it saw; the workers' tables are then merged
//! by that key. A free seen before the allocation it ends stays as a
//! tombstone until the merge.
//!
//! Blocks are as the process holds them: a sampled record's block is its
//! requested size, not the bytes it stands for.
//!
//! Uses `crate::log` (the index and the records), `crate::hash`, and the
//! replay's [`Seed`] and [`Config`]; equal to the replay's live set on every
//! log (the tests below compare the two).

use memtrace_format::kernel::KIND_EXIT_SCAN;
use memtrace_format::{DecodeError, Record, RecordIter, realloc_released};

use super::{Block, ExitScan};
use crate::analysis::replay::{Config, Seed};
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::log::{ChunkRef, Index, Log};

/// What a log says at its end, for the scan.
#[derive(Debug, Default)]
pub struct EndState {
    /// Live heap blocks, sorted by address.
    pub blocks: Vec<Block>,
    /// The last `KIND_EXIT_SCAN` record, if any.
    pub exit: Option<ExitScan>,
}

/// The merge's order of one event: time, stream, then the record's place in
/// the stream (file offset, twice, plus one for a realloc's second half).
type Key = (u64, u32, u64);

/// The size stored for an address whose last event freed it.
const FREED: u64 = u64::MAX;

/// The latest event per address one worker saw, and the latest exit record.
#[derive(Default)]
struct Table {
    last: FastMap<u64, (Key, u64)>,
    exit: Option<(Key, Vec<u64>)>,
}

impl Table {
    #[inline]
    fn note(&mut self, addr: u64, key: Key, size: u64) {
        self.last
            .entry(addr)
            .and_modify(|e| {
                if key >= e.0 {
                    *e = (key, size);
                }
            })
            .or_insert((key, size));
    }

    fn absorb(&mut self, other: Table) {
        for (addr, (key, size)) in other.last {
            self.note(addr, key, size);
        }
        if let Some((key, v)) = other.exit
            && self.exit.as_ref().is_none_or(|e| key >= e.0)
        {
            self.exit = Some((key, v));
        }
    }
}

/// The blocks live at the end of raw `log` (after `cfg.until`'s cut, if
/// any), starting from `seed`'s blocks, and its last exit-scan record.
/// Errors as the merge's: a corrupt record in a whole chunk; a record cut by
/// the end of a truncated file ends its stream quietly.
pub fn end_state(log: &Log, index: &Index, cfg: Config, seed: Option<&Seed>) -> Result<EndState> {
    if index.packed.is_some() {
        return packed_end_state(log, index, cfg, seed);
    }
    // Every chunk, tagged with its stream; a stream's chunks after one cut
    // by the end of the file are not read (the merge stops there too).
    let mut work: Vec<(u32, ChunkRef)> = Vec::new();
    for (i, s) in index.streams.iter().enumerate() {
        for c in &s.chunks {
            work.push((i as u32, *c));
            if c.cut {
                break;
            }
        }
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(work.len().div_ceil(64).max(1));
    let mut table = Table::default();
    if let Some(s) = seed {
        for &(addr, b) in &s.blocks {
            table.note(addr, (0, 0, 0), b.size);
        }
    }
    if workers <= 1 {
        let t = chunks(log, index, cfg, &work)?;
        table.absorb(t);
    } else {
        // Contiguous shares of the file, so that each worker reads its own
        // pages once.
        work.sort_unstable_by_key(|(_, c)| c.offset);
        let share = work.len().div_ceil(workers);
        let tables = std::thread::scope(|s| {
            let handles: Vec<_> = work
                .chunks(share)
                .map(|part| s.spawn(move || chunks(log, index, cfg, part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Vec<_>>()
        });
        for t in tables {
            table.absorb(t?);
        }
    }
    let mut blocks: Vec<Block> = table
        .last
        .into_iter()
        .filter(|&(_, (_, size))| size != FREED)
        .map(|(addr, (_, size))| Block { addr, size })
        .collect();
    blocks.sort_unstable_by_key(|b| b.addr);
    let exit = table.exit.and_then(|(_, v)| ExitScan::from_values(&v));
    log.checked(Ok(EndState { blocks, exit }))
}

/// One worker: the latest event per address in `work`'s chunks.
fn chunks(log: &Log, index: &Index, cfg: Config, work: &[(u32, ChunkRef)]) -> Result<Table> {
    let mut t = Table::default();
    let bytes = log.bytes();
    let included = |time: u64| cfg.until == 0 || time <= cfg.until;
    for &(stream, chunk) in work {
        let body = &bytes[chunk.body.0..chunk.body.1];
        let mut it = RecordIter::new(body, chunk.base_time);
        loop {
            let at = chunk.body.0 as u64 + it.offset() as u64;
            let Some(record) = it.next() else { break };
            let record = match record {
                Ok(r) => r,
                // The file ends inside this record: truncation, not damage.
                Err(_) if chunk.cut => break,
                Err(err) => return Err(record_error(log, index, stream, chunk, err)),
            };
            let key = |time: u64, second: bool| (time, stream, at * 2 + second as u64);
            match record {
                Record::Alloc {
                    time, addr, size, ..
                } if addr != 0 && included(time) => t.note(addr, key(time, false), size),
                Record::Free { time, addr, .. } if addr != 0 && included(time) => {
                    t.note(addr, key(time, false), FREED)
                }
                Record::Realloc {
                    time,
                    time_after,
                    old,
                    new,
                    size,
                    ..
                } => {
                    if realloc_released(old, new, size) && included(time) {
                        t.note(old, key(time, false), FREED);
                    }
                    if new != 0 && included(time_after) {
                        t.note(new, key(time_after, true), size);
                    }
                }
                Record::Kernel {
                    time, kind, values, ..
                } if kind == KIND_EXIT_SCAN => {
                    let key = key(time, false);
                    if t.exit.as_ref().is_none_or(|e| key >= e.0) {
                        let v: std::result::Result<Vec<u64>, DecodeError> = values.collect();
                        let v = v.map_err(|err| record_error(log, index, stream, chunk, err))?;
                        t.exit = Some((key, v));
                    }
                }
                _ => {}
            }
        }
        log.release(chunk.offset as usize, chunk.body.1);
    }
    Ok(t)
}

/// A packed log's events come merged: replayed in order, the catalog taking
/// the exit record (a packed log is never scanned at exit; this keeps the
/// function total).
fn packed_end_state(
    log: &Log,
    index: &Index,
    cfg: Config,
    seed: Option<&Seed>,
) -> Result<EndState> {
    let mut cat = crate::analysis::catalog::Catalog::default();
    let out = crate::analysis::replay::replay_seeded(log, index, cfg, seed, |ev| {
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

fn record_error(log: &Log, index: &Index, stream: u32, chunk: ChunkRef, err: DecodeError) -> Error {
    Error::Record {
        path: log.path().to_owned(),
        stream: index.streams[stream as usize].id,
        offset: chunk.offset,
        err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::*;
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
        let e = end_state(&log, &idx, cfg, None).unwrap();
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
    /// the pass runs on several workers), with exit records on two threads:
    /// the live set and the exit record equal the replay's, whole and cut at
    /// several moments.
    #[test]
    fn equals_the_replay_on_threads_sharing_addresses() {
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
        let end = *time.iter().max().unwrap();
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
        let block = |addr, size| {
            let b = crate::analysis::replay::Block {
                size,
                stack: 1,
                count: 1,
                time: 0,
            };
            (addr, b)
        };
        let seed = Seed {
            blocks: vec![block(0x10, 16), block(0x20, 32)],
            regions: Vec::new(),
            funcs: Vec::new(),
        };
        let (log, idx, cfg) = open(&b, 0);
        let e = end_state(&log, &idx, cfg, Some(&seed)).unwrap();
        let got: Vec<(u64, u64)> = e.blocks.iter().map(|b| (b.addr, b.size)).collect();
        assert_eq!(got, [(0x20, 32), (0x40, 24), (0x80, 8)]);
        assert!(e.exit.is_none());

        // Cut inside the last record: the two before it stand.
        let cut =
            memtrace_format::HEADER_SIZE + memtrace_format::CHUNK_HEADER_SIZE + c.body.len() - 2;
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes[..cut]);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let e = end_state(&log, &idx, Config::of(&h), None).unwrap();
        let got: Vec<(u64, u64)> = e.blocks.iter().map(|b| (b.addr, b.size)).collect();
        assert_eq!(got, [(0x40, 24)]);
    }
}
