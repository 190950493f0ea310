//! The thread's record of its previous walk ([`Recent`]), step by step.

use memtrace_format::Cut;

use super::rule::StepRule;

/// Steps of the previous walk kept per thread (deeper steps are not kept).
pub(super) const RECENT: usize = memtrace_format::MAX_FRAMES + 8;

/// One step of a walk: the registers it started from and the rule applied to them.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(super) struct Step {
    pub(super) pc: u64,
    pub(super) sp: u64,
    /// rbp, relied on only if the rule computes the CFA from it (a step
    /// that does not use rbp may be kept from an earlier walk whose rbp
    /// differed: see [`same_step`](super::walk::same_step)).
    pub(super) bp: u64,
    /// The rule, with the step's flags (whether `pc` is exact, hidden).
    pub(super) rule: StepRule,
}

/// The thread's previous walk, step by step, and the buffer for the current one.
///
/// Consecutive stacks of a thread share most frames (the callers of the
/// allocating function), so the walk uses it twice:
/// - **Rules by depth**: a frame whose address equals the one at the same
///   depth last time takes that step's rule with one load from a
///   thread-private line, instead of a hash and a probe of the global cache.
/// - **Replay**: when the walk reaches a state (pc, sp, exactness) equal to
///   a step of the previous walk, the next step is fully determined except
///   for the memory it reads: the same rule gives the same CFA (if it is
///   computed from rbp, only for the recorded rbp, which is then compared),
///   so the same return-address (and saved-rbp) slots. The replay loop still
///   reads those slots and compares each return address with the previous
///   walk's next state; while they are equal the states are equal except
///   perhaps in rbp, which no replayed step uses without comparing it, so the
///   frames are exactly the ones a full walk would find (a popped and
///   re-pushed frame with another return address differs right there, and
///   the walk goes on the slow way). It only saves the rule lookups and
///   bounds checks, not a single read. A walk that replays the whole previous
///   one leaves the record as it is (no copy).
pub struct Recent {
    /// Two walks: the previous one (`prev`) and the one being recorded.
    pub(super) steps: [[Step; RECENT]; 2],
    /// Steps recorded in each buffer.
    pub(super) len: [usize; 2],
    /// Which buffer holds the previous walk.
    pub(super) prev: usize,
    /// The module epoch of the previous walk (0: none; EPOCH starts at 1).
    pub(super) epoch: u32,
    /// This library's bounds during the previous walk (which steps were hidden).
    pub(super) self_range: (u64, u64),
    /// Whether the last walk took exactly the steps of the one before it.
    pub(super) repeated: bool,
    /// Why the last walk stopped before the thread's entry, if it did.
    pub(super) cut: Option<Cut>,
}

impl Recent {
    /// An empty record (all-zero memory is one too).
    pub const fn new() -> Recent {
        const Z: Step = Step {
            pc: 0,
            sp: 0,
            bp: 0,
            rule: StepRule::ZERO,
        };
        Recent {
            steps: [[Z; RECENT]; 2],
            len: [0; 2],
            prev: 0,
            epoch: 0,
            self_range: (0, 0),
            repeated: false,
            cut: None,
        }
    }

    /// Whether the last capture took exactly the same steps as the one
    /// before it on this record, so returned the same frames (same epoch,
    /// every state equal, the same number of steps).
    pub fn repeated(&self) -> bool {
        self.repeated
    }

    /// Why the last capture on this record stopped before the thread's
    /// entry, if it did: a frame without unwind information or with a rule
    /// the unwinder cannot evaluate, a bad return address or CFA, or the
    /// frame or step limit. A walk that reaches the outermost frame (return
    /// address undefined in its CFI, as in `_start` and a new thread's
    /// `clone`) or a return address of 0 (libgcc's end of stack) is whole.
    pub fn cut(&self) -> Option<Cut> {
        self.cut
    }
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new()
    }
}
