//! heaptrack_print's questions, asked of one log: the allocation-size
//! histogram (`--histogram`), only the stacks through a function or module
//! (`--filter`), and the lists merged by the allocating function with its
//! callers (`--by function`).
//!
//! This module owns their model ([`Questions`]); `histogram` the size
//! buckets and the per-stack tally made during the pass over the events;
//! `filter` the pattern and the narrowing of the replay's lists to the
//! stacks it keeps; `by_function` the merging by function. Each is computed
//! only when asked for: none changes a report made without its flag.

use crate::frames::Frame;

mod by_function;
mod filter;
mod histogram;

pub use filter::Pattern;
pub(super) use filter::{Kept, Lists};
pub(super) use histogram::Tally;

use super::stacks::Stacks;
pub use histogram::{EXACT_UP_TO, bucket_bounds, bucket_of};

/// Which of the questions to answer (part of [`super::Options`]).
#[derive(Clone, Debug, Default)]
pub struct Asked {
    /// The allocation-size histogram.
    pub histogram: bool,
    /// Only the stacks through a frame matching this pattern.
    pub filter: Option<Pattern>,
    /// The lists merged by the allocating function.
    pub by_function: bool,
}

/// The answers; each `None` unless asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Questions {
    /// Allocations by requested size, smallest first; only the buckets that
    /// have allocations. Of the filtered stacks, under a filter.
    pub histogram: Option<Vec<SizeBucket>>,
    /// What the filter kept.
    pub filter: Option<Filtered>,
    /// The allocating functions, most bytes allocated first (at most `top`,
    /// default [`super::DEFAULT_PEAK_TOP`]). Of the filtered stacks, under a
    /// filter.
    pub by_function: Option<ByFunction>,
}

/// One bucket of the histogram: the allocations whose requested size is in
/// `min..=max` (sizes up to [`EXACT_UP_TO`] have a bucket each;
/// above, `2^(k-1)+1 ..= 2^k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeBucket {
    pub min: u64,
    pub max: u64,
    pub allocations: u64,
    pub bytes: u64,
}

/// The totals of the stacks a `--filter` kept (the summary keeps the whole
/// run's).
#[derive(Clone, Debug, PartialEq)]
pub struct Filtered {
    pub pattern: Pattern,
    /// Stacks kept, of the stacks that allocated, mapped or moved the break.
    pub stacks: u64,
    pub stacks_total: u64,
    pub allocations: u64,
    pub bytes_allocated: u64,
    pub temporary_allocations: u64,
    pub temporary_bytes: u64,
    pub leaked_heap_bytes: u64,
    pub leaked_heap_blocks: u64,
    pub leaked_mmap_bytes: u64,
    pub leaked_mmap_regions: u64,
    /// Their heap bytes and blocks live at the run's peak.
    pub peak_heap_bytes: u64,
    pub peak_heap_blocks: u64,
    /// Their distinct stacks holding leaked heap blocks and mappings.
    pub heap_leak_stacks: u64,
    pub mmap_leak_stacks: u64,
}

/// Heap figures of a function, or of one of its callers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub allocations: u64,
    pub bytes_allocated: u64,
    pub temporary_allocations: u64,
    pub leaked_bytes: u64,
    pub leaked_blocks: u64,
    /// Bytes and blocks live at the run's peak.
    pub peak_bytes: u64,
    pub peak_blocks: u64,
}

/// The lists merged by function.
#[derive(Clone, Debug, PartialEq)]
pub struct ByFunction {
    /// The functions listed.
    pub functions: Vec<FunctionSite>,
    /// Distinct allocating functions (before the limit).
    pub total: u64,
}

/// One allocating function: the innermost frame of the program's own code
/// ([`crate::frames::naming_frame`]) of every stack merged into it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSite {
    /// The function's frame in its largest stack (its file:line is that
    /// stack's).
    pub frame: Frame,
    pub totals: Totals,
    /// Stacks merged into it.
    pub stacks: u64,
    /// The frames right outside it, merged by function likewise, most bytes
    /// allocated first (at most as many as the functions).
    pub callers: Vec<CallerSite>,
    /// Distinct callers (before the limit).
    pub callers_total: u64,
}

/// A caller of an allocating function; `frame` is `None` when the function
/// is the stack's outermost frame.
#[derive(Clone, Debug, PartialEq)]
pub struct CallerSite {
    pub frame: Option<Frame>,
    pub totals: Totals,
    pub stacks: u64,
}

/// Answers the questions `asked`: narrows `lists` to the stacks through the
/// filter's pattern (returned, to narrow other lists), then makes the
/// histogram from `tally` and the lists by function (at most `top`).
pub(super) fn answer<'p>(
    asked: &'p Asked,
    stacks: &mut Stacks<'_>,
    mut lists: Lists<'_>,
    tally: Option<Tally>,
    top: usize,
) -> (Questions, Option<Kept<'p>>) {
    let mut q = Questions::default();
    let mut kept = asked.filter.as_ref().map(Kept::new);
    if let Some(k) = kept.as_mut() {
        q.filter = Some(filter::narrow(k, stacks, &mut lists));
    }
    q.histogram = tally.map(|t| t.histogram(|s| kept.as_mut().is_none_or(|k| k.keeps(stacks, s))));
    if asked.by_function {
        let src = by_function::Sources {
            allocated: lists.allocated,
            temporary: lists.temporary,
            heap_leaks: lists.heap_leaks,
            peak: lists.peak,
        };
        q.by_function = Some(by_function::by_function(stacks, src, top));
    }
    (q, kept)
}

impl super::Report {
    /// The summary of what the leak lists hold: the whole run's, or, under
    /// a filter, with the leaked heap and mapped figures of the stacks it
    /// kept.
    pub fn listed(&self) -> super::Summary {
        let mut s = self.summary.clone();
        if let Some(f) = &self.questions.filter {
            s.leaked_heap_bytes = f.leaked_heap_bytes;
            s.leaked_heap_blocks = f.leaked_heap_blocks;
            s.leaked_mmap_bytes = f.leaked_mmap_bytes;
            s.leaked_mmap_regions = f.leaked_mmap_regions;
        }
        s
    }
}

#[cfg(test)]
mod tests;
