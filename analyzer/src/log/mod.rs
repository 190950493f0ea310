//! Opening a log and reading its records in time order.
//!
//! [`Log::open`] maps the file read-only; [`Log::index`] walks the chunk
//! headers once (records are not decoded) and groups the chunks by stream;
//! [`Merge`] then decodes the streams lazily from the mapping and merges them
//! by event time with a heap over one cursor per stream. Memory therefore
//! grows with the number of chunks and streams, never with the number of
//! events; the analysis on top grows with live blocks and distinct stacks.
//!
//! ## Resident memory
//! Pages of a file mapping count in the process's RSS once touched, so a
//! mapped log would otherwise end up wholly resident. Every pass releases
//! what it has consumed ([`Log::release`], `MADV_DONTNEED`, which keeps the
//! bytes valid): the index walk every 256 KiB, each stream's cursor when it
//! finishes a chunk and every window of up to 256 KiB inside one (8 MiB
//! shared by all streams), and with more than 1024 streams the merge
//! releases the whole mapping each time 16 MiB of records were decoded. A 20M-event log
//! (270 MB) is analyzed in about 22 MiB (`scripts/bench-analyzer.sh`).
//! The holes of a sparse log are covered with zero pages when it is opened,
//! so reading them never needs the file system's space (SIGBUS on a full
//! tmpfs otherwise).
//!
//! ## Invariants
//! - Records of one stream come out in file order (chunks sorted by `seq`,
//!   which is file order in a well-formed log), whatever their times; records
//!   of different streams come out by time, ties broken by stream order.
//! - A REALLOC comes out twice: at `time` with [`Event::realloc_end`] false
//!   (the moment the old block is released) and at `time_after` with it true
//!   (the moment the new block exists), so another thread reusing either
//!   address in between is replayed in the right order.
//! - Records without a time (STACK, torn, unknown tags) take the time of the
//!   stream's previous record.
//!
//! ## Damage policy
//! - Not a log, another format version, a corrupt header, a file that ends
//!   inside the 4096-byte header, an empty file: [`Error`] (exit status 2).
//! - The file ends before the header's `reserved_end` (copied while the
//!   target ran, or cut short by a full disk): *truncated*. Everything that
//!   can be decoded is reported, the report says so, and a record cut by the
//!   end of the file ends its stream quietly.
//! - A corrupt chunk header, or a corrupt record in a chunk that is wholly
//!   inside the file: [`Error`]. The writer never produces these, even when
//!   the target dies mid-write (it stores the tag byte last, which the
//!   decoder reports as a torn record), so they mean the file is damaged and
//!   a report from it could not be trusted.
//! - Torn records and chunk slots that were reserved but never written are
//!   counted and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use memtrace_format::decode::{ChunkIter, Step};
use memtrace_format::{CHUNK_HEADER_SIZE, DecodeError, Header, Record, RecordIter};

use crate::error::{Error, Result};

pub mod live;
pub mod packed;

/// The system's page size (4096 if it cannot be read).
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        match usize::try_from(v) {
            Ok(v) if v.is_power_of_two() => v,
            _ => 4096,
        }
    })
}

/// Most holes [`cover_holes`] covers (each costs a mapping of its own, and
/// the kernel limits their number).
const MAX_HOLES: usize = 4096;

