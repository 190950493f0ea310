//! Packed logs: the events of a finished log, merged, re-encoded compactly
//! and compressed (`memtrace pack`, and `memtrace run` after the command
//! ends).
//!
//! A raw log is made for the writer: one stream of records per thread, each
//! record self-describing, addresses in full, times in nanoseconds. Once the
//! process has ended, the analyzer's merge fixes the order of every event, so
//! a packed log stores that single merged sequence and drops what the order
//! and the allocator's habits already say:
//! - **one sequence**: a SWITCH op names the stream of the events that follow;
//! - **times in microseconds**, as deltas (the report shows microseconds; the
//!   order of events is the sequence's, not the times'). Every time is
//!   rounded down, so `a <= b` still holds after rounding;
//! - **frees by slot**: every live block has a slot number (a freed slot is
//!   reused, last freed first), and a free names the slot, not the address;
//! - **allocations predicted from recent frees**: allocators hand out
//!   recently freed blocks, most often the last one freed of the same size
//!   class (glibc's tcache and bins: chunk sizes in steps of 16 bytes), and
//!   per thread. An allocation whose address is one of the last 1024 blocks
//!   freed by its thread (threads share 64 buckets of this state) names it
//!   by its rank among the recent frees of its class, or by its distance in
//!   the sequence of frees; any other address is the difference to the
//!   previous allocation's of its bucket;
//! - **columns**: each kind of field (op, sizes, slots, address bytes, ranks,
//!   times, the rest) is stored in its own column, fixed-width fields split
//!   into byte planes, and each column of each block of 2^18 ops is
//!   compressed with zstd on its own, so each gets the code that fits it;
//! - STACK, MODULE and EXEC records (the ones that carry byte strings) go to
//!   a separate *meta* section, read whole into memory when the log is
//!   opened; the events are decoded a block at a time, so memory still
//!   follows live blocks and distinct stacks, not events.
//!
//! Nothing the report uses is lost: replaying a packed log gives the same
//! report as the raw log, times rounded to microseconds (tests check it).
//!
//! ## File layout (little-endian)
//! ```text
//! [0, 64)          fixed header: magic "MEMTRPAK", version, section sizes, counts
//! [64, 4160)       the raw log's 4096-byte header page, as it was
//! [4160, +8*n)     stream table: n x (stream id u32, tid u32)
//! then             events section: blocks; then the meta section (zstd)
//! ```
//! A block: `ops u32`, then for each of the [`NCOL`] columns `raw_len u32,
//! comp_len u32`, then the columns' zstd frames in order.
//!
//! ## Ops
//! The KIND column holds one op byte per op; the op's fields are in the
//! other columns (`dt`: the zig-zag time delta in microseconds; in AOP and
//! FOP, values 0 to 2 of it are inline and 3 means "in DT").
//!
//! | op | meaning | fields |
//! |---|---|---|
//! | 0x01 | SWITCH | STREAM: stream index |
//! | 0x02 | FORGET | MISC: slot (an address allocated again while live) |
//! | 0x10 + bits | ALLOC | AOP: category + dt; MISC: func if bit 1, stack if bit 2, samples if bit 4; SIZE; address by category: 0 ADDR (difference), 1 IDX_SAME (rank among recent frees of its class), 2 IDX_ANY (distance in frees) |
//! | 0x20 / 0x21 | FREE by slot | FOP: dt; MISC: func if 0x21; SLOT |
//! | 0x22 / 0x23 | FREE of an unknown address | DT; MISC: func if 0x23, address |
//! | 0x30 / 0x31 | REALLOC, old by slot / by address | DT; MISC: dt2, func, old, new (difference), size, stack |
//! | 0x38 | REALLOC END | (the stream's last REALLOC, at its second time) |
//! | 0x40 | INLINE | DT; MISC: length, one record encoded as in a raw log with time delta 0 |
//! | 0x41 | META | DT (the meta section's next record) |
//! | 0x42 | TORN | DT |
//! | 0x43 | UNKNOWN | DT; MISC: tag |
//!
//! This module reads packed logs: [`index`] checks the fixed header and the
//! sections against the file, [`Events`] decodes the events a block at a time.
//! The encoder is `crate::pack`. Uses `crate::error` and `crate::log`.

