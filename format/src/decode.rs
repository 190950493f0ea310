//! Decoding: every length and count is checked; nothing here can panic or
//! allocate, whatever the input.

use core::fmt;

use crate::hdr::ChunkHeader;
use crate::{
    CHUNK_ALIGN, CHUNK_HEADER_SIZE, Cut, Func, HEADER_SIZE, MAX_FRAMES, STACK_CUT_SHIFT, tag,
};

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
    #[inline]
    pub fn v(&mut self) -> Result<u64, DecodeError> {
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
        macro_rules! time {
            () => {{
                self.time = self.time.wrapping_add(r.v()?);
                self.time
            }};
        }
        Ok(match t {
            tag::ALLOC => Record::Alloc {
                time: time!(),
                func: r.func()?,
                addr: r.v()?,
                size: r.v()?,
                stack: r.v32()?,
                samples: 0,
            },
            tag::SAMPLED => {
                let rec = Record::Alloc {
                    time: time!(),
                    func: r.func()?,
                    addr: r.v()?,
                    size: r.v()?,
                    stack: r.v32()?,
                    samples: r.v()?,
                };
                if matches!(rec, Record::Alloc { samples: 0, .. }) {
                    return Err(DecodeError::BadRecord("sample count"));
                }
                rec
            }
            tag::FREE => Record::Free {
                time: time!(),
                func: r.func()?,
                addr: r.v()?,
            },
            tag::REALLOC => {
                let time = time!();
                let dt2 = r.v()?;
                let time_after = time.wrapping_add(dt2);
                self.time = time_after;
                Record::Realloc {
                    time,
                    time_after,
                    func: r.func()?,
                    old: r.v()?,
                    new: r.v()?,
                    size: r.v()?,
                    stack: r.v32()?,
                }
            }
            tag::MMAP => Record::Mmap {
                time: time!(),
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
                time: time!(),
                addr: r.v()?,
                len: r.v()?,
                stack: r.v32()?,
            },
            tag::MREMAP => Record::Mremap {
                time: time!(),
                old: r.v()?,
                old_len: r.v()?,
                new: r.v()?,
                new_len: r.v()?,
                flags: r.v()?,
                stack: r.v32()?,
            },
            tag::BRK => Record::Brk {
                time: time!(),
                func: r.func()?,
                arg: r.z()?,
                old_break: r.v()?,
                new_break: r.v()?,
                stack: r.v32()?,
            },
            tag::STACK => {
                let id = r.v32()?;
                let n = r.v()?;
                let cut = Cut::from_u8((n >> STACK_CUT_SHIFT) as u8 & 3);
                let n = n & !(3 << STACK_CUT_SHIFT);
                // Each frame takes at least one byte: bound n by what is there.
                if n > MAX_FRAMES as u64 || n > r.rest().len() as u64 {
                    return Err(DecodeError::BadRecord("frame count"));
                }
                Record::Stack {
                    id,
                    frames: FrameIter {
                        r: Reader::new(r.rest()),
                        left: n as usize,
                        prev: 0,
                        first: true,
                        cut,
                    },
                }
            }
            tag::MODULE => Record::Module {
                time: time!(),
                bias: r.v()?,
                start: r.v()?,
                end: r.v()?,
                build_id: r.string()?,
                path: r.string()?,
            },
            tag::UNMODULE => Record::Unmodule {
                time: time!(),
                bias: r.v()?,
                start: r.v()?,
            },
            tag::LOST => Record::Lost {
                time: time!(),
                count: r.v()?,
            },
            tag::FREERES => Record::Freeres {
                time: time!(),
                phase: r.u8()?,
            },
            tag::FORK => Record::Fork {
                time: time!(),
                child_pid: r.v()?,
                how: if r.at_end() { 0 } else { r.u8()? },
                path: if r.at_end() { b"" } else { r.string()? },
            },
            tag::EXEC => Record::Exec {
                time: time!(),
                path: r.string()?,
                how: if r.at_end() { 0 } else { r.u8()? },
            },
            tag::EXIT => Record::Exit {
                time: time!(),
                how: r.u8()?,
                status: r.z()?,
            },
            tag::KERNEL => {
                let time = time!();
                let kind = r.u8()?;
                let n = r.v()?;
                // Each value takes at least one byte: bound n by what is there.
                if n > r.rest().len() as u64 {
                    return Err(DecodeError::BadRecord("value count"));
                }
                Record::Kernel {
                    time,
                    kind,
                    values: ValueIter {
                        r: Reader::new(r.rest()),
                        left: n as usize,
                    },
                }
            }
            other => Record::Unknown { tag: other },
        })
    }
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

/// One chunk of the file.
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    /// File offset of the chunk.
    pub offset: u64,
    pub header: ChunkHeader,
    /// The chunk's records area.
    pub body: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// The chunk's records.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter::new(self.body, self.header.base_time)
    }
}

