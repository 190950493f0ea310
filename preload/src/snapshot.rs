//! Frozen copies for snapshots of a running process (the scan at exit needs
//! none: see [`crate::scan`]).
//!
//! Constraints: a copy is made with a raw `clone` system call, so no fork
//! handler runs (neither the program's nor ours); in the copy, only raw system
//! calls run: it closes every file descriptor (so that nobody waits for a pipe
//! it would hold open), blocks every signal it can, sleeps at most
//! [`LIFETIME_S`] seconds, and exits.
//!
//! ## Snapshots of a running process
//! When `memtrace run` (or `memtrace check`) sets `MEMTRACE_SNAPSHOT_SIGNAL=N`
//! and `MEMTRACE_RUN_PID`, the constructor installs a handler for signal `N`
//! (`memtrace snapshot PID` sends it). Without `memtrace run` nobody would
//! read the copies, so with plain `LD_PRELOAD` no handler is installed and the
//! signal keeps its default meaning. The
//! handler makes a frozen copy the same way, without stopping the process,
//! as a child of `memtrace run`: with `CLONE_PARENT` when `memtrace run`
//! (`MEMTRACE_RUN_PID`) is the process's parent; else it clones an
//! intermediate child, which clones the copy and exits at once, so the copy
//! is an orphan that the kernel hands to `memtrace run` (the subreaper).
//! Either way the process is left with no child to reap and gets no
//! `SIGCHLD` (the intermediate's exit signal is 0, and the handler reaps it
//! with `__WALL`). The copy's pid comes back through a pipe; the handler
//! records it (`KIND_SNAPSHOT_RUNNING`, with the stack pointer and the time
//! taken before the copy) and returns. The copy names itself
//! [`RUNNING_NAME`] so that `memtrace run` finds it among its children.
//! Everything in the handler is a raw system call or a store to the log, which
//! is async-signal-safe; errno is kept.

use core::sync::atomic::{AtomicI32, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::KIND_SNAPSHOT_RUNNING;

/// How long the frozen copy waits to be read before it exits by itself.
pub const LIFETIME_S: u32 = 600;

/// The name (`/proc/PID/comm`) of a copy made for a snapshot of a running process.
pub const RUNNING_NAME: &[u8; 14] = b"memtrace-snap\0";

/// The snapshot signal installed, 0 if none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The pid of `memtrace run` (`MEMTRACE_RUN_PID`), 0 if unknown.
static RUN_PID: AtomicI32 = AtomicI32::new(0);

/// Reads `MEMTRACE_SNAPSHOT_SIGNAL` (a signal number, 0 or absent: none)
/// and installs the handler, and `MEMTRACE_RUN_PID`. Called once the log is
/// open.
pub fn init_signal(v: Option<&[u8]>, run_pid: Option<&[u8]>) {
    let Some(run) = run_pid
        .and_then(crate::sys::parse_decimal)
        .and_then(|n| i32::try_from(n).ok())
        .filter(|&n| n > 0)
    else {
        return;
    };
    RUN_PID.store(run, Ordering::Relaxed);
    let Some(sig) = v.and_then(crate::sys::parse_decimal) else {
        return;
    };
    let sig = sig.min(i32::MAX as u64) as i32;
    if sig <= 0 || sig > 64 || sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return;
    }
    // SAFETY: sigaction with a zeroed struct filled with a valid handler and
    // flags; the handler is async-signal-safe (see the module docs).
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, core::ptr::null_mut()) == 0 {
            SIGNAL.store(sig, Ordering::Relaxed);
        }
    }
}

/// Called by the `sigaction` and `signal` hooks before the program changes
/// the disposition of `sig`: when it is the snapshot signal and the new
/// handler is not ours, snapshots are off and the log says so.
pub fn program_sets_handler(sig: i32, handler: usize) {
    let ours = SIGNAL.load(Ordering::Relaxed);
    if ours != 0 && sig == ours && handler != on_signal as *const () as usize {
        SIGNAL.store(0, Ordering::Relaxed);
        crate::writer::set_flags(memtrace_format::hdr::flag::SNAPSHOT_SIGNAL_TAKEN);
    }
}

