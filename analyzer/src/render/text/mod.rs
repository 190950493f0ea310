//! The text report: a summary block, then heap and mmap leaks with their
//! stacks, then the stacks holding the most heap at the peak, then brk, then
//! the kernel's view (module `kernel`).
//!
//! What makes the numbers incomplete (an abnormal end, lost events, a
//! truncated log) is stated right under the title, not buried at the end.
//! Frames read `#N function at file:line (module)`; unknown functions show
//! the address instead. heaptrack_print's questions (`--filter`,
//! `--histogram`, `--by function`) get sections of their own (module
//! `questions`), only when asked.

use std::io::{self, Write};

use self::kernel::kernel;
use crate::frames::Frame;
use crate::report::{Ended, Process, Report, Site, delta, duration};
use crate::units::{plural, signed, thousands};

mod kernel;
mod questions;
mod window;

pub use window::{bounds as window_bounds, unclassified};

fn frame(out: &mut dyn Write, i: usize, f: &Frame) -> io::Result<()> {
    write!(out, "    #{i} ")?;
    match &f.function {
        Some(func) => write!(out, "{func}")?,
        None => write!(out, "{}", crate::frames::address_text(f))?,
    }
    if let Some(file) = &f.file {
        write!(out, " at {file}")?;
        if let Some(line) = f.line {
            write!(out, ":{line}")?;
        }
    }
    match &f.module {
        Some(m) => write!(out, " ({m})")?,
        None => write!(out, " (no module)")?,
    }
    if f.inlined {
        write!(out, " [inlined]")?;
    }
    writeln!(out)
}

fn stack(out: &mut dyn Write, frames: &[Frame]) -> io::Result<()> {
    if frames.is_empty() {
        return writeln!(out, "    (stack not recorded)");
    }
    for (i, f) in frames.iter().enumerate() {
        frame(out, i, f)?;
    }
    Ok(())
}

fn sites(out: &mut dyn Write, list: &[Site], unit: (&str, &str)) -> io::Result<()> {
    for s in list {
        writeln!(out)?;
        writeln!(
            out,
            "  {} in {}",
            plural(s.bytes, "byte", "bytes"),
            plural(s.count, unit.0, unit.1)
        )?;
        if let Some(k) = &s.kinds {
            writeln!(
                out,
                "  ({})",
                crate::report::kinds_text_via(k, &s.heuristics)
            )?;
        }
        stack(out, &s.stack)?;
    }
    Ok(())
}

fn shown(n: usize, total: u64) -> String {
    if (n as u64) < total {
        format!(", the {n} largest shown")
    } else {
        String::new()
    }
}

/// How the process ended, in words: `exit(), exit status 0, after 1.500 ms`
/// (also used by the HTML report).
pub(crate) fn how_ended(p: &Process) -> String {
    let ended = match p.ended {
        Ended::Exit => "exit()".to_owned(),
        Ended::UnderscoreExit => "_exit()".to_owned(),
        Ended::Exec => match &p.exec {
            Some(path) => format!("exec of {path}"),
            None => "exec".to_owned(),
        },
        Ended::Abnormal => "abnormally".to_owned(),
        Ended::Snapshot => "not yet: it still ran at this snapshot".to_owned(),
        Ended::Running => {
            return format!(
                "still running (pid {}), {:.3} ms logged so far",
                p.pid, p.duration_ms
            );
        }
    };
    let mut how = ended;
    // After an exec, the status is the new image's: the process went on.
    let later = if p.ended == Ended::Exec {
        " (later, after the exec)"
    } else {
        ""
    };
    if let Some(st) = p.exit_status {
        how += &format!(", exit status {st}{later}");
    }
    if let Some(sig) = p.signal {
        how += &format!(", killed by signal {sig}{later}");
    }
    format!("{how}, after {:.3} ms", p.duration_ms)
}

