//! The replay of the previous walk: from a state the thread's previous walk
//! went through, take its next steps again while memory agrees.
//!
//! Why this gives exactly the frames of a full walk is explained on
//! [`Recent`](super::Recent) and [`replay`]; the loop is the hot path of a
//! hot stack, a test, two loads and a compare per common step.

use memtrace_format::Cut;

use super::recent::Step;
use super::rule::{Kind, StepRule};

/// How a [`replay`] ended.
pub(super) enum ReplayEnd {
    /// Memory differed after the last step taken: the new state is (pc, sp,
    /// [`Replayed::bp`]; pc is a return address).
    Diverged(u64, u64),
    /// The walk stands at `seg[steps]` (`seg[0]` if no step was taken), not
    /// yet taken: the slow path takes it.
    Stopped,
    /// The last step taken ended the walk: at the outermost frame (None),
    /// or at one that cannot be unwound.
    Ended(Option<Cut>),
}

/// The outcome of [`replay`].
pub(super) struct Replayed {
    /// Steps taken.
    pub(super) steps: usize,
    /// The new number of frames in `out`.
    pub(super) n: usize,
    pub(super) end: ReplayEnd,
    /// rbp in the state the walk stands at.
    pub(super) bp: u64,
}

/// Replays the previous walk from `seg[0]`, whose pc, sp and exactness equal
/// the current state's (rbp `bp` may differ), writing frames to `out` from
/// index `n`, for at most `max` steps.
///
/// Each step is the one the slow path would take from the same state: same
/// rule (a function of the address and the epoch), so the same frame (or
/// none, inside this library), the same CFA when it is computed from sp, and
/// the same slot addresses, which were checked when the previous walk took
/// it. rbp enters a step only through a CFA computed from it: such a step is
/// replayed only if rbp equals the recorded one (else the slow path takes it
/// with the real rbp). Otherwise rbp is just carried, or reloaded from its
/// slot, which is read here as in a full walk, so a state that differs from
/// the record only in rbp takes the same steps. Only the reads of the slots
/// can differ; the return address is compared with the previous walk's next
/// state.
///
/// `seg` is left as it was; it is only marked for the duration of the loop
/// (see [`StepRule::marked_last`]).
///
/// # Safety
/// `seg` is a stretch of the thread's previous walk (in this epoch, with
/// these bounds of this library) and `seg[0]` the current state of a walk
/// from a live frame of the calling thread, but perhaps in rbp.
#[inline(always)]
pub(super) unsafe fn replay(
    seg: &mut [Step],
    out: &mut [u64],
    n: usize,
    max: usize,
    bp: u64,
) -> Replayed {
    // Steps allowed (at most one frame each), and those among them with a
    // known next state (the previous walk went on after them).
    let lim = max.min(out.len().saturating_sub(n));
    let k = lim.min(seg.len().saturating_sub(1));
    let Some(last) = seg.get_mut(k) else {
        return Replayed {
            steps: 0,
            n,
            end: ReplayEnd::Stopped,
            bp,
        };
    };
    if lim == 0 {
        return Replayed {
            steps: 0,
            n,
            end: ReplayEnd::Stopped,
            bp,
        };
    }
    // The loop needs no bound check in the common step: the step at k is
    // marked so that it never is one.
    let rule = last.rule;
    last.rule = rule.marked_last();
    // SAFETY: seg[k] (k < seg.len()) is the only marked step (no rule has
    // the mark); n < out.len() (lim > 0) and out[n..] holds lim >= k frames,
    // k + 1 if k < lim; the caller's guarantees for the rest.
    let r = unsafe { replay_marked(seg, rule, out.as_mut_ptr().add(n), n, k < lim, bp) };
    // SAFETY: k < seg.len() (checked above).
    unsafe { seg.get_unchecked_mut(k).rule = rule };
    r
}

