//! The CI leak gate's judgement (`memtrace check`): which leaks of which
//! processes count, and which rules they break.
//!
//! ## Steps, for each process of the run
//! 1. **Selection.** A process is judged when it ended by `exit` or `_exit`
//!    and its heap calls were seen. One replaced by exec lost its heap to the
//!    exec (nothing leaked); one killed by a signal or crashed never reached
//!    its exit (its live blocks are not leaks in any useful sense, as with
//!    LeakSanitizer, and the crash is the command's failure to report). With
//!    `select` globs, only processes whose executable (full path or file
//!    name) matches one are judged. The others are listed as skipped, with
//!    the reason.
//! 2. **Leaks.** The heap leaks, plus the mmap leaks when
//!    [`Rules::mmap_leaks`] is set. A heap leak whose blocks were classified
//!    by reachability ([`crate::analysis::reach`]) counts only its blocks of the chosen
//!    kinds ([`Rules::counted_kinds`]: by default definitely and indirectly
//!    lost, as valgrind's `--errors-for-leak-kinds`); one that was not
//!    classified (no scan: `memtrace run --no-reachability`, a plain
//!    `LD_PRELOAD` log, a failed scan) counts whole, since it could be lost.
//! 3. **Suppressions.** Each leak goes to the first suppression (in file
//!    order, files in the order given) that matches its stack; for a
//!    classified heap leak, each kind's blocks go to the first one that
//!    matches the stack and applies to that kind (valgrind's
//!    `match-leak-kinds:`, see [`crate::gate::suppress`]), so a leak can be
//!    suppressed in part. A suppression
//!    with a byte limit (`max:` in memtrace's format) that matches more bytes
//!    than that in one process suppresses nothing there: its leaks count.
//! 4. **Baseline.** The leaks of the baseline run (their blocks of the
//!    chosen kinds, when classified), by [stack key](stack_key),
//!    summed over all its processes, form allowances (each grown by the
//!    tolerance); a leak of a judged process draws from its stack's allowance,
//!    and only what exceeds it counts (as "new" bytes and blocks).
//! 5. **Rules**, on what counts: total bytes and blocks per process, bytes and
//!    blocks per stack, the peak of live heap bytes (absolute, and against
//!    the baseline's peak for the same program, with its own tolerance).
//!    When no leak limit is set at all, any leak fails (`max_leaked_bytes =
//!    0`): the gate's default is "no leaks".
//!
//! ## Modules
//! Suppression files are read by [`suppress`]; `rules` holds the [`Rules`]
//! and their [`Tolerance`]; `baseline` the [`Baseline`]; `verdict` the
//! verdict's types and the [`Gate`]'s inputs; `judgement` the steps above
//! ([`evaluate`]); this module the stack names they share. Uses
//! `crate::report` and the layers below it; the renderers of the verdict
//! are in `crate::render::verdict`.

mod baseline;
mod judgement;
mod rules;
pub mod suppress;
mod verdict;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;

use crate::report::Site;

pub use self::baseline::Baseline;
pub use self::judgement::evaluate;
pub use self::rules::{DEFAULT_LEAK_KINDS, Rules, Tolerance};
pub use self::verdict::{Failure, Gate, Leak, ProcessVerdict, Skip, Status, Usage, Verdict};

/// Suppressions applied unless turned off: allocations that language
/// runtimes make once and keep until exit by design (valgrind calls them
/// "still reachable"), which every program of that language would otherwise
/// report. Like valgrind's `default.supp`.
pub const DEFAULT_SUPPRESSIONS: &str = "\
# memtrace's built-in suppressions (turn off with --no-default-suppressions).
# Rust: the main thread's stack-overflow guard info, kept in a global map for the process's life.
suppress rust-std-main-thread-info fun:std::sys::*stack_overflow::*
# Rust: the main thread's `Thread` handle, created on first use and never dropped.
suppress rust-std-main-thread-handle fun:std::thread::current::init_current
";

pub use crate::frames::{above_main, file_name, stack_key};

fn site_key(kind: &str, s: &Site) -> String {
    crate::frames::key_of(kind, &s.stack)
}

/// A program's name for matching runs across builds: the executable's file
/// name, without the `-<16 hex digits>` cargo appends to test binaries.
pub fn program_name(exe: &str) -> String {
    let name = file_name(exe);
    if let Some((stem, hash)) = name.rsplit_once('-')
        && hash.len() == 16
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return stem.to_owned();
    }
    name.to_owned()
}

/// Sites merged by their stack ([`crate::frames::merge_key`]), largest first.
fn merged(sites: &[Site]) -> Vec<Site> {
    let mut index: HashMap<Vec<crate::frames::FrameKey>, usize> = HashMap::new();
    let mut out: Vec<Site> = Vec::with_capacity(sites.len());
    for s in sites {
        // Unrecorded stacks are never merged: nothing says they are the same.
        let key = crate::frames::merge_key(&s.stack);
        match key.as_ref().and_then(|k| index.get(k)) {
            Some(&i) => {
                out[i].bytes = out[i].bytes.saturating_add(s.bytes);
                out[i].count = out[i].count.saturating_add(s.count);
                match (&mut out[i].kinds, s.kinds) {
                    (Some(a), Some(b)) => {
                        for (x, y) in a.iter_mut().zip(b) {
                            x.0 = x.0.saturating_add(y.0);
                            x.1 = x.1.saturating_add(y.1);
                        }
                    }
                    // Part classified, part not: not classified.
                    (k, _) => *k = None,
                }
            }
            None => {
                if let Some(key) = key {
                    index.insert(key, out.len());
                }
                out.push(s.clone());
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    out
}

/// The name of a leak's stack in messages ([`crate::frames::name`]).
pub fn where_(s: &Site) -> String {
    crate::frames::name(&s.stack)
}
