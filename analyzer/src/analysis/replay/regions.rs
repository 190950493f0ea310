//! Mapped memory as disjoint byte intervals, each with the stack and the
//! region id of the call that mapped it ([`Regions`]), and the changes made
//! to it in order ([`Journal`]), from which it can be rebuilt as it was at
//! an earlier moment.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{StackTotal, sorted};

/// One piece of a tracked mapping: `[start, end)` is the key and `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    end: u64,
    stack: u32,
    region: u64,
}

/// Mapped bytes as disjoint intervals.
#[derive(Clone, Debug, Default)]
pub struct Regions {
    pieces: BTreeMap<u64, Piece>,
    bytes: u64,
    next_region: u64,
}

impl Regions {
    /// Bytes currently mapped.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Removes `[start, end)`, splitting pieces that stick out.
    pub fn unmap(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut hit: Vec<u64> = Vec::new();
        if let Some((&s, p)) = self.pieces.range(..start).next_back()
            && p.end > start
        {
            hit.push(s);
        }
        hit.extend(self.pieces.range(start..end).map(|(&s, _)| s));
        for s in hit {
            let p = self.pieces.remove(&s).expect("piece just found");
            self.bytes -= p.end - s;
            if s < start {
                self.pieces.insert(s, Piece { end: start, ..p });
                self.bytes += start - s;
            }
            if p.end > end {
                self.pieces.insert(end, p);
                self.bytes += p.end - end;
            }
        }
    }

    /// Adds `[start, end)` as a new region of `stack`, replacing what it covers.
    pub fn map(&mut self, start: u64, end: u64, stack: u32) {
        if start >= end {
            return;
        }
        self.unmap(start, end);
        self.next_region += 1;
        self.pieces.insert(
            start,
            Piece {
                end,
                stack,
                region: self.next_region,
            },
        );
        self.bytes += end - start;
    }

    /// Applies `change`.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Map { start, end, stack } => self.map(start, end, stack),
            Change::Unmap { start, end } => self.unmap(start, end),
        }
    }

    /// Mapped bytes and distinct regions by stack, largest first.
    pub fn by_stack(&self) -> Vec<StackTotal> {
        let mut m: HashMap<u32, (u64, HashSet<u64>)> = HashMap::new();
        for (&s, p) in &self.pieces {
            let e = m.entry(p.stack).or_default();
            e.0 += p.end - s;
            e.1.insert(p.region);
        }
        sorted(
            m.into_iter()
                .map(|(stack, (bytes, r))| StackTotal {
                    stack,
                    bytes,
                    count: r.len() as u64,
                })
                .collect(),
        )
    }

    /// The mapped pieces, by address: start, end, stack.
    pub fn pieces(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        self.pieces.iter().map(|(&s, p)| (s, p.end, p.stack))
    }

    /// Number of distinct regions still (partly) mapped.
    pub fn regions(&self) -> u64 {
        self.pieces
            .values()
            .map(|p| p.region)
            .collect::<HashSet<_>>()
            .len() as u64
    }
}

/// One change [`Regions`] applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// [`Regions::map`] of `[start, end)` for `stack`.
    Map { start: u64, end: u64, stack: u32 },
    /// [`Regions::unmap`] of `[start, end)`.
    Unmap { start: u64, end: u64 },
}

/// Changes a journal keeps at most (32 bytes each): past them it gives up,
/// and the mappings at a moment are found by replaying the log again.
pub const JOURNAL_MAX: usize = 1 << 18;

/// The changes of a replay's mapped memory, with their times (CLOCK_MONOTONIC
/// ns), in the order they were applied: the report's picture of the
/// mappings at the moment their RSS was highest (known only once the log
/// is read) is rebuilt from it, instead of replaying the whole log a
/// second time up to that moment.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    changes: Vec<(u64, Change)>,
    /// More than [`JOURNAL_MAX`] changes were made: none are kept.
    overflowed: bool,
}

impl Journal {
    /// Notes `change`, made at `time`.
    pub fn record(&mut self, time: u64, change: Change) {
        if self.overflowed {
            return;
        }
        if self.changes.len() >= JOURNAL_MAX {
            self.overflowed = true;
            self.changes = Vec::new();
            return;
        }
        self.changes.push((time, change));
    }

    /// The mappings made by the changes up to the first one later than
    /// `time`, as a fresh [`Regions`] applying them would hold them; `None`
    /// once the journal has given up (see [`JOURNAL_MAX`]).
    pub fn at(&self, time: u64) -> Option<Regions> {
        if self.overflowed {
            return None;
        }
        let mut r = Regions::default();
        for &(t, change) in &self.changes {
            if t > time {
                break;
            }
            r.apply(change);
        }
        Some(r)
    }
}
