//! The shared-memory log: file creation, the header page, chunk reservation,
//! and per-thread streams.
//!
//! The log is a regular file mapped `MAP_SHARED`: whatever a thread has stored
//! into its chunk lives in the kernel's page cache and survives the death of
//! the process (crash, abort, SIGKILL). Each stream (one thread at one
//! signal-nesting level) owns one chunk at a time, reserved with a single
//! `fetch_add` on the header's `RESERVED_END`; records are appended to it with
//! plain stores, no lock and no atomic read-modify-write. A full chunk is
//! unmapped, so memory used inside the target is bounded by one chunk per live
//! stream. Chunk space is reserved with `fallocate`, so a full disk shows up
//! as a failed reservation (counted as lost events), never as SIGBUS.
//!
//! ## The descriptor is the program's as much as ours
//! The log's descriptor is moved to a high number at once (so that the
//! program's own `open` gets the numbers it expects), and it is checked
//! before every use: `fstat` must still name the log's device and inode. A
//! program that closed it (a daemon closing every descriptor, `close_range`)
//! or put a file of its own at its number (`dup2`) has it left alone: the
//! number is never used again, the log is opened again by its absolute path
//! (`LOG_FD_REPLACED` in the header), and what could not be recorded
//! meanwhile is counted as lost.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

use memtrace_format::hdr::{ChunkHeader, off};
use memtrace_format::{CHUNK_ALIGN, CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE};

use crate::sys;

mod create;
pub mod pool;

pub use create::open_log;

/// The log's file descriptor (-1: no log, or the program took it over).
static FD: AtomicU32 = AtomicU32::new(u32::MAX);
/// The log file's device and inode, to recognize its descriptor.
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);
/// Set while one thread opens the log again (the others lose their events).
static REOPENING: AtomicBool = AtomicBool::new(false);

const PATH_CAP: usize = 4096;
/// The log's absolute path, NUL-terminated (empty: unknown).
struct LogPath(UnsafeCell<[u8; PATH_CAP]>);
// SAFETY: written only by `open_log` (in the constructor, before any thread
// of ours runs, or in a single-threaded fork child) and read afterwards.
unsafe impl Sync for LogPath {}
static LOG_PATH: LogPath = LogPath(UnsafeCell::new([0; PATH_CAP]));
/// The mapped header page.
static HEADER: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
/// Set once the program unmapped or mapped over memory of ours: recording
/// has stopped and nothing of ours is unmapped any more.
static CLOBBERED: AtomicBool = AtomicBool::new(false);
/// Next stream id.
static NEXT_STREAM: AtomicU32 = AtomicU32::new(1);
/// Events lost while no log is available at all are not countable; with a
/// log they go to the header's EVENTS_LOST.
const FIRST_CHUNK: usize = 4 * 1024;
const MAX_CHUNK: usize = 1024 * 1024;

fn header_field<T>(o: usize) -> Option<&'static T> {
    let h = HEADER.load(Ordering::Acquire);
    if h.is_null() {
        return None;
    }
    // SAFETY: the header page stays mapped for the life of the process (it is
    // only replaced after fork, in the single-threaded child); `o` is one of
    // the aligned offsets from memtrace_format::hdr::off.
    Some(unsafe { &*(h.add(o) as *const T) })
}

/// Whether the program unmapped or mapped over memory of ours.
#[inline]
pub fn clobbered() -> bool {
    CLOBBERED.load(Ordering::Relaxed)
}

