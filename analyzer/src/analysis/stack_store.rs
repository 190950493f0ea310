//! The frames of every stack a log defines, interned: each distinct address
//! once, each stack a run of 32-bit address ids in one flat array.
//!
//! A log can define millions of stacks of tens of frames each. One vector
//! per stack in a hash map costs an allocation, a map entry and 8 bytes per
//! frame for each; here a stack costs its span (16 bytes, in an
//! [`IdTable`]) and 4 bytes per frame, and the frames of consecutive ids lie
//! side by side, so a pass over all stacks ([`StackStore::twins`]) reads
//! memory in order. Two frame lists are equal exactly when their id runs
//! are ([`Frames::key`]).

use crate::analysis::id_table::IdTable;
use crate::hash::FastMap;

/// Where a stack's address ids are in [`StackStore::frames`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    /// Frames; `u32::MAX`: no stack under this id.
    len: u32,
}

impl Default for Span {
    fn default() -> Self {
        Span {
            start: 0,
            len: u32::MAX,
        }
    }
}

/// The stacks of a log by id, innermost frame first.
#[derive(Clone, Debug, Default)]
pub struct StackStore {
    /// Each distinct frame address, by address id.
    addrs: Vec<u64>,
    addr_ids: FastMap<u64, u32>,
    /// Every stack's address ids, end to end.
    frames: Vec<u32>,
    spans: IdTable<Span>,
    len: usize,
}

/// One stack's frames, innermost first.
#[derive(Clone, Copy, Debug)]
pub struct Frames<'a> {
    ids: &'a [u32],
    addrs: &'a [u64],
}

impl<'a> Frames<'a> {
    /// The frame addresses.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = u64> + use<'a> {
        let addrs = self.addrs;
        self.ids.iter().map(move |&i| addrs[i as usize])
    }

    /// The frame addresses, copied out.
    pub fn to_vec(&self) -> Vec<u64> {
        self.iter().collect()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// A key equal for two stacks of one store exactly when their frames
    /// are: the address ids.
    pub fn key(&self) -> &'a [u32] {
        self.ids
    }
}

impl StackStore {
    /// Stacks defined.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `id` is defined.
    pub fn contains(&self, id: u32) -> bool {
        self.span(id).is_some()
    }

    fn span(&self, id: u32) -> Option<Span> {
        self.spans.get(id).copied().filter(|s| s.len != u32::MAX)
    }

