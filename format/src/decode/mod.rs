//! Decoding: every length and count is checked; nothing here can panic or
//! allocate, whatever the input.

use core::fmt;

use crate::{Cut, Func, MAX_FRAMES, STACK_CUT_SHIFT, tag};

mod chunk;
#[cfg(test)]
mod tests;

pub use chunk::{Chunk, ChunkIter, Step};

/// Why a log could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The file does not start with the magic.
    NotALog,
    /// The file was written by another format version.
    Version(u32),
    /// The file ends inside the named structure.
    Truncated(&'static str),
    /// A header field is out of range.
    BadHeader(&'static str),
    /// A chunk header is corrupt.
    BadChunk(&'static str),
    /// A record is corrupt.
    BadRecord(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotALog => write!(f, "not a memtrace log (bad magic)"),
            DecodeError::Version(v) => write!(
                f,
                "unsupported log format version {v} (this memtrace reads version {})",
                crate::VERSION
            ),
            DecodeError::Truncated(what) => write!(f, "log is truncated inside the {what}"),
            DecodeError::BadHeader(what) => write!(f, "corrupt log header: bad {what}"),
            DecodeError::BadChunk(what) => write!(f, "corrupt chunk: bad {what}"),
            DecodeError::BadRecord(what) => write!(f, "corrupt record: bad {what}"),
        }
    }
}

/// A bounds-checked read cursor.
#[derive(Clone)]
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or(DecodeError::BadRecord("length"))?;
        self.pos += 1;
        Ok(v)
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    #[inline(always)]
    pub fn v(&mut self) -> Result<u64, DecodeError> {
        // Most varints are one byte: no loop for them.
        if let Some(&b) = self.b.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(b as u64);
        }
        self.v_long()
    }

    /// [`Reader::v`] of a varint of two bytes or more (or none).
    #[inline(never)]
    fn v_long(&mut self) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                return Err(DecodeError::BadRecord("varint"));
            }
            out |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(out);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::BadRecord("varint"));
            }
        }
    }

    /// A zig-zag signed varint.
    #[inline]
    pub fn z(&mut self) -> Result<i64, DecodeError> {
        let v = self.v()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A u32 that must fit.
    pub fn v32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.v()?).map_err(|_| DecodeError::BadRecord("u32 field"))
    }

    /// Nothing left: optional fields added to a record later are absent.
    pub fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// A length-prefixed byte string.
    pub fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.v()?;
        let rest = self.b.len().saturating_sub(self.pos);
        if len > rest as u64 {
            return Err(DecodeError::BadRecord("string length"));
        }
        let s = &self.b[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    fn func(&mut self) -> Result<Func, DecodeError> {
        Func::from_u8(self.u8()?).ok_or(DecodeError::BadRecord("function"))
    }

    /// Bytes left.
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.pos..]
    }
}

/// The values of a KERNEL record, decoded lazily.
#[derive(Clone)]
pub struct ValueIter<'a> {
    r: Reader<'a>,
    left: usize,
}

impl core::fmt::Debug for ValueIter<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl ValueIter<'_> {
    /// Values not yet returned (each takes at least a byte of the record).
    pub fn len_hint(&self) -> usize {
        self.left
    }
}

impl Iterator for ValueIter<'_> {
    type Item = Result<u64, DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = self.r.v();
        if v.is_err() {
            self.left = 0;
        }
        Some(v)
    }
}

/// The frames of a STACK record, decoded lazily (innermost first).
#[derive(Clone)]
pub struct FrameIter<'a> {
    r: Reader<'a>,
    left: usize,
    prev: u64,
    first: bool,
    cut: Option<Cut>,
}

