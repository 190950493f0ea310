//! Decoding the events section of a packed log, a block at a time, into the
//! same [`Event`]s a raw log's merge yields.

use std::path::Path;

use memtrace_format::{Func, Record, RecordIter};

use super::inflate::{decoder, inflate};
use super::layout::*;
use super::model::Model;
use super::{Sections, corrupt, u32_at};
use crate::error::{Error, Result};
use crate::log::{Alloc, Event, Index, Log, NO_SLOT};

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
    /// The slot of the event being decoded ([`Event::slot`]).
    slot: u32,
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
            slot: NO_SLOT,
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
        // Most varints are one byte: read without building a reader.
        let p = self.pos[c];
        if let Some(&b) = self.cols[c].get(p)
            && b < 0x80
        {
            self.pos[c] = p + 1;
            return Ok(b as u64);
        }
        self.v_long(c)
    }

    #[inline(never)]
    fn v_long(&mut self, c: usize) -> Result<u64> {
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
    fn take_slot(&mut self, addr: u64, size: u64) -> Result<u32> {
        if self.m.free_slots.is_empty() && self.m.slots.len() >= self.max_slots {
            return Err(self.err("more live blocks than the file can describe"));
        }
        Ok(self.m.take_slot(addr, size))
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
        let (samples, a) = self.alloc_parts(o)?;
        self.slot = a.slot;
        Ok(Record::Alloc {
            time: a.time,
            func: a.func,
            addr: a.addr,
            size: a.size,
            stack: self.m.last_stack,
            samples,
        })
    }

    /// An ALLOC (op `o`): its sample count and its [`Alloc`], in registers
    /// rather than a [`Record`] in memory.
    #[inline(always)]
    fn alloc_parts(&mut self, o: u8) -> Result<(u64, Alloc)> {
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
        let slot = if addr != 0 {
            self.take_slot(addr, size)?
        } else {
            NO_SLOT
        };
        Ok((
            samples,
            Alloc {
                time,
                func,
                addr,
                size,
                slot,
            },
        ))
    }

    #[inline(always)]
    fn next_event(&mut self) -> Result<Option<Event<'a>>> {
        loop {
            if self.ops_left == 0 && !self.load_block()? {
                if self.count != self.expected {
                    return Err(self.err("events section holds fewer events than its header says"));
                }
                return Ok(None);
            }
            self.ops_left -= 1;
            self.slot = NO_SLOT;
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
                op::FREE_SLOT | 0x21 => self.free_slot(o)?,
                op::FREE_RAW | 0x23 => self.free_raw(o)?,
                op::REALLOC_SLOT | op::REALLOC_RAW => self.realloc(o)?,
                op::REALLOC_END => return self.realloc_end().map(Some),
                op::INLINE => self.inline()?,
                op::META => self.meta_record()?,
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
                slot: self.slot,
            }));
        }
    }

    /// A FREE of a live slot (op `o`).
    fn free_slot(&mut self, o: u8) -> Result<Record<'a>> {
        let (time, func, addr, slot) = self.free_slot_parts(o)?;
        self.slot = slot;
        Ok(Record::Free { time, func, addr })
    }

    /// A FREE of a live slot (op `o`): its time, function, address and slot.
    #[inline(always)]
    fn free_slot_parts(&mut self, o: u8) -> Result<(u64, Func, u64, u32)> {
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
        Ok((time, func, addr, s))
    }

    /// A FREE of an address that holds no slot (op `o`).
    fn free_raw(&mut self, o: u8) -> Result<Record<'a>> {
        let time = self.time()?;
        let func = if o & op::FREE_FUNC != 0 {
            self.func()?
        } else {
            Func::Free
        };
        let addr = self.misc()?;
        Ok(Record::Free { time, func, addr })
    }

    /// A REALLOC's first appearance (op `o`: the old block by slot or raw);
    /// kept for the stream's REALLOC END.
    fn realloc(&mut self, o: u8) -> Result<Record<'a>> {
        let time = self.time()?;
        let dt2 = self.misc()?;
        let func = self.func()?;
        let by_slot = o == op::REALLOC_SLOT;
        let o_ = self.misc()?;
        let old = if by_slot {
            let s = self.live_slot(o_)?;
            self.slot = s;
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
        Ok(r)
    }

    /// The stream's pending REALLOC at its second time (the new block exists).
    fn realloc_end(&mut self) -> Result<Event<'a>> {
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
        let slot = if new != 0 {
            self.take_slot(new, size)?
        } else {
            NO_SLOT
        };
        Ok(Event {
            time: time_after,
            stream: self.m.stream,
            chunk_offset: 0,
            record: r,
            realloc_end: true,
            slot,
        })
    }

    /// A record without byte strings, encoded whole in MISC.
    fn inline(&mut self) -> Result<Record<'a>> {
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
        rec.ok_or_else(|| self.err("inline record"))
    }

    /// The next record of the meta section (one with byte strings).
    fn meta_record(&mut self) -> Result<Record<'a>> {
        let time = self.time()?;
        let rest = self.meta.get(self.meta_pos..).unwrap_or(&[]);
        let mut it = RecordIter::new(rest, time);
        match it.next() {
            Some(Ok(r)) => {
                self.meta_pos += it.offset();
                Ok(r)
            }
            _ => Err(self.err("meta record")),
        }
    }
}

