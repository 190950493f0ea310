//! Stacks weighted by a metric, in the "folded" form flame graph tools read
//! (`outermost;...;innermost WEIGHT`, one line per stack): the input of
//! `memtrace flamegraph`, `memtrace diff` and `memtrace export --format folded`.
//!
//! Frames are named by their function (inlined functions are frames of their
//! own, as in the report); a frame without a symbol is named by its address
//! and module file name. Stacks come from the report's lists, so the report
//! must be made with no `top` limit ([`all`]).
//!
//! ## Flame graphs ([`render_svg`])
//! An interactive SVG drawn by the `inferno` crate (flamegraph.pl's format):
//! one frame per function, as wide as the metric's weight of the stacks
//! through it, callers below callees; click a frame to zoom, Ctrl-F (or the
//! "Search" button) to highlight functions by regular expression. Each
//! frame's tooltip (its `<title>`) says `function (N bytes, P%)` or `(N
//! allocations, P%)`. The title states the run's total for the metric
//! ([`Metric::total`]), the subtitle what the metric measures. Colors come
//! from flamegraph.pl's memory palette, chosen by a hash of the function
//! name, so the same function has the same color in every graph.
//!
//! Constraints: frames narrower than 0.01% of the total are left out (as
//! flamegraph.pl does; the text and JSON reports list every stack). A metric
//! with no weight at all (a run that leaks nothing) still gives a valid SVG,
//! one that says so ([`empty_svg`]), never an error. Names are escaped for
//! XML, and control characters in them become spaces ([`frame_name`]).
//!
//! ## Diffs ([`diff`], [`render_diff_svg`])
//! Two runs compared stack by stack: each folded stack's weight in the old
//! run and in the new one, and the growth, largest first. The differential
//! flame graph (inferno's `differential`, then its flame graph) draws the new
//! run's stacks, widths from the new run, colored by each function's own
//! change: red grew, blue shrank, the deeper the color the larger the
//! change relative to the largest. Stacks gone from the new run have no
//! width and are not drawn: the table lists them.

use std::collections::BTreeMap;
use std::io::{self, Write};

use inferno::flamegraph::color::{BasicPalette, Palette};

use crate::report::{Options, Report, Site, thousands};
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

    /// The metric with its unit, for headings: `leaked bytes`, `allocations`.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Leaked => "leaked bytes",
            Metric::Peak => "peak bytes",
            Metric::Allocated => "allocated bytes",
            Metric::Allocations => "allocations",
            Metric::Temporary => "temporary allocations",
        }
    }

    /// What one unit of weight is: "bytes" or "allocations" ([`Metric::is_bytes`]).
    pub fn unit(self) -> &'static str {
        if self.is_bytes() {
            "bytes"
        } else {
            "allocations"
        }
    }

    /// What the metric measures, in a sentence (a flame graph's subtitle).
    pub fn meaning(self) -> &'static str {
        match self {
            Metric::Leaked => "Heap bytes still allocated at exit (leaks), by allocating stack",
            Metric::Peak => "Heap bytes live at the peak of the live heap, by allocating stack",
            Metric::Allocated => "Heap bytes allocated over the whole run, freed or not, by stack",
            Metric::Allocations => "Number of heap allocations over the whole run, by stack",
            Metric::Temporary => {
                "Temporary allocations (freed before their thread's next allocation), by stack"
            }
        }
    }

    /// The run's total, in words: `2,612 bytes leaked in 11 blocks`.
    pub fn describe_total(self, r: &Report) -> String {
        let s = &r.summary;
        match self {
            Metric::Leaked => format!(
                "{} bytes leaked in {} blocks",
                thousands(s.leaked_heap_bytes),
                thousands(s.leaked_heap_blocks)
            ),
            Metric::Peak => format!(
                "peak of {} bytes live on the heap",
                thousands(s.peak_heap_bytes)
            ),
            Metric::Allocated => format!(
                "{} bytes allocated in {} allocations",
                thousands(s.bytes_allocated),
                thousands(s.allocations)
            ),
            Metric::Allocations => format!("{} allocations", thousands(s.allocations)),
            Metric::Temporary => format!(
                "{} temporary allocations ({} bytes)",
                thousands(s.temporary_allocations),
                thousands(s.temporary_bytes)
            ),
        }
    }
}