/// Maps anonymous zero pages over the holes of a sparse log (chunk slots
/// reserved but never written, or space the writer could not back). Reading
/// a hole through a file mapping needs a fresh page of the file system's, so
/// on a full tmpfs it raises SIGBUS; the zero page needs nothing. Best
/// effort: the holes present when the log is opened, at most [`MAX_HOLES`].
fn cover_holes(file: &File, map: &Mmap) {
    use std::os::fd::AsRawFd;
    let page = page_size() as i64;
    let len = map.len() as i64;
    let fd = file.as_raw_fd();
    let mut pos = 0i64;
    for _ in 0..MAX_HOLES {
        // SAFETY: lseek on our own descriptor has no memory effects.
        let hole = unsafe { libc::lseek(fd, pos, libc::SEEK_HOLE) };
        if hole < 0 || hole >= len {
            return;
        }
        // SAFETY: as above.
        let data = unsafe { libc::lseek(fd, hole, libc::SEEK_DATA) };
        let end = if data < 0 { len } else { data.min(len) };
        let (a, b) = ((hole + page - 1) / page * page, end / page * page);
        if a < b {
            // SAFETY: [a, b) lies inside our read-only mapping, which nothing
            // borrows yet; MAP_FIXED replaces those pages with private zero
            // pages, which is what the file holds there.
            let r = unsafe {
                libc::mmap(
                    map.as_ptr().add(a as usize) as *mut libc::c_void,
                    (b - a) as usize,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r == libc::MAP_FAILED {
                return;
            }
        }
        if end >= len {
            return;
        }
        pos = end;
    }
}

/// Guards the analyzer against a log file truncated while it is mapped.
///
/// Touching a page of a file mapping past the file's end raises SIGBUS, which
/// would kill memtrace. A process-wide SIGBUS handler (installed once, by the
/// first [`Log::open`]; the analyzer owns its signals) looks the faulting
/// address up among the registered log mappings: inside one, it maps
/// anonymous zero pages from the faulting page to the mapping's end
/// (`mmap` with `MAP_FIXED` is a system call, async-signal-safe), sets that
/// mapping's *shrank* flag and returns, so the reader sees zeros (the end of
/// the data) and the [`Log`] turns the flag into [`Error::Shrank`]. Any other
/// SIGBUS goes to the action in place before (Rust's own handler, or the
/// default: the process dies of SIGBUS as it would have).
mod bus {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Mappings guarded at once; a log opened while all are taken is read
    /// unguarded (as before: a truncation then kills the process).
    const SLOTS: usize = 256;

    struct Slot {
        used: AtomicBool,
        start: AtomicUsize,
        len: AtomicUsize,
        shrank: AtomicBool,
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const FREE: Slot = Slot {
        used: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        shrank: AtomicBool::new(false),
    };
    static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

    /// The SIGBUS action before ours (set once, before ours is installed).
    struct Old(libc::sigaction);
    // SAFETY: a plain C struct written once before any reader can run and
    // never changed afterwards.
    unsafe impl Sync for Old {}
    // SAFETY: as above.
    unsafe impl Send for Old {}
    static OLD: OnceLock<Option<Old>> = OnceLock::new();

    /// Installs the handler (once per process); false if it could not be.
    fn install() -> bool {
        OLD.get_or_init(|| {
            // SAFETY: an all-zero sigaction is a valid value to fill in.
            let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
            new.sa_sigaction = handler as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: new.sa_mask is ours to initialize.
            unsafe { libc::sigemptyset(&mut new.sa_mask) };
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: reads the current action into `old`, changes nothing.
            if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
                return None;
            }
            // The old action must be readable by the handler before it can run.
            let saved = Old(old);
            // SAFETY: installs our handler; `handler` is async-signal-safe.
            if unsafe { libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) } != 0 {
                return None;
            }
            Some(saved)
        })
        .is_some()
    }

    /// A registered mapping; unregistered when dropped.
    pub struct Guard(usize);

    impl Guard {
        /// Registers `[start, start + len)`; `None` when no slot is free or
        /// the handler cannot be installed.
        pub fn new(start: usize, len: usize) -> Option<Guard> {
            if len == 0 || !install() {
                return None;
            }
            for (i, s) in TABLE.iter().enumerate() {
                if s.used
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    s.shrank.store(false, Ordering::Release);
                    s.len.store(0, Ordering::Release);
                    s.start.store(start, Ordering::Release);
                    s.len.store(len, Ordering::Release);
                    return Some(Guard(i));
                }
            }
            None
        }

        /// Whether a read past the file's end was caught in this mapping.
        pub fn shrank(&self) -> bool {
            TABLE[self.0].shrank.load(Ordering::Acquire)
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let s = &TABLE[self.0];
            s.len.store(0, Ordering::Release);
            s.start.store(0, Ordering::Release);
            s.used.store(false, Ordering::Release);
        }
    }

    /// The SIGBUS handler: async-signal-safe (atomics, `mmap`, `sigaction`,
    /// `raise`), allocates nothing, cannot panic.
    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        // Only a fault the kernel raised (si_code > 0) has a faulting address.
        if code > 0 {
            let page = super::page_size();
            for s in &TABLE {
                let len = s.len.load(Ordering::Acquire);
                let start = s.start.load(Ordering::Acquire);
                if len == 0 || addr < start || addr - start >= len {
                    continue;
                }
                let from = addr - addr % page;
                let end = start + len;
                // SAFETY: [from, end) lies inside a registered read-only log
                // mapping, which its Log keeps alive while a reader can fault
                // in it; MAP_FIXED replaces those pages with private zero
                // pages, so the faulting read is retried and sees zeros.
                let r = unsafe {
                    libc::mmap(
                        from as *mut libc::c_void,
                        end - from,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if r != libc::MAP_FAILED {
                    s.shrank.store(true, Ordering::Release);
                    return;
                }
                break;
            }
        }
        // Not ours: hand it to the action in place before, as if we had
        // never been installed.
        let old = match OLD.get() {
            Some(Some(o)) => &o.0,
            _ => std::ptr::null(),
        };
        if !old.is_null() {
            // SAFETY: `old` points to the saved action, valid for the
            // process's lifetime.
            let (act, flags) = unsafe { ((*old).sa_sigaction, (*old).sa_flags) };
            if act != libc::SIG_DFL && act != libc::SIG_IGN {
                if flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: the previous handler was installed with
                    // SA_SIGINFO, so it takes these three arguments.
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        unsafe { std::mem::transmute(act) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: a handler installed without SA_SIGINFO takes the signal number.
                    let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(act) };
                    f(sig);
                }
                return;
            }
        }
        // The default action: restore it and let the signal take effect (a
        // fault recurs when the instruction is retried; a sent signal is
        // raised again, delivered once this handler returns).
        // SAFETY: an all-zero sigaction with SIG_DFL is the default action.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: sigaction and raise are async-signal-safe.
        unsafe {
            libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            if code <= 0 {
                libc::raise(libc::SIGBUS);
            }
        }
    }
}