impl FrameIter<'_> {
    /// Why the stack is not whole, if it is not: the unwinder stopped
    /// before the thread's entry (see [`Cut`]).
    pub fn cut(&self) -> Option<Cut> {
        self.cut
    }

    /// Whether the stack is not whole (see [`Cut`]).
    pub fn truncated(&self) -> bool {
        self.cut.is_some()
    }

    /// Frames not yet returned.
    pub fn len(&self) -> usize {
        self.left
    }

    /// No frames left.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl Iterator for FrameIter<'_> {
    type Item = Result<u64, DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = if self.first {
            self.first = false;
            self.r.v()
        } else {
            self.r.z().map(|d| self.prev.wrapping_add(d as u64))
        };
        match v {
            Ok(v) => {
                self.prev = v;
                Some(Ok(v))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// One decoded record. Times are absolute (CLOCK_MONOTONIC ns).
#[derive(Clone)]
pub enum Record<'a> {
    Alloc {
        time: u64,
        func: Func,
        addr: u64,
        size: u64,
        stack: u32,
        /// 0: recorded because every allocation (or every one of at least the
        /// sampling interval) is recorded. `k >= 1`: a SAMPLED record, chosen
        /// by `k` points of the Poisson process over bytes.
        samples: u64,
    },
    Free {
        time: u64,
        func: Func,
        addr: u64,
    },
    Realloc {
        time: u64,
        time_after: u64,
        func: Func,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
    },
    Mmap {
        time: u64,
        func: Func,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i64,
        offset: u64,
        stack: u32,
    },
    Munmap {
        time: u64,
        addr: u64,
        len: u64,
        stack: u32,
    },
    Mremap {
        time: u64,
        old: u64,
        old_len: u64,
        new: u64,
        new_len: u64,
        flags: u64,
        stack: u32,
    },
    Brk {
        time: u64,
        func: Func,
        arg: i64,
        old_break: u64,
        new_break: u64,
        stack: u32,
    },
    Stack {
        id: u32,
        frames: FrameIter<'a>,
    },
    Module {
        time: u64,
        bias: u64,
        start: u64,
        end: u64,
        build_id: &'a [u8],
        path: &'a [u8],
    },
    Unmodule {
        time: u64,
        bias: u64,
        start: u64,
    },
    Lost {
        time: u64,
        count: u64,
    },
    Freeres {
        time: u64,
        phase: u8,
    },
    Fork {
        time: u64,
        child_pid: u64,
        /// How the child was made and whether it is traced: [`crate::lineage`] bits
        /// (0 in logs written before them).
        how: u8,
        /// The image a spawned child runs (`posix_spawn`, a `vfork` child's
        /// exec); empty otherwise.
        path: &'a [u8],
    },
    Exec {
        time: u64,
        path: &'a [u8],
        /// [`crate::lineage`] bits: whether the new image can be traced.
        how: u8,
    },
    Exit {
        time: u64,
        how: u8,
        status: i64,
    },
    /// The kernel's accounting, sampled from outside (see [`crate::kernel`]).
    Kernel {
        time: u64,
        kind: u8,
        values: ValueIter<'a>,
    },
    /// A record the process was killed in the middle of writing.
    Torn,
    /// A record with a tag this version does not know; skipped.
    Unknown {
        tag: u8,
    },
}

/// Whether `realloc(old, size)` returning `new` released the old block: when
/// it succeeded (`new != 0`), or freed it (`size == 0`: glibc's `realloc(p, 0)`
/// frees `p` and may return NULL); a failed realloc leaves the old block to the
/// program (C11 7.22.3.5). The one rule the recorder, the replay, the packer and
/// the exports follow for a REALLOC record.
#[inline]
pub fn realloc_released(old: u64, new: u64, size: u64) -> bool {
    old != 0 && (new != 0 || size == 0)
}

impl Record<'_> {
    /// The record's time, if it has one.
    pub fn time(&self) -> Option<u64> {
        use Record::*;
        match *self {
            Alloc { time, .. }
            | Free { time, .. }
            | Realloc { time, .. }
            | Mmap { time, .. }
            | Munmap { time, .. }
            | Mremap { time, .. }
            | Brk { time, .. }
            | Module { time, .. }
            | Unmodule { time, .. }
            | Lost { time, .. }
            | Freeres { time, .. }
            | Fork { time, .. }
            | Exec { time, .. }
            | Exit { time, .. }
            | Kernel { time, .. } => Some(time),
            Stack { .. } | Torn | Unknown { .. } => None,
        }
    }
}

