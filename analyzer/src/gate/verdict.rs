//! The gate's verdict and its inputs: what became of each leak ([`Status`],
//! [`Leak`]), of each process ([`ProcessVerdict`], [`Skip`], [`Failure`]),
//! of each suppression ([`Usage`]), of the run ([`Verdict`]), and what the
//! gate is given ([`Gate`]). Uses [`super::rules`], [`super::baseline`],
//! [`super::suppress`] and `crate::report`.

use super::baseline::Baseline;
use super::rules::Rules;
use super::suppress::{Suppression, SuppressionFile};
use crate::kinds::ByKind;
use crate::report::{Ended, Report, Site};

/// What became of one leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It counts against the rules (wholly, or what exceeds the baseline).
    Counted,
    /// Matched by the suppression with this index in [`Verdict::suppressions`].
    Suppressed(usize),
    /// Within the baseline's allowance for its stack.
    Baseline,
}

/// One leaked stack of a judged process.
#[derive(Clone, Debug)]
pub struct Leak {
    /// `"heap"` or `"mmap"`.
    pub kind: &'static str,
    /// The leak's blocks, merged over the stacks that symbolize the same (a
    /// call site the compiler duplicated records several stacks). For a
    /// classified heap leak, only its blocks of the kinds that count and
    /// share this status: `site.kinds` says which (a leak suppressed for some
    /// kinds only is two `Leak`s).
    pub site: Site,
    pub status: Status,
    /// What counts: all of the site's bytes and blocks, or what exceeds the
    /// baseline; 0 unless counted.
    pub new_bytes: u64,
    pub new_count: u64,
}

/// Why a process was not judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Its image was replaced by exec: its heap went with it.
    Exec,
    /// It never reached its exit (killed, crashed), or its log ends early.
    Abnormal,
    /// Its `malloc` was not the preload's: its heap was not seen.
    NotTraced,
    /// Its executable matches none of the selection's globs.
    NotSelected,
}

impl Skip {
    /// Why, in a few words.
    pub fn reason(&self, r: &Report) -> String {
        match self {
            Skip::Exec => "replaced by exec (its heap went with it)".into(),
            Skip::Abnormal if r.process.ended == Ended::Running => {
                "still running (its log is still being written): leaks not judged".into()
            }
            Skip::Abnormal => match r.process.signal {
                Some(sig) => format!("killed by signal {sig} before its exit: leaks not judged"),
                None => "did not reach its exit (killed or crashed): leaks not judged".into(),
            },
            Skip::NotTraced => "its malloc is not the preload's: its heap was not seen".into(),
            Skip::NotSelected => "not selected by --exe".into(),
        }
    }
}

/// A broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The rule's option name, e.g. `max-leaked-bytes`.
    pub rule: &'static str,
    pub message: String,
}

/// The judgement of one process.
#[derive(Clone, Debug)]
pub struct ProcessVerdict<'a> {
    pub report: &'a Report,
    pub skipped: Option<Skip>,
    /// Leaks of the kinds that count, largest first (by new bytes, then bytes).
    pub leaks: Vec<Leak>,
    pub counted_bytes: u64,
    pub counted_blocks: u64,
    /// Bytes and blocks of the classified heap leaks of each kind that does
    /// not count (order of [`Kind::ALL`](crate::analysis::reach::Kind::ALL); zeros for the kinds that count).
    pub not_counted: ByKind,
    /// The baseline's peak for this program, if it has one.
    pub baseline_peak: Option<u64>,
    pub failures: Vec<Failure>,
    /// Things worth saying that are not failures themselves.
    pub notes: Vec<String>,
}

impl ProcessVerdict<'_> {
    /// Judged, and no rule broken.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// How much one suppression matched, over all processes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub stacks: u64,
    pub blocks: u64,
    pub bytes: u64,
    /// Processes where it matched more than its byte limit.
    pub over_limit: u64,
}

/// The gate's judgement of a run.
#[derive(Clone, Debug)]
pub struct Verdict<'a> {
    pub processes: Vec<ProcessVerdict<'a>>,
    /// Processes of the run without a log (not judged), with the reason.
    pub untraced: Vec<crate::analysis::lineage::Untraced>,
    /// Every suppression, in matching order.
    pub suppressions: Vec<&'a Suppression>,
    /// Parallel to `suppressions`.
    pub usage: Vec<Usage>,
    pub rules: Rules,
    pub baseline: Option<&'a Baseline>,
}

impl Verdict<'_> {
    /// No judged process broke a rule.
    pub fn passed(&self) -> bool {
        self.processes.iter().all(ProcessVerdict::passed)
    }

    /// Judged processes.
    pub fn judged(&self) -> usize {
        self.processes
            .iter()
            .filter(|p| p.skipped.is_none())
            .count()
    }
}

/// What the gate is given besides the reports.
#[derive(Clone, Copy, Debug)]
pub struct Gate<'a> {
    pub rules: &'a Rules,
    pub suppressions: &'a [SuppressionFile],
    pub baseline: Option<&'a Baseline>,
    /// Globs on the executable: only matching processes are judged (empty: all).
    pub select: &'a [String],
}
