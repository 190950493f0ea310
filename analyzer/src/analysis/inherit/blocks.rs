//! The heap blocks alone that a fork child inherited: what its exit scan
//! needs while the child waits for it.
//!
//! The same parent's log, the same cut and the same generations as
//! [`super::live_at_start`] (module docs), but only the addresses and
//! requested sizes of the blocks live at the cut: no catalog, no stacks, no
//! series, and the pass over the parent's log stops at the cut (the full
//! inheritance reads on until every stack live at the cut is defined). The
//! scan of a child whose parent interned many stacks no longer pays for
//! interning them again. The tests compare it with the full inheritance.
//!
//! A block's size is the size the program asked for, also in a sampled
//! log, as the scan wants it (the blocks as the process holds them).

use std::path::{Path, PathBuf};

use memtrace_format::{Header, Record};

use super::{Child, FORK_WINDOW, MAX_COPIES, MAX_DEPTH, find_parent};
use crate::analysis::replay::Config;
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::Log;

/// Address → requested size of each live heap block.
pub type Blocks = FastMap<u64, u64>;

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
    let child = Child {
        pid: header.pid,
        forked_from: header.forked_from,
        start: header.start_mono_ns,
    };
    of_child(child_log, child, peers, 0, max_bytes)
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
    let me = Child {
        pid: header.pid,
        forked_from: header.forked_from,
        start: header.start_mono_ns,
    };
    let live = of_child(parent_log, me, peers, depth + 1, u64::MAX).unwrap_or_default();
    to_cut(&log, &index, Config::of(&header), child, live)
}

/// One pass over the parent's log up to the cut (the state at the child's
/// last FORK record at or before its start, else at its start), as
/// [`super::replay_to_cut`] takes it.
fn to_cut(
    log: &Log,
    index: &crate::log::Index,
    cfg: Config,
    child: Child,
    mut live: Blocks,
) -> Result<Blocks> {
    let mut at_fork: Option<Blocks> = None;
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
                if child_pid == child.pid as u64
                    && ev.time >= child.start.saturating_sub(FORK_WINDOW)
                    && copies < MAX_COPIES =>
            {
                copies += 1;
                at_fork = Some(live.clone());
            }
            _ => {}
        }
    }
    Ok(at_fork.unwrap_or(live))
}
