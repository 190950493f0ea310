//! The file header and the chunk header: fixed offsets, little-endian.
//!
//! The writer updates some header fields atomically while the target runs
//! (`RESERVED_END`, `EVENTS_LOST`, `STATE`, ...); their offsets are 8-byte
//! aligned so they can be accessed as `AtomicU64`/`AtomicU32` in the mapping.

use crate::decode::DecodeError;
use crate::{CHUNK_HEADER_SIZE, CHUNK_MAGIC, HEADER_SIZE, MAGIC, VERSION};

/// Byte offsets of the header fields.
pub mod off {
    /// `[u8; 8]` = `MAGIC`.
    pub const MAGIC: usize = 0;
    /// u32 format version.
    pub const VERSION: usize = 8;
    /// u32 header size (4096).
    pub const HEADER_SIZE: usize = 12;
    /// u32 page size of the target.
    pub const PAGE_SIZE: usize = 16;
    /// u32 flags, see [`flag`](super::flag).
    pub const FLAGS: usize = 20;
    /// u32 pid of the traced process.
    pub const PID: usize = 24;
    /// u32 parent pid.
    pub const PPID: usize = 28;
    /// u64 CLOCK_REALTIME at start, ns since the epoch.
    pub const START_REALTIME: usize = 32;
    /// u64 CLOCK_MONOTONIC at start, ns (event times use the same clock).
    pub const START_MONO: usize = 40;
    /// u64, atomic: end of the reserved chunk area (file offset).
    pub const RESERVED_END: usize = 48;
    /// u64, atomic: events that could not be recorded (all streams).
    pub const EVENTS_LOST: usize = 56;
    /// u32, atomic: `ExitHow` state.
    pub const STATE: usize = 64;
    /// i32: exit status passed to `_exit`, when STATE says so.
    pub const EXIT_STATUS: usize = 68;
    /// u64: CLOCK_MONOTONIC when the process ended (0 if unknown).
    pub const END_MONO: usize = 72;
    /// u64: program break when tracing started.
    pub const INITIAL_BRK: usize = 80;
    /// u64: program break when the process ended (0 if unknown).
    pub const FINAL_BRK: usize = 88;
    /// u32: pid of the process this one was forked from (0: not a fork child).
    pub const FORKED_FROM: usize = 96;
    /// u32: bit 0 set when `RUN_WAIT_STATUS` is valid (written by `memtrace run`).
    pub const RUN_FLAGS: usize = 100;
    /// i32: raw `waitpid` status written by `memtrace run` after the target ended.
    pub const RUN_WAIT_STATUS: usize = 104;
    /// u32, atomic: hooks entered while the same thread was already inside
    /// one. Only a signal handler that allocates can cause this: the recorder
    /// itself never calls the hooked functions, and a test asserts it.
    pub const NESTED_HOOKS: usize = 108;
    /// u32, atomic: stacks also captured by libgcc's reference unwinder
    /// (`MEMTRACE_VERIFY_UNWIND=N`: every N-th stack).
    pub const UNWIND_CHECKED: usize = 112;
    /// u32, atomic: of those, the stacks where the two unwinders disagreed.
    pub const UNWIND_MISMATCHED: usize = 116;
    /// u64: the sampling interval in bytes (`MEMTRACE_SAMPLE`), 0 when every
    /// allocation is recorded. See the crate docs on sampling.
    pub const SAMPLE_INTERVAL: usize = 120;
    /// u32, atomic: sampled blocks the preload could not remember (its set of
    /// sampled addresses was full): their frees were not recorded.
    pub const SAMPLE_OVERFLOW: usize = 128;
    /// u64: nonzero in a snapshot of a running process (written by `memtrace
    /// run`, never by the preload): the CLOCK_MONOTONIC ns at which the
    /// snapshot was taken. The file is a copy of the log as it was then;
    /// readers ignore the events after that moment.
    pub const SNAPSHOT_AT: usize = 136;
    /// u16 length + bytes: the executable's path.
    pub const EXE: usize = 256;
    /// Room for the executable's path.
    pub const EXE_CAP: usize = 1022;
    /// u16 length + bytes: the command line, arguments separated by NUL.
    pub const CMDLINE: usize = 1280;
    /// Room for the command line.
    pub const CMDLINE_CAP: usize = 2814;
}

