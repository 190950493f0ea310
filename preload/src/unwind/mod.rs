//! Stack capture: a DWARF-CFI unwinder for x86_64 with a global rule cache.
//!
//! Debian's libc and libstdc++ are built without frame pointers, so walking
//! `rbp` yields two frames. Instead each frame is unwound by the call frame
//! information in `.eh_frame`: for a program counter we find the object with
//! `_dl_find_object` (lock-free, async-signal-safe), its FDE through
//! `.eh_frame_hdr`'s binary search table, and evaluate the CFA program with
//! gimli into a fixed-size context (no allocation). The result is reduced to
//! a compact rule (CFA = rsp|rbp + offset, return address at CFA-8, rbp saved
//! at CFA+k or unchanged) and cached by address in a global lock-free table,
//! so a hot stack costs one table probe and two loads per frame.
//!
//! Signal frames (glibc's `__restore_rt`, marked 'S' in its CIE) are unwound
//! through the kernel's `ucontext_t`. Anything the compact rule cannot express
//! (a CFA computed by a DWARF expression) ends the walk: the stack is
//! truncated there, never wrong.
//!
//! Cache entries carry the module epoch; `dlclose` bumps it, invalidating them.
//!
//! ## Entry points
//! - [`init_self`] and [`init_cache`], once at start-up: this library's
//!   bounds (its frames are not reported) and the rule cache's mapping.
//! - [`current_regs`], then [`capture_from`]: the stack of the caller, into
//!   a fixed buffer, with the thread's [`Recent`] and [`Ctx`].
//! - [`verify()`], every [`VERIFY_EVERY`]-th stack: the same stack by libgcc.
//! - [`EPOCH`], bumped by `dlclose` (`modules.rs`).
//!
//! ## What it owns
//! The rule cache (1 MiB, mapped once, never unmapped), the module epoch,
//! this library's bounds and the verification interval: process-wide
//! atomics. The per-thread state (the previous walk in [`Recent`], gimli's
//! scratch in [`Ctx`]) lives in the thread's block (`thread.rs`) and is
//! lent to each capture.
//!
//! ## Constraints (everything [`capture_from`] reaches)
//! - **No allocation**: gimli evaluates into fixed-size storage ([`Store`]);
//!   the cache is one raw `mmap` made at start-up; frames go into the
//!   caller's buffer. A unit test counts allocations during captures.
//! - **No locks**: the cache is probed and filled with atomic loads and
//!   stores (a torn entry is seen as a miss); objects are found with
//!   `_dl_find_object`, lock-free and async-signal-safe.
//! - **No panics**: no formatting; slices are read with `get`, or indexed
//!   only below a bound the loop has just checked (the crate aborts on a
//!   panic, so one would end the program).
//! - **Reads only the stack and CFI**: a slot is read only once the CFA is
//!   checked to lie above the frame (at most 16 MiB, aligned), the CFI only
//!   within the segment of its object that holds it.
//!
//! It may use `sys` (raw pages, `_dl_find_object`), gimli's read-only CFI
//! parser, and `modules::note_object` on a cache miss. The cross-check in
//! [`verify()`] is off by default and calls libgcc, which keeps no such promises.
//!
//! ## Modules
//! - `rule`: the packed rule word and a recorded step's flags, typed.
//! - `cache`: the global rule cache.
//! - `cfi`: the slow path, a rule from `.eh_frame` with gimli.
//! - `recent`: the thread's record of its previous walk.
//! - `walk`: the general walk, step by step.
//! - `replay`: the replay of the previous walk's steps while memory agrees.
//! - `verify`: the cross-check against libgcc (`MEMTRACE_VERIFY_UNWIND`).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gimli::{Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindTableRow};

mod cache;
mod cfi;
mod recent;
mod replay;
mod rule;
#[cfg(test)]
mod test_support;
mod verify;
mod walk;

pub use cache::init_cache;
pub use recent::Recent;
pub use verify::{VERIFY_EVERY, verify};

use recent::RECENT;
use replay::{ReplayEnd, replay};
use walk::{FIRST_PAGE_END, MAX_STEPS, Walk, bad_pc, walk};

/// Bumped by `dlclose`: cache entries of an older epoch are stale.
pub static EPOCH: AtomicU32 = AtomicU32::new(1);

/// Fixed-size gimli storage: no allocation while evaluating CFI.
pub struct Store;
impl UnwindContextStorage<usize> for Store {
    type Rules = [(Register, RegisterRule<usize>); 24];
    type Stack = [UnwindTableRow<usize, Self>; 4];
}

/// Per-thread scratch for the slow path.
pub type Ctx = UnwindContext<usize, Store>;

/// Registers at the point of capture.
#[derive(Clone, Copy)]
pub struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Reads the current registers. Always inlined into the caller, whose frame
/// becomes the first to unwind.
#[inline(always)]
pub fn current_regs() -> Regs {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads rip (via lea), rsp and rbp into registers; no memory is touched.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        );
    }
    Regs { pc, sp, bp }
}

/// Bounds of this library's own code: frames inside it are not reported.
static SELF_START: AtomicU64 = AtomicU64::new(0);
static SELF_END: AtomicU64 = AtomicU64::new(0);

/// Finds this library's mapping; call once at start-up.
pub fn init_self() {
    if let Some(obj) = crate::sys::DlFindObject::find(init_self as *const () as usize) {
        SELF_START.store(obj.map_start as u64, Ordering::Relaxed);
        SELF_END.store(obj.map_end as u64, Ordering::Relaxed);
    }
}