/// Report options that keep every stack of every list.
pub fn all() -> Options {
    Options {
        top: Some(usize::MAX),
        ..Options::default()
    }
}

/// A frame's name in a folded stack.
pub fn frame_name(f: &Frame) -> String {
    let name = match (&f.function, &f.module) {
        (Some(func), _) => func.clone(),
        (None, Some(m)) => format!("{:#x} ({})", f.address, m.rsplit('/').next().unwrap_or(m)),
        (None, None) => format!("{:#x}", f.address),
    };
    // `;` separates frames and the last space separates the weight; line
    // breaks and other control characters would break the line (and XML).
    name.chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
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

/// The run, for titles: the executable's file name and the pid, `gate (pid 1234)`.
pub fn run_name(r: &Report) -> String {
    let p = &r.process;
    let exe = if p.exe.is_empty() {
        p.cmdline.first().map_or("?", String::as_str)
    } else {
        &p.exe
    };
    let name = exe.rsplit('/').next().unwrap_or(exe);
    format!("{name} (pid {})", p.pid)
}

/// The flame graph's title: the run and its total, `gate (pid 1234): 2,612
/// bytes leaked in 11 blocks`.
pub fn title(r: &Report, metric: Metric) -> String {
    format!("{}: {}", run_name(r), metric.describe_total(r))
}

/// The subtitle: what the metric measures, and whether the figures are
/// sampling estimates.
fn subtitle(metric: Metric, reports: &[&Report]) -> String {
    let mut s = metric.meaning().to_owned();
    if let Some(r) = reports.iter().find(|r| r.summary.sample_interval != 0) {
        s.push_str(&format!(
            " (estimates: sampled, one point per {} bytes)",
            thousands(r.summary.sample_interval)
        ));
    }
    s
}

/// inferno's options for our graphs.
fn graph_options(
    title: String,
    subtitle: String,
    metric: Metric,
) -> inferno::flamegraph::Options<'static> {
    let mut o = inferno::flamegraph::Options::default();
    o.colors = Palette::Basic(BasicPalette::Mem);
    // Colors by a hash of the name: the same function, the same color, in every graph.
    o.hash = true;
    o.title = title;
    o.subtitle = Some(subtitle);
    o.count_name = metric.unit().to_owned();
    o
}

/// Escapes text for XML content and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A small SVG with a title and one line of text: what a graph with nothing
/// to draw shows instead (inferno refuses empty input).
pub fn empty_svg(title: &str, message: &str) -> String {
    let (t, m) = (xml_escape(title), xml_escape(message));
    format!(
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="80" viewBox="0 0 1200 80" xmlns="http://www.w3.org/2000/svg">
<title>{t}</title>
<rect x="0" y="0" width="100%" height="100%" fill="#eef2ee"/>
<text id="title" x="600" y="24" text-anchor="middle" font-family="Verdana" font-size="17">{t}</text>
<text id="message" x="600" y="56" text-anchor="middle" font-family="Verdana" font-size="12">{m}</text>
</svg>
"##
    )
}

/// Renders the flame graph of `metric` for the report as an SVG into `out`
/// (all of it or nothing: it is drawn in memory first). A metric with no
/// weight gives an [`empty_svg`] saying `no leaked bytes in this run`. The
/// report must be made with [`all`].
pub fn render_svg(r: &Report, metric: Metric, mut out: impl Write) -> io::Result<()> {
    let lines = folded(r, metric);
    let title = title(r, metric);
    if lines.is_empty() {
        let msg = format!("no {} in this run", metric.label());
        return out.write_all(empty_svg(&title, &msg).as_bytes());
    }
    let text = folded_text(&lines);
    let mut opts = graph_options(title, subtitle(metric, &[r]), metric);
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut svg)?;
    out.write_all(&svg)
}

