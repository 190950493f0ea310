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
//! ## Leak kinds ([`folded_kinds`], [`render_svg_kinds`])
//! The `leaked` metric can draw only the blocks of some reachability kinds
//! (`--leak-kinds`, as `memtrace check` takes them: definitely, indirectly,
//! possibly lost, still reachable; see [`crate::analysis::reach`]): each leak weighs
//! the bytes of its blocks of those kinds (`Site::kinds`). The title gives
//! their total (`80 bytes in 2 blocks definitely lost`), each frame's
//! tooltip says `(48 bytes definitely lost, 60.00%)`, the subtitle names the
//! option and the run's whole leak. Without a choice (or with every kind),
//! every leaked byte is drawn as before, and the subtitle of a classified run
//! gives its bytes by kind. A leak that was not classified (`memtrace run
//! --no-reachability`, a plain `LD_PRELOAD` log) is drawn whole, as
//! `memtrace check` counts it, and the subtitle says so. The other metrics
//! have no kinds.
//!
//! Constraints: frames narrower than 0.01% of the total are left out (as
//! flamegraph.pl does; the text and JSON reports list every stack). A metric
//! with no weight at all (a run that leaks nothing) still gives a valid SVG,
//! one that says so ([`empty_svg`]), never an error. Names are escaped for
//! XML, and control characters in them become spaces ([`frames::label`]).
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

use crate::analysis::reach::Kind;
use crate::escape::xml as xml_escape;
use crate::frames::{self, Frame};
use crate::report::{Options, Report, Site};
use crate::units::{plural, thousands};

pub use self::diff::{
    DiffLine, diff, diff_folded, diff_kinds, diff_title, diff_title_kinds, render_diff_svg,
    render_diff_svg_kinds, signed_delta,
};

mod diff;

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

/// The folded stack of a site: outermost frame first.
pub fn stack_line(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "[stack not recorded]".to_owned();
    }
    let names: Vec<String> = frames.iter().rev().map(frames::label).collect();
    names.join(";")
}

/// The stacks weighted by `metric`, merged by folded name, sorted by stack
/// (flame graph tools want them sorted); zero weights are left out.
pub fn folded(r: &Report, metric: Metric) -> Vec<(String, u64)> {
    folded_kinds(r, metric, None)
}

/// The kinds a graph of `metric` is limited to: `kinds` for `leaked` when
/// they are not every kind; `None`: no limit.
fn only(metric: Metric, kinds: Option<&[Kind]>) -> Option<&[Kind]> {
    kinds.filter(|k| metric == Metric::Leaked && Kind::ALL.iter().any(|a| !k.contains(a)))
}