// One piece: the hot loop of the replay (see "One piece" in the doc below):
// its raw-pointer invariants and SAFETY arguments hold across the whole loop.
/// The loop of [`replay`]: exactly one step of `seg`, `seg[k]`, is marked
/// (see [`StepRule::last`]; its unmarked rule is `last_rule`); `o0` is
/// `out[n]`, with room for k frames (k + 1 if `room`).
///
/// One piece, longer than most functions here: it is the hot loop, written
/// with raw pointers and its two common cases spelled out first, so that a
/// common step is a test, two loads and a compare, with no call and no bound
/// check.
///
/// # Safety
/// As stated, and as for [`replay`].
#[inline(always)]
unsafe fn replay_marked(
    seg: &[Step],
    last_rule: StepRule,
    o0: *mut u64,
    n: usize,
    room: bool,
    mut bp: u64,
) -> Replayed {
    let base = seg.as_ptr();
    let mut e = base;
    let mut m = 0usize;
    // Raw pointers, for a short loop: `e` stays in seg[..=k] (only seg[k]
    // is marked, and the loop stops there) and `o0 + m` in o0[..=k] (at most one
    // frame per step); `nx`, the next step, is read only while e < seg[k].
    let done = |e: *const Step, m: usize, end: ReplayEnd, bp: u64| Replayed {
        // SAFETY: `e` stays within seg or one past its end (see above).
        steps: unsafe { e.offset_from(base) } as usize,
        n: n + m,
        end,
        bp,
    };
    // SAFETY: k < seg.len(), so seg is not empty.
    let mut pc = unsafe { (*base).pc };
    loop {
        // SAFETY: e <= seg[k], in seg.
        let r = unsafe { (*e).rule };
        if r.is_plain() {
            // The common step: a normal rule, CFA from sp, rbp untouched, a
            // return address, a frame (and not seg[k], so e + 1 is in seg).
            // SAFETY: e is not the marked seg[k], so e + 1 <= seg[k] is in seg.
            let nx = unsafe { &*e.add(1) };
            // SAFETY: fewer than k steps taken, so o0 + m < o0 + k.
            unsafe {
                *o0.add(m) = pc;
                m += 1;
            }
            // SAFETY: nx.sp is this step's CFA; the previous walk read the
            // same slot (cfa - 8, between sp and the caller's frame on this
            // thread's stack) from the same sp after checking the CFA.
            let ra = unsafe { ((nx.sp - 8) as *const u64).read() };
            e = nx;
            if ra != nx.pc {
                return done(e, m, ReplayEnd::Diverged(ra, nx.sp), bp);
            }
            pc = ra;
            continue;
        }
        if r.is_plain_but_rbp_saved() {
            // The same, but rbp is restored from its slot.
            // SAFETY: as above.
            let nx = unsafe { &*e.add(1) };
            // SAFETY: as above.
            unsafe {
                *o0.add(m) = pc;
                m += 1;
            }
            // SAFETY: as above; the saved-rbp slot is the one the previous
            // walk read from the same CFA, checked to lie in [sp, cfa).
            let ra = unsafe { ((nx.sp - 8) as *const u64).read() };
            // SAFETY: as above.
            bp = unsafe { (nx.sp.wrapping_add(r.rbp_off() as u64) as *const u64).read() };
            e = nx;
            if ra != nx.pc {
                return done(e, m, ReplayEnd::Diverged(ra, nx.sp), bp);
            }
            pc = ra;
            continue;
        }
        if r.last() {
            // e == last (the only marked step).
            break;
        }
        // SAFETY: as above.
        let nx = unsafe { &*e.add(1) };
        // SAFETY: e is in seg.
        let eb = unsafe { (*e).bp };
        if r.kind() != Kind::Normal || (r.cfa_rbp() && bp != eb) {
            // A signal frame, or a CFA from an rbp other than the recorded
            // one: the slow path takes it.
            return done(e, m, ReplayEnd::Stopped, bp);
        }
        if !r.hidden() {
            // SAFETY: as above.
            unsafe {
                *o0.add(m) = r.frame(pc);
                m += 1;
            }
        }
        // SAFETY: as above (a CFA from rbp: the recorded rbp, so the same CFA).
        let ra = unsafe { ((nx.sp - 8) as *const u64).read() };
        if r.rbp_saved() {
            // SAFETY: as above.
            bp = unsafe { (nx.sp.wrapping_add(r.rbp_off() as u64) as *const u64).read() };
        }
        e = nx;
        if ra != nx.pc {
            return done(e, m, ReplayEnd::Diverged(ra, nx.sp), bp);
        }
        pc = ra;
    }
    // SAFETY: at seg[k], k steps taken: m <= k, so o0 + m is within out
    // (or one past it), and has room for a frame if `room`.
    match unsafe { end_at_last(last_rule, room, pc, o0.add(m)) } {
        Some((frames, end)) => {
            // SAFETY: e + 1 is one past seg[k], within or one past seg.
            let next = unsafe { e.add(1) };
            done(next, m + frames, ReplayEnd::Ended(end), bp)
        }
        None => done(e, m, ReplayEnd::Stopped, bp),
    }
}