mod events;
mod inflate;
pub mod layout;
pub(crate) mod model;

use std::path::Path;

use crate::error::{Error, Result};
use crate::log::{Index, StreamChunks};

pub use events::Events;
pub(crate) use inflate::{decoder, inflate};
use layout::FIXED;
pub use layout::{MAGIC, NCOL, STREAMS_AT, VERSION, off};

/// Whether `bytes` start like a packed log.
pub fn is_packed(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..8] == MAGIC
}

pub(crate) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}

pub(crate) fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

/// A packed log's sections, checked against the file's size.
#[derive(Clone, Debug, Default)]
pub struct Sections {
    /// The meta section, decompressed.
    pub meta: Vec<u8>,
    /// Byte range of the events section in the file.
    pub events: (usize, usize),
    pub event_count: u64,
    pub cut_records: u64,
}

pub(crate) fn corrupt(path: &Path, why: &str) -> Error {
    Error::Pack {
        path: path.to_owned(),
        why: why.to_owned(),
    }
}

/// The raw header page of a packed log.
pub fn header_page(bytes: &[u8]) -> &[u8] {
    bytes.get(FIXED..STREAMS_AT).unwrap_or(&[])
}

/// Reads a packed log's fixed header, stream table and meta section.
pub fn index(path: &Path, b: &[u8]) -> Result<Index> {
    if b.len() < STREAMS_AT {
        return Err(corrupt(path, "file ends inside the header"));
    }
    if u32_at(b, off::VERSION) != VERSION {
        return Err(corrupt(path, "unknown packed format version"));
    }
    let n = u16::from_le_bytes([b[off::STREAMS], b[off::STREAMS + 1]]) as usize;
    let events_at = STREAMS_AT + 8 * n;
    let events_len = u64_at(b, off::EVENTS_LEN);
    let meta_len = u64_at(b, off::META_LEN);
    let meta_raw = u64_at(b, off::META_RAW_LEN);
    let file = b.len() as u64;
    let total = (events_at as u64)
        .checked_add(events_len)
        .and_then(|x| x.checked_add(meta_len));
    if total != Some(file) {
        let how = if total.is_none_or(|t| t > file) {
            "exceed"
        } else {
            "fall short of"
        };
        return Err(corrupt(
            path,
            &format!(
                "section lengths (events {events_len}, meta {meta_len} bytes after {events_at}) {how} the file's size ({file} bytes)"
            ),
        ));
    }
    // A meta section expands to at most a few hundred times its size: a
    // larger claim is refused before anything is allocated.
    let meta_most = meta_len.saturating_mul(1024).saturating_add(1 << 20);
    if meta_raw > meta_most {
        return Err(corrupt(
            path,
            &format!(
                "meta section claims {meta_raw} bytes, more than its {meta_len} compressed bytes can hold"
            ),
        ));
    }
    let meta_at = events_at + events_len as usize;
    let mut meta = Vec::new();
    let mut dec = decoder().map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    inflate(&mut dec, &b[meta_at..], meta_raw as usize, &mut meta)
        .map_err(|e| corrupt(path, &e.why("meta section", meta_raw as usize)))?;
    let streams = (0..n)
        .map(|i| StreamChunks {
            id: u32_at(b, STREAMS_AT + 8 * i),
            tid: u32_at(b, STREAMS_AT + 8 * i + 4),
            chunks: Vec::new(),
        })
        .collect();
    Ok(Index {
        streams,
        empty_slots: u32_at(b, off::EMPTY_SLOTS) as u64,
        truncated: b[off::TRUNCATED] != 0,
        packed: Some(Box::new(Sections {
            meta,
            events: (events_at, meta_at),
            event_count: u64_at(b, off::EVENTS),
            cut_records: u32_at(b, off::CUT_RECORDS) as u64,
        })),
    })
}
