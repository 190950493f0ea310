//! The report's stacks, symbolized once each however many lists report
//! them.

use crate::analysis::id_table::FirstUse;
use std::collections::HashMap;
use std::sync::Arc;

use crate::analysis::catalog::Catalog;
use crate::analysis::replay::{Outcome, StackTotal};
use crate::analysis::symbolize::{Frame, Symbolizer};
use crate::hash::FastMap;
use memtrace_format::Func;

use super::{Heurs, Progress, Site, Stage};

/// The report's stacks: each symbolized once, however many lists report
/// it, with progress reported now and then.
pub(super) struct Stacks<'a> {
    sym: &'a mut Symbolizer,
    cat: &'a Catalog,
    first_use: &'a FirstUse,
    leak_funcs: &'a FastMap<u32, Func>,
    progress: Option<&'a Progress>,
    resolved: HashMap<u32, Arc<[Frame]>>,
    /// Entries of all the lists, for the progress fraction.
    all: usize,
}

impl<'a> Stacks<'a> {
    /// The symbolizer of `cat`'s stacks, for the lists of `out` (whose
    /// lists stay free to be narrowed: only two maps of it are borrowed).
    pub(super) fn new(
        sym: &'a mut Symbolizer,
        cat: &'a Catalog,
        (first_use, leak_funcs): (&'a FirstUse, &'a FastMap<u32, Func>),
        all: usize,
        progress: Option<&'a Progress>,
    ) -> Self {
        Stacks {
            sym,
            cat,
            first_use,
            leak_funcs,
            progress,
            resolved: HashMap::new(),
            all: all.max(1),
        }
    }

    /// The frames of `stack`, symbolized.
    pub(super) fn resolve(&mut self, stack: u32) -> Arc<[Frame]> {
        let n = self.resolved.len();
        if let Some(p) = self.progress
            && n.is_multiple_of(64)
        {
            (p.0)(
                Stage::Symbolizing,
                Some((n as f64 / self.all as f64).min(1.0)),
            );
        }
        let (sym, cat, first_use) = (&mut *self.sym, self.cat, self.first_use);
        self.resolved
            .entry(stack)
            .or_insert_with(|| resolve_stack(sym, cat, first_use, stack).into())
            .clone()
    }

    /// The site of `bytes` in `count` blocks or regions of `stack`.
    pub(super) fn site(&mut self, stack: u32, bytes: u64, count: u64) -> Site {
        Site {
            bytes,
            count,
            func: self.leak_funcs.get(&stack).copied(),
            kinds: None,
            heuristics: Heurs::default(),
            stack: self.resolve(stack),
        }
    }

    /// The first `limit` entries of `v` as sites.
    pub(super) fn sites(&mut self, v: &[StackTotal], limit: usize) -> Vec<Site> {
        v.iter()
            .take(limit)
            .map(|t| self.site(t.stack, t.bytes, t.count))
            .collect()
    }
}

/// Entries of all of `out`'s lists, for the progress fraction.
pub(super) fn entries(out: &Outcome) -> usize {
    (out.heap_leaks.len() + out.mmap_leaks.len() + out.peak.len())
        .saturating_add(out.allocated.len() + out.temporary.len() + out.brk.len())
}

fn resolve_stack(
    sym: &mut Symbolizer,
    cat: &Catalog,
    first_use: &FirstUse,
    stack: u32,
) -> Vec<Frame> {
    match cat.stacks.get(stack) {
        Some(frames) => sym.stack(&cat.modules, &frames.to_vec(), first_use.get(stack)),
        None => Vec::new(),
    }
}
