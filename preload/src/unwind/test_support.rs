//! Shared by the unwinder's unit tests: a counting allocator, captures from
//! known depths, libgcc's unwinder as the reference, and frames (in
//! assembly) that control rbp.

use core::ffi::c_void;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Ctx, Recent, capture_from, current_regs};

/// Counts allocations made by the current test process.
struct Counting;
/// Allocations counted so far.
pub(super) static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// Only allocations of the thread under test count (tests run in parallel).
    pub(super) static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

pub(super) fn ctx() -> Box<Ctx> {
    Box::new(Ctx::new_in())
}

#[inline(never)]
fn capture_here(out: &mut [u64], c: &mut Ctx) -> usize {
    RECENT_FOR_TEST.with(|r| {
        let regs = current_regs();
        // SAFETY: regs describe this live frame.
        unsafe { capture_from(regs, out, c, &mut r.borrow_mut()) }
    })
}

thread_local! {
    /// Kept across captures, as in the preload, so later rounds hit the per-depth cache.
    pub(super) static RECENT_FOR_TEST: std::cell::RefCell<Recent> = const { std::cell::RefCell::new(Recent::new()) };
}

/// Captures from `n` frames below the caller.
#[inline(never)]
pub(super) fn deep(n: u32, out: &mut [u64], c: &mut Ctx) -> usize {
    if n == 0 {
        return capture_here(out, c);
    }
    let r = deep(n - 1, out, c);
    std::hint::black_box(r)
}

/// The reference: libgcc's `_Unwind_Backtrace`, uncached, as return addresses.
#[inline(never)]
fn reference(out: &mut Vec<u64>) {
    unsafe extern "C" fn cb(ctx: *mut c_void, arg: *mut c_void) -> i32 {
        unsafe extern "C" {
            fn _Unwind_GetIP(ctx: *mut c_void) -> u64;
        }
        // SAFETY: libgcc passes a valid context and our Vec pointer.
        unsafe {
            let v = &mut *(arg as *mut Vec<u64>);
            v.push(_Unwind_GetIP(ctx));
        }
        0
    }
    unsafe extern "C" {
        fn _Unwind_Backtrace(
            cb: unsafe extern "C" fn(*mut c_void, *mut c_void) -> i32,
            arg: *mut c_void,
        ) -> i32;
    }
    // SAFETY: the callback only pushes into `out`, which outlives the call.
    unsafe { _Unwind_Backtrace(cb, out as *mut Vec<u64> as *mut c_void) };
}

/// Captures (ours and the reference) from `n` frames below the caller.
#[inline(never)]
pub(super) fn both(n: u32, ours: &mut [u64], c: &mut Ctx, theirs: &mut Vec<u64>) -> usize {
    if n == 0 {
        reference(theirs);
        return capture_here(ours, c);
    }
    let r = both(n - 1, ours, c, theirs);
    std::hint::black_box(r)
}

/// Compares one capture (ours, through `f`) with the reference over the
/// common caller chain, as in `matches_reference_unwinder`.
pub(super) fn check_against_reference(
    what: &str,
    f: impl FnOnce(&mut [u64], &mut Ctx, &mut Vec<u64>) -> usize,
    c: &mut Ctx,
) -> Vec<u64> {
    let mut ours = vec![0u64; 512];
    let mut theirs = Vec::with_capacity(1024);
    let n = f(&mut ours, c, &mut theirs);
    let ours = &ours[..n];
    while theirs.last() == Some(&0) {
        theirs.pop();
    }
    let k = ours.len().min(theirs.len()) - 2;
    assert!(k > 4, "{what}: too few frames");
    assert_eq!(
        &ours[ours.len() - k..],
        &theirs[theirs.len() - k..],
        "{what}: frames differ"
    );
    ours.to_vec()
}

// Two callers with the same frame layout: the frames below them lie at
// the same addresses with the same return addresses, only the return
// address into the caller differs.
#[inline(never)]
pub(super) fn via_a(ours: &mut [u64], c: &mut Ctx, theirs: &mut Vec<u64>) -> usize {
    let r = both(std::hint::black_box(3), ours, c, theirs);
    std::hint::black_box(r)
}
#[inline(never)]
pub(super) fn via_b(ours: &mut [u64], c: &mut Ctx, theirs: &mut Vec<u64>) -> usize {
    let r = both(std::hint::black_box(3), ours, c, theirs);
    std::hint::black_box(r)
}

