//! `memtrace flamegraph [--metric M] [-o FILE] LOG`: draws the log's stacks
//! weighted by a metric as an interactive SVG flame graph (see
//! `memtrace_analyzer::flame` for what it shows).
//!
//! - `--metric`: `leaked` (default: heap bytes live at exit), `peak`,
//!   `allocated`, `allocations`, `temporary`.
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

use anyhow::Context;
use memtrace_analyzer::flame::{self, Metric};

use crate::args::FlamegraphArgs;
use crate::cmd::report::EXIT_TRUNCATED;

/// Runs the subcommand; returns the exit status.
pub fn run(a: &FlamegraphArgs) -> anyhow::Result<u8> {
    let metric = Metric::from(a.metric);
    let (opts, bar) = crate::progress::attach(&a.log, flame::all());
    let report = memtrace_analyzer::analyze(&a.log, &opts)?;
    drop(bar);
    for w in &report.warnings {
        eprintln!("memtrace: warning: {w}");
    }
    let mut svg = Vec::new();
    flame::render_svg(&report, metric, &mut svg)
        .with_context(|| format!("cannot draw the flame graph of {}", a.log.display()))?;
    let path = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("memtrace-{}.svg", metric.as_str())));
    if write_svg(&path, &svg)? {
        eprintln!(
            "memtrace: flame graph of {} written to {} ({})",
            metric.label(),
            path.display(),
            flame::title(&report, metric)
        );
    }
    if report.summary.truncated {
        eprintln!(
            "memtrace: error: {} is truncated: the graph covers only what the file holds",
            a.log.display()
        );
        return Ok(EXIT_TRUNCATED);
    }
    Ok(0)
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
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}
