//! The analysis pass: one log's header, index, catalog and replay made into
//! a [`Report`], in named steps.

use std::collections::HashSet;
use std::path::Path;

use memtrace_format::{ExitHow, Header};

use crate::analysis::catalog::Catalog;
use crate::analysis::inherit::Inherited;
use crate::analysis::replay::{self, Outcome};
use crate::analysis::symbolize::{Symbolizer, Unusable};
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::{Index, Log};

use super::questions::{self, Tally};
use super::stacks::{self, Stacks};
use super::{
    BrkSite, DEFAULT_PEAK_TOP, Ended, Heurs, InheritedFrom, KernelReport, Options, PROGRESS_EVERY,
    Process, Report, Site, Stage, Summary, TimePoint, leak_kinds, live, ms_since, window,
};

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
    live::check_same_process(opts, path, &header)?;
    let (inherited, inherit_warning) = inheritance(path, &header, opts);
    let (cat, mut out, aliases, tally) = read(log, &index, &header, inherited.as_ref(), opts)?;
    let ended = ended(log, &header);
    let end = end_time(&header, &cat);
    live::check_taken_before(opts, path, end)?;
    // Narrow the leaks to the blocks born after `since` and old enough, or
    // to the time window's blocks live at its end.
    let narrowed = live::narrow(&mut out, opts, end);
    let seed = inherited.as_ref().map(|i| &i.seed);
    let window = in_window(log, &index, &header, seed, opts, end, &mut out, &aliases)?;
    let process = process(&header, &cat, ended, end);
    let mut summary = summary(&header, &index, &cat, &out, ended, inherited.as_ref());
    // The kinds found at the end are not those of blocks live before it.
    let classified = !window.as_ref().is_some_and(window::Window::before_end);
    summary.window = window;

    let entries = stacks::entries(&out);
    let maps = (&out.first_use, &out.leak_funcs);
    let mut stacks = Stacks::new(&mut sym, &cat, maps, entries, opts.progress.as_ref());
    let all = opts.top.unwrap_or(usize::MAX);
    let top = opts.top.unwrap_or(DEFAULT_PEAK_TOP);
    // heaptrack_print's questions; under `--filter`, every list narrowed.
    let lists = questions::Lists {
        heap_leaks: &mut out.heap_leaks,
        mmap_leaks: &mut out.mmap_leaks,
        peak: &mut out.peak,
        allocated: &mut out.allocated,
        temporary: &mut out.temporary,
        brk: &mut out.brk,
    };
    let (questions, kept) = questions::answer(&opts.questions, &mut stacks, lists, tally, top);
    let mut heap_leaks = stacks.sites(&out.heap_leaks, all);
    // Reachability, when the scan at exit classified the live blocks.
    let kinds = classified.then(|| leak_kinds::classify(&cat, &out, &mut heap_leaks));
    if let Some((total, heur_total)) = kinds.flatten() {
        summary.leak_kinds = Some(total);
        summary.leak_heuristics = heur_total;
    }
    let mmap_leaks = stacks.sites(&out.mmap_leaks, all);
    let peak = stacks.sites(&out.peak, top);
    let allocated = stacks.sites(&out.allocated, top);
    let temporary = stacks.sites(&out.temporary, top);
    let mapped = mapped_then(
        log,
        &index,
        &header,
        &cat,
        &out,
        &aliases,
        &mut stacks,
        kept,
        top,
    )?;
    let start = header.start_mono_ns;
    let mut live_filter =
        narrowed.map(|n| live::filter(n, opts, &aliases, &mut stacks, start, all));
    if let (Some(lf), Some(p)) = (live_filter.as_mut(), &opts.questions.filter) {
        lf.growth
            .retain(|g| g.site.stack.iter().any(|f| p.frame(f)));
    }
    let brk = brk_sites(&out, &mut stacks, all);

    let timeline = timeline(&out, start);
    let kernel = kernel(&cat, start, &timeline, mapped);
    let warnings = warnings(
        path,
        &header,
        &index,
        inherit_warning,
        inherited.as_ref(),
        &sym,
        &cat,
    );
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
        questions,
    })
}

/// The first `all` stacks of explicit brk/sbrk growth, resolved.
fn brk_sites(out: &Outcome, stacks: &mut Stacks<'_>, all: usize) -> Vec<BrkSite> {
    out.brk
        .iter()
        .take(all)
        .map(|b| BrkSite {
            bytes: b.bytes,
            stack: stacks.resolve(b.stack),
        })
        .collect()
}

