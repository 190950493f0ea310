//! Record encoding into caller-provided buffers: no allocation, no panics.
//!
//! Each `encode_*` function writes one whole record (`len`, tag, payload) into
//! `out` and returns its length, or `None` if `out` is too small. The writer in
//! the preload then copies the record into its chunk with the tag stored last
//! (see the crate docs on torn writes); [`Cursor`] is exposed for that.

use crate::{Func, MAX_RECORD, tag};

/// A bounds-checked write cursor.
pub struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
    ok: bool,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            ok: true,
        }
    }

    /// Bytes written so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Appends one byte.
    #[inline]
    pub fn u8(&mut self, v: u8) {
        match self.buf.get_mut(self.pos) {
            Some(b) => {
                *b = v;
                self.pos += 1;
            }
            None => self.ok = false,
        }
    }

    /// Appends an unsigned LEB128 varint.
    #[inline]
    pub fn v(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.u8(byte);
                return;
            }
            self.u8(byte | 0x80);
        }
    }

    /// Appends a zig-zag encoded signed varint.
    #[inline]
    pub fn z(&mut self, v: i64) {
        self.v(((v << 1) ^ (v >> 63)) as u64);
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.pos += b.len();
            }
            None => self.ok = false,
        }
    }

    /// Appends a length-prefixed byte string.
    pub fn string(&mut self, b: &[u8]) {
        self.v(b.len() as u64);
        self.bytes(b);
    }

    /// Starts a record: reserves the 3-byte prefix. The tag byte is left 0.
    #[inline]
    pub fn begin(&mut self) {
        self.u8(0);
        self.u8(0);
        self.u8(0);
    }

    /// Finishes a record started at offset 0: fills in `len` and the tag.
    /// Returns the record's length, or `None` on overflow.
    #[inline]
    pub fn finish(mut self, t: u8) -> Option<usize> {
        if !self.ok || self.pos > MAX_RECORD || self.pos < 3 {
            self.ok = false;
            return None;
        }
        let len = (self.pos as u16).to_le_bytes();
        self.buf[0] = len[0];
        self.buf[1] = len[1];
        self.buf[2] = t;
        Some(self.pos)
    }
}

/// ALLOC: `t` is the delta time; `stack` the interned stack id.
#[inline]
pub fn alloc(
    out: &mut [u8],
    t: u64,
    func: Func,
    addr: u64,
    size: u64,
    stack: u32,
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(func as u8);
    c.v(addr);
    c.v(size);
    c.v(stack as u64);
    c.finish(tag::ALLOC)
}

/// SAMPLED: an allocation below the sampling interval in which `samples`
/// (>= 1) points of the sampling process fell.
#[inline]
pub fn sampled(
    out: &mut [u8],
    t: u64,
    func: Func,
    addr: u64,
    size: u64,
    stack: u32,
    samples: u64,
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(func as u8);
    c.v(addr);
    c.v(size);
    c.v(stack as u64);
    c.v(samples);
    c.finish(tag::SAMPLED)
}

/// FREE.
#[inline]
pub fn free(out: &mut [u8], t: u64, func: Func, addr: u64) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(func as u8);
    c.v(addr);
    c.finish(tag::FREE)
}

/// REALLOC: `t` is taken before the call, `dt2` is the call's duration.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn realloc(
    out: &mut [u8],
    t: u64,
    dt2: u64,
    func: Func,
    old: u64,
    new: u64,
    size: u64,
    stack: u32,
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(dt2);
    c.u8(func as u8);
    c.v(old);
    c.v(new);
    c.v(size);
    c.v(stack as u64);
    c.finish(tag::REALLOC)
}

/// MMAP.
#[allow(clippy::too_many_arguments)]
pub fn mmap(
    out: &mut [u8],
    t: u64,
    func: Func,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: i64,
    offset: u64,
    stack: u32,
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(func as u8);
    c.v(addr);
    c.v(len);
    c.v(prot);
    c.v(flags);
    c.z(fd);
    c.v(offset);
    c.v(stack as u64);
    c.finish(tag::MMAP)
}

