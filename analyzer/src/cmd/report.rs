//! `memtrace report [--format text|json] [--top N] [--html FILE] [--since SNAPSHOT]
//! [--older-than DURATION] [--from TIME] [--to TIME] [--histogram] [--filter
//! PATTERN] [--by function] LOG`: prints the report on stdout, warnings on
//! stderr. A closed stdout (`| head`) is not an error. Given a run's directory or several logs, it
//! prints the tree of their processes and the totals instead
//! (`memtrace_analyzer::render::tree`), or with `--pid PID` the reports of
//! that process's logs; a directory that holds one log (the run of a single
//! process) gets that log's report, exactly as `memtrace report LOG`.
//!
//! `--histogram`, `--filter` and `--by function` ask heaptrack_print's
//! questions (`memtrace_analyzer::report::questions`): the allocation-size
//! histogram, only the stacks through a function or module, the heap
//! figures merged by the allocating function and its callers.
//!
//! `--since` and `--older-than` narrow the leaks to the blocks allocated
//! after an earlier snapshot of the same process, or alive for at least
//! DURATION at the end of LOG (`memtrace_analyzer::report::LiveFilter`);
//! `--from` and `--to` to the blocks allocated in a time window and live at
//! its end (`memtrace_analyzer::report::window`).
//!
//! `--html FILE` writes the report as one self-contained HTML page instead
//! (`memtrace_analyzer::render::html`), and prints nothing on stdout (unless
//! FILE is `-`); where it went is said on stderr. The page's flame graphs
//! draw every stack; `--top` limits its tables only.
//!
//! A truncated log (the file ends before the space its header says was
//! written) is still reported, so nothing it holds is lost, but the command
//! then says so in one error line and exits with [`EXIT_TRUNCATED`].

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use memtrace_analyzer::render;

use crate::args::{Format, ReportArgs};

/// Exit status when the report was written from a truncated log.
pub const EXIT_TRUNCATED: u8 = crate::exit::TRUNCATED;

/// Runs the subcommand; returns the exit status: one log's report, or the
/// tree of a run's processes ([`tree`]).
pub fn run(a: &ReportArgs) -> anyhow::Result<u8> {
    match a.logs.as_slice() {
        [one] if !one.is_dir() => one_log(a, one),
        _ => tree(a),
    }
}

/// The logs of a directory (the regular files, not links, that open as a
/// memtrace log, raw or packed), in name order.
fn logs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if memtrace_analyzer::log::Log::open(&e.path()).is_ok_and(|l| l.header().is_ok()) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// `memtrace report DIR` or several logs: the tree of their processes, or
/// with `--pid` the reports of one process's logs.
fn tree(a: &ReportArgs) -> anyhow::Result<u8> {
    let mut logs = Vec::new();
    for p in &a.logs {
        if p.is_dir() {
            logs.extend(logs_in(p)?);
        } else {
            logs.push(p.clone());
        }
    }
    if logs.is_empty() {
        anyhow::bail!("no memtrace log in {}", a.logs[0].display());
    }
    if let [one] = logs.as_slice()
        && a.pid.is_none()
    {
        // The run directory of one process: that process's report, as of its log.
        return one_log(a, one);
    }
    if let Some(pid) = a.pid {
        let mine: Vec<PathBuf> = logs
            .iter()
            .filter(|l| {
                memtrace_analyzer::analysis::lineage::Proc::read(l).is_ok_and(|p| p.pid == pid)
            })
            .cloned()
            .collect();
        if mine.is_empty() {
            anyhow::bail!("no log of pid {pid} among the {} given", logs.len());
        }
        let mut status = crate::exit::OK;
        for l in &mine {
            status = status.max(one_log(a, l)?);
        }
        return Ok(status);
    }
    if a.html.is_some() {
        anyhow::bail!("--html takes one log (or --pid with a run's directory)");
    }
    if a.from.is_some() || a.to.is_some() {
        anyhow::bail!("--from and --to take one log (or --pid with a run's directory)");
    }
    let mut reports = Vec::with_capacity(logs.len());
    let mut status = crate::exit::OK;
    for l in &logs {
        let opts = memtrace_analyzer::Options {
            peers: logs.clone(),
            ..Default::default()
        };
        match memtrace_analyzer::analyze(l, &opts) {
            Ok(r) => {
                if r.summary.truncated {
                    eprintln!("memtrace: error: {} is truncated", l.display());
                    status = EXIT_TRUNCATED;
                }
                reports.push(r);
            }
            Err(e) => {
                eprintln!("memtrace: error: {e}");
                status = crate::exit::ERROR;
            }
        }
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = match a.format {
        Format::Text => render::tree::text(&reports, &mut out),
        Format::Json => render::tree::json(&reports, &mut out),
    }
    .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the report to stdout")
        }
        _ => Ok(status),
    }
}

