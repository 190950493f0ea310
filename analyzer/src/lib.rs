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
//! - [`gate::evaluate`]: the verdict of `memtrace check` on reports.
//! - The stages, for other front ends: [`log::Log`] (open, index, merge
//!   streams by time, raw or packed), [`analysis::replay::replay_seeded`]
//!   (counting, live set, peak, mmap regions; the
//!   [`analysis::catalog::Catalog`] observes every event of that one pass:
//!   stacks, modules, process events), [`analysis::symbolize::Symbolizer`]
//!   (frames to functions and lines).
//!
//! ## Layers
//! Each module uses only the ones listed before it (`scripts/layers.py`
//! checks it, and that no two modules import each other):
//! - shared vocabulary: [`error`], [`escape`] (one escaper per markup
//!   language), [`frames`] (one rule for merging, naming and keying stacks),
//!   [`hash`], [`kinds`], [`outfile`], [`units`];
//! - [`log`]: opening a log (raw or packed), its chunks and streams, the merge;
//! - [`pack`]: the packed-log encoder;
//! - [`analysis`]: replay, catalog, inheritance, reachability, symbols, the
//!   kernel's records, the processes that left no log;
//! - [`live`]: snapshots of running processes, the ptrace stop;
//! - [`report`]: the [`Report`] every renderer reads;
//! - [`gate`]: `memtrace check`'s verdict and suppressions;
//! - [`flame`]: stacks weighted by a metric (folded form, diff);
//! - [`render`] and [`export`]: the outputs.
//!
//! ## Design constraints
//! - **Logs can be large**: the file is mapped, never read whole; records are
//!   decoded lazily, in one pass (a second one only for the mappings at the
//!   kernel's peak), so
//!   memory grows with live blocks and distinct stacks, not with events;
//!   consumed pages of the mapping are released as each pass goes on.
//! - **Logs can be hostile**: every allocation is bounded by bytes actually
//!   present in the file, sums saturate, and no lookup is worse than
//!   logarithmic in what the file holds (see `fuzz/` for the fuzzer).
//! - **Logs can be damaged**: truncated logs are reported with a warning,
//!   corrupt ones refused with an [`Error`] naming the file; nothing panics
//!   on any input (see [`log`] for the exact policy).
//! - **Counting matches valgrind** (`total heap usage: N allocs, N frees, N
//!   bytes allocated`), so the two can be compared: see [`analysis::replay`].

// Shared vocabulary, below every layer.
pub mod error;
pub mod escape;
pub mod frames;
pub mod hash;
pub mod kinds;
pub mod outfile;
pub mod units;
// Layers, each using only those above it in this list.
pub mod analysis;
pub mod export;
pub mod flame;
pub mod gate;
pub mod live;
pub mod log;
pub mod pack;
pub mod render;
pub mod report;
#[cfg(test)]
pub(crate) mod testlog;

pub use error::{Error, Result};
pub use report::{Options, Progress, Report, Stage, analyze, analyze_bytes};
