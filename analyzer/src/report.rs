//! The report: everything the renderers print, assembled from one log.
//!
//! [`analyze`] runs the passes in order — header, chunk index, catalog
//! (stacks, modules, process events), replay (twice, for the peak) — and
//! symbolizes only the stacks that end up in the report, after the `top`
//! limits are applied. The text and JSON renderers print the same data.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memtrace_format::{ExitHow, Func};

use crate::analysis::catalog::{self, Catalog};
use crate::analysis::replay::{self, StackTotal};
use crate::analysis::symbolize::{Frame, Symbolizer, Unusable};
use crate::error::Result;
use crate::log::Log;
use crate::units::{plural, signed};

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
}

/// An earlier snapshot of a process (`memtrace report --since`).
#[derive(Clone, Debug)]
pub struct Since {
    pub path: PathBuf,
    pub pid: u32,
    pub start_mono_ns: u64,
    /// When it was taken (CLOCK_MONOTONIC ns).
    pub time: u64,
    /// Live heap bytes and blocks then, in all and by stack id.
    pub bytes: u64,
    pub blocks: u64,
    pub by_stack: HashMap<u32, (u64, u64)>,
    /// The blocks classified definitely or indirectly lost then: address,
    /// allocation time, size. One freed later was not lost: the program
    /// held a pointer the scan could not see.
    pub lost: Vec<(u64, u64, u64)>,
}

/// Reads the snapshot at `path` for [`Options::since`].
pub fn since_snapshot(path: &Path) -> Result<Since> {
    let log = Log::open(path)?;
    let header = log.header()?;
    if header.snapshot_at == 0 {
        return Err(crate::Error::Since {
            path: path.to_owned(),
            why: "not a snapshot (`memtrace snapshot PID` makes them)".into(),
        });
    }
    let index = log.index(&header)?;
    let mut cat = Catalog::default();
    // The same inheritance as the later log's, under the same stack ids.
    let inherited = crate::analysis::inherit::of_header(path, &header, &[]).unwrap_or(None);
    let mut out = replay::replay_seeded(
        &log,
        &index,
        replay::Config::of(&header),
        inherited.as_ref().map(|i| &i.seed),
        |ev| cat.observe(ev, &log, &index),
    )?;
    if let Some(i) = &inherited {
        i.annotate(&mut cat, &mut out.first_use);
    }
    // One stack under one id (the later log maps these ids once more).
    out.merge_stacks(&cat.stack_aliases(&out.first_use));
    let lost = out
        .live
        .iter()
        .filter(|(a, _)| {
            matches!(
                cat.reach.get(a),
                Some(
                    crate::analysis::reach::Kind::DefinitelyLost
                        | crate::analysis::reach::Kind::IndirectlyLost
                )
            )
        })
        .map(|(a, b)| (*a, b.time, b.size))
        .collect();
    Ok(Since {
        lost,
        path: path.to_owned(),
        pid: header.pid,
        start_mono_ns: header.start_mono_ns,
        time: header.snapshot_at,
        bytes: out.leaked_heap_bytes,
        blocks: out.leaked_heap_blocks,
        by_stack: out
            .heap_leaks
            .iter()
            .map(|t| (t.stack, (t.bytes, t.count)))
            .collect(),
    })
}

/// How the leak list was narrowed (`--since`, `--older-than`), and the
/// growth since the earlier snapshot.
#[derive(Clone, Debug)]
pub struct LiveFilter {
    /// The earlier snapshot: its file, when it was taken (ms since the
    /// start), and the live heap then.
    pub since: Option<(PathBuf, f64, u64, u64)>,
    /// Minimum age of the blocks listed, ms.
    pub older_than_ms: Option<f64>,
    /// All live heap bytes and blocks at the end, before narrowing.
    pub all_bytes: u64,
    pub all_blocks: u64,
    /// With `since`: the live heap by stack now against then, the stacks
    /// whose live bytes changed, largest growth first.
    pub growth: Vec<Growth>,
    /// With `since`: bytes and blocks classified lost then, and freed by
    /// now: the scan missed the program's pointers to them (see the
    /// README's limits of the reachability scan).
    pub lost_then_freed: (u64, u64),
}

impl LiveFilter {
    /// Which blocks were listed, in words: `allocated since the snapshot and
    /// alive for at least 1.000 s`.
    pub fn which(&self) -> String {
        let mut which = Vec::new();
        if self.since.is_some() {
            which.push("allocated since the snapshot".to_owned());
        }
        if let Some(ms) = self.older_than_ms {
            which.push(format!("alive for at least {}", duration(ms)));
        }
        which.join(" and ")
    }
}