/// Bits of the header's FLAGS field.
pub mod flag {
    /// The program's `malloc` is not libmemtrace.so's: an object that comes
    /// before it in symbol lookup (an executable with a statically linked
    /// allocator) defines it, so heap calls bypass the recorder.
    pub const MALLOC_NOT_INTERPOSED: u32 = 1;
    /// Recording stopped short: extending the log would have passed the
    /// process's file-size limit (`RLIMIT_FSIZE`, which would raise
    /// `SIGXFSZ`); what came after is counted in EVENTS_LOST.
    pub const FILE_SIZE_LIMIT: u32 = 2;
    /// The program installed its own handler for memtrace's snapshot signal
    /// (sigaction or signal): memtrace's is gone, `memtrace snapshot` must
    /// not send it.
    pub const SNAPSHOT_SIGNAL_TAKEN: u32 = 4;
    /// The program closed memtrace's log descriptor or put a file of its own
    /// at its number (`close_range`, `dup2`, a daemon closing everything):
    /// memtrace noticed before using it, never wrote through it, and opened
    /// the log again by its path (what it could not record meanwhile is in
    /// EVENTS_LOST).
    pub const LOG_FD_REPLACED: u32 = 8;
    /// The program installed a seccomp filter (or strict mode): from then on
    /// memtrace made no system call of its own. It recorded into space
    /// reserved just before the filter took effect; what did not fit is in
    /// EVENTS_LOST. No exit scan and no kernel figures after that point.
    pub const SECCOMP: u32 = 16;
    /// The program unmapped or mapped over memory memtrace uses (its log
    /// mappings or its own tables): recording stopped there (or moved, for
    /// the log's own pages), and later events are counted in EVENTS_LOST.
    pub const MAPPING_CLOBBERED: u32 = 32;
}

/// The decoded file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub version: u32,
    /// FLAGS bits (see [`flag`]).
    pub flags: u32,
    pub page_size: u32,
    pub pid: u32,
    pub ppid: u32,
    pub start_realtime_ns: u64,
    pub start_mono_ns: u64,
    pub reserved_end: u64,
    pub events_lost: u64,
    pub state: u32,
    pub exit_status: i32,
    pub end_mono_ns: u64,
    pub initial_brk: u64,
    pub final_brk: u64,
    pub forked_from: u32,
    /// Hooks entered re-entrantly (see `off::NESTED_HOOKS`).
    pub nested_hooks: u32,
    /// Stacks checked against the reference unwinder (see `off::UNWIND_CHECKED`).
    pub unwind_checked: u32,
    /// Stacks where the reference unwinder disagreed.
    pub unwind_mismatched: u32,
    /// Sampling interval in bytes; 0: every allocation was recorded.
    pub sample_interval: u64,
    /// Sampled blocks whose frees could not be tracked (see `off::SAMPLE_OVERFLOW`).
    pub sample_overflow: u32,
    /// Nonzero in a snapshot of a running process: when it was taken (see
    /// `off::SNAPSHOT_AT`).
    pub snapshot_at: u64,
    /// The raw wait status recorded by `memtrace run`, if any.
    pub run_wait_status: Option<i32>,
    pub exe: &'a [u8],
    pub cmdline: &'a [u8],
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn bytes_at(b: &[u8], o: usize, cap: usize) -> Result<&[u8], DecodeError> {
    let len = u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    if len > cap {
        return Err(DecodeError::BadHeader("string length"));
    }
    Ok(&b[o + 2..o + 2 + len])
}

