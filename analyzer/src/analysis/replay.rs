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

use std::collections::{BTreeMap, HashMap, HashSet};

use memtrace_format::{Func, Record};

use crate::error::Result;
use crate::hash::FastMap;
use crate::log::{Event, Index, Log};

/// `MREMAP_DONTUNMAP` from `<linux/mman.h>`: the old range stays mapped.
const MREMAP_DONTUNMAP: u64 = 4;

/// A live heap block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Live and allocated totals of one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PerStack {
    live_bytes: u64,
    live_count: u64,
    alloc_bytes: u64,
    alloc_count: u64,
    /// Blocks freed before their thread's next allocation (see [`Counts::temporary`]).
    temp_bytes: u64,
    temp_count: u64,
    /// The allocating function of the stack's last allocation (`Func as u8`).
    func: u8,
}

/// Per-stack totals: stack ids are small and dense in a real log (the
/// preload numbers them from 1), so most live in a table indexed by id; any
/// id past [`StackTable::DENSE`] goes to a map.
#[derive(Clone, Debug, Default)]
struct StackTable {
    dense: Vec<PerStack>,
    sparse: FastMap<u32, PerStack>,
}

impl StackTable {
    const DENSE: u32 = 1 << 16;

    #[inline]
    fn entry(&mut self, id: u32) -> &mut PerStack {
        if id < Self::DENSE {
            let i = id as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, PerStack::default());
            }
            &mut self.dense[i]
        } else {
            self.sparse.entry(id).or_default()
        }
    }

    #[inline]
    fn get_mut(&mut self, id: u32) -> Option<&mut PerStack> {
        if id < Self::DENSE {
            self.dense.get_mut(id as usize)
        } else {
            self.sparse.get_mut(&id)
        }
    }

    /// Entries an [`iter`](Self::iter) walks.
    fn slots(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &PerStack)> {
        self.dense
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
            .chain(self.sparse.iter().map(|(&i, e)| (i, e)))
    }
}

/// What a sampled allocation of `size` bytes with `samples` sample points
/// stands for: `samples * interval` bytes (unbiased) and, as a count,
/// `samples * interval / size` rounded up or down at random (by `seed`), so
/// that sums of counts are unbiased too.
fn estimate(size: u64, samples: u64, interval: u64, seed: u64) -> (u64, u32) {
    if samples == 0 || interval == 0 {
        return (size, 1);
    }
    let bytes = samples.saturating_mul(interval);
    let exact = bytes as f64 / size.max(1) as f64;
    let whole = exact.floor();
    let frac = exact - whole;
    let mut h = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    let count = whole + if u < frac { 1.0 } else { 0.0 };
    (bytes, count.clamp(1.0, u32::MAX as f64) as u32)
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

fn sorted(mut v: Vec<StackTotal>) -> Vec<StackTotal> {
    v.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.count.cmp(&a.count))
            .then(a.stack.cmp(&b.stack))
    });
    v
}

/// The replay state machine; feed it merged events with [`Replay::apply`].
#[derive(Clone, Debug)]
pub struct Replay {
    pub counts: Counts,
    page_size: u64,
    live: FastMap<u64, Block>,
    /// Memory over time (see [`Replay::point`]).
    series: Vec<Point>,
    series_step: u64,
    next_point: u64,
    last_time: Option<u64>,
    /// Per stream (thread): the address of its last allocation, while unfreed
    /// and before its next allocation (0: none).
    last_alloc: Vec<u64>,
    live_bytes: u64,
    /// Live bytes and blocks per stack, kept up to date so that the peak's
    /// picture can be copied when the peak is reached, instead of replaying
    /// the log a second time up to it; and the totals allocated per stack.
    by_stack: StackTable,
    sample_interval: u64,
    /// The picture at the latest peak (unsorted), while copying it stays cheap.
    peak_snapshot: Option<Vec<StackTotal>>,
    /// Entries copied into peak pictures so far (bounded by the events seen).
    copied: u64,
    /// Set when a picture was too large to copy: the caller replays instead.
    snapshot_abandoned: bool,
    pub regions: Regions,
    brk: FastMap<u32, i64>,
    in_freeres: bool,
    /// First time each stack id was used by an event (to pick the module
    /// instance a frame belongs to).
    pub first_use: FastMap<u32, u64>,
    /// The stack [`Replay::used`] saw last.
    last_used: u32,
    events: u64,
}

