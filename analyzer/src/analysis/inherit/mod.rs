//! A fork child's inheritance: the heap blocks and mappings its parent had
//! live at the fork, which the child holds from its first instant.
//!
//! A fork child's log (header `forked_from` = the parent's pid) starts empty:
//! the preload opens it in the child's fork handler, with a stack table of its
//! own. [`live_at_start`] finds the parent's log, replays it up to the fork
//! and hands back what was live then as a [`Seed`] for the child's replay,
//! with the stacks' frames carried over from the parent's log under ids of
//! their own in the child's namespace. The child's report then counts the
//! inherited blocks it never frees as its leaks (they are in its heap at its
//! exit, as memcheck and LeakSanitizer say), and its frees of them as
//! ordinary frees; the reachability scan ([`crate::analysis::reach::scan_input`])
//! classifies them with the rest.
//!
//! ## Finding the parent's log
//! Among the logs given with the child's (`memtrace check LOG...`, `memtrace
//! report --parent-log`: the `peers`), then the other files of the child
//! log's directory (those whose names hold the parent's pid first, each group in
//! name order): a log, not a snapshot, whose header's pid is `forked_from` and whose process image
//! lived at the child's start (started before it, and ended after it or not
//! known to have ended). No such log: [`Error::Inherit`].
//!
//! ## The moment of the fork
//! The parent's log is cut at its FORK record for the child (written when
//! `fork` returned in the parent: the last one for the child's pid at or
//! before the child's start, an earlier one being an earlier child's of the
//! same pid; one more than 10 s before the start is not taken), or at the
//! child's start (its header's CLOCK_MONOTONIC time, the clock of the
//! events), whichever comes first. Both come after the fork itself, so in a
//! parent with one thread the cut is exact. In a parent whose other threads
//! allocate at that moment, a block they allocate or free in the
//! microseconds between the fork and the cut may be placed on the wrong side
//! of it. The parent's log is read once, up to the cut and then on only
//! until every stack live at the cut has been defined: a child costs a pass
//! over the part of its parent's log before its fork.
//!
//! ## Grandchildren
//! A parent that is itself a fork child is seeded from its own parent first,
//! recursively (up to [`MAX_DEPTH`] generations), so a grandchild inherits
//! what the grandparent left its parent. A missing ancestor's log further up
//! does not fail the child's: the blocks known from the parent's log are
//! inherited, and [`Inherited::notes`] says what is missing.
//!
//! ## Stack ids
//! The seeded stacks take ids from `u32::MAX` down, one per distinct
//! parent stack, in the order of the parent's ids (so two analyses of one
//! child, a snapshot and its final log, give the same ids). The preload
//! numbers a process's own stacks from 1, so the two ranges do not meet.

pub mod blocks;

use crate::analysis::id_table::FirstUse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use memtrace_format::{Func, Header, Record};

use crate::analysis::catalog::Catalog;
use crate::analysis::replay::{Config, Replay, Seed};
use crate::analysis::symbolize::Module;
use crate::error::{Error, Result};
use crate::log::{Index, Log};

/// Generations followed up the tree at most.
pub const MAX_DEPTH: usize = 64;

/// A FORK record for the child's pid further than this before the child's
/// start (ns) is an earlier child's of the same pid: the replay's state is
/// kept only at those closer to it, at most [`MAX_COPIES`] times (a hostile
/// log could hold millions), the cut falling back to the child's start.
const FORK_WINDOW: u64 = 10_000_000_000;
const MAX_COPIES: u32 = 16;

/// The first id of the inherited stacks (they count down from it).
pub const FIRST_STACK: u32 = u32::MAX;

/// One inherited stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// Its id in the child's namespace.
    pub id: u32,
    /// The frames, innermost first, from the parent's log (or an ancestor's).
    pub frames: Vec<u64>,
    /// When the parent (or the ancestor) first used it: the moment whose
    /// loaded objects symbolize its frames.
    pub first_use: Option<u64>,
    /// Why the parent's unwinder did not finish it, if it did not.
    pub cut: Option<memtrace_format::Cut>,
}

