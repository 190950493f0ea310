//! # memtrace-format: the log's byte layout, shared by the writer and the reader
//!
//! The preload (`libmemtrace.so`) encodes records with this crate inside the
//! traced process; the analyzer decodes them. Keeping the format in one small
//! `no_std` crate without dependencies means the analyzer never links the
//! preload's exported `malloc`, and the two sides cannot drift apart.
//!
//! ## Design constraints
//! - **Encoding runs on the target's allocation hot path**: no allocation, no
//!   panics on any input (every write is bounds-checked and reports overflow by
//!   returning `None`), no formatting.
//! - **Decoding treats every byte as hostile**: every length and count is
//!   checked against the bytes actually present; errors are small `Copy` values.
//! - **A log is readable at any instant**, including after the target was
//!   killed mid-write: see "Torn writes" below.
//!
//! ## File layout (all integers little-endian)
//! ```text
//! [0, 4096)            Header (fixed offsets, see `hdr`)
//! [4096, reserved_end) chunks; each starts at a multiple of CHUNK_ALIGN and is
//!                      CHUNK_ALIGN * k bytes long. A chunk belongs to one
//!                      *stream* (one thread at one signal-nesting level), and a
//!                      stream's chunks appear in file order.
//! ```
//! Chunk: a 32-byte [`ChunkHeader`] then records. A record is
//! `[len: u16][tag: u8][payload: len - 3 bytes]`. `len == 0` ends the chunk's
//! data (the rest is zero). The writer stores `len` and the payload first and
//! the tag last, so a record whose tag is still 0 was torn by the death of the
//! process: the reader skips it by `len` and counts it.
//!
//! A chunk whose header magic is 0 was reserved but never written (the process
//! died in between): the reader skips `CHUNK_ALIGN` bytes and looks again.
//!
//! ## Records
//! Payload fields are unsigned LEB128 varints (`v`), zig-zag varints (`z`) or
//! single bytes (`u8`). `t` is the time in nanoseconds of `CLOCK_MONOTONIC`,
//! encoded as the delta to the previous record's time in the same chunk (the
//! first record's delta is to the chunk header's `base_time`).
//!
//! | tag | record | payload |
//! |---|---|---|
//! | 1 | ALLOC | t, func u8, addr v, size v, stack v |
//! | 2 | FREE | t, func u8, addr v |
//! | 3 | REALLOC | t (before the call), dt2 v (after - before), func u8, old v, new v, size v, stack v |
//! | 4 | MMAP | t, func u8, addr v, len v, prot v, flags v, fd z, offset v, stack v |
//! | 5 | MUNMAP | t, addr v, len v, stack v |
//! | 6 | MREMAP | t, old v, old_len v, new v, new_len v, flags v, stack v |
//! | 7 | BRK | t, func u8, arg z, old_break v, new_break v, stack v |
//! | 8 | STACK | id v, n v (`n | cut << 16`, see [`Cut`]), frames: first v, then n-1 deltas z (innermost first) |
//! | 9 | MODULE | t, bias v, start v, end v, build_id (len v + bytes), path (len v + bytes) |
//! | 10 | UNMODULE | t, bias v, start v |
//! | 11 | LOST | t, count v |
//! | 12 | FREERES | t, phase u8 (1 begin, 2 end): libc's own clean-up at exit |
//! | 13 | FORK | t, child_pid v, how u8, path (len v + bytes) (see [`lineage`]) |
//! | 14 | EXEC | t, path (len v + bytes), how u8 (see [`lineage`]) |
//! | 15 | EXIT | t, how u8 (see [`ExitHow`]), status z |
//! | 16 | SAMPLED | t, func u8, addr v, size v, stack v, k v (≥ 1) |
//! | 17 | KERNEL | t, kind u8 (see [`kernel`]), n v, n values v |
//!
//! KERNEL records are written outside the hot path: `memtrace run` samples the
//! kernel's accounting of each traced process from outside while it runs and,
//! once the process has ended, appends them to its log in a chunk of a stream
//! of their own (stream id [`kernel::STREAM`]), with the reachability of the
//! live blocks; the preload writes a few at exit (its own accounting, and the
//! pid of a frozen copy of itself for the reachability scan).
//!
//! ## Sampling
//! When the header's `SAMPLE_INTERVAL` is `T > 0` (`MEMTRACE_SAMPLE`), the
//! preload records allocations chosen by a Poisson process over the bytes
//! allocated (mean distance `T` bytes between sample points), as heapprofd
//! and tcmalloc do. An allocation of at least `T` bytes is always recorded, as
//! a plain ALLOC. A smaller one in which `k >= 1` sample points fall is a
//! SAMPLED record carrying `k`: it stands for `k * T` bytes (an unbiased
//! estimate) and `k * T / size` allocations. Only frees (and reallocs) of
//! recorded blocks are recorded; a realloc of a recorded block becomes a FREE
//! of the old block followed by the new block's own record, if it is chosen.
//! mmap, munmap, mremap and brk are always recorded.
//!
//! Failed calls are recorded too where they change nothing (`addr == 0` for a
//! failed allocation, `new == 0` for a failed realloc); readers ignore them for
//! accounting but count them as calls. Stack id 0 means "no stack".
#![no_std]

