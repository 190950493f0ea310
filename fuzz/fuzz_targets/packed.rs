//! Packed logs whose lengths lie: the input is turned into a valid raw log
//! (as in `records`), packed in memory by the real encoder, and then up to
//! three of the packed file's length fields are overwritten before the whole
//! pipeline reads it back. So mutations reach the packed reader's checks of
//! section lengths (events, meta compressed and decompressed), the stream
//! table's count, the event count and the first block's op count and column
//! lengths, which byte mutations of a whole packed file (the `analyze`
//! target) rarely get past zstd's checksums to.
//!
//! Input: byte 0 holds the number of edits (0 to 3) in its low two bits;
//! then each edit is 9 bytes: a field selector, then a little-endian u64
//! (selector bit 7 set: the field becomes the value; clear: the value is
//! added, wrapping, to what the encoder wrote). The rest is the `records`
//! target's input.
#![no_main]

mod common;

use memtrace_analyzer::log::packed::{self, off};
use memtrace_analyzer::pack;
use std::path::Path;

/// Where a selector's field is and how wide, in the packed bytes `b`.
fn field(b: &[u8], sel: u8) -> Option<(usize, usize)> {
    let streams = u16::from_le_bytes([*b.get(off::STREAMS)?, *b.get(off::STREAMS + 1)?]);
    // The first block's header: ops u32, then (raw_len u32, comp_len u32) per column.
    let block = packed::STREAMS_AT + 8 * usize::from(streams);
    let f = match sel % (8 + 1 + 2 * packed::NCOL as u8) {
        0 => (off::EVENTS_LEN, 8),
        1 => (off::META_LEN, 8),
        2 => (off::META_RAW_LEN, 8),
        3 => (off::EVENTS, 8),
        4 => (off::CUT_RECORDS, 4),
        5 => (off::STREAMS, 2),
        6 => (off::EMPTY_SLOTS, 4),
        7 => (off::TRUNCATED, 2),
        8 => (block, 4),
        n => (block + 4 + 4 * usize::from(n - 9), 4),
    };
    (f.0 + f.1 <= b.len()).then_some(f)
}

fn edit(b: &mut [u8], sel: u8, v: u64) {
    let Some((at, width)) = field(b, sel) else {
        return;
    };
    let mut old = [0u8; 8];
    old[..width].copy_from_slice(&b[at..at + width]);
    let new = if sel & 0x80 != 0 {
        v
    } else {
        u64::from_le_bytes(old).wrapping_add(v)
    };
    b[at..at + width].copy_from_slice(&new.to_le_bytes()[..width]);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (&first, rest) = data.split_first().unwrap_or((&0, &[]));
    let edits = usize::from(first & 3);
    if rest.len() < 9 * edits {
        return;
    }
    let (edits, rest) = rest.split_at(9 * edits);
    let raw = common::raw_log(rest);
    let log = memtrace_analyzer::log::Log::from_bytes(Path::new("<fuzz>"), &raw);
    let mut out = std::io::Cursor::new(Vec::new());
    if pack::pack(&log, &mut out).is_err() {
        return;
    }
    let mut b = out.into_inner();
    for e in edits.chunks_exact(9) {
        let v = u64::from_le_bytes(e[1..9].try_into().expect("8 bytes"));
        edit(&mut b, e[0], v);
    }
    common::run(&b);
});