/// What makes the numbers incomplete or estimates (an abnormal end, lost
/// events, truncation, sampling...), one sentence each (also used by the
/// HTML report).
pub(crate) fn notes(r: &Report) -> Vec<String> {
    let s = &r.summary;
    let mut notes = Vec::new();
    if s.ended_abnormally {
        notes.push(
            "the run ended abnormally (crash, abort or kill): everything recorded before is reported".to_owned(),
        );
    }
    if r.process.ended == Ended::Running {
        notes.push(format!(
            "pid {} is still running: only what it logged so far is reported",
            r.process.pid
        ));
    }
    if s.events_lost > 0 {
        notes.push(format!(
            "{} could not be recorded: the numbers below are incomplete",
            plural(s.events_lost, "event", "events")
        ));
    }
    if s.file_size_limit {
        notes.push(
            "recording stopped when the log reached the process's file-size limit (RLIMIT_FSIZE, ulimit -f): what came after is counted as lost events".to_owned(),
        );
    }
    if s.log_fd_replaced {
        notes.push(
            "the program closed memtrace's log descriptor or put a file of its own at its number: memtrace never wrote through it and reopened the log by its path (what it could not record meanwhile is counted as lost events)".to_owned(),
        );
    }
    if s.seccomp_filter {
        notes.push(format!(
            "the program installed a seccomp filter: from then on memtrace made no system call of its own and recorded into a reserve of {} MiB (what did not fit is counted as lost events); no reachability scan, no kernel figures, libc's exit clean-up not run",
            memtrace_format::SANDBOX_RESERVE >> 20
        ));
    }
    if s.mapping_clobbered {
        notes.push(
            "the program unmapped or mapped over memory memtrace was using: recording stopped there, and what came after is counted as lost events".to_owned(),
        );
    }
    if s.truncated {
        notes.push("the log is truncated: only what it holds is reported".to_owned());
    }
    if s.malloc_not_interposed {
        notes.push(
            "the program brings its own malloc (linked into the executable, which comes \
             before LD_PRELOAD in symbol lookup): its heap calls were not seen"
                .to_owned(),
        );
    }
    if s.unwind_mismatched > 0 {
        notes.push(format!(
            "{} of {} checked stacks differed from libgcc's unwinder",
            s.unwind_mismatched, s.unwind_checked
        ));
    }
    if s.truncated_stacks_total() > 0 {
        let t = &s.truncated_stacks;
        let why: Vec<String> = [
            (t[0], "at a frame without unwind information"),
            (t[1], "at a bad frame"),
            (t[2], "at the frame limit"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}"))
        .collect();
        notes.push(format!(
            "{} cut before the thread's entry ({}): their outermost frames are missing",
            plural(s.truncated_stacks_total(), "stack was", "stacks were"),
            why.join(", ")
        ));
    }
    if s.sample_interval > 0 {
        notes.push(format!(
            "sampled run (one sample point per {} allocated on average): heap bytes and \
             block counts are estimates; allocations of at least that size are exact",
            plural(s.sample_interval, "byte", "bytes")
        ));
    }
    if s.sample_overflow > 0 {
        notes.push(format!(
            "{} could not be followed to their free (the preload's set of sampled \
             addresses was full): they show as leaks",
            plural(s.sample_overflow, "sampled block", "sampled blocks")
        ));
    }
    if s.torn_records > 0 {
        notes.push(format!(
            "{} torn by the end of the process were skipped",
            plural(s.torn_records, "record", "records")
        ));
    }
    notes
}

/// The `--since` / `--older-than` section: what the leaks were narrowed to,
/// and the growth by stack since the earlier snapshot.
fn filter(out: &mut dyn Write, r: &Report, f: &crate::report::LiveFilter) -> io::Result<()> {
    let s = &r.summary;
    writeln!(out)?;
    if let Some((path, t_ms, bytes, blocks)) = &f.since {
        writeln!(
            out,
            "SINCE SNAPSHOT {} (taken at {t_ms:.3} ms)",
            path.display()
        )?;
        writeln!(
            out,
            "  live heap then: {} in {}; now: {} in {} ({} bytes, {} blocks)",
            plural(*bytes, "byte", "bytes"),
            plural(*blocks, "block", "blocks"),
            plural(f.all_bytes, "byte", "bytes"),
            plural(f.all_blocks, "block", "blocks"),
            delta(f.all_bytes as i64 - *bytes as i64),
            delta(f.all_blocks as i64 - *blocks as i64)
        )?;
    } else if let Some(ms) = f.older_than_ms {
        writeln!(out, "ALIVE FOR AT LEAST {}", duration(ms))?;
    }
    writeln!(
        out,
        "  blocks {} and still live: {} in {} (of {} in {})",
        f.which(),
        plural(s.leaked_heap_bytes, "byte", "bytes"),
        plural(s.leaked_heap_blocks, "block", "blocks"),
        plural(f.all_bytes, "byte", "bytes"),
        plural(f.all_blocks, "block", "blocks")
    )?;
    leak_kinds(out, s)?;
    if let (Some((path, ..)), (bytes, n)) = (&f.since, f.lost_then_freed)
        && n > 0
    {
        writeln!(
            out,
            "  *** {} in {} classified lost in {} were freed since: the program held pointers to them that the scan cannot see (tagged, XOR-ed or compressed pointers, or pointers only in another thread's registers); lost blocks from the same stacks may not be lost either",
            plural(bytes, "byte", "bytes"),
            plural(n, "block", "blocks"),
            path.display()
        )?;
    }
    if f.since.is_some() {
        writeln!(out)?;
        if f.growth.is_empty() {
            writeln!(out, "GROWTH BY STACK: no stack's live heap changed")?;
        } else {
            writeln!(out, "GROWTH BY STACK: live heap now against then")?;
        }
        for g in &f.growth {
            writeln!(out)?;
            writeln!(
                out,
                "  {} bytes, {} blocks (from {} in {} to {} in {})",
                delta(g.site.bytes as i64 - g.then_bytes as i64),
                delta(g.site.count as i64 - g.then_count as i64),
                plural(g.then_bytes, "byte", "bytes"),
                plural(g.then_count, "block", "blocks"),
                plural(g.site.bytes, "byte", "bytes"),
                plural(g.site.count, "block", "blocks")
            )?;
            stack(out, &g.site.stack)?;
        }
    }
    Ok(())
}

/// The leaked bytes and blocks by reachability kind, when classified; else
/// why not, when the scan said.
pub(super) fn leak_kinds(out: &mut dyn Write, s: &crate::report::Summary) -> io::Result<()> {
    if s.leak_kinds.is_none()
        && let Some(why) = s.scan.as_ref().and_then(|d| d.failure())
    {
        writeln!(out, "    not classified by reachability: {why}")?;
    }
    if let Some(k) = &s.leak_kinds {
        for (kind, (bytes, count)) in crate::analysis::reach::Kind::ALL.iter().zip(k) {
            writeln!(
                out,
                "    {:>15}: {} in {}",
                kind.words(),
                plural(*bytes, "byte", "bytes"),
                plural(*count, "block", "blocks")
            )?;
        }
        // As memcheck's LEAK SUMMARY says it.
        let via = crate::report::heurs_present(&s.leak_heuristics);
        if !via.is_empty() {
            writeln!(out, "{:23}of which reachable via heuristic:", "")?;
            for (h, bytes, count) in via {
                writeln!(
                    out,
                    "{:25}{:<19}: {} in {}",
                    "",
                    h.name(),
                    plural(bytes, "byte", "bytes"),
                    plural(count, "block", "blocks")
                )?;
            }
        }
    }
    Ok(())
}

/// Stacks shown at the peak in the short report.
pub const SHORT_PEAK: usize = 3;

/// Writes the short text report, `memtrace report`'s default: the process,
/// the summaries, the leaks by kind and the top [`SHORT_PEAK`] stacks of the
/// peak, each stack down to `main` as valgrind shows it; then one line
/// naming what [`render`] adds (`--full`): the other lists, the frames below
/// `main`, the kernel's view.
pub fn render_short(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut short = r.clone();
    let cut = |list: &mut Vec<Site>| {
        for site in list.iter_mut() {
            let kept = crate::frames::above_main(&site.stack).len();
            if kept < site.stack.len() {
                site.stack = site.stack[..kept].into();
            }
        }
    };
    cut(&mut short.heap_leaks);
    cut(&mut short.mmap_leaks);
    short.peak.truncate(SHORT_PEAK);
    cut(&mut short.peak);
    let mut more = Vec::new();
    if !r.allocated.is_empty() {
        more.push("the stacks that allocated the most");
    }
    if !r.temporary.is_empty() {
        more.push("temporary allocations");
    }
    if r.peak.len() > SHORT_PEAK {
        more.push("more stacks at the peak");
    }
    if r.kernel.is_some() {
        more.push("the kernel's view (RSS, PSS, mappings)");
    }
    short.allocated.clear();
    short.temporary.clear();
    short.kernel = None;
    render(&short, out)?;
    writeln!(out)?;
    if more.is_empty() {
        writeln!(out, "(--full shows each stack below main too)")
    } else {
        writeln!(
            out,
            "(--full adds {}, and the frames below main)",
            more.join(", ")
        )
    }
}

/// Writes the text report: the process, the summaries, the leaks, the other
/// lists, the kernel's view.
pub fn render(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    process(out, r)?;
    summaries(out, r)?;
    let q = &r.questions;
    if let Some(f) = &q.filter {
        questions::filter(out, r, f)?;
    }
    leaks(out, r)?;
    lists(out, r)?;
    if let Some(h) = &q.histogram {
        questions::histogram(out, h)?;
    }
    if let Some(b) = &q.by_function {
        questions::by_function(out, b)?;
    }
    if let Some(k) = &r.kernel {
        kernel(out, k)?;
    }
    Ok(())
}

/// The process: executable, command line, log, fork, how it ended; then
/// every note that makes the figures incomplete.
fn process(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    let p = &r.process;
    let s = &r.summary;
    writeln!(
        out,
        "memtrace report for {} (pid {})",
        if p.exe.is_empty() { "?" } else { &p.exe },
        p.pid
    )?;
    if !p.cmdline.is_empty() {
        writeln!(out, "  command:  {}", p.cmdline.join(" "))?;
    }
    writeln!(out, "  log:      {}", r.path.display())?;
    if let Some(parent) = p.forked_from {
        match &s.inherited {
            Some(i) => writeln!(
                out,
                "  forked from pid {parent}: inherited {} in {} live at the fork (from {})",
                plural(s.inherited_bytes, "byte", "bytes"),
                plural(s.inherited_blocks, "block", "blocks"),
                i.parent_log.display()
            )?,
            None => writeln!(
                out,
                "  forked from pid {parent} (its log was not found: only what the child did after the fork is reported)"
            )?,
        }
    }
    writeln!(out, "  ended:    {}", how_ended(p))?;
    if !p.forks.is_empty() {
        let pids: Vec<String> = p.forks.iter().map(|c| c.to_string()).collect();
        writeln!(
            out,
            "  forked:   {} (each has its own log)",
            pids.join(", ")
        )?;
    }

    let notes = notes(r);
    if !notes.is_empty() {
        writeln!(out)?;
        for n in notes {
            writeln!(out, "*** NOTE: {n}")?;
        }
    }

    Ok(())
}

/// HEAP SUMMARY, MMAP SUMMARY and BRK.
fn summaries(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    let p = &r.process;
    let s = &r.summary;
    writeln!(out)?;
    writeln!(out, "HEAP SUMMARY")?;
    writeln!(
        out,
        "  total heap usage: {}, {}, {} allocated",
        plural(s.allocations, "alloc", "allocs"),
        plural(s.frees, "free", "frees"),
        plural(s.bytes_allocated, "byte", "bytes")
    )?;
    let snapshot = p.ended == crate::report::Ended::Snapshot;
    let exec = p.ended == crate::report::Ended::Exec;
    let (at_end, all) = match (&r.live_filter, &s.window) {
        (Some(f), _) => (f.all_bytes, f.all_blocks),
        (None, Some(w)) => (w.end_bytes, w.end_blocks),
        (None, None) => (s.leaked_heap_bytes, s.leaked_heap_blocks),
    };
    writeln!(
        out,
        "  in use at {} {} in {}",
        match (snapshot, exec) {
            (true, _) => "snapshot:",
            (_, true) => "exec:   ",
            _ => "exit:   ",
        },
        plural(at_end, "byte", "bytes"),
        plural(all, "block", "blocks")
    )?;
    // Narrowed, the kinds are those of the blocks listed (in `filter`, or
    // in the window's lines).
    match &s.window {
        Some(w) => window::window(out, r, w)?,
        None if r.live_filter.is_none() => leak_kinds(out, s)?,
        None => {}
    }
    writeln!(
        out,
        "  peak:             {} at {:.3} ms",
        plural(s.peak_heap_bytes, "byte", "bytes"),
        s.peak_heap_time_ms
    )?;
    if s.unknown_frees > 0 || s.libc_freeres_frees > 0 || s.anomalies > 0 {
        writeln!(
            out,
            "  frees of unknown blocks: {}; frees by libc's exit clean-up: {}; allocations over live blocks: {}",
            thousands(s.unknown_frees),
            thousands(s.libc_freeres_frees),
            thousands(s.anomalies)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "MMAP SUMMARY")?;
    writeln!(
        out,
        "  {}, {}; peak {} mapped",
        plural(s.mmap_calls, "mmap call", "mmap calls"),
        plural(s.munmap_calls, "munmap call", "munmap calls"),
        plural(s.peak_mmap_bytes, "byte", "bytes")
    )?;
    writeln!(
        out,
        "  still mapped at {}: {} in {}",
        match (snapshot, exec) {
            (true, _) => "the snapshot",
            (_, true) => "the exec",
            _ => "exit",
        },
        plural(s.leaked_mmap_bytes, "byte", "bytes"),
        plural(s.leaked_mmap_regions, "region", "regions")
    )?;
    writeln!(out)?;
    writeln!(out, "BRK")?;
    writeln!(
        out,
        "  program break growth: {} bytes",
        signed(s.brk_growth_bytes)
    )?;

    Ok(())
}

/// The live filter's list, the heap and mmap leaks, or that there are none.
fn leaks(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    let s = &r.listed();
    let snapshot = r.process.ended == crate::report::Ended::Snapshot;
    let exec = r.process.ended == crate::report::Ended::Exec;
    if let Some(f) = &r.live_filter {
        filter(out, r, f)?;
    }
    if !r.heap_leaks.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{}: {} in {} from {}{}",
            match (&r.live_filter, snapshot) {
                _ if r.summary.window.is_some() =>
                    "HEAP BLOCKS ALLOCATED IN THE WINDOW, LIVE AT ITS END",
                (Some(_), _) => "HEAP LEAKS LISTED",
                (None, true) => "LIVE HEAP AT THE SNAPSHOT",
                // The exec took the image's memory with it: nothing leaked.
                (None, false) if exec => "LIVE HEAP AT THE EXEC (gone with the image, not leaked)",
                (None, false) => "HEAP LEAKS",
            },
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks"),
            plural(r.heap_leak_stacks, "stack", "stacks"),
            shown(r.heap_leaks.len(), r.heap_leak_stacks)
        )?;
        sites(out, &r.heap_leaks, ("block", "blocks"))?;
    }
    if !r.mmap_leaks.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{}: {} in {} from {}{}",
            if exec {
                "STILL MAPPED AT THE EXEC (gone with the image, not leaked)"
            } else {
                "MMAP LEAKS"
            },
            plural(s.leaked_mmap_bytes, "byte", "bytes"),
            plural(s.leaked_mmap_regions, "region", "regions"),
            plural(r.mmap_leak_stacks, "stack", "stacks"),
            shown(r.mmap_leaks.len(), r.mmap_leak_stacks)
        )?;
        sites(out, &r.mmap_leaks, ("region", "regions"))?;
    }
    if s.leaked_heap_bytes == 0 && s.leaked_heap_blocks == 0 && s.leaked_mmap_bytes == 0 {
        writeln!(out)?;
        if r.questions.filter.is_some() {
            writeln!(out, "No leaks through the filter.")?;
        } else if r.summary.window.is_some() {
            writeln!(
                out,
                "No heap block allocated in the window is live at its end."
            )?;
        } else {
            writeln!(
                out,
                "No leaks: all heap blocks were freed and all mappings unmapped."
            )?;
        }
    }
    Ok(())
}

