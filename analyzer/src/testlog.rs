//! Builds synthetic logs for the unit tests of this crate: a header from
//! `hdr::write_header` and chunks of records from `memtrace_format::encode`.

use memtrace_format::hdr::{ChunkHeader, off, write_header};
use memtrace_format::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE};

/// Start of the monotonic clock in synthetic logs.
pub const T0: u64 = 1_000_000_000;

/// A log under construction: a header and chunks appended in order.
pub struct LogBuilder {
    pub bytes: Vec<u8>,
    seqs: std::collections::HashMap<u32, u32>,
}

/// The records of one chunk under construction; times are absolute.
pub struct ChunkBuilder {
    pub body: Vec<u8>,
    pub base: u64,
    last: u64,
}

impl ChunkBuilder {
    /// Delta from the previous record's time to `t`.
    pub fn dt(&mut self, t: u64) -> u64 {
        let d = t - self.last;
        self.last = t;
        d
    }

    /// Appends an encoded record produced by `f` into a scratch buffer.
    pub fn put(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> &mut Self {
        let mut buf = vec![0u8; 70000];
        let n = f(&mut buf).expect("record fits");
        self.body.extend_from_slice(&buf[..n]);
        self
    }

    /// Records a REALLOC; `after` is the absolute time the call returned.
    #[allow(clippy::too_many_arguments)]
    pub fn realloc(
        &mut self,
        t: u64,
        after: u64,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
    ) -> &mut Self {
        let d = self.dt(t);
        self.last = after;
        self.put(|b| {
            memtrace_format::encode::realloc(
                b,
                d,
                after - t,
                memtrace_format::Func::Realloc,
                old,
                new,
                size,
                stack,
            )
        })
    }

    pub fn alloc(&mut self, t: u64, addr: u64, size: u64, stack: u32) -> &mut Self {
        let d = self.dt(t);
        self.put(|b| {
            memtrace_format::encode::alloc(b, d, memtrace_format::Func::Malloc, addr, size, stack)
        })
    }

    /// A SAMPLED record (an allocation with `samples` sample points).
    pub fn sampled(&mut self, t: u64, addr: u64, size: u64, stack: u32, samples: u64) -> &mut Self {
        let dt = self.dt(t);
        self.put(|b| {
            memtrace_format::encode::sampled(
                b,
                dt,
                memtrace_format::Func::Malloc,
                addr,
                size,
                stack,
                samples,
            )
        })
    }

    pub fn free(&mut self, t: u64, addr: u64) -> &mut Self {
        let d = self.dt(t);
        self.put(|b| memtrace_format::encode::free(b, d, memtrace_format::Func::Free, addr))
    }

    pub fn mmap(&mut self, t: u64, addr: u64, len: u64, flags: u64, stack: u32) -> &mut Self {
        let d = self.dt(t);
        self.put(|b| {
            memtrace_format::encode::mmap(
                b,
                d,
                memtrace_format::Func::Mmap,
                addr,
                len,
                3,
                flags,
                -1,
                0,
                stack,
            )
        })
    }

    pub fn munmap(&mut self, t: u64, addr: u64, len: u64) -> &mut Self {
        let d = self.dt(t);
        self.put(|b| memtrace_format::encode::munmap(b, d, addr, len, 0))
    }

    pub fn stack(&mut self, id: u32, frames: &[u64]) -> &mut Self {
        self.put(|b| memtrace_format::encode::stack(b, id, frames, None))
    }

    /// A stack the unwinder did not finish.
    pub fn cut_stack(&mut self, id: u32, frames: &[u64], cut: memtrace_format::Cut) -> &mut Self {
        self.put(|b| memtrace_format::encode::stack(b, id, frames, Some(cut)))
    }
}

impl LogBuilder {
    /// A header for pid 42 with 4096-byte pages, started at [`T0`].
    pub fn new() -> Self {
        let mut page = [0u8; HEADER_SIZE];
        write_header(
            &mut page,
            4096,
            42,
            1,
            0,
            T0,
            0,
            0,
            b"/bin/prog",
            b"prog\0arg",
        );
        LogBuilder {
            bytes: page.to_vec(),
            seqs: Default::default(),
        }
    }

    /// A chunk starting at time `base`.
    pub fn chunk(base: u64) -> ChunkBuilder {
        ChunkBuilder {
            body: Vec::new(),
            base,
            last: base,
        }
    }

    /// Appends `c` as the next chunk of `stream`.
    pub fn push(&mut self, stream: u32, c: &ChunkBuilder) -> &mut Self {
        let need = CHUNK_HEADER_SIZE + c.body.len() + 3;
        let size = need.div_ceil(CHUNK_ALIGN) * CHUNK_ALIGN;
        let seq = self.seqs.entry(stream).or_insert(0);
        let h = ChunkHeader {
            size: size as u32,
            stream,
            tid: 100 + stream,
            seq: *seq,
            base_time: c.base,
        };
        *seq += 1;
        let mut hb = [0u8; CHUNK_HEADER_SIZE];
        h.encode_without_magic(&mut hb);
        hb[..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&hb);
        self.bytes.extend_from_slice(&c.body);
        self.bytes.resize(start + size, 0);
        self.set_u64(off::RESERVED_END, self.bytes.len() as u64);
        self
    }

    /// Appends an empty (never written) chunk slot.
    pub fn empty_slot(&mut self) -> &mut Self {
        self.bytes.resize(self.bytes.len() + CHUNK_ALIGN, 0);
        self.set_u64(off::RESERVED_END, self.bytes.len() as u64);
        self
    }

    pub fn set_u32(&mut self, o: usize, v: u32) -> &mut Self {
        self.bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn set_u64(&mut self, o: usize, v: u64) -> &mut Self {
        self.bytes[o..o + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    /// Marks the log as ended by `exit()` at `end`.
    pub fn ended(&mut self, end: u64) -> &mut Self {
        self.set_u32(off::STATE, 2);
        self.set_u64(off::END_MONO, end)
    }
}

/// A small run: two stacks sharing their outer frame; stack 2 allocates
/// 1,000 bytes (freed) and 60 (leaked), stack 1 leaks 40 bytes; it ends at
/// `T0 + 10`.
pub fn two_stack_run() -> LogBuilder {
    let mut c = LogBuilder::chunk(T0);
    c.stack(1, &[0x1234, 0x5678])
        .stack(2, &[0x9abc, 0x5678])
        .alloc(T0 + 2, 0x30, 1000, 2)
        .alloc(T0 + 3, 0x10, 40, 1)
        .free(T0 + 4, 0x30)
        .alloc(T0 + 5, 0x20, 60, 2);
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(T0 + 10);
    b
}

/// What the replay and the catalog see of an event, as text to compare
/// (its file offset left out: a packed log's events have none).
pub fn event_key(ev: &crate::log::Event<'_>) -> String {
    use memtrace_format::Record;
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
