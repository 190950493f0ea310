//! `memtrace report [--format text|json] [--top N] LOG`: prints the report
//! on stdout, warnings on stderr. A closed stdout (`| head`) is not an error.
//!
//! A truncated log (the file ends before the space its header says was
//! written) is still reported, so nothing it holds is lost, but the command
//! then says so in one error line and exits with [`EXIT_TRUNCATED`].

use std::io::{self, BufWriter, Write};

use anyhow::Context;
use memtrace_analyzer::render;

use crate::args::{Format, ReportArgs};

/// Exit status when the report was written from a truncated log.
pub const EXIT_TRUNCATED: u8 = 3;

/// Runs the subcommand; returns the exit status.
pub fn run(a: &ReportArgs) -> anyhow::Result<u8> {
    let opts = memtrace_analyzer::Options {
        top: a.top,
        ..Default::default()
    };
    let (opts, bar) = crate::progress::attach(&a.log, opts);
    let report = memtrace_analyzer::analyze(&a.log, &opts)?;
    drop(bar);
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
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("cannot write the report to stdout"),
    }
    if report.summary.truncated {
        eprintln!(
            "memtrace: error: {} is truncated: the report covers only what the file holds",
            a.log.display()
        );
        return Ok(EXIT_TRUNCATED);
    }
    Ok(0)
}
