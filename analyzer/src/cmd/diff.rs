//! `memtrace diff [--metric M] [--format text|json] [--top N] [-o FILE.svg] OLD NEW`:
//! compares two logs stack by stack (`memtrace_analyzer::flame::diff`).
//!
//! Each folded stack of the metric (`leaked` by default, limited to the
//! blocks of some reachability kinds with `--leak-kinds`; as for
//! `memtrace flamegraph`) gets its weight in OLD, in NEW, and the change, and
//! the stacks are listed by change, largest growth first (shrinking stacks
//! last; ties by stack).
//! - Text (default): the totals of both runs and their change, then a table of
//!   the first N stacks (`--top`, default 20), each shown innermost frame
//!   first (`leak_item <- main <- ...`).
//! - JSON: `{"metric", "unit", "old": {"log", "pid", "exe"}, "new": {...},
//!   "old_total", "new_total", "delta", "stacks": [{"stack": [frames,
//!   outermost first], "old", "new", "delta"}]}`, every stack unless `--top`
//!   is given, and `"leak_kinds"` (a list) with `--leak-kinds`. Totals are
//!   the runs' summary totals ([`flame::total_kinds`]).
//! - `-o FILE`: also writes the differential flame graph (the new run's
//!   stacks, red where they grew, blue where they shrank) to FILE; stdout
//!   (`-`) is refused, since the table goes there.
//!
//! Exit status as for `report`: 0, 2 when a log cannot be read (the message
//! names it), 3 when one is truncated (the diff is still printed).

use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail};
use memtrace_analyzer::analysis::reach::Kind;
use memtrace_analyzer::flame::{self, DiffLine, Metric};
use memtrace_analyzer::report::{Report, delta};
use memtrace_analyzer::units::thousands;
use serde_json::json;

use crate::args::{DiffArgs, Format};
use crate::cmd::report::EXIT_TRUNCATED;

/// Stacks in the text table when `--top` is not given.
pub const DEFAULT_TOP: usize = 20;

/// Runs the subcommand; returns the exit status.
pub fn run(a: &DiffArgs) -> anyhow::Result<u8> {
    if a.output.as_deref() == Some(Path::new("-")) {
        bail!("-o -: the diff goes to stdout; give the flame graph a file name");
    }
    let metric = Metric::from(a.metric);
    let kinds = crate::cmd::flamegraph::leak_kinds(a.leak_kinds.as_deref(), metric)?;
    let kinds = kinds.as_deref();
    let old = {
        let (opts, _bar) = crate::progress::attach(&a.old, flame::all());
        memtrace_analyzer::analyze(&a.old, &opts)?
    };
    let new = {
        let (opts, _bar) = crate::progress::attach(&a.new, flame::all());
        memtrace_analyzer::analyze(&a.new, &opts)?
    };
    for w in old.warnings.iter().chain(&new.warnings) {
        eprintln!("memtrace: warning: {w}");
    }
    crate::cmd::flamegraph::warn_unclassified(&old, kinds, &a.old);
    crate::cmd::flamegraph::warn_unclassified(&new, kinds, &a.new);
    let lines = flame::diff_kinds(&old, &new, metric, kinds);
    let top = a.top.unwrap_or(match a.format {
        Format::Text => DEFAULT_TOP,
        Format::Json => usize::MAX,
    });

    if let Some(path) = &a.output {
        let mut svg = Vec::new();
        flame::render_diff_svg_kinds(&old, &new, metric, kinds, &mut svg)
            .context("cannot draw the differential flame graph")?;
        crate::cmd::flamegraph::write_svg(path, &svg)?;
        eprintln!(
            "memtrace: differential flame graph written to {}",
            path.display()
        );
    }

    let mut out = BufWriter::new(io::stdout().lock());
    let written = match a.format {
        Format::Text => text(&mut out, &old, &new, (metric, kinds), &lines, top),
        Format::Json => json(&mut out, &old, &new, (metric, kinds), &lines, top),
    }
    .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("cannot write the diff to stdout"),
    }

    let mut code = crate::exit::OK;
    for (r, path) in [(&old, &a.old), (&new, &a.new)] {
        if r.summary.truncated {
            eprintln!(
                "memtrace: error: {} is truncated: the diff covers only what the file holds",
                path.display()
            );
            code = EXIT_TRUNCATED;
        }
    }
    Ok(code)
}

