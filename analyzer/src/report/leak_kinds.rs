//! Leaked bytes and blocks by reachability kind and by leak heuristic, and
//! the words the renderers print for them.

use std::collections::HashMap;

use crate::analysis::catalog::Catalog;
use crate::analysis::reach::Kind;
use crate::analysis::replay::Outcome;
use crate::kinds::ByKind;
use crate::units::plural;

use super::Site;

/// Bytes and blocks still reachable through each leak heuristic, in the
/// order of [`crate::analysis::reach::Heuristic::ALL`].
pub type Heurs = [(u64, u64); 4];

/// Adds `b` to `a`, entry by entry.
pub fn add_heurs(a: &mut Heurs, b: &Heurs) {
    for (x, y) in a.iter_mut().zip(b) {
        x.0 = x.0.saturating_add(y.0);
        x.1 = x.1.saturating_add(y.1);
    }
}

/// The heuristics of `h` that saved blocks, with their bytes and blocks.
pub fn heurs_present(h: &Heurs) -> Vec<(crate::analysis::reach::Heuristic, u64, u64)> {
    crate::analysis::reach::Heuristic::ALL
        .into_iter()
        .map(|x| (x, h[x.index()].0, h[x.index()].1))
        .filter(|(_, b, n)| (*b, *n) != (0, 0))
        .collect()
}

/// The kinds of `k` that have blocks (or bytes), in report order.
pub fn kinds_present(k: &ByKind) -> Vec<crate::analysis::reach::Kind> {
    crate::analysis::reach::Kind::ALL
        .into_iter()
        .filter(|kind| k[kind.index()] != (0, 0))
        .collect()
}

/// The kinds of `k` that have blocks, in words: `32 bytes in 1 block
/// definitely lost; 96 bytes in 3 blocks indirectly lost`.
pub fn kinds_text(k: &ByKind) -> String {
    let parts: Vec<String> = kinds_present(k)
        .into_iter()
        .map(|kind| {
            let (b, n) = k[kind.index()];
            format!(
                "{} in {} {}",
                plural(b, "byte", "bytes"),
                plural(n, "block", "blocks"),
                kind.words()
            )
        })
        .collect();
    parts.join("; ")
}

/// [`kinds_text`], the still reachable entry followed by what the leak
/// heuristics saved of it: `152 bytes in 3 blocks still reachable, of which
/// via heuristic newarray: 144 bytes in 2 blocks`.
pub fn kinds_text_via(k: &ByKind, h: &Heurs) -> String {
    let via = heurs_present(h);
    let mut text = kinds_text(k);
    if via.is_empty() || !kinds_present(k).contains(&crate::analysis::reach::Kind::StillReachable) {
        return text;
    }
    let parts: Vec<String> = via
        .into_iter()
        .map(|(h, b, n)| {
            format!(
                "{}: {} in {}",
                h.name(),
                plural(b, "byte", "bytes"),
                plural(n, "block", "blocks")
            )
        })
        .collect();
    text.push_str(&format!(", of which via heuristic {}", parts.join(", ")));
    text
}

/// Leaked bytes and blocks by kind, in all and on each of `heap_leaks`
/// (the sites of `out.heap_leaks`, in its order), and by heuristic: `None`
/// when the scan at exit did not classify the live blocks.
pub(super) fn classify(
    cat: &Catalog,
    out: &Outcome,
    heap_leaks: &mut [Site],
) -> Option<(ByKind, Heurs)> {
    let scanned = cat
        .scan_done
        .is_some_and(|d| d.status == memtrace_format::kernel::SCAN_OK);
    if cat.reach.is_empty() && !scanned {
        return None;
    }
    let mut by_stack: HashMap<u32, ByKind> = HashMap::new();
    let mut total: ByKind = [(0, 0); 4];
    let mut heur_by_stack: HashMap<u32, Heurs> = HashMap::new();
    let mut heur_total = Heurs::default();
    for (addr, b) in &out.live {
        let k = cat.reach.get(addr).copied().unwrap_or(Kind::DefinitelyLost);
        let i = Kind::ALL.iter().position(|x| *x == k).unwrap_or(0);
        let e = &mut by_stack.entry(b.stack).or_insert([(0, 0); 4])[i];
        e.0 = e.0.saturating_add(b.size);
        e.1 += b.count as u64;
        total[i].0 = total[i].0.saturating_add(b.size);
        total[i].1 += b.count as u64;
        if k == Kind::StillReachable
            && let Some(h) = cat.reach_heuristics.get(addr)
        {
            let e = &mut heur_by_stack.entry(b.stack).or_default()[h.index()];
            e.0 = e.0.saturating_add(b.size);
            e.1 += b.count as u64;
            let e = &mut heur_total[h.index()];
            e.0 = e.0.saturating_add(b.size);
            e.1 += b.count as u64;
        }
    }
    for (site, t) in heap_leaks.iter_mut().zip(&out.heap_leaks) {
        site.kinds = by_stack.get(&t.stack).copied();
        site.heuristics = heur_by_stack.get(&t.stack).copied().unwrap_or_default();
    }
    Some((total, heur_total))
}
