//! The replay of a whole log: its [`Outcome`], the lists by stack with the
//! ids of one stack merged, and the mappings live at a given moment.

use crate::analysis::id_table::FirstUse;
use memtrace_format::Func;

use super::{Block, BrkTotal, Config, Counts, Journal, Point, Replay, Seed, StackTotal, sorted};
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::{Index, Log};

/// What the replay of a whole log found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub counts: Counts,
    /// Heap blocks live at the end, by stack.
    pub heap_leaks: Vec<StackTotal>,
    pub leaked_heap_bytes: u64,
    pub leaked_heap_blocks: u64,
    /// Regions mapped at the end, by stack.
    pub mmap_leaks: Vec<StackTotal>,
    pub leaked_mmap_bytes: u64,
    pub leaked_mmap_regions: u64,
    /// Heap blocks live at the peak, by stack.
    pub peak: Vec<StackTotal>,
    /// Heap blocks allocated, by stack.
    pub allocated: Vec<StackTotal>,
    /// Temporary allocations, by stack (most first).
    pub temporary: Vec<StackTotal>,
    /// Live heap and mapped bytes over time (at most [`SERIES_MAX`](super::SERIES_MAX) points,
    /// about evenly spaced, the last one at the last event).
    pub series: Vec<Point>,
    /// The heap blocks live at the end, by address.
    pub live: Vec<(u64, Block)>,
    /// Explicit brk/sbrk growth by stack.
    pub brk: Vec<BrkTotal>,
    /// First use of each stack id.
    pub first_use: FirstUse,
    /// The allocating function of each stack holding leaked heap blocks.
    pub leak_funcs: FastMap<u32, Func>,
    /// Records cut short by the end of a truncated file.
    pub cut_records: u64,
    /// The changes the events made to the mappings (see [`Journal`]).
    pub journal: Journal,
}

impl Outcome {
    /// Folds each id of `aliases` into the id it maps to (see
    /// [`crate::analysis::catalog::Catalog::stack_aliases`]): every list keyed by stack
    /// then names each stack once, with the sums of its ids, in the lists'
    /// orders. Nothing to do (and nothing done) without aliases.
    pub fn merge_stacks(&mut self, aliases: &FastMap<u32, u32>) {
        if aliases.is_empty() {
            return;
        }
        let canon = |s: u32| aliases.get(&s).copied().unwrap_or(s);
        self.heap_leaks = merge_sorted(std::mem::take(&mut self.heap_leaks), aliases);
        self.mmap_leaks = merge_sorted(std::mem::take(&mut self.mmap_leaks), aliases);
        self.peak = merge_sorted(std::mem::take(&mut self.peak), aliases);
        self.allocated = merge_sorted(std::mem::take(&mut self.allocated), aliases);
        self.temporary = merge_totals(&self.temporary, aliases);
        self.temporary
            .sort_by(|a, b| (b.count, b.bytes, a.stack).cmp(&(a.count, a.bytes, b.stack)));
        let mut brk: FastMap<u32, i64> = FastMap::default();
        for b in &self.brk {
            let e = brk.entry(canon(b.stack)).or_default();
            *e = e.saturating_add(b.bytes);
        }
        self.brk = brk
            .into_iter()
            .filter(|&(_, bytes)| bytes != 0)
            .map(|(stack, bytes)| BrkTotal { stack, bytes })
            .collect();
        self.brk
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.stack.cmp(&b.stack)));
        for (_, b) in &mut self.live {
            b.stack = canon(b.stack);
        }
        for (&dup, &to) in aliases {
            if let Some(t) = self.first_use.get(dup) {
                self.first_use.note_earliest(to, t);
            }
            if let Some(f) = self.leak_funcs.remove(&dup) {
                self.leak_funcs.entry(to).or_insert(f);
            }
        }
    }
}

/// `v` (largest first) with the ids of `aliases` folded into the ids they
/// map to, largest first (see [`Outcome::merge_stacks`]).
pub fn merge_sorted(v: Vec<StackTotal>, aliases: &FastMap<u32, u32>) -> Vec<StackTotal> {
    if aliases.is_empty() {
        return v;
    }
    sorted(merge_totals(&v, aliases))
}