/// The first `k` steps (sp, pc) of the thread's last walk.
pub(super) fn last_steps(k: usize) -> Vec<(u64, u64)> {
    RECENT_FOR_TEST.with(|r| {
        let r = r.borrow();
        let p = r.prev & 1;
        r.steps[p][..r.len[p].min(k)]
            .iter()
            .map(|s| (s.sp, s.pc))
            .collect()
    })
}

// Two frames that control rbp, for the replay's tests; both call
// `f(arg)` (rsi, rdx) and restore rbp after the call.
// - with_rbp(v, f, arg): rbp = v during the call (saved, restored from
//   the stack), so the states below differ only in a dead rbp.
// - cfa_rbp(p, f, arg): the CFA of this frame is computed from rbp,
//   which is this frame (p = 0) or `p`, a fake frame of two words
//   {saved rbp, return address}.
core::arch::global_asm!(
    ".text",
    ".globl memtrace_test_with_rbp",
    ".type memtrace_test_with_rbp,@function",
    "memtrace_test_with_rbp:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rdi",
    "mov rdi, rdx",
    "call rsi",
    "pop rbp",
    ".cfi_def_cfa_offset 8",
    ".cfi_restore rbp",
    "ret",
    ".cfi_endproc",
    ".size memtrace_test_with_rbp, .-memtrace_test_with_rbp",
    ".globl memtrace_test_cfa_rbp",
    ".type memtrace_test_cfa_rbp,@function",
    "memtrace_test_cfa_rbp:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    "test rdi, rdi",
    "cmovnz rbp, rdi",
    ".cfi_def_cfa_register rbp",
    "mov rdi, rdx",
    "call rsi",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    ".cfi_restore rbp",
    "ret",
    ".cfi_endproc",
    ".size memtrace_test_cfa_rbp, .-memtrace_test_cfa_rbp",
);
unsafe extern "C" {
    pub(super) fn memtrace_test_with_rbp(v: u64, f: extern "C" fn(*mut c_void), arg: *mut c_void);
    pub(super) fn memtrace_test_cfa_rbp(p: u64, f: extern "C" fn(*mut c_void), arg: *mut c_void);
}

/// What the frames above call back with: a capture and the reference.
struct Probe<'a> {
    ours: Vec<u64>,
    n: usize,
    theirs: Vec<u64>,
    c: &'a mut Ctx,
}

extern "C" fn probe(arg: *mut c_void) {
    // SAFETY: `arg` is the Probe passed to the trampoline by `through`.
    let p = unsafe { &mut *(arg as *mut Probe) };
    p.n = both(6, &mut p.ours, p.c, &mut p.theirs);
}

/// Captures (ours and the reference) through `tramp(v, ..)`, compares
/// them as `check_against_reference` does, and returns ours.
#[inline(never)]
pub(super) fn through(
    what: &str,
    tramp: unsafe extern "C" fn(u64, extern "C" fn(*mut c_void), *mut c_void),
    v: u64,
    c: &mut Ctx,
) -> Vec<u64> {
    let mut p = Probe {
        ours: vec![0u64; 512],
        n: 0,
        theirs: Vec::with_capacity(1024),
        c,
    };
    // SAFETY: the trampolines call `probe` with the Probe, which outlives the call.
    unsafe { tramp(v, probe, &mut p as *mut Probe as *mut c_void) };
    let ours = &p.ours[..p.n];
    while p.theirs.last() == Some(&0) {
        p.theirs.pop();
    }
    let k = ours.len().min(p.theirs.len()) - 2;
    assert!(k > 4, "{what}: too few frames");
    assert_eq!(
        &ours[ours.len() - k..],
        &p.theirs[p.theirs.len() - k..],
        "{what}: frames differ"
    );
    ours.to_vec()
}

/// No step of the thread's record keeps the replay's mark.
pub(super) fn assert_unmarked() {
    RECENT_FOR_TEST.with(|r| {
        let r = r.borrow();
        for b in 0..2 {
            assert!(r.steps[b].iter().all(|s| !s.rule.last()));
        }
    });
}