/// Called by the `munmap`, `mmap(MAP_FIXED)` and `mremap` hooks before the
/// program's call replaces `[addr, addr + len)`. If that holds the log's
/// header, the header is mapped again elsewhere first (the same page of the
/// file). If it holds a chunk or one of memtrace's tables, recording stops
/// for good (`MAPPING_CLOBBERED`): later events are counted as lost, and
/// nothing of ours is written to or unmapped again, since the range is the
/// program's now.
pub fn program_replaces(addr: usize, len: usize) {
    let h = HEADER.load(Ordering::Acquire) as usize;
    if len == 0 || h == 0 {
        return;
    }
    let end = addr.saturating_add(len);
    if h < end && addr < h + HEADER_SIZE {
        set_flags(memtrace_format::hdr::flag::MAPPING_CLOBBERED);
        let fd = FD.load(Ordering::Acquire);
        let again = if fd == u32::MAX || crate::sandbox::active() {
            None
        } else {
            sys::mmap(
                0,
                HEADER_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd as c_int,
                0,
            )
        };
        match again {
            Some(p) => HEADER.store(p, Ordering::Release),
            None => {
                // The old page is about to be the program's: never touch it.
                HEADER.store(core::ptr::null_mut(), Ordering::Release);
                stop();
            }
        }
    }
    if sys::own::overlaps(addr as u64, len as u64) {
        set_flags(memtrace_format::hdr::flag::MAPPING_CLOBBERED);
        stop();
    }
}

/// Stops recording for good (see [`program_replaces`]).
#[cold]
fn stop() {
    CLOBBERED.store(true, Ordering::Release);
    crate::thread::ENABLED.store(false, Ordering::Release);
}