/// An opened, mapped log file (or bytes already in memory).
pub struct Log {
    path: PathBuf,
    /// Catches reads past the end of a file truncated under us (see
    /// [`bus`]); dropped before the mapping it guards.
    bus: Option<bus::Guard>,
    data: Data,
}

enum Data {
    /// A read-only shared mapping of the file; consumed windows are dropped
    /// from the process's page tables (see [`Log::release`]).
    Map(Mmap),
    /// Bytes handed over by the caller (tests, fuzzing).
    Owned(Box<[u8]>),
}

/// Bytes decoded from a stream before its consumed pages are released.
const RELEASE_WINDOW: usize = 256 * 1024;
/// The merge keeps every stream's window resident at once: the windows of
/// all streams together stay under this many bytes.
const RELEASE_BUDGET: usize = 8 << 20;
/// With more streams than this, the merge releases the whole mapping each
/// time records spanning [`SWEEP_PAGES`] pages have been decoded, instead: it
/// holds one decoded record per stream, so otherwise a page per stream would
/// stay resident (a whole file of small chunks, each its own stream).
const SWEEP_STREAMS: usize = 1024;
/// See [`SWEEP_STREAMS`]: at most this many pages (and the few of the
/// record being decoded) are resident between sweeps.
const SWEEP_PAGES: usize = 4096;

impl Log {
    /// Opens and maps `path`; checks only that it is a non-empty regular file.
    pub fn open(path: &Path) -> Result<Log> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::NotAFile {
                path: path.to_owned(),
            });
        }
        if meta.len() == 0 {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        // SAFETY: the mapping is read-only and private to this process. The
        // file may still be written by a live target; the decoder checks
        // every length against the bytes present and treats the contents as
        // hostile, so a concurrently changing byte yields a decode error or
        // a torn record, never an out-of-bounds access.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        // Each pass reads every stream front to back: ask for read-ahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        cover_holes(&file, &map);
        Ok(Log {
            path: path.to_owned(),
            bus: bus::Guard::new(map.as_ptr() as usize, map.len()),
            data: Data::Map(map),
        })
    }

    /// Wraps bytes already in memory (tests, fuzzing): `path` only names the log in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Log {
        Log {
            path: path.to_owned(),
            bus: None,
            data: Data::Owned(bytes.into()),
        }
    }

    /// Whether the file was found shorter than its mapping while it was being
    /// read (truncated by another process): what was read past its new end
    /// was zeros, so nothing decoded from this log can be trusted.
    pub fn shrank(&self) -> bool {
        self.bus.as_ref().is_some_and(bus::Guard::shrank)
    }

    /// `r`, or [`Error::Shrank`] if the file shrank while it was being read
    /// (whatever was decoded from the zeros, error or not, is void).
    pub fn checked<T>(&self, r: Result<T>) -> Result<T> {
        if self.shrank() {
            return Err(Error::Shrank {
                path: self.path.clone(),
            });
        }
        r
    }

    /// Tells the kernel that the file's bytes in `[start, end)` will not be
    /// read again soon, so their pages leave this process's resident set
    /// (file-backed pages of a mapping count in RSS until then). The bytes stay
    /// valid: a later read faults them in again from the page cache. Only whole
    /// pages inside the range are released. No-op for in-memory logs.
    pub fn release(&self, start: usize, end: usize) {
        let Data::Map(map) = &self.data else {
            return;
        };
        let page = page_size();
        let end = end.min(map.len());
        let start = start.next_multiple_of(page);
        let end = end - end % page;
        if start >= end {
            return;
        }
        // SAFETY: the range lies inside the mapping. MADV_DONTNEED on a shared
        // file mapping only drops the page-table entries: the contents are
        // read again from the file on the next access, so references into the
        // mapping stay valid and see the same bytes.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }

    /// The path the log was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Map(m) => m,
            Data::Owned(b) => b,
        }
    }

    /// Whether this is a packed log (see [`crate::pack`]).
    pub fn is_packed(&self) -> bool {
        packed::is_packed(self.bytes())
    }

    /// Parses the file header (of a packed log: the raw log's, kept inside).
    pub fn header(&self) -> Result<Header<'_>> {
        let bytes = if self.is_packed() {
            packed::header_page(self.bytes())
        } else {
            self.bytes()
        };
        let r = Header::parse(bytes).map_err(|err| Error::Header {
            path: self.path.clone(),
            err,
        });
        self.checked(r)
    }

    /// Walks the chunk headers and groups the chunks by stream.
    pub fn index(&self, header: &Header<'_>) -> Result<Index> {
        let r = self.index_unchecked(header);
        self.checked(r)
    }

    fn index_unchecked(&self, header: &Header<'_>) -> Result<Index> {
        if self.is_packed() {
            return packed::index(&self.path, self.bytes());
        }
        let mut it = ChunkIter::new(self.bytes(), header.reserved_end);
        let mut streams: Vec<StreamChunks> = Vec::new();
        let mut by_id = std::collections::HashMap::new();
        let file_len = self.bytes().len() as u64;
        // Where the next chunk header is expected, to name a bad one's offset:
        // ChunkIter skips one CHUNK_ALIGN per empty slot.
        let mut next_offset = memtrace_format::HEADER_SIZE as u64;
        let mut empty_before = 0;
        // Chunk headers are read once: release their pages as the walk goes on.
        let mut released = 0usize;
        loop {
            let pos = it.position();
            if pos.saturating_sub(released) >= RELEASE_WINDOW {
                self.release(released, pos);
                released = pos;
            }
            let chunk = match it.step() {
                Step::Chunk(c) => c,
                Step::Empty => continue,
                Step::End => break,
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(err) => {
                    let offset = next_offset
                        + (it.empty_slots - empty_before) * memtrace_format::CHUNK_ALIGN as u64;
                    return Err(Error::Chunk {
                        path: self.path.clone(),
                        offset,
                        err,
                    });
                }
            };
            next_offset = chunk.offset + chunk.header.size as u64;
            empty_before = it.empty_slots;
            let h = chunk.header;
            let start = chunk.offset as usize + CHUNK_HEADER_SIZE;
            let r = ChunkRef {
                offset: chunk.offset,
                body: (start, start + chunk.body.len()),
                base_time: h.base_time,
                seq: h.seq,
                cut: chunk.offset + h.size as u64 > file_len,
            };
            let idx = *by_id.entry(h.stream).or_insert_with(|| {
                streams.push(StreamChunks {
                    id: h.stream,
                    tid: h.tid,
                    chunks: Vec::new(),
                });
                streams.len() - 1
            });
            streams[idx].chunks.push(r);
        }
        self.release(released, self.bytes().len());
        for s in &mut streams {
            // Stable: file order where seq ties (it never does in a good log).
            s.chunks.sort_by_key(|c| c.seq);
        }
        Ok(Index {
            streams,
            empty_slots: it.empty_slots,
            truncated: it.truncated,
            packed: None,
        })
    }

    /// Merges all streams of `index` by time (a packed log's events come
    /// merged already).
    pub fn merge<'a>(&'a self, index: &'a Index) -> Merge<'a> {
        let events = match &index.packed {
            Some(p) => match packed::Events::new(self, index, p) {
                Ok(ev) => Events::Packed(Box::new(ev), p.cut_records),
                Err(e) => Events::Failed(Some(e)),
            },
            None => Events::Raw(RawMerge::new(self, index)),
        };
        Merge {
            log: self,
            events,
            done: false,
        }
    }
}

