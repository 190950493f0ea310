//! Touching running processes: snapshots of a live heap classified by
//! reachability ([`snapshot`]) and the ptrace stop of a process's threads
//! while its memory is read ([`stop`]); the watcher's state kept from one
//! snapshot to the next ([`follow`]), and the snapshots written from it
//! ([`compact`]).
//!
//! Uses `crate::log`, `crate::pack` and `crate::analysis`; nothing above it.

pub mod compact;
pub mod follow;
pub mod snapshot;
pub mod stop;