extern "C" fn on_signal(_sig: i32, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno, valid for its life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    take_running();
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// Makes a frozen copy for a snapshot of the running process and records it
/// (see the module docs).
#[inline(never)]
fn take_running() {
    let t = crate::sys::now_ns();
    // Frames below this one are dead in the copy.
    let sp = &t as *const u64 as u64;
    let pid = frozen_copy();
    if pid > 0 {
        let (start, len) = crate::sample::set_range().unwrap_or((0, 0));
        crate::record::marker(|b, dt| {
            encode::kernel(
                b,
                dt,
                KIND_SNAPSHOT_RUNNING,
                &[pid as u64, sp, t, start, len],
            )
        });
    }
}

/// Makes the frozen copy, a child of `memtrace run`; returns its pid (or a
/// negative number). When `memtrace run` is the parent, one clone with
/// `CLONE_PARENT` does it; else an intermediate child clones the copy, which
/// the kernel then hands to `memtrace run` as the subreaper: twice the page
/// tables copied, so twice the pause.
#[inline(always)]
fn frozen_copy() -> i64 {
    let run = RUN_PID.load(Ordering::Relaxed);
    // SAFETY: getppid has no arguments.
    if run > 0 && unsafe { libc::syscall(libc::SYS_getppid) } == run as i64 {
        let pid = raw_fork(libc::CLONE_PARENT as u64 | libc::SIGCHLD as u64);
        if pid == 0 {
            frozen(Some(RUNNING_NAME));
        }
        return pid;
    }
    let mut fds = [-1i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return -1;
    }
    // Exit signal 0: the intermediate's end sends the process no SIGCHLD.
    let mid = raw_fork(0);
    if mid == 0 {
        // The intermediate: clone the copy, tell its pid, exit. The copy's
        // exit signal is SIGCHLD, for its subreaper.
        let pid = raw_fork(libc::SIGCHLD as u64);
        if pid == 0 {
            frozen(Some(RUNNING_NAME));
        }
        let v: i64 = pid;
        // SAFETY: writes 8 bytes of a local to our pipe, then exits this
        // single-threaded child without running any handler.
        unsafe {
            libc::syscall(libc::SYS_write, fds[1], &v as *const i64, 8usize);
            libc::syscall(libc::SYS_exit_group, 0);
        }
    }
    let mut pid: i64 = -1;
    // SAFETY: raw close, read into a local, and wait4 on our own child.
    unsafe {
        libc::syscall(libc::SYS_close, fds[1]);
        if mid > 0 {
            loop {
                let n = libc::syscall(libc::SYS_read, fds[0], &mut pid as *mut i64, 8usize);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    if n != 8 {
                        pid = -1;
                    }
                    break;
                }
            }
            while libc::syscall(libc::SYS_wait4, mid, 0usize, libc::__WALL, 0usize) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
        }
        libc::syscall(libc::SYS_close, fds[0]);
    }
    pid
}

/// fork(2) as a raw `clone` system call with `flags` (the exit signal sent
/// to the parent when the child ends, and `CLONE_PARENT` or not): no fork handler runs (neither glibc's, nor the
/// program's, nor ours). The callers' children run only raw system calls.
pub(crate) fn raw_fork(flags: u64) -> i64 {
    // SAFETY: clone without CLONE_VM gives the child a copy of the address
    // space, as fork does; no pointer argument is passed.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    }
}

/// The copy: names itself (if `name`), closes its descriptors, blocks
/// signals, sleeps, exits.
fn frozen(name: Option<&[u8; 14]>) -> ! {
    // SAFETY: raw system calls on arguments we own; none touches the memory
    // the scan reads except this thread's stack.
    unsafe {
        if let Some(name) = name {
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_NAME,
                name.as_ptr(),
                0usize,
                0usize,
                0usize,
            );
        }
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
