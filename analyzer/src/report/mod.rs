//! The report: everything the renderers print, assembled from one log.
//!
//! [`analyze`] runs the passes in order — header, chunk index, catalog
//! (stacks, modules, process events), replay (twice, for the peak) — and
//! symbolizes only the stacks that end up in the report, after the `top`
//! limits are applied. The text and JSON renderers print the same data.
//!
//! This module owns the report's model; `analyze` the pass that fills it
//! in, step by step; `live` the narrowing of the leaks (`--since`,
//! `--older-than`); `leak_kinds` the reachability tallies and their words;
//! `stacks` the symbolizing of the stacks the lists report; `window` the
//! time window (`--from`, `--to`); `questions`
//! heaptrack_print's questions (the size histogram, `--filter`, `--by
//! function`).
//! It uses the analysis passes, the log reader and the symbolizer.

use std::path::PathBuf;
use std::sync::Arc;

use memtrace_format::Func;

use crate::analysis::symbolize::Frame;
use crate::kinds::ByKind;

mod analyze;
mod leak_kinds;
mod live;
pub mod questions;
mod stacks;
pub mod window;

pub use analyze::{analyze, analyze_bytes, analyze_log};
pub use leak_kinds::{Heurs, add_heurs, heurs_present, kinds_present, kinds_text, kinds_text_via};
pub use live::{Growth, LiveFilter, Since, delta, duration, since_snapshot};

/// How much to report.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// At most this many entries in each list (heap leaks, mmap leaks, peak,
    /// brk). `None`: every leak and brk entry, and the 10 largest at the peak.
    pub top: Option<usize>,
    /// Told how far the analysis has got, now and then.
    pub progress: Option<Progress>,
    /// Compare with this earlier snapshot of the same process: only the
    /// blocks allocated after it count as leaks ([`since_snapshot`]).
    pub since: Option<Since>,
    /// Only the blocks alive for at least this many ns at the end (or at the
    /// snapshot) count as leaks.
    pub older_than: Option<u64>,
    /// Other logs of the same process tree, searched first for a fork
    /// child's parent's log ([`crate::analysis::inherit`]), before the child log's
    /// directory.
    pub peers: Vec<PathBuf>,
    /// Leave a fork child's inheritance out: read no other file.
    pub no_inherit: bool,
    /// heaptrack_print's questions to answer: the size histogram, a filter
    /// on the stacks, the lists by function ([`questions`]).
    pub questions: questions::Asked,
    /// A time window (`--from`, `--to`): the leaks listed are the blocks
    /// allocated in it and still live at its end ([`window`]).
    pub window: window::Asked,
}

/// A stage of the analysis, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The pass over the events; the fraction is of the run's duration.
    Reading,
    /// Symbolizing the stacks of the report; the fraction is of the stacks.
    Symbolizing,
}

/// A progress callback: the stage, and the fraction of it done (`None` when
/// the total is unknown, e.g. the log of a process that was killed).
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(Stage, Option<f64>) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// Events between two progress reports.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Entries at the peak when no limit is given.
pub const DEFAULT_PEAK_TOP: usize = 10;

/// How the process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `exit()` or a return from `main`.
    Exit,
    /// `_exit()` called directly.
    UnderscoreExit,
    /// The image was replaced by exec.
    Exec,
    /// No exit path ran: crash, abort, kill (or the log was copied while running).
    Abnormal,
    /// Still running: a snapshot taken while it ran (`memtrace snapshot`).
    Snapshot,
    /// Still running: the log is still being written (see [`crate::log::live`]).
    Running,
}

impl Ended {
    /// The name used in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Exit => "exit",
            Ended::UnderscoreExit => "_exit",
            Ended::Exec => "exec",
            Ended::Abnormal => "abnormal",
            Ended::Snapshot => "snapshot",
            Ended::Running => "running",
        }
    }
}

impl Summary {
    /// All stacks the unwinder did not follow to the thread's entry.
    pub fn truncated_stacks_total(&self) -> u64 {
        self.truncated_stacks.iter().sum()
    }
}

/// The traced process.
#[derive(Clone, Debug)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub forked_from: Option<u32>,
    pub ended: Ended,
    /// Exit status: from `memtrace run`'s wait status, else the EXIT record,
    /// else the header (for `_exit`).
    pub exit_status: Option<i32>,
    /// Terminating signal, from `memtrace run`'s wait status.
    pub signal: Option<i32>,
    /// The path an EXEC record names.
    pub exec: Option<String>,
    /// Fork children's pids.
    pub forks: Vec<u64>,
    /// Its place in the run's process tree (children made, the EXEC
    /// record's bits), for [`crate::analysis::lineage::untraced`].
    pub lineage: crate::analysis::lineage::Proc,
    pub duration_ms: f64,
}