impl Replay {
    /// A fresh replay; the page size comes from the header (0 or not a power of two: 4096).
    pub fn new(cfg: Config) -> Self {
        let page_size = if cfg.page_size.is_power_of_two() {
            cfg.page_size as u64
        } else {
            4096
        };
        Replay {
            counts: Counts::default(),
            page_size,
            live: FastMap::default(),
            series: Vec::new(),
            series_step: 1_000_000,
            next_point: 0,
            last_time: None,
            last_alloc: Vec::new(),
            live_bytes: 0,
            by_stack: StackTable::default(),
            sample_interval: cfg.sample_interval,
            peak_snapshot: None,
            copied: 0,
            snapshot_abandoned: false,
            regions: Regions::default(),
            brk: FastMap::default(),
            in_freeres: false,
            first_use: FastMap::default(),
            last_used: 0,
            events: 0,
        }
    }

    /// Starts the replay with `seed`'s blocks and mappings live, as if they
    /// had been allocated before the first event: they are live and count in
    /// the peak, but not as allocations. Call it before the first event.
    pub fn seed(&mut self, seed: &Seed) {
        for &(addr, b) in &seed.blocks {
            if let Some(old) = self.live.insert(addr, b) {
                self.live_bytes = self.live_bytes.saturating_sub(old.size);
                self.unaccount(old);
            }
            self.live_bytes = self.live_bytes.saturating_add(b.size);
            let e = self.by_stack.entry(b.stack);
            e.live_bytes = e.live_bytes.saturating_add(b.size);
            e.live_count += b.count as u64;
        }
        for &(stack, func) in &seed.funcs {
            self.by_stack.entry(stack).func = func as u8;
        }
        for &(start, end, stack) in &seed.regions {
            self.regions.map(start, end, stack);
        }
        self.mapped();
        if self.live_bytes > self.counts.peak_heap_bytes {
            // The peak at the start: no event reached it (`peak_event` None).
            self.counts.peak_heap_bytes = self.live_bytes;
            self.snapshot_peak();
        }
    }

    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes in live heap blocks.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Number of live heap blocks.
    pub fn live_blocks(&self) -> u64 {
        self.live.len() as u64
    }