/// A duration in ms, in the largest unit that keeps it readable.
pub fn duration(ms: f64) -> String {
    if ms >= 3_600_000.0 {
        format!("{:.3} h", ms / 3_600_000.0)
    } else if ms >= 60_000.0 {
        format!("{:.3} min", ms / 60_000.0)
    } else if ms >= 1000.0 {
        format!("{:.3} s", ms / 1000.0)
    } else {
        format!("{ms:.3} ms")
    }
}

/// `+n` for a growth, `-n` for a shrink.
pub fn delta(n: i64) -> String {
    if n > 0 {
        format!("+{}", signed(n))
    } else {
        signed(n)
    }
}

/// One stack's live heap now (`site`) and at the earlier snapshot.
#[derive(Clone, Debug)]
pub struct Growth {
    pub site: Site,
    pub then_bytes: u64,
    pub then_count: u64,
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

/// Distinct cut stacks of the catalog by why they were cut (see
/// [`Summary::truncated_stacks`]). One stack defined under two ids (two
/// threads interning it at once) counts once.
fn truncated_stacks(cat: &Catalog) -> [u64; 3] {
    let mut seen: HashSet<(&[u64], memtrace_format::Cut)> = HashSet::new();
    let mut n = [0u64; 3];
    for (id, &cut) in &cat.cut {
        let frames = cat.stacks.get(id).map_or(&[][..], |v| &v[..]);
        if seen.insert((frames, cut)) {
            n[cut as usize - 1] += 1;
        }
    }
    n
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
    pub leak_kinds: Option<Kinds>,
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

/// Bytes and blocks of each reachability kind (the shared [`crate::kinds::ByKind`]).
pub type Kinds = crate::kinds::ByKind;

/// Bytes and blocks still reachable through each leak heuristic, in the
/// order of [`crate::analysis::reach::Heuristic::ALL`].
pub type Heurs = [(u64, u64); 4];

/// Adds `b` to `a`, entry by entry.
pub fn add_heurs(a: &mut Heurs, b: &Heurs) {
    for (x, y) in a.iter_mut().zip(b) {
        x.0 = x.0.saturating_add(y.0);
        x.1 = x.1.saturating_add(y.1);
    }
}

/// The heuristics of `h` that saved blocks, with their bytes and blocks.
pub fn heurs_present(h: &Heurs) -> Vec<(crate::analysis::reach::Heuristic, u64, u64)> {
    crate::analysis::reach::Heuristic::ALL
        .into_iter()
        .map(|x| (x, h[x.index()].0, h[x.index()].1))
        .filter(|(_, b, n)| (*b, *n) != (0, 0))
        .collect()
}

/// The kinds of `k` that have blocks (or bytes), in report order.
pub fn kinds_present(k: &Kinds) -> Vec<crate::analysis::reach::Kind> {
    crate::analysis::reach::Kind::ALL
        .into_iter()
        .filter(|kind| k[kind.index()] != (0, 0))
        .collect()
}

/// The kinds of `k` that have blocks, in words: `32 bytes in 1 block
/// definitely lost; 96 bytes in 3 blocks indirectly lost`.
pub fn kinds_text(k: &Kinds) -> String {
    let parts: Vec<String> = kinds_present(k)
        .into_iter()
        .map(|kind| {
            let (b, n) = k[kind.index()];
            format!(
                "{} in {} {}",
                plural(b, "byte", "bytes"),
                plural(n, "block", "blocks"),
                kind.words()
            )
        })
        .collect();
    parts.join("; ")
}

/// [`kinds_text`], the still reachable entry followed by what the leak
/// heuristics saved of it: `152 bytes in 3 blocks still reachable, of which
/// via heuristic newarray: 144 bytes in 2 blocks`.
pub fn kinds_text_via(k: &Kinds, h: &Heurs) -> String {
    let via = heurs_present(h);
    let mut text = kinds_text(k);
    if via.is_empty() || !kinds_present(k).contains(&crate::analysis::reach::Kind::StillReachable) {
        return text;
    }
    let parts: Vec<String> = via
        .into_iter()
        .map(|(h, b, n)| {
            format!(
                "{}: {} in {}",
                h.name(),
                plural(b, "byte", "bytes"),
                plural(n, "block", "blocks")
            )
        })
        .collect();
    text.push_str(&format!(", of which via heuristic {}", parts.join(", ")));
    text
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
    pub kinds: Option<Kinds>,
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
}

fn ms_since(start: u64, t: u64) -> f64 {
    // Whole microseconds of both (a packed log keeps times in microseconds):
    // enough for a human, and the same from a raw and a packed log.
    let us = (t / 1000).saturating_sub(start / 1000);
    us as f64 / 1000.0
}

/// Reads, replays and symbolizes the log at `path`.
pub fn analyze(path: &Path, opts: &Options) -> Result<Report> {
    let log = Log::open(path)?;
    analyze_log(&log, opts, Symbolizer::new())
}

/// The whole pipeline on a log held in memory, without reading any other
/// file: frames keep their module and address but are not symbolized. This
/// is the fuzzing entry point; any input must give a report or an [`Error`]
/// (never a panic, a hang, or memory out of proportion to `bytes.len()`).
///
/// [`Error`]: crate::Error
pub fn analyze_bytes(bytes: &[u8], opts: &Options) -> Result<Report> {
    let log = Log::from_bytes(Path::new("<memory>"), bytes);
    let opts = Options {
        no_inherit: true,
        ..opts.clone()
    };
    analyze_log(&log, &opts, Symbolizer::disabled())
}

/// Runs the passes over an opened log, symbolizing with `sym`.
pub fn analyze_log(log: &Log, opts: &Options, mut sym: Symbolizer) -> Result<Report> {
    let path = log.path();
    let header = log.header()?;
    let index = log.index(&header)?;
    let mut cat = catalog::Catalog::default();
    let (start, end) = (header.start_mono_ns, header.end_mono_ns);
    let mut seen = 0u64;
    if let Some(since) = &opts.since
        && (since.pid != header.pid || since.start_mono_ns != header.start_mono_ns)
    {
        return Err(crate::Error::Since {
            path: since.path.clone(),
            why: format!(
                "a snapshot of another process (pid {}) than {}'s (pid {})",
                since.pid,
                path.display(),
                header.pid
            ),
        });
    }
    // A fork child starts with what its parent had live at the fork.
    let mut inherit_warning = None;
    let inherited = if opts.no_inherit {
        None
    } else {
        crate::analysis::inherit::of_header(path, &header, &opts.peers).unwrap_or_else(|e| {
            inherit_warning = Some(e.to_string());
            None
        })
    };
    let seed = inherited.as_ref().map(|i| &i.seed);
    let mut out = replay::replay_seeded(log, &index, replay::Config::of(&header), seed, |ev| {
        seen += 1;
        if let Some(p) = &opts.progress
            && seen.is_multiple_of(PROGRESS_EVERY)
        {
            let done = (end > start)
                .then(|| (ev.time.saturating_sub(start) as f64 / (end - start) as f64).min(1.0));
            (p.0)(Stage::Reading, done);
        }
        cat.observe(ev, log, &index)
    })?;
    if let Some(i) = &inherited {
        i.annotate(&mut cat, &mut out.first_use);
    }
    // A stack the preload defined more than once is one stack from here on.
    let aliases = cat.stack_aliases(&out.first_use);
    out.merge_stacks(&aliases);

    let state = ExitHow::from_u32(header.state);
    // A raw log whose writer still runs: not an abnormal end.
    let live = !log.is_packed() && crate::log::live::writer(log.path(), &header).is_some();
    let ended = match state {
        Some(ExitHow::Exit) => Ended::Exit,
        Some(ExitHow::UnderscoreExit) => Ended::UnderscoreExit,
        Some(ExitHow::Exec) => Ended::Exec,
        Some(ExitHow::Running) | None if header.snapshot_at != 0 => Ended::Snapshot,
        Some(ExitHow::Running) | None if live => Ended::Running,
        Some(ExitHow::Running) | None => Ended::Abnormal,
    };
    let (mut exit_status, mut signal) = (None, None);
    if let Some(ws) = header.run_wait_status {
        if libc::WIFEXITED(ws) {
            exit_status = Some(libc::WEXITSTATUS(ws));
        } else if libc::WIFSIGNALED(ws) {
            signal = Some(libc::WTERMSIG(ws));
        }
    } else if let Some((how, status)) = cat.exit {
        if how == ExitHow::Exit as u8 || how == ExitHow::UnderscoreExit as u8 {
            exit_status = Some(status as i32);
        }
    } else if ended == Ended::UnderscoreExit {
        exit_status = Some(header.exit_status);
    }
    let end = if header.snapshot_at != 0 {
        header.snapshot_at
    } else if header.end_mono_ns != 0 {
        header.end_mono_ns
    } else {
        cat.last_time.unwrap_or(header.start_mono_ns)
    };
    if let Some(since) = &opts.since
        && since.time > end
    {
        return Err(crate::Error::Since {
            path: since.path.clone(),
            why: format!(
                "taken after the end of {}: give the earlier snapshot to --since",
                path.display()
            ),
        });
    }
    // Narrow the leaks to the blocks born after `since` and old enough.
    let narrowed = (opts.since.is_some() || opts.older_than.is_some()).then(|| {
        let (all_bytes, all_blocks) = (out.leaked_heap_bytes, out.leaked_heap_blocks);
        // Blocks lost at `since` but freed by now (`out.live` is sorted by address).
        let mut lost_then_freed = (0u64, 0u64);
        for &(addr, time, size) in opts.since.iter().flat_map(|s| &s.lost) {
            let still = out
                .live
                .binary_search_by_key(&addr, |(a, _)| *a)
                .is_ok_and(|i| out.live[i].1.time == time);
            if !still {
                lost_then_freed.0 += size;
                lost_then_freed.1 += 1;
            }
        }
        let all_by_stack = std::mem::take(&mut out.heap_leaks);
        let after = opts.since.as_ref().map_or(0, |s| s.time);
        let born_by = opts.older_than.map(|d| end.saturating_sub(d));
        out.live
            .retain(|(_, b)| b.time > after && born_by.is_none_or(|t| b.time <= t));
        out.heap_leaks = replay::blocks_by_stack(out.live.iter().map(|(_, b)| b));
        out.leaked_heap_bytes = out.live.iter().map(|(_, b)| b.size).sum();
        out.leaked_heap_blocks = out.live.iter().map(|(_, b)| b.count as u64).sum();
        (all_bytes, all_blocks, all_by_stack, lost_then_freed)
    });
    let cmdline = {
        let mut v: Vec<String> = header
            .cmdline
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if v.last().is_some_and(|s| s.is_empty()) {
            v.pop();
        }
        v
    };
    let process = Process {
        pid: header.pid,
        ppid: header.ppid,
        exe: String::from_utf8_lossy(header.exe).into_owned(),
        cmdline,
        forked_from: (header.forked_from != 0).then_some(header.forked_from),
        ended,
        exit_status,
        signal,
        exec: cat.exec.as_ref().map(|e| e.0.clone()),
        forks: cat.children.iter().map(|c| c.pid as u64).collect(),
        lineage: crate::analysis::lineage::Proc {
            pid: header.pid,
            ppid: header.ppid,
            forked_from: header.forked_from,
            start: header.start_mono_ns,
            children: cat.children.clone(),
            exec: cat.exec.clone().filter(|_| ended == Ended::Exec),
        },
        duration_ms: ms_since(header.start_mono_ns, end),
    };

    let c = &out.counts;
    let brk_growth_bytes = if header.initial_brk != 0 && header.final_brk != 0 {
        (header.final_brk as i64).wrapping_sub(header.initial_brk as i64)
    } else if let Some(last) = c.last_brk {
        let first = if header.initial_brk != 0 {
            header.initial_brk
        } else {
            c.first_brk.unwrap_or(last)
        };
        (last as i64).wrapping_sub(first as i64)
    } else {
        0
    };
    let mut summary = Summary {
        allocations: c.allocations,
        frees: c.frees,
        bytes_allocated: c.bytes_allocated,
        temporary_allocations: c.temporary,
        temporary_bytes: c.temporary_bytes,
        peak_heap_bytes: c.peak_heap_bytes,
        peak_heap_time_ms: if c.peak_event.is_some() {
            ms_since(header.start_mono_ns, c.peak_heap_time)
        } else {
            0.0
        },
        leaked_heap_bytes: out.leaked_heap_bytes,
        leaked_heap_blocks: out.leaked_heap_blocks,
        leaked_mmap_bytes: out.leaked_mmap_bytes,
        leaked_mmap_regions: out.leaked_mmap_regions,
        peak_mmap_bytes: c.peak_mmap_bytes,
        mmap_calls: c.mmap_calls,
        munmap_calls: c.munmap_calls,
        brk_growth_bytes,
        events_lost: header.events_lost.max(cat.lost_in_records),
        torn_records: cat.torn_records,
        unknown_frees: c.unknown_frees,
        libc_freeres_frees: c.libc_freeres_frees,
        ended_abnormally: ended == Ended::Abnormal,
        truncated: index.truncated,
        anomalies: c.anomalies,
        empty_chunk_slots: index.empty_slots,
        nested_hooks: header.nested_hooks as u64,
        abandoned_hooks: header.abandoned_hooks as u64,
        malloc_not_interposed: header.flags & memtrace_format::hdr::flag::MALLOC_NOT_INTERPOSED
            != 0,
        file_size_limit: header.flags & memtrace_format::hdr::flag::FILE_SIZE_LIMIT != 0,
        log_fd_replaced: header.flags & memtrace_format::hdr::flag::LOG_FD_REPLACED != 0,
        seccomp_filter: header.flags & memtrace_format::hdr::flag::SECCOMP != 0,
        mapping_clobbered: header.flags & memtrace_format::hdr::flag::MAPPING_CLOBBERED != 0,
        unwind_checked: header.unwind_checked as u64,
        unwind_mismatched: header.unwind_mismatched as u64,
        truncated_stacks: truncated_stacks(&cat),
        sample_interval: header.sample_interval,
        sample_overflow: header.sample_overflow as u64,
        leak_kinds: None,
        scan: cat.scan_done,
        inherited_blocks: inherited.as_ref().map_or(0, |i| i.blocks()),
        inherited_bytes: inherited.as_ref().map_or(0, |i| i.bytes()),
        inherited: inherited.as_ref().map(|i| InheritedFrom {
            parent_log: i.parent_log.clone(),
            parent_pid: i.parent_pid,
            mmap_regions: i.seed.regions.len() as u64,
            mmap_bytes: i.mmap_bytes(),
        }),
        leak_heuristics: Heurs::default(),
    };

    // Each stack is symbolized once, however many lists report it.
    let mut resolved: HashMap<u32, Arc<[Frame]>> = HashMap::new();
    let all_stacks = (out.heap_leaks.len() + out.mmap_leaks.len() + out.peak.len())
        .saturating_add(out.allocated.len() + out.temporary.len() + out.brk.len())
        .max(1);
    let mut resolve = |stack: u32| -> Arc<[Frame]> {
        let n = resolved.len();
        if let Some(p) = &opts.progress
            && n.is_multiple_of(64)
        {
            (p.0)(
                Stage::Symbolizing,
                Some((n as f64 / all_stacks as f64).min(1.0)),
            );
        }
        resolved
            .entry(stack)
            .or_insert_with(|| resolve_stack(&mut sym, &cat, &out.first_use, stack).into())
            .clone()
    };
    let all = opts.top.unwrap_or(usize::MAX);
    let mut sites = |v: &[StackTotal], limit: usize| -> Vec<Site> {
        v.iter()
            .take(limit)
            .map(|t| Site {
                bytes: t.bytes,
                count: t.count,
                func: out.leak_funcs.get(&t.stack).copied(),
                kinds: None,
                heuristics: Heurs::default(),
                stack: resolve(t.stack),
            })
            .collect()
    };
    let mut heap_leaks = sites(&out.heap_leaks, all);
    // Reachability, when the scan at exit classified the live blocks.
    let mut leak_kinds: Option<Kinds> = None;
    let scanned = cat
        .scan_done
        .is_some_and(|d| d.status == memtrace_format::kernel::SCAN_OK);
    if !cat.reach.is_empty() || scanned {
        let mut by_stack: HashMap<u32, Kinds> = HashMap::new();
        let mut total: Kinds = [(0, 0); 4];
        let mut heur_by_stack: HashMap<u32, Heurs> = HashMap::new();
        let mut heur_total = Heurs::default();
        for (addr, b) in &out.live {
            let k = cat
                .reach
                .get(addr)
                .copied()
                .unwrap_or(crate::analysis::reach::Kind::DefinitelyLost);
            let i = crate::analysis::reach::Kind::ALL
                .iter()
                .position(|x| *x == k)
                .unwrap_or(0);
            let e = &mut by_stack.entry(b.stack).or_insert([(0, 0); 4])[i];
            e.0 = e.0.saturating_add(b.size);
            e.1 += b.count as u64;
            total[i].0 = total[i].0.saturating_add(b.size);
            total[i].1 += b.count as u64;
            if k == crate::analysis::reach::Kind::StillReachable
                && let Some(h) = cat.reach_heuristics.get(addr)
            {
                let e = &mut heur_by_stack.entry(b.stack).or_default()[h.index()];
                e.0 = e.0.saturating_add(b.size);
                e.1 += b.count as u64;
                let e = &mut heur_total[h.index()];
                e.0 = e.0.saturating_add(b.size);
                e.1 += b.count as u64;
            }
        }
        for (site, t) in heap_leaks.iter_mut().zip(&out.heap_leaks) {
            site.kinds = by_stack.get(&t.stack).copied();
            site.heuristics = heur_by_stack.get(&t.stack).copied().unwrap_or_default();
        }
        leak_kinds = Some(total);
        summary.leak_heuristics = heur_total;
    }
    summary.leak_kinds = leak_kinds;
    let mmap_leaks = sites(&out.mmap_leaks, all);
    let peak = sites(&out.peak, opts.top.unwrap_or(DEFAULT_PEAK_TOP));
    let allocated = sites(&out.allocated, opts.top.unwrap_or(DEFAULT_PEAK_TOP));
    let temporary = sites(&out.temporary, opts.top.unwrap_or(DEFAULT_PEAK_TOP));
    let mapped_then = match &cat.kernel.maps_at_peak {
        Some((t, _)) => {
            let v = replay::mapped_at(log, &index, replay::Config::of(&header), *t)?;
            let v = replay::merge_sorted(v, &aliases);
            sites(&v, opts.top.unwrap_or(DEFAULT_PEAK_TOP))
        }
        None => Vec::new(),
    };

    let live_filter = narrowed.map(|(all_bytes, all_blocks, all_by_stack, lost_then_freed)| {
        let mut growth = Vec::new();
        if let Some(since) = &opts.since {
            // The snapshot's ids, as this log merges them.
            let mut then: HashMap<u32, (u64, u64)> = HashMap::new();
            for (&stack, &(b, c)) in &since.by_stack {
                let e = then
                    .entry(aliases.get(&stack).copied().unwrap_or(stack))
                    .or_default();
                e.0 = e.0.saturating_add(b);
                e.1 = e.1.saturating_add(c);
            }
            let mut stacks: Vec<u32> = all_by_stack.iter().map(|t| t.stack).collect();
            stacks.extend(then.keys().copied());
            stacks.sort_unstable();
            stacks.dedup();
            let now: HashMap<u32, (u64, u64)> = all_by_stack
                .iter()
                .map(|t| (t.stack, (t.bytes, t.count)))
                .collect();
            for stack in stacks {
                let (nb, nc) = now.get(&stack).copied().unwrap_or_default();
                let (tb, tc) = then.get(&stack).copied().unwrap_or_default();
                if (nb, nc) != (tb, tc) {
                    growth.push(Growth {
                        site: Site {
                            bytes: nb,
                            count: nc,
                            func: out.leak_funcs.get(&stack).copied(),
                            kinds: None,
                            heuristics: Default::default(),
                            stack: resolve(stack),
                        },
                        then_bytes: tb,
                        then_count: tc,
                    });
                }
            }
            growth.sort_by_key(|g| {
                (
                    std::cmp::Reverse(g.site.bytes as i128 - g.then_bytes as i128),
                    std::cmp::Reverse(g.site.count as i128 - g.then_count as i128),
                )
            });
            growth.truncate(all);
        }
        LiveFilter {
            since: opts.since.as_ref().map(|s| {
                (
                    s.path.clone(),
                    ms_since(header.start_mono_ns, s.time),
                    s.bytes,
                    s.blocks,
                )
            }),
            older_than_ms: opts.older_than.map(|d| d as f64 / 1e6),
            all_bytes,
            all_blocks,
            growth,
            lost_then_freed,
        }
    });

    let brk = out
        .brk
        .iter()
        .take(all)
        .map(|b| BrkSite {
            bytes: b.bytes,
            stack: resolve(b.stack),
        })
        .collect();

    let start = header.start_mono_ns;
    let timeline: Vec<TimePoint> = out
        .series
        .iter()
        .map(|p| TimePoint {
            t_ms: ms_since(start, p.time),
            heap: p.heap,
            mmap: p.mmap,
        })
        .collect();
    let kernel = cat.kernel.peak_rss().map(|(peak_t, peak)| {
        let k = &cat.kernel;
        let at = |(t, m): &(u64, crate::analysis::kernel::MapTable)| (ms_since(start, *t), *m);
        let maps_at_peak = k.maps_at_peak.as_ref().map(at);
        let heap_at_maps_peak =
            maps_at_peak.and_then(|(t, _)| timeline.iter().rev().find(|p| p.t_ms <= t).copied());
        KernelReport {
            samples: k
                .samples
                .iter()
                .map(|(t, c)| (ms_since(start, *t), *c))
                .collect(),
            peak: (ms_since(start, peak_t), peak),
            maps_at_peak,
            maps_at_end: k.maps_at_end.as_ref().map(at),
            heap_at_maps_peak,
            mmap_at_maps_peak: mapped_then,
        }
    });

    let mut warnings = Vec::new();
    warnings.extend(inherit_warning);
    warnings.extend(inherited.iter().flat_map(|i| i.notes.iter().cloned()));
    if index.truncated {
        warnings.push(format!(
            "{} is truncated (the file ends before the {} bytes its header reserves): reporting what it holds",
            path.display(),
            header.reserved_end
        ));
    }
    for (m, why) in sym.unusable(&cat.modules) {
        if !Path::new(&*m.path).is_absolute() {
            continue; // the vdso and friends: nothing to say
        }
        let why = match why {
            Unusable::Missing => "file not found".to_owned(),
            Unusable::BuildIdMismatch => "build-id differs from the traced one".to_owned(),
            Unusable::Unreadable(e) => e,
        };
        warnings.push(format!("no symbols for {}: {why}", m.path));
    }

    Ok(Report {
        path: path.to_owned(),
        format_version: header.version,
        process,
        summary,
        heap_leaks,
        heap_leak_stacks: out.heap_leaks.len() as u64,
        mmap_leaks,
        mmap_leak_stacks: out.mmap_leaks.len() as u64,
        peak,
        allocated,
        temporary,
        brk,
        timeline,
        kernel,
        live_filter,
        warnings,
    })
}

fn resolve_stack(
    sym: &mut Symbolizer,
    cat: &Catalog,
    first_use: &crate::hash::FastMap<u32, u64>,
    stack: u32,
) -> Vec<Frame> {
    match cat.stacks.get(&stack) {
        Some(frames) => sym.stack(&cat.modules, frames, first_use.get(&stack).copied()),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::*;
    use memtrace_format::hdr::off;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("memtrace-report-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A clean log: process fields, wait status, leaks with unresolved stacks.
    #[test]
    fn analyze_small_log() {
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234, 0x5678])
            .alloc(T0 + 2_000_000, 0x10, 40, 1)
            .alloc(T0 + 3_000_000, 0x20, 2, 9);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 5_000_000);
        b.set_u32(off::RUN_FLAGS, 1)
            .set_u32(off::RUN_WAIT_STATUS, 3 << 8);
        let d = tmpdir("small");
        let p = write(&d, "a.mtr", &b.bytes);
        let r = analyze(&p, &Options::default()).unwrap();
        assert_eq!(r.process.cmdline, vec!["prog", "arg"]);
        assert_eq!(r.process.ended, Ended::Exit);
        assert_eq!(r.process.exit_status, Some(3));
        assert_eq!(r.process.duration_ms, 5.0);
        assert_eq!(r.summary.peak_heap_time_ms, 3.0);
        assert_eq!(r.heap_leaks.len(), 2);
        assert_eq!(r.heap_leaks[0].stack.len(), 2);
        assert_eq!(r.heap_leaks[0].stack[0].address, 0x1234);
        assert!(r.heap_leaks[1].stack.is_empty());
        assert!(!r.summary.ended_abnormally && !r.summary.truncated);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// REACH records: a log with the heuristic codes gives each leak and the summary the
    /// heuristics' breakdown of its still reachable blocks (a block listed under a
    /// heuristic only is still reachable too); one without them (older logs) gives an
    /// empty one. The text and JSON reports say it.
    #[test]
    fn reach_records_with_heuristics() {
        use memtrace_format::{encode, kernel::*};
        let with = |heur: bool| -> Report {
            let mut c = LogBuilder::chunk(T0);
            c.stack(1, &[0x1234])
                .stack(2, &[0x5678])
                .alloc(T0 + 1, 0x1000, 88, 1)
                .alloc(T0 + 2, 0x2000, 56, 1)
                .alloc(T0 + 3, 0x3000, 8, 1)
                .alloc(T0 + 4, 0x4000, 72, 2);
            c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_POSSIBLE, 0x4000]))
                .put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE, 0x1000, 0x1000]));
            if heur {
                c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE_NEWARRAY, 0x1000]))
                    .put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE_LENGTH64, 0x3000]));
            } else {
                c.put(|b| encode::kernel(b, 0, KIND_REACH, &[REACH_REACHABLE, 0x3000]));
            }
            let mut b = LogBuilder::new();
            b.push(0, &c).ended(T0 + 10);
            analyze_bytes(&b.bytes, &Options::default()).unwrap()
        };
        let r = with(true);
        assert_eq!(
            r.summary.leak_kinds,
            Some([(0, 0), (0, 0), (72, 1), (152, 3)])
        );
        assert_eq!(r.summary.leak_heuristics, [(0, 0), (8, 1), (88, 1), (0, 0)]);
        let one = r.heap_leaks.iter().find(|s| s.bytes == 152).unwrap();
        assert_eq!(one.heuristics, [(0, 0), (8, 1), (88, 1), (0, 0)]);
        assert_eq!(
            kinds_text_via(one.kinds.as_ref().unwrap(), &one.heuristics),
            "152 bytes in 3 blocks still reachable, of which via heuristic length64: 8 bytes \
             in 1 block, newarray: 88 bytes in 1 block"
        );
        let two = r.heap_leaks.iter().find(|s| s.bytes == 72).unwrap();
        assert_eq!(two.heuristics, Heurs::default());
        let mut text = Vec::new();
        crate::render::text::render(&r, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "    still reachable: 152 bytes in 3 blocks\n\
                 \x20                      of which reachable via heuristic:\n\
                 \x20                        length64           : 8 bytes in 1 block\n\
                 \x20                        newarray           : 88 bytes in 1 block\n"
            ),
            "{text}"
        );
        let mut json = Vec::new();
        crate::render::json::render(&r, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v["summary"]["leak_kinds"]["reachable"],
            serde_json::json!({"bytes": 152, "count": 3, "heuristics": {
                "length64": {"bytes": 8, "count": 1}, "newarray": {"bytes": 88, "count": 1}}})
        );
        assert_eq!(
            v["summary"]["leak_kinds"]["possible"],
            serde_json::json!({"bytes": 72, "count": 1})
        );

        let old = with(false);
        assert_eq!(old.summary.leak_kinds, r.summary.leak_kinds);
        assert_eq!(old.summary.leak_heuristics, Heurs::default());
        let mut text = Vec::new();
        crate::render::text::render(&old, &mut text).unwrap();
        assert!(!String::from_utf8(text).unwrap().contains("heuristic"));
        let mut json = Vec::new();
        crate::render::json::render(&old, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v["summary"]["leak_kinds"]["reachable"]["heuristics"],
            serde_json::json!({})
        );
    }

    /// A truncated log still reports and says so; bad inputs are errors naming the file.
    #[test]
    fn truncated_and_bad_inputs() {
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, 40, 1);
        let mut b = LogBuilder::new();
        b.push(0, &c).empty_slot();
        let d = tmpdir("bad");
        let p = write(&d, "trunc.mtr", &b.bytes[..8192 + 100]);
        let r = analyze(&p, &Options::default()).unwrap();
        assert!(r.summary.truncated && r.summary.ended_abnormally);
        assert_eq!(r.summary.leaked_heap_bytes, 40);
        assert!(r.warnings[0].contains("truncated"));

        let cases: [(&str, &[u8], &str); 5] = [
            ("empty.mtr", b"", "empty file"),
            (
                "text.mtr",
                b"hello world, this is not a log",
                "not a memtrace log",
            ),
            ("short.mtr", &b.bytes[..100], "truncated inside the header"),
            (
                "v2.mtr",
                &{
                    let mut v = b.bytes.clone();
                    v[8] = 2;
                    v
                },
                "version 2",
            ),
            (
                "chunk.mtr",
                &{
                    let mut v = b.bytes.clone();
                    v[4096] ^= 0xff;
                    v
                },
                "corrupt chunk",
            ),
        ];
        for (name, bytes, msg) in cases {
            let p = write(&d, name, bytes);
            let e = analyze(&p, &Options::default()).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(msg), "{name}: {e}");
        }
        let e = analyze(&d.join("missing.mtr"), &Options::default()).unwrap_err();
        assert!(e.to_string().contains("missing.mtr"));
        std::fs::remove_dir_all(d).unwrap();
    }

    /// In-memory analysis: every prefix and many byte flips of a small log give
    /// a report or an error, never a panic.
    #[test]
    fn analyze_bytes_on_damaged_logs() {
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234, 0x5678])
            .alloc(T0 + 2, 0x10, 40, 1)
            .realloc(T0 + 3, T0 + 4, 0x10, 0x20, 80, 1)
            .mmap(T0 + 5, 0x7000_0000, 8192, 0x22, 1)
            .munmap(T0 + 6, 0x7000_1000, 4096);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        let r = analyze_bytes(&b.bytes, &Options::default()).unwrap();
        assert_eq!(r.summary.leaked_heap_bytes, 80);
        assert_eq!(r.heap_leaks[0].stack.len(), 2);
        let body = 4096 + memtrace_format::CHUNK_HEADER_SIZE;
        for cut in (0..b.bytes.len())
            .step_by(97)
            .chain(body..body + c.body.len())
        {
            let _ = analyze_bytes(&b.bytes[..cut], &Options::default());
        }
        for i in body..body + c.body.len() {
            for bit in 0..8 {
                let mut v = b.bytes.clone();
                v[i] ^= 1 << bit;
                let _ = analyze_bytes(&v, &Options::default());
            }
        }
    }

    /// Every input of the fuzz corpus of the `analyze` target, and every crash
    /// the fuzzer ever saved, goes through the pipeline without a panic (on
    /// stable, in a debug build: integer overflow panics here too).
    #[test]
    fn fuzz_corpus_and_artifacts() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut n = 0;
        for dir in ["corpus/analyze", "artifacts/analyze"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
                continue;
            };
            for e in entries {
                let bytes = std::fs::read(e.unwrap().path()).unwrap();
                if let Ok(r) = analyze_bytes(&bytes, &Options::default()) {
                    crate::render::text::render(&r, &mut std::io::sink()).unwrap();
                    crate::render::json::render(&r, &mut std::io::sink()).unwrap();
                }
                n += 1;
            }
        }
        assert!(n > 0, "no corpus in {}", fuzz.display());
    }
}