    /// The frames of `id`, if it is defined.
    pub fn get(&self, id: u32) -> Option<Frames<'_>> {
        let s = self.span(id)?;
        let start = s.start as usize;
        Some(Frames {
            ids: &self.frames[start..start + s.len as usize],
            addrs: &self.addrs,
        })
    }

    /// Defines `id` with `frames` unless it is defined already; whether it
    /// was new.
    pub fn insert(&mut self, id: u32, frames: impl IntoIterator<Item = u64>) -> bool {
        self.try_insert(
            id,
            frames.into_iter().map(Ok::<u64, std::convert::Infallible>),
        )
        .unwrap_or_else(|never| match never {})
    }

    /// [`insert`](Self::insert) from frames that may fail to decode: every
    /// frame is decoded (so that an error is seen even for an id defined
    /// already), and the first error is returned, with nothing defined.
    pub fn try_insert<E>(
        &mut self,
        id: u32,
        frames: impl IntoIterator<Item = Result<u64, E>>,
    ) -> Result<bool, E> {
        if self.contains(id) {
            for f in frames {
                f?;
            }
            return Ok(false);
        }
        let start = self.frames.len();
        for f in frames {
            match f {
                Ok(a) => {
                    let next = self.addrs.len() as u32;
                    let i = *self.addr_ids.entry(a).or_insert(next);
                    if i == next {
                        self.addrs.push(a);
                    }
                    self.frames.push(i);
                }
                Err(e) => {
                    self.frames.truncate(start);
                    return Err(e);
                }
            }
        }
        let len = self.frames.len() - start;
        if len >= u32::MAX as usize {
            self.frames.truncate(start);
            return Ok(false);
        }
        *self.spans.entry(id) = Span {
            start: start as u64,
            len: len as u32,
        };
        self.len += 1;
        Ok(true)
    }

    /// Every stack: id and frames, in no particular order (the dense ids
    /// first, in order).
    pub fn iter(&self) -> impl Iterator<Item = (u32, Frames<'_>)> {
        self.spans
            .iter()
            .filter(|(_, s)| s.len != u32::MAX)
            .map(|(id, s)| {
                let start = s.start as usize;
                let f = Frames {
                    ids: &self.frames[start..start + s.len as usize],
                    addrs: &self.addrs,
                };
                (id, f)
            })
    }

    /// Groups of ids with equal frames, each group sorted, smallest id
    /// first; the groups in order of their smallest id. Empty in the usual
    /// log, where each stack is defined once. One keyed hash per stack (a
    /// hostile log cannot aim for collisions), then a sort of the hashes;
    /// frames are compared only within equal hashes.
    pub fn twins(&self) -> Vec<Vec<u32>> {
        use std::hash::{BuildHasher, Hasher};
        let state = crate::hash::FastState::default();
        let mut hashed: Vec<(u64, u32)> = self
            .iter()
            .map(|(id, f)| {
                let mut h = state.build_hasher();
                h.write_usize(f.len());
                for &i in f.key() {
                    h.write_u32(i);
                }
                (h.finish(), id)
            })
            .collect();
        hashed.sort_unstable();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for run in hashed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
            // Equal hashes: split by frames (a collision is not a twin).
            let mut by_key: Vec<(&[u32], u32)> = run
                .iter()
                .map(|&(_, id)| (self.get(id).map_or(&[][..], |f| f.key()), id))
                .collect();
            by_key.sort_unstable();
            for same in by_key.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
                groups.push(same.iter().map(|&(_, id)| id).collect());
            }
        }
        groups.sort_unstable_by_key(|g| g[0]);
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames come back as given; an id is defined once (the first
    /// definition stays); distinct addresses are stored once.
    #[test]
    fn stores_each_address_once_and_each_id_once() {
        let mut s = StackStore::default();
        assert!(s.insert(1, [0x10, 0x20, 0x30]));
        assert!(s.insert(2, [0x20, 0x10]));
        assert!(!s.insert(1, [0x99]));
        assert!(s.insert(u32::MAX - 1, []));
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(1).map(|f| f.to_vec()), Some(vec![0x10, 0x20, 0x30]));
        assert_eq!(s.get(2).map(|f| f.to_vec()), Some(vec![0x20, 0x10]));
        assert_eq!(s.get(u32::MAX - 1).map(|f| f.len()), Some(0));
        assert!(s.get(3).is_none() && !s.contains(0));
        assert_eq!(s.addrs, [0x10, 0x20, 0x30]);
        assert_eq!(
            s.frames.len(),
            5,
            "the second definition of 1 left no frames"
        );
    }

    /// A frame that fails to decode defines nothing and leaves no frames.
    #[test]
    fn a_bad_frame_defines_nothing() {
        let mut s = StackStore::default();
        let r = s.try_insert(5, [Ok(0x10), Err("bad"), Ok(0x20)]);
        assert_eq!(r, Err("bad"));
        assert!(!s.contains(5));
        assert_eq!(s.frames.len(), 0);
    }

    /// Ids with equal frames come out as groups, smallest id first; equal
    /// prefixes or lengths are not equal frames.
    #[test]
    fn twins_are_the_ids_with_equal_frames() {
        let mut s = StackStore::default();
        s.insert(7, [1, 2, 3]);
        s.insert(3, [1, 2]);
        s.insert(9, [1, 2, 3]);
        s.insert(4, [1, 2, 3]);
        s.insert(1, [5]);
        s.insert(1 << 30, [5]);
        s.insert(2, [1, 2, 3, 4]);
        assert_eq!(s.twins(), [vec![1, 1 << 30], vec![4, 7, 9]]);
    }
}
