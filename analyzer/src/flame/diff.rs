//! Two runs compared stack by stack (`memtrace diff`): the folded stacks'
//! weights in each and the growth, and the differential flame graph (see
//! the parent module's docs).
//!
//! Uses the parent's folding and graph options, and the report model.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::*;

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
    diff_kinds(old, new, metric, None)
}

/// [`diff`] of the `leaked` metric limited to the blocks of `kinds`.
pub fn diff_kinds(
    old: &Report,
    new: &Report,
    metric: Metric,
    kinds: Option<&[Kind]>,
) -> Vec<DiffLine> {
    diff_folded(
        &folded_kinds(old, metric, kinds),
        &folded_kinds(new, metric, kinds),
    )
}

/// The differential flame graph's title: `leaked bytes: gate (pid 1) 100 →
/// gate (pid 2) 364 (+264)`.
pub fn diff_title(old: &Report, new: &Report, metric: Metric) -> String {
    diff_title_kinds(old, new, metric, None)
}

/// [`diff_title`] of the `leaked` metric limited to `kinds`.
pub fn diff_title_kinds(
    old: &Report,
    new: &Report,
    metric: Metric,
    kinds: Option<&[Kind]>,
) -> String {
    let (o, n) = (
        total_kinds(old, metric, kinds),
        total_kinds(new, metric, kinds),
    );
    let d = signed_delta(o, n);
    let sign = if d < 0 { "-" } else { "+" };
    format!(
        "{}: {} {} → {} {} ({sign}{})",
        label_kinds(metric, kinds),
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
    out: impl Write,
) -> io::Result<()> {
    render_diff_svg_kinds(old, new, metric, None, out)
}

/// [`render_diff_svg`] of the `leaked` metric limited to the blocks of `kinds`.
pub fn render_diff_svg_kinds(
    old: &Report,
    new: &Report,
    metric: Metric,
    kinds: Option<&[Kind]>,
    mut out: impl Write,
) -> io::Result<()> {
    let (o, n) = (
        folded_kinds(old, metric, kinds),
        folded_kinds(new, metric, kinds),
    );
    let title = diff_title_kinds(old, new, metric, kinds);
    if n.is_empty() {
        let msg = format!(
            "no {} in the new run (the old run: {})",
            label_kinds(metric, kinds),
            thousands(total_kinds(old, metric, kinds))
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
        subtitle(metric, kinds, &[old, new])
    );
    let mut opts = graph_options(title, sub, unit_kinds(metric, kinds, &[old, new]));
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, paired.lines(), &mut svg)?;
    out.write_all(&svg)
}