/// Where one chunk's records are.
#[derive(Clone, Copy, Debug)]
pub struct ChunkRef {
    /// File offset of the chunk header.
    pub offset: u64,
    /// File range of the records area, clamped to the file.
    pub body: (usize, usize),
    /// Time base of the chunk's first record.
    pub base_time: u64,
    /// Index of the chunk within its stream.
    pub seq: u32,
    /// The chunk extends past the end of the file (truncated log).
    pub cut: bool,
}

/// The chunks of one stream, in stream order.
#[derive(Clone, Debug)]
pub struct StreamChunks {
    /// The stream id from the chunk headers.
    pub id: u32,
    /// The thread that wrote the stream's first chunk.
    pub tid: u32,
    /// Chunks sorted by `seq`.
    pub chunks: Vec<ChunkRef>,
}

/// All chunks of a log, by stream.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Streams in order of their first chunk in the file.
    pub streams: Vec<StreamChunks>,
    /// Chunk slots reserved but never written.
    pub empty_slots: u64,
    /// The file ends before the header's `reserved_end`.
    pub truncated: bool,
    /// A packed log's sections (its streams have no chunks).
    pub packed: Option<Box<packed::Sections>>,
}

/// One record in merged order.
#[derive(Clone)]
pub struct Event<'a> {
    /// When it happened (for a REALLOC: `time` or `time_after`, see `realloc_end`).
    pub time: u64,
    /// Index of the stream in [`Index::streams`].
    pub stream: usize,
    /// File offset of the chunk the record is in.
    pub chunk_offset: u64,
    /// The record.
    pub record: Record<'a>,
    /// For a REALLOC: false for its first appearance (release of the old
    /// block), true for its second (the new block). Always false otherwise.
    pub realloc_end: bool,
}

/// Decodes one stream lazily.
struct Cursor<'a> {
    stream: usize,
    next_chunk: usize,
    records: Option<(RecordIter<'a>, ChunkRef)>,
    pending: Option<Event<'a>>,
    /// File offset up to which the current chunk's pages were released.
    released: usize,
    /// Bytes consumed before they are released.
    window: usize,
    /// Bytes of the record decoded last.
    last_len: usize,
}