impl<'a> Header<'a> {
    /// Parses and validates the header at the start of `file`.
    pub fn parse(file: &'a [u8]) -> Result<Header<'a>, DecodeError> {
        if file.len() < 8 || file[..8] != MAGIC {
            return Err(DecodeError::NotALog);
        }
        if file.len() < HEADER_SIZE {
            return Err(DecodeError::Truncated("header"));
        }
        let version = u32_at(file, off::VERSION);
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        if u32_at(file, off::HEADER_SIZE) as usize != HEADER_SIZE {
            return Err(DecodeError::BadHeader("header size"));
        }
        let run_flags = u32_at(file, off::RUN_FLAGS);
        Ok(Header {
            version,
            flags: u32_at(file, off::FLAGS),
            page_size: u32_at(file, off::PAGE_SIZE),
            pid: u32_at(file, off::PID),
            ppid: u32_at(file, off::PPID),
            start_realtime_ns: u64_at(file, off::START_REALTIME),
            start_mono_ns: u64_at(file, off::START_MONO),
            reserved_end: u64_at(file, off::RESERVED_END),
            events_lost: u64_at(file, off::EVENTS_LOST),
            state: u32_at(file, off::STATE),
            exit_status: u32_at(file, off::EXIT_STATUS) as i32,
            end_mono_ns: u64_at(file, off::END_MONO),
            initial_brk: u64_at(file, off::INITIAL_BRK),
            final_brk: u64_at(file, off::FINAL_BRK),
            forked_from: u32_at(file, off::FORKED_FROM),
            nested_hooks: u32_at(file, off::NESTED_HOOKS),
            unwind_checked: u32_at(file, off::UNWIND_CHECKED),
            unwind_mismatched: u32_at(file, off::UNWIND_MISMATCHED),
            sample_interval: u64_at(file, off::SAMPLE_INTERVAL),
            sample_overflow: u32_at(file, off::SAMPLE_OVERFLOW),
            snapshot_at: u64_at(file, off::SNAPSHOT_AT),
            run_wait_status: if run_flags & 1 != 0 {
                Some(u32_at(file, off::RUN_WAIT_STATUS) as i32)
            } else {
                None
            },
            exe: bytes_at(file, off::EXE, off::EXE_CAP)?,
            cmdline: bytes_at(file, off::CMDLINE, off::CMDLINE_CAP)?,
        })
    }
}

/// Fills a fresh header page. Fields that change while the target runs
/// start at zero (`RESERVED_END` at `HEADER_SIZE`, `STATE` at `Running`).
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    page: &mut [u8; HEADER_SIZE],
    page_size: u32,
    pid: u32,
    ppid: u32,
    start_realtime_ns: u64,
    start_mono_ns: u64,
    initial_brk: u64,
    forked_from: u32,
    exe: &[u8],
    cmdline: &[u8],
) {
    fn put(page: &mut [u8], o: usize, b: &[u8]) {
        page[o..o + b.len()].copy_from_slice(b);
    }
    put(page, off::MAGIC, &MAGIC);
    put(page, off::VERSION, &VERSION.to_le_bytes());
    put(page, off::HEADER_SIZE, &(HEADER_SIZE as u32).to_le_bytes());
    put(page, off::PAGE_SIZE, &page_size.to_le_bytes());
    put(page, off::PID, &pid.to_le_bytes());
    put(page, off::PPID, &ppid.to_le_bytes());
    put(page, off::START_REALTIME, &start_realtime_ns.to_le_bytes());
    put(page, off::START_MONO, &start_mono_ns.to_le_bytes());
    put(page, off::RESERVED_END, &(HEADER_SIZE as u64).to_le_bytes());
    put(
        page,
        off::STATE,
        &(crate::ExitHow::Running as u32).to_le_bytes(),
    );
    put(page, off::INITIAL_BRK, &initial_brk.to_le_bytes());
    put(page, off::FORKED_FROM, &forked_from.to_le_bytes());
    let exe = &exe[..exe.len().min(off::EXE_CAP)];
    put(page, off::EXE, &(exe.len() as u16).to_le_bytes());
    put(page, off::EXE + 2, exe);
    let cmd = &cmdline[..cmdline.len().min(off::CMDLINE_CAP)];
    put(page, off::CMDLINE, &(cmd.len() as u16).to_le_bytes());
    put(page, off::CMDLINE + 2, cmd);
}

/// The 32-byte header at the start of every chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Total size of the chunk in bytes, header included (a multiple of CHUNK_ALIGN).
    pub size: u32,
    /// The stream (one thread at one signal-nesting level) the chunk belongs to.
    pub stream: u32,
    /// Kernel thread id of the writer.
    pub tid: u32,
    /// Index of this chunk within its stream.
    pub seq: u32,
    /// Time base for the first record's delta.
    pub base_time: u64,
}

impl ChunkHeader {
    /// Encodes the header into the first `CHUNK_HEADER_SIZE` bytes of `out`.
    /// The magic goes in last, by the caller, so an unwritten chunk reads as empty:
    /// this writes everything but the magic.
    pub fn encode_without_magic(&self, out: &mut [u8; CHUNK_HEADER_SIZE]) {
        out[4..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..12].copy_from_slice(&self.stream.to_le_bytes());
        out[12..16].copy_from_slice(&self.tid.to_le_bytes());
        out[16..20].copy_from_slice(&self.seq.to_le_bytes());
        out[20..24].copy_from_slice(&0u32.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_time.to_le_bytes());
    }

    /// Parses a chunk header. `Ok(None)`: the slot was never written.
    pub fn parse(b: &[u8]) -> Result<Option<ChunkHeader>, DecodeError> {
        if b.len() < CHUNK_HEADER_SIZE {
            return Err(DecodeError::Truncated("chunk header"));
        }
        let magic = u32_at(b, 0);
        if magic == 0 {
            return Ok(None);
        }
        if magic != CHUNK_MAGIC {
            return Err(DecodeError::BadChunk("magic"));
        }
        Ok(Some(ChunkHeader {
            size: u32_at(b, 4),
            stream: u32_at(b, 8),
            tid: u32_at(b, 12),
            seq: u32_at(b, 16),
            base_time: u64_at(b, 24),
        }))
    }
}