/// Totals.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub allocations: u64,
    pub frees: u64,
    pub bytes_allocated: u64,
    /// Allocations freed by their thread before its next allocation
    /// (heaptrack's "temporary", per thread), and their bytes.
    pub temporary_allocations: u64,
    pub temporary_bytes: u64,
    pub peak_heap_bytes: u64,
    pub peak_heap_time_ms: f64,
    pub leaked_heap_bytes: u64,
    pub leaked_heap_blocks: u64,
    pub leaked_mmap_bytes: u64,
    pub leaked_mmap_regions: u64,
    pub peak_mmap_bytes: u64,
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    pub brk_growth_bytes: i64,
    pub events_lost: u64,
    pub torn_records: u64,
    pub unknown_frees: u64,
    pub libc_freeres_frees: u64,
    pub ended_abnormally: bool,
    pub truncated: bool,
    /// Allocations at an address that was still live.
    pub anomalies: u64,
    /// Chunk slots reserved but never written.
    pub empty_chunk_slots: u64,
    /// Hooks entered re-entrantly (only signal handlers that allocate cause it).
    pub nested_hooks: u64,
    /// Hook levels a thread left without returning (a signal handler that
    /// longjmp'd out of a hook), closed at its next event.
    pub abandoned_hooks: u64,
    /// The program's `malloc` is not libmemtrace's (an executable with its own
    /// allocator comes first in symbol lookup): its heap calls were not seen.
    pub malloc_not_interposed: bool,
    /// Recording stopped at the process's file-size limit (`RLIMIT_FSIZE`):
    /// the events after it are in `events_lost`.
    pub file_size_limit: bool,
    /// The program closed memtrace's log descriptor or reused its number:
    /// the log was opened again by its path (`events_lost` has what fell
    /// in between).
    pub log_fd_replaced: bool,
    /// The program installed a seccomp filter: memtrace recorded without
    /// system calls of its own from then on, into a reserve of fixed size
    /// (what did not fit is in `events_lost`).
    pub seccomp_filter: bool,
    /// The program unmapped or mapped over memory memtrace uses: recording
    /// stopped (`events_lost` has what came after).
    pub mapping_clobbered: bool,
    /// Stacks compared with libgcc's unwinder (`MEMTRACE_VERIFY_UNWIND`).
    pub unwind_checked: u64,
    /// Of those, the stacks where the two unwinders disagreed.
    pub unwind_mismatched: u64,
    /// Distinct stacks the unwinder did not follow to the thread's entry
    /// (this log's own and those a fork child inherited), by why it
    /// stopped: index `Cut as usize - 1` (no CFI, bad frame, limit).
    pub truncated_stacks: [u64; 3],
    /// Sampling interval in bytes (`MEMTRACE_SAMPLE`); 0 when every
    /// allocation was recorded. When sampled, heap bytes and counts are
    /// estimates (see the format crate's docs on sampling).
    pub sample_interval: u64,
    /// Sampled blocks whose frees the preload could not track.
    pub sample_overflow: u64,
    /// Leaked heap bytes and blocks by reachability kind (order of
    /// `reach::Kind::ALL`), when the scan at exit classified them.
    pub leak_kinds: Option<ByKind>,
    /// How the scan at exit ended, when the process recorded one.
    pub scan: Option<crate::analysis::reach::ScanDone>,
    /// Heap blocks and bytes a fork child held from its start: its parent's
    /// live at the fork ([`crate::analysis::inherit`]); 0 for other processes.
    pub inherited_blocks: u64,
    pub inherited_bytes: u64,
    /// Where a fork child's inheritance came from; `None` when the process
    /// is not a fork child, or its parent's log was not found (a warning
    /// says so).
    pub inherited: Option<InheritedFrom>,
    /// Of the still reachable ones, those a leak heuristic saved, by
    /// heuristic (order of `reach::Heuristic::ALL`).
    pub leak_heuristics: Heurs,
    /// With `--from`/`--to`: the window, and what happened in it. The
    /// leaked heap figures above are then the window's blocks live at its
    /// end, and `leak_kinds` is `None` when the window ends before the end.
    pub window: Option<window::Window>,
}

/// The parent's log a fork child's inheritance was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct InheritedFrom {
    pub parent_log: PathBuf,
    pub parent_pid: u32,
    /// Mappings inherited (pieces of the parent's, live at the fork) and
    /// their bytes.
    pub mmap_regions: u64,
    pub mmap_bytes: u64,
}

