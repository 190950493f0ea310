//! The leaks narrowed to the blocks born since an earlier snapshot or old
//! enough (`--since`, `--older-than`), and the growth since that snapshot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memtrace_format::Header;

use crate::analysis::catalog::Catalog;
use crate::analysis::replay::{self, Outcome, StackTotal};
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::Log;
use crate::units::signed;

use super::stacks::Stacks;
use super::{Options, Site, ms_since};

/// An earlier snapshot of a process (`memtrace report --since`).
#[derive(Clone, Debug)]
pub struct Since {
    pub path: PathBuf,
    pub pid: u32,
    pub start_mono_ns: u64,
    /// When it was taken (CLOCK_MONOTONIC ns).
    pub time: u64,
    /// Live heap bytes and blocks then, in all and by stack id.
    pub bytes: u64,
    pub blocks: u64,
    pub by_stack: HashMap<u32, (u64, u64)>,
    /// The blocks classified definitely or indirectly lost then: address,
    /// allocation time, size. One freed later was not lost: the program
    /// held a pointer the scan could not see.
    pub lost: Vec<(u64, u64, u64)>,
}

/// Reads the snapshot at `path` for [`Options::since`].
pub fn since_snapshot(path: &Path) -> Result<Since> {
    let log = Log::open(path)?;
    let header = log.header()?;
    if header.snapshot_at == 0 {
        return Err(crate::Error::Since {
            path: path.to_owned(),
            why: "not a snapshot (`memtrace snapshot PID` makes them)".into(),
        });
    }
    let index = log.index(&header)?;
    let mut cat = Catalog::default();
    // The same inheritance as the later log's, under the same stack ids.
    let inherited = crate::analysis::inherit::of_header(path, &header, &[]).unwrap_or(None);
    let mut out = replay::replay_seeded(
        &log,
        &index,
        replay::Config::of(&header),
        inherited.as_ref().map(|i| &i.seed),
        |ev| cat.observe(ev, &log, &index),
    )?;
    if let Some(i) = &inherited {
        i.annotate(&mut cat, &mut out.first_use);
    }
    // One stack under one id (the later log maps these ids once more).
    out.merge_stacks(&cat.stack_aliases(&out.first_use));
    let lost = out
        .live
        .iter()
        .filter(|(a, _)| {
            matches!(
                cat.reach.get(a),
                Some(
                    crate::analysis::reach::Kind::DefinitelyLost
                        | crate::analysis::reach::Kind::IndirectlyLost
                )
            )
        })
        .map(|(a, b)| (*a, b.time, b.size))
        .collect();
    Ok(Since {
        lost,
        path: path.to_owned(),
        pid: header.pid,
        start_mono_ns: header.start_mono_ns,
        time: header.snapshot_at,
        bytes: out.leaked_heap_bytes,
        blocks: out.leaked_heap_blocks,
        by_stack: out
            .heap_leaks
            .iter()
            .map(|t| (t.stack, (t.bytes, t.count)))
            .collect(),
    })
}

/// How the leak list was narrowed (`--since`, `--older-than`), and the
/// growth since the earlier snapshot.
#[derive(Clone, Debug)]
pub struct LiveFilter {
    /// The earlier snapshot: its file, when it was taken (ms since the
    /// start), and the live heap then.
    pub since: Option<(PathBuf, f64, u64, u64)>,
    /// Minimum age of the blocks listed, ms.
    pub older_than_ms: Option<f64>,
    /// All live heap bytes and blocks at the end, before narrowing.
    pub all_bytes: u64,
    pub all_blocks: u64,
    /// With `since`: the live heap by stack now against then, the stacks
    /// whose live bytes changed, largest growth first.
    pub growth: Vec<Growth>,
    /// With `since`: bytes and blocks classified lost then, and freed by
    /// now: the scan missed the program's pointers to them (see the
    /// README's limits of the reachability scan).
    pub lost_then_freed: (u64, u64),
}

impl LiveFilter {
    /// Which blocks were listed, in words: `allocated since the snapshot and
    /// alive for at least 1.000 s`.
    pub fn which(&self) -> String {
        let mut which = Vec::new();
        if self.since.is_some() {
            which.push("allocated since the snapshot".to_owned());
        }
        if let Some(ms) = self.older_than_ms {
            which.push(format!("alive for at least {}", duration(ms)));
        }
        which.join(" and ")
    }
}

/// A duration in ms, in the largest unit that keeps it readable.
pub fn duration(ms: f64) -> String {
    if ms >= 3_600_000.0 {
        format!("{:.3} h", ms / 3_600_000.0)
    } else if ms >= 60_000.0 {
        format!("{:.3} min", ms / 60_000.0)
    } else if ms >= 1000.0 {
        format!("{:.3} s", ms / 1000.0)
    } else {
        format!("{ms:.3} ms")
    }
}

/// `+n` for a growth, `-n` for a shrink.
pub fn delta(n: i64) -> String {
    if n > 0 {
        format!("+{}", signed(n))
    } else {
        signed(n)
    }
}

/// One stack's live heap now (`site`) and at the earlier snapshot.
#[derive(Clone, Debug)]
pub struct Growth {
    pub site: Site,
    pub then_bytes: u64,
    pub then_count: u64,
}

/// An error unless `--since` names a snapshot of the process of `header`.
pub(super) fn check_same_process(opts: &Options, path: &Path, header: &Header<'_>) -> Result<()> {
    if let Some(since) = &opts.since
        && (since.pid != header.pid || since.start_mono_ns != header.start_mono_ns)
    {
        return Err(crate::Error::Since {
            path: since.path.clone(),
            why: format!(
                "a snapshot of another process (pid {}) than {}'s (pid {})",
                since.pid,
                path.display(),
                header.pid
            ),
        });
    }
    Ok(())
}