/// An inline record (one without byte strings) with the lifetime of the log.
pub(crate) fn detach<'b>(r: Record<'_>) -> Option<Record<'b>> {
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
        Mmap { .. } | Munmap { .. } | Mremap { .. } | Brk { .. } => return detach_mapping(r),
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

/// [`detach`] for the records of address-space changes (mmap, munmap,
/// mremap, brk); `None` for any other.
fn detach_mapping<'b>(r: Record<'_>) -> Option<Record<'b>> {
    use Record::*;
    Some(match r {
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
        _ => return None,
    })
}

impl<'a> Events<'a> {
    /// Appends decoded events to `out` until it holds `max` of them:
    /// `Ok(false)` once the section is over (the last events appended),
    /// or the first error (those before it appended). The batch form of
    /// the iterator, which copies each event once instead of through
    /// the iterator's nested options.
    pub(crate) fn fill(&mut self, out: &mut impl crate::log::Sink<'a>, max: usize) -> Result<bool> {
        if self.failed {
            return Ok(false);
        }
        while out.len() < max {
            // Unsampled allocations and frees by slot, nearly all of a log,
            // go to the sink field by field: no record is built on the stack
            // and copied again (the copies stalled on store forwarding).
            if let Some(r) = self.fast(out) {
                match r {
                    Ok(()) => {
                        self.count += 1;
                        continue;
                    }
                    Err(e) => {
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
            match self.next_event() {
                Ok(Some(ev)) => {
                    self.count += 1;
                    out.push(ev);
                }
                Ok(None) => return Ok(false),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        Ok(true)
    }
}

impl<'a> Events<'a> {
    /// Decodes the next op into `out` if it is an unsampled ALLOC or a FREE
    /// of a slot (`None`, with nothing consumed, for any other op or at the
    /// end of a block).
    #[inline(always)]
    fn fast(&mut self, out: &mut impl crate::log::Sink<'a>) -> Option<Result<()>> {
        if self.ops_left == 0 {
            return None;
        }
        let o = *self.cols[col::KIND].get(self.pos[col::KIND])?;
        let alloc = o & !(op::ALLOC_FUNC | op::ALLOC_STACK) == op::ALLOC;
        if !alloc && o & !op::FREE_FUNC != op::FREE_SLOT {
            return None;
        }
        self.pos[col::KIND] += 1;
        self.ops_left -= 1;
        let stream = self.m.stream;
        Some(if alloc {
            self.alloc_parts(o)
                .map(|(_, a)| out.alloc(stream, a, self.m.last_stack))
        } else {
            self.free_slot_parts(o)
                .map(|(time, func, addr, slot)| out.free(stream, time, func, addr, slot))
        })
    }
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