/// The stacks at the peak, the most allocated, the temporary allocations and
/// the brk growth.
fn lists(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    let s = &r.summary;
    if !r.peak.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "AT THE PEAK: {} live at {:.3} ms, the {} largest stacks",
            plural(s.peak_heap_bytes, "byte", "bytes"),
            s.peak_heap_time_ms,
            r.peak.len()
        )?;
        sites(out, &r.peak, ("block", "blocks"))?;
    }
    if !r.allocated.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "MOST ALLOCATED: the {} stacks that allocated the most heap bytes (freed or not)",
            r.allocated.len()
        )?;
        sites(out, &r.allocated, ("allocation", "allocations"))?;
    }
    if !r.temporary.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "TEMPORARY ALLOCATIONS: {} of {} allocations were freed before their thread's next allocation; the {} stacks that made the most",
            thousands(s.temporary_allocations),
            thousands(s.allocations),
            r.temporary.len()
        )?;
        sites(
            out,
            &r.temporary,
            ("temporary allocation", "temporary allocations"),
        )?;
    }
    if !r.brk.is_empty() {
        writeln!(out)?;
        writeln!(out, "BRK GROWTH BY STACK (explicit brk/sbrk calls)")?;
        for b in &r.brk {
            writeln!(out)?;
            writeln!(out, "  {} bytes", signed(b.bytes))?;
            stack(out, &b.stack)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Process, Summary};

    /// The summary line matches valgrind's wording; frames read `#N function at file:line (module)`.
    #[test]
    fn text_layout() {
        let frames = vec![
            Frame {
                mangled: None,
                function: Some("helper".into()),
                file: Some("/src/a.c".into()),
                line: Some(3),
                module: Some("/bin/a".into()),
                address: 0x401100,
                offset: None,
                inlined: true,
            },
            Frame {
                mangled: None,
                function: None,
                file: None,
                line: None,
                module: Some("[vdso]".into()),
                address: 0x7fff1234,
                offset: None,
                inlined: false,
            },
        ];
        let r = Report {
            path: "a.mtr".into(),
            format_version: 1,
            process: Process {
                lineage: Default::default(),
                pid: 7,
                ppid: 1,
                exe: "/bin/a".into(),
                cmdline: vec!["a".into(), "x".into()],
                forked_from: None,
                ended: Ended::Abnormal,
                exit_status: None,
                signal: Some(6),
                exec: None,
                forks: vec![],
                duration_ms: 1.5,
            },
            summary: Summary {
                allocations: 7,
                frees: 7,
                bytes_allocated: 4323,
                leaked_heap_bytes: 10,
                leaked_heap_blocks: 1,
                ended_abnormally: true,
                events_lost: 3,
                ..Default::default()
            },
            heap_leaks: vec![Site {
                func: None,
                kinds: None,
                heuristics: Default::default(),
                bytes: 10,
                count: 1,
                stack: frames.into(),
            }],
            heap_leak_stacks: 1,
            mmap_leaks: vec![],
            mmap_leak_stacks: 0,
            peak: vec![],
            allocated: vec![],
            temporary: vec![],
            timeline: vec![],
            kernel: None,
            brk: vec![],
            live_filter: None,
            warnings: vec![],
            questions: Default::default(),
        };
        let mut out = Vec::new();
        render(&r, &mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains("total heap usage: 7 allocs, 7 frees, 4,323 bytes allocated"),
            "{t}"
        );
        assert!(
            t.contains("the run ended abnormally (crash, abort or kill)"),
            "{t}"
        );
        assert!(t.contains("3 events could not be recorded"), "{t}");
        assert!(t.contains("killed by signal 6"), "{t}");
        assert!(
            t.contains("#0 helper at /src/a.c:3 (/bin/a) [inlined]"),
            "{t}"
        );
        assert!(t.contains("#1 0x7fff1234 ([vdso])"), "{t}");
        assert!(t.contains("10 bytes in 1 block"), "{t}");
    }
}