/// Adds `n` to the header's lost-events counter.
pub fn count_lost(n: u64) {
    if let Some(a) = header_field::<AtomicU64>(off::EVENTS_LOST) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts a sampled block whose address could not be remembered.
pub fn count_sample_overflow() {
    if let Some(a) = header_field::<AtomicU32>(off::SAMPLE_OVERFLOW) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a hook entered while the same thread was already inside one.
pub fn count_nested() {
    if let Some(a) = header_field::<AtomicU32>(off::NESTED_HOOKS) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts hook levels a thread left without returning (see `thread::Guard::enter`).
pub fn count_abandoned(n: u32) {
    if let Some(a) = header_field::<AtomicU32>(off::ABANDONED_HOOKS) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// Sets the header's end state.
pub fn set_state(how: memtrace_format::ExitHow, status: i32) {
    if let Some(a) = header_field::<AtomicU32>(off::EXIT_STATUS) {
        a.store(status as u32, Ordering::Relaxed);
    }
    if let Some(a) = header_field::<AtomicU64>(off::END_MONO) {
        a.store(sys::now_ns(), Ordering::Relaxed);
    }
    if !crate::sandbox::active()
        && let Some(a) = header_field::<AtomicU64>(off::FINAL_BRK)
    {
        a.store(sys::current_brk(), Ordering::Relaxed);
    }
    if let Some(a) = header_field::<AtomicU32>(off::STATE) {
        a.store(how as u32, Ordering::Release);
    }
}

/// Counts one stack checked against the reference unwinder, and whether it differed.
pub fn count_unwind_check(mismatch: bool) {
    if let Some(a) = header_field::<AtomicU32>(off::UNWIND_CHECKED) {
        a.fetch_add(1, Ordering::Relaxed);
    }
    if mismatch && let Some(a) = header_field::<AtomicU32>(off::UNWIND_MISMATCHED) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sets bits in the header's FLAGS field.
pub fn set_flags(bits: u32) {
    if let Some(a) = header_field::<AtomicU32>(off::FLAGS) {
        a.fetch_or(bits, Ordering::Relaxed);
    }
}

/// Clears bits in the header's FLAGS field.
pub fn clear_flags(bits: u32) {
    if let Some(a) = header_field::<AtomicU32>(off::FLAGS) {
        a.fetch_and(!bits, Ordering::Relaxed);
    }
}

/// Whether the calling process is the one the log belongs to (false in a
/// `vfork` child, which shares our memory until it execs).
pub fn is_log_owner() -> bool {
    if crate::sandbox::active() {
        // No getpid under a filter; a vfork child of a sandboxed process is
        // the one case this gets wrong.
        return active();
    }
    match header_field::<AtomicU32>(off::PID) {
        Some(pid) => pid.load(Ordering::Relaxed) == sys::getpid(),
        None => false,
    }
}

/// When the log was opened (the header's monotonic start; 0 without a log).
pub fn started_ns() -> u64 {
    header_field::<AtomicU64>(off::START_MONO).map_or(0, |a| a.load(Ordering::Relaxed))
}

/// The address of the log's header mapping (the scanner finds the log's
/// path from it when the descriptor is gone).
pub fn header_addr() -> u64 {
    HEADER.load(Ordering::Acquire) as u64
}

/// Whether a log is open.
pub fn active() -> bool {
    !HEADER.load(Ordering::Acquire).is_null()
}

/// The device and inode of the file open at `fd`.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    fstat(fd).map(|st| (st.st_dev, st.st_ino))
}

/// `fstat` of `fd`.
fn fstat(fd: c_int) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into our own struct; a descriptor that
    // is not open fails with EBADF.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some(st)
}

/// The log file's device and inode (zeros if no log was opened).
pub fn log_identity() -> (u64, u64) {
    (DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed))
}

/// Stores the absolute path of the file open at `fd` (the kernel's name for
/// it, `/proc/self/fd/N`), for opening the log again.
fn remember_path(fd: c_int) {
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    sys::write_decimal(fd as u64, &mut link[14..24]);
    // SAFETY: see LogPath.
    let buf = unsafe { &mut *LOG_PATH.0.get() };
    let Ok(name) = core::ffi::CStr::from_bytes_until_nul(&link) else {
        return;
    };
    let len = sys::readlink(name, &mut buf[..PATH_CAP - 1]);
    buf[if len > 0 && buf[0] == b'/' { len } else { 0 }] = 0;
}

/// The highest number the log's descriptor is moved to. The kernel sizes a
/// process's descriptor table to its highest open descriptor, and every
/// fork copies it: at three quarters of a 1M limit (containers often have
/// one) that was an 8 MiB table per process, and at 15,000 (a 20,000 limit)
/// a 16,384-entry one, 2% of a process tree's time spent in `dup_fd`. At
/// 1,000 the table keeps the 1,024 entries of the default limit.
const HIGHEST_FD: c_int = 1000;

/// Moves `fd` to a number in the top quarter of the descriptor limit (at
/// least 10), but no higher than [`HIGHEST_FD`], where the program's own
/// `open`, `dup` and `socket` calls, which take the lowest free number, do
/// not meet it; keeps it where it is if that fails.
fn move_high(fd: c_int) -> c_int {
    let Some(cur) = sys::soft_limit(libc::RLIMIT_NOFILE).filter(|&c| c >= 16) else {
        return fd;
    };
    let cur = cur.min(1 << 20) as c_int;
    let min = (cur - cur / 4).clamp(10, HIGHEST_FD);
    if fd >= min {
        return fd;
    }
    // SAFETY: duplicating our own descriptor; the kernel picks a free number.
    let high = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, min) } as c_int;
    if high < 0 {
        return fd;
    }
    // SAFETY: closing the low number we opened ourselves a moment ago.
    unsafe { libc::syscall(libc::SYS_close, fd) };
    high
}

/// The log's descriptor, checked to be still the log's: the program may have
/// closed it or put a file of its own at its number. Then the number is
/// forgotten (never written through) and the log opened again by its path.
fn checked_fd() -> Option<c_int> {
    let fd = FD.load(Ordering::Acquire);
    if fd != u32::MAX && identity(fd as c_int) == Some(log_identity()) {
        return Some(fd as c_int);
    }
    if HEADER.load(Ordering::Acquire).is_null() || crate::sandbox::active() {
        return None;
    }
    reopen()
}

