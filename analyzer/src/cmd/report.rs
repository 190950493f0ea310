//! `memtrace report [--format text|json] [--top N] LOG`: prints the report
//! on stdout, warnings on stderr. A closed stdout (`| head`) is not an error.

use std::io::{self, BufWriter, Write};

use anyhow::Context;
use memtrace_analyzer::render;

use crate::args::{Format, ReportArgs};

/// Runs the subcommand; returns the exit status.
pub fn run(a: &ReportArgs) -> anyhow::Result<u8> {
    let report = memtrace_analyzer::analyze(&a.log, &memtrace_analyzer::Options { top: a.top })?;
    for w in &report.warnings {
        eprintln!("memtrace: warning: {w}");
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = match a.format {
        Format::Text => render::text::render(&report, &mut out),
        Format::Json => render::json::render(&report, &mut out),
    }
    .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e).context("cannot write the report to stdout"),
    }
}
