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
//!
//! ## Snapshots of a running process
//! When `memtrace run` sets `MEMTRACE_SNAPSHOT_SIGNAL=N`, the constructor
//! installs a handler for signal `N` (`memtrace snapshot PID` sends it). The
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

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::{KIND_SNAPSHOT, KIND_SNAPSHOT_RUNNING};

/// Whether to take the snapshot at exit.
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// How long the frozen copy waits to be read before it exits by itself.
pub const LIFETIME_S: u32 = 600;

/// The name (`/proc/PID/comm`) of a copy made for a snapshot of a running process.
pub const RUNNING_NAME: &[u8; 14] = b"memtrace-snap\0";

/// The snapshot signal installed, 0 if none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The pid of `memtrace run` (`MEMTRACE_RUN_PID`), 0 if unknown.
static RUN_PID: AtomicI32 = AtomicI32::new(0);

/// Reads `MEMTRACE_REACH`: `1` turns the snapshot on.
pub fn init(v: Option<&[u8]>) {
    AT_EXIT.store(v == Some(b"1"), Ordering::Relaxed);
}

/// Reads `MEMTRACE_SNAPSHOT_SIGNAL` (a signal number, 0 or absent: none)
/// and installs the handler, and `MEMTRACE_RUN_PID`. Called once the log is
/// open.
pub fn init_signal(v: Option<&[u8]>, run_pid: Option<&[u8]>) {
    if let Some(n) = run_pid.and_then(crate::sys::parse_decimal) {
        RUN_PID.store(i32::try_from(n).unwrap_or(0), Ordering::Relaxed);
    }
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
    let pid = raw_fork(libc::SIGCHLD as u64);
    if pid == 0 {
        frozen(None);
    }
    if pid > 0 {
        // The stack below this frame is dead in the copy: the scan starts here.
        let sp = &pid as *const i64 as u64;
        let (start, len) = crate::sample::set_range().unwrap_or((0, 0));
        crate::record::marker(|b, t| {
            encode::kernel(b, t, KIND_SNAPSHOT, &[pid as u64, sp, start, len])
        });
    }
}

/// fork(2) as a raw `clone` system call with `flags` (the exit signal sent
/// to the parent when the child ends, and `CLONE_PARENT` or not): no fork handler runs (neither glibc's, nor the
/// program's, nor ours). The callers' children run only raw system calls.
fn raw_fork(flags: u64) -> i64 {
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
