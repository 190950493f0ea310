//! The encoder: one event at a time into the columns of the current block.

use memtrace_format::{Func, Record, encode};

use crate::error::Result;
use crate::hash::AddrMap;
use crate::log::Event;
use crate::log::packed::layout::*;
use crate::log::packed::model::{BUCKETS, Model};

/// MISC bytes after which the writer ends the block.
pub(crate) const MISC_FLUSH: usize = 1 << 23;

pub(crate) fn us(t: u64) -> u64 {
    t / 1000
}

pub(crate) fn put_v(out: &mut Vec<u8>, mut v: u64) {
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

/// What the encoder knows of one address: the slot it holds while live,
/// and the bucket and sequence number of its latest free while that may
/// still be recent. One table for both, so that an allocation and a free
/// cost one lookup each, not two or three.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At {
    /// The live block's slot, or [`At::NO_SLOT`].
    slot: u32,
    bucket: u32,
    /// The free's sequence number in its bucket (0: none; they start at 1).
    seq: u64,
}

impl Default for At {
    fn default() -> At {
        At::NONE
    }
}

impl At {
    const NO_SLOT: u32 = u32::MAX;
    const NONE: At = At {
        slot: At::NO_SLOT,
        bucket: 0,
        seq: 0,
    };

    fn slot(&self) -> Option<u32> {
        (self.slot != At::NO_SLOT).then_some(self.slot)
    }

    fn freed(&self) -> Option<(usize, u64)> {
        (self.seq != 0).then_some((self.bucket as usize, self.seq))
    }
}

/// The encoder.
pub(crate) struct Enc {
    pub(crate) m: Model,
    pub(crate) cols: [Vec<u8>; NCOL],
    pub(crate) meta: Vec<u8>,
    /// Each address that is live or was freed recently.
    pub(crate) addrs: AddrMap<At>,
    /// How many entries of `addrs` hold a free.
    pub(crate) freed: usize,
    pub(crate) scratch: Vec<u8>,
    pub(crate) frames: Vec<u64>,
}

impl Enc {
    /// A fresh encoder for a raw log of `raw_len` bytes.
    pub(crate) fn new(raw_len: usize) -> Enc {
        Enc {
            m: Model::new(),
            // A raw record takes at least 4 bytes: a small log's columns stay small.
            cols: std::array::from_fn(|_| Vec::with_capacity(super::BLOCK_OPS.min(raw_len / 4))),
            meta: Vec::new(),
            addrs: AddrMap::default(),
            freed: 0,
            scratch: vec![0u8; memtrace_format::MAX_RECORD],
            frames: Vec::new(),
        }
    }

    pub(crate) fn misc(&mut self, v: u64) {
        put_v(&mut self.cols[col::MISC], v);
    }

    /// The time delta: inline (0..=2) in the op's own column `c`, else 3 there and the value in DT.
    pub(crate) fn dt_in(&mut self, c: usize, t: u64, extra: u8) {
        let d = self.dt_value(t);
        if d < 3 {
            self.cols[c].push(extra | (d as u8) << 2);
        } else {
            self.cols[c].push(extra | 3 << 2);
            put_v(&mut self.cols[col::DT], d);
        }
    }

    pub(crate) fn dt_value(&mut self, t: u64) -> u64 {
        let q = us(t);
        let d = q.wrapping_sub(self.m.prev_us) as i64;
        self.m.prev_us = q;
        zz(d)
    }

    pub(crate) fn dt(&mut self, t: u64) {
        let d = self.dt_value(t);
        put_v(&mut self.cols[col::DT], d);
    }

    /// A 16-bit value in two byte planes (0xffff: escaped to MISC).
    pub(crate) fn planes16(&mut self, lo: usize, v: u64) {
        let x = if v < 0xffff { v } else { 0xffff };
        self.cols[lo].push(x as u8);
        self.cols[lo + 1].push((x >> 8) as u8);
        if x == 0xffff {
            self.misc(v);
        }
    }

