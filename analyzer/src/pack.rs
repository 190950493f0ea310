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

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use memtrace_format::{Func, HEADER_SIZE, Record, RecordIter, encode};

use crate::error::{Error, Result};
use crate::log::{Event, Index, Log, StreamChunks};
use crate::replay::FastMap;

/// The eight bytes a packed log starts with.
pub const MAGIC: [u8; 8] = *b"MEMTRPAK";
/// The packed format's version.
pub const VERSION: u32 = 2;
/// Size of the fixed header before the raw header page.
const FIXED: usize = 64;
/// Offset of the stream table.
pub const STREAMS_AT: usize = FIXED + HEADER_SIZE;
/// zstd level: 3 is zstd's default, fast to write and to read.
const LEVEL: i32 = 3;
/// Ops per block.
const BLOCK_OPS: usize = 1 << 18;
/// Largest column a reader accepts. The writer ends a block before MISC,
/// the only column whose bytes per op are not small, passes [`MISC_FLUSH`].
const MAX_COLUMN: usize = 1 << 24;
/// MISC bytes after which the writer ends the block.
const MISC_FLUSH: usize = 1 << 23;
/// Recent frees an allocation can name.
const WINDOW: usize = 1024;
/// Ranks among the recent frees of a class an allocation can name.
const SAME_RANKS: usize = 8;
/// Classes (of 16 bytes each) kept in a table rather than a map.
const SMALL_CLASSES: usize = 256;
/// Buckets of streams with recent frees of their own.
const BUCKETS: usize = 64;

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

mod op {
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
mod col {
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
mod cat {
    pub const DIFF: u8 = 0;
    pub const SAME: u8 = 1;
    pub const ANY: u8 = 2;
}

/// Whether `bytes` start like a packed log.
pub fn is_packed(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..8] == MAGIC
}

fn us(t: u64) -> u64 {
    t / 1000
}

fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
fn unzz(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_v(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// glibc's chunk size for a request (64-bit): the size class allocators
/// reuse freed blocks by. Any monotone function would do for correctness.
#[inline(always)]
fn class(size: u64) -> u64 {
    (size.saturating_add(8 + 15) & !15).max(32)
}

/// One recent free.
#[derive(Clone, Copy, Default)]
struct Freed {
    /// Its number in the sequence of frees (+1: 0 marks an empty entry).
    seq: u64,
    /// 0 once an allocation took it.
    addr: u64,
}

/// Recent frees of the threads of one bucket (allocators keep freed blocks
/// per thread, as glibc's tcache does, so a thread's allocations are best
/// predicted by its own frees).
struct Recents {
    /// The address of the bucket's last allocation (arenas are per thread too).
    last_addr: u64,
    /// Frees remembered so far.
    frees: u64,
    ring: Vec<Freed>,
    /// Sequence numbers of recent frees, by class (most recent last): small
    /// classes by index, the others in a map.
    small: Vec<Vec<u64>>,
    large: FastMap<u64, Vec<u64>>,
}

impl Recents {
    fn new() -> Recents {
        Recents {
            last_addr: 0,
            frees: 0,
            ring: vec![Freed::default(); WINDOW],
            small: (0..SMALL_CLASSES).map(|_| Vec::new()).collect(),
            large: FastMap::default(),
        }
    }

    /// Remembers a freed block (freed by slot).
    #[inline(always)]
    fn remember(&mut self, addr: u64, size: u64) {
        self.frees += 1;
        let seq = self.frees;
        self.ring[(seq as usize) % WINDOW] = Freed { seq, addr };
        let c = class(size);
        let v = match self.small.get_mut((c / 16) as usize) {
            Some(v) => v,
            None => self.large.entry(c).or_default(),
        };
        v.push(seq);
        if v.len() > 2 * SAME_RANKS + 16 {
            let (frees, ring) = (self.frees, &self.ring);
            v.retain(|&s| valid(ring, frees, s));
        }
    }

    /// The recent free `seq`, if it is still in the window and not taken.
    #[inline(always)]
    fn recent(&self, seq: u64) -> Option<Freed> {
        valid(&self.ring, self.frees, seq).then(|| self.ring[(seq as usize) % WINDOW])
    }

    /// The `rank`-th most recent valid free of `class`.
    fn same(&mut self, class: u64, rank: usize) -> Option<u64> {
        let (frees, ring) = (self.frees, &self.ring);
        let v = match self.small.get_mut((class / 16) as usize) {
            Some(v) => v,
            None => self.large.get_mut(&class)?,
        };
        while v.last().is_some_and(|&s| !valid(ring, frees, s)) {
            v.pop();
        }
        v.iter()
            .rev()
            .filter(|&&s| valid(ring, frees, s))
            .nth(rank)
            .copied()
    }

    /// The rank (below [`SAME_RANKS`]) and sequence number of `addr` among
    /// the recent frees of `class`, as [`Recents::same`] would find it.
    fn find_same(&mut self, class: u64, addr: u64) -> Option<(usize, u64)> {
        let (frees, ring) = (self.frees, &self.ring);
        let v = match self.small.get_mut((class / 16) as usize) {
            Some(v) => v,
            None => self.large.get_mut(&class)?,
        };
        while v.last().is_some_and(|&s| !valid(ring, frees, s)) {
            v.pop();
        }
        v.iter()
            .rev()
            .filter(|&&s| valid(ring, frees, s))
            .take(SAME_RANKS)
            .enumerate()
            .find(|&(_, &s)| ring[(s as usize) % WINDOW].addr == addr)
            .map(|(rank, &s)| (rank, s))
    }

    #[inline(always)]
    fn take_recent(&mut self, seq: u64) {
        self.ring[(seq as usize) % WINDOW].addr = 0;
    }
}

/// The state both sides keep, so the decoder mirrors every choice of the encoder.
struct Model {
    prev_us: u64,
    stream: usize,
    last_stack: u32,
    /// (address, size) by slot; address 0: a free slot.
    slots: Vec<(u64, u64)>,
    free_slots: Vec<u32>,
    /// Recent frees by bucket of streams (stream index modulo [`BUCKETS`]),
    /// created on first use.
    buckets: Vec<Option<Box<Recents>>>,
}

impl Model {
    fn new() -> Model {
        Model {
            prev_us: 0,
            stream: 0,
            last_stack: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            buckets: (0..BUCKETS).map(|_| None).collect(),
        }
    }

    /// The current stream's bucket number.
    #[inline(always)]
    fn bucket(&self) -> usize {
        self.stream % BUCKETS
    }

    /// The current stream's recent frees.
    #[inline(always)]
    fn rec(&mut self) -> &mut Recents {
        let b = self.bucket();
        self.buckets[b].get_or_insert_with(|| Box::new(Recents::new()))
    }

    /// Gives the block a slot (last freed slot first).
    #[inline(always)]
    fn take_slot(&mut self, addr: u64, size: u64) -> u32 {
        match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = (addr, size);
                s
            }
            None => {
                self.slots.push((addr, size));
                (self.slots.len() - 1) as u32
            }
        }
    }

    #[inline(always)]
    fn release_slot(&mut self, s: u32) {
        self.slots[s as usize] = (0, 0);
        self.free_slots.push(s);
    }
}

#[inline(always)]
fn valid(ring: &[Freed], frees: u64, seq: u64) -> bool {
    // A damaged log can name a free from the future: checked, not wrapped.
    seq != 0 && frees.checked_sub(seq).is_some_and(|d| d < WINDOW as u64) && {
        let f = &ring[(seq as usize) % WINDOW];
        f.seq == seq && f.addr != 0
    }
}

/// What packing a log did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub raw_bytes: u64,
    pub packed_bytes: u64,
}