    /// The live heap blocks and their addresses, in no order.
    pub fn live(&self) -> impl Iterator<Item = (u64, Block)> + '_ {
        self.live.iter().map(|(a, b)| (*a, *b))
    }

    fn pages(&self, len: u64) -> u64 {
        len.div_ceil(self.page_size).saturating_mul(self.page_size)
    }

    #[inline]
    fn used(&mut self, stack: u32, time: u64) {
        // Runs of one stack are common: only its first event can be a first use.
        if stack != 0 && stack != self.last_used {
            self.first_use.entry(stack).or_insert(time);
            self.last_used = stack;
        }
    }

    fn alloc(&mut self, time: u64, addr: u64, size: u64, stack: u32, samples: u64, func: Func) {
        let (size, count) = if samples == 0 {
            (size, 1)
        } else {
            estimate(size, samples, self.sample_interval, addr ^ time)
        };
        self.counts.allocations += count as u64;
        self.counts.bytes_allocated = self.counts.bytes_allocated.saturating_add(size);
        let block = Block {
            size,
            stack,
            count,
            time,
        };
        if let Some(old) = self.live.insert(addr, block) {
            self.counts.anomalies += 1;
            self.live_bytes = self.live_bytes.saturating_sub(old.size);
            self.unaccount(old);
        }
        self.live_bytes = self.live_bytes.saturating_add(size);
        let e = self.by_stack.entry(stack);
        e.live_bytes = e.live_bytes.saturating_add(size);
        e.live_count += count as u64;
        e.alloc_bytes = e.alloc_bytes.saturating_add(size);
        e.alloc_count += count as u64;
        e.func = func as u8;
        if self.live_bytes > self.counts.peak_heap_bytes {
            self.counts.peak_heap_bytes = self.live_bytes;
            self.counts.peak_heap_time = time;
            self.counts.peak_event = Some(self.events);
            self.snapshot_peak();
        }
    }

    fn unaccount(&mut self, b: Block) {
        if let Some(e) = self.by_stack.get_mut(b.stack) {
            e.live_bytes = e.live_bytes.saturating_sub(b.size);
            e.live_count = e.live_count.saturating_sub(b.count as u64);
        }
    }

    /// Copies the per-stack picture at a new peak, as long as the copying
    /// done so far stays within a small multiple of the events seen (a
    /// program whose heap grows with each of many stacks would otherwise
    /// make this quadratic); past that the caller replays up to the peak.
    fn snapshot_peak(&mut self) {
        if self.snapshot_abandoned {
            return;
        }
        let n = self.by_stack.slots() as u64;
        if self.copied.saturating_add(n) > self.events.saturating_mul(4).saturating_add(1 << 16) {
            self.snapshot_abandoned = true;
            self.peak_snapshot = None;
            return;
        }
        self.copied += n;
        let v = self.peak_snapshot.get_or_insert_with(Vec::new);
        v.clear();
        v.extend(
            self.by_stack
                .iter()
                .filter(|(_, e)| e.live_count != 0)
                .map(|(stack, e)| StackTotal {
                    stack,
                    bytes: e.live_bytes,
                    count: e.live_count,
                }),
        );
    }

    /// The picture at the peak, if it could be kept during the pass.
    pub fn peak_by_stack(&mut self) -> Option<Vec<StackTotal>> {
        if self.snapshot_abandoned {
            return None;
        }
        Some(sorted(self.peak_snapshot.take().unwrap_or_default()))
    }

    fn free(&mut self, addr: u64) {
        match self.live.remove(&addr) {
            Some(b) => {
                // Saturating: sizes come from the file, and their sum may have saturated.
                self.live_bytes = self.live_bytes.saturating_sub(b.size);
                self.unaccount(b);
                self.counts.frees += b.count as u64;
                if self.in_freeres {
                    self.counts.libc_freeres_frees += 1;
                }
            }
            None => self.counts.unknown_frees += 1,
        }
    }

    /// Notes the last allocation of a stream.
    #[inline]
    fn set_last(&mut self, stream: usize, addr: u64) {
        if stream >= self.last_alloc.len() {
            self.last_alloc.resize(stream + 1, 0);
        }
        self.last_alloc[stream] = addr;
    }

    /// Counts a free of `addr` by `stream` as temporary if it is that
    /// stream's last allocation (see [`Counts::temporary`]).
    #[inline]
    fn temporary(&mut self, stream: usize, addr: u64) {
        if self.last_alloc.get(stream) != Some(&addr) {
            return;
        }
        self.last_alloc[stream] = 0;
        if let Some(b) = self.live.get(&addr).copied() {
            self.counts.temporary += b.count as u64;
            self.counts.temporary_bytes = self.counts.temporary_bytes.saturating_add(b.size);
            if let Some(e) = self.by_stack.get_mut(b.stack) {
                e.temp_count += b.count as u64;
                e.temp_bytes = e.temp_bytes.saturating_add(b.size);
            }
        }
    }

    fn mapped(&mut self) {
        self.counts.peak_mmap_bytes = self.counts.peak_mmap_bytes.max(self.regions.bytes());
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &Event<'_>) {
        let failed = |a: u64| a == 0 || a == u64::MAX;
        match ev.record {
            Record::Alloc {
                time,
                addr,
                size,
                stack,
                samples,
                func,
            } => {
                self.used(stack, time);
                if addr != 0 {
                    self.alloc(time, addr, size, stack, samples, func);
                    self.set_last(ev.stream, addr);
                }
            }
            Record::Free { addr, .. } if addr != 0 => {
                self.temporary(ev.stream, addr);
                self.free(addr);
            }
            Record::Realloc {
                time_after,
                old,
                new,
                size,
                stack,
                func,
                ..
            } => {
                if !ev.realloc_end {
                    if old != 0 && (new != 0 || size == 0) {
                        self.free(old);
                    }
                } else {
                    self.used(stack, time_after);
                    if new != 0 {
                        self.alloc(time_after, new, size, stack, 0, func);
                        self.set_last(ev.stream, new);
                    }
                }
            }
            Record::Mmap {
                time,
                addr,
                len,
                stack,
                ..
            } => {
                self.used(stack, time);
                self.counts.mmap_calls += 1;
                if !failed(addr) {
                    let end = addr.saturating_add(self.pages(len));
                    self.regions.map(addr, end, stack);
                    self.mapped();
                }
            }
            Record::Munmap { addr, len, .. } => {
                self.counts.munmap_calls += 1;
                let end = addr.saturating_add(self.pages(len));
                self.regions.unmap(addr, end);
            }
            Record::Mremap {
                time,
                old,
                old_len,
                new,
                new_len,
                flags,
                stack,
            } => {
                self.used(stack, time);
                self.counts.mremap_calls += 1;
                if !failed(new) {
                    if flags & MREMAP_DONTUNMAP == 0 {
                        self.regions
                            .unmap(old, old.saturating_add(self.pages(old_len)));
                    }
                    self.regions
                        .map(new, new.saturating_add(self.pages(new_len)), stack);
                    self.mapped();
                }
            }
            Record::Brk {
                time,
                old_break,
                new_break,
                stack,
                ..
            } => {
                self.used(stack, time);
                self.counts.brk_calls += 1;
                if !failed(new_break) && !failed(old_break) {
                    self.counts.first_brk.get_or_insert(old_break);
                    self.counts.last_brk = Some(new_break);
                    let delta = (new_break as i64).wrapping_sub(old_break as i64);
                    if delta != 0 {
                        let e = self.brk.entry(stack).or_default();
                        *e = e.saturating_add(delta);
                    }
                }
            }
            Record::Freeres { phase, .. } => self.in_freeres = phase == 1,
            _ => {}
        }
        self.events += 1;
        if ev.record.time().is_some() {
            // Whole microseconds, as a packed log keeps them, so that a log
            // gives the same series raw and packed.
            let t = ev.time - ev.time % 1000;
            self.last_time = Some(t);
            if t >= self.next_point {
                self.point(t);
            }
        }
    }

    /// Adds a point to the memory-over-time series. The series stays under
    /// [`SERIES_MAX`] points: when full, every other point is dropped and the
    /// step between points doubles.
    fn point(&mut self, time: u64) {
        if self.series.len() >= SERIES_MAX {
            let kept: Vec<Point> = self.series.iter().copied().step_by(2).collect();
            self.series = kept;
            self.series_step = self.series_step.saturating_mul(2);
        }
        self.series.push(Point {
            time,
            heap: self.live_bytes,
            mmap: self.regions.bytes(),
        });
        self.next_point = time.saturating_add(self.series_step);
    }

    /// Live heap bytes and blocks by stack, largest first.
    pub fn heap_by_stack(&self) -> Vec<StackTotal> {
        blocks_by_stack(self.live.values())
    }

    /// Bytes and blocks allocated (whether freed or not) by stack, largest first.
    pub fn allocated_by_stack(&self) -> Vec<StackTotal> {
        sorted(
            self.by_stack
                .iter()
                .filter(|(_, e)| e.alloc_count != 0)
                .map(|(stack, e)| StackTotal {
                    stack,
                    bytes: e.alloc_bytes,
                    count: e.alloc_count,
                })
                .collect(),
        )
    }

    /// Temporary allocations by stack, most first (by count, then bytes).
    pub fn temporary_by_stack(&self) -> Vec<StackTotal> {
        let mut v: Vec<StackTotal> = self
            .by_stack
            .iter()
            .filter(|(_, e)| e.temp_count != 0)
            .map(|(stack, e)| StackTotal {
                stack,
                bytes: e.temp_bytes,
                count: e.temp_count,
            })
            .collect();
        v.sort_by(|a, b| (b.count, b.bytes, a.stack).cmp(&(a.count, a.bytes, b.stack)));
        v
    }

    /// The function that made the last allocation of `stack` (malloc, calloc,
    /// operator new...), if it allocated.
    pub fn alloc_func(&self, stack: u32) -> Option<Func> {
        let e = if stack < StackTable::DENSE {
            self.by_stack.dense.get(stack as usize)
        } else {
            self.by_stack.sparse.get(&stack)
        }?;
        Func::from_u8(e.func)
    }

    /// Net brk growth by stack, largest first (stacks with zero net growth left out).
    pub fn brk_by_stack(&self) -> Vec<BrkTotal> {
        let mut v: Vec<BrkTotal> = self
            .brk
            .iter()
            .filter(|(_, b)| **b != 0)
            .map(|(&stack, &bytes)| BrkTotal { stack, bytes })
            .collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.stack.cmp(&b.stack)));
        v
    }
}

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
    /// Live heap and mapped bytes over time (at most [`SERIES_MAX`] points,
    /// about evenly spaced, the last one at the last event).
    pub series: Vec<Point>,
    /// The heap blocks live at the end, by address.
    pub live: Vec<(u64, Block)>,
    /// Explicit brk/sbrk growth by stack.
    pub brk: Vec<BrkTotal>,
    /// First use of each stack id.
    pub first_use: FastMap<u32, u64>,
    /// The allocating function of each stack holding leaked heap blocks.
    pub leak_funcs: FastMap<u32, Func>,
    /// Records cut short by the end of a truncated file.
    pub cut_records: u64,
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
            if let Some(t) = self.first_use.get(&dup).copied() {
                let e = self.first_use.entry(to).or_insert(t);
                *e = (*e).min(t);
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
        series: {
            if let Some(t) = r.last_time {
                r.point(t);
            }
            std::mem::take(&mut r.series)
        },
        brk: r.brk_by_stack(),
        live: {
            let mut v: Vec<(u64, Block)> = r.live.iter().map(|(a, b)| (*a, *b)).collect();
            v.sort_unstable_by_key(|e| e.0);
            v
        },
        first_use: std::mem::take(&mut r.first_use),
        counts: r.counts,
        cut_records,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::*;
    use std::path::Path;

    fn run(b: &LogBuilder) -> Outcome {
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        replay(&log, &idx, Config::of(&h)).unwrap()
    }

    /// The README example: 7 allocs, 7 frees, 4,323 bytes allocated, nothing leaked.
    #[test]
    fn valgrind_counting_example() {
        let mut c = LogBuilder::chunk(T0);
        let t = |i: u64| T0 + i * 10;
        c.alloc(t(1), 0x100, 10, 1) // malloc(10)
            .free(t(2), 0) // free(NULL)
            .realloc(t(3), t(3) + 1, 0x100, 0x200, 100, 2) // realloc(p, 100)
            .realloc(t(4), t(4) + 1, 0, 0x300, 5, 3) // realloc(NULL, 5)
            .realloc(t(5), t(5) + 1, 0x300, 0, 0, 3) // realloc(q, 0)
            .alloc(t(6), 0x400, 0, 4) // malloc(0)
            .alloc(t(7), 0x500, 100, 5) // posix_memalign
            .free(t(8), 0x500)
            .alloc(t(9), 0x600, 12, 6) // calloc(3, 4)
            .alloc(t(10), 0x700, 4096, 7) // stdout buffer
            .free(t(11), 0x200)
            .free(t(12), 0x400)
            .free(t(13), 0x600)
            .put(|b| memtrace_format::encode::freeres(b, 1, 1))
            .free(t(14), 0x700)
            .put(|b| memtrace_format::encode::freeres(b, 1, 2));
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(
            (
                o.counts.allocations,
                o.counts.frees,
                o.counts.bytes_allocated
            ),
            (7, 7, 4323)
        );
        assert_eq!(o.counts.libc_freeres_frees, 1);
        assert_eq!(o.counts.unknown_frees, 0);
        assert_eq!(o.leaked_heap_bytes, 0);
        assert!(o.heap_leaks.is_empty());
    }

    /// A sampled log: SAMPLED records stand for `k * T` bytes and about
    /// `k * T / size` blocks; plain ALLOC records (at least `T`) are exact.
    #[test]
    fn sampled_records_are_scaled() {
        let t = |i: u64| T0 + i * 10;
        let mut c = LogBuilder::chunk(T0);
        c.sampled(t(1), 0x100, 100, 1, 1) // 4096 bytes, ~41 blocks
            .sampled(t(2), 0x200, 1000, 1, 2) // 8192 bytes, ~8.2 blocks
            .alloc(t(3), 0x300, 10_000, 2) // exact
            .free(t(4), 0x100)
            .free(t(5), 0x300);
        let mut b = LogBuilder::new();
        b.push(0, &c);
        b.set_u64(memtrace_format::hdr::off::SAMPLE_INTERVAL, 4096);
        let o = run(&b);
        assert_eq!(o.counts.bytes_allocated, 4096 + 8192 + 10_000);
        assert!(
            (49..=51).contains(&o.counts.allocations),
            "{}",
            o.counts.allocations
        );
        assert_eq!(o.counts.peak_heap_bytes, 4096 + 8192 + 10_000);
        assert_eq!(o.leaked_heap_bytes, 8192);
        assert_eq!(o.heap_leaks.len(), 1);
        assert!((8..=9).contains(&o.heap_leaks[0].count));
        assert_eq!(o.allocated[0].stack, 1);
        assert_eq!(o.allocated[0].bytes, 4096 + 8192);
        assert_eq!(o.allocated[1].bytes, 10_000);
        assert_eq!(o.allocated[1].count, 1);
        // Rounding the counts at random keeps their sum unbiased.
        let n: u64 = (0..10_000u64)
            .map(|i| estimate(1000, 1, 4096, i * 7919).1 as u64)
            .sum();
        assert!((40_700..=41_200).contains(&n), "{n}");
    }

    /// Frees of blocks from before tracing (here inside libc's clean-up) count only as unknown.
    #[test]
    fn unknown_frees_are_not_frees() {
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, 8, 1)
            .put(|b| memtrace_format::encode::freeres(b, 1, 1))
            .free(T0 + 3, 0x10)
            .free(T0 + 4, 0x5000)
            .realloc(T0 + 5, T0 + 6, 0x6000, 0x7000, 4, 2)
            .put(|b| memtrace_format::encode::freeres(b, 1, 2));
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(o.counts.frees, 1);
        assert_eq!(o.counts.libc_freeres_frees, 1);
        assert_eq!(o.counts.unknown_frees, 2);
        assert_eq!(o.counts.allocations, 2);
        assert_eq!(o.leaked_heap_bytes, 4);
    }

    /// A failed realloc keeps the old block; leaks are grouped by stack, largest first.
    #[test]
    fn leaks_grouped_by_stack() {
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, 8, 1)
            .alloc(T0 + 2, 0x20, 8, 1)
            .alloc(T0 + 3, 0x30, 100, 2)
            .realloc(T0 + 4, T0 + 5, 0x30, 0, 1 << 40, 3) // failed
            .alloc(T0 + 6, 0, 5, 4) // failed malloc
            .free(T0 + 7, 0x999); // unknown
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(o.counts.allocations, 3);
        assert_eq!(o.counts.frees, 0);
        assert_eq!(o.counts.unknown_frees, 1);
        assert_eq!(
            o.heap_leaks,
            vec![
                StackTotal {
                    stack: 2,
                    bytes: 100,
                    count: 1
                },
                StackTotal {
                    stack: 1,
                    bytes: 16,
                    count: 2
                }
            ]
        );
        assert_eq!((o.leaked_heap_bytes, o.leaked_heap_blocks), (116, 3));
    }

    /// The peak is found at its first moment and grouped by the stacks live then.
    #[test]
    fn peak_is_grouped_at_its_moment() {
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1_000_000, 0x10, 50, 1)
            .alloc(T0 + 2_000_000, 0x20, 70, 2)
            .free(T0 + 3_000_000, 0x20)
            .alloc(T0 + 4_000_000, 0x30, 60, 3)
            .free(T0 + 5_000_000, 0x10)
            .alloc(T0 + 6_000_000, 0x40, 10, 4);
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(o.counts.peak_heap_bytes, 120);
        assert_eq!(o.counts.peak_heap_time, T0 + 2_000_000);
        assert_eq!(
            o.peak,
            vec![
                StackTotal {
                    stack: 2,
                    bytes: 70,
                    count: 1
                },
                StackTotal {
                    stack: 1,
                    bytes: 50,
                    count: 1
                }
            ]
        );
    }

    /// Reallocating to an address another thread frees in between is ordered by the realloc's two times.
    #[test]
    fn realloc_times_interleave_with_other_streams() {
        let mut a = LogBuilder::chunk(T0);
        a.alloc(T0 + 1, 0x10, 8, 1)
            .realloc(T0 + 10, T0 + 30, 0x10, 0x20, 16, 2);
        let mut other = LogBuilder::chunk(T0);
        // Thread B frees 0x20 after A's realloc began but before it returned it,
        // and gets 0x10 after A released it.
        other
            .alloc(T0 + 2, 0x20, 4, 3)
            .free(T0 + 20, 0x20)
            .alloc(T0 + 25, 0x10, 4, 3);
        let mut b = LogBuilder::new();
        b.push(0, &a).push(1, &other);
        let o = run(&b);
        assert_eq!(o.counts.unknown_frees, 0);
        assert_eq!(o.counts.anomalies, 0);
        assert_eq!(o.leaked_heap_bytes, 16 + 4);
    }

    /// An allocation over a live address counts the old block as gone (an anomaly).
    #[test]
    fn double_alloc_is_an_anomaly() {
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, 8, 1).alloc(T0 + 2, 0x10, 16, 2);
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(o.counts.anomalies, 1);
        assert_eq!(o.leaked_heap_bytes, 16);
    }

    /// Partial munmap leaves the rest counted to the byte; MAP_FIXED replaces; failures are ignored.
    #[test]
    fn mmap_partial_unmap_and_fixed() {
        let mut c = LogBuilder::chunk(T0);
        let base = 0x7f00_0000_0000u64;
        c.mmap(T0 + 1, base, 10 * 4096 - 100, 0x22, 1) // 10 pages
            .munmap(T0 + 2, base + 4096, 4096) // hole: pages 1
            .munmap(T0 + 3, base + 9 * 4096, 10) // last page
            .mmap(T0 + 4, base + 5 * 4096, 4096, 0x32, 2) // MAP_FIXED over page 5
            .mmap(T0 + 5, u64::MAX, 4096, 0x22, 3) // MAP_FAILED
            .mmap(T0 + 6, 0, 4096, 0x22, 3);
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(o.counts.peak_mmap_bytes, 10 * 4096);
        assert_eq!(o.leaked_mmap_bytes, 8 * 4096);
        assert_eq!(o.counts.mmap_calls, 4);
        assert_eq!(o.counts.munmap_calls, 2);
        assert_eq!(
            o.mmap_leaks,
            vec![
                StackTotal {
                    stack: 1,
                    bytes: 7 * 4096,
                    count: 1
                },
                StackTotal {
                    stack: 2,
                    bytes: 4096,
                    count: 1
                }
            ]
        );
        assert_eq!(o.leaked_mmap_regions, 2);
    }

    /// mremap moves the range and takes the mremap's stack.
    #[test]
    fn mremap_moves_region() {
        let mut c = LogBuilder::chunk(T0);
        c.mmap(T0 + 1, 0x10000, 8192, 0x22, 1)
            .put(|b| memtrace_format::encode::mremap(b, 1, 0x10000, 8192, 0x40000, 3 * 4096, 1, 5));
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(
            o.mmap_leaks,
            vec![StackTotal {
                stack: 5,
                bytes: 3 * 4096,
                count: 1
            }]
        );
        assert_eq!(o.counts.peak_mmap_bytes, 3 * 4096);
    }

    /// Region bookkeeping splits and merges exactly at the requested bytes.
    #[test]
    fn regions_unmap_splits() {
        let mut r = Regions::default();
        r.map(100, 200, 1);
        r.map(300, 400, 1);
        r.unmap(150, 350);
        assert_eq!(r.bytes(), 50 + 50);
        assert_eq!(r.regions(), 2);
        r.unmap(0, 1000);
        assert_eq!(r.bytes(), 0);
    }

    /// brk growth is summed per stack.
    #[test]
    fn brk_by_stack() {
        let mut c = LogBuilder::chunk(T0);
        c.put(|b| {
            memtrace_format::encode::brk(b, 1, memtrace_format::Func::Sbrk, 4096, 0x1000, 0x2000, 7)
        })
        .put(|b| {
            memtrace_format::encode::brk(b, 1, memtrace_format::Func::Sbrk, 4096, 0x2000, 0x3000, 7)
        })
        .put(|b| {
            memtrace_format::encode::brk(
                b,
                1,
                memtrace_format::Func::Brk,
                0x3800,
                0x3000,
                0x3800,
                8,
            )
        });
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(
            o.brk,
            vec![
                BrkTotal {
                    stack: 7,
                    bytes: 0x2000
                },
                BrkTotal {
                    stack: 8,
                    bytes: 0x800
                }
            ]
        );
        assert_eq!(
            (o.counts.first_brk, o.counts.last_brk),
            (Some(0x1000), Some(0x3800))
        );
    }

    /// Hostile sizes: sums saturate instead of overflowing (debug builds used to
    /// panic on `live_bytes -= size` after a saturated sum, and when summing
    /// leaks or brk growth of one stack).
    #[test]
    fn hostile_sizes_saturate() {
        let big = u64::MAX - 1;
        let mut c = LogBuilder::chunk(T0);
        c.alloc(T0 + 1, 0x10, big, 1)
            .alloc(T0 + 2, 0x20, 10, 1)
            .free(T0 + 3, 0x10)
            .free(T0 + 4, 0x20)
            .alloc(T0 + 5, 0x30, big, 2)
            .alloc(T0 + 6, 0x40, big, 2)
            .alloc(T0 + 7, 0x40, 5, 2); // over a live block
        for (t, old, new) in [(8, 0, u64::MAX / 2 + 1), (9, u64::MAX / 2 + 1, u64::MAX)] {
            c.put(|b| {
                memtrace_format::encode::brk(b, t, memtrace_format::Func::Sbrk, 0, old, new, 3)
            });
            c.put(|b| {
                memtrace_format::encode::brk(b, t, memtrace_format::Func::Sbrk, 0, new, old, 4)
            });
        }
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        assert_eq!(o.counts.peak_heap_bytes, u64::MAX);
        assert_eq!(o.counts.anomalies, 1);
        assert_eq!(o.heap_leaks[0].stack, 2);
        assert_eq!(o.heap_leaks[0].count, 2);
    }

    /// The peak picture kept during the pass equals the one a second replay
    /// up to the peak computes, on a pseudo-random log with many stacks.
    #[test]
    fn peak_picture_equals_replay_up_to_the_peak() {
        let mut c = LogBuilder::chunk(T0);
        let mut live: Vec<u64> = Vec::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut t = T0;
        for i in 0..3000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += 1000;
            if live.is_empty() || !x.is_multiple_of(3) {
                let addr = 0x1000 + i * 0x100;
                c.alloc(t, addr, 1 + x % 997, (x % 50) as u32 + 1);
                live.push(addr);
            } else {
                let k = (x as usize / 3) % live.len();
                c.free(t, live.swap_remove(k));
            }
        }
        let mut b = LogBuilder::new();
        b.push(0, &c);
        let o = run(&b);
        let log = Log::from_bytes(Path::new("t.mtr"), &b.bytes);
        let h = log.header().unwrap();
        let idx = log.index(&h).unwrap();
        let at = o.counts.peak_event.expect("a peak");
        let mut p = Replay::new(Config::of(&h));
        for ev in log.merge(&idx) {
            p.apply(&ev.unwrap());
            if p.events() > at {
                break;
            }
        }
        assert!(!o.peak.is_empty());
        assert_eq!(o.peak, p.heap_by_stack());
    }
}