/// Opens the log again by its path after the program took its descriptor.
#[cold]
fn reopen() -> Option<c_int> {
    if REOPENING.swap(true, Ordering::AcqRel) {
        return None;
    }
    set_flags(memtrace_format::hdr::flag::LOG_FD_REPLACED);
    FD.store(u32::MAX, Ordering::Release);
    // SAFETY: see LogPath.
    let path = unsafe { &*LOG_PATH.0.get() };
    let mut got = None;
    if path[0] == b'/' {
        // SAFETY: `path` is NUL-terminated; openat does not retain it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        } as c_int;
        if fd >= 0 {
            if identity(fd) == Some(log_identity()) {
                let fd = move_high(fd);
                FD.store(fd as u32, Ordering::Release);
                got = Some(fd);
            } else {
                // Another file now has the log's name: not ours to write.
                // SAFETY: closing the descriptor we just opened.
                unsafe { libc::syscall(libc::SYS_close, fd) };
            }
        }
    }
    REOPENING.store(false, Ordering::Release);
    got
}

/// Forgets the inherited log after fork (the child must not write into the
/// parent's file) without touching its contents.
pub fn forget_log() {
    let h = HEADER.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !h.is_null() {
        sys::munmap_own(h, HEADER_SIZE);
    }
    let fd = FD.swap(u32::MAX, Ordering::AcqRel);
    // The number is closed only if it still holds the log: the program may
    // have put a file of its own there.
    if fd != u32::MAX && identity(fd as c_int) == Some(log_identity()) {
        // SAFETY: closing our own descriptor; nothing else uses it in the child.
        unsafe { libc::syscall(libc::SYS_close, fd as c_int) };
    }
}

fn sys_errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Whether a file may grow to `end` bytes under the process's file-size
/// limit (`RLIMIT_FSIZE`): growing past it would raise `SIGXFSZ`, which
/// kills a program that does not expect it. A failed query allows it.
fn within_file_size_limit(end: usize) -> bool {
    sys::soft_limit(libc::RLIMIT_FSIZE)
        .is_none_or(|cur| cur == libc::RLIM64_INFINITY || end as u64 <= cur)
}

/// Makes sure [off, off+len) of the file exists and has disk blocks.
fn extend(fd: c_int, off: usize, len: usize) -> bool {
    if !within_file_size_limit(off + len) {
        set_flags(memtrace_format::hdr::flag::FILE_SIZE_LIMIT);
        return false;
    }
    // SAFETY: fallocate on our own descriptor; it never shrinks the file.
    let r = unsafe { libc::syscall(libc::SYS_fallocate, fd, 0, off as i64, len as i64) };
    if r == 0 {
        return true;
    }
    let e = sys_errno();
    if e == libc::EOPNOTSUPP || e == libc::ENOSYS {
        // Filesystems without fallocate: writing the last byte extends the
        // file and never shrinks it (no space is reserved, though).
        let zero = 0u8;
        // SAFETY: pwrite of one byte we own into our own chunk's last byte.
        let w = unsafe {
            libc::syscall(
                libc::SYS_pwrite64,
                fd,
                &zero as *const u8,
                1usize,
                (off + len - 1) as i64,
            )
        };
        return w == 1;
    }
    false
}

/// Backs `size` bytes at the log's end and claims them: their file offset.
fn claim(fd: c_int, size: usize) -> Option<usize> {
    let end = header_field::<AtomicU64>(off::RESERVED_END)?;
    // Back the space first, then claim it: a failed reservation (disk
    // full) never advances RESERVED_END, so it leaves no hole in the file.
    // Losing the race only means our fallocate covered someone else's
    // chunk, which is harmless; try again at the new end.
    let mut at = end.load(Ordering::Acquire) as usize;
    loop {
        if !extend(fd, at, size) {
            return None;
        }
        match end.compare_exchange(
            at as u64,
            (at + size) as u64,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Some(at),
            Err(now) => at = now as usize,
        }
    }
}

