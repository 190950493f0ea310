//! What happened in a traced process, from its log: the catalog of stacks,
//! modules and the scanner's records ([`catalog`]), the replay of the merged
//! events into the live set, peak and leaks ([`replay`]), what a fork child
//! inherited ([`inherit`]), leak kinds by reachability as memcheck classifies
//! them ([`reach`]), frame addresses to functions and lines ([`symbolize`]),
//! the kernel's records of the process ([`kernel`]) and the processes of a run
//! that left no log ([`lineage`]); the tables keyed by stack id they share
//! ([`id_table`], [`stack_store`]).
//!
//! Uses the shared vocabulary (`crate::error`, `crate::hash`), `crate::log`
//! and `crate::pack` (a snapshot packs its log); nothing above it.

pub mod catalog;
pub mod id_table;
pub mod inherit;
pub mod kernel;
pub mod last_events;
pub mod lineage;
pub mod reach;
pub mod replay;
pub mod stack_store;
pub mod symbolize;
