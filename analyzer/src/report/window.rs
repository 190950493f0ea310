//! A time window of the run (`memtrace report --from T --to T`): the heap
//! blocks allocated in it and still live at its end, what was allocated in
//! it, and its peak.
//!
//! The window is `[from, to)` in time since the process started. The report
//! lists the blocks allocated at or after `from` and before `to` that were
//! not freed before `to` (a window from 0 also holds what a fork child
//! inherited). The reachability kinds are found by the scan at exit (or at
//! the snapshot): they apply to the window's blocks only when the window
//! reaches the end, since a block live at an earlier `to` may be freed
//! later. A window ending at or past the end is cut at the end.
//!
//! It replays the log once more with its own [`Replay`], stopping at `to`,
//! with the configuration (`Config::until` of a snapshot) of the main pass.

use crate::analysis::replay::{self, Block, Config, Outcome, Replay, Seed};
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::log::{Index, Log};

use super::ms_since;

/// A moment of the run, as `--from` and `--to` take it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Moment {
    /// Nanoseconds since the process started.
    Since(u64),
    /// A percentage of the run's duration (0 to 100).
    Percent(f64),
}

impl Moment {
    /// `1.5s`, `250ms`, `2` (seconds), `90us`, `1m`, or `50%` of the run.
    pub fn parse(s: &str) -> std::result::Result<Moment, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Moment::Percent(p)),
                _ => Err(format!("`{s}` is not a percentage of the run (0% to 100%)")),
            };
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("`{s}` is not a time since the start (e.g. 1.5s, 250ms, 2s, 50%)");
        let n: f64 = num.parse().map_err(|_| bad())?;
        let scale = match unit.trim() {
            "" | "s" => 1e9,
            "ns" => 1.0,
            "us" => 1e3,
            "ms" => 1e6,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        let ns = n * scale;
        if !ns.is_finite() || ns >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Moment::Since(ns.round() as u64))
    }

    /// Nanoseconds since the start, in a run of `duration` ns.
    fn at(self, duration: u64) -> u64 {
        match self {
            Moment::Since(ns) => ns,
            Moment::Percent(p) => (duration as f64 * p / 100.0).round() as u64,
        }
    }

    /// As the user gave it, for an error: `2.500 s`, `50%`.
    fn words(self) -> String {
        match self {
            Moment::Since(ns) => super::duration(ns as f64 / 1e6),
            Moment::Percent(p) => format!("{p}%"),
        }
    }
}

/// The window asked for (`--from`, `--to`); neither: no window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Asked {
    /// The start; `None`: the process's start.
    pub from: Option<Moment>,
    /// The end; `None`: the end of the log (exit, or the snapshot).
    pub to: Option<Moment>,
}

impl Asked {
    /// Whether a window was asked for.
    pub fn any(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }
}

/// The window of the report and what happened in it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Its bounds, and the end of the log (exit or snapshot), in ns since
    /// the process started; `to_ns <= end_ns`.
    pub from_ns: u64,
    pub to_ns: u64,
    pub end_ns: u64,
    /// Allocations, frees and bytes allocated in the window (counted as the
    /// summary counts them).
    pub allocations: u64,
    pub frees: u64,
    pub bytes_allocated: u64,
    /// The most live heap bytes in the window (those live at `from`
    /// included), and when they were first reached, ms since the start.
    pub peak_heap_bytes: u64,
    pub peak_heap_time_ms: f64,
    /// Every heap block live at `to`, whenever allocated: bytes, blocks.
    pub live_bytes: u64,
    pub live_blocks: u64,
    /// The heap in use at the end of the log, all blocks: bytes, blocks.
    pub end_bytes: u64,
    pub end_blocks: u64,
}

impl Window {
    /// Whether the window ends before the end of the log: the reachability
    /// kinds found at the end do not apply to the blocks live at `to`.
    pub fn before_end(&self) -> bool {
        self.to_ns < self.end_ns
    }
}

/// The bounds of `asked` in a log of `duration` ns: `(from, to)` in ns
/// since the start, `to` cut at the end. An error when `from` is after `to`
/// or past the end.
pub(super) fn bounds(asked: &Asked, duration: u64) -> Result<(u64, u64)> {
    let from = asked.from.map_or(0, |m| m.at(duration));
    let to = asked.to.map_or(duration, |m| m.at(duration));
    let err = |why: String| Err(Error::Window(why));
    if let (Some(f), Some(t)) = (asked.from, asked.to)
        && from > to
    {
        return err(format!("--from {} is after --to {}", f.words(), t.words()));
    }
    if from > duration {
        return err(format!(
            "--from {} is past the end of the log ({} after the start)",
            asked.from.map_or_else(String::new, Moment::words),
            super::duration(duration as f64 / 1e6)
        ));
    }
    Ok((from, to.min(duration)))
}