/// The encoder.
struct Enc {
    m: Model,
    cols: [Vec<u8>; NCOL],
    meta: Vec<u8>,
    /// Slot of each live address.
    slot_of: FastMap<u64, u32>,
    /// Bucket and sequence number of each recently freed address.
    freed_at: FastMap<u64, (usize, u64)>,
    scratch: Vec<u8>,
    frames: Vec<u64>,
}

impl Enc {
    fn misc(&mut self, v: u64) {
        put_v(&mut self.cols[col::MISC], v);
    }

    /// The time delta: inline (0..=2) in the op's own column `c`, else 3 there and the value in DT.
    fn dt_in(&mut self, c: usize, t: u64, extra: u8) {
        let d = self.dt_value(t);
        if d < 3 {
            self.cols[c].push(extra | (d as u8) << 2);
        } else {
            self.cols[c].push(extra | 3 << 2);
            put_v(&mut self.cols[col::DT], d);
        }
    }

    fn dt_value(&mut self, t: u64) -> u64 {
        let q = us(t);
        let d = q.wrapping_sub(self.m.prev_us) as i64;
        self.m.prev_us = q;
        zz(d)
    }

    fn dt(&mut self, t: u64) {
        let d = self.dt_value(t);
        put_v(&mut self.cols[col::DT], d);
    }

    /// A 16-bit value in two byte planes (0xffff: escaped to MISC).
    fn planes16(&mut self, lo: usize, v: u64) {
        let x = if v < 0xffff { v } else { 0xffff };
        self.cols[lo].push(x as u8);
        self.cols[lo + 1].push((x >> 8) as u8);
        if x == 0xffff {
            self.misc(v);
        }
    }

    fn addr_diff(&mut self, addr: u64) {
        let d = zz(addr.wrapping_sub(self.m.rec().last_addr) as i64);
        let x = if d < 0xff_ffff { d } else { 0xff_ffff };
        self.cols[col::ADDR0].push(x as u8);
        self.cols[col::ADDR1].push((x >> 8) as u8);
        self.cols[col::ADDR2].push((x >> 16) as u8);
        if x == 0xff_ffff {
            self.misc(d);
        }
    }

    /// Frees the slot `addr` holds, if any (an address allocated again while live).
    fn forget_live(&mut self, addr: u64) {
        if let Some(s) = self.slot_of.remove(&addr) {
            self.cols[col::KIND].push(op::FORGET);
            self.misc(s as u64);
            self.m.release_slot(s);
        }
    }

    fn take_slot(&mut self, addr: u64, size: u64) {
        let s = self.m.take_slot(addr, size);
        self.slot_of.insert(addr, s);
    }

    /// Re-encodes a record with a zero time delta into `scratch`.
    fn reencode(&mut self, rec: &Record<'_>) -> Option<usize> {
        let b = &mut self.scratch[..];
        match rec {
            Record::Mmap {
                func,
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
                stack,
                ..
            } => encode::mmap(
                b, 0, *func, *addr, *len, *prot, *flags, *fd, *offset, *stack,
            ),
            Record::Munmap {
                addr, len, stack, ..
            } => encode::munmap(b, 0, *addr, *len, *stack),
            Record::Mremap {
                old,
                old_len,
                new,
                new_len,
                flags,
                stack,
                ..
            } => encode::mremap(b, 0, *old, *old_len, *new, *new_len, *flags, *stack),
            Record::Brk {
                func,
                arg,
                old_break,
                new_break,
                stack,
                ..
            } => encode::brk(b, 0, *func, *arg, *old_break, *new_break, *stack),
            Record::Unmodule { bias, start, .. } => encode::unmodule(b, 0, *bias, *start),
            Record::Lost { count, .. } => encode::lost(b, 0, *count),
            Record::Freeres { phase, .. } => encode::freeres(b, 0, *phase),
            Record::Fork {
                child_pid,
                how,
                path,
                ..
            } => encode::fork(b, 0, *child_pid, *how, path),
            Record::Exit { how, status, .. } => encode::exit(b, 0, *how, *status),
            Record::Stack { id, frames } => {
                self.frames.clear();
                for f in frames.clone() {
                    self.frames.push(f.ok()?);
                }
                encode::stack(b, *id, &self.frames, frames.cut())
            }
            Record::Module {
                bias,
                start,
                end,
                build_id,
                path,
                ..
            } => encode::module(b, 0, *bias, *start, *end, build_id, path),
            Record::Exec { path, how, .. } => encode::exec(b, 0, path, *how),
            Record::Kernel { kind, values, .. } => {
                self.frames.clear();
                for v in values.clone() {
                    self.frames.push(v.ok()?);
                }
                encode::kernel(b, 0, *kind, &self.frames)
            }
            _ => None,
        }
    }