/// The text form: totals, then the table.
fn text(
    out: &mut dyn Write,
    old: &Report,
    new: &Report,
    (metric, kinds): (Metric, Option<&[Kind]>),
    lines: &[DiffLine],
    top: usize,
) -> io::Result<()> {
    let (o, n) = (
        flame::total_kinds(old, metric, kinds),
        flame::total_kinds(new, metric, kinds),
    );
    writeln!(
        out,
        "memtrace diff of {}",
        flame::label_kinds(metric, kinds)
    )?;
    writeln!(
        out,
        "  old: {} {}  ({})",
        thousands(o),
        metric.unit(),
        flame::run_name(old)
    )?;
    writeln!(
        out,
        "  new: {} {}  ({})",
        thousands(n),
        metric.unit(),
        flame::run_name(new)
    )?;
    writeln!(
        out,
        "  change: {} {}",
        delta(flame::signed_delta(o, n)),
        metric.unit()
    )?;
    let grew = lines.iter().filter(|l| l.delta > 0).count();
    let shrank = lines.iter().filter(|l| l.delta < 0).count();
    writeln!(
        out,
        "  stacks: {} ({grew} grew, {shrank} shrank, {} unchanged)",
        lines.len(),
        lines.len() - grew - shrank
    )?;
    if lines.is_empty() {
        return Ok(());
    }
    let shown = &lines[..top.min(lines.len())];
    let rows: Vec<[String; 3]> = shown
        .iter()
        .map(|l| [delta(l.delta), thousands(l.old), thousands(l.new)])
        .collect();
    let head = ["change", "old", "new"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "  {:>w0$}  {:>w1$}  {:>w2$}  stack (innermost first)",
        head[0],
        head[1],
        head[2],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2]
    )?;
    for (l, r) in shown.iter().zip(&rows) {
        let stack: Vec<&str> = l.frames().rev().collect();
        writeln!(
            out,
            "  {:>w0$}  {:>w1$}  {:>w2$}  {}",
            r[0],
            r[1],
            r[2],
            stack.join(" <- "),
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        )?;
    }
    if shown.len() < lines.len() {
        writeln!(
            out,
            "  ... {} more stacks (--top N shows more)",
            lines.len() - shown.len()
        )?;
    }
    Ok(())
}

/// The JSON form (see the module doc).
fn json(
    out: &mut dyn Write,
    old: &Report,
    new: &Report,
    (metric, kinds): (Metric, Option<&[Kind]>),
    lines: &[DiffLine],
    top: usize,
) -> io::Result<()> {
    let run = |r: &Report| {
        json!({
            "log": r.path.display().to_string(),
            "pid": r.process.pid,
            "exe": r.process.exe,
        })
    };
    let (o, n) = (
        flame::total_kinds(old, metric, kinds),
        flame::total_kinds(new, metric, kinds),
    );
    let stacks: Vec<_> = lines
        .iter()
        .take(top)
        .map(|l| {
            json!({
                "stack": l.frames().collect::<Vec<_>>(),
                "old": l.old,
                "new": l.new,
                "delta": l.delta,
            })
        })
        .collect();
    let mut doc = json!({
        "metric": metric.as_str(),
        "unit": metric.unit(),
        "old": run(old),
        "new": run(new),
        "old_total": o,
        "new_total": n,
        "delta": flame::signed_delta(o, n),
        "stacks": stacks,
    });
    if let Some(k) = kinds {
        doc["leak_kinds"] = json!(k.iter().map(|k| k.as_str()).collect::<Vec<_>>());
    }
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