/// The program's own mappings, by stack, when the mappings' RSS was highest
/// (none when `memtrace run` did not sample them); under `--filter`, only
/// the stacks `kept`. Rebuilt from the main pass's journal (`out`) of the
/// mappings' changes; the log is replayed again up to that moment only when
/// the journal gave up, or when the moment is past a snapshot's cut (whose
/// later events the main pass left out).
#[allow(clippy::too_many_arguments)]
fn mapped_then(
    log: &Log,
    index: &Index,
    header: &Header<'_>,
    cat: &Catalog,
    out: &Outcome,
    aliases: &FastMap<u32, u32>,
    stacks: &mut Stacks<'_>,
    mut kept: Option<questions::Kept<'_>>,
    top: usize,
) -> Result<Vec<Site>> {
    let Some((t, _)) = &cat.kernel.maps_at_peak else {
        return Ok(Vec::new());
    };
    let cfg = replay::Config::of(header);
    let rebuilt = (cfg.until == 0 || *t <= cfg.until)
        .then(|| out.journal.at(*t))
        .flatten();
    let v = match rebuilt {
        Some(regions) => regions.by_stack(),
        None => replay::mapped_at(log, index, cfg, *t)?,
    };
    let mut v = replay::merge_sorted(v, aliases);
    if let Some(k) = kept.as_mut() {
        v.retain(|t| k.keeps(stacks, t.stack));
    }
    Ok(stacks.sites(&v, top))
}

/// With `--from`/`--to`: narrows `out`'s heap leaks to the window's blocks
/// live at its end, replaying the log once more up to it (`seed`: a fork
/// child's inheritance, as the main pass had it); `end`: the log's end.
#[allow(clippy::too_many_arguments)]
fn in_window(
    log: &Log,
    index: &Index,
    header: &Header<'_>,
    seed: Option<&replay::Seed>,
    opts: &Options,
    end: u64,
    out: &mut Outcome,
    aliases: &FastMap<u32, u32>,
) -> Result<Option<window::Window>> {
    if !opts.window.any() {
        return Ok(None);
    }
    if opts.since.is_some() || opts.older_than.is_some() {
        return Err(crate::Error::Window(
            "--from and --to do not combine with --since or --older-than".into(),
        ));
    }
    let start = header.start_mono_ns;
    let duration = end.saturating_sub(start);
    let (from, to) = window::bounds(&opts.window, duration)?;
    let src = window::Source {
        log,
        index,
        cfg: replay::Config::of(header),
        seed,
        start,
    };
    window::narrow(&src, (from, to, duration), out, aliases).map(Some)
}

