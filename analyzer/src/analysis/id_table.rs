//! A table keyed by stack id: a vector indexed by id for the dense ids a
//! real log has, a map for the rest.
//!
//! The preload numbers stacks from 1 up, so a log with a million stacks has
//! ids 1 to a million: a vector holds their entries with no per-entry
//! overhead and no hashing. An id far past the ids seen so far (a fork
//! child's inherited stacks count down from `u32::MAX`, a hostile log may
//! name any id) goes to a map instead, so that memory stays proportional to
//! the distinct ids seen: the vector only grows to an id below
//! [`IdTable::DENSE`] or below four times the ids it already made room for,
//! and never over an id the map holds (each id lives in one place).

use crate::hash::FastMap;

/// Entries of type `T` by id; an id never set reads as `T::default()` when
/// it falls in the vector, as absent when it does not (see [`IdTable::get`]).
#[derive(Clone, Debug)]
pub struct IdTable<T> {
    dense: Vec<T>,
    /// Times the vector grew for an id past its end (at most the distinct
    /// ids it holds): the bound on how far it may grow.
    grown: usize,
    sparse: FastMap<u32, T>,
    /// The smallest id in the map (`u32::MAX` when empty): the vector stops
    /// short of it.
    floor: u32,
}

impl<T> Default for IdTable<T> {
    fn default() -> Self {
        IdTable {
            dense: Vec::new(),
            grown: 0,
            sparse: FastMap::default(),
            floor: u32::MAX,
        }
    }
}

impl<T: Clone + Default> IdTable<T> {
    /// Ids below this always go to the vector.
    pub const DENSE: u32 = 1 << 16;

    /// The entry of `id`, made (as `T::default()`) if there was none.
    #[inline]
    pub fn entry(&mut self, id: u32) -> &mut T {
        let i = id as usize;
        if i < self.dense.len() {
            return &mut self.dense[i];
        }
        let room = (Self::DENSE as usize).max(self.grown.saturating_mul(4));
        if i < room && id < self.floor {
            self.grown += 1;
            self.dense.resize(i + 1, T::default());
            return &mut self.dense[i];
        }
        self.floor = self.floor.min(id);
        self.sparse.entry(id).or_default()
    }

    /// The entry of `id`: `Some` for any id in the vector (set or not), and
    /// for the ids in the map.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&T> {
        match self.dense.get(id as usize) {
            Some(e) => Some(e),
            None if self.sparse.is_empty() => None,
            None => self.sparse.get(&id),
        }
    }

    /// [`get`](Self::get), mutably.
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        match self.dense.get_mut(id as usize) {
            Some(e) => Some(e),
            None if self.sparse.is_empty() => None,
            None => self.sparse.get_mut(&id),
        }
    }

    /// Entries an [`iter`](Self::iter) walks.
    pub fn slots(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    /// Every entry: the vector's in id order (set or not), then the map's in
    /// no order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.dense
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
            .chain(self.sparse.iter().map(|(&i, e)| (i, e)))
    }
}

/// A time of [`FirstUse`]; `u64::MAX`: none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Time(u64);

impl Default for Time {
    fn default() -> Self {
        Time(u64::MAX)
    }
}

/// The first use of each stack id by an event (CLOCK_MONOTONIC ns), which
/// picks the module instance a frame belongs to: 8 bytes per dense id.
#[derive(Clone, Debug, Default)]
pub struct FirstUse(IdTable<Time>);

impl FirstUse {
    /// When `id` was first used, if it was.
    #[inline]
    pub fn get(&self, id: u32) -> Option<u64> {
        self.0.get(id).map(|t| t.0).filter(|&t| t != u64::MAX)
    }

    /// Notes a use of `id` at `time`, unless one was noted already.
    #[inline]
    pub fn note(&mut self, id: u32, time: u64) {
        let e = self.0.entry(id);
        if e.0 == u64::MAX {
            e.0 = time;
        }
    }

    /// Notes a use of `id` at `time`, keeping the earlier of it and the
    /// one noted.
    pub fn note_earliest(&mut self, id: u32, time: u64) {
        let e = self.0.entry(id);
        e.0 = e.0.min(time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids counted up from 1 all live in the vector, however many.
    #[test]
    fn dense_ids_stay_in_the_vector() {
        let mut t: IdTable<u64> = IdTable::default();
        for id in 1..300_000u32 {
            *t.entry(id) += id as u64;
        }
        assert_eq!(t.sparse.len(), 0);
        assert_eq!(t.slots(), 300_000);
        assert_eq!(t.get(299_999), Some(&299_999));
        assert_eq!(t.get(300_000), None);
    }

    /// An id far past the others goes to the map; the vector then stops
    /// short of it, so that each id has one entry.
    #[test]
    fn far_ids_go_to_the_map() {
        let mut t: IdTable<u64> = IdTable::default();
        *t.entry(u32::MAX) = 7;
        *t.entry(100_000) = 8;
        assert_eq!((t.sparse.len(), t.dense.len()), (2, 0));
        for id in 0..200_000 {
            *t.entry(id) += 1;
        }
        assert_eq!(
            t.dense.len(),
            100_000,
            "the vector stops below the map's 100,000"
        );
        assert_eq!(t.get(100_000), Some(&9));
        assert_eq!(t.get(150_000), Some(&1));
        assert_eq!(t.get(u32::MAX), Some(&7));
        assert_eq!(t.get(250_000), None);
        let sum: u64 = t.iter().map(|(_, &v)| v).sum();
        assert_eq!(sum, 200_000 + 7 + 8);
    }

    /// Past [`IdTable::DENSE`], the vector grows only while the ids it holds
    /// are at least a quarter of its length.
    #[test]
    fn sparse_ids_past_dense_do_not_grow_the_vector() {
        let mut t: IdTable<u64> = IdTable::default();
        t.entry(10);
        t.entry(IdTable::<u64>::DENSE);
        assert_eq!((t.dense.len(), t.sparse.len()), (11, 1));
    }

    /// A first use stays the first noted; `note_earliest` keeps the minimum.
    #[test]
    fn first_use_keeps_the_first() {
        let mut f = FirstUse::default();
        f.note(3, 50);
        f.note(3, 20);
        f.note_earliest(u32::MAX, 90);
        f.note_earliest(u32::MAX, 70);
        assert_eq!(
            (f.get(3), f.get(u32::MAX), f.get(2), f.get(4)),
            (Some(50), Some(70), None, None)
        );
    }
}