    fn alloc(
        &mut self,
        ev: &Event<'_>,
        func: Func,
        addr: u64,
        size: u64,
        stack: u32,
        samples: u64,
    ) {
        if addr != 0 {
            self.forget_live(addr);
        }
        let mut o = op::ALLOC;
        if func != Func::Malloc {
            o |= op::ALLOC_FUNC;
        }
        if stack != self.m.last_stack {
            o |= op::ALLOC_STACK;
        }
        if samples != 0 {
            o |= op::ALLOC_SAMPLED;
        }
        self.cols[col::KIND].push(o);
        if o & op::ALLOC_FUNC != 0 {
            self.misc(func as u8 as u64);
        }
        if o & op::ALLOC_STACK != 0 {
            self.misc(stack as u64);
            self.m.last_stack = stack;
        }
        if samples != 0 {
            self.misc(samples);
        }
        self.planes16(col::SIZE_LO, size);
        // The address: a recent free of the same class, any recent free, or a difference.
        let c = class(size);
        let mut how = cat::DIFF;
        if addr != 0 {
            let bucket = self.m.bucket();
            let rec = self.m.rec();
            if let Some((rank, seq)) = rec.find_same(c, addr) {
                how = cat::SAME;
                self.cols[col::IDX_SAME].push(rank as u8);
                rec.take_recent(seq);
                self.freed_at.remove(&addr);
            }
            if how == cat::DIFF
                && let Some(&(b, seq)) = self.freed_at.get(&addr)
                && b == bucket
                && rec.recent(seq).is_some_and(|f| f.addr == addr)
            {
                how = cat::ANY;
                put_v(&mut self.cols[col::IDX_ANY], rec.frees - seq);
                rec.take_recent(seq);
                self.freed_at.remove(&addr);
            }
        }
        if how == cat::DIFF {
            self.addr_diff(addr);
        }
        self.m.rec().last_addr = addr;
        self.dt_in(col::AOP, ev.time, how);
        if addr != 0 {
            self.take_slot(addr, size);
        }
    }

