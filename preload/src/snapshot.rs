//! The frozen copy for the reachability scan: at exit, when `memtrace run`
//! asked (`MEMTRACE_REACH=1`), the process forks a copy of itself that only
//! sleeps, and records its pid (a KERNEL record of kind `KIND_SNAPSHOT`).
//! `memtrace run` (the copy's subreaper once the process is gone) reads the
//! copy's memory from outside, classifies the live blocks, and kills it.
//!
//! Constraints: the copy is made with a raw `clone` system call, so no fork
//! handler runs (neither the program's nor ours); in the copy, only raw system
//! calls run: it closes every file descriptor (so that nobody waits for a pipe
//! it would hold open), blocks every signal it can, sleeps at most
//! [`LIFETIME_S`] seconds, and exits. The parent's exit goes on unchanged.

use core::sync::atomic::{AtomicBool, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::KIND_SNAPSHOT;

/// Whether to take the snapshot at exit.
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// How long the frozen copy waits to be read before it exits by itself.
pub const LIFETIME_S: u32 = 600;

/// Reads `MEMTRACE_REACH`: `1` turns the snapshot on.
pub fn init(v: Option<&[u8]>) {
    AT_EXIT.store(v == Some(b"1"), Ordering::Relaxed);
}

/// Bytes of stack below the exit path's first frame that [`scrub_stack`] zeroes.
const SCRUB: usize = 16 << 10;

/// Zeroes the stack the exit path is about to use, if a snapshot will be
/// taken: the frames it builds there could otherwise hold, in slots they
/// never write, stale pointers left by earlier, deeper calls (the hooks'
/// own frames), which the scan would take for roots.
#[inline(never)]
pub fn scrub_stack() {
    if !AT_EXIT.load(Ordering::Relaxed) {
        return;
    }
    let mut area = [0u8; SCRUB];
    // SAFETY: writes to a local array; volatile so that the stores are kept.
    unsafe { core::ptr::write_volatile(&mut area, [0u8; SCRUB]) };
    core::hint::black_box(&area);
}

/// Forks the frozen copy and records its pid, if asked.
pub fn take() {
    if !AT_EXIT.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: a raw clone with only SIGCHLD is fork(2) without glibc's fork
    // handlers; the child below runs only raw system calls and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        frozen();
    }
    if pid > 0 {
        // The stack below this frame is dead in the copy: the scan starts here.
        let sp = &pid as *const i64 as u64;
        crate::record::marker(|b, t| encode::kernel(b, t, KIND_SNAPSHOT, &[pid as u64, sp]));
    }
}

/// The copy: closes its descriptors, blocks signals, sleeps, exits.
fn frozen() -> ! {
    // SAFETY: raw system calls on arguments we own; none touches the memory
    // the scan reads except this thread's stack.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..4096 {
                libc::syscall(libc::SYS_close, fd);
            }
        }
        let all: u64 = !0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            0usize,
            8usize,
        );
        let one = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        for _ in 0..LIFETIME_S {
            libc::syscall(libc::SYS_nanosleep, &one as *const libc::timespec, 0usize);
        }
        libc::syscall(libc::SYS_exit_group, 0);
    }
    #[allow(clippy::empty_loop)]
    loop {}
}
