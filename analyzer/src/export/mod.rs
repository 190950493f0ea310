//! Exports of a report to other tools' formats: `memtrace export`.
//!
//! - **folded** ([`folded`]): the stacks of one [`Metric`] in the folded form
//!   (`outermost;...;innermost WEIGHT`) that flamegraph.pl, inferno,
//!   speedscope and Pyroscope read; the lines of [`flame::folded`].
//! - **pprof** ([`pprof`]): a gzip-compressed `profile.proto`, with the
//!   sample types of Go's heap profiles (`alloc_objects`, `alloc_space`,
//!   `inuse_objects`, `inuse_space`), for `go tool pprof`, Pyroscope,
//!   Grafana and the other tools that read pprof profiles.
//! - **speedscope** ([`speedscope`]): speedscope's JSON file format, one
//!   "sampled" profile per metric (leaked, peak, allocated bytes and
//!   allocations).
//! - **chrome-trace** ([`chrome`]): Chrome's trace event JSON with the
//!   counters over time (live heap, program mmaps, RSS, PSS, USS, swap,
//!   cgroup), for Perfetto's UI and `chrome://tracing`.
//! - **massif** ([`massif`]): valgrind massif's output file for `ms_print`
//!   and massif-visualizer: the heap over time (in bytes allocated and
//!   freed), the peak's and the end's trees.
//! - **dhat** ([`dhat`]): valgrind DHAT's JSON for `dh_view.html`: per stack,
//!   bytes and blocks allocated, most live at once, at the peak and at the
//!   end, and the blocks' lifetimes.
//! - **heaptrack** ([`heaptrack`]): heaptrack's own data file for
//!   `heaptrack_print` and heaptrack_gui: every allocation and free, with
//!   its stack, replayed from the log.
//!
//! ## Constraints
//! - Every export is made from a report made with [`flame::all`] (no `top`
//!   limit), so that every stack of every list is in it: [`read`] does this.
//! - The pprof export needs each module's build-id and address range, which
//!   the report does not keep: [`read`] takes them from the log's catalog,
//!   which costs one more pass over the log (decoding only; memory still
//!   grows with distinct stacks and modules, not with events).
//! - massif, dhat and heaptrack need the heap over the run, which the report does not
//!   keep either: [`history::scan`] replays the log once more (memory grows
//!   with live blocks and distinct stacks).
//! - An export never changes the numbers: each format's totals equal the
//!   report's lists (a stack that was not recorded is exported as one frame
//!   named `[stack not recorded]`, so that its weight is not lost).
//!
//! [`Metric`]: crate::flame::Metric

pub mod chrome;
pub mod dhat;
pub mod heaptrack;
pub mod history;
pub mod massif;
pub mod pprof;
pub mod speedscope;

use std::path::Path;

use crate::analysis::catalog;
use crate::analysis::symbolize::{Frame, Module, Symbolizer};
use crate::error::Result;
use crate::flame::{self, Metric};
use crate::log::Log;
use crate::report::{self, Report};

/// The name of the one frame that stands for a stack that was not recorded.
pub const NO_STACK: &str = "[stack not recorded]";

/// The exporter's name and version (`memtrace 0.1.0`), as exports state it.
pub fn exporter() -> String {
    format!("memtrace {}", env!("CARGO_PKG_VERSION"))
}

/// What the exports are made from: the full report and what the log says
/// beyond it.
#[derive(Clone, Debug)]
pub struct Input {
    /// The report, made with [`flame::all`] (every stack of every list).
    pub report: Report,
    /// Every module the log recorded (loaded objects with build-ids and
    /// address ranges), in the order recorded.
    pub modules: Vec<Module>,
    /// When the process started (the header's wall-clock time), in
    /// nanoseconds since the Unix epoch; 0 when unknown.
    pub start_realtime_ns: u64,
}