/// What a fork child inherited from its parent.
#[derive(Clone, Debug)]
pub struct Inherited {
    /// The parent's log, and its pid.
    pub parent_log: PathBuf,
    pub parent_pid: u32,
    /// The moment the parent's log was cut (CLOCK_MONOTONIC ns).
    pub at: u64,
    /// The blocks and mappings live then, stack ids in the child's namespace.
    pub seed: Seed,
    /// The frames of those stacks.
    pub stacks: Vec<Stack>,
    /// The loaded objects the frames lie in, as the parent's log recorded
    /// them (some may be gone from the child's: unloaded before the fork).
    pub modules: Vec<Module>,
    /// What could not be followed further up the tree, in words.
    pub notes: Vec<String>,
}

impl Inherited {
    /// Heap bytes inherited.
    pub fn bytes(&self) -> u64 {
        self.seed
            .blocks
            .iter()
            .fold(0u64, |n, (_, b)| n.saturating_add(b.size))
    }

    /// Heap blocks inherited.
    pub fn blocks(&self) -> u64 {
        self.seed.blocks.iter().map(|(_, b)| b.count as u64).sum()
    }

    /// Mapped bytes inherited.
    pub fn mmap_bytes(&self) -> u64 {
        self.seed.regions.iter().map(|(s, e, _)| e - s).sum()
    }

    /// Makes the inherited stacks known to the child's catalog (their frames,
    /// and the parent's objects they lie in) and to its replay's first uses.
    pub fn annotate(&self, cat: &mut Catalog, first_use: &mut FirstUse) {
        for s in &self.stacks {
            cat.stacks.insert(s.id, s.frames.iter().copied());
            if let Some(cut) = s.cut {
                cat.cut.entry(s.id).or_insert(cut);
            }
            if let Some(t) = s.first_use {
                first_use.note(s.id, t);
            }
        }
        for m in &self.modules {
            cat.modules.add(m.clone());
        }
    }
}

/// The child's side of a fork, from its header.
#[derive(Clone, Copy, Debug)]
struct Child {
    pid: u32,
    forked_from: u32,
    start: u64,
}

impl Child {
    /// The process of a log, by its header.
    fn of(header: &Header<'_>) -> Child {
        Child {
            pid: header.pid,
            forked_from: header.forked_from,
            start: header.start_mono_ns,
        }
    }

    /// Whether a FORK record for `child_pid` at `time` may be this child's
    /// (one further than [`FORK_WINDOW`] before its start is an earlier
    /// child's of the same pid).
    fn forked_at(&self, child_pid: u64, time: u64) -> bool {
        child_pid == self.pid as u64 && time >= self.start.saturating_sub(FORK_WINDOW)
    }
}

/// The blocks and mappings the process of `child_log` inherited from its
/// parent at the fork: `Ok(None)` when it is not a fork child. `peers` are
/// logs to look for the parent's among before the child log's directory.
/// [`Error::Inherit`] when the parent's log cannot be found or read.
pub fn live_at_start(child_log: &Path, peers: &[PathBuf]) -> Result<Option<Inherited>> {
    let log = Log::open(child_log)?;
    let header = log.header()?;
    of_header(child_log, &header, peers)
}

/// [`live_at_start`] for a log whose header is already parsed.
pub fn of_header(
    child_log: &Path,
    header: &Header<'_>,
    peers: &[PathBuf],
) -> Result<Option<Inherited>> {
    let child = Child::of(header);
    inherit(child_log, child, peers, 0)
}

fn inherit(
    child_log: &Path,
    child: Child,
    peers: &[PathBuf],
    depth: usize,
) -> Result<Option<Inherited>> {
    if child.forked_from == 0 {
        return Ok(None);
    }
    let missing = |why: String| Error::Inherit {
        path: child_log.to_owned(),
        why,
    };
    if depth >= MAX_DEPTH {
        return Err(missing(format!(
            "more than {MAX_DEPTH} generations of fork children: the inheritance is not followed further"
        )));
    }
    let Some(parent) = find_parent(child_log, child, peers) else {
        return Err(missing(format!(
            "the log of its parent (pid {}) was not found, so the blocks it inherited at the fork \
             are not known: keep the logs of a process tree together (`memtrace report --parent-log` names it)",
            child.forked_from
        )));
    };
    at_fork(&parent, child, peers, depth)
        .map(Some)
        .map_err(|e| missing(format!("its parent's log cannot be read: {e}")))
}