pub mod decode;
pub mod encode;
pub mod hdr;
pub mod lineage;

/// KERNEL records: what the kernel charged the process, sampled from outside.
/// Values are in bytes; readers take the values they know and ignore extra
/// ones, so new values can be appended.
pub mod kernel {
    /// The stream id of the chunk holding KERNEL records.
    pub const STREAM: u32 = 0x7fff_fff0;
    /// `/proc/PID/smaps_rollup` and cgroup v2 counters, values in the order of
    /// [`COUNTERS`].
    pub const KIND_COUNTERS: u8 = 1;
    /// Mappings by category at the moment of the highest RSS seen: for each of
    /// [`CATEGORIES`], its size, RSS, PSS and swap (4 values each).
    pub const KIND_MAPS_AT_PEAK: u8 = 2;
    /// The same at the last sample before the process ended.
    pub const KIND_MAPS_AT_END: u8 = 3;
    /// Written by the preload at exit: the pid of a frozen copy of the
    /// process (a fork child that only sleeps), for `memtrace run` to read
    /// the process's memory and classify its live blocks by reachability.
    /// Values: `[pid, stack pointer]` (the exiting thread's stack below the
    /// stack pointer is dead, and is not scanned), then pairs `[start,
    /// bytes]` of the preload's own memory that holds block addresses (the
    /// sampled-address set), which is not a root; a pair with 0 bytes is none.
    pub const KIND_SNAPSHOT: u8 = 4;
    /// Written by `memtrace run`: live blocks of one reachability kind
    /// (`REACH_*`). Values: `[kind, first address, then deltas to the
    /// previous address]`, addresses ascending.
    pub const KIND_REACH: u8 = 5;
    /// Written by the preload when asked for a snapshot while it runs (a
    /// signal, see `memtrace snapshot`): the pid of a frozen copy of the
    /// process, which is the child of `memtrace run` (its subreaper), not of
    /// the process. Values: `[pid, stack pointer, time, own table address,
    /// own table slots, own table overflow, registers address, fp state
    /// address, fp state bytes]`, then `[start, bytes]` pairs:
    /// - the stack pointer is the handler's (below it the stack is dead);
    /// - `time` (CLOCK_MONOTONIC ns) was taken just before the copy was
    ///   made, so events up to it are in the copy's memory;
    /// - the table of the preload's mappings is as for [`KIND_EXIT_SCAN`]
    ///   (in the copy's memory): they are not roots;
    /// - the registers address is where the kernel saved the interrupted
    ///   thread's general-purpose registers in the signal frame (23 words,
    ///   in the order of glibc's `gregs`), and the fp state where it saved
    ///   its floating-point and vector registers: in the copy's memory, for
    ///   the scan to take them as the thread's registers, and the stack from
    ///   the interrupted stack pointer up (less the red zone, unless the
    ///   thread was inside a system call, when the vector registers are left
    ///   out too: caller-saved, they hold nothing live there);
    /// - the pairs are the preload's other memory, which is not a root either
    ///   (the sampled-address set, the preload's object to the end of its
    ///   last page).
    ///
    /// Earlier versions wrote `[pid, stack pointer, time, sampled set start,
    /// sampled set bytes]` (5 values): their copies' scans took the
    /// preload's mappings for roots, and the stack from the handler's frame.
    pub const KIND_SNAPSHOT_RUNNING: u8 = 6;
    /// Written by the preload at exit, just before it starts the scanner
    /// (`memtrace __scan`, a child process that stops the other threads with
    /// ptrace and reads the process's memory): what the scan needs from
    /// inside. Values: `[tid, stack pointer, rbx, rbp, r12, r13, r14, r15,
    /// own table address, own table slots, module start, module end, sampled
    /// set start, sampled set bytes, own table overflow, how]`: the exiting
    /// thread, its stack pointer and callee-saved registers at the entry to
    /// `exit`/`_exit` or at `main`'s return (`how` = [`EXIT_AT_CALL`]), or
    /// where the exit path found itself ([`EXIT_AT_HANDLER`]: exit was called
    /// from inside the C library, e.g. by the last thread's end); then
    /// memtrace's own memory, which is never a root: the table of the
    /// preload's mappings (`[address, bytes]` pairs, address 0 unused), the
    /// preload's own object, and the sampled-address set.
    pub const KIND_EXIT_SCAN: u8 = 7;
    /// How the exit's registers were taken (last value of [`KIND_EXIT_SCAN`]).
    pub const EXIT_AT_CALL: u64 = 1;
    pub const EXIT_AT_HANDLER: u64 = 2;
    /// Written at exit when the scan is over (by the scanner, relayed by the
    /// preload, or by the preload when there was no scan). Values: `[status,
    /// threads stopped, threads without registers, live blocks, microseconds]`,
    /// status one of `SCAN_*`.
    pub const KIND_SCAN_DONE: u8 = 8;
    /// The scan classified every live block.
    pub const SCAN_OK: u64 = 0;
    /// No scanner: `MEMTRACE_SCANNER` unset and no `memtrace` next to the preload.
    pub const SCAN_NO_SCANNER: u64 = 1;
    /// The scanner could not be started (no process or pipe left, exec failed).
    pub const SCAN_NOT_STARTED: u64 = 2;
    /// The scanner ended without its result (killed, crashed).
    pub const SCAN_FAILED: u64 = 3;
    /// The scanner ran out of time (`MEMTRACE_SCAN_TIMEOUT`) and was killed.
    pub const SCAN_TIMED_OUT: u64 = 4;
    /// The process's memory could not be read (not dumpable, ptrace denied).
    pub const SCAN_NO_ACCESS: u64 = 5;
    /// The process runs under a seccomp filter: no scan, so that no system
    /// call it did not expect is made.
    pub const SCAN_SECCOMP: u64 = 6;
    /// The log could not be read by the scanner.
    pub const SCAN_BAD_LOG: u64 = 7;
    /// Reachability kinds, as memcheck's.
    pub const REACH_DEFINITE: u64 = 1;
    pub const REACH_INDIRECT: u64 = 2;
    pub const REACH_POSSIBLE: u64 = 3;
    pub const REACH_REACHABLE: u64 = 4;
    /// Still reachable blocks that memcheck's leak heuristics saved (an
    /// interior pointer that a heuristic recognized, and no start pointer,
    /// led to them): the old copy-on-write `std::string`'s buffer, a block
    /// after its 64-bit length, a `new[]` array after its count, an object
    /// through its second base class. Each such block is also listed in a
    /// [`REACH_REACHABLE`] record (so that readers that do not know these
    /// codes see it still reachable); a block listed only here is still
    /// reachable too. Logs before these codes have none.
    pub const REACH_REACHABLE_STDSTRING: u64 = 5;
    pub const REACH_REACHABLE_LENGTH64: u64 = 6;
    pub const REACH_REACHABLE_NEWARRAY: u64 = 7;
    pub const REACH_REACHABLE_MULTIPLEINHERITANCE: u64 = 8;
    /// The counters' names, in record order. `uss` is private clean + private
    /// dirty; `cgroup_*` are 0 when the process is in no cgroup v2 with the
    /// memory controller.
    pub const COUNTERS: [&str; 8] = [
        "rss",
        "pss",
        "uss",
        "swap",
        "anonymous",
        "cgroup_current",
        "cgroup_anon",
        "cgroup_file",
    ];
    /// Mapping categories, in record order.
    pub const CATEGORIES: [&str; 6] = ["heap", "stack", "anonymous", "file", "memtrace", "other"];
}