/// [`folded`], the `leaked` metric limited to the blocks of `kinds` (see
/// the module docs; `None`: every leaked byte).
pub fn folded_kinds(r: &Report, metric: Metric, kinds: Option<&[Kind]>) -> Vec<(String, u64)> {
    let (sites, weight) = metric.sites(r);
    let only = only(metric, kinds);
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for s in sites {
        let w = match only {
            Some(k) => crate::kinds::counted_part(s.bytes, s.count, s.kinds.as_ref(), k)
                .map_or(0, |(b, _)| b),
            None => weight(s),
        };
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
    title_kinds(r, metric, None)
}

/// [`title`] of a graph limited to `kinds`: `reach (pid 7): 80 bytes in 2
/// blocks definitely lost`.
pub fn title_kinds(r: &Report, metric: Metric, kinds: Option<&[Kind]>) -> String {
    format!(
        "{}: {}",
        run_name(r),
        describe_total_kinds(r, metric, kinds)
    )
}

/// The bytes and blocks of `kinds` the run leaked, when `metric` is limited
/// to them and the run was classified.
fn kinds_total(r: &Report, metric: Metric, kinds: Option<&[Kind]>) -> Option<(u64, u64)> {
    let k = only(metric, kinds)?;
    let all = r.summary.leak_kinds.as_ref()?;
    Some(k.iter().fold((0u64, 0u64), |(b, n), kind| {
        let (kb, kn) = all[kind.index()];
        (b.saturating_add(kb), n.saturating_add(kn))
    }))
}

/// The run's total of `metric` limited to `kinds` ([`Metric::total`] when
/// there is no limit or the run was not classified).
pub fn total_kinds(r: &Report, metric: Metric, kinds: Option<&[Kind]>) -> u64 {
    kinds_total(r, metric, kinds).map_or_else(|| metric.total(r), |(b, _)| b)
}

/// [`Metric::describe_total`] limited to `kinds`: `80 bytes in 2 blocks
/// definitely lost`.
pub fn describe_total_kinds(r: &Report, metric: Metric, kinds: Option<&[Kind]>) -> String {
    match (kinds_total(r, metric, kinds), only(metric, kinds)) {
        (Some((b, n)), Some(k)) => format!(
            "{} in {} {}",
            plural(b, "byte", "bytes"),
            plural(n, "block", "blocks"),
            Kind::phrase(k, "or")
        ),
        _ => metric.describe_total(r),
    }
}

/// The metric with its unit, limited to `kinds`: `bytes definitely lost`
/// ([`Metric::label`] when there is no limit).
pub fn label_kinds(metric: Metric, kinds: Option<&[Kind]>) -> String {
    match only(metric, kinds) {
        Some(k) => format!("bytes {}", Kind::phrase(k, "or")),
        None => metric.label().to_owned(),
    }
}

/// What one unit of weight is, for the frames' tooltips: `bytes`,
/// `allocations`, or `bytes definitely lost` when the graph is limited to
/// kinds that all the runs have.
fn unit_kinds(metric: Metric, kinds: Option<&[Kind]>, reports: &[&Report]) -> String {
    match only(metric, kinds) {
        Some(_) if reports.iter().all(|r| r.summary.leak_kinds.is_some()) => {
            label_kinds(metric, kinds)
        }
        _ => metric.unit().to_owned(),
    }
}

/// The subtitle: what the metric measures, and whether the figures are
/// sampling estimates; for a graph limited to `kinds`, which kinds, and the
/// run's whole leak; for a `leaked` graph of every kind, the bytes of each.
fn subtitle(metric: Metric, kinds: Option<&[Kind]>, reports: &[&Report]) -> String {
    let mut s = metric.meaning().to_owned();
    let classified = reports.iter().all(|r| r.summary.leak_kinds.is_some());
    match only(metric, kinds) {
        Some(k) if classified => {
            let names: Vec<&str> = k.iter().map(|k| k.as_str()).collect();
            s = format!(
                "Heap bytes {} at exit, by allocating stack (--leak-kinds {}",
                Kind::phrase(k, "or"),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(",")
                }
            );
            if let [r] = reports {
                s.push_str(&format!(
                    "; {} leaked in all",
                    plural(r.summary.leaked_heap_bytes, "byte", "bytes")
                ));
            }
            s.push(')');
        }
        Some(_) => s.push_str(
            " (not classified by reachability: --leak-kinds does not apply, every leaked byte is drawn)",
        ),
        None if metric == Metric::Leaked && reports.len() == 1 => {
            if let Some(all) = &reports[0].summary.leak_kinds {
                let parts: Vec<String> = Kind::ALL
                    .iter()
                    .map(|k| format!("{} {}", k.words(), thousands(all[k.index()].0)))
                    .collect();
                s.push_str(&format!("; all kinds: {} bytes", parts.join(", ")));
            }
        }
        None => {}
    }
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
    unit: String,
) -> inferno::flamegraph::Options<'static> {
    let mut o = inferno::flamegraph::Options::default();
    o.colors = Palette::Basic(BasicPalette::Mem);
    // Colors by a hash of the name: the same function, the same color, in every graph.
    o.hash = true;
    o.title = title;
    o.subtitle = Some(subtitle);
    o.count_name = unit;
    o
}