/// One stack of a [`diff`]: its weight in the old run and in the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffLine {
    /// The folded stack, outermost frame first (frames never contain `;`).
    pub stack: String,
    /// The weight in the old run (0: the stack is new).
    pub old: u64,
    /// The weight in the new run (0: the stack is gone).
    pub new: u64,
    /// `new - old`, saturating at the bounds of `i64`.
    pub delta: i64,
}

impl DiffLine {
    /// The stack's frames, outermost first.
    pub fn frames(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.stack.split(';')
    }
}

/// Two folded profiles compared stack by stack ([`DiffLine`]), the largest
/// growth first (ties by stack). A stack present in only one of them has
/// weight 0 in the other.
pub fn diff_folded(old: &[(String, u64)], new: &[(String, u64)]) -> Vec<DiffLine> {
    let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (stack, w) in old {
        let e = by.entry(stack).or_default();
        e.0 = e.0.saturating_add(*w);
    }
    for (stack, w) in new {
        let e = by.entry(stack).or_default();
        e.1 = e.1.saturating_add(*w);
    }
    let mut v: Vec<DiffLine> = by
        .into_iter()
        .map(|(stack, (old, new))| DiffLine {
            stack: stack.to_owned(),
            old,
            new,
            delta: signed_delta(old, new),
        })
        .collect();
    // Stable: equal deltas keep the BTreeMap's order, by stack.
    v.sort_by_key(|l| std::cmp::Reverse(l.delta));
    v
}

