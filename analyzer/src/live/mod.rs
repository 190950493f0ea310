//! Touching running processes: snapshots of a live heap classified by
//! reachability ([`snapshot`]) and the ptrace stop of a process's threads
//! while its memory is read ([`stop`]).
//!
//! Uses `crate::log`, `crate::pack` and `crate::analysis`; nothing above it.

pub mod snapshot;
pub mod stop;
