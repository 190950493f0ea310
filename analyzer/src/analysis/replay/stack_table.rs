//! The replay's totals by stack id: a table indexed by id for the dense
//! ids a real log has, a map past it.

use crate::hash::FastMap;

/// Live and allocated totals of one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PerStack {
    pub(super) live_bytes: u64,
    pub(super) live_count: u64,
    pub(super) alloc_bytes: u64,
    pub(super) alloc_count: u64,
    /// Blocks freed before their thread's next allocation (see [`super::Counts::temporary`]).
    pub(super) temp_bytes: u64,
    pub(super) temp_count: u64,
    /// The allocating function of the stack's last allocation (`Func as u8`).
    pub(super) func: u8,
}

/// Per-stack totals: stack ids are small and dense in a real log (the
/// preload numbers them from 1), so most live in a table indexed by id; any
/// id past [`StackTable::DENSE`] goes to a map.
#[derive(Clone, Debug, Default)]
pub(super) struct StackTable {
    dense: Vec<PerStack>,
    sparse: FastMap<u32, PerStack>,
}

impl StackTable {
    pub(super) const DENSE: u32 = 1 << 16;

    #[inline]
    pub(super) fn entry(&mut self, id: u32) -> &mut PerStack {
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

    /// The totals of `id`, if it has some.
    pub(super) fn get(&self, id: u32) -> Option<&PerStack> {
        if id < Self::DENSE {
            self.dense.get(id as usize)
        } else {
            self.sparse.get(&id)
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut PerStack> {
        if id < Self::DENSE {
            self.dense.get_mut(id as usize)
        } else {
            self.sparse.get_mut(&id)
        }
    }

    /// Entries an [`iter`](Self::iter) walks.
    pub(super) fn slots(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &PerStack)> {
        self.dense
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
            .chain(self.sparse.iter().map(|(&i, e)| (i, e)))
    }
}
