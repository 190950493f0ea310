//! The replay state machine: the live heap, the mappings, brk and the
//! peak, one merged event at a time.

use crate::analysis::id_table::FirstUse;
use memtrace_format::{Func, Record};

use super::stack_table::StackTable;
use super::{
    Block, BrkTotal, Change, Config, Counts, Journal, Point, Regions, SERIES_MAX, Seed, StackTotal,
    blocks_by_stack, sorted,
};
use crate::hash::FastMap;
use crate::log::{Event, NO_SLOT};

/// `MREMAP_DONTUNMAP` from `<linux/mman.h>`: the old range stays mapped.
const MREMAP_DONTUNMAP: u64 = 4;

/// What a sampled allocation of `size` bytes with `samples` sample points
/// stands for: `samples * interval` bytes (unbiased) and, as a count,
/// `samples * interval / size` rounded up or down at random (by `seed`), so
/// that sums of counts are unbiased too.
pub fn estimate(size: u64, samples: u64, interval: u64, seed: u64) -> (u64, u32) {
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

/// The replay state machine; feed it merged events with [`Replay::apply`].
#[derive(Clone, Debug)]
pub struct Replay {
    pub counts: Counts,
    page_size: u64,
    /// Live blocks by address: a raw log's, and a seed's.
    live: FastMap<u64, Block>,
    /// Live blocks by slot (a packed log's, [`Event::slot`]): address (0:
    /// an empty slot) and block. A slot is a dense index the codec reuses
    /// last freed first, so this stays small and in cache where a hash of
    /// addresses would scatter.
    slots: Vec<(u64, Block)>,
    /// Occupied entries of `slots`.
    slot_blocks: u64,
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
    /// The changes to `regions` made by events (not by a seed), in order.
    pub journal: Journal,
    brk: FastMap<u32, i64>,
    in_freeres: bool,
    /// First time each stack id was used by an event (to pick the module
    /// instance a frame belongs to).
    pub first_use: FirstUse,
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
            slots: Vec::new(),
            slot_blocks: 0,
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
            journal: Journal::default(),
            brk: FastMap::default(),
            in_freeres: false,
            first_use: FirstUse::default(),
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
        self.live.len() as u64 + self.slot_blocks
    }

    /// The live heap blocks and their addresses, in no order.
    pub fn live(&self) -> impl Iterator<Item = (u64, Block)> + '_ {
        let by_slot = self.slots.iter().filter(|e| e.0 != 0);
        self.live
            .iter()
            .map(|(a, b)| (*a, *b))
            .chain(by_slot.copied())
    }

    fn pages(&self, len: u64) -> u64 {
        len.div_ceil(self.page_size).saturating_mul(self.page_size)
    }

    #[inline]
    fn used(&mut self, stack: u32, time: u64) {
        // Runs of one stack are common: only its first event can be a first use.
        if stack != 0 && stack != self.last_used {
            self.first_use.note(stack, time);
            self.last_used = stack;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alloc(
        &mut self,
        time: u64,
        addr: u64,
        size: u64,
        stack: u32,
        samples: u64,
        func: Func,
        slot: u32,
    ) {
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
        if let Some(old) = self.insert(addr, block, slot) {
            self.replaced(old);
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

    /// Makes `block` live at `addr` (in `slot`, if it has one); returns the
    /// block that was live there already, an anomaly (two at once: both).
    #[inline]
    fn insert(&mut self, addr: u64, block: Block, slot: u32) -> Option<Block> {
        if slot == NO_SLOT {
            return self.live.insert(addr, block);
        }
        let i = slot as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, (0, Block::default()));
        }
        // An occupied slot holds a block the codec forgot (FORGET) because
        // its address was allocated again: this allocation.
        let e = std::mem::replace(&mut self.slots[i], (addr, block));
        let forgotten = if e.0 != 0 {
            Some(e.1)
        } else {
            self.slot_blocks += 1;
            None
        };
        // A seed's block at the same address (raw logs have no slots).
        let seeded = if self.live.is_empty() {
            None
        } else {
            self.live.remove(&addr)
        };
        match (forgotten, seeded) {
            (Some(a), Some(b)) => {
                self.replaced(a);
                Some(b)
            }
            (a, b) => a.or(b),
        }
    }

    /// Takes the block live at `addr` (in `slot`, if it names it).
    #[inline]
    fn remove(&mut self, addr: u64, slot: u32) -> Option<Block> {
        if slot != NO_SLOT
            && let Some(e) = self.slots.get_mut(slot as usize)
            && e.0 == addr
            && addr != 0
        {
            self.slot_blocks -= 1;
            return Some(std::mem::take(e).1);
        }
        self.live.remove(&addr)
    }

    /// Accounts for `old`, replaced while live by a new block at its address.
    fn replaced(&mut self, old: Block) {
        self.counts.anomalies += 1;
        self.live_bytes = self.live_bytes.saturating_sub(old.size);
        self.unaccount(old);
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

    fn free(&mut self, addr: u64, slot: u32) {
        self.free_counting(addr, false, slot);
    }

    /// Frees `addr`, counted as a temporary allocation too when `temporary`
    /// (see [`Counts::temporary`]): one lookup for both.
    #[inline]
    fn free_counting(&mut self, addr: u64, temporary: bool, slot: u32) {
        match self.remove(addr, slot) {
            Some(b) => {
                // Saturating: sizes come from the file, and their sum may have saturated.
                self.live_bytes = self.live_bytes.saturating_sub(b.size);
                self.unaccount(b);
                if temporary {
                    self.counts.temporary += b.count as u64;
                    self.counts.temporary_bytes =
                        self.counts.temporary_bytes.saturating_add(b.size);
                    if let Some(e) = self.by_stack.get_mut(b.stack) {
                        e.temp_count += b.count as u64;
                        e.temp_bytes = e.temp_bytes.saturating_add(b.size);
                    }
                }
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

    /// Whether a free of `addr` by `stream` frees that stream's last
    /// allocation, a temporary one (see [`Counts::temporary`]); it is the
    /// stream's last no more.
    #[inline]
    fn temporary(&mut self, stream: usize, addr: u64) -> bool {
        match self.last_alloc.get_mut(stream) {
            Some(last) if *last == addr => {
                *last = 0;
                true
            }
            _ => false,
        }
    }

    fn mapped(&mut self) {
        self.counts.peak_mmap_bytes = self.counts.peak_mmap_bytes.max(self.regions.bytes());
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &Event<'_>) {
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
                    self.alloc(time, addr, size, stack, samples, func, ev.slot);
                    self.set_last(ev.stream, addr);
                }
            }
            Record::Free { addr, .. } if addr != 0 => {
                let temporary = self.temporary(ev.stream, addr);
                self.free_counting(addr, temporary, ev.slot);
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
                    if memtrace_format::realloc_released(old, new, size) {
                        self.free(old, ev.slot);
                    }
                } else {
                    self.used(stack, time_after);
                    if new != 0 {
                        self.alloc(time_after, new, size, stack, 0, func, ev.slot);
                        self.set_last(ev.stream, new);
                    }
                }
            }
            Record::Mmap { .. }
            | Record::Munmap { .. }
            | Record::Mremap { .. }
            | Record::Brk { .. } => self.address_space(ev.time, &ev.record),
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

    /// Changes the mapped memory, noting it in the journal at `time`.
    fn change(&mut self, time: u64, change: Change) {
        self.journal.record(time, change);
        self.regions.apply(change);
    }

    /// Applies an MMAP, MUNMAP, MREMAP or BRK record (nothing else) of the
    /// event at `at`.
    fn address_space(&mut self, at: u64, record: &Record<'_>) {
        let failed = |a: u64| a == 0 || a == u64::MAX;
        match *record {
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
                    self.change(
                        at,
                        Change::Map {
                            start: addr,
                            end,
                            stack,
                        },
                    );
                    self.mapped();
                }
            }
            Record::Munmap { addr, len, .. } => {
                self.counts.munmap_calls += 1;
                let end = addr.saturating_add(self.pages(len));
                self.change(at, Change::Unmap { start: addr, end });
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
                        let end = old.saturating_add(self.pages(old_len));
                        self.change(at, Change::Unmap { start: old, end });
                    }
                    let end = new.saturating_add(self.pages(new_len));
                    self.change(
                        at,
                        Change::Map {
                            start: new,
                            end,
                            stack,
                        },
                    );
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
            _ => {}
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

    /// The memory-over-time series, ended with a point at the last event.
    pub(super) fn take_series(&mut self) -> Vec<Point> {
        if let Some(t) = self.last_time {
            self.point(t);
        }
        std::mem::take(&mut self.series)
    }

    /// Live heap bytes and blocks by stack, largest first.
    pub fn heap_by_stack(&self) -> Vec<StackTotal> {
        let by_slot = self.slots.iter().filter(|e| e.0 != 0).map(|e| &e.1);
        blocks_by_stack(self.live.values().chain(by_slot))
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
        let e = self.by_stack.get(stack)?;
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
