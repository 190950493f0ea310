//! The model both sides of the packed codec keep in step: live slots and
//! each bucket's recent frees, from which an allocation's address is
//! predicted. The encoder (`crate::pack`) and the reader ([`super::Events`])
//! update it identically, event by event.

use super::layout::*;
use crate::hash::FastMap;

/// Ranks among the recent frees of a class an allocation can name.
pub(crate) const SAME_RANKS: usize = 8;

/// Classes (of 16 bytes each) kept in a table rather than a map.
pub(crate) const SMALL_CLASSES: usize = 256;

/// Buckets of streams with recent frees of their own.
pub(crate) const BUCKETS: usize = 64;

/// One recent free.
#[derive(Clone, Copy, Default)]
pub(crate) struct Freed {
    /// Its number in the sequence of frees (+1: 0 marks an empty entry).
    pub(crate) seq: u64,
    /// 0 once an allocation took it.
    pub(crate) addr: u64,
}

/// Recent frees of the threads of one bucket (allocators keep freed blocks
/// per thread, as glibc's tcache does, so a thread's allocations are best
/// predicted by its own frees).
pub(crate) struct Recents {
    /// The address of the bucket's last allocation (arenas are per thread too).
    pub(crate) last_addr: u64,
    /// Frees remembered so far.
    pub(crate) frees: u64,
    pub(crate) ring: Vec<Freed>,
    /// Sequence numbers of recent frees, by class (most recent last): small
    /// classes by index, the others in a map.
    pub(crate) small: Vec<Vec<u64>>,
    pub(crate) large: FastMap<u64, Vec<u64>>,
}

impl Recents {
    pub(crate) fn new() -> Recents {
        Recents {
            last_addr: 0,
            frees: 0,
            ring: vec![Freed::default(); WINDOW],
            small: (0..SMALL_CLASSES).map(|_| Vec::new()).collect(),
            large: FastMap::default(),
        }
    }

    /// Remembers a freed block (freed by slot).
    #[inline(always)]
    pub(crate) fn remember(&mut self, addr: u64, size: u64) {
        self.frees += 1;
        let seq = self.frees;
        self.ring[(seq as usize) % WINDOW] = Freed { seq, addr };
        let c = class(size);
        let v = match self.small.get_mut((c / 16) as usize) {
            Some(v) => v,
            None => self.large.entry(c).or_default(),
        };
        v.push(seq);
        if v.len() > 2 * SAME_RANKS + 16 {
            let (frees, ring) = (self.frees, &self.ring);
            v.retain(|&s| valid(ring, frees, s));
        }
    }

    /// The recent free `seq`, if it is still in the window and not taken.
    #[inline(always)]
    pub(crate) fn recent(&self, seq: u64) -> Option<Freed> {
        valid(&self.ring, self.frees, seq).then(|| self.ring[(seq as usize) % WINDOW])
    }

    /// The `rank`-th most recent valid free of `class`.
    pub(crate) fn same(&mut self, class: u64, rank: usize) -> Option<u64> {
        let (frees, ring) = (self.frees, &self.ring);
        let v = match self.small.get_mut((class / 16) as usize) {
            Some(v) => v,
            None => self.large.get_mut(&class)?,
        };
        while v.last().is_some_and(|&s| !valid(ring, frees, s)) {
            v.pop();
        }
        v.iter()
            .rev()
            .filter(|&&s| valid(ring, frees, s))
            .nth(rank)
            .copied()
    }

    /// The rank (below [`SAME_RANKS`]) and sequence number of `addr` among
    /// the recent frees of `class`, as [`Recents::same`] would find it.
    pub(crate) fn find_same(&mut self, class: u64, addr: u64) -> Option<(usize, u64)> {
        let (frees, ring) = (self.frees, &self.ring);
        let v = match self.small.get_mut((class / 16) as usize) {
            Some(v) => v,
            None => self.large.get_mut(&class)?,
        };
        while v.last().is_some_and(|&s| !valid(ring, frees, s)) {
            v.pop();
        }
        v.iter()
            .rev()
            .filter(|&&s| valid(ring, frees, s))
            .take(SAME_RANKS)
            .enumerate()
            .find(|&(_, &s)| ring[(s as usize) % WINDOW].addr == addr)
            .map(|(rank, &s)| (rank, s))
    }

    #[inline(always)]
    pub(crate) fn take_recent(&mut self, seq: u64) {
        self.ring[(seq as usize) % WINDOW].addr = 0;
    }
}

/// The state both sides keep, so the decoder mirrors every choice of the encoder.
pub(crate) struct Model {
    pub(crate) prev_us: u64,
    pub(crate) stream: usize,
    pub(crate) last_stack: u32,
    /// (address, size) by slot; address 0: a free slot.
    pub(crate) slots: Vec<(u64, u64)>,
    pub(crate) free_slots: Vec<u32>,
    /// Recent frees by bucket of streams (stream index modulo [`BUCKETS`]),
    /// created on first use.
    pub(crate) buckets: Vec<Option<Box<Recents>>>,
}

impl Model {
    pub(crate) fn new() -> Model {
        Model {
            prev_us: 0,
            stream: 0,
            last_stack: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            buckets: (0..BUCKETS).map(|_| None).collect(),
        }
    }

    /// The current stream's bucket number.
    #[inline(always)]
    pub(crate) fn bucket(&self) -> usize {
        self.stream % BUCKETS
    }

    /// The current stream's recent frees.
    #[inline(always)]
    pub(crate) fn rec(&mut self) -> &mut Recents {
        let b = self.bucket();
        self.buckets[b].get_or_insert_with(|| Box::new(Recents::new()))
    }

    /// Gives the block a slot (last freed slot first).
    #[inline(always)]
    pub(crate) fn take_slot(&mut self, addr: u64, size: u64) -> u32 {
        match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = (addr, size);
                s
            }
            None => {
                self.slots.push((addr, size));
                (self.slots.len() - 1) as u32
            }
        }
    }

    #[inline(always)]
    pub(crate) fn release_slot(&mut self, s: u32) {
        self.slots[s as usize] = (0, 0);
        self.free_slots.push(s);
    }
}

#[inline(always)]
pub(crate) fn valid(ring: &[Freed], frees: u64, seq: u64) -> bool {
    // A damaged log can name a free from the future: checked, not wrapped.
    seq != 0 && frees.checked_sub(seq).is_some_and(|d| d < WINDOW as u64) && {
        let f = &ring[(seq as usize) % WINDOW];
        f.seq == seq && f.addr != 0
    }
}