    fn event(&mut self, ev: &Event<'_>) -> Result<(), &'static str> {
        if ev.stream != self.m.stream {
            self.cols[col::KIND].push(op::SWITCH);
            put_v(&mut self.cols[col::STREAM], ev.stream as u64);
            self.m.stream = ev.stream;
        }
        match &ev.record {
            Record::Alloc {
                func,
                addr,
                size,
                stack,
                samples,
                ..
            } => self.alloc(ev, *func, *addr, *size, *stack, *samples),
            Record::Free { func, addr, .. } => {
                let explicit = *func != Func::Free;
                match self.slot_of.remove(addr) {
                    Some(s) => {
                        self.cols[col::KIND].push(op::FREE_SLOT | explicit as u8);
                        self.dt_in(col::FOP, ev.time, 0);
                        if explicit {
                            self.misc(*func as u8 as u64);
                        }
                        self.planes16(col::SLOT_LO, s as u64);
                        let size = self.m.slots[s as usize].1;
                        self.m.release_slot(s);
                        let bucket = self.m.bucket();
                        let rec = self.m.rec();
                        rec.remember(*addr, size);
                        let seq = rec.frees;
                        self.freed_at.insert(*addr, (bucket, seq));
                        if self.freed_at.len() > 4 * WINDOW * BUCKETS {
                            let m = &self.m;
                            self.freed_at.retain(|_, (b, s)| {
                                m.buckets[*b]
                                    .as_ref()
                                    .is_some_and(|r| r.recent(*s).is_some())
                            });
                        }
                    }
                    None => {
                        self.cols[col::KIND].push(op::FREE_RAW | explicit as u8);
                        self.dt(ev.time);
                        if explicit {
                            self.misc(*func as u8 as u64);
                        }
                        self.misc(*addr);
                    }
                }
            }
            Record::Realloc {
                time,
                time_after,
                func,
                old,
                new,
                size,
                stack,
            } => {
                if ev.realloc_end {
                    if *new != 0 {
                        self.forget_live(*new);
                    }
                    self.cols[col::KIND].push(op::REALLOC_END);
                    self.m.prev_us = us(*time_after);
                    if *new != 0 {
                        self.take_slot(*new, *size);
                    }
                } else {
                    let released = *old != 0 && (*new != 0 || *size == 0);
                    let slot = self.slot_of.get(old).copied();
                    self.cols[col::KIND].push(if slot.is_some() {
                        op::REALLOC_SLOT
                    } else {
                        op::REALLOC_RAW
                    });
                    self.dt(*time);
                    self.misc(us(*time_after).wrapping_sub(us(*time)));
                    self.misc(*func as u8 as u64);
                    match slot {
                        Some(s) => {
                            self.misc(s as u64);
                            if released {
                                self.slot_of.remove(old);
                                self.m.release_slot(s);
                            }
                        }
                        None => self.misc(*old),
                    }
                    let d = zz(new.wrapping_sub(self.m.rec().last_addr) as i64);
                    self.misc(d);
                    self.m.rec().last_addr = *new;
                    self.misc(*size);
                    self.misc(*stack as u64);
                }
            }
            Record::Torn => {
                self.cols[col::KIND].push(op::TORN);
                self.dt(ev.time);
            }
            Record::Unknown { tag } => {
                self.cols[col::KIND].push(op::UNKNOWN);
                self.dt(ev.time);
                self.misc(*tag as u64);
            }
            rec => {
                let n = self.reencode(rec).ok_or("record")?;
                // Records with byte strings go to the meta section (a
                // FORK's path is empty unless the child was spawned).
                let meta = match rec {
                    Record::Stack { .. }
                    | Record::Module { .. }
                    | Record::Exec { .. }
                    | Record::Kernel { .. } => true,
                    Record::Fork { path, .. } => !path.is_empty(),
                    _ => false,
                };
                if meta {
                    self.cols[col::KIND].push(op::META);
                    self.dt(ev.time);
                    self.meta.extend_from_slice(&self.scratch[..n]);
                } else {
                    self.cols[col::KIND].push(op::INLINE);
                    self.dt(ev.time);
                    self.misc(n as u64);
                    let Enc { cols, scratch, .. } = self;
                    cols[col::MISC].extend_from_slice(&scratch[..n]);
                }
            }
        }
        Ok(())
    }
}

/// Writes the columns as one block (nothing if they are empty); returns the bytes written.
fn write_block(cols: &[Vec<u8>; NCOL], out: &mut impl Write) -> std::io::Result<u64> {
    let ops = cols[col::KIND].len();
    if ops == 0 {
        return Ok(0);
    }
    let mut frames = Vec::with_capacity(NCOL);
    for c in cols {
        frames.push(zstd::bulk::compress(c, LEVEL)?);
    }
    let mut head = Vec::with_capacity(4 + 8 * NCOL);
    head.extend_from_slice(&(ops as u32).to_le_bytes());
    for (c, f) in cols.iter().zip(&frames) {
        head.extend_from_slice(&(c.len() as u32).to_le_bytes());
        head.extend_from_slice(&(f.len() as u32).to_le_bytes());
    }
    out.write_all(&head)?;
    let mut n = head.len() as u64;
    for f in &frames {
        out.write_all(f)?;
        n += f.len() as u64;
    }
    Ok(n)
}

/// Packs the raw log `src` into `dst` (written whole, then renamed over
/// `dst`: a failure leaves `dst` untouched).
pub fn pack_file(src: &Path, dst: &Path) -> Result<Stats> {
    let log = Log::open(src)?;
    if log.is_packed() {
        return Err(Error::Pack {
            path: src.to_owned(),
            why: "already packed".into(),
        });
    }
    // Packing a log its writer still appends to would lose the later events.
    if let Some(pid) = crate::live::writer(src, &log.header()?) {
        return Err(Error::Live {
            path: src.to_owned(),
            pid,
        });
    }
    let tmp = dst.with_extension("packing");
    let io = |source| Error::Io {
        path: tmp.clone(),
        source,
    };
    let mut file = crate::outfile::create_temp(&tmp).map_err(io)?;
    // A log truncated under the packer would be packed from zeros.
    let result = log.checked(pack(&log, &mut file)).and_then(|mut s| {
        file.sync_all().map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, dst).map_err(|source| Error::Io {
            path: dst.to_owned(),
            source,
        })?;
        s.raw_bytes = log.bytes().len() as u64;
        Ok(s)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Packs `log` into `out`.
pub fn pack<W: Write + Seek + Send>(log: &Log, out: &mut W) -> Result<Stats> {
    let path = log.path().to_owned();
    let header = log.header()?;
    let index = log.index(&header)?;
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut fixed = [0u8; FIXED];
    fixed[..8].copy_from_slice(&MAGIC);
    fixed[off::VERSION..off::VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
    out.write_all(&fixed).map_err(io)?;
    out.write_all(&log.bytes()[..HEADER_SIZE]).map_err(io)?;
    let mut table = Vec::with_capacity(index.streams.len() * 8);
    for s in &index.streams {
        table.extend_from_slice(&s.id.to_le_bytes());
        table.extend_from_slice(&s.tid.to_le_bytes());
    }
    out.write_all(&table).map_err(io)?;

    let mut enc = Enc {
        m: Model::new(),
        cols: std::array::from_fn(|_| Vec::with_capacity(BLOCK_OPS)),
        meta: Vec::new(),
        slot_of: FastMap::default(),
        freed_at: FastMap::default(),
        scratch: vec![0u8; memtrace_format::MAX_RECORD],
        frames: Vec::new(),
    };
    let mut events = 0u64;
    // Three threads: decoding the raw log (see `for_each_event`), encoding
    // (this one), and compressing and writing full blocks.
    let (cut, section) = std::thread::scope(|s| -> Result<(u64, u64)> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<[Vec<u8>; NCOL]>(1);
        let (back, spare) = std::sync::mpsc::channel::<[Vec<u8>; NCOL]>();
        let mut w = std::io::BufWriter::new(&mut *out);
        let writer = s.spawn(move || -> std::io::Result<u64> {
            let mut n = 0;
            for mut cols in rx {
                n += write_block(&cols, &mut w)?;
                cols.iter_mut().for_each(Vec::clear);
                let _ = back.send(cols);
            }
            w.flush()?;
            Ok(n)
        });
        let fresh = || std::array::from_fn(|_| Vec::with_capacity(BLOCK_OPS));
        let written = crate::log::for_each_event(log, &index, |ev| {
            enc.event(ev).map_err(|why| Error::Pack {
                path: path.clone(),
                why: format!("cannot re-encode a {why}"),
            })?;
            events += 1;
            if enc.cols[col::KIND].len() >= BLOCK_OPS || enc.cols[col::MISC].len() >= MISC_FLUSH {
                let next = spare.try_recv().unwrap_or_else(|_| fresh());
                if tx.send(std::mem::replace(&mut enc.cols, next)).is_err() {
                    return Err(Error::Pack {
                        path: path.clone(),
                        why: "the writer stopped".into(),
                    });
                }
            }
            Ok(())
        });
        let last = std::mem::replace(&mut enc.cols, std::array::from_fn(|_| Vec::new()));
        let _ = tx.send(last);
        drop(tx);
        let section = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .map_err(io)?;
        Ok((written?, section))
    })?;
    let meta = zstd::bulk::compress(&enc.meta, LEVEL).map_err(io)?;
    out.write_all(&meta).map_err(io)?;
    let end = out.stream_position().map_err(io)?;

    let mut put = |o: usize, b: &[u8]| fixed[o..o + b.len()].copy_from_slice(b);
    put(off::EVENTS_LEN, &section.to_le_bytes());
    put(off::META_LEN, &(meta.len() as u64).to_le_bytes());
    put(off::META_RAW_LEN, &(enc.meta.len() as u64).to_le_bytes());
    put(off::EVENTS, &events.to_le_bytes());
    put(off::CUT_RECORDS, &(cut as u32).to_le_bytes());
    put(off::EMPTY_SLOTS, &(index.empty_slots as u32).to_le_bytes());
    put(off::TRUNCATED, &(index.truncated as u16).to_le_bytes());
    put(off::STREAMS, &(index.streams.len() as u16).to_le_bytes());
    out.seek(SeekFrom::Start(0)).map_err(io)?;
    out.write_all(&fixed).map_err(io)?;
    out.seek(SeekFrom::Start(end)).map_err(io)?;
    Ok(Stats {
        events,
        raw_bytes: 0,
        packed_bytes: end,
    })
}

/// Most bytes a zstd frame's window may take while streaming (2^23: the
/// writer's level uses 2^21 at most). A frame asking for more is refused
/// instead of allocated.
const WINDOW_LOG_MAX: u32 = 23;

/// A zstd decoder for [`inflate`].
fn decoder() -> std::io::Result<zstd::stream::raw::Decoder<'static>> {
    let mut d = zstd::stream::raw::Decoder::new()?;
    d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
    Ok(d)
}

/// Why [`inflate`] failed.
#[derive(Debug, PartialEq)]
enum Inflate {
    /// Not a complete, valid zstd frame.
    Corrupt,
    /// The data expands to more than the length claimed.
    More,
    /// The data expands to this many bytes, fewer than claimed.
    Less(usize),
}

impl Inflate {
    /// The error for the section `what` that claimed `claimed` bytes.
    fn why(&self, what: &str, claimed: usize) -> String {
        match self {
            Inflate::Corrupt => format!("{what} does not decompress"),
            Inflate::More => {
                format!("{what} decompresses to more than the {claimed} bytes it claims")
            }
            Inflate::Less(n) => {
                format!("{what} decompresses to {n} bytes, not the {claimed} it claims")
            }
        }
    }
}

/// Decompresses the single zstd frame `src` into `out`, which must come to
/// exactly `claimed` bytes. Neither the claim nor the frame's own header is
/// trusted with memory: `out` starts at a size in proportion to `src` and
/// doubles only as decompressed bytes actually fill it, up to one byte past
/// the claim (which proves the claim a lie).
fn inflate(
    dec: &mut zstd::stream::raw::Decoder<'static>,
    src: &[u8],
    claimed: usize,
    out: &mut Vec<u8>,
) -> Result<(), Inflate> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    out.clear();
    dec.reinit().map_err(|_| Inflate::Corrupt)?;
    let limit = claimed.saturating_add(1);
    let first = src.len().saturating_mul(8).max(64 << 10).min(limit);
    if out.capacity() < first {
        out.reserve_exact(first);
    }
    let mut input = InBuffer::around(src);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(Inflate::More);
            }
            let grow = out.capacity().max(1).min(limit - out.len());
            out.reserve_exact(grow);
        }
        let pos = out.len();
        let mut o = OutBuffer::around_pos(out, pos);
        let left = dec.run(&mut input, &mut o).map_err(|_| Inflate::Corrupt)?;
        let full = o.pos() == o.capacity();
        if left == 0 {
            break;
        }
        if !full {
            // Room left, input used up, frame not finished: cut short.
            return Err(Inflate::Corrupt);
        }
    }
    if input.pos != src.len() {
        // Bytes after the frame: the writer writes one frame per section.
        return Err(Inflate::Corrupt);
    }
    match out.len() {
        n if n > claimed => Err(Inflate::More),
        n if n < claimed => Err(Inflate::Less(n)),
        _ => Ok(()),
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], o: usize) -> u64 {
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

fn corrupt(path: &Path, why: &str) -> Error {
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

/// Decodes the events section a block at a time.
pub struct Events<'a> {
    log: &'a Log,
    path: &'a Path,
    /// The events section's byte range in the file; the next block's offset;
    /// how much of the section was released from memory (see [`Log::release`]).
    section: (usize, usize),
    at: usize,
    released: usize,
    cols: [Vec<u8>; NCOL],
    pos: [usize; NCOL],
    ops_left: usize,
    zstd: zstd::stream::raw::Decoder<'static>,
    meta: &'a [u8],
    meta_pos: usize,
    streams: usize,
    m: Model,
    max_slots: usize,
    /// Each stream's last REALLOC, for its REALLOC END.
    pending: Vec<Option<Record<'a>>>,
    failed: bool,
    /// Events decoded, and how many the header says there are.
    count: u64,
    expected: u64,
}

impl<'a> Events<'a> {
    pub fn new(log: &'a Log, index: &'a Index, s: &'a Sections) -> Result<Events<'a>> {
        let len = s.events.1 - s.events.0;
        Ok(Events {
            log,
            path: log.path(),
            section: s.events,
            at: s.events.0,
            released: s.events.0,
            cols: std::array::from_fn(|_| Vec::new()),
            pos: [0; NCOL],
            ops_left: 0,
            zstd: decoder().map_err(|source| Error::Io {
                path: log.path().to_owned(),
                source,
            })?,
            meta: &s.meta,
            meta_pos: 0,
            streams: index.streams.len(),
            m: Model::new(),
            // Live blocks are bounded by what the file can describe.
            max_slots: len.saturating_mul(256).max(1 << 22),
            pending: (0..index.streams.len()).map(|_| None).collect(),
            failed: false,
            count: 0,
            expected: s.event_count,
        })
    }

    fn err(&self, why: &str) -> Error {
        corrupt(self.path, why)
    }

    /// Decompresses the next block; `false` at the end of the section.
    fn load_block(&mut self) -> Result<bool> {
        let b = self.log.bytes();
        let end = self.section.1;
        if self.at >= end {
            return Ok(false);
        }
        let head = 4 + 8 * NCOL;
        if end - self.at < head {
            return Err(self.err("events section ends inside a block header"));
        }
        let h = &b[self.at..self.at + head];
        let ops = u32_at(h, 0) as usize;
        let mut p = self.at + head;
        for c in 0..NCOL {
            let raw = u32_at(h, 4 + 8 * c) as usize;
            let comp = u32_at(h, 8 + 8 * c) as usize;
            let at = self.at;
            if raw > MAX_COLUMN {
                return Err(self.err(&format!(
                    "column {c} of the block at {at} claims {raw} bytes (at most {MAX_COLUMN})"
                )));
            }
            if comp > end - p {
                return Err(self.err(&format!(
                    "column {c} of the block at {at}: its {comp} compressed bytes run past the events section ({} bytes left)",
                    end - p
                )));
            }
            inflate(&mut self.zstd, &b[p..p + comp], raw, &mut self.cols[c]).map_err(|e| {
                corrupt(
                    self.path,
                    &e.why(&format!("column {c} of the block at {at}"), raw),
                )
            })?;
            self.pos[c] = 0;
            p += comp;
        }
        if self.cols[col::KIND].len() != ops || ops == 0 {
            return Err(self.err("block op count"));
        }
        self.ops_left = ops;
        self.at = p;
        // The compressed bytes will not be needed again.
        if self.at - self.released >= 1 << 20 {
            self.log.release(self.released, self.at);
            self.released = self.at;
        }
        Ok(true)
    }

    #[inline(always)]
    fn u8(&mut self, c: usize) -> Result<u8> {
        match self.cols[c].get(self.pos[c]) {
            Some(&b) => {
                self.pos[c] += 1;
                Ok(b)
            }
            None => Err(self.err("a column ends early")),
        }
    }

    #[inline(always)]
    fn v(&mut self, c: usize) -> Result<u64> {
        // The format crate's checked varint reader, on the column's rest.
        let rest = self.cols[c].get(self.pos[c]..).unwrap_or(&[]);
        let mut r = memtrace_format::decode::Reader::new(rest);
        match r.v() {
            Ok(v) => {
                self.pos[c] += rest.len() - r.rest().len();
                Ok(v)
            }
            Err(_) => Err(self.err("a column ends early or holds a bad varint")),
        }
    }

    #[inline(always)]
    fn misc(&mut self) -> Result<u64> {
        self.v(col::MISC)
    }

    fn func(&mut self) -> Result<Func> {
        let b = self.misc()?;
        u8::try_from(b)
            .ok()
            .and_then(Func::from_u8)
            .ok_or_else(|| self.err("function"))
    }

    fn stack_id(&mut self) -> Result<u32> {
        let v = self.misc()?;
        u32::try_from(v).map_err(|_| self.err("stack id"))
    }

    #[inline(always)]
    fn planes16(&mut self, lo: usize) -> Result<u64> {
        let x = self.u8(lo)? as u64 | (self.u8(lo + 1)? as u64) << 8;
        if x == 0xffff { self.misc() } else { Ok(x) }
    }

    #[inline(always)]
    fn time_value(&mut self, d: u64) -> u64 {
        self.m.prev_us = self.m.prev_us.wrapping_add(unzz(d) as u64);
        self.m.prev_us.wrapping_mul(1000)
    }

    /// A time delta inline in an op column byte (bits 2-3), or in DT.
    #[inline(always)]
    fn time_in(&mut self, b: u8) -> Result<u64> {
        let d = match (b >> 2) & 3 {
            3 => self.v(col::DT)?,
            d => d as u64,
        };
        Ok(self.time_value(d))
    }

    #[inline(always)]
    fn time(&mut self) -> Result<u64> {
        let d = self.v(col::DT)?;
        Ok(self.time_value(d))
    }

    #[inline(always)]
    fn take_slot(&mut self, addr: u64, size: u64) -> Result<()> {
        if self.m.free_slots.is_empty() && self.m.slots.len() >= self.max_slots {
            return Err(self.err("more live blocks than the file can describe"));
        }
        self.m.take_slot(addr, size);
        Ok(())
    }

    /// A live slot number.
    #[inline(always)]
    fn live_slot(&self, s: u64) -> Result<u32> {
        match self.m.slots.get(s as usize) {
            Some(&(a, _)) if a != 0 => Ok(s as u32),
            _ => Err(self.err("slot")),
        }
    }

    #[inline(always)]
    fn alloc(&mut self, o: u8) -> Result<Record<'a>> {
        let func = if o & op::ALLOC_FUNC != 0 {
            self.func()?
        } else {
            Func::Malloc
        };
        if o & op::ALLOC_STACK != 0 {
            self.m.last_stack = self.stack_id()?;
        }
        let samples = if o & op::ALLOC_SAMPLED != 0 {
            self.misc()?
        } else {
            0
        };
        let size = self.planes16(col::SIZE_LO)?;
        let a = self.u8(col::AOP)?;
        let addr = match a & 3 {
            cat::DIFF => {
                let x = self.u8(col::ADDR0)? as u64
                    | (self.u8(col::ADDR1)? as u64) << 8
                    | (self.u8(col::ADDR2)? as u64) << 16;
                let d = if x == 0xff_ffff { self.misc()? } else { x };
                self.m.rec().last_addr.wrapping_add(unzz(d) as u64)
            }
            cat::SAME => {
                let rank = self.u8(col::IDX_SAME)? as usize;
                let rec = self.m.rec();
                let Some(seq) = rec.same(class(size), rank) else {
                    return Err(self.err("recent free"));
                };
                let addr = rec.ring[(seq as usize) % WINDOW].addr;
                rec.take_recent(seq);
                addr
            }
            cat::ANY => {
                let back = self.v(col::IDX_ANY)?;
                let rec = self.m.rec();
                let seq = rec.frees.wrapping_sub(back);
                let Some(f) = rec.recent(seq) else {
                    return Err(self.err("recent free"));
                };
                rec.take_recent(seq);
                f.addr
            }
            _ => return Err(self.err("address category")),
        };
        self.m.rec().last_addr = addr;
        let time = self.time_in(a)?;
        if addr != 0 {
            self.take_slot(addr, size)?;
        }
        Ok(Record::Alloc {
            time,
            func,
            addr,
            size,
            stack: self.m.last_stack,
            samples,
        })
    }

    fn next_event(&mut self) -> Result<Option<Event<'a>>> {
        loop {
            if self.ops_left == 0 && !self.load_block()? {
                if self.count != self.expected {
                    return Err(self.err("events section holds fewer events than its header says"));
                }
                return Ok(None);
            }
            self.ops_left -= 1;
            let o = self.u8(col::KIND)?;
            let record = match o {
                op::SWITCH => {
                    let s = self.v(col::STREAM)? as usize;
                    if s >= self.streams {
                        return Err(self.err("stream index"));
                    }
                    self.m.stream = s;
                    continue;
                }
                op::FORGET => {
                    let s = self.misc()?;
                    let s = self.live_slot(s)?;
                    self.m.release_slot(s);
                    continue;
                }
                _ if o & !7 == op::ALLOC => self.alloc(o)?,
                op::FREE_SLOT | 0x21 => {
                    let f = self.u8(col::FOP)?;
                    let time = self.time_in(f)?;
                    let func = if o & op::FREE_FUNC != 0 {
                        self.func()?
                    } else {
                        Func::Free
                    };
                    let s = self.planes16(col::SLOT_LO)?;
                    let s = self.live_slot(s)?;
                    let (addr, size) = self.m.slots[s as usize];
                    self.m.release_slot(s);
                    self.m.rec().remember(addr, size);
                    Record::Free { time, func, addr }
                }
                op::FREE_RAW | 0x23 => {
                    let time = self.time()?;
                    let func = if o & op::FREE_FUNC != 0 {
                        self.func()?
                    } else {
                        Func::Free
                    };
                    let addr = self.misc()?;
                    Record::Free { time, func, addr }
                }
                op::REALLOC_SLOT | op::REALLOC_RAW => {
                    let time = self.time()?;
                    let dt2 = self.misc()?;
                    let func = self.func()?;
                    let by_slot = o == op::REALLOC_SLOT;
                    let o_ = self.misc()?;
                    let old = if by_slot {
                        let s = self.live_slot(o_)?;
                        self.m.slots[s as usize].0
                    } else {
                        o_
                    };
                    let d = self.misc()?;
                    let new = self.m.rec().last_addr.wrapping_add(unzz(d) as u64);
                    self.m.rec().last_addr = new;
                    let size = self.misc()?;
                    let stack = self.stack_id()?;
                    // Released as the replay releases it (a failed realloc keeps it).
                    if by_slot && (new != 0 || size == 0) {
                        self.m.release_slot(o_ as u32);
                    }
                    let time_after = self.m.prev_us.wrapping_add(dt2).wrapping_mul(1000);
                    let r = Record::Realloc {
                        time,
                        time_after,
                        func,
                        old,
                        new,
                        size,
                        stack,
                    };
                    self.pending[self.m.stream] = Some(r.clone());
                    r
                }
                op::REALLOC_END => {
                    let Some(r) = self.pending[self.m.stream].take() else {
                        return Err(self.err("REALLOC END without a REALLOC"));
                    };
                    let Record::Realloc {
                        time_after,
                        new,
                        size,
                        ..
                    } = r
                    else {
                        return Err(self.err("REALLOC END"));
                    };
                    self.m.prev_us = time_after / 1000;
                    if new != 0 {
                        self.take_slot(new, size)?;
                    }
                    return Ok(Some(Event {
                        time: time_after,
                        stream: self.m.stream,
                        chunk_offset: 0,
                        record: r,
                        realloc_end: true,
                    }));
                }
                op::INLINE => {
                    let time = self.time()?;
                    let n = self.misc()? as usize;
                    let c = &self.cols[col::MISC];
                    let p = self.pos[col::MISC];
                    if n > c.len() - p {
                        return Err(self.err("inline record length"));
                    }
                    let mut it = RecordIter::new(&c[p..p + n], time);
                    let rec = match it.next() {
                        Some(Ok(r)) => detach(r),
                        _ => None,
                    };
                    self.pos[col::MISC] += n;
                    rec.ok_or_else(|| self.err("inline record"))?
                }
                op::META => {
                    let time = self.time()?;
                    let rest = self.meta.get(self.meta_pos..).unwrap_or(&[]);
                    let mut it = RecordIter::new(rest, time);
                    match it.next() {
                        Some(Ok(r)) => {
                            self.meta_pos += it.offset();
                            r
                        }
                        _ => return Err(self.err("meta record")),
                    }
                }
                op::TORN => {
                    self.time()?;
                    Record::Torn
                }
                op::UNKNOWN => {
                    self.time()?;
                    let tag = self.misc()?;
                    Record::Unknown {
                        tag: u8::try_from(tag).map_err(|_| self.err("tag"))?,
                    }
                }
                _ => return Err(self.err("unknown op")),
            };
            let time = record.time().unwrap_or(self.m.prev_us.wrapping_mul(1000));
            return Ok(Some(Event {
                time,
                stream: self.m.stream,
                chunk_offset: 0,
                record,
                realloc_end: false,
            }));
        }
    }
}