/// MUNMAP.
pub fn munmap(out: &mut [u8], t: u64, addr: u64, len: u64, stack: u32) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(addr);
    c.v(len);
    c.v(stack as u64);
    c.finish(tag::MUNMAP)
}

/// MREMAP.
#[allow(clippy::too_many_arguments)]
pub fn mremap(
    out: &mut [u8],
    t: u64,
    old: u64,
    old_len: u64,
    new: u64,
    new_len: u64,
    flags: u64,
    stack: u32,
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(old);
    c.v(old_len);
    c.v(new);
    c.v(new_len);
    c.v(flags);
    c.v(stack as u64);
    c.finish(tag::MREMAP)
}

/// BRK: `arg` is brk's address or sbrk's increment.
pub fn brk(
    out: &mut [u8],
    t: u64,
    func: Func,
    arg: i64,
    old_break: u64,
    new_break: u64,
    stack: u32,
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(func as u8);
    c.z(arg);
    c.v(old_break);
    c.v(new_break);
    c.v(stack as u64);
    c.finish(tag::BRK)
}

/// STACK: frames innermost first; `cut` if the unwinder stopped before the
/// thread's entry (see [`crate::Cut`]).
pub fn stack(out: &mut [u8], id: u32, frames: &[u64], cut: Option<crate::Cut>) -> Option<usize> {
    if frames.len() > crate::MAX_FRAMES {
        return None;
    }
    let mut c = Cursor::new(out);
    c.begin();
    c.v(id as u64);
    c.v(frames.len() as u64 | (cut.map_or(0, |c| c as u64) << crate::STACK_CUT_SHIFT));
    let mut prev = 0u64;
    for (i, &f) in frames.iter().enumerate() {
        if i == 0 {
            c.v(f);
        } else {
            c.z(f.wrapping_sub(prev) as i64);
        }
        prev = f;
    }
    c.finish(tag::STACK)
}

/// MODULE: a loaded ELF object. `bias` is the load bias (dlpi_addr); `start`
/// and `end` bound its mapped segments.
pub fn module(
    out: &mut [u8],
    t: u64,
    bias: u64,
    start: u64,
    end: u64,
    build_id: &[u8],
    path: &[u8],
) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(bias);
    c.v(start);
    c.v(end);
    c.string(build_id);
    c.string(path);
    c.finish(tag::MODULE)
}

/// UNMODULE: the object loaded at `bias`/`start` was unloaded.
pub fn unmodule(out: &mut [u8], t: u64, bias: u64, start: u64) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(bias);
    c.v(start);
    c.finish(tag::UNMODULE)
}

/// LOST: `count` events of this stream could not be recorded.
pub fn lost(out: &mut [u8], t: u64, count: u64) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(count);
    c.finish(tag::LOST)
}

/// FREERES: phase 1 = libc's clean-up begins, 2 = ends.
pub fn freeres(out: &mut [u8], t: u64, phase: u8) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(phase);
    c.finish(tag::FREERES)
}

/// FORK: this process made `child_pid`, as `how` says ([`crate::lineage`]
/// bits); `path` is the image a spawned child runs, or empty.
pub fn fork(out: &mut [u8], t: u64, child_pid: u64, how: u8, path: &[u8]) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.v(child_pid);
    c.u8(how);
    c.string(path);
    c.finish(tag::FORK)
}

/// EXEC: this process is about to exec `path`; `how` holds
/// [`crate::lineage`] bits saying whether the new image can be traced.
pub fn exec(out: &mut [u8], t: u64, path: &[u8], how: u8) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.string(path);
    c.u8(how);
    c.finish(tag::EXEC)
}

/// EXIT: the process is ending by `how`.
pub fn exit(out: &mut [u8], t: u64, how: u8, status: i64) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(how);
    c.z(status);
    c.finish(tag::EXIT)
}

/// KERNEL: the kernel's accounting of the process (see [`crate::kernel`]).
pub fn kernel(out: &mut [u8], t: u64, kind: u8, values: &[u64]) -> Option<usize> {
    let mut c = Cursor::new(out);
    c.begin();
    c.v(t);
    c.u8(kind);
    c.v(values.len() as u64);
    for &v in values {
        c.v(v);
    }
    c.finish(tag::KERNEL)
}