/// `v` with the totals of the ids in `aliases` added to those of the ids
/// they map to (unsorted).
fn merge_totals(v: &[StackTotal], aliases: &FastMap<u32, u32>) -> Vec<StackTotal> {
    let mut m: FastMap<u32, (u64, u64)> = FastMap::default();
    for t in v {
        let e = m
            .entry(aliases.get(&t.stack).copied().unwrap_or(t.stack))
            .or_default();
        e.0 = e.0.saturating_add(t.bytes);
        e.1 = e.1.saturating_add(t.count);
    }
    m.into_iter()
        .map(|(stack, (bytes, count))| StackTotal {
            stack,
            bytes,
            count,
        })
        .collect()
}

/// Replays the whole log twice (see the module docs) and returns the totals.
pub fn replay(log: &Log, index: &Index, cfg: Config) -> Result<Outcome> {
    replay_with(log, index, cfg, |_| Ok(()))
}

/// [`replay`], handing every event of the full pass to `each` first (the
/// catalog rides along, so the log is walked once less).
pub fn replay_with(
    log: &Log,
    index: &Index,
    cfg: Config,
    each: impl FnMut(&crate::log::Event<'_>) -> Result<()>,
) -> Result<Outcome> {
    replay_seeded(log, index, cfg, None, each)
}

/// [`replay_with`], starting from `seed`'s live blocks and mappings (a fork
/// child's inheritance, [`crate::analysis::inherit::live_at_start`]).
pub fn replay_seeded(
    log: &Log,
    index: &Index,
    cfg: Config,
    seed: Option<&Seed>,
    mut each: impl FnMut(&crate::log::Event<'_>) -> Result<()>,
) -> Result<Outcome> {
    let fresh = || {
        let mut r = Replay::new(cfg);
        if let Some(s) = seed {
            r.seed(s);
        }
        r
    };
    let mut r = fresh();
    // Decoding (and merging) runs on a thread of its own, a batch ahead of
    // the replay: the two halves of the work overlap on two cores.
    let cut_records = crate::log::for_each_event(log, index, |ev| {
        if !cfg.includes(ev) {
            return Ok(());
        }
        each(ev)?;
        r.apply(ev);
        Ok(())
    })?;
    let peak = match (r.peak_by_stack(), r.counts.peak_event) {
        (Some(picture), _) => picture,
        (None, Some(at)) => {
            let mut p = fresh();
            for ev in log.merge(index) {
                let ev = ev?;
                if !cfg.includes(&ev) {
                    continue;
                }
                p.apply(&ev);
                if p.events() > at {
                    break;
                }
            }
            p.heap_by_stack()
        }
        (None, None) => Vec::new(),
    };
    let heap_leaks = r.heap_by_stack();
    let leak_funcs = heap_leaks
        .iter()
        .filter_map(|t| Some((t.stack, r.alloc_func(t.stack)?)))
        .collect();
    Ok(Outcome {
        leak_funcs,
        heap_leaks,
        leaked_heap_bytes: r.live_bytes(),
        leaked_heap_blocks: r.live_blocks(),
        mmap_leaks: r.regions.by_stack(),
        leaked_mmap_bytes: r.regions.bytes(),
        leaked_mmap_regions: r.regions.regions(),
        peak,
        allocated: r.allocated_by_stack(),
        temporary: r.temporary_by_stack(),
        series: r.take_series(),
        brk: r.brk_by_stack(),
        live: {
            let mut v: Vec<(u64, Block)> = r.live().collect();
            v.sort_unstable_by_key(|e| e.0);
            v
        },
        first_use: std::mem::take(&mut r.first_use),
        counts: r.counts,
        cut_records,
        journal: std::mem::take(&mut r.journal),
    })
}

/// The program's own mappings live at `time` (CLOCK_MONOTONIC ns), by stack,
/// largest first: a replay of the log up to that moment.
pub fn mapped_at(log: &Log, index: &Index, cfg: Config, time: u64) -> Result<Vec<StackTotal>> {
    let mut r = Replay::new(cfg);
    for ev in log.merge(index) {
        let ev = ev?;
        if ev.time > time {
            break;
        }
        r.apply(&ev);
    }
    Ok(r.regions.by_stack())
}