/// One log's report.
fn one_log(a: &ReportArgs, log: &Path) -> anyhow::Result<u8> {
    let opts = memtrace_analyzer::Options {
        // The HTML page's flame graphs need every stack; its tables take `--top`.
        top: match a.html {
            Some(_) => memtrace_analyzer::flame::all().top,
            None => a.top,
        },
        since: match &a.since {
            Some(p) => Some(memtrace_analyzer::report::since_snapshot(p)?),
            None => None,
        },
        older_than: a.older_than,
        window: window(a)?,
        peers: a.parent_log.clone(),
        questions: memtrace_analyzer::report::questions::Asked {
            histogram: a.histogram,
            filter: a
                .filter
                .as_deref()
                .map(memtrace_analyzer::report::questions::Pattern::new),
            by_function: a.by == Some(crate::args::By::Function),
        },
        ..Default::default()
    };
    let (opts, bar) = crate::progress::attach(log, opts);
    let report = memtrace_analyzer::analyze(log, &opts)?;
    drop(bar);
    for w in &report.warnings {
        eprintln!("memtrace: warning: {w}");
    }
    if let Some(path) = &a.html {
        write_html(&report, a.top, path)?;
    } else {
        let mut out = BufWriter::new(io::stdout().lock());
        let written = match a.format {
            Format::Text if a.full || a.top.is_some() => render::text::render(&report, &mut out),
            Format::Text => render::text::render_short(&report, &mut out),
            Format::Json => render::json::render(&report, &mut out),
        }
        .and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(e).context("cannot write the report to stdout"),
        }
    }
    if report.summary.truncated {
        eprintln!(
            "memtrace: error: {} is truncated: the report covers only what the file holds",
            log.display()
        );
        return Ok(EXIT_TRUNCATED);
    }
    Ok(crate::exit::OK)
}

/// The time window of `--from` and `--to`, parsed.
fn window(a: &ReportArgs) -> anyhow::Result<memtrace_analyzer::report::window::Asked> {
    use memtrace_analyzer::report::window::Moment;
    let parse = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| Moment::parse(s).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .transpose()
    };
    Ok(memtrace_analyzer::report::window::Asked {
        from: parse("--from", &a.from)?,
        to: parse("--to", &a.to)?,
    })
}

/// Writes the HTML page to `path` whole (it is made in memory first), or to
/// stdout when `path` is `-` (a closed stdout is not an error).
fn write_html(
    report: &memtrace_analyzer::Report,
    top: Option<usize>,
    path: &Path,
) -> anyhow::Result<()> {
    let mut page = Vec::new();
    render::html::render_top(report, top, &mut page).context("cannot make the HTML report")?;
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        return match out.write_all(&page).and_then(|()| out.flush()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(e).context("cannot write the HTML report to stdout")
            }
            _ => Ok(()),
        };
    }
    memtrace_analyzer::outfile::write_output(path, page.as_ref(), false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("memtrace: HTML report written to {}", path.display());
    Ok(())
}
