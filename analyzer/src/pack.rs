//! Packed logs: the events of a finished log, merged, re-encoded compactly
//! and compressed with zstd (`memtrace pack`, and `memtrace run` after the
//! command ends).
//!
//! A raw log is made for the writer: one stream of records per thread, each
//! record self-describing, addresses in full, times in nanoseconds. Once the
//! process has ended, the analyzer's merge fixes the order of every event, so
//! a packed log stores that single merged sequence and can drop what the
//! order already says:
//! - **one sequence**: a `SWITCH` op names the stream of the events that
//!   follow (the report needs it only for messages and per-thread facts);
//! - **times in microseconds**, as deltas (the report shows microseconds;
//!   the order of events is the sequence's, not the times'). Every time is
//!   rounded down, so `a <= b` still holds after rounding;
//! - **frees by slot**: every live block has a slot number (a freed slot is
//!   reused, last freed first), and a free names the slot, not the address;
//! - **allocations by difference** to the previous allocation's address,
//!   with the stack left out when it repeats;
//! - STACK, MODULE and EXEC records (the ones that carry byte strings) go to
//!   a separate *meta* section, read whole into memory when the log is
//!   opened; the event sequence itself is streamed, so memory still follows
//!   live blocks and distinct stacks, not events.
//!
//! Nothing the report uses is lost: replaying a packed log gives the same
//! report as the raw log, times rounded to microseconds (a test checks it).
//!
//! ## File layout (little-endian)
//! ```text
//! [0, 64)          fixed header: magic "MEMTRPAK", version, section sizes, counts
//! [64, 4160)       the raw log's 4096-byte header page, as it was
//! [4160, +8*n)     stream table: n x (stream id u32, tid u32)
//! then             events section (zstd), then meta section (zstd)
//! ```
//! ## Ops of the events section
//! `dt` is the zig-zag varint of the event's time minus the previous
//! event's, in microseconds.
//!
//! | op | meaning | payload |
//! |---|---|---|
//! | 0x01 | SWITCH | stream index v |
//! | 0x02 | FORGET | slot v (an address allocated again while live: its old slot is freed) |
//! | 0x10 + bits | ALLOC | dt, [func u8 if bit 1], addr z (to the previous allocation), size v, [stack v if bit 2], [samples v if bit 4] |
//! | 0x20 / 0x21 | FREE by slot | dt, [func u8 if 0x21], slot v |
//! | 0x22 / 0x23 | FREE of an unknown address | dt, [func u8 if 0x23], addr v |
//! | 0x30 / 0x31 | REALLOC, old by slot / by address | dt, dt2 v, func u8, old (slot v / addr v), new z, size v, stack v |
//! | 0x38 | REALLOC END | (the stream's last REALLOC, at its second time) |
//! | 0x40 | INLINE | dt, len v, one record encoded as in a raw log with time delta 0 |
//! | 0x41 | META | dt (the meta section's next record) |
//! | 0x42 | TORN | dt |
//! | 0x43 | UNKNOWN | dt, tag u8 |

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use memtrace_format::{Func, HEADER_SIZE, Record, RecordIter, encode};

use crate::error::{Error, Result};
use crate::log::{Event, Index, Log, StreamChunks};
use crate::replay::FastMap;

/// The eight bytes a packed log starts with.
pub const MAGIC: [u8; 8] = *b"MEMTRPAK";
/// The packed format's version.
pub const VERSION: u32 = 1;
/// Size of the fixed header before the raw header page.
const FIXED: usize = 64;
/// Offset of the stream table.
const STREAMS_AT: usize = FIXED + HEADER_SIZE;
/// zstd level: 3 is zstd's default, fast to write and to read.
const LEVEL: i32 = 3;

mod off {
    pub const VERSION: usize = 8;
    pub const EVENTS_LEN: usize = 16;
    pub const META_LEN: usize = 24;
    pub const META_RAW_LEN: usize = 32;
    pub const EVENTS: usize = 40;
    pub const CUT_RECORDS: usize = 48;
    pub const EMPTY_SLOTS: usize = 56;
    pub const TRUNCATED: usize = 60;
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

/// What packing a log did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub raw_bytes: u64,
    pub packed_bytes: u64,
}