/// A log's header fields needed to match it (`None`: not a log, or a snapshot).
fn candidate(path: &Path) -> Option<(u32, u64, u64)> {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if magic != memtrace_format::MAGIC && magic != crate::log::packed::MAGIC {
        return None;
    }
    let log = Log::open(path).ok()?;
    let h = log.header().ok()?;
    if h.snapshot_at != 0 {
        return None;
    }
    let end = if h.end_mono_ns != 0 {
        h.end_mono_ns
    } else {
        u64::MAX
    };
    Some((h.pid, h.start_mono_ns, end))
}

/// The same file (device and inode)?
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The parent's log (see the module docs).
fn find_parent(child_log: &Path, child: Child, peers: &[PathBuf]) -> Option<PathBuf> {
    let fits = |p: &Path| {
        p.is_file()
            && !same_file(p, child_log)
            && candidate(p).is_some_and(|(pid, start, end)| {
                pid == child.forked_from && start <= child.start && child.start <= end
            })
    };
    if let Some(p) = peers.iter().find(|p| fits(p)) {
        return Some(p.clone());
    }
    let dir = match child_log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Named as the child's is (`log.1.mtr`, not `./log.1.mtr`).
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| child_log.with_file_name(e.file_name()))
        .collect();
    // Those whose names hold the parent's pid first (`%p` in the output
    // name): in a directory of a large tree, the parent's log is then found
    // without opening every other log.
    let pid = child.forked_from.to_string();
    names.sort_by_cached_key(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        (!holds_number(&name, &pid), p.clone())
    });
    names.into_iter().find(|p| fits(p))
}

/// Whether `name` holds the decimal `number` with no digit on either side.
fn holds_number(name: &str, number: &str) -> bool {
    let b = name.as_bytes();
    name.match_indices(number).any(|(i, _)| {
        let j = i + number.len();
        (i == 0 || !b[i - 1].is_ascii_digit()) && (j == b.len() || !b[j].is_ascii_digit())
    })
}

/// Replays the parent's log up to the child's fork (module docs).
fn at_fork(parent_log: &Path, child: Child, peers: &[PathBuf], depth: usize) -> Result<Inherited> {
    let log = Log::open(parent_log)?;
    let header = log.header()?;
    let index = log.index(&header)?;
    let (up, notes) = ancestry(parent_log, &header, peers, depth);
    let from_up: HashMap<u32, &Stack> = up
        .iter()
        .flat_map(|u| u.stacks.iter().map(|s| (s.id, s)))
        .collect();
    let (cat, r, at) = replay_to_cut(
        &log,
        &index,
        Config::of(&header),
        child,
        up.as_ref(),
        &from_up,
    )?;
    let (seed, stacks, modules) = carry_over(&cat, &r, up.as_ref(), &from_up);
    Ok(Inherited {
        parent_log: parent_log.to_owned(),
        parent_pid: header.pid,
        at,
        seed,
        stacks,
        modules,
        notes,
    })
}