/// A fork child starts with what its parent had live at the fork: that
/// inheritance (none with [`Options::no_inherit`]), or the warning saying
/// why it could not be read.
fn inheritance(
    path: &Path,
    header: &Header<'_>,
    opts: &Options,
) -> (Option<Inherited>, Option<String>) {
    if opts.no_inherit {
        return (None, None);
    }
    match crate::analysis::inherit::of_header(path, header, &opts.peers) {
        Ok(inherited) => (inherited, None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// What the pass over the events gives: the catalog, the replay's outcome,
/// the stack aliases folded in, and the size histogram's tally if asked.
type Read = (Catalog, Outcome, FastMap<u32, u32>, Option<Tally>);

/// The pass over the events: the replay, seeded with the inheritance, with
/// the catalog riding along and progress reported now and then. A stack the
/// preload defined more than once is one stack from here on: the aliases
/// are folded in, and returned for the lists made later. The size
/// histogram's tally rides along when asked for.
fn read(
    log: &Log,
    index: &Index,
    header: &Header<'_>,
    inherited: Option<&Inherited>,
    opts: &Options,
) -> Result<Read> {
    let mut cat = Catalog::default();
    let mut tally = opts
        .questions
        .histogram
        .then(|| Tally::new(header.sample_interval));
    let (start, end) = (header.start_mono_ns, header.end_mono_ns);
    let mut seen = 0u64;
    let seed = inherited.map(|i| &i.seed);
    let mut out = replay::replay_seeded(log, index, replay::Config::of(header), seed, |ev| {
        seen += 1;
        if let Some(p) = &opts.progress
            && seen.is_multiple_of(PROGRESS_EVERY)
        {
            let done = (end > start)
                .then(|| (ev.time.saturating_sub(start) as f64 / (end - start) as f64).min(1.0));
            (p.0)(Stage::Reading, done);
        }
        if let Some(t) = tally.as_mut() {
            t.observe(ev);
        }
        cat.observe(ev, log, index)
    })?;
    if let Some(i) = inherited {
        i.annotate(&mut cat, &mut out.first_use);
    }
    let aliases = cat.stack_aliases(&out.first_use);
    out.merge_stacks(&aliases);
    Ok((cat, out, aliases, tally))
}

/// How the process ended, from the header's state.
fn ended(log: &Log, header: &Header<'_>) -> Ended {
    let state = ExitHow::from_u32(header.state);
    // A raw log whose writer still runs: not an abnormal end.
    let live = !log.is_packed() && crate::log::live::writer(log.path(), header).is_some();
    match state {
        Some(ExitHow::Exit) => Ended::Exit,
        Some(ExitHow::UnderscoreExit) => Ended::UnderscoreExit,
        Some(ExitHow::Exec) => Ended::Exec,
        Some(ExitHow::Running) | None if header.snapshot_at != 0 => Ended::Snapshot,
        Some(ExitHow::Running) | None if live => Ended::Running,
        Some(ExitHow::Running) | None => Ended::Abnormal,
    }
}

/// Exit status and terminating signal: from `memtrace run`'s wait status,
/// else the EXIT record, else the header (for `_exit`).
fn exit_status(header: &Header<'_>, cat: &Catalog, ended: Ended) -> (Option<i32>, Option<i32>) {
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
    (exit_status, signal)
}

/// When the log ends (CLOCK_MONOTONIC ns): the snapshot's moment, the
/// header's end, else the last timed record.
fn end_time(header: &Header<'_>, cat: &Catalog) -> u64 {
    if header.snapshot_at != 0 {
        header.snapshot_at
    } else if header.end_mono_ns != 0 {
        header.end_mono_ns
    } else {
        cat.last_time.unwrap_or(header.start_mono_ns)
    }
}

/// The command line, its NUL-separated arguments.
fn cmdline(header: &Header<'_>) -> Vec<String> {
    let mut v: Vec<String> = header
        .cmdline
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if v.last().is_some_and(|s| s.is_empty()) {
        v.pop();
    }
    v
}

/// The traced process, ended at `end`.
fn process(header: &Header<'_>, cat: &Catalog, ended: Ended, end: u64) -> Process {
    let (exit_status, signal) = exit_status(header, cat, ended);
    Process {
        pid: header.pid,
        ppid: header.ppid,
        exe: String::from_utf8_lossy(header.exe).into_owned(),
        cmdline: cmdline(header),
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
    }
}

/// Net program-break growth: from the header's breaks when it has both,
/// else from the BRK records.
fn brk_growth(header: &Header<'_>, c: &replay::Counts) -> i64 {
    if header.initial_brk != 0 && header.final_brk != 0 {
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
    }
}

/// The totals, without the reachability kinds (filled in later).
fn summary(
    header: &Header<'_>,
    index: &Index,
    cat: &Catalog,
    out: &Outcome,
    ended: Ended,
    inherited: Option<&Inherited>,
) -> Summary {
    use memtrace_format::hdr::flag;
    let c = &out.counts;
    Summary {
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
        brk_growth_bytes: brk_growth(header, c),
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
        malloc_not_interposed: header.flags & flag::MALLOC_NOT_INTERPOSED != 0,
        file_size_limit: header.flags & flag::FILE_SIZE_LIMIT != 0,
        log_fd_replaced: header.flags & flag::LOG_FD_REPLACED != 0,
        seccomp_filter: header.flags & flag::SECCOMP != 0,
        mapping_clobbered: header.flags & flag::MAPPING_CLOBBERED != 0,
        unwind_checked: header.unwind_checked as u64,
        unwind_mismatched: header.unwind_mismatched as u64,
        truncated_stacks: truncated_stacks(cat),
        sample_interval: header.sample_interval,
        sample_overflow: header.sample_overflow as u64,
        leak_kinds: None,
        scan: cat.scan_done,
        inherited_blocks: inherited.map_or(0, |i| i.blocks()),
        inherited_bytes: inherited.map_or(0, |i| i.bytes()),
        inherited: inherited.map(|i| InheritedFrom {
            parent_log: i.parent_log.clone(),
            parent_pid: i.parent_pid,
            mmap_regions: i.seed.regions.len() as u64,
            mmap_bytes: i.mmap_bytes(),
        }),
        leak_heuristics: Heurs::default(),
        window: None,
    }
}

/// Distinct cut stacks of the catalog by why they were cut (see
/// [`Summary::truncated_stacks`]). One stack defined under two ids (two
/// threads interning it at once) counts once.
fn truncated_stacks(cat: &Catalog) -> [u64; 3] {
    let mut seen: HashSet<(&[u32], memtrace_format::Cut)> = HashSet::new();
    let mut n = [0u64; 3];
    for (&id, &cut) in &cat.cut {
        let frames = cat.stacks.get(id).map_or(&[][..], |f| f.key());
        if seen.insert((frames, cut)) {
            n[cut as usize - 1] += 1;
        }
    }
    n
}

/// Live heap and mapped bytes over time, in ms since `start`.
fn timeline(out: &Outcome, start: u64) -> Vec<TimePoint> {
    out.series
        .iter()
        .map(|p| TimePoint {
            t_ms: ms_since(start, p.time),
            heap: p.heap,
            mmap: p.mmap,
        })
        .collect()
}

/// The kernel's view, when `memtrace run` sampled it; `mapped_then`: the
/// program's own mappings when the mappings' RSS was highest.
fn kernel(
    cat: &Catalog,
    start: u64,
    timeline: &[TimePoint],
    mapped_then: Vec<Site>,
) -> Option<KernelReport> {
    cat.kernel.peak_rss().map(|(peak_t, peak)| {
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
    })
}

/// Lines worth telling the user: the inheritance's troubles, truncation,
/// missing symbols.
fn warnings(
    path: &Path,
    header: &Header<'_>,
    index: &Index,
    inherit_warning: Option<String>,
    inherited: Option<&Inherited>,
    sym: &Symbolizer,
    cat: &Catalog,
) -> Vec<String> {
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
    warnings
}
