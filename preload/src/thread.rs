//! Per-thread recorder state and the reentrancy guard.
//!
//! Each thread gets one [`ThreadState`], mapped with a raw `mmap` on its first
//! event (never through the hooked allocator). Its pointer is kept in an
//! initial-exec TLS word ([`crate::tls`]) without a destructor, so touching
//! it never registers anything with glibc (which would call `calloc`), and no
//! pthread key is taken (the program may need all of its own). States of
//! threads that have exited are found and released later, in amortized
//! collections (`collect`: the kernel is asked whether each thread still
//! exists); a fork child releases those of the parent's other threads.
//!
//! The guard counts how deep the thread is inside our hooks. Depth 0 records
//! into level 0; a hook entered while the thread is already inside one can
//! only be a signal handler that allocates (this library itself never calls
//! the hooked functions), and it records into level 1, a separate stream with
//! its own buffers, so the interrupted record is never corrupted. Deeper
//! nesting is counted as lost events.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memtrace_format::MAX_FRAMES;

use crate::sys;
use crate::unwind::Ctx;
use crate::writer::{self, Stream};

/// One nesting level's buffers.
pub struct Level {
    pub stream: Stream,
    pub frames: [u64; MAX_FRAMES],
    pub rec: [u8; 8192],
    pub ctx: Ctx,
    pub recent: crate::unwind::Recent,
    /// Reference frames for `MEMTRACE_VERIFY_UNWIND`.
    pub check: [u64; MAX_FRAMES],
    /// Stacks until the next check.
    pub check_countdown: u32,
    pub last_hash: u64,
    pub last_id: u32,
    /// Position in the sampling process (`MEMTRACE_SAMPLE`).
    pub sampler: crate::sample::Sampler,
}

/// All recorder state of one thread.
pub struct ThreadState {
    depth: u32,
    /// The stack pointer at which each level was entered: a level whose
    /// entry lies below the stack pointer of a later entry (on the same
    /// stack) was left without its guard's drop, by a `longjmp` out of a
    /// signal handler that interrupted the hook.
    entry_sp: [usize; 2],
    /// The thread's kernel id (0 when it could not be asked, under seccomp).
    tid: u32,
    pub levels: [Level; 2],
}

/// The calling thread's state (null until its first event), in the
/// initial-exec TLS word of [`crate::tls`].
#[inline(always)]
fn my_state() -> *mut ThreadState {
    // SAFETY: the slot is this thread's own aligned word.
    unsafe { *crate::tls::state_slot() as *mut ThreadState }
}

fn set_my_state(s: *mut ThreadState) {
    // SAFETY: as in `my_state`.
    unsafe { *crate::tls::state_slot() = s as usize };
}

/// Set once the log is open and the hooks may record.
pub static ENABLED: AtomicBool = AtomicBool::new(false);

const STATE_SIZE: usize = core::mem::size_of::<ThreadState>().next_multiple_of(4096);

/// Every thread state there is, live or of a thread that has exited: no
/// pthread key (a program may need all of its own) and no TLS destructor
/// (glibc's allocates) tells us when a thread ends, so states are reclaimed
/// by [`collect`]. 0 is a free slot.
const REGISTRY: usize = 8192;
static STATES: [AtomicUsize; REGISTRY] = [const { AtomicUsize::new(0) }; REGISTRY];
/// One past the highest registry slot ever used.
static STATES_HIGH: AtomicUsize = AtomicUsize::new(0);
/// States made since the last collection, and live after it.
static MADE: AtomicUsize = AtomicUsize::new(0);
static KEPT: AtomicUsize = AtomicUsize::new(0);
/// Set while one thread collects.
static COLLECTING: AtomicBool = AtomicBool::new(false);

fn register(s: *mut ThreadState) -> bool {
    for (i, slot) in STATES.iter().enumerate() {
        if slot
            .compare_exchange(0, s as usize, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            STATES_HIGH.fetch_max(i + 1, Ordering::AcqRel);
            return true;
        }
    }
    false
}

/// Whether thread `tid` of this process has exited: `tgkill` with signal 0
/// checks that it exists and sends nothing. Only the kernel's "no such
/// thread" counts; any other answer keeps the state.
fn exited(pid: u32, tid: u32) -> bool {
    // SAFETY: signal 0 delivers nothing; the call only looks the thread up.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    // SAFETY: errno is this thread's own.
    r != 0 && unsafe { *libc::__errno_location() } == libc::ESRCH
}

/// Releases the states of threads that have exited, once as many states
/// were made since the last collection as it kept (amortized: one
/// `tgkill` per thread made). The chunk a state still holds is trimmed and
/// released as the thread would have done at its exit.
fn collect(me: *mut ThreadState) {
    let made = MADE.fetch_add(1, Ordering::Relaxed) + 1;
    if made < KEPT.load(Ordering::Relaxed).max(64)
        || crate::sandbox::active()
        || COLLECTING.swap(true, Ordering::Acquire)
    {
        return;
    }
    MADE.store(0, Ordering::Relaxed);
    let pid = sys::getpid();
    let mut kept = 0;
    let high = STATES_HIGH.load(Ordering::Acquire);
    for slot in &STATES[..high] {
        let p = slot.load(Ordering::Acquire);
        if p == 0 {
            continue;
        }
        let s = p as *mut ThreadState;
        // SAFETY: registered states stay mapped until released here, and
        // only the collector (COLLECTING) releases them.
        let tid = unsafe { (*s).tid };
        if s == me || tid == 0 || !exited(pid, tid) {
            kept += 1;
            continue;
        }
        slot.store(0, Ordering::Release);
        // SAFETY: the thread is gone (the kernel says so), so nothing else
        // can touch its state; it was made by `state()`.
        unsafe {
            for l in (*s).levels.iter_mut() {
                l.stream.close_and_trim();
            }
        }
        sys::free_pages(p as *mut u8, STATE_SIZE);
    }
    KEPT.store(kept, Ordering::Relaxed);
    COLLECTING.store(false, Ordering::Release);
}