/// Claims and maps `len` bytes at the log's end in one piece (the reserve
/// for sandboxed recording, see `crate::sandbox`): its address and offset.
pub fn reserve_region(len: usize) -> Option<(*mut u8, usize)> {
    let fd = checked_fd()?;
    let at = claim(fd, len)?;
    let p = sys::mmap(
        0,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
        at as i64,
    )?;
    sys::own::note(p as u64, len as u64);
    Some((p, at))
}

/// One stream's current chunk and encoding state.
pub struct Stream {
    chunk: *mut u8,
    /// The chunk is part of the sandbox reserve's mapping (never unmapped).
    carved: bool,
    /// File offset of the current chunk.
    file_off: usize,
    size: usize,
    pos: usize,
    seq: u32,
    id: u32,
    tid: u32,
    /// Time of the last timed record (delta base).
    pub last_time: u64,
    /// Events lost since the last successfully written record.
    lost: u64,
    /// Events to skip before trying to reserve again after a failure.
    backoff: u32,
    next_size: usize,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

impl Stream {
    /// An empty stream; its first record reserves a chunk.
    pub const fn new() -> Stream {
        Stream {
            chunk: core::ptr::null_mut(),
            carved: false,
            file_off: 0,
            size: 0,
            pos: 0,
            seq: 0,
            id: 0,
            tid: 0,
            last_time: 0,
            lost: 0,
            backoff: 0,
            next_size: FIRST_CHUNK,
        }
    }

    /// Releases the current chunk (its data stays in the file).
    pub fn close(&mut self) {
        if !self.chunk.is_null() {
            if !self.carved {
                sys::own::forget(self.chunk as u64);
                if !clobbered() {
                    sys::munmap_own(self.chunk, self.size);
                }
            }
            self.chunk = core::ptr::null_mut();
        }
    }

    /// Releases the current chunk at thread exit and gives the disk blocks of
    /// its unused tail back (the file keeps its size; the tail reads as zeros,
    /// which is the end-of-data marker).
    pub fn close_and_trim(&mut self) {
        if self.chunk.is_null() {
            return;
        }
        let used = self.pos.next_multiple_of(CHUNK_ALIGN);
        let fd = if crate::sandbox::active() {
            None
        } else {
            checked_fd()
        };
        if let (true, Some(fd)) = (used < self.size, fd) {
            let at = self.file_off + used;
            // SAFETY: punching a hole in the unused tail of our own chunk; no
            // other stream owns these bytes.
            unsafe {
                libc::syscall(
                    libc::SYS_fallocate,
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    at as i64,
                    (self.size - used) as i64,
                )
            };
        }
        self.close();
    }

    /// Drops the chunk pointer without unmapping (used in a fork child, whose
    /// mapping of the parent's chunk is released separately).
    pub fn reset(&mut self) {
        self.close();
        *self = Stream::new();
    }

