//! The heap over the run, for the exports whose tools show it ([`super::massif`],
//! [`super::dhat`]): one more pass over the log, which the report does not keep.
//!
//! - **Time in bytes**, as massif's `--time-unit=B`: the clock advances by
//!   the bytes each event allocates plus the bytes it frees, so it ends at
//!   `bytes_allocated + bytes freed`. Points of (clock, live heap) are kept
//!   evenly spaced by halving (at most [`MAX_POINTS`]); the peak (the first
//!   moment the live heap was at its highest) and the end are always kept.
//! - **Per stack** (when asked: DHAT's): the most bytes and blocks live at once, and the blocks'
//!   total lifetime (a block still live at the end lives until the end), in
//!   nanoseconds. Stacks are keyed by their frames' addresses, symbolized as
//!   the report does, so that a report's site finds its figures ([`key`]).
//!
//! The live heap is the replay's own ([`Replay`]), a fork child's inherited
//! blocks included, so the peak and the end equal the report's. The per-stack
//! figures follow the recorded blocks (in a sampled log, the sampled ones).

use std::collections::HashMap;
use std::path::Path;

use memtrace_format::Record;

use crate::analysis::catalog;
use crate::analysis::replay::{Config, Replay};
use crate::analysis::symbolize::{Frame, Symbolizer};
use crate::error::Result;
use crate::hash::FastMap;
use crate::log::{Event, Log};

/// Most points kept before every other one is dropped.
pub const MAX_POINTS: usize = 4096;

/// One moment: the clock in bytes, the live heap, and when (ns since the start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Point {
    pub clock: u64,
    pub heap: u64,
    pub ns: u64,
}

/// What one stack's blocks did over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Life {
    /// The most bytes and blocks live at once.
    pub max_bytes: u64,
    pub max_blocks: u64,
    /// Sum of the blocks' lifetimes, in nanoseconds.
    pub lifetime_ns: u64,
}

/// A stack's figures while the replay runs: its [`Life`] and what is live now.
#[derive(Clone, Copy, Debug, Default)]
struct Live {
    life: Life,
    bytes: u64,
    blocks: u64,
}

/// The heap over the run (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Points in order of the clock; the first is the start (clock 0).
    pub points: Vec<Point>,
    /// The first moment the live heap was at its highest.
    pub peak: Point,
    /// The end: the last event.
    pub end: Point,
    /// Per stack, by [`key`].
    pub lives: HashMap<Vec<u64>, Life>,
}

/// The key of a symbolized stack: its frames' addresses, innermost first.
pub fn key(stack: &[Frame]) -> Vec<u64> {
    stack.iter().map(|f| f.address).collect()
}

/// A block being followed: size, blocks it stands for, stack, birth (ns).
#[derive(Clone, Copy)]
struct Born {
    size: u64,
    count: u64,
    stack: u32,
    at: u64,
}

#[derive(Default)]
struct Blocks {
    live: FastMap<u64, Born>,
    by_stack: FastMap<u32, Live>,
}

impl Blocks {
    fn born(&mut self, addr: u64, b: Born) {
        if let Some(old) = self.live.insert(addr, b) {
            self.died(old, b.at);
        }
        let l = self.by_stack.entry(b.stack).or_default();
        l.bytes = l.bytes.saturating_add(b.size);
        l.blocks += b.count;
        l.life.max_bytes = l.life.max_bytes.max(l.bytes);
        l.life.max_blocks = l.life.max_blocks.max(l.blocks);
    }

    fn freed(&mut self, addr: u64, at: u64) {
        if let Some(b) = self.live.remove(&addr) {
            self.died(b, at);
        }
    }

    fn died(&mut self, b: Born, at: u64) {
        let l = self.by_stack.entry(b.stack).or_default();
        l.bytes = l.bytes.saturating_sub(b.size);
        l.blocks = l.blocks.saturating_sub(b.count);
        let life = at.saturating_sub(b.at).saturating_mul(b.count);
        l.life.lifetime_ns = l.life.lifetime_ns.saturating_add(life);
    }

    /// Follows the blocks of one event, as the replay does.
    fn apply(&mut self, ev: &Event<'_>) {
        match ev.record {
            Record::Alloc {
                time,
                addr,
                size,
                stack,
                ..
            } if addr != 0 => self.born(
                addr,
                Born {
                    size,
                    count: 1,
                    stack,
                    at: time,
                },
            ),
            Record::Free { addr, time, .. } if addr != 0 => self.freed(addr, time),
            Record::Realloc {
                time,
                time_after,
                old,
                new,
                size,
                stack,
                ..
            } => {
                if !ev.realloc_end {
                    if memtrace_format::realloc_released(old, new, size) {
                        self.freed(old, time);
                    }
                } else if new != 0 {
                    let b = Born {
                        size,
                        count: 1,
                        stack,
                        at: time_after,
                    };
                    self.born(new, b);
                }
            }
            _ => {}
        }
    }
}

/// The points, thinned to at most [`MAX_POINTS`] by halving.
#[derive(Default)]
struct Series {
    points: Vec<Point>,
    step: u64,
    next: u64,
}

impl Series {
    fn push(&mut self, p: Point) {
        if p.clock < self.next {
            return;
        }
        if self.points.len() >= MAX_POINTS {
            self.points = self.points.iter().copied().step_by(2).collect();
            self.step = self.step.max(1).saturating_mul(2);
        }
        self.points.push(p);
        self.next = p.clock.saturating_add(self.step);
    }
}