/// The inheritance of the parent of `parent_log` (of `header`), when it is
/// a fork child too, and what could not be followed further up the tree.
fn ancestry(
    parent_log: &Path,
    header: &Header<'_>,
    peers: &[PathBuf],
    depth: usize,
) -> (Option<Inherited>, Vec<String>) {
    let mut notes = Vec::new();
    let me = Child::of(header);
    let up = match inherit(parent_log, me, peers, depth + 1) {
        Ok(up) => up,
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    if let Some(up) = &up {
        notes.extend(up.notes.iter().cloned());
    }
    (up, notes)
}

/// One pass over the parent's log: the replay up to the cut (the state at
/// the child's last FORK record at or before its start, else at its start),
/// then the catalog on until it has every stack live at the cut (a STACK
/// record may come after its first use in the merged order). Returns the
/// catalog, the replay at the cut and the cut's time. `up`: the parent's
/// own inheritance, whose stacks (`from_up`) need no STACK record.
fn replay_to_cut(
    log: &Log,
    index: &Index,
    cfg: Config,
    child: Child,
    up: Option<&Inherited>,
    from_up: &HashMap<u32, &Stack>,
) -> Result<(Catalog, Replay, u64)> {
    let mut cat = Catalog::default();
    let mut r = Replay::new(cfg);
    if let Some(up) = up {
        r.seed(&up.seed);
    }
    let mut at_fork: Option<(Replay, u64)> = None;
    let mut cut: Option<(Replay, u64)> = None;
    let mut missing: HashSet<u32> = HashSet::new();
    let mut copies = 0;
    for ev in log.merge(index) {
        let ev = ev?;
        if !cfg.includes(&ev) {
            continue;
        }
        cat.observe(&ev, log, index)?;
        if cut.is_some() {
            if let Record::Stack { id, .. } = &ev.record {
                missing.remove(id);
            }
        } else if ev.time > child.start {
            let state = at_fork
                .take()
                .unwrap_or_else(|| (std::mem::replace(&mut r, Replay::new(cfg)), child.start));
            missing = state
                .0
                .live()
                .map(|(_, b)| b.stack)
                .chain(state.0.regions.pieces().map(|p| p.2))
                .filter(|s| *s != 0 && !from_up.contains_key(s) && !cat.stacks.contains(*s))
                .collect();
            cut = Some(state);
        } else {
            if let Record::Fork { child_pid, .. } = ev.record
                && child.forked_at(child_pid, ev.time)
                && copies < MAX_COPIES
            {
                copies += 1;
                at_fork = Some((r.clone(), ev.time));
            }
            r.apply(&ev);
        }
        if cut.is_some() && missing.is_empty() {
            break;
        }
    }
    // The log may end before the child's start (a parent killed at once).
    let (r, at) = cut.or(at_fork).unwrap_or((r, child.start));
    Ok((cat, r, at))
}

/// The parent's blocks and mappings live at the cut (`r`) as the child's
/// seed, their stacks renumbered in the child's namespace, with the frames
/// (from `cat`, or the parent's own inheritance `up`) and the objects they
/// lie in.
fn carry_over(
    cat: &Catalog,
    r: &Replay,
    up: Option<&Inherited>,
    from_up: &HashMap<u32, &Stack>,
) -> (Seed, Vec<Stack>, Vec<Module>) {
    // The parent's stacks of what was live, renumbered in the child's namespace.
    let mut blocks: Vec<(u64, crate::analysis::replay::Block)> = r.live().collect();
    blocks.sort_unstable_by_key(|b| b.0);
    let regions: Vec<(u64, u64, u32)> = r.regions.pieces().collect();
    let mut ids: BTreeMap<u32, u32> = blocks
        .iter()
        .map(|(_, b)| b.stack)
        .chain(regions.iter().map(|r| r.2))
        .map(|s| (s, 0))
        .collect();
    for (k, id) in ids.values_mut().enumerate() {
        *id = FIRST_STACK.saturating_sub(u32::try_from(k).unwrap_or(u32::MAX));
    }
    // The objects the frames lie in: the parent's, and those its own
    // inheritance carried from further up.
    let mut all = cat.modules.clone();
    for m in up.iter().flat_map(|u| &u.modules) {
        all.add(m.clone());
    }
    let mut stacks = Vec::with_capacity(ids.len());
    let mut used: std::collections::BTreeSet<usize> = Default::default();
    let mut funcs: Vec<(u32, Func)> = Vec::new();
    for (&old, &id) in &ids {
        let (frames, first_use, cut) = match from_up.get(&old) {
            Some(s) => (s.frames.clone(), s.first_use, s.cut),
            None => (
                cat.stacks.get(old).map(|f| f.to_vec()).unwrap_or_default(),
                r.first_use.get(old),
                cat.cut.get(&old).copied(),
            ),
        };
        for &a in &frames {
            if let Some(i) = all.find(a, first_use) {
                used.insert(i);
            }
        }
        if let Some(f) = r.alloc_func(old) {
            funcs.push((id, f));
        }
        stacks.push(Stack {
            id,
            frames,
            first_use,
            cut,
        });
    }
    let modules = used.iter().map(|&i| all.get(i).clone()).collect();
    let renumber = |s: u32| ids.get(&s).copied().unwrap_or(s);
    let seed = Seed {
        blocks: blocks
            .into_iter()
            .map(|(a, b)| {
                (
                    a,
                    crate::analysis::replay::Block {
                        stack: renumber(b.stack),
                        ..b
                    },
                )
            })
            .collect(),
        regions: regions
            .into_iter()
            .map(|(s, e, st)| (s, e, renumber(st)))
            .collect(),
        funcs,
    };
    (seed, stacks, modules)
}

#[cfg(test)]
mod tests;