/// An error unless `--since` names a snapshot taken by `end` (the end of
/// the log at `path`).
pub(super) fn check_taken_before(opts: &Options, path: &Path, end: u64) -> Result<()> {
    if let Some(since) = &opts.since
        && since.time > end
    {
        return Err(crate::Error::Since {
            path: since.path.clone(),
            why: format!(
                "taken after the end of {}: give the earlier snapshot to --since",
                path.display()
            ),
        });
    }
    Ok(())
}

/// What the leaks were before [`narrow`] narrowed them.
pub(super) struct Narrowed {
    /// All live heap bytes and blocks at the end.
    all_bytes: u64,
    all_blocks: u64,
    /// The live heap by stack at the end.
    all_by_stack: Vec<StackTotal>,
    /// Bytes and blocks lost at the snapshot and freed by now.
    lost_then_freed: (u64, u64),
}

/// Narrows the leaks of `out` to the blocks born after `--since` and alive
/// for `--older-than` by `end`; `None` (and `out` untouched) without either.
pub(super) fn narrow(out: &mut Outcome, opts: &Options, end: u64) -> Option<Narrowed> {
    (opts.since.is_some() || opts.older_than.is_some()).then(|| {
        let (all_bytes, all_blocks) = (out.leaked_heap_bytes, out.leaked_heap_blocks);
        let lost_then_freed = lost_then_freed(out, opts);
        let all_by_stack = std::mem::take(&mut out.heap_leaks);
        let after = opts.since.as_ref().map_or(0, |s| s.time);
        let born_by = opts.older_than.map(|d| end.saturating_sub(d));
        out.live
            .retain(|(_, b)| b.time > after && born_by.is_none_or(|t| b.time <= t));
        out.heap_leaks = replay::blocks_by_stack(out.live.iter().map(|(_, b)| b));
        out.leaked_heap_bytes = out.live.iter().map(|(_, b)| b.size).sum();
        out.leaked_heap_blocks = out.live.iter().map(|(_, b)| b.count as u64).sum();
        Narrowed {
            all_bytes,
            all_blocks,
            all_by_stack,
            lost_then_freed,
        }
    })
}

/// Bytes and blocks lost at `--since` but freed by now (`out.live` is
/// sorted by address).
fn lost_then_freed(out: &Outcome, opts: &Options) -> (u64, u64) {
    let mut lost_then_freed = (0u64, 0u64);
    for &(addr, time, size) in opts.since.iter().flat_map(|s| &s.lost) {
        let still = out
            .live
            .binary_search_by_key(&addr, |(a, _)| *a)
            .is_ok_and(|i| out.live[i].1.time == time);
        if !still {
            lost_then_freed.0 += size;
            lost_then_freed.1 += 1;
        }
    }
    lost_then_freed
}

/// How the leaks were narrowed, for the report; `start`: the process's
/// start, `all`: the most growth entries.
pub(super) fn filter(
    n: Narrowed,
    opts: &Options,
    aliases: &FastMap<u32, u32>,
    stacks: &mut Stacks<'_>,
    start: u64,
    all: usize,
) -> LiveFilter {
    let growth = match &opts.since {
        Some(since) => growth(since, &n.all_by_stack, aliases, stacks, all),
        None => Vec::new(),
    };
    LiveFilter {
        since: opts
            .since
            .as_ref()
            .map(|s| (s.path.clone(), ms_since(start, s.time), s.bytes, s.blocks)),
        older_than_ms: opts.older_than.map(|d| d as f64 / 1e6),
        all_bytes: n.all_bytes,
        all_blocks: n.all_blocks,
        growth,
        lost_then_freed: n.lost_then_freed,
    }
}

/// The stacks whose live heap changed since the snapshot, largest growth
/// first, at most `all`; `all_by_stack`: the live heap by stack now.
fn growth(
    since: &Since,
    all_by_stack: &[StackTotal],
    aliases: &FastMap<u32, u32>,
    stacks: &mut Stacks<'_>,
    all: usize,
) -> Vec<Growth> {
    let mut growth = Vec::new();
    // The snapshot's ids, as this log merges them.
    let mut then: HashMap<u32, (u64, u64)> = HashMap::new();
    for (&stack, &(b, c)) in &since.by_stack {
        let e = then
            .entry(aliases.get(&stack).copied().unwrap_or(stack))
            .or_default();
        e.0 = e.0.saturating_add(b);
        e.1 = e.1.saturating_add(c);
    }
    let mut ids: Vec<u32> = all_by_stack.iter().map(|t| t.stack).collect();
    ids.extend(then.keys().copied());
    ids.sort_unstable();
    ids.dedup();
    let now: HashMap<u32, (u64, u64)> = all_by_stack
        .iter()
        .map(|t| (t.stack, (t.bytes, t.count)))
        .collect();
    for stack in ids {
        let (nb, nc) = now.get(&stack).copied().unwrap_or_default();
        let (tb, tc) = then.get(&stack).copied().unwrap_or_default();
        if (nb, nc) != (tb, tc) {
            growth.push(Growth {
                site: stacks.site(stack, nb, nc),
                then_bytes: tb,
                then_count: tc,
            });
        }
    }
    growth.sort_by_key(|g| {
        (
            std::cmp::Reverse(g.site.bytes as i128 - g.then_bytes as i128),
            std::cmp::Reverse(g.site.count as i128 - g.then_count as i128),
        )
    });
    growth.truncate(all);
    growth
}