/// Replays the log at `path` (see the module docs); with `lives`, follows
/// every block for the per-stack figures (which costs one more pass, for
/// the stacks' frames, and their symbolization), else leaves
/// [`History::lives`] empty.
pub fn scan(path: &Path, lives: bool) -> Result<History> {
    let log = Log::open(path)?;
    let header = log.header()?;
    let index = log.index(&header)?;
    let cfg = Config::of(&header);
    let start = header.start_mono_ns;
    let inherited = crate::analysis::inherit::of_header(path, &header, &[]).unwrap_or(None);
    let mut r = Replay::new(cfg);
    if let Some(i) = &inherited {
        r.seed(&i.seed);
    }
    let mut blocks = Blocks::default();
    if let Some(i) = &inherited {
        for &(addr, b) in &i.seed.blocks {
            let born = Born {
                size: b.size,
                count: b.count as u64,
                stack: b.stack,
                at: start,
            };
            blocks.born(addr, born);
        }
    }
    let first = Point {
        clock: 0,
        heap: r.live_bytes(),
        ns: 0,
    };
    let mut series = Series::default();
    series.push(first);
    let (mut peak, mut now) = (first, first);
    for ev in log.merge(&index) {
        let ev = ev?;
        if !cfg.includes(&ev) {
            continue;
        }
        let (a0, l0) = (r.counts.bytes_allocated, r.live_bytes());
        r.apply(&ev);
        if lives {
            blocks.apply(&ev);
        }
        let (a1, l1) = (r.counts.bytes_allocated, r.live_bytes());
        let allocated = a1.saturating_sub(a0);
        let freed = l0.saturating_add(allocated).saturating_sub(l1);
        if ev.record.time().is_some() {
            now.ns = ev.time.saturating_sub(start);
        }
        if allocated == 0 && freed == 0 {
            continue;
        }
        now.clock = now.clock.saturating_add(allocated).saturating_add(freed);
        now.heap = l1;
        if l1 > peak.heap {
            peak = now;
        }
        series.push(now);
    }
    let end_ns = match header.end_mono_ns {
        0 => now.ns,
        e => e.saturating_sub(start).max(now.ns),
    };
    now.ns = end_ns;
    for b in blocks.live.values().copied().collect::<Vec<_>>() {
        blocks.died(b, start.saturating_add(end_ns));
    }
    let mut points = series.points;
    if points.last() != Some(&now) {
        points.push(now);
    }
    let mut h = History {
        points,
        peak,
        end: now,
        lives: HashMap::new(),
    };
    if !lives {
        return Ok(h);
    }
    let mut cat = catalog::scan(&log, &index)?;
    if let Some(i) = &inherited {
        i.annotate(&mut cat, &mut r.first_use);
    }
    let mut sym = Symbolizer::new();
    for (id, Live { life: l, .. }) in blocks.by_stack {
        let frames = match cat.stacks.get(id) {
            Some(f) => sym.stack(&cat.modules, &f.to_vec(), r.first_use.get(id)),
            None => Vec::new(),
        };
        let e = h.lives.entry(key(&frames)).or_default();
        // Stacks defined twice are one stack: their figures add up.
        e.max_bytes = e.max_bytes.saturating_add(l.max_bytes);
        e.max_blocks = e.max_blocks.saturating_add(l.max_blocks);
        e.lifetime_ns = e.lifetime_ns.saturating_add(l.lifetime_ns);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(addr: u64, size: u64, stack: u32, time: u64) -> Record<'static> {
        Record::Alloc {
            time,
            addr,
            size,
            stack,
            samples: 0,
            func: memtrace_format::Func::Malloc,
        }
    }

    fn ev(record: Record<'static>) -> Event<'static> {
        Event {
            time: record.time().unwrap_or(0),
            stream: 0,
            chunk_offset: 0,
            record,
            realloc_end: false,
            slot: crate::log::NO_SLOT,
        }
    }

    /// The most live at once, and lifetimes: freed blocks until their free.
    #[test]
    fn follows_blocks() {
        let mut b = Blocks::default();
        b.apply(&ev(alloc(0x10, 100, 1, 10)));
        b.apply(&ev(alloc(0x20, 50, 1, 20)));
        b.apply(&ev(Record::Free {
            time: 30,
            addr: 0x10,
            func: memtrace_format::Func::Free,
        }));
        b.apply(&ev(alloc(0x30, 10, 1, 40)));
        let l = b.by_stack[&1];
        let life = l.life;
        assert_eq!(
            (life.max_bytes, life.max_blocks, life.lifetime_ns),
            (150, 2, 20)
        );
        assert_eq!((l.bytes, l.blocks), (60, 2));
    }

    /// The series halves when full, keeping the first point.
    #[test]
    fn series_thins() {
        let mut s = Series::default();
        for c in 0..(MAX_POINTS as u64 * 3) {
            s.push(Point {
                clock: c,
                heap: c,
                ns: c,
            });
        }
        assert!(s.points.len() <= MAX_POINTS);
        assert_eq!(s.points[0].clock, 0);
        assert!(s.points.windows(2).all(|w| w[0].clock < w[1].clock));
    }
}
