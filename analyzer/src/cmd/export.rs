//! `memtrace export --format pprof|folded|speedscope|chrome-trace|massif|dhat|heaptrack [--metric M] [-o FILE] LOG`:
//! writes the log's stacks in another tool's format (see
//! `memtrace_analyzer::export` for what each holds).
//!
//! - `--format pprof`: gzip-compressed profile.proto (`go tool pprof FILE`,
//!   Pyroscope); `folded`: `outermost;...;innermost WEIGHT` lines of one
//!   `--metric` (default `leaked`; flamegraph.pl, inferno, speedscope);
//!   `speedscope`: speedscope's JSON, one profile per metric; `chrome-trace`:
//!   Chrome's trace event JSON of the memory counters over time (Perfetto);
//!   `massif`: valgrind massif's out file (`ms_print FILE`); `dhat`: valgrind
//!   DHAT's JSON (load it in `dh_view.html`); `heaptrack`: heaptrack's data
//!   file (`heaptrack_print FILE`), zstd-compressed when FILE ends in `.zst`
//!   (as heaptrack names its files), gzip for `.gz`, plain text otherwise.
//!   These three replay the log once more.
//! - `-o FILE`: where the export goes; `-` or no `-o`: stdout. The export is
//!   made in memory first, so a file is written whole or not at all. The
//!   pprof export is binary: it is refused on a terminal (exit 2).
//!
//! An unreadable log is an error (exit 2); a truncated one is exported, then
//! said so, with exit status 3 as for `report`.

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use memtrace_analyzer::export::{
    self, chrome, dhat, heaptrack, history, massif, pprof, speedscope,
};
use memtrace_analyzer::flame::Metric;

use crate::args::{ExportArgs, ExportFormat};
use crate::cmd::report::EXIT_TRUNCATED;

/// Runs the subcommand; returns the exit status.
pub fn run(a: &ExportArgs) -> anyhow::Result<u8> {
    let to_stdout = a.output.as_deref().is_none_or(|p| p == Path::new("-"));
    if a.format == ExportFormat::Pprof && to_stdout && io::stdout().is_terminal() {
        bail!("the pprof export is binary: give -o FILE or redirect stdout");
    }
    let input = export::read(&a.log)?;
    let report = &input.report;
    for w in &report.warnings {
        eprintln!("memtrace: warning: {w}");
    }
    let bytes = match a.format {
        ExportFormat::Folded => export::folded(report, Metric::from(a.metric)).into_bytes(),
        ExportFormat::Pprof => pprof::encode(&input)
            .with_context(|| format!("cannot compress the profile of {}", a.log.display()))?,
        ExportFormat::ChromeTrace => {
            let mut v = serde_json::to_vec(&chrome::document(report))
                .context("cannot serialize the trace")?;
            v.push(b'\n');
            v
        }
        ExportFormat::Massif => {
            massif::document(report, &history::scan(&a.log, false)?).into_bytes()
        }
        ExportFormat::Dhat => {
            let d = dhat::document(report, &history::scan(&a.log, true)?);
            let mut v = serde_json::to_vec(&d).context("cannot serialize the DHAT document")?;
            v.push(b'\n');
            v
        }
        ExportFormat::Heaptrack => {
            let name = a.output.as_deref().filter(|_| !to_stdout);
            let compression = heaptrack::Compression::for_name(name);
            let file = heaptrack::file(report, &a.log, compression)?;
            if file.inherited_blocks > 0 {
                eprintln!(
                    "memtrace: note: the {} blocks inherited from the parent are allocations \
                     in the heaptrack file (heaptrack_print counts them as calls)",
                    file.inherited_blocks
                );
            }
            file.bytes.with_context(|| {
                format!("cannot compress the heaptrack file of {}", a.log.display())
            })?
        }
        ExportFormat::Speedscope => {
            let mut v = serde_json::to_vec(&speedscope::document(report))
                .context("cannot serialize the speedscope document")?;
            v.push(b'\n');
            v
        }
    };
    match a.output.as_deref() {
        Some(path) if !to_stdout => {
            memtrace_analyzer::outfile::write_output(path, &bytes, false)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        _ => {
            let mut out = io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e).context("cannot write the export to stdout"),
            }
        }
    }
    if report.summary.truncated {
        eprintln!(
            "memtrace: error: {} is truncated: the export covers only what the file holds",
            a.log.display()
        );
        return Ok(EXIT_TRUNCATED);
    }
    Ok(crate::exit::OK)
}