/// Memory attributed to one stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub bytes: u64,
    /// Blocks (heap) or regions (mmap).
    pub count: u64,
    /// The allocating function (heap leaks only: malloc, calloc, operator
    /// new...), which valgrind shows as the innermost frame.
    pub func: Option<Func>,
    /// Heap leaks of a run whose blocks were classified by reachability:
    /// bytes and blocks of each kind, in the order of `reach::Kind::ALL`.
    pub kinds: Option<ByKind>,
    /// Of its still reachable blocks, those a leak heuristic saved, by
    /// heuristic (order of `reach::Heuristic::ALL`).
    pub heuristics: Heurs,
    /// Innermost first; empty when the stack was not recorded. Shared by
    /// every list that reports the same stack.
    pub stack: Arc<[Frame]>,
}

/// Net program-break growth attributed to one stack.
#[derive(Clone, Debug)]
pub struct BrkSite {
    pub bytes: i64,
    pub stack: Arc<[Frame]>,
}

/// One point of memory over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimePoint {
    /// Milliseconds since the process started.
    pub t_ms: f64,
    /// Live heap bytes (requested).
    pub heap: u64,
    /// Bytes mapped by the program's own mmap calls.
    pub mmap: u64,
}

/// The kernel's view (sampled by `memtrace run`; see [`crate::analysis::kernel`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelReport {
    /// Samples: milliseconds since the start, and the counters named by
    /// `memtrace_format::kernel::COUNTERS`.
    pub samples: Vec<(f64, crate::analysis::kernel::Counters)>,
    /// The sample with the highest RSS.
    pub peak: (f64, crate::analysis::kernel::Counters),
    /// Mappings by category (`memtrace_format::kernel::CATEGORIES`) when RSS
    /// was highest, and at exit (recorded by the process itself; else the last
    /// table sampled).
    pub maps_at_peak: Option<(f64, crate::analysis::kernel::MapTable)>,
    pub maps_at_end: Option<(f64, crate::analysis::kernel::MapTable)>,
    /// Live heap bytes and program-mapped bytes at the moment of
    /// `maps_at_peak` (from the timeline), to compare with the kernel's.
    pub heap_at_maps_peak: Option<TimePoint>,
    /// The program's own mappings live at that moment, by stack (at most
    /// [`DEFAULT_PEAK_TOP`], or the `top` option).
    pub mmap_at_maps_peak: Vec<Site>,
}

/// Everything reported about one log.
#[derive(Clone, Debug)]
pub struct Report {
    pub path: PathBuf,
    pub format_version: u32,
    pub process: Process,
    pub summary: Summary,
    /// Heap blocks live at the end, by stack, largest first.
    pub heap_leaks: Vec<Site>,
    /// Distinct stacks holding leaked heap blocks (before the `top` limit).
    pub heap_leak_stacks: u64,
    /// Mappings left at the end, by stack, largest first.
    pub mmap_leaks: Vec<Site>,
    /// Distinct stacks holding leaked mappings (before the `top` limit).
    pub mmap_leak_stacks: u64,
    /// Heap blocks live at the peak, by stack, largest first.
    pub peak: Vec<Site>,
    /// Heap bytes allocated (freed or not), by stack, largest first.
    pub allocated: Vec<Site>,
    /// Temporary allocations by stack, most first (`count` = temporary ones).
    pub temporary: Vec<Site>,
    /// Explicit brk/sbrk growth by stack.
    pub brk: Vec<BrkSite>,
    /// Live heap and mapped bytes over time.
    pub timeline: Vec<TimePoint>,
    /// What the kernel charged the process, when `memtrace run` sampled it.
    pub kernel: Option<KernelReport>,
    /// How the leaks were narrowed, when they were (`--since`, `--older-than`).
    pub live_filter: Option<LiveFilter>,
    /// Lines worth telling the user on stderr (truncation, missing symbols).
    pub warnings: Vec<String>,
    /// The answers to the questions of [`Options::questions`]. Under a
    /// filter, every list above holds only the stacks it kept (the
    /// summary stays the whole run's).
    pub questions: questions::Questions,
}

/// Milliseconds from `start` to `t` (CLOCK_MONOTONIC ns).
fn ms_since(start: u64, t: u64) -> f64 {
    // Whole microseconds of both (a packed log keeps times in microseconds):
    // enough for a human, and the same from a raw and a packed log.
    let us = (t / 1000).saturating_sub(start / 1000);
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests;
