//! The general walk: one step at a time by the rule of each frame (the
//! previous walk's at the same depth, the cache's, or computed), handing
//! over to [`replay`] wherever the walk meets a state of the previous walk,
//! and recording the walk's steps in the thread's [`Recent`].

use core::ops::ControlFlow;

use memtrace_format::Cut;

use super::recent::{RECENT, Recent, Step};
use super::replay::{ReplayEnd, replay};
use super::rule::{Kind, Rule, StepRule};
use super::{Ctx, Regs, cache, cfi};

/// Steps after which a walk gives up (a corrupt or cyclic chain).
pub(super) const MAX_STEPS: usize = 4096;

/// The end of the first page, never mapped: a return address below it ends
/// the walk (see [`bad_pc`]).
pub(super) const FIRST_PAGE_END: u64 = 4096;

/// The largest frame believed: a CFA farther above sp means a corrupt stack.
const MAX_FRAME: u64 = 16 << 20;

/// Offset of `uc_mcontext.gregs` in the kernel's x86_64 `ucontext_t`
/// (after `uc_flags`, `uc_link` and the 24-byte `uc_stack`).
const UC_GREGS: u64 = 40;
/// Indexes of rbp, rsp and rip in `gregs` (`REG_RBP`, `REG_RSP`, `REG_RIP`
/// in glibc's <sys/ucontext.h>).
const REG_RBP: u64 = 10;
const REG_RSP: u64 = 15;
const REG_RIP: u64 = 16;

/// A walk in progress: the current state and what [`walk`] tracks.
pub(super) struct Walk {
    pub(super) pc: u64,
    pub(super) sp: u64,
    pub(super) bp: u64,
    /// Whether `pc` is exact (not a return address).
    pub(super) exact: bool,
    /// Frames in `out`.
    pub(super) n: usize,
    /// Steps taken (= the depth of the current state).
    pub(super) d: usize,
    /// The first step of the previous walk whose sp is not below ours.
    pub(super) j: usize,
    /// Whether to look for the current state in the previous walk.
    pub(super) try_replay: bool,
    /// Whether the steps so far are those of the previous walk (see
    /// [`same_step`]), which are then not copied into the current buffer
    /// (the previous walk's buffer stays the record).
    pub(super) same: bool,
    /// Whether the walk has ended already.
    pub(super) done: bool,
    /// Why the walk stopped before the thread's entry (see [`Recent::cut`]):
    /// the limit until something else ends it.
    pub(super) cut: Option<Cut>,
}

impl Walk {
    /// A walk from the registers at the point of capture, before any step.
    pub(super) fn start(regs: Regs) -> Walk {
        Walk {
            pc: regs.pc,
            sp: regs.sp,
            bp: regs.bp,
            // The first PC is exact; later ones are return addresses (look up pc - 1).
            exact: true,
            n: 0,
            d: 0,
            j: 0,
            try_replay: true,
            same: true,
            done: false,
            cut: Some(Cut::Limit),
        }
    }

    /// A walk that has replayed `steps` steps of the previous walk from its
    /// start (in place), with `n` frames and `bp` as rbp; its pc and sp are
    /// still to be set.
    pub(super) fn replayed(steps: usize, n: usize, bp: u64) -> Walk {
        Walk {
            pc: 0,
            sp: 0,
            bp,
            exact: false,
            n,
            d: steps,
            j: steps,
            try_replay: true,
            same: true,
            done: false,
            cut: Some(Cut::Limit),
        }
    }

