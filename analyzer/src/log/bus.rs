//! Guards the analyzer against a log file truncated while it is mapped.
//!
//! Touching a page of a file mapping past the file's end raises SIGBUS, which
//! would kill memtrace. A process-wide SIGBUS handler (installed once, by the
//! first [`Log::open`](super::Log::open); the analyzer owns its signals)
//! looks the faulting address up among the registered log mappings: inside
//! one, it maps anonymous zero pages from the faulting page to the mapping's
//! end (`mmap` with `MAP_FIXED` is a system call, async-signal-safe), sets
//! that mapping's *shrank* flag and returns, so the reader sees zeros (the
//! end of the data) and the [`Log`](super::Log) turns the flag into
//! [`Error::Shrank`](crate::error::Error::Shrank). Any other SIGBUS goes to
//! the action in place before (Rust's own handler, or the default: the
//! process dies of SIGBUS as it would have).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Mappings guarded at once; a log opened while all are taken is read
/// unguarded (as before: a truncation then kills the process).
const SLOTS: usize = 256;

struct Slot {
    used: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    shrank: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    used: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    shrank: AtomicBool::new(false),
};
static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

/// The SIGBUS action before ours (set once, before ours is installed).
struct Old(libc::sigaction);
// SAFETY: a plain C struct written once before any reader can run and
// never changed afterwards.
unsafe impl Sync for Old {}
// SAFETY: as above.
unsafe impl Send for Old {}
static OLD: OnceLock<Option<Old>> = OnceLock::new();

/// Installs the handler (once per process); false if it could not be.
fn install() -> bool {
    OLD.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value to fill in.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: new.sa_mask is ours to initialize.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads the current action into `old`, changes nothing.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
            return None;
        }
        // The old action must be readable by the handler before it can run.
        let saved = Old(old);
        // SAFETY: installs our handler; `handler` is async-signal-safe.
        if unsafe { libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(saved)
    })
    .is_some()
}

/// A registered mapping; unregistered when dropped.
pub struct Guard(usize);

impl Guard {
    /// Registers `[start, start + len)`; `None` when no slot is free or
    /// the handler cannot be installed.
    pub fn new(start: usize, len: usize) -> Option<Guard> {
        if len == 0 || !install() {
            return None;
        }
        for (i, s) in TABLE.iter().enumerate() {
            if s.used
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.shrank.store(false, Ordering::Release);
                s.len.store(0, Ordering::Release);
                s.start.store(start, Ordering::Release);
                s.len.store(len, Ordering::Release);
                return Some(Guard(i));
            }
        }
        None
    }

    /// Whether a read past the file's end was caught in this mapping.
    pub fn shrank(&self) -> bool {
        TABLE[self.0].shrank.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let s = &TABLE[self.0];
        s.len.store(0, Ordering::Release);
        s.start.store(0, Ordering::Release);
        s.used.store(false, Ordering::Release);
    }
}

/// The SIGBUS handler: async-signal-safe (atomics, `mmap`, `sigaction`,
/// `raise`), allocates nothing, cannot panic.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault the kernel raised (si_code > 0) has a faulting address.
    if code > 0 {
        let page = super::page_size();
        for s in &TABLE {
            let len = s.len.load(Ordering::Acquire);
            let start = s.start.load(Ordering::Acquire);
            if len == 0 || addr < start || addr - start >= len {
                continue;
            }
            let from = addr - addr % page;
            let end = start + len;
            // SAFETY: [from, end) lies inside a registered read-only log
            // mapping, which its Log keeps alive while a reader can fault
            // in it; MAP_FIXED replaces those pages with private zero
            // pages, so the faulting read is retried and sees zeros.
            let r = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    end - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                s.shrank.store(true, Ordering::Release);
                return;
            }
            break;
        }
    }
    // Not ours: hand it to the action in place before, as if we had
    // never been installed.
    let old = match OLD.get() {
        Some(Some(o)) => &o.0,
        _ => std::ptr::null(),
    };
    if !old.is_null() {
        // SAFETY: `old` points to the saved action, valid for the
        // process's lifetime.
        let (act, flags) = unsafe { ((*old).sa_sigaction, (*old).sa_flags) };
        if act != libc::SIG_DFL && act != libc::SIG_IGN {
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with
                // SA_SIGINFO, so it takes these three arguments.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(act) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a handler installed without SA_SIGINFO takes the signal number.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(act) };
                f(sig);
            }
            return;
        }
    }
    // The default action: restore it and let the signal take effect (a
    // fault recurs when the instruction is retried; a sent signal is
    // raised again, delivered once this handler returns).
    // SAFETY: an all-zero sigaction with SIG_DFL is the default action.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    // SAFETY: sigaction and raise are async-signal-safe.
    unsafe {
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        if code <= 0 {
            libc::raise(libc::SIGBUS);
        }
    }
}
