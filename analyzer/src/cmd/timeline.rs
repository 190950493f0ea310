//! `memtrace timeline LOG [-o FILE]`: memory over time as an SVG chart
//! (see `memtrace_analyzer::render::timeline`).

use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use memtrace_analyzer::render;

use crate::args::TimelineArgs;

/// Runs the subcommand.
pub fn run(a: &TimelineArgs) -> anyhow::Result<u8> {
    let (opts, bar) = crate::progress::attach(&a.log, memtrace_analyzer::Options::default());
    let report = memtrace_analyzer::analyze(&a.log, &opts)?;
    drop(bar);
    for w in &report.warnings {
        eprintln!("memtrace: warning: {w}");
    }
    if a.output == Path::new("-") {
        let mut out = io::stdout().lock();
        render::timeline::render(&report, &mut out)
            .and_then(|()| out.flush())
            .context("cannot write the chart to stdout")?;
    } else {
        let f = memtrace_analyzer::outfile::create_output(&a.output, false)
            .with_context(|| format!("cannot create {}", a.output.display()))?;
        let mut out = BufWriter::new(f);
        render::timeline::render(&report, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", a.output.display()))?;
        eprintln!("memtrace: timeline written to {}", a.output.display());
    }
    Ok(crate::exit::OK)
}
