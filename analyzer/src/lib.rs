//! # memtrace: reading memtrace logs
//!
//! The library behind the `memtrace` binary. `libmemtrace.so` (the preload,
//! a separate crate) records every malloc-family, mmap and brk call of a
//! process with its call stack into a log file (format: the
//! `memtrace-format` crate); this crate reads such a log and reports heap
//! and mmap leaks, the peak of live heap memory and who held it, and brk
//! growth, with symbolized stacks.
//!
//! ## Entry points
//! - [`report::analyze`]: path in, [`report::Report`] out — the whole pipeline.
//! - [`report::analyze_bytes`]: the same on bytes in memory, without
//!   symbolization (the fuzzing entry point, see `fuzz/README.md`).
//! - [`render::text::render`] and [`render::json::render`]: print a report.
//! - [`export::read`], then [`export::pprof::encode`], [`export::folded`] or
//!   [`export::speedscope::document`]: a log for other tools (`memtrace export`).
//! - The stages, for other front ends: [`log::Log`] (open, index, merge
//!   streams by time), [`catalog::scan`] (stacks, modules, process events),
//!   [`replay::replay`] (counting, live set, peak, mmap regions),
//!   [`symbolize::Symbolizer`] (frames to functions and lines).
//!
//! ## Design constraints
//! - **Logs can be large**: the file is mapped, never read whole; records are
//!   decoded lazily, three times (catalog, replay, replay to the peak), so
//!   memory grows with live blocks and distinct stacks, not with events;
//!   consumed pages of the mapping are released as each pass goes on.
//! - **Logs can be hostile**: every allocation is bounded by bytes actually
//!   present in the file, sums saturate, and no lookup is worse than
//!   logarithmic in what the file holds (see `fuzz/` for the fuzzer).
//! - **Logs can be damaged**: truncated logs are reported with a warning,
//!   corrupt ones refused with an [`Error`] naming the file; nothing panics
//!   on any input (see [`log`] for the exact policy).
//! - **Counting matches valgrind** (`total heap usage: N allocs, N frees, N
//!   bytes allocated`), so the two can be compared: see [`replay`].

pub mod catalog;
pub mod check;
pub mod error;
pub mod export;
pub mod flame;
pub mod hash;
pub mod inherit;
pub mod kernel;
pub mod lineage;
pub mod log;
pub mod outfile;
pub mod pack;
pub mod reach;
pub mod render;
pub mod replay;
pub mod report;
pub mod snapshot;
pub mod stop;
pub mod suppress;
pub mod symbolize;
#[cfg(test)]
pub(crate) mod testlog;

pub use error::{Error, Result};
pub use report::{Options, Progress, Report, Stage, analyze, analyze_bytes};