/// The log replayed once more up to the window's end.
pub(super) struct Source<'a> {
    pub log: &'a Log,
    pub index: &'a Index,
    pub cfg: Config,
    pub seed: Option<&'a Seed>,
    /// The process's start (CLOCK_MONOTONIC ns).
    pub start: u64,
}

/// Replays `src` up to `to` and narrows `out`'s heap leaks to the blocks
/// of the window `[from, to)` live at `to` (stack ids folded by
/// `aliases`, as the main pass did). Returns the window's figures.
pub(super) fn narrow(
    src: &Source<'_>,
    (from_ns, to_ns, end_ns): (u64, u64, u64),
    out: &mut Outcome,
    aliases: &FastMap<u32, u32>,
) -> Result<Window> {
    let from = src.start.saturating_add(from_ns);
    // A window reaching the end takes every event, as the main pass did.
    let to = if to_ns < end_ns {
        src.start.saturating_add(to_ns)
    } else {
        u64::MAX
    };
    let mut r = Replay::new(src.cfg);
    if let Some(s) = src.seed {
        r.seed(s);
    }
    let mut before = None;
    let mut peak = (r.live_bytes(), from);
    for ev in src.log.merge(src.index) {
        let ev = ev?;
        if !src.cfg.includes(&ev) {
            continue;
        }
        if ev.time >= to {
            break; // events are merged in time order
        }
        if before.is_none() && ev.time >= from {
            before = Some(r.counts.clone());
            peak = (r.live_bytes(), from);
        }
        r.apply(&ev);
        if before.is_some() && r.live_bytes() > peak.0 {
            peak = (r.live_bytes(), ev.time);
        }
    }
    let before = before.unwrap_or_else(|| r.counts.clone());
    let canon = |s: u32| aliases.get(&s).copied().unwrap_or(s);
    let mut live: Vec<(u64, Block)> = Vec::new();
    let mut leak_funcs = FastMap::default();
    // From the start, what a fork child inherited counts too.
    for (addr, mut b) in r.live().filter(|(_, b)| from_ns == 0 || b.time >= from) {
        if let Some(f) = r.alloc_func(b.stack) {
            leak_funcs.entry(canon(b.stack)).or_insert(f);
        }
        b.stack = canon(b.stack);
        live.push((addr, b));
    }
    live.sort_unstable_by_key(|e| e.0);
    let window = Window {
        from_ns,
        to_ns,
        end_ns,
        allocations: r.counts.allocations - before.allocations,
        frees: r.counts.frees - before.frees,
        bytes_allocated: r.counts.bytes_allocated - before.bytes_allocated,
        peak_heap_bytes: peak.0,
        peak_heap_time_ms: ms_since(src.start, peak.1),
        live_bytes: r.live_bytes(),
        live_blocks: r.live_blocks(),
        end_bytes: out.leaked_heap_bytes,
        end_blocks: out.leaked_heap_blocks,
    };
    out.heap_leaks = replay::blocks_by_stack(live.iter().map(|(_, b)| b));
    out.leaked_heap_bytes = live.iter().map(|(_, b)| b.size).sum();
    out.leaked_heap_blocks = live.iter().map(|(_, b)| b.count as u64).sum();
    out.live = live;
    out.leak_funcs = leak_funcs;
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Times since the start with units, plain seconds and percentages parse.
    #[test]
    fn moments_parse() {
        assert_eq!(Moment::parse("1.5s"), Ok(Moment::Since(1_500_000_000)));
        assert_eq!(Moment::parse("250ms"), Ok(Moment::Since(250_000_000)));
        assert_eq!(Moment::parse("2"), Ok(Moment::Since(2_000_000_000)));
        assert_eq!(Moment::parse(" 90us "), Ok(Moment::Since(90_000)));
        assert_eq!(Moment::parse("50%"), Ok(Moment::Percent(50.0)));
        for bad in ["", "s", "1.5 parsecs", "-1s", "101%", "x%", "1e99h"] {
            assert!(Moment::parse(bad).is_err(), "{bad}");
        }
    }

    // Bounds: defaults, percentages, `to` cut at the end, and the errors.
    #[test]
    fn bounds_resolve_and_refuse() {
        let s = |ns| Some(Moment::Since(ns));
        let asked = |from, to| Asked { from, to };
        assert_eq!(bounds(&asked(None, s(5)), 10).unwrap(), (0, 5));
        assert_eq!(bounds(&asked(s(3), None), 10).unwrap(), (3, 10));
        assert_eq!(bounds(&asked(s(3), s(50)), 10).unwrap(), (3, 10));
        let half = Some(Moment::Percent(50.0));
        assert_eq!(bounds(&asked(half, None), 10).unwrap(), (5, 10));
        let e = bounds(&asked(s(2_000_000_000), s(1_000_000_000)), u64::MAX).unwrap_err();
        assert_eq!(e.to_string(), "--from 2.000 s is after --to 1.000 s");
        let e = bounds(&asked(s(4_000_000_000), None), 3_100_000_000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--from 4.000 s is past the end of the log (3.100 s after the start)"
        );
    }
}