/// A small SVG with a title and one line of text: what a graph with nothing
/// to draw shows instead (inferno refuses empty input). Control characters
/// become spaces, as in the frames of a graph that draws.
pub fn empty_svg(title: &str, message: &str) -> String {
    let one_line = |s: &str| -> String {
        let s: String = s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        xml_escape(&s)
    };
    let (t, m) = (one_line(title), one_line(message));
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
pub fn render_svg(r: &Report, metric: Metric, out: impl Write) -> io::Result<()> {
    render_svg_kinds(r, metric, None, out)
}

/// [`render_svg`] of the `leaked` metric limited to the blocks of `kinds`
/// (see the module docs; `None`: every leaked byte).
pub fn render_svg_kinds(
    r: &Report,
    metric: Metric,
    kinds: Option<&[Kind]>,
    mut out: impl Write,
) -> io::Result<()> {
    let lines = folded_kinds(r, metric, kinds);
    let title = title_kinds(r, metric, kinds);
    if lines.is_empty() {
        let msg = format!("no {} in this run", label_kinds(metric, kinds));
        return out.write_all(empty_svg(&title, &msg).as_bytes());
    }
    let text = folded_text(&lines);
    let mut opts = graph_options(
        title,
        subtitle(metric, kinds, &[r]),
        unit_kinds(metric, kinds, &[r]),
    );
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut svg)?;
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
            offset: None,
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
        let b = two_stack_run();
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

    /// The leaked metric limited to kinds: weights, title, tooltips and
    /// subtitle; unclassified leaks are drawn whole; other metrics ignore it.
    #[test]
    fn leaked_by_kind() {
        use crate::testlog::*;
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234, 0x5678])
            .stack(2, &[0x9abc, 0x5678])
            .alloc(T0 + 3, 0x10, 40, 1)
            .alloc(T0 + 4, 0x60, 8, 1)
            .alloc(T0 + 5, 0x20, 60, 2);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        let plain = crate::report::analyze_bytes(&b.bytes, &all()).unwrap();
        let mut r = plain.clone();
        for s in &mut r.heap_leaks {
            s.kinds = Some(if s.bytes == 48 {
                // 0x1234: 40 bytes definitely lost, 8 still reachable.
                [(40, 1), (0, 0), (0, 0), (8, 1)]
            } else {
                [(0, 0), (60, 1), (0, 0), (0, 0)]
            });
        }
        r.summary.leak_kinds = Some([(40, 1), (60, 1), (0, 0), (8, 1)]);
        let definite: &[Kind] = &[Kind::DefinitelyLost];
        assert_eq!(
            folded_kinds(&r, Metric::Leaked, Some(definite)),
            [("0x5678;0x1234".to_owned(), 40)]
        );
        let lost: &[Kind] = &[Kind::DefinitelyLost, Kind::IndirectlyLost];
        assert_eq!(
            folded_kinds(&r, Metric::Leaked, Some(lost)),
            [
                ("0x5678;0x1234".to_owned(), 40),
                ("0x5678;0x9abc".to_owned(), 60)
            ]
        );
        assert_eq!(
            folded_kinds(&r, Metric::Leaked, Some(&Kind::ALL)),
            folded(&r, Metric::Leaked)
        );
        assert_eq!(
            folded_kinds(&r, Metric::Peak, Some(definite)),
            folded(&r, Metric::Peak)
        );
        assert_eq!(total_kinds(&r, Metric::Leaked, Some(lost)), 100);
        assert_eq!(total_kinds(&r, Metric::Leaked, None), 108);
        assert_eq!(
            title_kinds(&r, Metric::Leaked, Some(lost)),
            format!(
                "prog (pid {}): 100 bytes in 2 blocks definitely or indirectly lost",
                r.process.pid
            )
        );
        assert_eq!(
            label_kinds(Metric::Leaked, Some(definite)),
            "bytes definitely lost"
        );

        let svg = |r: &Report, kinds: Option<&[Kind]>| {
            let mut svg = Vec::new();
            render_svg_kinds(r, Metric::Leaked, kinds, &mut svg).unwrap();
            String::from_utf8(svg).unwrap()
        };
        let d = svg(&r, Some(definite));
        assert!(
            d.contains("<title>all (40 bytes definitely lost, 100%)</title>"),
            "{d}"
        );
        assert!(
            d.contains("<title>0x1234 (40 bytes definitely lost, 100.00%)</title>"),
            "{d}"
        );
        assert!(d.contains("40 bytes in 1 block definitely lost"), "{d}");
        assert!(
            d.contains("Heap bytes definitely lost at exit, by allocating stack (--leak-kinds definite; 108 bytes leaked in all)"),
            "{d}"
        );
        let a = svg(&r, None);
        assert!(a.contains("<title>all (108 bytes, 100%)</title>"), "{a}");
        assert!(
            a.contains("all kinds: definitely lost 40, indirectly lost 60, possibly lost 0, still reachable 8 bytes"),
            "{a}"
        );
        let p = svg(&r, Some(&[Kind::PossiblyLost]));
        assert!(p.contains("no bytes possibly lost in this run"), "{p}");
        // Not classified: every leaked byte, and the subtitle says why.
        let u = svg(&plain, Some(definite));
        assert!(u.contains("<title>all (108 bytes, 100%)</title>"), "{u}");
        assert!(u.contains("not classified by reachability"), "{u}");

        let d = diff_kinds(&plain, &r, Metric::Leaked, Some(definite));
        let got: Vec<(u64, u64)> = d.iter().map(|l| (l.old, l.new)).collect();
        assert_eq!(got, [(48, 40), (60, 0)]);
        assert_eq!(
            diff_title_kinds(&r, &r, Metric::Leaked, Some(definite)),
            format!(
                "bytes definitely lost: prog (pid {0}) 40 → prog (pid {0}) 40 (+0)",
                r.process.pid
            )
        );
    }
}
