//! The latest heap event of each address in a raw log, found without merging
//! its streams: the pass under the exit scan's live set
//! ([`crate::analysis::reach`]) and a fork child's inherited blocks
//! ([`crate::analysis::inherit`]), which the exiting process waits for.
//!
//! "Latest" is the merge's order: time, then stream, then position in the
//! stream. That is a key each record carries by itself ([`Key`]), so the
//! chunks can be decoded in any order, on every core, each worker keeping the
//! latest event per address it saw, and the workers' tables are then merged
//! by that key. A free seen before the allocation it ends stays as a
//! tombstone ([`FREED`]) until the merge. Which events count is the caller's
//! filter on their keys (a cut in time, or before one record), and the few
//! other records a caller needs (an exit record, a FORK record) are picked
//! by the caller's function, with their keys.
//!
//! Uses `crate::log` (the index and the records) and `crate::hash`.

use memtrace_format::{DecodeError, Record, RecordIter, realloc_released};

use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::log::{ChunkRef, Index, Log};

/// The merge's order of one event: time, stream, then the record's place in
/// the stream (file offset, twice, plus one for a realloc's second half).
pub type Key = (u64, u32, u64);

/// The size stored for an address whose last event freed it.
pub const FREED: u64 = u64::MAX;

/// Where a heap event goes, by its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Into the table of latest events per address.
    Table,
    /// Onto the side list, whole, for the caller to apply (a few events it
    /// cannot yet place on either side of a cut).
    Side,
    /// Nowhere: the event does not count.
    Drop,
}

/// Routes each heap event by its key.
pub type Keep<'a> = &'a (dyn Fn(Key) -> Route + Sync);

/// The records a caller takes besides the heap events: `Some` to keep one.
pub type Pick<'a, T> =
    &'a (dyn Fn(Key, &Record<'_>) -> std::result::Result<Option<T>, DecodeError> + Sync);

/// What one pass found.
pub struct Latest<T> {
    /// Per address: the key of its latest event kept, and the block's
    /// requested size then ([`FREED`]: the event freed it).
    pub last: FastMap<u64, (Key, u64)>,
    /// The records picked, with their keys, in no order.
    pub picked: Vec<(Key, T)>,
    /// The heap events routed to the side: key, address, size ([`FREED`]:
    /// a free), in no order.
    pub side: Vec<(Key, u64, u64)>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest {
            last: FastMap::default(),
            picked: Vec::new(),
            side: Vec::new(),
        }
    }
}

impl<T> Latest<T> {
    /// Notes an event of `addr` (size [`FREED`]: a free) with its key.
    #[inline]
    pub fn note(&mut self, addr: u64, key: Key, size: u64) {
        self.last
            .entry(addr)
            .and_modify(|e| {
                if key >= e.0 {
                    *e = (key, size);
                }
            })
            .or_insert((key, size));
    }

    fn absorb(&mut self, other: Latest<T>) {
        for (addr, (key, size)) in other.last {
            self.note(addr, key, size);
        }
        self.picked.extend(other.picked);
        self.side.extend(other.side);
    }

    #[inline]
    fn route(&mut self, keep: Keep<'_>, addr: u64, key: Key, size: u64) {
        match keep(key) {
            Route::Table => self.note(addr, key, size),
            Route::Side => self.side.push((key, addr, size)),
            Route::Drop => {}
        }
    }

    /// The addresses live after the pass (their last event an allocation),
    /// with their sizes, sorted by address.
    pub fn live(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .last
            .iter()
            .filter(|(_, (_, size))| *size != FREED)
            .map(|(addr, (_, size))| (*addr, *size))
            .collect();
        v.sort_unstable();
        v
    }
}

/// One pass over raw `log` (not packed) on up to 8 cores: starting from the
/// blocks of `seed` (address, size; before every event), the latest event
/// per address among those `keep` routes to the table, the events it routes
/// to the side, and what `pick` took of the other records. Errors as
/// the merge's: a corrupt record in a whole chunk; a record cut by the end of
/// a truncated file ends its stream quietly.
pub fn scan<T: Send>(
    log: &Log,
    index: &Index,
    seed: &[(u64, u64)],
    keep: Keep<'_>,
    pick: Pick<'_, T>,
) -> Result<Latest<T>> {
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
    // A worker for every 64 chunks or 4 MiB of records: the rest of a log
    // after a live packer's progress is a few large chunks.
    let bytes: usize = work.iter().map(|(_, c)| c.body.1 - c.body.0).sum();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(
            work.len()
                .div_ceil(64)
                .max(bytes >> 22)
                .clamp(1, work.len().max(1)),
        );
    let mut table = Latest::default();
    for &(addr, size) in seed {
        table.note(addr, (0, 0, 0), size);
    }
    if workers <= 1 {
        table.absorb(chunks(log, index, &work, keep, pick)?);
        return log.checked(Ok(table));
    }
    // Contiguous shares of the file, so that each worker reads its own pages
    // once.
    work.sort_unstable_by_key(|(_, c)| c.offset);
    let share = work.len().div_ceil(workers);
    let tables = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(share)
            .map(|part| s.spawn(move || chunks(log, index, part, keep, pick)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Vec<_>>()
    });
    for t in tables {
        table.absorb(t?);
    }
    log.checked(Ok(table))
}

/// One worker: the latest event per address in `work`'s chunks.
fn chunks<T>(
    log: &Log,
    index: &Index,
    work: &[(u32, ChunkRef)],
    keep: Keep<'_>,
    pick: Pick<'_, T>,
) -> Result<Latest<T>> {
    let mut t = Latest::default();
    let bytes = log.bytes();
    for &(stream, chunk) in work {
        let body = &bytes[chunk.body.0..chunk.body.1];
        let mut it = RecordIter::new(body, chunk.base_time);
        let failed = |err| record_error(log, index, stream, chunk, err);
        loop {
            let at = chunk.body.0 as u64 + it.offset() as u64;
            let next = it.next();
            // By reference, fields read one by one: a record copied whole
            // right after the decoder stored its fields stalls on store
            // forwarding (half of this loop's time, at two copies).
            let Some(next) = &next else { break };
            let record = match next {
                Ok(r) => r,
                // The file ends inside this record: truncation, not damage.
                Err(_) if chunk.cut => break,
                Err(err) => return Err(failed(*err)),
            };
            let key = |time: u64, second: bool| (time, stream, at * 2 + second as u64);
            match *record {
                Record::Alloc {
                    time, addr, size, ..
                } if addr != 0 => t.route(keep, addr, key(time, false), size),
                Record::Free { time, addr, .. } if addr != 0 => {
                    t.route(keep, addr, key(time, false), FREED)
                }
                Record::Realloc {
                    time,
                    time_after,
                    old,
                    new,
                    size,
                    ..
                } => {
                    if realloc_released(old, new, size) {
                        t.route(keep, old, key(time, false), FREED);
                    }
                    if new != 0 {
                        t.route(keep, new, key(time_after, true), size);
                    }
                }
                ref other => {
                    let time = other.time().unwrap_or(0);
                    if let Some(v) = pick(key(time, false), other).map_err(failed)? {
                        t.picked.push((key(time, false), v));
                    }
                }
            }
        }
        log.release(chunk.offset as usize, chunk.body.1);
    }
    Ok(t)
}

fn record_error(log: &Log, index: &Index, stream: u32, chunk: ChunkRef, err: DecodeError) -> Error {
    Error::Record {
        path: log.path().to_owned(),
        stream: index.streams[stream as usize].id,
        offset: chunk.offset,
        err,
    }
}