impl<'a> Cursor<'a> {
    fn advance(
        &mut self,
        log: &'a Log,
        index: &Index,
        cut_records: &mut u64,
    ) -> Result<Option<Event<'a>>> {
        if let Some(ev) = self.pending.take() {
            return Ok(Some(ev));
        }
        let s = &index.streams[self.stream];
        loop {
            if let Some((it, chunk)) = &mut self.records {
                // Everything before the next record is consumed (a record
                // borrowed from there stays readable: released pages fault
                // back in).
                let (start, chunk_end) = (chunk.body.0 + it.offset(), chunk.body.1);
                let next = it.next();
                self.last_len = chunk.body.0 + it.offset() - start;
                if next.is_none() || matches!(next, Some(Err(_))) {
                    log.release(self.released, chunk_end);
                    self.released = chunk_end;
                } else {
                    let (released, upto) = (self.released, start);
                    if upto.saturating_sub(released) >= self.window {
                        log.release(released, upto);
                        self.released = upto;
                    }
                }
                match next {
                    Some(Ok(record)) => {
                        let time = record.time().unwrap_or_else(|| it.time());
                        if let Record::Realloc { time_after, .. } = record {
                            self.pending = Some(Event {
                                time: time_after,
                                stream: self.stream,
                                chunk_offset: chunk.offset,
                                record: record.clone(),
                                realloc_end: true,
                            });
                        }
                        return Ok(Some(Event {
                            time,
                            stream: self.stream,
                            chunk_offset: chunk.offset,
                            record,
                            realloc_end: false,
                        }));
                    }
                    Some(Err(err)) => {
                        if chunk.cut {
                            // The file ends inside this record: truncation, not damage.
                            *cut_records += 1;
                            self.records = None;
                            self.next_chunk = s.chunks.len();
                            return Ok(None);
                        }
                        return Err(record_error(log, s.id, chunk.offset, err));
                    }
                    None => self.records = None,
                }
            }
            let Some(chunk) = s.chunks.get(self.next_chunk) else {
                return Ok(None);
            };
            self.next_chunk += 1;
            self.released = chunk.offset as usize;
            let body = &log.bytes()[chunk.body.0..chunk.body.1];
            self.records = Some((RecordIter::new(body, chunk.base_time), *chunk));
        }
    }
}

fn record_error(log: &Log, stream: u32, offset: u64, err: DecodeError) -> Error {
    Error::Record {
        path: log.path().to_owned(),
        stream,
        offset,
        err,
    }
}

/// Events handed from the decoding thread to the consumer at a time.
const BATCH: usize = 4096;
/// Logs smaller than this are decoded on the caller's thread.
const INLINE_BELOW: usize = 1 << 20;

