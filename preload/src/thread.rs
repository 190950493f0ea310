//! Per-thread recorder state and the reentrancy guard.
//!
//! Each thread gets one [`ThreadState`], mapped with a raw `mmap` on its first
//! event (never through the hooked allocator) and released by a pthread key
//! destructor at thread exit. The TLS slot is a `const`-initialised
//! `thread_local!` without a destructor, so touching it never registers
//! anything with glibc (which would call `calloc`).
//!
//! The guard counts how deep the thread is inside our hooks. Depth 0 records
//! into level 0; a hook entered while the thread is already inside one can
//! only be a signal handler that allocates (this library itself never calls
//! the hooked functions), and it records into level 1, a separate stream with
//! its own buffers, so the interrupted record is never corrupted. Deeper
//! nesting is counted as lost events.

use core::cell::Cell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

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
    pub levels: [Level; 2],
}

thread_local! {
    static STATE: Cell<*mut ThreadState> = const { Cell::new(core::ptr::null_mut()) };
}

/// Set once the log is open and the hooks may record.
pub static ENABLED: AtomicBool = AtomicBool::new(false);
static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

const STATE_SIZE: usize = core::mem::size_of::<ThreadState>().next_multiple_of(4096);

/// Creates the pthread key whose destructor releases a thread's state.
pub fn init_key() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: pthread_key_create stores a key in `key`; glibc's key table is static.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Release);
    }
}

unsafe extern "C" fn thread_exit(p: *mut c_void) {
    let s = p as *mut ThreadState;
    if s.is_null() {
        return;
    }
    // Later destructors of this thread may still free memory: they will get
    // a fresh state (the key is set again, so glibc calls us once more).
    STATE.with(|c| c.set(core::ptr::null_mut()));
    // SAFETY: `s` is this thread's state, created by `state()`; nothing else
    // refers to it once the TLS slot is cleared.
    unsafe {
        for l in (*s).levels.iter_mut() {
            l.stream.close_and_trim();
        }
    }
    sys::free_pages(s as *mut u8, STATE_SIZE);
}

fn state() -> *mut ThreadState {
    let s = STATE.with(|c| c.get());
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
    STATE.with(|c| c.set(s));
    let key = KEY.load(Ordering::Acquire);
    if key != u32::MAX {
        // SAFETY: setting our own key's value; glibc stores keys < 32 inside
        // the thread descriptor without allocating.
        unsafe { libc::pthread_setspecific(key, s as *const c_void) };
    }
    s
}

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
        if crate::cxx::inside_operator() {
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
        let depth = unsafe { &mut (*s).depth };
        let level = *depth as usize;
        if level > 0 {
            writer::count_nested();
            if level >= 2 {
                writer::count_lost(1);
                return None;
            }
        }
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
        // SAFETY: as in `level`.
        unsafe { (*self.s).depth -= 1 };
    }
}

/// Fork child: the calling thread (the only one left) keeps its state but
/// drops its chunks, which belong to the parent's log.
pub fn after_fork_child() {
    let s = STATE.with(|c| c.get());
    if s.is_null() {
        return;
    }
    // SAFETY: single-threaded fork child; the state is ours.
    unsafe {
        for l in (*s).levels.iter_mut() {
            l.stream.reset();
            l.last_hash = 0;
            l.last_id = 0;
        }
    }
}