/// Unwinds from `regs` into `out`, innermost first, skipping frames inside
/// this library. Returns the number of frames. Frames are return addresses,
/// except a frame interrupted by a signal, which is stored as its exact PC + 1
/// so that consumers can uniformly look up `address - 1`.
///
/// # Safety
/// `regs` must describe a live frame of the calling thread (from
/// [`current_regs`] in a caller that is still on the stack).
#[inline(never)]
pub unsafe fn capture_from(
    regs: Regs,
    out: &mut [u64],
    ctx: &mut Ctx,
    recent: &mut Recent,
) -> usize {
    let epoch = EPOCH.load(Ordering::Acquire);
    let self_start = SELF_START.load(Ordering::Relaxed);
    let self_len = SELF_END.load(Ordering::Relaxed).wrapping_sub(self_start);
    let pi = recent.prev & 1;
    // Rules of an older epoch may be stale: forget that walk.
    let prev_len = if recent.epoch == epoch && recent.self_range == (self_start, self_len) {
        recent.len[pi].min(RECENT)
    } else {
        0
    };
    // The common case, a hot stack: the previous walk started from this very
    // state (but perhaps rbp). Replay it here, without the general walk's
    // setup; `walk` goes on from wherever the replay stops.
    let prev = &mut recent.steps[pi][..prev_len];
    if let Some(e) = prev.first()
        && e.sp == regs.sp
        && e.pc == regs.pc
        && e.rule.exact()
    {
        // SAFETY: prev[0] is the current state but perhaps rbp (the caller's guarantee).
        let r = unsafe { replay(prev, out, 0, RECENT.min(MAX_STEPS), regs.bp) };
        // The replayed steps are those of the previous walk, in place.
        let mut w = Walk::replayed(r.steps, r.n, r.bp);
        match r.end {
            ReplayEnd::Ended(cut) => {
                // The walk is over. The record (same epoch and bounds) stays as it is.
                let pi = recent.prev & 1;
                let prev_len = recent.len[pi].min(RECENT);
                recent.repeated = r.steps == prev_len && prev_len < RECENT;
                recent.len[pi] = r.steps.min(prev_len);
                recent.cut = cut;
                return r.n;
            }
            ReplayEnd::Diverged(npc, nsp) => {
                (w.pc, w.sp) = (npc, nsp);
                w.done = npc < FIRST_PAGE_END;
                w.cut = bad_pc(npc);
            }
            ReplayEnd::Stopped => {
                if let Some(e) = prev.get(r.steps) {
                    (w.pc, w.sp) = (e.pc, e.sp);
                    w.exact = e.rule.exact();
                }
                w.try_replay = false;
            }
        }
        // The epoch and bounds are the record's (checked above): read them
        // again rather than keeping them in registers through the replay.
        let (epoch, range) = (recent.epoch, recent.self_range);
        let prev_len = recent.len[recent.prev & 1].min(RECENT);
        // SAFETY: w is the state of a walk from `regs`, a live frame (the caller's guarantee).
        return unsafe { walk(w, out, ctx, recent, prev_len, epoch, range) };
    }
    // SAFETY: the state at `regs`, a live frame (the caller's guarantee).
    unsafe {
        walk(
            Walk::start(regs),
            out,
            ctx,
            recent,
            prev_len,
            epoch,
            (self_start, self_len),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    /// Capturing a stack, cold and cached, never allocates.
    #[test]
    fn capture_does_not_allocate() {
        // (init_self is not called: in a test binary "this library" is the
        // test executable itself, whose frames must be kept.)
        init_cache();
        let mut c = ctx();
        let mut out = vec![0u64; 512];
        let before = ALLOCS.load(Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        let mut total = 0;
        for _ in 0..100 {
            total += deep(20, &mut out, &mut c);
        }
        COUNTING.with(|c| c.set(false));
        let after = ALLOCS.load(Ordering::Relaxed);
        assert!(total >= 100 * 20, "stacks too short: {total}");
        assert_eq!(after - before, 0, "the unwinder allocated");
    }

    /// The cached DWARF unwinder returns the same frames as libgcc's reference
    /// unwinder, through Rust frames and the test harness (libstd, libc).
    #[test]
    fn matches_reference_unwinder() {
        init_cache();
        let mut c = ctx();
        for depth in [0u32, 5, 50, 5, 0] {
            for round in 0..3 {
                let mut ours = vec![0u64; 512];
                let mut theirs = Vec::with_capacity(1024);
                let n = both(depth, &mut ours, &mut c, &mut theirs);
                let ours = &ours[..n];
                // libgcc reports the outermost frame (return address undefined) as 0.
                while theirs.last() == Some(&0) {
                    theirs.pop();
                }
                // Both lists end with the same outer frames; the reference
                // starts one frame deeper (inside `reference`), and ours at
                // `capture_here`. Compare the common caller chain above `both`.
                let k = ours.len().min(theirs.len()) - 2;
                assert!(
                    k > depth as usize,
                    "too few frames: ours {} theirs {}",
                    ours.len(),
                    theirs.len()
                );
                assert_eq!(
                    &ours[ours.len() - k..],
                    &theirs[theirs.len() - k..],
                    "depth {depth} round {round}: frames differ"
                );
            }
        }
    }
}
