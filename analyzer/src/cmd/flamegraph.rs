//! `memtrace flamegraph [--metric M] [-o FILE] LOG`: draws the log's stacks
//! weighted by a metric as an interactive SVG flame graph (see
//! `memtrace_analyzer::flame` for what it shows).
//!
//! - `--metric`: `leaked` (default: heap bytes live at exit), `peak`,
//!   `allocated`, `allocations`, `temporary`.
//! - `--leak-kinds KINDS` (with `leaked` only; as `memtrace check` takes
//!   them): draw only the leaked blocks of those reachability kinds, e.g.
//!   `definite` (see `memtrace_analyzer::flame`); a log whose leaks were not
//!   classified is drawn whole, with a warning.
//! - `-o FILE`: where the SVG goes; `-` is stdout. Default:
//!   `memtrace-METRIC.svg` in the current directory, overwritten if it
//!   exists. The file is written whole or not at all (the graph is drawn in
//!   memory first); where it went is said on stderr.
//!
//! A metric with no weight (a run that leaks nothing) still gives a valid SVG
//! that says so, and exit status 0. An unreadable log is an error (exit 2); a
//! truncated one is drawn, then said so, with exit status 3 as for `report`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use memtrace_analyzer::analysis::reach::Kind;
use memtrace_analyzer::flame::{self, Metric};
use memtrace_analyzer::report::Report;

use crate::args::FlamegraphArgs;
use crate::cmd::report::EXIT_TRUNCATED;

/// Runs the subcommand; returns the exit status.
pub fn run(a: &FlamegraphArgs) -> anyhow::Result<u8> {
    let metric = Metric::from(a.metric);
    let kinds = leak_kinds(a.leak_kinds.as_deref(), metric)?;
    let (opts, bar) = crate::progress::attach(&a.log, flame::all());
    let report = memtrace_analyzer::analyze(&a.log, &opts)?;
    drop(bar);
    for w in &report.warnings {
        eprintln!("memtrace: warning: {w}");
    }
    warn_unclassified(&report, kinds.as_deref(), &a.log);
    let kinds = kinds.as_deref();
    let mut svg = Vec::new();
    flame::render_svg_kinds(&report, metric, kinds, &mut svg)
        .with_context(|| format!("cannot draw the flame graph of {}", a.log.display()))?;
    let path = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("memtrace-{}.svg", metric.as_str())));
    if write_svg(&path, &svg)? {
        eprintln!(
            "memtrace: flame graph of {} written to {} ({})",
            flame::label_kinds(metric, kinds),
            path.display(),
            flame::title_kinds(&report, metric, kinds)
        );
    }
    if report.summary.truncated {
        eprintln!(
            "memtrace: error: {} is truncated: the graph covers only what the file holds",
            a.log.display()
        );
        return Ok(EXIT_TRUNCATED);
    }
    Ok(crate::exit::OK)
}

/// Parses `--leak-kinds`, which only the `leaked` metric takes.
pub fn leak_kinds(arg: Option<&str>, metric: Metric) -> anyhow::Result<Option<Vec<Kind>>> {
    let Some(arg) = arg else { return Ok(None) };
    if metric != Metric::Leaked {
        bail!(
            "--leak-kinds applies to --metric leaked only, not {}",
            metric.as_str()
        );
    }
    crate::cmd::check::leak_kinds(arg).map(Some)
}

/// Says when `--leak-kinds` cannot apply to a log: its leaks were not
/// classified by reachability, so they are drawn whole.
pub fn warn_unclassified(r: &Report, kinds: Option<&[Kind]>, log: &Path) {
    if kinds.is_some() && r.summary.leak_kinds.is_none() && !r.heap_leaks.is_empty() {
        eprintln!(
            "memtrace: warning: the leaks of {} were not classified by reachability \
             (`memtrace run --no-reachability`, a plain LD_PRELOAD run, or the scan failed): \
             --leak-kinds does not apply, every leaked byte is drawn",
            log.display()
        );
    }
}

/// Writes `svg` to the file `path`, or to stdout when `path` is `-` (a
/// closed stdout is not an error). Returns whether a file was written.
pub fn write_svg(path: &Path, svg: &[u8]) -> anyhow::Result<bool> {
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        match out.write_all(svg).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(e).context("cannot write the SVG to stdout"),
        }
        return Ok(false);
    }
    memtrace_analyzer::outfile::write_output(path, svg, false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}
