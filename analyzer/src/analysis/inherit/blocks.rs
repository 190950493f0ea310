//! The heap blocks alone that a fork child inherited: what its exit scan
//! needs while the child waits for it.
//!
//! The same parent's log, the same cut and the same generations as
//! [`super::live_at_start`] (module docs), but only the addresses and
//! requested sizes of the blocks live at the cut: no catalog, no stacks, no
//! series. A raw parent's log is not merged either: its chunks are decoded
//! on every core (`analysis::last_events`) for the latest event per address
//! and the child's FORK records, which fix the cut as the merge's order
//! would (`keyed`). A packed one is replayed merged up to the cut. The
//! tests compare both with the full inheritance, and with each other.
//!
//! A block's size is the size the program asked for, also in a sampled
//! log, as the scan wants it (the blocks as the process holds them).

use std::path::{Path, PathBuf};

use memtrace_format::{Header, Record};

use super::{Child, MAX_COPIES, MAX_DEPTH, find_parent};
use crate::analysis::last_events::{self, Key, Route};
use crate::analysis::replay::Config;
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::{Index, Log};

/// (address, requested size) of each live heap block, sorted by address.
pub type Blocks = Vec<(u64, u64)>;

/// The heap blocks the process of `child_log` (of `header`) held at its
/// first instant, inherited from its parent: `None` when it is no fork child,
/// or its parent's log is not found (among `peers`, then beside it), is
/// larger than `max_bytes` or cannot be read. A missing ancestor further up
/// leaves out what that ancestor passed on, as [`super::live_at_start`] does.
pub fn at_start(
    child_log: &Path,
    header: &Header<'_>,
    peers: &[PathBuf],
    max_bytes: u64,
) -> Option<Blocks> {
    of_child(child_log, Child::of(header), peers, 0, max_bytes)
}

fn of_child(
    child_log: &Path,
    child: Child,
    peers: &[PathBuf],
    depth: usize,
    max_bytes: u64,
) -> Option<Blocks> {
    if child.forked_from == 0 || depth >= MAX_DEPTH {
        return None;
    }
    let parent = find_parent(child_log, child, peers)?;
    if depth == 0 && std::fs::metadata(&parent).ok()?.len() > max_bytes {
        return None;
    }
    at_fork(&parent, child, peers, depth).ok()
}

/// The parent's blocks live at the child's cut, seeded with what the parent
/// inherited itself.
fn at_fork(parent_log: &Path, child: Child, peers: &[PathBuf], depth: usize) -> Result<Blocks> {
    let log = Log::open(parent_log)?;
    let header = log.header()?;
    let index = log.index(&header)?;
    let me = Child::of(&header);
    let seed = of_child(parent_log, me, peers, depth + 1, u64::MAX).unwrap_or_default();
    let cfg = Config::of(&header);
    if index.packed.is_some() {
        return to_cut(&log, &index, cfg, child, &seed);
    }
    keyed(&log, &index, cfg, child, &seed)
}

/// How long before the child's start a FORK record may be for the cut to
/// take one pass (ns): the events of that stretch are kept aside until the
/// cut is known. The FORK record comes when `fork` returns in the parent,
/// microseconds from the child's start; one further back takes a second pass.
const SIDE_WINDOW: u64 = 100_000_000;

/// [`to_cut`]'s blocks from a raw log without merging it, on every core
/// (`analysis::last_events`): the latest event per address up to the last
/// [`SIDE_WINDOW`] before the child's start, the events of that window aside,
/// and the child's FORK records, which fix the cut (the merge's order of the
/// one it would take); then the window's events before the cut. A cut further
/// back takes a second pass, for the events before it.
pub(super) fn keyed(
    log: &Log,
    index: &Index,
    cfg: Config,
    child: Child,
    seed: &[(u64, u64)],
) -> Result<Blocks> {
    let until = |time: u64| time <= child.start && (cfg.until == 0 || time <= cfg.until);
    let window = child.start.saturating_sub(SIDE_WINDOW);
    let keep = |key: Key| match key.0 {
        t if t < window && until(t) => Route::Table,
        t if until(t) => Route::Side,
        _ => Route::Drop,
    };
    let forks = |key: Key, r: &Record<'_>| {
        Ok(match *r {
            Record::Fork { child_pid, .. } if child.forked_at(child_pid, key.0) && until(key.0) => {
                Some(())
            }
            _ => None,
        })
    };
    let mut pass = last_events::scan(log, index, seed, &keep, &forks)?;
    let mut keys: Vec<Key> = pass.picked.iter().map(|(key, ())| *key).collect();
    keys.sort_unstable();
    // The merge keeps the state at each FORK record it meets, the first
    // MAX_COPIES of them, and the cut is the last one kept.
    let cut = keys
        .get(keys.len().min(MAX_COPIES as usize).wrapping_sub(1))
        .copied();
    if let Some(fork) = cut.filter(|fork| fork.0 < window) {
        let before = |key: Key| match key < fork {
            true => Route::Table,
            false => Route::Drop,
        };
        let none = |_: Key, _: &Record<'_>| Ok(None::<()>);
        pass = last_events::scan(log, index, seed, &before, &none)?;
    } else {
        for (key, addr, size) in std::mem::take(&mut pass.side) {
            if cut.is_none_or(|fork| key < fork) {
                pass.note(addr, key, size);
            }
        }
    }
    Ok(pass.live())
}

/// One pass over the parent's log up to the cut (the state at the child's
/// last FORK record at or before its start, else at its start), as
/// [`super::replay_to_cut`] takes it.
pub(super) fn to_cut(
    log: &Log,
    index: &Index,
    cfg: Config,
    child: Child,
    seed: &[(u64, u64)],
) -> Result<Blocks> {
    let mut live: FastMap<u64, u64> = seed.iter().copied().collect();
    let mut at_fork: Option<FastMap<u64, u64>> = None;
    let mut copies = 0;
    for ev in log.merge(index) {
        let ev = ev?;
        if !cfg.includes(&ev) {
            continue;
        }
        if ev.time > child.start {
            break;
        }
        match ev.record {
            Record::Alloc { addr, size, .. } if addr != 0 => {
                live.insert(addr, size);
            }
            Record::Free { addr, .. } if addr != 0 => {
                live.remove(&addr);
            }
            Record::Realloc { old, new, size, .. } => {
                if !ev.realloc_end {
                    if memtrace_format::realloc_released(old, new, size) {
                        live.remove(&old);
                    }
                } else if new != 0 {
                    live.insert(new, size);
                }
            }
            Record::Fork { child_pid, .. }
                if child.forked_at(child_pid, ev.time) && copies < MAX_COPIES =>
            {
                copies += 1;
                at_fork = Some(live.clone());
            }
            _ => {}
        }
    }
    let mut blocks: Blocks = at_fork.unwrap_or(live).into_iter().collect();
    blocks.sort_unstable();
    Ok(blocks)
}