pub use decode::{ChunkIter, DecodeError, FrameIter, Record, RecordIter, realloc_released};
pub use hdr::{ChunkHeader, Header};

/// The eight bytes every log starts with.
pub const MAGIC: [u8; 8] = *b"MEMTRACE";
/// The version this crate writes and reads. Readers refuse any other.
pub const VERSION: u32 = 1;
/// Size of the file header; chunks start after it.
pub const HEADER_SIZE: usize = 4096;
/// Chunks start at and are sized in multiples of this.
pub const CHUNK_ALIGN: usize = 4096;
/// Magic of a chunk header ("CHNK").
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"CHNK");
/// Size of a chunk header.
pub const CHUNK_HEADER_SIZE: usize = 32;
/// Largest record (the `len` field is a u16).
pub const MAX_RECORD: usize = u16::MAX as usize;
/// Most frames a STACK record carries; deeper stacks are truncated
/// (outermost frames dropped) and marked [`Cut::Limit`].
pub const MAX_FRAMES: usize = 512;
/// Why a stack is not whole: the unwinder stopped before the thread's entry.
/// A STACK record's count field carries it as `n | cut << 16` (see
/// [`STACK_CUT_SHIFT`]). A stack that ends at the outermost frame (whose
/// return address the CFI marks undefined: `_start`, a thread's `clone`) or
/// at a return address of 0 is whole. Logs written before this field existed
/// never set it (their counts are at most [`MAX_FRAMES`]), so they read as
/// before, with every stack whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cut {
    /// A frame without usable unwind information: no object, no FDE, or a
    /// rule the unwinder cannot evaluate (a CFA computed by an expression).
    NoCfi = 1,
    /// A bad frame: a CFA, return address or saved-register slot out of
    /// bounds, or a return address that cannot be code.
    BadFrame = 2,
    /// The frame limit ([`MAX_FRAMES`]) or the step limit was reached.
    Limit = 3,
}

