//! Telling a fork child from its parent, however the fork was made.
//!
//! `fork()` runs the atfork handlers, and the child-side one
//! (`init::after_fork_child`) gives the child a log of its own. `_Fork()`, a
//! raw `clone` and `syscall(SYS_fork)` run none: the child would go on
//! writing into its parent's chunks, which are shared mappings of the same
//! file. So a page mapped with `MADV_WIPEONFORK` holds a token: a fork of
//! any kind gives the child that page zero-filled, while threads and `vfork`
//! children (which share the memory) see the token. Every event checks it
//! ([`is_forked`], one load) and a child that finds it gone is set up as the
//! atfork handler would have done, before it records anything.
//!
//! Without `MADV_WIPEONFORK` (kernels before 4.14) the check is off and only
//! `fork()` children get their own log.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::sys;

/// The token page (null: no check).
static PAGE: AtomicPtr<AtomicU64> = AtomicPtr::new(core::ptr::null_mut());

const TOKEN: u64 = 0x4d45_4d54_5241_4345;

/// Maps the token page (constructor).
pub fn init() {
    let Some(p) = sys::alloc_pages(4096) else {
        return;
    };
    if !sys::wipe_on_fork(p as usize, 4096) {
        sys::free_pages(p, 4096);
        return;
    }
    let t = p as *mut AtomicU64;
    // SAFETY: `t` is our own fresh, aligned page.
    unsafe { (*t).store(TOKEN, Ordering::Relaxed) };
    PAGE.store(t, Ordering::Release);
}

/// Whether this process is a fork child that has not been set up yet (its
/// token page came back zero-filled).
#[inline(always)]
pub fn is_forked() -> bool {
    let t = PAGE.load(Ordering::Relaxed);
    // SAFETY: the page stays mapped for the life of the process.
    !t.is_null() && unsafe { (*t).load(Ordering::Relaxed) } != TOKEN
}

/// Puts the token back: called by the child once it has its own log.
pub fn rearm() {
    let t = PAGE.load(Ordering::Relaxed);
    if !t.is_null() {
        // SAFETY: as in `is_forked`.
        unsafe { (*t).store(TOKEN, Ordering::Relaxed) };
    }
}