/// The encoder's state: mirrors the decoder's exactly.
struct Enc {
    ops: Vec<u8>,
    meta: Vec<u8>,
    prev_us: u64,
    stream: usize,
    last_addr: u64,
    last_stack: u32,
    slots: FastMap<u64, u32>,
    free_slots: Vec<u32>,
    next_slot: u32,
    scratch: Vec<u8>,
    frames: Vec<u64>,
}

impl Enc {
    fn dt(&mut self, t: u64) {
        let q = us(t);
        let d = q.wrapping_sub(self.prev_us) as i64;
        self.prev_us = q;
        put_v(&mut self.ops, zz(d));
    }

    /// Gives `addr` a slot, as the decoder will (last freed slot first).
    fn take_slot(&mut self, addr: u64) {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.next_slot += 1;
                self.next_slot - 1
            }
        };
        // `forget_live` ran first: `addr` holds no slot.
        self.slots.insert(addr, slot);
    }

    /// Emits FORGET if `addr` is live (allocated again without a free).
    fn forget_live(&mut self, addr: u64) {
        if let Some(slot) = self.slots.remove(&addr) {
            self.ops.push(op::FORGET);
            put_v(&mut self.ops, slot as u64);
            self.free_slots.push(slot);
        }
    }

    fn addr_delta(&mut self, addr: u64) {
        put_v(&mut self.ops, zz(addr.wrapping_sub(self.last_addr) as i64));
        self.last_addr = addr;
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
            Record::Fork { child_pid, .. } => encode::fork(b, 0, *child_pid),
            Record::Exit { how, status, .. } => encode::exit(b, 0, *how, *status),
            Record::Stack { id, frames } => {
                self.frames.clear();
                for f in frames.clone() {
                    self.frames.push(f.ok()?);
                }
                encode::stack(b, *id, &self.frames)
            }
            Record::Module {
                bias,
                start,
                end,
                build_id,
                path,
                ..
            } => encode::module(b, 0, *bias, *start, *end, build_id, path),
            Record::Exec { path, .. } => encode::exec(b, 0, path),
            _ => None,
        }
    }

    fn event(&mut self, ev: &Event<'_>) -> Result<(), &'static str> {
        if ev.stream != self.stream {
            self.ops.push(op::SWITCH);
            put_v(&mut self.ops, ev.stream as u64);
            self.stream = ev.stream;
        }
        match &ev.record {
            Record::Alloc {
                func,
                addr,
                size,
                stack,
                samples,
                ..
            } => {
                if *addr != 0 {
                    self.forget_live(*addr);
                }
                let mut o = op::ALLOC;
                if *func != Func::Malloc {
                    o |= op::ALLOC_FUNC;
                }
                if *stack != self.last_stack {
                    o |= op::ALLOC_STACK;
                }
                if *samples != 0 {
                    o |= op::ALLOC_SAMPLED;
                }
                self.ops.push(o);
                self.dt(ev.time);
                if o & op::ALLOC_FUNC != 0 {
                    self.ops.push(*func as u8);
                }
                self.addr_delta(*addr);
                put_v(&mut self.ops, *size);
                if o & op::ALLOC_STACK != 0 {
                    put_v(&mut self.ops, *stack as u64);
                    self.last_stack = *stack;
                }
                if *samples != 0 {
                    put_v(&mut self.ops, *samples);
                }
                if *addr != 0 {
                    self.take_slot(*addr);
                }
            }
            Record::Free { func, addr, .. } => {
                let explicit = *func != Func::Free;
                match self.slots.remove(addr) {
                    Some(slot) => {
                        self.ops.push(op::FREE_SLOT | explicit as u8);
                        self.dt(ev.time);
                        if explicit {
                            self.ops.push(*func as u8);
                        }
                        put_v(&mut self.ops, slot as u64);
                        self.free_slots.push(slot);
                    }
                    None => {
                        self.ops.push(op::FREE_RAW | explicit as u8);
                        self.dt(ev.time);
                        if explicit {
                            self.ops.push(*func as u8);
                        }
                        put_v(&mut self.ops, *addr);
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
                    self.ops.push(op::REALLOC_END);
                    self.prev_us = us(*time_after);
                    if *new != 0 {
                        self.take_slot(*new);
                    }
                } else {
                    let released = *old != 0 && (*new != 0 || *size == 0);
                    let slot = self.slots.get(old).copied();
                    self.ops.push(if slot.is_some() {
                        op::REALLOC_SLOT
                    } else {
                        op::REALLOC_RAW
                    });
                    self.dt(*time);
                    put_v(&mut self.ops, us(*time_after).wrapping_sub(us(*time)));
                    self.ops.push(*func as u8);
                    match slot {
                        Some(s) => {
                            put_v(&mut self.ops, s as u64);
                            if released {
                                self.slots.remove(old);
                                self.free_slots.push(s);
                            }
                        }
                        None => put_v(&mut self.ops, *old),
                    }
                    self.addr_delta(*new);
                    put_v(&mut self.ops, *size);
                    put_v(&mut self.ops, *stack as u64);
                }
            }
            Record::Torn => {
                self.ops.push(op::TORN);
                self.dt(ev.time);
            }
            Record::Unknown { tag } => {
                self.ops.push(op::UNKNOWN);
                self.dt(ev.time);
                self.ops.push(*tag);
            }
            rec => {
                let n = self.reencode(rec).ok_or("record")?;
                let meta = matches!(
                    rec,
                    Record::Stack { .. } | Record::Module { .. } | Record::Exec { .. }
                );
                if meta {
                    self.ops.push(op::META);
                    self.dt(ev.time);
                    self.meta.extend_from_slice(&self.scratch[..n]);
                } else {
                    self.ops.push(op::INLINE);
                    self.dt(ev.time);
                    put_v(&mut self.ops, n as u64);
                    self.ops.extend_from_slice(&self.scratch[..n]);
                }
            }
        }
        Ok(())
    }
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
    let tmp = dst.with_extension("packing");
    let io = |source| Error::Io {
        path: tmp.clone(),
        source,
    };
    let mut file = File::create(&tmp).map_err(io)?;
    let result = pack(&log, &mut file).and_then(|mut s| {
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
pub fn pack<W: Write + Seek>(log: &Log, out: &mut W) -> Result<Stats> {
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
        ops: Vec::with_capacity(1 << 17),
        meta: Vec::new(),
        prev_us: 0,
        stream: 0,
        last_addr: 0,
        last_stack: 0,
        slots: FastMap::default(),
        free_slots: Vec::new(),
        next_slot: 0,
        scratch: vec![0u8; memtrace_format::MAX_RECORD],
        frames: Vec::new(),
    };
    let start = out.stream_position().map_err(io)?;
    let mut z = zstd::stream::write::Encoder::new(BufWriter::new(&mut *out), LEVEL).map_err(io)?;
    let mut events = 0u64;
    let mut merge = log.merge(&index);
    for ev in merge.by_ref() {
        let ev = ev?;
        enc.event(&ev).map_err(|why| Error::Pack {
            path: path.clone(),
            why: format!("cannot re-encode a {why}"),
        })?;
        events += 1;
        if enc.ops.len() >= 1 << 16 {
            z.write_all(&enc.ops).map_err(io)?;
            enc.ops.clear();
        }
    }
    let cut = merge.cut_records();
    z.write_all(&enc.ops).map_err(io)?;
    z.finish().map_err(io)?.flush().map_err(io)?;
    let meta_at = out.stream_position().map_err(io)?;
    let meta = zstd::bulk::compress(&enc.meta, LEVEL).map_err(io)?;
    out.write_all(&meta).map_err(io)?;
    let end = out.stream_position().map_err(io)?;

    let mut put = |o: usize, b: &[u8]| fixed[o..o + b.len()].copy_from_slice(b);
    put(off::EVENTS_LEN, &(meta_at - start).to_le_bytes());
    put(off::META_LEN, &(end - meta_at).to_le_bytes());
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
    let total = (events_at as u64)
        .checked_add(events_len)
        .and_then(|x| x.checked_add(meta_len));
    if total != Some(b.len() as u64) {
        return Err(corrupt(path, "section sizes do not match the file's size"));
    }
    // A meta section expands to at most a few hundred times its size.
    if meta_raw > meta_len.saturating_mul(1024).saturating_add(1 << 20) {
        return Err(corrupt(path, "meta section too large"));
    }
    let meta_at = events_at + events_len as usize;
    let meta = zstd::bulk::decompress(&b[meta_at..], meta_raw as usize)
        .map_err(|_| corrupt(path, "meta section does not decompress"))?;
    if meta.len() as u64 != meta_raw {
        return Err(corrupt(path, "meta section has the wrong size"));
    }
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

/// Decodes the events section, streaming.
pub struct Events<'a> {
    log: &'a Log,
    /// The events section's byte range in the file, and how much of it was
    /// released from memory (see [`Log::release`]).
    section: (usize, usize),
    released: usize,
    path: &'a Path,
    z: zstd::stream::read::Decoder<'static, io::BufReader<&'a [u8]>>,
    /// Decompressed bytes; `pos..len` not yet decoded.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    meta: &'a [u8],
    meta_pos: usize,
    streams: usize,
    stream: usize,
    prev_us: u64,
    last_addr: u64,
    last_stack: u32,
    slots: Vec<u64>,
    free_slots: Vec<u32>,
    max_slots: usize,
    /// Each stream's last REALLOC, for its REALLOC END.
    pending: Vec<Option<Record<'a>>>,
    failed: bool,
    /// Events decoded, and how many the header says there are.
    count: u64,
    expected: u64,
}

/// Bytes kept decompressed ahead of the decoder: more than any one op.
const AHEAD: usize = 1 << 17;

impl<'a> Events<'a> {
    pub fn new(log: &'a Log, index: &'a Index, s: &'a Sections) -> Result<Events<'a>> {
        let b = log.bytes();
        let body = &b[s.events.0..s.events.1];
        let z = zstd::stream::read::Decoder::new(body).map_err(|source| Error::Io {
            path: log.path().to_owned(),
            source,
        })?;
        Ok(Events {
            log,
            section: s.events,
            released: s.events.0,
            path: log.path(),
            z,
            buf: vec![0u8; 2 * AHEAD],
            pos: 0,
            len: 0,
            eof: false,
            meta: &s.meta,
            meta_pos: 0,
            streams: index.streams.len(),
            stream: 0,
            prev_us: 0,
            last_addr: 0,
            last_stack: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            // Live blocks are bounded by what the file can describe.
            max_slots: (body.len() * 64).max(1 << 20),
            pending: (0..index.streams.len()).map(|_| None).collect(),
            failed: false,
            count: 0,
            expected: s.event_count,
        })
    }

    fn err(&self, why: &str) -> Error {
        corrupt(self.path, why)
    }

    /// Keeps at least AHEAD bytes (or all that is left) after `pos`.
    fn refill(&mut self) -> Result<()> {
        if self.eof || self.len - self.pos >= AHEAD {
            return Ok(());
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        while self.len < self.buf.len() {
            match self.z.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(self.err("events section does not decompress")),
            }
        }
        // The compressed bytes already read will not be needed again.
        let left = self.z.get_ref().get_ref().len() + self.z.get_ref().buffer().len();
        let read = self.section.1 - left.min(self.section.1 - self.section.0);
        if read - self.released >= 1 << 20 {
            self.log.release(self.released, read);
            self.released = read;
        }
        Ok(())
    }

    #[inline]
    fn u8(&mut self) -> Result<u8> {
        match self.buf[..self.len].get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.err("events section ends inside an event")),
        }
    }

    #[inline]
    fn v(&mut self) -> Result<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflow"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.err("varint overflow"));
            }
        }
    }

    fn func(&mut self) -> Result<Func> {
        let b = self.u8()?;
        Func::from_u8(b).ok_or_else(|| self.err("function"))
    }

    #[inline]
    fn time(&mut self) -> Result<u64> {
        let d = unzz(self.v()?);
        self.prev_us = self.prev_us.wrapping_add(d as u64);
        Ok(self.prev_us.wrapping_mul(1000))
    }

    fn addr(&mut self) -> Result<u64> {
        let d = unzz(self.v()?);
        self.last_addr = self.last_addr.wrapping_add(d as u64);
        Ok(self.last_addr)
    }

    fn take_slot(&mut self, addr: u64) -> Result<()> {
        match self.free_slots.pop() {
            Some(s) => self.slots[s as usize] = addr,
            None => {
                if self.slots.len() >= self.max_slots {
                    return Err(self.err("more live blocks than the file can describe"));
                }
                self.slots.push(addr);
            }
        }
        Ok(())
    }

    /// Reads a slot number: the address in it, which is freed if `release`.
    fn slot(&mut self, release: bool) -> Result<u64> {
        let s = self.v()?;
        let addr = match self.slots.get(s as usize) {
            Some(&a) if a != 0 => a,
            _ => return Err(self.err("slot")),
        };
        if release {
            self.slots[s as usize] = 0;
            self.free_slots.push(s as u32);
        }
        Ok(addr)
    }

    fn record(&mut self, at: u64, bytes: &'a [u8]) -> Result<(Record<'a>, usize)> {
        let mut it = RecordIter::new(bytes, at);
        match it.next() {
            Some(Ok(r)) => Ok((r, it.offset())),
            _ => Err(self.err("embedded record")),
        }
    }

    fn next_event(&mut self) -> Result<Option<Event<'a>>> {
        loop {
            self.refill()?;
            if self.pos >= self.len {
                if self.count != self.expected {
                    return Err(self.err("events section holds fewer events than its header says"));
                }
                return Ok(None);
            }
            let o = self.u8()?;
            let record = match o {
                op::SWITCH => {
                    let s = self.v()? as usize;
                    if s >= self.streams {
                        return Err(self.err("stream index"));
                    }
                    self.stream = s;
                    continue;
                }
                op::FORGET => {
                    self.slot(true)?;
                    continue;
                }
                _ if o & !7 == op::ALLOC => {
                    let time = self.time()?;
                    let func = if o & op::ALLOC_FUNC != 0 {
                        self.func()?
                    } else {
                        Func::Malloc
                    };
                    let addr = self.addr()?;
                    let size = self.v()?;
                    if o & op::ALLOC_STACK != 0 {
                        self.last_stack =
                            u32::try_from(self.v()?).map_err(|_| self.err("stack id"))?;
                    }
                    let samples = if o & op::ALLOC_SAMPLED != 0 {
                        self.v()?
                    } else {
                        0
                    };
                    if addr != 0 {
                        self.take_slot(addr)?;
                    }
                    Record::Alloc {
                        time,
                        func,
                        addr,
                        size,
                        stack: self.last_stack,
                        samples,
                    }
                }
                op::FREE_SLOT | 0x21 | op::FREE_RAW | 0x23 => {
                    let time = self.time()?;
                    let func = if o & op::FREE_FUNC != 0 {
                        self.func()?
                    } else {
                        Func::Free
                    };
                    let addr = if o & !1 == op::FREE_SLOT {
                        self.slot(true)?
                    } else {
                        self.v()?
                    };
                    Record::Free { time, func, addr }
                }
                op::REALLOC_SLOT | op::REALLOC_RAW => {
                    let time = self.time()?;
                    let dt2 = self.v()?;
                    let func = self.func()?;
                    let by_slot = o == op::REALLOC_SLOT;
                    let old_slot = self.v()? as usize;
                    let old = if by_slot {
                        match self.slots.get(old_slot) {
                            Some(&a) if a != 0 => a,
                            _ => return Err(self.err("slot")),
                        }
                    } else {
                        old_slot as u64
                    };
                    let new = self.addr()?;
                    let size = self.v()?;
                    let stack = u32::try_from(self.v()?).map_err(|_| self.err("stack id"))?;
                    // Released as the replay releases it (a failed realloc keeps it).
                    if by_slot && (new != 0 || size == 0) {
                        self.slots[old_slot] = 0;
                        self.free_slots.push(old_slot as u32);
                    }
                    let time_after = self.prev_us.wrapping_add(dt2).wrapping_mul(1000);
                    let r = Record::Realloc {
                        time,
                        time_after,
                        func,
                        old,
                        new,
                        size,
                        stack,
                    };
                    self.pending[self.stream] = Some(r.clone());
                    r
                }
                op::REALLOC_END => {
                    let Some(r) = self.pending[self.stream].take() else {
                        return Err(self.err("REALLOC END without a REALLOC"));
                    };
                    let Record::Realloc {
                        time_after, new, ..
                    } = r
                    else {
                        return Err(self.err("REALLOC END"));
                    };
                    self.prev_us = time_after / 1000;
                    if new != 0 {
                        self.take_slot(new)?;
                    }
                    return Ok(Some(Event {
                        time: time_after,
                        stream: self.stream,
                        chunk_offset: 0,
                        record: r,
                        realloc_end: true,
                    }));
                }
                op::INLINE => {
                    let time = self.time()?;
                    let n = self.v()? as usize;
                    if n > self.len - self.pos {
                        return Err(self.err("inline record length"));
                    }
                    let bytes = &self.buf[self.pos..self.pos + n];
                    self.pos += n;
                    let mut it = RecordIter::new(bytes, time);
                    let rec = match it.next() {
                        Some(Ok(r)) => detach(r),
                        _ => None,
                    };
                    rec.ok_or_else(|| self.err("inline record"))?
                }
                op::META => {
                    let time = self.time()?;
                    let rest = self.meta.get(self.meta_pos..).unwrap_or(&[]);
                    let (rec, used) = self.record(time, rest)?;
                    self.meta_pos += used;
                    rec
                }
                op::TORN => {
                    self.time()?;
                    Record::Torn
                }
                op::UNKNOWN => {
                    self.time()?;
                    Record::Unknown { tag: self.u8()? }
                }
                _ => return Err(self.err("unknown op")),
            };
            let time = record.time().unwrap_or(self.prev_us.wrapping_mul(1000));
            return Ok(Some(Event {
                time,
                stream: self.stream,
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
        Fork { time, child_pid } => Fork { time, child_pid },
        Exit { time, how, status } => Exit { time, how, status },
        Torn => Torn,
        Unknown { tag } => Unknown { tag },
        Realloc { .. } | Stack { .. } | Module { .. } | Exec { .. } => return None,
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
            .alloc(t(1), 0x8000, 8, 2)
            .realloc(t(8), t(9), 0x8000, 0, 0, 2) // realloc(p, 0) frees
            .free(t(13), 0x4000) // another thread's block
            .free(t(20), 0x1000);
        // A torn record: length and payload, tag never stored.
        b.body.extend_from_slice(&[5, 0, 0, 1, 2]);
        let mut c = LogBuilder::chunk(t(20));
        c.put(|b| encode::exit(b, scale, 2, 0));
        let mut l = LogBuilder::new();
        l.set_u64(hoff::SAMPLE_INTERVAL, 4096);
        l.push(0, &a)
            .push(1, &b)
            .empty_slot()
            .push(0, &c)
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
        let opts = crate::Options { top: None };
        let ra = crate::analyze_bytes(&raw, &opts).unwrap();
        let rb = crate::analyze_bytes(&p, &opts).unwrap();
        assert_eq!(format!("{:?}", ra.summary), format!("{:?}", rb.summary));
        assert_eq!(format!("{:?}", ra.process), format!("{:?}", rb.process));
        let sites = |r: &crate::Report| {
            [&r.heap_leaks, &r.mmap_leaks, &r.peak, &r.allocated]
                .map(|v| v.iter().map(|s| (s.bytes, s.count)).collect::<Vec<_>>())
        };
        assert_eq!(sites(&ra), sites(&rb));
        assert_eq!(ra.summary.unknown_frees, 1);
        assert_eq!(ra.summary.anomalies, 1);
        assert_eq!(ra.summary.torn_records, 1);
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
        let opts = crate::Options { top: None };
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