/// An inline record (one without byte strings) with the lifetime of the log.
fn detach<'b>(r: Record<'_>) -> Option<Record<'b>> {
    use Record::*;
    Some(match r {
        Alloc {
            time,
            func,
            addr,
            size,
            stack,
            samples,
        } => Alloc {
            time,
            func,
            addr,
            size,
            stack,
            samples,
        },
        Free { time, func, addr } => Free { time, func, addr },
        Mmap {
            time,
            func,
            addr,
            len,
            prot,
            flags,
            fd,
            offset,
            stack,
        } => Mmap {
            time,
            func,
            addr,
            len,
            prot,
            flags,
            fd,
            offset,
            stack,
        },
        Munmap {
            time,
            addr,
            len,
            stack,
        } => Munmap {
            time,
            addr,
            len,
            stack,
        },
        Mremap {
            time,
            old,
            old_len,
            new,
            new_len,
            flags,
            stack,
        } => Mremap {
            time,
            old,
            old_len,
            new,
            new_len,
            flags,
            stack,
        },
        Brk {
            time,
            func,
            arg,
            old_break,
            new_break,
            stack,
        } => Brk {
            time,
            func,
            arg,
            old_break,
            new_break,
            stack,
        },
        Unmodule { time, bias, start } => Unmodule { time, bias, start },
        Lost { time, count } => Lost { time, count },
        Freeres { time, phase } => Freeres { time, phase },
        Fork {
            time,
            child_pid,
            how,
            path: b"",
        } => Fork {
            time,
            child_pid,
            how,
            path: b"",
        },
        Exit { time, how, status } => Exit { time, how, status },
        Torn => Torn,
        Unknown { tag } => Unknown { tag },
        Realloc { .. }
        | Stack { .. }
        | Module { .. }
        | Fork { .. }
        | Exec { .. }
        | Kernel { .. } => return None,
    })
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_event() {
            Ok(Some(ev)) => {
                self.count += 1;
                Some(Ok(ev))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::*;
    use memtrace_format::hdr::off as hoff;
    use std::io::Cursor;

    fn packed(raw: &[u8]) -> Vec<u8> {
        let log = Log::from_bytes(Path::new("raw.mtr"), raw);
        let mut out = Cursor::new(Vec::new());
        pack(&log, &mut out).unwrap();
        out.into_inner()
    }

    /// What the replay and the catalog see of an event.
    fn key(ev: &Event<'_>) -> String {
        let r = match &ev.record {
            Record::Alloc {
                func,
                addr,
                size,
                stack,
                samples,
                ..
            } => format!("alloc {func:?} {addr:#x} {size} s{stack} k{samples}"),
            Record::Free { func, addr, .. } => format!("free {func:?} {addr:#x}"),
            Record::Realloc {
                time,
                time_after,
                func,
                old,
                new,
                size,
                stack,
            } => format!("realloc {time} {time_after} {func:?} {old:#x} {new:#x} {size} s{stack}"),
            Record::Stack { id, frames } => {
                let f: Vec<u64> = frames.clone().map(|f| f.unwrap()).collect();
                format!("stack {id} {f:x?}")
            }
            Record::Module { path, build_id, .. } => format!("module {path:?} {build_id:?}"),
            Record::Mmap { addr, len, fd, .. } => format!("mmap {addr:#x} {len} {fd}"),
            Record::Munmap { addr, len, .. } => format!("munmap {addr:#x} {len}"),
            Record::Exit { how, status, .. } => format!("exit {how} {status}"),
            Record::Lost { count, .. } => format!("lost {count}"),
            Record::Torn => "torn".into(),
            Record::Unknown { tag } => format!("unknown {tag}"),
            _ => "other".into(),
        };
        format!(
            "{} {} {} {:?} {r}",
            ev.time,
            ev.stream,
            ev.realloc_end,
            ev.record.time()
        )
    }

    fn events(bytes: &[u8]) -> (Vec<String>, u64, bool, u64) {
        let log = Log::from_bytes(Path::new("x"), bytes);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let mut m = log.merge(&idx);
        let v = m.by_ref().map(|e| key(&e.unwrap())).collect();
        (v, idx.empty_slots, idx.truncated, m.cut_records())
    }

    /// Two threads, every kind of heap event (slot and raw frees, reallocs
    /// that move, fail, free and start from NULL, an address allocated twice,
    /// a sampled record), stacks, a module, mappings, damage: the packed log
    /// yields the same events, and the same report.
    fn rich_log(scale: u64) -> Vec<u8> {
        let t = |i: u64| T0 + i * scale;
        let mut a = LogBuilder::chunk(T0);
        a.stack(1, &[0x401000, 0x402000])
            .put(|b| encode::module(b, 0, 0, 0x400000, 0x500000, b"\x01\x02", b"/bin/prog"))
            .alloc(t(1), 0x1000, 100, 1)
            .alloc(t(2), 0x2000, 200, 1)
            .free(t(3), 0x1000)
            .free(t(4), 0x9999) // never allocated
            .alloc(t(5), 0x1000, 300, 2)
            .realloc(t(6), t(8), 0x2000, 0x3000, 400, 1) // moves
            .realloc(t(9), t(10), 0x3000, 0, 1 << 40, 1) // fails
            .realloc(t(11), t(12), 0, 0x4000, 50, 1) // from NULL
            .alloc(t(13), 0x1000, 64, 1) // 0x1000 again while live
            .put(|b| encode::sampled(b, scale, Func::Calloc, 0x5000, 16, 1, 3))
            .mmap(t(15), 0x7f00_0000_0000, 8192, 0x22, 1)
            .munmap(t(16), 0x7f00_0000_0000, 4096)
            .put(|b| encode::lost(b, scale, 7));
        let mut b = LogBuilder::chunk(T0);
        b.stack(2, &[0x401100])
            .cut_stack(3, &[0x401200, 0x401300], memtrace_format::Cut::Limit)
            .alloc(t(1), 0x8000, 8, 2)
            .alloc(t(2), 0x8800, 24, 3)
            .realloc(t(8), t(9), 0x8000, 0, 0, 2) // realloc(p, 0) frees
            .free(t(13), 0x4000) // another thread's block
            .free(t(20), 0x1000);
        // A torn record: length and payload, tag never stored.
        b.body.extend_from_slice(&[5, 0, 0, 1, 2]);
        let mut c = LogBuilder::chunk(t(20));
        c.put(|b| encode::exit(b, scale, 2, 0));
        // The kernel's samples, in a stream of their own, as `memtrace run` appends them.
        let mut k = LogBuilder::chunk(t(2));
        k.put(|b| encode::kernel(b, 0, 1, &[4096, 2048, 1024, 0, 512, 0, 0, 0]))
            .put(|b| encode::kernel(b, 3 * scale, 2, &[1; 24]))
            .put(|b| encode::kernel(b, 2 * scale, 1, &[8192, 4096, 2048, 0, 1024, 7, 6, 5]));
        let mut l = LogBuilder::new();
        l.set_u64(hoff::SAMPLE_INTERVAL, 4096);
        l.push(0, &a)
            .push(1, &b)
            .empty_slot()
            .push(0, &c)
            .push(memtrace_format::kernel::STREAM, &k)
            .ended(t(30));
        l.bytes
    }

    #[test]
    fn packed_events_equal_raw() {
        let raw = rich_log(1000);
        let p = packed(&raw);
        assert!(is_packed(&p));
        let (a, a_empty, a_trunc, _) = events(&raw);
        let (b, b_empty, b_trunc, _) = events(&p);
        assert_eq!(a, b);
        assert_eq!((a_empty, a_trunc), (b_empty, b_trunc));
        assert_eq!(a_empty, 1);
        let opts = crate::Options::default();
        let ra = crate::analyze_bytes(&raw, &opts).unwrap();
        let rb = crate::analyze_bytes(&p, &opts).unwrap();
        assert_eq!(format!("{:?}", ra.summary), format!("{:?}", rb.summary));
        assert_eq!(format!("{:?}", ra.process), format!("{:?}", rb.process));
        let sites = |r: &crate::Report| {
            [&r.heap_leaks, &r.mmap_leaks, &r.peak, &r.allocated]
                .map(|v| v.iter().map(|s| (s.bytes, s.count)).collect::<Vec<_>>())
        };
        assert_eq!(sites(&ra), sites(&rb));
        assert_eq!(ra.kernel, rb.kernel);
        let k = ra.kernel.as_ref().expect("kernel samples");
        assert_eq!(k.samples.len(), 2);
        assert_eq!(k.peak.1[0], 8192);
        assert_eq!(k.peak.1[5..], [7, 6, 5]);
        assert_eq!(k.maps_at_peak.unwrap().1[5], [1; 4]);
        assert_eq!(ra.summary.unknown_frees, 1);
        assert_eq!(ra.summary.anomalies, 1);
        assert_eq!(ra.summary.torn_records, 1);
        // The cut stack stays cut (summaries are equal), for the frame limit.
        assert_eq!(ra.summary.truncated_stacks, [0, 0, 1]);
    }

    /// Times are rounded down to microseconds; the order stays the raw merge's.
    #[test]
    fn times_round_down_to_microseconds() {
        let raw = rich_log(337);
        let p = packed(&raw);
        let (a, ..) = events(&raw);
        let (b, ..) = events(&p);
        assert_eq!(a.len(), b.len());
        let log = Log::from_bytes(Path::new("x"), &raw);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let plog = Log::from_bytes(Path::new("p"), &p);
        let pidx = plog.index(&h).unwrap();
        for (x, y) in log.merge(&idx).zip(plog.merge(&pidx)) {
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!(y.time, x.time / 1000 * 1000);
            assert_eq!((x.stream, x.realloc_end), (y.stream, y.realloc_end));
        }
    }

    /// Damage is an error, never a panic: every truncation and a flipped byte in every position.
    #[test]
    fn damaged_packed_logs_are_refused() {
        let p = packed(&rich_log(1000));
        let opts = crate::Options::default();
        for n in [0, 8, 63, 100, 4160, p.len() - 20, p.len() - 1] {
            assert!(crate::analyze_bytes(&p[..n], &opts).is_err(), "cut at {n}");
        }
        for i in (0..p.len()).step_by(3) {
            let mut q = p.clone();
            q[i] ^= 0x5a;
            let _ = crate::analyze_bytes(&q, &opts);
        }
    }
}