/// Iterates over the records of one chunk's body.
pub struct RecordIter<'a> {
    body: &'a [u8],
    pos: usize,
    time: u64,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// Records of a chunk: `body` is the chunk without its header.
    pub fn new(body: &'a [u8], base_time: u64) -> Self {
        RecordIter {
            body,
            pos: 0,
            time: base_time,
            done: false,
        }
    }

    /// Records of a chunk's `body` from body offset `pos` on, where the
    /// stream's time was `time`: where an earlier iterator stopped
    /// ([`RecordIter::offset`], [`RecordIter::time`]), to read on later in a
    /// chunk that was still being written.
    pub fn resume(body: &'a [u8], pos: usize, time: u64) -> Self {
        RecordIter {
            body,
            pos: pos.min(body.len()),
            time,
            done: false,
        }
    }

    /// The time of the last timed record returned.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// Offset in the body of the next record (every byte before it has been consumed).
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn decode(&mut self, t: u8, payload: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        let mut r = Reader::new(payload);
        let r = &mut r;
        Ok(match t {
            tag::ALLOC => Record::Alloc {
                time: self.step_time(r)?,
                func: r.func()?,
                addr: r.v()?,
                size: r.v()?,
                stack: r.v32()?,
                samples: 0,
            },
            tag::SAMPLED => self.sampled(r)?,
            tag::FREE => Record::Free {
                time: self.step_time(r)?,
                func: r.func()?,
                addr: r.v()?,
            },
            tag::REALLOC => self.realloc(r)?,
            tag::MMAP => Record::Mmap {
                time: self.step_time(r)?,
                func: r.func()?,
                addr: r.v()?,
                len: r.v()?,
                prot: r.v()?,
                flags: r.v()?,
                fd: r.z()?,
                offset: r.v()?,
                stack: r.v32()?,
            },
            tag::MUNMAP => Record::Munmap {
                time: self.step_time(r)?,
                addr: r.v()?,
                len: r.v()?,
                stack: r.v32()?,
            },
            tag::MREMAP => Record::Mremap {
                time: self.step_time(r)?,
                old: r.v()?,
                old_len: r.v()?,
                new: r.v()?,
                new_len: r.v()?,
                flags: r.v()?,
                stack: r.v32()?,
            },
            tag::BRK => Record::Brk {
                time: self.step_time(r)?,
                func: r.func()?,
                arg: r.z()?,
                old_break: r.v()?,
                new_break: r.v()?,
                stack: r.v32()?,
            },
            tag::STACK => stack(r)?,
            tag::MODULE => Record::Module {
                time: self.step_time(r)?,
                bias: r.v()?,
                start: r.v()?,
                end: r.v()?,
                build_id: r.string()?,
                path: r.string()?,
            },
            tag::UNMODULE => Record::Unmodule {
                time: self.step_time(r)?,
                bias: r.v()?,
                start: r.v()?,
            },
            tag::LOST => Record::Lost {
                time: self.step_time(r)?,
                count: r.v()?,
            },
            tag::FREERES => Record::Freeres {
                time: self.step_time(r)?,
                phase: r.u8()?,
            },
            tag::FORK => Record::Fork {
                time: self.step_time(r)?,
                child_pid: r.v()?,
                how: if r.at_end() { 0 } else { r.u8()? },
                path: if r.at_end() { b"" } else { r.string()? },
            },
            tag::EXEC => Record::Exec {
                time: self.step_time(r)?,
                path: r.string()?,
                how: if r.at_end() { 0 } else { r.u8()? },
            },
            tag::EXIT => Record::Exit {
                time: self.step_time(r)?,
                how: r.u8()?,
                status: r.z()?,
            },
            tag::KERNEL => self.kernel(r)?,
            other => Record::Unknown { tag: other },
        })
    }

    /// The time of a timed record: the previous one's plus the delta read from `r`.
    fn step_time(&mut self, r: &mut Reader<'a>) -> Result<u64, DecodeError> {
        self.time = self.time.wrapping_add(r.v()?);
        Ok(self.time)
    }

    /// A SAMPLED record: an ALLOC with a sample count, which is never 0.
    fn sampled(&mut self, r: &mut Reader<'a>) -> Result<Record<'a>, DecodeError> {
        let rec = Record::Alloc {
            time: self.step_time(r)?,
            func: r.func()?,
            addr: r.v()?,
            size: r.v()?,
            stack: r.v32()?,
            samples: r.v()?,
        };
        if matches!(rec, Record::Alloc { samples: 0, .. }) {
            return Err(DecodeError::BadRecord("sample count"));
        }
        Ok(rec)
    }

    /// A REALLOC: both of its times (the second, `time_after`, becomes the
    /// stream's time), then its fields.
    fn realloc(&mut self, r: &mut Reader<'a>) -> Result<Record<'a>, DecodeError> {
        let time = self.step_time(r)?;
        let dt2 = r.v()?;
        let time_after = time.wrapping_add(dt2);
        self.time = time_after;
        Ok(Record::Realloc {
            time,
            time_after,
            func: r.func()?,
            old: r.v()?,
            new: r.v()?,
            size: r.v()?,
            stack: r.v32()?,
        })
    }

    /// A KERNEL record: its kind and values, their count bounded by the bytes present.
    fn kernel(&mut self, r: &mut Reader<'a>) -> Result<Record<'a>, DecodeError> {
        let time = self.step_time(r)?;
        let kind = r.u8()?;
        let n = r.v()?;
        // Each value takes at least one byte: bound n by what is there.
        if n > r.rest().len() as u64 {
            return Err(DecodeError::BadRecord("value count"));
        }
        Ok(Record::Kernel {
            time,
            kind,
            values: ValueIter {
                r: Reader::new(r.rest()),
                left: n as usize,
            },
        })
    }
}

/// A STACK record: its id and frames, their count bounded by MAX_FRAMES and
/// by the bytes present.
fn stack<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, DecodeError> {
    let id = r.v32()?;
    let n = r.v()?;
    let cut = Cut::from_u8((n >> STACK_CUT_SHIFT) as u8 & 3);
    let n = n & !(3 << STACK_CUT_SHIFT);
    // Each frame takes at least one byte: bound n by what is there.
    if n > MAX_FRAMES as u64 || n > r.rest().len() as u64 {
        return Err(DecodeError::BadRecord("frame count"));
    }
    Ok(Record::Stack {
        id,
        frames: FrameIter {
            r: Reader::new(r.rest()),
            left: n as usize,
            prev: 0,
            first: true,
            cut,
        },
    })
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.body[self.pos..];
        if rest.len() < 3 {
            self.done = true;
            return None;
        }
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        if len == 0 {
            self.done = true;
            return None;
        }
        if len < 3 || len > rest.len() {
            self.done = true;
            return Some(Err(DecodeError::BadRecord("record length")));
        }
        let t = rest[2];
        let payload = &rest[3..len];
        self.pos += len;
        if t == 0 {
            return Some(Ok(Record::Torn));
        }
        let r = self.decode(t, payload);
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}