impl Cut {
    /// The cut encoded as `v` (1 to 3), if any.
    pub fn from_u8(v: u8) -> Option<Cut> {
        match v {
            1 => Some(Cut::NoCfi),
            2 => Some(Cut::BadFrame),
            3 => Some(Cut::Limit),
            _ => None,
        }
    }
}

/// Where a STACK record's count field keeps the [`Cut`] (two bits).
pub const STACK_CUT_SHIFT: u32 = 16;
/// Log space the preload reserves when the program installs a seccomp
/// filter: all it can record from then on (see `hdr::flag::SECCOMP`).
pub const SANDBOX_RESERVE: usize = 16 << 20;

/// Record tags.
pub mod tag {
    pub const ALLOC: u8 = 1;
    pub const FREE: u8 = 2;
    pub const REALLOC: u8 = 3;
    pub const MMAP: u8 = 4;
    pub const MUNMAP: u8 = 5;
    pub const MREMAP: u8 = 6;
    pub const BRK: u8 = 7;
    pub const STACK: u8 = 8;
    pub const MODULE: u8 = 9;
    pub const UNMODULE: u8 = 10;
    pub const LOST: u8 = 11;
    pub const FREERES: u8 = 12;
    pub const FORK: u8 = 13;
    pub const EXEC: u8 = 14;
    pub const EXIT: u8 = 15;
    pub const SAMPLED: u8 = 16;
    pub const KERNEL: u8 = 17;
}

