//! The packed format's constants: magic, version, fixed-header offsets, ops,
//! columns and the integer codes shared by the encoder (`crate::pack`) and
//! the reader ([`super::Events`]). The layout itself is described in
//! [`super`].

use memtrace_format::HEADER_SIZE;

/// The eight bytes a packed log starts with.
pub const MAGIC: [u8; 8] = *b"MEMTRPAK";

/// The packed format's version.
pub const VERSION: u32 = 2;

/// Size of the fixed header before the raw header page.
pub(crate) const FIXED: usize = 64;

/// Offset of the stream table.
pub const STREAMS_AT: usize = FIXED + HEADER_SIZE;

/// Largest column a reader accepts. The writer ends a block before MISC,
/// the only column whose bytes per op are not small, passes [`MISC_FLUSH`].
pub(crate) const MAX_COLUMN: usize = 1 << 24;

/// Recent frees an allocation can name.
pub(crate) const WINDOW: usize = 1024;

/// Offsets of the fixed header's fields (see the layout above).
pub mod off {
    /// Format version, u32.
    pub const VERSION: usize = 8;
    /// Events section's length in bytes, u64.
    pub const EVENTS_LEN: usize = 16;
    /// Meta section's compressed length, u64.
    pub const META_LEN: usize = 24;
    /// Meta section's decompressed length, u64.
    pub const META_RAW_LEN: usize = 32;
    /// Events in the log, u64.
    pub const EVENTS: usize = 40;
    /// Records cut by the writer's death, u32.
    pub const CUT_RECORDS: usize = 48;
    /// Chunk slots never written, u32.
    pub const EMPTY_SLOTS: usize = 56;
    /// Whether the raw log was truncated, u16.
    pub const TRUNCATED: usize = 60;
    /// Entries of the stream table, u16.
    pub const STREAMS: usize = 62;
}

pub(crate) mod op {
    pub const SWITCH: u8 = 0x01;
    pub const FORGET: u8 = 0x02;
    pub const ALLOC: u8 = 0x10;
    pub const ALLOC_FUNC: u8 = 1;
    pub const ALLOC_STACK: u8 = 2;
    pub const ALLOC_SAMPLED: u8 = 4;
    pub const FREE_SLOT: u8 = 0x20;
    pub const FREE_RAW: u8 = 0x22;
    pub const FREE_FUNC: u8 = 1;
    pub const REALLOC_SLOT: u8 = 0x30;
    pub const REALLOC_RAW: u8 = 0x31;
    pub const REALLOC_END: u8 = 0x38;
    pub const INLINE: u8 = 0x40;
    pub const META: u8 = 0x41;
    pub const TORN: u8 = 0x42;
    pub const UNKNOWN: u8 = 0x43;
}

/// The columns.
pub(crate) mod col {
    pub const KIND: usize = 0;
    pub const AOP: usize = 1;
    pub const FOP: usize = 2;
    pub const DT: usize = 3;
    /// Sizes' low bytes; their high bytes are the next column.
    pub const SIZE_LO: usize = 4;
    /// Slots' low bytes; their high bytes are the next column.
    pub const SLOT_LO: usize = 6;
    pub const ADDR0: usize = 8;
    pub const ADDR1: usize = 9;
    pub const ADDR2: usize = 10;
    pub const IDX_SAME: usize = 11;
    pub const IDX_ANY: usize = 12;
    pub const MISC: usize = 13;
    pub const STREAM: usize = 14;
}

/// Number of columns.
pub const NCOL: usize = 15;

/// Address categories of an ALLOC (in AOP).
pub(crate) mod cat {
    pub const DIFF: u8 = 0;
    pub const SAME: u8 = 1;
    pub const ANY: u8 = 2;
}

pub(crate) fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
pub(crate) fn unzz(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// glibc's chunk size for a request (64-bit): the size class allocators
/// reuse freed blocks by. Any monotone function would do for correctness.
#[inline(always)]
pub(crate) fn class(size: u64) -> u64 {
    (size.saturating_add(8 + 15) & !15).max(32)
}
