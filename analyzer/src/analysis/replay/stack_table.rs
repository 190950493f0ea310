//! The replay's totals by stack id: a table indexed by id for the dense
//! ids a real log has, a map past it.

use crate::analysis::id_table::IdTable;

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

/// Per-stack totals, by stack id ([`IdTable`]: a vector for the dense ids
/// of a real log, a map past it).
pub(super) type StackTable = IdTable<PerStack>;