/// `new - old` as an `i64`, saturating.
pub fn signed_delta(old: u64, new: u64) -> i64 {
    let d = i128::from(new) - i128::from(old);
    d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The growth of each stack of `metric` from run `old` to run `new`
/// ([`diff_folded`] of their [`folded`] stacks). Both reports must be made
/// with [`all`].
pub fn diff(old: &Report, new: &Report, metric: Metric) -> Vec<DiffLine> {
    diff_folded(&folded(old, metric), &folded(new, metric))
}

/// The differential flame graph's title: `leaked bytes: gate (pid 1) 100 →
/// gate (pid 2) 364 (+264)`.
pub fn diff_title(old: &Report, new: &Report, metric: Metric) -> String {
    let (o, n) = (metric.total(old), metric.total(new));
    let d = signed_delta(o, n);
    let sign = if d < 0 { "-" } else { "+" };
    format!(
        "{}: {} {} → {} {} ({sign}{})",
        metric.label(),
        run_name(old),
        thousands(o),
        run_name(new),
        thousands(n),
        thousands(d.unsigned_abs())
    )
}

/// Renders the differential flame graph of `metric` from `old` to `new`
/// into `out` (see the module doc): inferno's `differential` pairs the two
/// folded profiles, its flame graph draws the pairs. When the new run has no
/// weight at all, an [`empty_svg`] says so.
pub fn render_diff_svg(
    old: &Report,
    new: &Report,
    metric: Metric,
    mut out: impl Write,
) -> io::Result<()> {
    let (o, n) = (folded(old, metric), folded(new, metric));
    let title = diff_title(old, new, metric);
    if n.is_empty() {
        let msg = format!(
            "no {} in the new run (the old run: {})",
            metric.label(),
            thousands(metric.total(old))
        );
        return out.write_all(empty_svg(&title, &msg).as_bytes());
    }
    let mut paired = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        folded_text(&o).as_bytes(),
        folded_text(&n).as_bytes(),
        &mut paired,
    )?;
    let paired =
        String::from_utf8(paired).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let sub = format!(
        "{}. Widths: the new run; red: grew, blue: shrank",
        subtitle(metric, &[old, new])
    );
    let mut opts = graph_options(title, sub, metric);
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, paired.lines(), &mut svg)?;
    out.write_all(&svg)
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
        let ctl = vec![f(Some("a\tb\r\nc"), 1)];
        assert_eq!(stack_line(&ctl), "a b  c");
    }

    fn folded_of(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|&(s, w)| (s.to_owned(), w)).collect()
    }

    /// Largest growth first, ties by stack; stacks of one side only count 0 on the other.
    #[test]
    fn diff_orders_by_growth() {
        let old = folded_of(&[("m;a", 100), ("m;b", 50), ("m;c", 10), ("m;e", 7)]);
        let new = folded_of(&[("m;a", 300), ("m;c", 10), ("m;d", 64), ("m;f", 7)]);
        let d = diff_folded(&old, &new);
        let got: Vec<(&str, u64, u64, i64)> = d
            .iter()
            .map(|l| (l.stack.as_str(), l.old, l.new, l.delta))
            .collect();
        assert_eq!(
            got,
            vec![
                ("m;a", 100, 300, 200),
                ("m;d", 0, 64, 64),
                ("m;f", 0, 7, 7),
                ("m;c", 10, 10, 0),
                ("m;e", 7, 0, -7),
                ("m;b", 50, 0, -50),
            ]
        );
        assert_eq!(d[0].frames().collect::<Vec<_>>(), vec!["m", "a"]);
        assert_eq!(signed_delta(0, u64::MAX), i64::MAX);
        assert_eq!(signed_delta(u64::MAX, 0), i64::MIN);
        assert!(diff_folded(&[], &[]).is_empty());
    }

    /// The empty graph is escaped XML with the title and the message.
    #[test]
    fn empty_graph() {
        let svg = empty_svg("a <b> & \"c\"\u{1}", "no leaked bytes in this run");
        assert!(svg.contains("<title>a &lt;b&gt; &amp; &quot;c&quot; </title>"));
        assert!(svg.contains(">no leaked bytes in this run</text>"));
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    }

    /// A log's leaks drawn by inferno: title with the totals, frames with their bytes;
    /// a metric with nothing to draw (no block was freed before the next
    /// allocation: nothing temporary) gives the empty graph; the diff of a run with itself
    /// is all zeros and draws.
    #[test]
    fn render_from_log() {
        use crate::testlog::*;
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234, 0x5678])
            .stack(2, &[0x9abc, 0x5678])
            .alloc(T0 + 2, 0x30, 1000, 2)
            .alloc(T0 + 3, 0x10, 40, 1)
            .free(T0 + 4, 0x30)
            .alloc(T0 + 5, 0x20, 60, 2);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        let r = crate::report::analyze_bytes(&b.bytes, &all()).unwrap();
        assert_eq!(
            title(&r, Metric::Leaked),
            format!("prog (pid {}): 100 bytes leaked in 2 blocks", r.process.pid)
        );
        let mut svg = Vec::new();
        render_svg(&r, Metric::Leaked, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("100 bytes leaked in 2 blocks"), "{svg}");
        assert!(
            svg.contains("<title>0x1234 (40 bytes, 40.00%)</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>0x9abc (60 bytes, 60.00%)</title>"),
            "{svg}"
        );
        assert!(svg.contains("function search("));

        let mut svg = Vec::new();
        render_svg(&r, Metric::Temporary, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(
            svg.contains("no temporary allocations in this run"),
            "{svg}"
        );

        let d = diff(&r, &r, Metric::Allocated);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|l| l.delta == 0 && l.old == l.new));
        assert_eq!(d[0].stack, "0x5678;0x1234");
        let mut svg = Vec::new();
        render_diff_svg(&r, &r, Metric::Allocated, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("allocated bytes: prog"), "{svg}");
        assert!(svg.contains("(+0)"), "{svg}");
        assert!(
            svg.contains("<title>0x9abc (1,060 bytes, 96.36%; 0.00%)</title>"),
            "{svg}"
        );
    }
}