/// The intercepted function that produced an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Func {
    Malloc = 1,
    Calloc = 2,
    Realloc = 3,
    Reallocarray = 4,
    PosixMemalign = 5,
    AlignedAlloc = 6,
    Memalign = 7,
    Valloc = 8,
    Pvalloc = 9,
    Free = 10,
    Mmap = 11,
    Mmap64 = 12,
    Munmap = 13,
    Mremap = 14,
    Brk = 15,
    Sbrk = 16,
    /// C++ `operator new` (all forms but the array ones).
    New = 17,
    /// C++ `operator new[]`.
    NewArray = 18,
    /// C++ `operator delete` (all forms but the array ones).
    Delete = 19,
    /// C++ `operator delete[]`.
    DeleteArray = 20,
}

impl Func {
    /// Decodes a function byte.
    pub fn from_u8(v: u8) -> Option<Func> {
        use Func::*;
        Some(match v {
            1 => Malloc,
            2 => Calloc,
            3 => Realloc,
            4 => Reallocarray,
            5 => PosixMemalign,
            6 => AlignedAlloc,
            7 => Memalign,
            8 => Valloc,
            9 => Pvalloc,
            10 => Free,
            11 => Mmap,
            12 => Mmap64,
            13 => Munmap,
            14 => Mremap,
            15 => Brk,
            16 => Sbrk,
            17 => New,
            18 => NewArray,
            19 => Delete,
            20 => DeleteArray,
            _ => return None,
        })
    }

    /// The C name of the function.
    pub fn name(self) -> &'static str {
        use Func::*;
        match self {
            Malloc => "malloc",
            Calloc => "calloc",
            Realloc => "realloc",
            Reallocarray => "reallocarray",
            PosixMemalign => "posix_memalign",
            AlignedAlloc => "aligned_alloc",
            Memalign => "memalign",
            Valloc => "valloc",
            Pvalloc => "pvalloc",
            Free => "free",
            Mmap => "mmap",
            Mmap64 => "mmap64",
            Munmap => "munmap",
            Mremap => "mremap",
            Brk => "brk",
            Sbrk => "sbrk",
            New => "operator new",
            NewArray => "operator new[]",
            Delete => "operator delete",
            DeleteArray => "operator delete[]",
        }
    }
}

/// How the traced process ended, as far as the process itself could tell.
/// Stored in the header's `state` field and in EXIT records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitHow {
    /// Still running, or ended without running any exit path: crashed, aborted,
    /// killed by a signal such as SIGKILL.
    Running = 1,
    /// `exit()` or a return from `main`: atexit handlers and destructors ran.
    Exit = 2,
    /// `_exit()`/`_Exit()` called directly.
    UnderscoreExit = 3,
    /// The image was replaced by `execve` and friends.
    Exec = 4,
}

impl ExitHow {
    /// Decodes a state value.
    pub fn from_u32(v: u32) -> Option<ExitHow> {
        Some(match v {
            1 => ExitHow::Running,
            2 => ExitHow::Exit,
            3 => ExitHow::UnderscoreExit,
            4 => ExitHow::Exec,
            _ => return None,
        })
    }
}