/// Reads the log at `path`: the full report, symbolized, and its modules.
pub fn read(path: &Path) -> Result<Input> {
    let log = Log::open(path)?;
    let report = report::analyze_log(&log, &flame::all(), Symbolizer::new())?;
    let header = log.header()?;
    let index = log.index(&header)?;
    let cat = catalog::scan(&log, &index)?;
    let modules = (0..cat.modules.len())
        .map(|i| cat.modules.get(i).clone())
        .collect();
    Ok(Input {
        report,
        modules,
        start_realtime_ns: header.start_realtime_ns,
    })
}

impl Input {
    /// An input with no module information (exports then name modules by
    /// their path only, with no build-id or address range).
    pub fn from_report(report: Report) -> Input {
        Input {
            report,
            modules: Vec::new(),
            start_realtime_ns: 0,
        }
    }
}

/// The folded stacks of `metric`, as text (`outermost;...;innermost WEIGHT`
/// lines, sorted; zero weights left out).
pub fn folded(report: &Report, metric: Metric) -> String {
    flame::folded_text(&flame::folded(report, metric))
}

/// A stack (innermost first) out to its outermost `main`: the frames outside
/// it (libc's start-up) left out, as valgrind's tools show stacks. A stack
/// without `main` (a thread's) is whole.
pub fn below_main(stack: &[Frame]) -> &[Frame] {
    match stack
        .iter()
        .rposition(|f| f.function.as_deref() == Some("main"))
    {
        Some(i) => &stack[..=i],
        None => stack,
    }
}

/// The frames of one return address: the functions inlined at it
/// (innermost first), then the function they were inlined into, as
/// [`crate::analysis::symbolize`] orders them. Splits a stack (innermost first) into
/// such groups, in order: a group ends at a frame that is not inlined, or
/// where the next frame has another address or module.
pub fn address_groups(stack: &[Frame]) -> Vec<&[Frame]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 0..stack.len() {
        let f = &stack[i];
        let ends = !f.inlined
            || stack
                .get(i + 1)
                .is_none_or(|n| n.address != f.address || n.module != f.module);
        if ends {
            groups.push(&stack[start..=i]);
            start = i + 1;
        }
    }
    groups
}

/// The sites one metric weighs in the report, with each site's weight (the
/// report's lists, as [`flame::folded`] reads them).
pub fn weighted_sites(report: &Report, metric: Metric) -> Vec<(&[Frame], u64)> {
    let (sites, bytes) = match metric {
        Metric::Leaked => (&report.heap_leaks, true),
        Metric::Peak => (&report.peak, true),
        Metric::Allocated => (&report.allocated, true),
        Metric::Allocations => (&report.allocated, false),
        Metric::Temporary => (&report.temporary, false),
    };
    sites
        .iter()
        .map(|s| (&s.stack[..], if bytes { s.bytes } else { s.count }))
        .filter(|&(_, w)| w != 0)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// A frame of `module` at `address`.
    pub(crate) fn frame(name: Option<&str>, address: u64, inlined: bool) -> Frame {
        Frame {
            function: name.map(Into::into),
            mangled: name.map(|n| format!("_Z{n}")),
            file: name.map(|_| "/src/x.c".into()),
            line: name.map(|_| 7),
            module: Some(Arc::from("/usr/bin/prog")),
            address,
            offset: None,
            inlined,
        }
    }

    /// Inlined frames join the frame of their address; a lone inlined frame
    /// at another address (a damaged stack) is a group of its own.
    #[test]
    fn groups_by_address() {
        let s = vec![
            frame(Some("inner"), 0x10, true),
            frame(Some("mid"), 0x10, true),
            frame(Some("outer"), 0x10, false),
            frame(Some("main"), 0x20, false),
            frame(Some("odd"), 0x30, true),
            frame(None, 0x40, false),
            frame(Some("rec"), 0x10, true),
        ];
        let g = address_groups(&s);
        let lens: Vec<usize> = g.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [3, 1, 1, 1, 1]);
        assert_eq!(g[0][2].function.as_deref(), Some("outer"));
        assert!(address_groups(&[]).is_empty());
    }

    #[test]
    fn exporter_names_the_version() {
        assert!(exporter().starts_with("memtrace "));
    }
}
