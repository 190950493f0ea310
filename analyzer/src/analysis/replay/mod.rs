//! Replaying the merged events: heap live set, mmap regions, brk, peak.
//!
//! ## Counting (valgrind-compatible, see "What is counted" in README.md)
//! - An *allocation* is a successful ALLOC (`addr != 0`, `malloc(0)`
//!   included) or a REALLOC with `new != 0`; its requested size adds to
//!   `bytes_allocated`.
//! - A *free* is a FREE with `addr != 0`, or a REALLOC that released its old
//!   block: `old != 0` and either it succeeded (`new != 0`) or it was
//!   `realloc(p, 0)` (`new == 0 && size == 0`). A failed realloc
//!   (`new == 0 && size > 0`) changes nothing.
//! - A free of an address that is not live (a block from before tracing
//!   began, e.g. libc's own freed by `__libc_freeres`, or inherited from the
//!   parent in a fork child) counts only in `unknown_frees`, not in `frees`:
//!   valgrind never sees those either. An allocation at an address that is
//!   still live counts the old block as freed (without counting a free) and
//!   bumps `anomalies`.
//! - Frees of known blocks between FREERES phase 1 and 2 are ordinary frees,
//!   also counted in `libc_freeres_frees`.
//!
//! ## mmap
//! Mapped memory is tracked as byte intervals of whole pages (lengths
//! rounded up to the log's page size), each carrying the stack of the call
//! that mapped it and a region id. Any successful MMAP or MREMAP replaces
//! whatever tracked bytes it covers (the kernel only returns an overlapping
//! range for MAP_FIXED); MUNMAP removes exactly the pages it covers, so a
//! partial unmap leaves the rest counted; MREMAP removes the old range
//! (unless MREMAP_DONTUNMAP) and adds the new one with the mremap's stack.
//! Failed calls (`MAP_FAILED` or 0) count as calls and change nothing.
//!
//! ## Peak
//! The peak is the first event at which live heap bytes reach their maximum.
//! [`replay`] runs the events twice: once to find that event's index, once
//! stopping right after it to group the live set by stack. Both runs see
//! the same merged order, so the index identifies the same moment.
//!
//! ## Where it lives
//! This module owns the replay's vocabulary (blocks, totals, counters);
//! `machine` the state machine that applies events ([`Replay`]), with its
//! per-stack table (`stack_table`) and the mapped pieces ([`Regions`]);
//! `outcome` the replay of a whole log ([`replay`], [`Outcome`]). It uses
//! the log reader only.

use std::collections::HashMap;

use memtrace_format::{Func, Record};

use crate::log::Event;

mod machine;
mod outcome;
mod regions;
mod stack_table;

pub use machine::{Replay, estimate};
pub use outcome::{Outcome, mapped_at, merge_sorted, replay, replay_seeded, replay_with};
pub use regions::{Change, JOURNAL_MAX, Journal, Regions};

/// A live heap block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// Requested size (in a sampled log: the bytes the record stands for).
    pub size: u64,
    /// Stack id of the allocation.
    pub stack: u32,
    /// Allocations the record stands for: 1, or an estimate in a sampled log.
    pub count: u32,
    /// Time of the allocation.
    pub time: u64,
}

/// Bytes and count of blocks or regions sharing one stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackTotal {
    pub stack: u32,
    pub bytes: u64,
    pub count: u64,
}

/// Net program-break growth attributed to one stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrkTotal {
    pub stack: u32,
    pub bytes: i64,
}

/// How to read a log's events (from its header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub page_size: u32,
    /// Sampling interval in bytes; 0: every allocation was recorded.
    pub sample_interval: u64,
    /// In a snapshot of a running process, when it was taken (0: not a
    /// snapshot): later events are ignored, except memtrace's own KERNEL
    /// records (the reachability it added at that moment).
    pub until: u64,
}

impl Config {
    /// The configuration a log's header describes.
    pub fn of(h: &memtrace_format::Header<'_>) -> Config {
        Config {
            page_size: h.page_size,
            sample_interval: h.sample_interval,
            until: h.snapshot_at,
        }
    }

    /// Whether the event is part of what the log describes (see `until`).
    pub fn includes(&self, ev: &Event<'_>) -> bool {
        self.until == 0 || ev.time <= self.until || matches!(ev.record, Record::Kernel { .. })
    }
}

/// Most points of the memory-over-time series.
pub const SERIES_MAX: usize = 2048;

/// One point of the memory-over-time series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// CLOCK_MONOTONIC ns.
    pub time: u64,
    /// Live heap bytes (requested).
    pub heap: u64,
    /// Bytes mapped by the program's own mmap calls.
    pub mmap: u64,
}

/// What a replay starts with: a fork child's inheritance (see
/// [`crate::analysis::inherit`]), the blocks and mappings its parent had live at the
/// fork. Stack ids are in the child's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seed {
    /// Heap blocks live at the start, by address (sorted).
    pub blocks: Vec<(u64, Block)>,
    /// Mappings live at the start: start, end (page-aligned), stack.
    pub regions: Vec<(u64, u64, u32)>,
    /// The allocating function of each stack of `blocks`.
    pub funcs: Vec<(u32, Func)>,
}

/// Counters of one replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub allocations: u64,
    /// Temporary allocations: blocks freed by their thread before it made its
    /// next allocation (heaptrack's definition, per thread). A realloc's
    /// release of its old block does not make that block temporary.
    pub temporary: u64,
    /// Their bytes.
    pub temporary_bytes: u64,
    pub frees: u64,
    pub bytes_allocated: u64,
    pub unknown_frees: u64,
    pub anomalies: u64,
    pub libc_freeres_frees: u64,
    pub peak_heap_bytes: u64,
    /// Absolute time (CLOCK_MONOTONIC ns) the peak was first reached.
    pub peak_heap_time: u64,
    /// Index (in merged order) of the event that reached the peak.
    pub peak_event: Option<u64>,
    pub peak_mmap_bytes: u64,
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    pub mremap_calls: u64,
    pub brk_calls: u64,
    /// `old_break` of the first successful BRK record.
    pub first_brk: Option<u64>,
    /// `new_break` of the last successful BRK record.
    pub last_brk: Option<u64>,
}

fn sorted(mut v: Vec<StackTotal>) -> Vec<StackTotal> {
    v.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.count.cmp(&a.count))
            .then(a.stack.cmp(&b.stack))
    });
    v
}

/// Bytes and blocks of `blocks` by stack, largest first.
pub fn blocks_by_stack<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> Vec<StackTotal> {
    let mut m: HashMap<u32, (u64, u64)> = HashMap::new();
    for b in blocks {
        let e = m.entry(b.stack).or_default();
        e.0 = e.0.saturating_add(b.size);
        e.1 += b.count as u64;
    }
    sorted(
        m.into_iter()
            .map(|(stack, (bytes, count))| StackTotal {
                stack,
                bytes,
                count,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
