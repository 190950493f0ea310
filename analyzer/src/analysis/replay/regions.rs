//! Mapped memory as disjoint byte intervals, each with the stack and the
//! region id of the call that mapped it.

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