    pub(crate) fn addr_diff(&mut self, addr: u64) {
        let d = zz(addr.wrapping_sub(self.m.rec().last_addr) as i64);
        let x = if d < 0xff_ffff { d } else { 0xff_ffff };
        self.cols[col::ADDR0].push(x as u8);
        self.cols[col::ADDR1].push((x >> 8) as u8);
        self.cols[col::ADDR2].push((x >> 16) as u8);
        if x == 0xff_ffff {
            self.misc(d);
        }
    }

    /// Starts loading what is known of `addr` (see [`AddrMap::prefetch`]).
    #[inline(always)]
    pub(crate) fn prefetch(&self, addr: u64) {
        if addr != 0 {
            self.addrs.prefetch(addr);
        }
    }

    /// What is known of `addr` (nothing of the null address).
    fn at(&self, addr: u64) -> At {
        match addr {
            0 => At::NONE,
            _ => self.addrs.get(addr).copied().unwrap_or(At::NONE),
        }
    }

    /// Frees the slot of `at` (an address allocated again while live), if
    /// it holds one.
    fn forget_live(&mut self, at: &mut At) {
        if let Some(s) = at.slot() {
            self.cols[col::KIND].push(op::FORGET);
            self.misc(s as u64);
            self.m.release_slot(s);
            at.slot = At::NO_SLOT;
        }
    }

    /// Forgets the free `at` holds, if any.
    fn forget_free(&mut self, at: &mut At) {
        if at.seq != 0 {
            at.seq = 0;
            self.freed -= 1;
        }
    }

    /// Gives `addr`, whose entry was `at`, a slot.
    fn take_slot(&mut self, addr: u64, size: u64, mut at: At) {
        at.slot = self.m.take_slot(addr, size);
        self.addrs.insert(addr, at);
    }