    fn reserve(&mut self, need: usize) -> bool {
        self.close();
        let mut size = self.next_size;
        while size < need + CHUNK_HEADER_SIZE {
            size *= 2;
        }
        let size = size.next_multiple_of(CHUNK_ALIGN);
        let (chunk, at, carved) = if crate::sandbox::active() {
            let Some((p, at)) = crate::sandbox::carve(size) else {
                return false;
            };
            (p, at, true)
        } else {
            let Some(fd) = checked_fd() else {
                return false;
            };
            let Some(at) = claim(fd, size) else {
                return false;
            };
            let map = sys::mmap(
                0,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                at as i64,
            );
            let Some(chunk) = map else {
                // The slot stays reserved and reads as empty.
                return false;
            };
            sys::own::note(chunk as u64, size as u64);
            populate_for_writing(chunk, size);
            (chunk, at, false)
        };
        if self.id == 0 {
            self.id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
            // No gettid under a filter: the thread is known by its stream.
            self.tid = if carved { 0 } else { sys::gettid() };
        }
        let h = ChunkHeader {
            size: size as u32,
            stream: self.id,
            tid: self.tid,
            seq: self.seq,
            base_time: self.last_time,
        };
        let mut bytes = [0u8; CHUNK_HEADER_SIZE];
        h.encode_without_magic(&mut bytes);
        // SAFETY: `chunk` is a fresh writable mapping of `size` >= CHUNK_HEADER_SIZE bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(4),
                chunk.add(4),
                CHUNK_HEADER_SIZE - 4,
            );
            (*(chunk as *const AtomicU32)).store(CHUNK_MAGIC, Ordering::Release);
        }
        self.chunk = chunk;
        self.carved = carved;
        self.file_off = at;
        self.size = size;
        self.pos = CHUNK_HEADER_SIZE;
        self.seq += 1;
        self.next_size = (size * 2).min(MAX_CHUNK);
        true
    }

    /// Appends one event record (`rec[2]` is its tag, `time` the absolute
    /// time its delta was computed for). On failure the event is counted as
    /// lost, in the header at once and in a LOST record once writing works again.
    pub fn write(&mut self, rec: &[u8], time: Option<u64>) -> bool {
        if !self.define(rec, time) {
            self.lose();
            return false;
        }
        true
    }

    /// Appends a record that is not an event by itself (a STACK or MODULE
    /// definition): on failure nothing is counted; the caller decides.
    pub fn define(&mut self, rec: &[u8], time: Option<u64>) -> bool {
        if self.lost > 0 && !self.flush_lost() {
            return false;
        }
        if !self.put(rec) {
            return false;
        }
        if let Some(t) = time {
            self.last_time = t;
        }
        true
    }

    /// Counts one event that could not be recorded.
    pub fn lose(&mut self) {
        self.lost += 1;
        count_lost(1);
    }

    /// Writes the pending LOST record, stamped with the previous record's time
    /// (so the deltas the caller already encoded stay valid).
    fn flush_lost(&mut self) -> bool {
        if self.backoff > 0 {
            self.backoff -= 1;
            return false;
        }
        let mut buf = [0u8; 32];
        let Some(n) = memtrace_format::encode::lost(&mut buf, 0, self.lost) else {
            return false;
        };
        if self.put(&buf[..n]) {
            self.lost = 0;
            true
        } else {
            false
        }
    }

    fn put(&mut self, rec: &[u8]) -> bool {
        let len = rec.len();
        if len < 3 {
            return false;
        }
        if (self.chunk.is_null() || self.pos + len > self.size) && !self.reserve(len) {
            self.backoff = 1024;
            return false;
        }
        // SAFETY: [pos, pos+len) lies inside our exclusively owned chunk
        // mapping; the tag byte is published last with a release store so a
        // reader never sees a tagged record with an unwritten payload.
        unsafe {
            let dst = self.chunk.add(self.pos);
            core::ptr::copy_nonoverlapping(rec.as_ptr(), dst, 2);
            core::ptr::copy_nonoverlapping(rec.as_ptr().add(3), dst.add(3), len - 3);
            (*(dst.add(2) as *const AtomicU8)).store(rec[2], Ordering::Release);
        }
        self.pos += len;
        true
    }
}

/// Maps the pages of a fresh chunk writable and dirty in one system call
/// (`MADV_POPULATE_WRITE`, Linux 5.14). `MAP_POPULATE` maps a shared file's
/// pages read-only, so each page's first record took a write fault of its
/// own: 27,000 faults, 15% of a churn of 8M events (the samples on the
/// store that writes a record). On an older kernel the advice is refused
/// (EINVAL) and the pages fault one by one, as before. Not under a seccomp
/// filter: a chunk then comes from the reserve mapped before it.
fn populate_for_writing(chunk: *mut u8, size: usize) {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // SAFETY: `chunk` is our own fresh mapping of `size` bytes; the advice
    // only faults its pages in (an error leaves it as it was).
    unsafe { libc::madvise(chunk as *mut libc::c_void, size, MADV_POPULATE_WRITE) };
}

/// The log's file descriptor, if a log is open and the descriptor is still
/// the log's.
pub fn log_fd() -> Option<c_int> {
    checked_fd()
}
