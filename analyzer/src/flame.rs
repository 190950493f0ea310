//! Stacks weighted by a metric, in the "folded" form flame graph tools read
//! (`outermost;...;innermost WEIGHT`, one line per stack): the input of
//! `memtrace flamegraph`, `memtrace diff` and `memtrace export --format folded`.
//!
//! Frames are named by their function (inlined functions are frames of their
//! own, as in the report); a frame without a symbol is named by its address
//! and module file name. Stacks come from the report's lists, so the report
//! must be made with no `top` limit ([`all`]).

use std::collections::BTreeMap;

use crate::report::{Options, Report, Site};
use crate::symbolize::Frame;

/// What a flame graph's widths measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Heap bytes live at exit (leaks).
    Leaked,
    /// Heap bytes live at the peak of the live heap.
    Peak,
    /// Heap bytes allocated, freed or not.
    Allocated,
    /// Number of allocations.
    Allocations,
    /// Number of temporary allocations (freed before their thread's next one).
    Temporary,
}

impl Metric {
    /// The metric's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Leaked => "leaked",
            Metric::Peak => "peak",
            Metric::Allocated => "allocated",
            Metric::Allocations => "allocations",
            Metric::Temporary => "temporary",
        }
    }

    /// Whether the weights are bytes (else counts).
    pub fn is_bytes(self) -> bool {
        matches!(self, Metric::Leaked | Metric::Peak | Metric::Allocated)
    }

    /// The report's sites this metric weighs, and the weight of one.
    fn sites(self, r: &Report) -> (&[Site], fn(&Site) -> u64) {
        match self {
            Metric::Leaked => (&r.heap_leaks, |s| s.bytes),
            Metric::Peak => (&r.peak, |s| s.bytes),
            Metric::Allocated => (&r.allocated, |s| s.bytes),
            Metric::Allocations => (&r.allocated, |s| s.count),
            Metric::Temporary => (&r.temporary, |s| s.count),
        }
    }

    /// The metric's total over the whole run, from the summary.
    pub fn total(self, r: &Report) -> u64 {
        let s = &r.summary;
        match self {
            Metric::Leaked => s.leaked_heap_bytes,
            Metric::Peak => s.peak_heap_bytes,
            Metric::Allocated => s.bytes_allocated,
            Metric::Allocations => s.allocations,
            Metric::Temporary => s.temporary_allocations,
        }
    }
}

/// Report options that keep every stack of every list.
pub fn all() -> Options {
    Options {
        top: Some(usize::MAX),
    }
}

/// A frame's name in a folded stack.
pub fn frame_name(f: &Frame) -> String {
    let name = match (&f.function, &f.module) {
        (Some(func), _) => func.clone(),
        (None, Some(m)) => format!("{:#x} ({})", f.address, m.rsplit('/').next().unwrap_or(m)),
        (None, None) => format!("{:#x}", f.address),
    };
    // `;` separates frames and the last space separates the weight.
    name.replace(';', ":").replace('\n', " ")
}

/// The folded stack of a site: outermost frame first.
pub fn stack_line(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "[stack not recorded]".to_owned();
    }
    let names: Vec<String> = frames.iter().rev().map(frame_name).collect();
    names.join(";")
}

/// The stacks weighted by `metric`, merged by folded name, sorted by stack
/// (flame graph tools want them sorted); zero weights are left out.
pub fn folded(r: &Report, metric: Metric) -> Vec<(String, u64)> {
    let (sites, weight) = metric.sites(r);
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for s in sites {
        let w = weight(s);
        if w == 0 {
            continue;
        }
        let e = by.entry(stack_line(&s.stack)).or_default();
        *e = e.saturating_add(w);
    }
    by.into_iter().collect()
}

/// The folded lines, as text.
pub fn folded_text(lines: &[(String, u64)]) -> String {
    let mut s = String::new();
    for (stack, w) in lines {
        s.push_str(stack);
        s.push(' ');
        s.push_str(&w.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: Option<&str>, addr: u64) -> Frame {
        Frame {
            function: name.map(Into::into),
            mangled: None,
            file: None,
            line: None,
            module: Some("/usr/lib/libx.so".into()),
            address: addr,
            inlined: false,
        }
    }

    /// Outermost first; unknown frames by address and module; separators escaped.
    #[test]
    fn lines() {
        let frames = vec![f(Some("leaf;x"), 1), f(None, 0x20), f(Some("main"), 3)];
        assert_eq!(stack_line(&frames), "main;0x20 (libx.so);leaf:x");
        assert_eq!(stack_line(&[]), "[stack not recorded]");
        let text = folded_text(&[("a;b".into(), 5)]);
        assert_eq!(text, "a;b 5\n");
    }
}