    /// Re-encodes a record with a zero time delta into `scratch`.
    pub(crate) fn reencode(&mut self, rec: &Record<'_>) -> Option<usize> {
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

    pub(crate) fn alloc(
        &mut self,
        ev: &Event<'_>,
        func: Func,
        addr: u64,
        size: u64,
        stack: u32,
        samples: u64,
    ) {
        let mut at = self.at(addr);
        self.forget_live(&mut at);
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
            } else if let Some((b, seq)) = at.freed()
                && b == bucket
                && rec.recent(seq).is_some_and(|f| f.addr == addr)
            {
                how = cat::ANY;
                put_v(&mut self.cols[col::IDX_ANY], rec.frees - seq);
                rec.take_recent(seq);
            }
            if how != cat::DIFF {
                self.forget_free(&mut at);
            }
        }
        if how == cat::DIFF {
            self.addr_diff(addr);
        }
        self.m.rec().last_addr = addr;
        self.dt_in(col::AOP, ev.time, how);
        if addr != 0 {
            self.take_slot(addr, size, at);
        }
    }

    pub(crate) fn event(&mut self, ev: &Event<'_>) -> Result<(), &'static str> {
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
            Record::Free { func, addr, .. } => self.free(ev, *func, *addr),
            Record::Realloc {
                time_after,
                new,
                size,
                ..
            } if ev.realloc_end => self.realloc_end(*time_after, *new, *size),
            Record::Realloc {
                time,
                time_after,
                func,
                old,
                new,
                size,
                stack,
            } => self.realloc(*time, *time_after, *func, *old, *new, *size, *stack),
            Record::Torn => {
                self.cols[col::KIND].push(op::TORN);
                self.dt(ev.time);
            }
            Record::Unknown { tag } => {
                self.cols[col::KIND].push(op::UNKNOWN);
                self.dt(ev.time);
                self.misc(*tag as u64);
            }
            rec => self.reencoded(ev, rec)?,
        }
        Ok(())
    }

    /// A FREE: by slot if `addr` holds one, else by address.
    fn free(&mut self, ev: &Event<'_>, func: Func, addr: u64) {
        let explicit = func != Func::Free;
        // One lookup: the slot is released and the free remembered in the
        // model and in the entry first (none of it is read by what is
        // written after), then the op is written.
        let slot = match self.addrs.get_mut(addr) {
            Some(at) if at.slot != At::NO_SLOT => {
                let s = at.slot;
                at.slot = At::NO_SLOT;
                let size = self.m.slots[s as usize].1;
                self.m.release_slot(s);
                let bucket = self.m.bucket();
                let rec = self.m.rec();
                rec.remember(addr, size);
                if at.seq == 0 {
                    self.freed += 1;
                }
                at.bucket = bucket as u32;
                at.seq = rec.frees;
                Some(s)
            }
            _ => None,
        };
        match slot {
            Some(s) => {
                self.cols[col::KIND].push(op::FREE_SLOT | explicit as u8);
                self.dt_in(col::FOP, ev.time, 0);
                if explicit {
                    self.misc(func as u8 as u64);
                }
                self.planes16(col::SLOT_LO, s as u64);
                if self.freed > 4 * WINDOW * BUCKETS {
                    self.drop_stale_frees();
                }
            }
            None => {
                self.cols[col::KIND].push(op::FREE_RAW | explicit as u8);
                self.dt(ev.time);
                if explicit {
                    self.misc(func as u8 as u64);
                }
                self.misc(addr);
            }
        }
    }

    /// Drops the frees that are no longer recent, and the entries left with
    /// neither a slot nor a free.
    fn drop_stale_frees(&mut self) {
        let m = &self.m;
        let mut freed = 0;
        self.addrs.retain(|_, at| {
            if let Some((b, s)) = at.freed() {
                if m.buckets[b].as_ref().is_some_and(|r| r.recent(s).is_some()) {
                    freed += 1;
                } else {
                    at.seq = 0;
                }
            }
            at.slot().is_some() || at.seq != 0
        });
        self.freed = freed;
    }

    /// A REALLOC's second appearance (the new block exists).
    fn realloc_end(&mut self, time_after: u64, new: u64, size: u64) {
        let mut at = self.at(new);
        self.forget_live(&mut at);
        self.cols[col::KIND].push(op::REALLOC_END);
        self.m.prev_us = us(time_after);
        if new != 0 {
            self.take_slot(new, size, at);
        }
    }

    /// A REALLOC's first appearance (the old block is released).
    #[allow(clippy::too_many_arguments)]
    fn realloc(
        &mut self,
        time: u64,
        time_after: u64,
        func: Func,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
    ) {
        let released = memtrace_format::realloc_released(old, new, size);
        let slot = self.addrs.get(old).and_then(At::slot);
        self.cols[col::KIND].push(if slot.is_some() {
            op::REALLOC_SLOT
        } else {
            op::REALLOC_RAW
        });
        self.dt(time);
        self.misc(us(time_after).wrapping_sub(us(time)));
        self.misc(func as u8 as u64);
        match slot {
            Some(s) => {
                self.misc(s as u64);
                if released {
                    // An entry left with neither a slot nor a free goes, as
                    // the pruning of stale frees would drop it: else a
                    // program that reallocates away from many addresses
                    // would grow the table without bound.
                    match self.addrs.get_mut(old) {
                        Some(at) if at.seq != 0 => at.slot = At::NO_SLOT,
                        _ => {
                            self.addrs.remove(old);
                        }
                    }
                    self.m.release_slot(s);
                }
            }
            None => self.misc(old),
        }
        let d = zz(new.wrapping_sub(self.m.rec().last_addr) as i64);
        self.misc(d);
        self.m.rec().last_addr = new;
        self.misc(size);
        self.misc(stack as u64);
    }

    /// Any other record, re-encoded whole: into the meta section if it has
    /// byte strings, else inline in MISC.
    fn reencoded(&mut self, ev: &Event<'_>, rec: &Record<'_>) -> Result<(), &'static str> {
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
        Ok(())
    }
}