/// Calls `each` on every event of the log in merged order, decoding (and
/// merging) on a thread of its own a few batches ahead, so that decoding and
/// the caller's work overlap on two cores. Returns the records cut short by
/// the end of a truncated file. The first error, from either side, ends it.
pub fn for_each_event<'a>(
    log: &'a Log,
    index: &'a Index,
    mut each: impl FnMut(&Event<'a>) -> Result<()>,
) -> Result<u64> {
    // A small log is not worth a thread.
    if log.bytes().len() < INLINE_BELOW {
        let mut merge = log.merge(index);
        for ev in merge.by_ref() {
            each(&ev?)?;
        }
        return Ok(merge.cut_records());
    }
    std::thread::scope(|s| -> Result<u64> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Event<'a>>>>(4);
        let (back, spare) = std::sync::mpsc::channel::<Vec<Event<'a>>>();
        let producer = s.spawn(move || {
            let mut merge = log.merge(index);
            let mut batch = Vec::with_capacity(BATCH);
            for ev in merge.by_ref() {
                match ev {
                    Ok(ev) => {
                        batch.push(ev);
                        if batch.len() == BATCH {
                            let next = spare
                                .try_recv()
                                .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                            if tx.send(Ok(std::mem::replace(&mut batch, next))).is_err() {
                                return 0;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return 0;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch));
            }
            merge.cut_records()
        });
        for batch in rx {
            let mut batch = batch?;
            for ev in &batch {
                each(ev)?;
            }
            batch.clear();
            let _ = back.send(batch);
        }
        Ok(producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Every event of a log in merged order: a raw log's streams merged by
/// time, or a packed log's events as stored. Its last item is an error if
/// the file shrank while it was read ([`Log::checked`]).
pub struct Merge<'a> {
    log: &'a Log,
    events: Events<'a>,
    done: bool,
}

enum Events<'a> {
    Raw(RawMerge<'a>),
    /// The events and the records the packer found cut short.
    Packed(Box<packed::Events<'a>>, u64),
    /// The packed events could not be opened: yields this error once.
    Failed(Option<Error>),
}

impl Merge<'_> {
    /// Records cut short by the end of a truncated file (final once the
    /// iterator is exhausted).
    pub fn cut_records(&self) -> u64 {
        match &self.events {
            Events::Raw(m) => m.cut_records,
            Events::Packed(_, n) => *n,
            Events::Failed(_) => 0,
        }
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = Result<Event<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match &mut self.events {
            Events::Raw(m) => m.next(),
            Events::Packed(e, _) => e.next(),
            Events::Failed(e) => e.take().map(Err),
        };
        match next {
            Some(Ok(ev)) => Some(Ok(ev)),
            // The end, or an error: either may come from the zeros that
            // replaced a truncated file's pages.
            end => {
                self.done = true;
                match self.log.checked(Ok(())) {
                    Err(e) => Some(Err(e)),
                    Ok(()) => end,
                }
            }
        }
    }
}

/// A k-way merge of all streams by time; yields every record, timeless ones included.
pub struct RawMerge<'a> {
    log: &'a Log,
    index: &'a Index,
    cursors: Vec<Cursor<'a>>,
    heads: Vec<Option<Event<'a>>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The stream whose head is known to come first without asking the heap
    /// (it was just taken and its next event is not later than the heap's
    /// top): a single thread's log, or a run of one thread's events, never
    /// touches the heap.
    hot: Option<usize>,
    started: bool,
    failed: bool,
    /// Pages left to decode before the next sweep of the whole mapping
    /// (`None`: few streams, each releases its own pages; see [`SWEEP_STREAMS`]).
    sweep: Option<usize>,
    /// Records cut short by the end of a truncated file.
    pub cut_records: u64,
}

impl<'a> RawMerge<'a> {
    fn new(log: &'a Log, index: &'a Index) -> Self {
        let n = index.streams.len();
        let window = (RELEASE_BUDGET / n.max(1)).clamp(page_size(), RELEASE_WINDOW);
        RawMerge {
            log,
            index,
            cursors: (0..n)
                .map(|stream| Cursor {
                    stream,
                    next_chunk: 0,
                    records: None,
                    pending: None,
                    released: 0,
                    window,
                    last_len: 0,
                })
                .collect(),
            heads: (0..n).map(|_| None).collect(),
            heap: BinaryHeap::with_capacity(n),
            hot: None,
            started: false,
            failed: false,
            sweep: (n > SWEEP_STREAMS).then_some(SWEEP_PAGES),
            cut_records: 0,
        }
    }

    fn fill(&mut self, i: usize) -> Result<()> {
        let ev = self.cursors[i].advance(self.log, self.index, &mut self.cut_records)?;
        // Count the pages the record touched (at least one) towards the next sweep.
        if let Some(left) = &mut self.sweep {
            let pages = self.cursors[i].last_len.div_ceil(page_size()) + 1;
            *left = left.saturating_sub(pages);
            if *left == 0 {
                *left = SWEEP_PAGES;
                self.log.release(0, usize::MAX);
            }
        }
        self.heads[i] = ev;
        Ok(())
    }

    /// Queues stream `i`'s head: as the hot stream if it comes no later than
    /// every other head, else in the heap.
    fn queue(&mut self, i: usize, hot_ok: bool) {
        if let Some(ev) = &self.heads[i] {
            match self.heap.peek() {
                Some(Reverse((t, _))) if !hot_ok || *t < ev.time => {
                    self.heap.push(Reverse((ev.time, i)))
                }
                _ if hot_ok => self.hot = Some(i),
                _ => self.heap.push(Reverse((ev.time, i))),
            }
        }
    }
}

impl<'a> Iterator for RawMerge<'a> {
    type Item = Result<Event<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            for i in 0..self.cursors.len() {
                if let Err(e) = self.fill(i) {
                    self.failed = true;
                    return Some(Err(e));
                }
                self.queue(i, false);
            }
        }
        let i = match self.hot.take() {
            Some(i) => i,
            None => self.heap.pop()?.0.1,
        };
        let ev = self.heads[i]
            .take()
            .expect("a queued stream always has a head");
        if let Err(e) = self.fill(i) {
            self.failed = true;
            return Some(Err(e));
        }
        self.queue(i, true);
        Some(Ok(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::*;

    fn times(log: &Log) -> Vec<(u64, usize, bool)> {
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        log.merge(&idx)
            .map(|e| e.unwrap())
            .filter(|e| e.record.time().is_some())
            .map(|e| (e.time - T0, e.stream, e.realloc_end))
            .collect()
    }

    /// Streams are merged by time; each stream keeps its file order; a realloc appears at both of its times.
    #[test]
    fn merge_orders_streams_by_time() {
        let mut b = LogBuilder::new();
        let mut c0 = LogBuilder::chunk(T0);
        c0.alloc(T0 + 1, 0x10, 1, 0).alloc(T0 + 5, 0x20, 1, 0);
        let mut c1 = LogBuilder::chunk(T0);
        c1.alloc(T0 + 2, 0x30, 1, 0)
            .realloc(T0 + 3, T0 + 7, 0x30, 0x40, 2, 0);
        let mut c2 = LogBuilder::chunk(T0 + 8);
        c2.free(T0 + 9, 0x10);
        b.push(0, &c0).push(1, &c1).push(0, &c2);
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
        assert_eq!(
            times(&log),
            vec![
                (1, 0, false),
                (2, 1, false),
                (3, 1, false),
                (5, 0, false),
                (7, 1, true),
                (9, 0, false)
            ]
        );
    }

    /// A chunk whose seq says it comes first is read first even if it lies later in the file.
    #[test]
    fn chunks_follow_seq() {
        let mut b = LogBuilder::new();
        let mut first = LogBuilder::chunk(T0);
        first.alloc(T0 + 1, 0x10, 1, 0);
        let mut second = LogBuilder::chunk(T0 + 2);
        second.alloc(T0 + 3, 0x20, 1, 0);
        b.push(0, &first).push(0, &second);
        // Swap the two chunks in the file.
        let (a, rest) = b.bytes.split_at(4096 + 4096);
        let mut swapped = a[..4096].to_vec();
        swapped.extend_from_slice(rest);
        swapped.extend_from_slice(&a[4096..]);
        let log = Log::from_bytes(Path::new("t.mtr"), &swapped);
        assert_eq!(times(&log), vec![(1, 0, false), (3, 0, false)]);
    }

    /// Empty slots are counted and skipped; a garbage chunk header is an error naming the file.
    #[test]
    fn empty_slots_and_bad_chunks() {
        let mut b = LogBuilder::new();
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, 1, 0);
        b.empty_slot().push(0, &c);
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        assert_eq!(idx.empty_slots, 1);
        assert_eq!(log.merge(&idx).count(), 1);

        b.bytes[4096] = b'X';
        let log = Log::from_bytes(Path::new("bad.mtr"), &b.bytes);
        let h = log.header().unwrap();
        let err = log.index(&h).unwrap_err().to_string();
        assert!(
            err.contains("bad.mtr") && err.contains("corrupt chunk"),
            "{err}"
        );
    }

    /// A corrupt record in an intact chunk is an error; the same damage at a truncated end is not.
    #[test]
    fn corrupt_record_vs_truncation() {
        let mut b = LogBuilder::new();
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, 1, 0);
        let n = c.body.len();
        c.alloc(T0 + 2, 0x20, 1, 0);
        b.push(0, &c);
        let mut bad = b.bytes.clone();
        // Second record's length points past the chunk.
        let o = 4096 + CHUNK_HEADER_SIZE + n;
        bad[o..o + 2].copy_from_slice(&60000u16.to_le_bytes());
        let log = Log::from_bytes(Path::new("c.mtr"), &bad);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let err = log.merge(&idx).find_map(|e| e.err()).expect("an error");
        assert!(err.to_string().contains("corrupt record"), "{err}");

        // Cut the file in the middle of the second record.
        let cut = &b.bytes[..o + 5];
        let log = Log::from_bytes(Path::new("t.mtr"), cut);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        assert!(idx.truncated);
        let mut m = log.merge(&idx);
        assert_eq!(m.by_ref().collect::<Result<Vec<_>>>().unwrap().len(), 1);
        assert_eq!(m.cut_records(), 1);
    }

    /// A stream longer than the release window read from a real file: the
    /// consumed pages are released as it goes and every record still comes out.
    #[test]
    fn releases_consumed_pages_of_a_mapped_file() {
        let mut b = LogBuilder::new();
        let mut n = 0;
        for k in 0..3 {
            let mut c = LogBuilder::chunk(T0 + k * 1_000_000);
            for i in 0..40_000u64 {
                c.alloc(T0 + k * 1_000_000 + i, 0x1000 + i * 16, 8, 1);
                n += 1;
            }
            b.push(0, &c);
        }
        assert!(b.bytes.len() > 2 * RELEASE_WINDOW);
        let dir = std::env::temp_dir().join(format!("memtrace-log-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("big.mtr");
        std::fs::write(&p, &b.bytes).unwrap();
        let log = Log::open(&p).unwrap();
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        for _ in 0..2 {
            assert_eq!(log.merge(&idx).filter(|e| e.is_ok()).count(), n);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A log of three 40,000-record chunks written to `dir/name`.
    fn big_log_file(dir: &Path, name: &str) -> (PathBuf, usize) {
        let mut b = LogBuilder::new();
        let mut n = 0;
        for k in 0..3 {
            let mut c = LogBuilder::chunk(T0 + k * 1_000_000);
            for i in 0..40_000u64 {
                c.alloc(T0 + k * 1_000_000 + i, 0x1000 + i * 16, 8, 1);
                n += 1;
            }
            b.push(0, &c);
        }
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, &b.bytes).unwrap();
        (p, n)
    }

    fn shrank_message(p: &Path) -> String {
        format!(
            "{}: the file shrank while it was being read (truncated by another process)",
            p.display()
        )
    }

    /// A file truncated by another process after it was indexed: the pages
    /// past the new end would raise SIGBUS; the merge reads zeros instead and
    /// ends with the one-line error, and so does every later pass.
    #[test]
    fn truncated_while_merging_is_an_error_not_sigbus() {
        let dir = std::env::temp_dir().join(format!("memtrace-log-shrink-{}", std::process::id()));
        let (p, n) = big_log_file(&dir, "shrink.mtr");
        let log = Log::open(&p).unwrap();
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        assert!(!log.shrank());
        // The index walk released its pages: the merge faults them in again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(3 * 4096)
            .unwrap();
        let mut ok = 0;
        let mut errs = Vec::new();
        for ev in log.merge(&idx) {
            match ev {
                Ok(_) => ok += 1,
                Err(e) => errs.push(e.to_string()),
            }
        }
        assert_eq!(errs, vec![shrank_message(&p)]);
        assert!(
            ok < n,
            "{ok} of {n} records read from a file cut to 3 pages"
        );
        assert!(log.shrank());
        assert_eq!(log.index(&h).unwrap_err().to_string(), shrank_message(&p));
        // Another log opened afterwards is not affected.
        let (q, _) = big_log_file(&dir, "intact.mtr");
        let other = Log::open(&q).unwrap();
        let oh = other.header().unwrap();
        let oidx = other.index(&oh).unwrap();
        assert_eq!(other.merge(&oidx).filter(|e| e.is_ok()).count(), n);
        assert!(!other.shrank());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Truncated after it was opened, before anything was read: the whole
    /// pipeline (header, index, catalog, replays) ends with the one-line error.
    #[test]
    fn truncated_before_analysis_is_an_error_not_sigbus() {
        let dir = std::env::temp_dir().join(format!("memtrace-log-shrink2-{}", std::process::id()));
        let (p, _) = big_log_file(&dir, "shrink.mtr");
        let log = Log::open(&p).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(2 * 4096)
            .unwrap();
        let err = crate::report::analyze_log(
            &log,
            &crate::Options::default(),
            crate::analysis::symbolize::Symbolizer::disabled(),
        )
        .expect_err("an error");
        assert_eq!(err.to_string(), shrank_message(&p));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A SIGBUS outside every log mapping still kills the process, as it
    /// would without the handler: the test runs itself in a child that maps
    /// a file of its own, truncates it and reads past its end, once a log is
    /// open (the handler installed).
    #[test]
    fn foreign_sigbus_still_kills() {
        use std::os::unix::process::ExitStatusExt;
        let dir = std::env::temp_dir().join(format!("memtrace-log-foreign-{}", std::process::id()));
        if std::env::var_os("MEMTRACE_TEST_FOREIGN_SIGBUS").is_some() {
            let dir = PathBuf::from(std::env::var_os("MEMTRACE_TEST_FOREIGN_SIGBUS").unwrap());
            let (p, _) = big_log_file(&dir, "guarded.mtr");
            let log = Log::open(&p).unwrap();
            assert!(log.bus.is_some(), "the log is guarded");
            let q = dir.join("foreign");
            std::fs::write(&q, vec![1u8; 1 << 16]).unwrap();
            let f = File::open(&q).unwrap();
            // SAFETY: a read-only mapping of our own file; the read past
            // its new end is the SIGBUS under test.
            let map = unsafe { Mmap::map(&f) }.unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&q)
                .unwrap()
                .set_len(0)
                .unwrap();
            // SAFETY: inside the mapping; the page is gone from the file.
            let v = unsafe { std::ptr::read_volatile(map.as_ptr().add(8192)) };
            // Reached only if the handler swallowed the fault.
            std::process::exit(i32::from(v) + 50);
        }
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "log::tests::foreign_sigbus_still_kills",
                "--nocapture",
            ])
            .env("MEMTRACE_TEST_FOREIGN_SIGBUS", &dir)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGBUS),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// More streams than [`SWEEP_STREAMS`], interleaved record by record: the
    /// merge sweeps the mapping as it goes and still yields every record in
    /// time order.
    #[test]
    fn many_streams_sweep() {
        let n = SWEEP_STREAMS as u64 + 200;
        let mut b = LogBuilder::new();
        for s in 0..n {
            let mut c = LogBuilder::chunk(T0);
            for k in 0..20 {
                c.alloc(T0 + 1 + k * n + s, 0x1000 + (s * 20 + k) * 16, 8, 1);
            }
            b.push(s as u32, &c);
        }
        let dir = std::env::temp_dir().join(format!("memtrace-log-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("streams.mtr");
        std::fs::write(&p, &b.bytes).unwrap();
        let log = Log::open(&p).unwrap();
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let times: Vec<u64> = log.merge(&idx).map(|e| e.unwrap().time - T0).collect();
        assert_eq!(times, (1..=20 * n).collect::<Vec<_>>());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