fn state() -> *mut ThreadState {
    let s = my_state();
    if !s.is_null() {
        return s;
    }
    if crate::sandbox::strict() {
        return core::ptr::null_mut();
    }
    let Some(p) = sys::alloc_pages(STATE_SIZE) else {
        return core::ptr::null_mut();
    };
    let s = p as *mut ThreadState;
    // SAFETY: `p` is a fresh zeroed mapping of STATE_SIZE bytes; every field of
    // ThreadState is valid when zeroed except the streams and contexts, which
    // are written here before use.
    unsafe {
        for l in (*s).levels.iter_mut() {
            core::ptr::write(&mut l.stream, Stream::new());
            core::ptr::write(&mut l.ctx, Ctx::new_in());
        }
    }
    // SAFETY: as above; the state is not shared yet.
    unsafe {
        (*s).tid = if crate::sandbox::active() {
            0
        } else {
            sys::gettid()
        }
    };
    set_my_state(s);
    // A state the registry has no room for is simply never reclaimed.
    let _ = register(s);
    collect(s);
    s
}

/// The least a signal handler running on the interrupted stack sits below
/// the interrupted code: the kernel's signal frame (`ucontext_t` with the
/// FPU state, `siginfo_t`, the red zone) takes more than this on x86-64.
const SIGNAL_FRAME: usize = 1024;

/// An entered hook: gives access to the level's buffers and leaves on drop.
pub struct Guard {
    s: *mut ThreadState,
    level: usize,
}

impl Guard {
    /// Enters the recorder, or `None` when recording is off or the thread is
    /// nested too deep (counted as lost).
    #[inline]
    pub fn enter() -> Option<Guard> {
        if !ENABLED.load(Ordering::Acquire) {
            if writer::clobbered() {
                writer::count_lost(1);
            }
            return None;
        }
        if crate::cxx::take_inside() {
            return None;
        }
        if crate::forks::is_forked() {
            // A fork that ran no atfork handler: this is the child's first
            // event, and it gets its own log before it records anything.
            crate::init::child_starts();
            if !ENABLED.load(Ordering::Acquire) {
                return None;
            }
        }
        let s = state();
        if s.is_null() {
            writer::count_lost(1);
            return None;
        }
        // SAFETY: `s` is this thread's state; only this thread touches it, and
        // a signal handler that interrupts us gets the next level.
        let (depth, entry_sp) = unsafe { (&mut (*s).depth, &mut (*s).entry_sp) };
        let mut level = *depth as usize;
        let sp = crate::sys::stack_pointer();
        if level > 0 && sp.saturating_add(SIGNAL_FRAME) > entry_sp[level - 1] {
            // A hook is open, but this entry is not below it by a signal
            // frame: either a signal handler on its alternate stack (a
            // nested hook), or a new call after a handler longjmp'd out of
            // that hook, which left its level open. The levels still open
            // are those entered above us by at least a signal frame.
            let live = entry_sp[..level]
                .iter()
                .take_while(|&&e| sp.saturating_add(SIGNAL_FRAME) <= e)
                .count();
            if !crate::sys::on_alt_stack() {
                writer::count_abandoned((level - live) as u32);
                *depth = live as u32;
                level = live;
            }
        }
        if level > 0 {
            writer::count_nested();
            if level >= 2 {
                writer::count_lost(1);
                return None;
            }
        }
        entry_sp[level] = sp;
        *depth += 1;
        Some(Guard { s, level })
    }

    /// This level's buffers.
    #[inline]
    pub fn level(&mut self) -> &mut Level {
        // SAFETY: the guard holds this level exclusively (depth was incremented).
        unsafe { &mut (*self.s).levels[self.level] }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        // The depth goes back to what it was when this guard entered, rather
        // than down by one: an entry that took an open level for abandoned
        // (see `enter`) may have lowered it meanwhile, and a decrement would
        // then wrap it (GNU `ar` loading binutils' LLVM plugin did).
        // SAFETY: as in `level`.
        unsafe { (*self.s).depth = self.level as u32 };
    }
}

/// Fork child: the calling thread (the only one left) keeps its state but
/// drops its chunks, which belong to the parent's log. The states of the
/// parent's other threads (which do not exist here) are released without
/// trimming: their chunks are the parent's.
pub fn after_fork_child() {
    let me = my_state();
    let high = STATES_HIGH.load(Ordering::Acquire);
    COLLECTING.store(false, Ordering::Release);
    for slot in &STATES[..high] {
        let p = slot.load(Ordering::Acquire);
        if p == 0 || p == me as usize {
            continue;
        }
        slot.store(0, Ordering::Release);
        let s = p as *mut ThreadState;
        // SAFETY: single-threaded fork child: the thread owning `s` is not
        // in this process.
        unsafe {
            for l in (*s).levels.iter_mut() {
                l.stream.reset();
            }
        }
        sys::free_pages(p as *mut u8, STATE_SIZE);
    }
    if me.is_null() {
        return;
    }
    // SAFETY: single-threaded fork child; the state is ours.
    unsafe {
        (*me).tid = sys::gettid();
        for l in (*me).levels.iter_mut() {
            l.stream.reset();
            l.last_hash = 0;
            l.last_id = 0;
        }
    }
}