/// Iterates over the written chunks of a whole file (header included in `file`).
pub struct ChunkIter<'a> {
    file: &'a [u8],
    pos: usize,
    end: usize,
    /// Reserved slots that were never written (the process died first).
    pub empty_slots: u64,
    /// True when the header's reserved end lies beyond the file's end.
    pub truncated: bool,
}

impl<'a> ChunkIter<'a> {
    /// Chunks of `file`, up to the header's `reserved_end` (clamped to the file).
    pub fn new(file: &'a [u8], reserved_end: u64) -> Self {
        let truncated = reserved_end > file.len() as u64;
        let end = (reserved_end.min(file.len() as u64)) as usize;
        ChunkIter {
            file,
            pos: HEADER_SIZE,
            end,
            empty_slots: 0,
            truncated,
        }
    }
}

/// One step of a [`ChunkIter`] walk.
pub enum Step<'a> {
    /// A chunk, or the corrupt chunk header that ends the walk.
    Chunk(Result<Chunk<'a>, DecodeError>),
    /// A slot that was reserved but never written (skipped).
    Empty,
    /// The end of the chunk area.
    End,
}

impl<'a> ChunkIter<'a> {
    /// File offset where the walk continues.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Moves the walk by one chunk or one empty slot, so a caller can act
    /// (release pages, say) during a long run of empty slots.
    pub fn step(&mut self) -> Step<'a> {
        if self.pos.saturating_add(CHUNK_HEADER_SIZE) > self.end {
            return Step::End;
        }
        let b = &self.file[self.pos..self.end];
        let h = match ChunkHeader::parse(b) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.empty_slots += 1;
                self.pos = self.pos.saturating_add(CHUNK_ALIGN);
                return Step::Empty;
            }
            Err(e) => {
                self.pos = self.end;
                return Step::Chunk(Err(e));
            }
        };
        let size = h.size as usize;
        if size < CHUNK_ALIGN || !size.is_multiple_of(CHUNK_ALIGN) {
            self.pos = self.end;
            return Step::Chunk(Err(DecodeError::BadChunk("size")));
        }
        let offset = self.pos as u64;
        // A chunk cut short by the end of the file still yields its records.
        let stop = self.pos.saturating_add(size).min(self.end);
        let body = &self.file[self.pos + CHUNK_HEADER_SIZE..stop];
        self.pos = self.pos.saturating_add(size);
        Step::Chunk(Ok(Chunk {
            offset,
            header: h,
            body,
        }))
    }
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = Result<Chunk<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.step() {
                Step::Chunk(c) => return Some(c),
                Step::Empty => continue,
                Step::End => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;

    /// Every record kind round-trips through encode and decode.
    #[test]
    fn roundtrip_records() {
        let mut body = [0u8; 1024];
        let mut pos = 0;
        let mut put = |f: &dyn Fn(&mut [u8]) -> Option<usize>| {
            let n = f(&mut body[pos..]).unwrap();
            pos += n;
        };
        put(&|b| encode::alloc(b, 5, Func::Malloc, 0x1000, 24, 3));
        put(&|b| encode::free(b, 1, Func::Free, 0x1000));
        put(&|b| encode::realloc(b, 2, 3, Func::Realloc, 0x10, 0x20, 99, 4));
        put(&|b| encode::stack(b, 7, &[0x401000, 0x400ff0, 0x7fff_0000_0000], None));
        put(&|b| encode::mmap(b, 1, Func::Mmap64, 0x7f00, 8192, 3, 0x22, -1, 0, 1));
        put(&|b| encode::module(b, 1, 0x1000, 0x1000, 0x9000, b"\x01\x02", b"/lib/x.so"));
        put(&|b| encode::sampled(b, 2, Func::Calloc, 0x2000, 40, 5, 3));
        put(&|b| encode::sampled(b, 2, Func::Calloc, 0x2000, 40, 5, 0));
        let recs: [Record; 7] = {
            let mut it = RecordIter::new(&body, 100);
            core::array::from_fn(|_| it.next().unwrap().unwrap())
        };
        assert!(matches!(
            recs[0],
            Record::Alloc {
                time: 105,
                func: Func::Malloc,
                addr: 0x1000,
                size: 24,
                stack: 3,
                samples: 0
            }
        ));
        assert!(matches!(
            recs[1],
            Record::Free {
                time: 106,
                addr: 0x1000,
                ..
            }
        ));
        assert!(matches!(
            recs[2],
            Record::Realloc {
                time: 108,
                time_after: 111,
                old: 0x10,
                new: 0x20,
                size: 99,
                stack: 4,
                ..
            }
        ));
        match &recs[3] {
            Record::Stack { id: 7, frames } => {
                let mut f = frames.clone();
                assert_eq!(f.next(), Some(Ok(0x401000)));
                assert_eq!(f.next(), Some(Ok(0x400ff0)));
                assert_eq!(f.next(), Some(Ok(0x7fff_0000_0000)));
                assert_eq!(f.next(), None);
                assert!(!frames.truncated());
            }
            _ => panic!("not a stack"),
        }
        assert!(matches!(
            recs[4],
            Record::Mmap {
                time: 112,
                fd: -1,
                len: 8192,
                ..
            }
        ));
        assert!(matches!(
            recs[5],
            Record::Module {
                path: b"/lib/x.so",
                ..
            }
        ));
        assert!(matches!(
            recs[6],
            Record::Alloc {
                time: 115,
                func: Func::Calloc,
                addr: 0x2000,
                size: 40,
                stack: 5,
                samples: 3
            }
        ));
        // A SAMPLED record must carry at least one sample point.
        let mut it = RecordIter::new(&body, 100);
        assert!(it.nth(7).unwrap().is_err());
    }

    /// A record whose tag was never written decodes as Torn and is skipped by length.
    #[test]
    fn torn_record_is_skipped() {
        let mut body = [0u8; 64];
        let n = encode::free(&mut body, 1, Func::Free, 8).unwrap();
        body[2] = 0; // tag not yet stored
        let m = encode::free(&mut body[n..], 1, Func::Free, 9).unwrap();
        assert!(m > 0);
        let mut it = RecordIter::new(&body, 0);
        assert!(matches!(it.next(), Some(Ok(Record::Torn))));
        assert!(matches!(it.next(), Some(Ok(Record::Free { addr: 9, .. }))));
        assert!(it.next().is_none());
    }

    /// A truncated stack keeps its cut and its frames; a STACK record as
    /// written before the cut existed (a plain count) reads as whole; a
    /// count above MAX_FRAMES is refused with or without the flag.
    #[test]
    fn stack_truncated_flag() {
        let mut body = [0u8; 4096];
        let mut pos = encode::stack(&mut body, 3, &[0x10, 0x20], Some(Cut::NoCfi)).unwrap();
        // The old encoding, by hand: id 4, n 1, frame 0x30.
        let old = [6u8, 0, tag::STACK, 4, 1, 0x30];
        body[pos..pos + old.len()].copy_from_slice(&old);
        pos += old.len();
        let frames = [7u64; MAX_FRAMES];
        pos += encode::stack(&mut body[pos..], 5, &frames, Some(Cut::Limit)).unwrap();
        let mut it = RecordIter::new(&body[..pos], 0);
        let mut got = [(0u32, None, 0usize, 0u64); 3];
        for g in got.iter_mut() {
            match it.next() {
                Some(Ok(Record::Stack { id, frames })) => {
                    let t = frames.cut();
                    let n = frames.len();
                    let last = frames.last().unwrap().unwrap();
                    *g = (id, t, n, last);
                }
                _ => panic!("not a stack"),
            }
        }
        assert!(it.next().is_none());
        assert_eq!(
            got,
            [
                (3, Some(Cut::NoCfi), 2, 0x20),
                (4, None, 1, 0x30),
                (5, Some(Cut::Limit), MAX_FRAMES, 7)
            ]
        );
        assert_eq!(
            encode::stack(&mut body, 6, &[0; MAX_FRAMES + 1], None),
            None
        );
        // A count of MAX_FRAMES + 1 with the flag is still refused (with
        // enough bytes for that many frames).
        let mut b = [0u8; 700];
        b[..7].copy_from_slice(&[0, 0, tag::STACK, 1, 0x81, 0x84, 0x04]);
        b[..2].copy_from_slice(&700u16.to_le_bytes());
        assert!(matches!(
            RecordIter::new(&b, 0).next(),
            Some(Err(DecodeError::BadRecord("frame count")))
        ));
    }

    /// Garbage never panics: every prefix and every byte flip of a valid body decodes or errors.
    #[test]
    fn garbage_does_not_panic() {
        let mut body = [0u8; 256];
        let mut pos = encode::stack(&mut body, 1, &[1, 2, 3, 4], Some(Cut::BadFrame)).unwrap();
        pos += encode::alloc(&mut body[pos..], 1, Func::Calloc, 5, 6, 1).unwrap();
        for cut in 0..pos {
            for r in RecordIter::new(&body[..cut], 0) {
                if let Ok(Record::Stack { frames, .. }) = r {
                    frames.for_each(drop);
                }
            }
        }
        for i in 0..pos {
            for bit in 0..8 {
                let mut b = body;
                b[i] ^= 1 << bit;
                for r in RecordIter::new(&b[..pos], 0) {
                    if let Ok(Record::Stack { frames, .. }) = r {
                        frames.for_each(drop);
                    }
                }
            }
        }
    }

    /// An overlong record is refused by the encoder instead of overflowing.
    #[test]
    fn encoder_reports_overflow() {
        let mut small = [0u8; 4];
        assert_eq!(
            encode::alloc(&mut small, 1, Func::Malloc, 1 << 40, 1 << 30, 7),
            None
        );
    }
}