/// The end of [`replay_marked`], standing at the marked step, whose rule is
/// `r`, from `pc`. If the previous walk ended there without reading anything
/// (the outermost frame, or no rule) and there is `room`, this walk ends
/// too: its frame (unless hidden) is written at `o`, and the result is the
/// number of frames written and why the walk ended. `None`: the walk stops
/// before that step (the slow path takes it).
///
/// # Safety
/// If `room`, `o` is valid for writing one `u64`.
#[inline(always)]
unsafe fn end_at_last(
    r: StepRule,
    room: bool,
    pc: u64,
    o: *mut u64,
) -> Option<(usize, Option<Cut>)> {
    let end = match r.kind() {
        Kind::End => None,
        Kind::NoRule => Some(Cut::NoCfi),
        Kind::Normal | Kind::Signal => return None,
    };
    if !room {
        return None;
    }
    if r.hidden() {
        return Some((0, end));
    }
    // SAFETY: `room` (the caller's guarantee).
    unsafe { *o = r.frame(pc) };
    Some((1, end))
}

#[cfg(test)]
mod tests {
    use crate::unwind::init_cache;
    use crate::unwind::test_support::*;

    /// A frame popped and re-pushed at the same address with another return
    /// address (another caller) is noticed: the replay of the previous walk
    /// stops there, and every capture equals the reference. Captures from
    /// other depths (a shorter or longer inner part) do too.
    #[test]
    fn replay_follows_changed_callers() {
        init_cache();
        let mut c = ctx();
        let a = check_against_reference("a", via_a, &mut c);
        let steps_a = last_steps(64);
        let b = check_against_reference("b", via_b, &mut c);
        let steps_b = last_steps(64);
        assert_ne!(a, b, "the callers differ");
        // The inner steps are identical (so the walk of b started as a
        // replay of a's) up to a step at the same address with another
        // return address, which the replay had to notice.
        let i = steps_a
            .iter()
            .zip(&steps_b)
            .take_while(|(x, y)| x == y)
            .count();
        assert!(
            i > 0 && i < steps_a.len().min(steps_b.len()) && steps_a[i].0 == steps_b[i].0,
            "the layouts differ, the test proves less: {steps_a:x?} {steps_b:x?}"
        );
        assert!(!RECENT_FOR_TEST.with(|r| r.borrow().repeated()));
        for (i, depth) in [0u32, 7, 2, 7, 7, 0, 30, 1].into_iter().enumerate() {
            let what = format!("round {i} depth {depth}");
            check_against_reference(&what, |o, c, t| both(depth, o, c, t), &mut c);
            let what = format!("round {i} a/b");
            let f = if i % 2 == 0 { via_a } else { via_b };
            check_against_reference(&what, f, &mut c);
        }
    }

    /// A state that differs from the previous walk's only in rbp, which is
    /// restored from a slot before any step uses it, replays the whole
    /// previous walk (through the restore, where the value read differs
    /// from the recorded one): the same frames, marked repeated.
    #[test]
    fn replay_carries_a_dead_rbp() {
        init_cache();
        let mut c = ctx();
        let mut first = None;
        for (i, v) in [0u64, 1, 0xdead_beef, u64::MAX, 0x7fff_0000_1000]
            .into_iter()
            .enumerate()
        {
            let what = format!("round {i} rbp {v:#x}");
            let ours = through(&what, memtrace_test_with_rbp, v, &mut c);
            let first = first.get_or_insert_with(|| ours.clone());
            assert_eq!(&ours, first, "{what}: other frames");
            // Only `probe` and the frames below it differ from the first
            // round's states, in rbp.
            let repeated = RECENT_FOR_TEST.with(|r| r.borrow().repeated());
            assert!(i == 0 || repeated, "{what}: not replayed");
        }
        assert_unmarked();
    }

    /// A step whose CFA is computed from rbp is replayed only with the
    /// recorded rbp: from the same pc and sp but another rbp the walk
    /// continues elsewhere (here it ends, at a fake frame whose return
    /// address is 0), exactly as the reference unwinder does.
    #[test]
    fn replay_checks_an_rbp_it_uses() {
        init_cache();
        let mut c = ctx();
        // A fake frame above the trampoline's (within reach, aligned):
        // saved rbp 0, return address 0.
        let fake = std::hint::black_box([0u64; 2]);
        let fake = fake.as_ptr() as u64;
        let mut real = Vec::new();
        for (i, p) in [0, fake, 0, 0, fake, fake, 0].into_iter().enumerate() {
            let what = format!("round {i} {}", if p == 0 { "real" } else { "fake" });
            let ours = through(&what, memtrace_test_cfa_rbp, p, &mut c);
            if i == 0 {
                real = ours;
            } else if p == 0 {
                assert_eq!(ours, real, "{what}");
            } else {
                assert!(
                    ours.len() < real.len(),
                    "{what}: went on past the fake frame"
                );
                assert_eq!(ours[..], real[..ours.len()], "{what}");
            }
        }
        assert_unmarked();
    }
}