    /// Looks for the current state in the previous walk and, if it is there,
    /// replays from it (steps copied into `cur` unless this walk is still
    /// the previous one). `None`: not there, the caller takes the step the
    /// slow way; else whether the walk goes on.
    ///
    /// # Safety
    /// As for [`walk`].
    #[inline(always)]
    unsafe fn replay_here(
        &mut self,
        prev: &mut [Step],
        cur: &mut [Step; RECENT],
        out: &mut [u64],
    ) -> Option<ControlFlow<()>> {
        // Along a walk sp grows (except across a signal frame, where a
        // replay may then be missed, never be wrong).
        while self.j < prev.len() && prev[self.j].sp < self.sp {
            self.j += 1;
        }
        // rbp is not compared: the replay checks it where a step uses it.
        let e = prev.get(self.j)?;
        if !(e.sp == self.sp && e.pc == self.pc && e.rule.exact() == self.exact) {
            return None;
        }
        let (d, j) = (self.d, self.j);
        let max = (MAX_STEPS - d).min(RECENT.saturating_sub(d));
        // SAFETY: prev[j] is the current state but perhaps rbp.
        let r = unsafe { replay(&mut prev[j..], out, self.n, max, self.bp) };
        // The replayed steps are this walk's too (already in place while
        // this walk is the previous one so far).
        if !(self.same && j == d) {
            if self.same {
                self.same = false;
                copy_steps(cur, 0, prev, 0, d);
            }
            copy_steps(cur, d, prev, j, r.steps);
        }
        self.d += r.steps;
        self.n = r.n;
        self.j += r.steps;
        Some(match r.end {
            ReplayEnd::Diverged(npc, nsp) => {
                // Memory differed after the last replayed step: this state
                // is new, go on the slow way from it.
                (self.pc, self.sp, self.bp, self.exact) = (npc, nsp, r.bp, false);
                if self.pc < FIRST_PAGE_END {
                    self.cut = bad_pc(self.pc);
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            ReplayEnd::Stopped => {
                // Stopped before the step at prev[j]: take it the slow way.
                if let Some(e) = prev.get(self.j) {
                    (self.pc, self.sp, self.bp) = (e.pc, e.sp, r.bp);
                    self.exact = e.rule.exact();
                }
                self.try_replay = false;
                ControlFlow::Continue(())
            }
            ReplayEnd::Ended(c) => {
                self.cut = c;
                ControlFlow::Break(())
            }
        })
    }

    /// The rule for the current state: the previous walk's at this depth if
    /// it stood at the same address, else the cache's, else computed (and
    /// cached).
    #[inline(always)]
    fn rule(&self, prev: &[Step], ctx: &mut Ctx, epoch: u32) -> Rule {
        let key = if self.exact {
            self.pc
        } else {
            self.pc.wrapping_sub(1)
        };
        match prev.get(self.d) {
            Some(e) if e.pc == self.pc && e.rule.exact() == self.exact => e.rule.rule(),
            _ => match cache::get(key, epoch) {
                Some(r) => r,
                None => {
                    let r = cfi::compute(key, ctx, epoch);
                    cache::put(key, r);
                    r
                }
            },
        }
    }

    /// Records the step that applies `rule` to the current state (in `cur`
    /// once this walk differs from the previous one) and its frame in
    /// `out`, unless it lies in this library (`self_start`, `self_len`).
    #[inline(always)]
    fn record(
        &mut self,
        rule: Rule,
        prev: &[Step],
        cur: &mut [Step; RECENT],
        out: &mut [u64],
        (self_start, self_len): (u64, u64),
    ) {
        let hidden = self.pc.wrapping_sub(self_start) < self_len;
        let step = Step {
            pc: self.pc,
            sp: self.sp,
            bp: self.bp,
            rule: StepRule::new(rule, self.exact, hidden),
        };
        let d = self.d;
        if self.same && !prev.get(d).is_some_and(|e| same_step(e, &step)) {
            self.same = false;
            copy_steps(cur, 0, prev, 0, d);
        }
        if !self.same
            && let Some(s) = cur.get_mut(d)
        {
            *s = step;
        }
        self.d += 1;
        if !hidden {
            out[self.n] = step.rule.frame(self.pc);
            self.n += 1;
        }
    }

    /// Applies `rule` to the current state: the caller's state, or the end
    /// of the walk (with [`Walk::cut`] set).
    ///
    /// # Safety
    /// As for [`walk`]: the state is that of a live frame of this thread.
    #[inline(always)]
    unsafe fn apply(&mut self, rule: Rule) -> ControlFlow<()> {
        match rule.kind() {
            Kind::Normal => {
                let (sp, bp) = (self.sp, self.bp);
                let cfa =
                    (if rule.cfa_rbp() { bp } else { sp }).wrapping_add(rule.cfa_off() as u64);
                // The CFA lies above the current frame; anything else is corrupt.
                if cfa <= sp || cfa - sp > MAX_FRAME || cfa % 8 != 0 {
                    self.cut = Some(Cut::BadFrame);
                    return ControlFlow::Break(());
                }
                // SAFETY: cfa-8 lies between the current sp and the caller's
                // frame on this thread's stack, per the object's CFI.
                let ra = unsafe { ((cfa - 8) as *const u64).read() };
                if rule.rbp_saved() {
                    let at = cfa.wrapping_add(rule.rbp_off() as u64);
                    if at < sp || at >= cfa {
                        self.cut = Some(Cut::BadFrame);
                        return ControlFlow::Break(());
                    }
                    // SAFETY: the saved rbp slot lies in [sp, cfa), on this stack.
                    self.bp = unsafe { (at as *const u64).read() };
                }
                self.sp = cfa;
                self.pc = ra;
                self.exact = false;
            }
            Kind::Signal => {
                // sp points at the kernel's ucontext_t (the return address
                // __restore_rt was popped).
                let g = self.sp + UC_GREGS;
                // SAFETY: the kernel placed a ucontext_t at sp when it delivered
                // the signal whose trampoline frame this is.
                unsafe {
                    self.bp = ((g + REG_RBP * 8) as *const u64).read();
                    self.sp = ((g + REG_RSP * 8) as *const u64).read();
                    self.pc = ((g + REG_RIP * 8) as *const u64).read();
                }
                self.exact = true;
            }
            Kind::End => {
                self.cut = None;
                return ControlFlow::Break(());
            }
            Kind::NoRule => {
                self.cut = Some(Cut::NoCfi);
                return ControlFlow::Break(());
            }
        }
        if self.pc < FIRST_PAGE_END {
            self.cut = bad_pc(self.pc);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Records the finished walk in `recent` (whose previous walk was in
    /// buffer `pi`, `prev_len` steps long) and returns its number of frames.
    fn finish(
        self,
        recent: &mut Recent,
        pi: usize,
        prev_len: usize,
        epoch: u32,
        range: (u64, u64),
    ) -> usize {
        // Every state equal and as many steps: the same frames as last time.
        recent.repeated = self.same && self.d == prev_len && prev_len > 0 && prev_len < RECENT;
        if self.same {
            // This walk is the start of the previous one.
            recent.len[pi] = self.d.min(prev_len);
        } else {
            recent.len[pi ^ 1] = self.d.min(RECENT);
            recent.prev = pi ^ 1;
        }
        recent.epoch = epoch;
        recent.self_range = range;
        // The loop's own bounds (frames, steps) leave `cut` at the limit.
        recent.cut = self.cut;
        self.n
    }
}

/// The general walk, from the state `w` (whose steps so far are those of the
/// previous walk if `w.same`), then records it in `recent`.
///
/// # Safety
/// As for [`capture_from`](super::capture_from): the state describes a live
/// frame of the calling thread (or one reached from it by unwinding).
#[inline(never)]
pub(super) unsafe fn walk(
    mut w: Walk,
    out: &mut [u64],
    ctx: &mut Ctx,
    recent: &mut Recent,
    prev_len: usize,
    epoch: u32,
    range: (u64, u64),
) -> usize {
    let pi = recent.prev & 1;
    let [b0, b1] = &mut recent.steps;
    let (prev, cur): (&mut [Step], &mut [Step; RECENT]) = if pi == 0 {
        (&mut b0[..prev_len], b1)
    } else {
        (&mut b1[..prev_len], b0)
    };
    while !w.done && w.n < out.len() && w.d < MAX_STEPS {
        if w.try_replay {
            // SAFETY: w is the state of a walk from a live frame (the caller's guarantee).
            match unsafe { w.replay_here(prev, cur, out) } {
                Some(ControlFlow::Continue(())) => continue,
                Some(ControlFlow::Break(())) => break,
                None => {}
            }
        }
        w.try_replay = true;
        let rule = w.rule(prev, ctx, epoch);
        w.record(rule, prev, cur, out, range);
        // SAFETY: as above.
        if unsafe { w.apply(rule) }.is_break() {
            break;
        }
    }
    w.finish(recent, pi, prev_len, epoch, range)
}

/// How a walk that reached the address `pc` in the first page ends: a
/// return address of 0 ends the stack (as in libgcc); any other is not code.
#[inline]
pub(super) fn bad_pc(pc: u64) -> Option<Cut> {
    if pc == 0 { None } else { Some(Cut::BadFrame) }
}

/// Whether the recorded step `e` stands for the step `s` just taken: the
/// same address, sp, exactness and rule (so the same frame and the same next
/// sp and slots), and the same rbp if the rule computes the CFA from it. rbp
/// is not compared otherwise: a step that does not use it cannot tell it
/// apart (it is only carried, or reloaded from a slot that is read anyway).
#[inline(always)]
pub(super) fn same_step(e: &Step, s: &Step) -> bool {
    e.pc == s.pc && e.sp == s.sp && e.rule == s.rule && (e.bp == s.bp || !e.rule.cfa_rbp())
}

/// `to[at..at + k] = from[from_at..from_at + k]` (nothing if out of bounds).
#[inline]
fn copy_steps(to: &mut [Step], at: usize, from: &[Step], from_at: usize, k: usize) {
    if let (Some(to), Some(from)) = (to.get_mut(at..at + k), from.get(from_at..from_at + k)) {
        to.copy_from_slice(from);
    }
}

#[cfg(test)]
mod tests {
    use crate::unwind::init_cache;
    use crate::unwind::test_support::*;

    /// A capture is marked repeated only when it took the previous capture's
    /// very steps.
    #[test]
    fn repeated_only_for_the_same_walk() {
        init_cache();
        let mut c = ctx();
        let mut out = vec![0u64; 512];
        let repeated = || RECENT_FOR_TEST.with(|r| r.borrow().repeated());
        let mut prev = Vec::new();
        let mut seen = 0;
        for depth in [5u32, 5, 5, 6, 6, 5, 40, 40] {
            let n = deep(depth, &mut out, &mut c);
            let same = out[..n] == prev[..];
            assert!(
                !repeated() || same,
                "depth {depth}: repeated, yet other frames"
            );
            seen += repeated() as u32;
            prev = out[..n].to_vec();
        }
        // Unoptimised, the registers of this loop do not change rbp between
        // the calls, so every identical capture is a repeated walk. (With
        // optimisations rbp may hold a loop variable: equal frames, other
        // states, no repeat.)
        if cfg!(debug_assertions) {
            assert_eq!(seen, 4);
        }
    }
}
