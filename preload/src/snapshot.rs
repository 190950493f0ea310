//! Frozen copies for snapshots of a running process (the scan at exit needs
//! none: see [`crate::scan`]).
//!
//! Constraints: a copy is made with a raw `clone` system call, so no fork
//! handler runs (neither the program's nor ours); in the copy, only raw system
//! calls run: it closes every file descriptor (so that nobody waits for a pipe
//! it would hold open), blocks every signal it can, waits to be read (see
//! "Lifetime" below), and exits.
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
//! records it (`KIND_SNAPSHOT_RUNNING`, with the stack pointer, the time
//! taken before the copy and, as the scan at exit has them, this library's
//! own memory, which is never a root) and returns. The copy names itself
//! [`RUNNING_NAME`] so that `memtrace run` finds it among its children.
//! Everything in the handler is a raw system call, a load from its saved
//! context, `_dl_find_object` (lock-free) or a store to the log, all
//! async-signal-safe; errno is kept.
//!
//! ## Lifetime: a copy never outlives `memtrace run`, nor waits long unread
//! A copy holds the whole heap of the program (its pages are shared until
//! the program writes them), so however the snapshot fails, it must go:
//! 1. **It dies with `memtrace run`.** Once it is `memtrace run`'s child (at
//!    once with `CLONE_PARENT`; through the intermediate, once `getppid()` is
//!    no longer the intermediate's pid, i.e. the kernel has reparented it),
//!    it sets `PR_SET_PDEATHSIG` to `SIGKILL` and then checks that its parent
//!    is `MEMTRACE_RUN_PID`; otherwise (`memtrace run` died before, or the
//!    process outlived it and the copy went to init or another subreaper) it
//!    exits at once. Checking after setting closes the race: a `memtrace
//!    run` that dies after the check kills the copy. (`PDEATHSIG` fires when
//!    the parent *thread* ends: a copy's parent is the thread that started
//!    the command, or the first live thread of the subreaper, `memtrace
//!    run`'s main thread either way, which lives as long as it does.)
//! 2. **It waits [`IDLE_S`] seconds at most unless `memtrace run` takes it.**
//!    Only then does it name itself [`RUNNING_NAME`] (so `memtrace run`
//!    never takes a copy before it is bound to it) and sleep in ticks of
//!    100 ms, [`IDLE_S`] seconds' worth, then exit. `memtrace run`'s watcher
//!    takes a copy within about 20 ms of its naming by stopping it
//!    (`SIGSTOP`, which cannot be blocked): a stopped copy counts no ticks,
//!    so it lives while `memtrace run` reads it, and `memtrace run` kills it
//!    when done. A copy nobody takes — its `memtrace run` is wedged, or
//!    ignores it — is gone after [`IDLE_S`] seconds, not [`LIFETIME_S`].
//!    (Whether its pid made it into the log does not matter: `memtrace run`
//!    finds copies among its children by name, not in the log.)
//! 3. **It never lives longer than [`LIFETIME_S`] in all**, stopped or not:
//!    a POSIX timer armed in the copy delivers `SIGKILL` then (a timer's
//!    `SIGKILL` kills a stopped process too). Should `timer_create` fail, 1
//!    and 2 still hold.
//!
//! So only `memtrace run` itself can keep a copy, and at most while it lives.

use core::sync::atomic::{AtomicI32, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::KIND_SNAPSHOT_RUNNING;

/// The longest a frozen copy lives, even while `memtrace run` reads it
/// (enough to scan about 60 GiB of heap).
pub const LIFETIME_S: u32 = 600;

/// How long a frozen copy waits for `memtrace run` to take it (stop it)
/// before it exits by itself.
pub const IDLE_S: u32 = 10;

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

extern "C" fn on_signal(_sig: i32, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno, valid for its life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    take_running(interrupted(ctx.cast()));
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// Where the kernel saved the interrupted thread's registers, in the signal
/// frame on its stack (so in the frozen copy's memory too): `[general-purpose
/// registers' address, floating-point and vector state's address, its
/// bytes]`. The scan takes them for the thread's registers, and its stack
/// from the interrupted stack pointer (see `KIND_SNAPSHOT_RUNNING`). Zeros
/// where the context says nothing.
fn interrupted(ctx: *const libc::ucontext_t) -> [u64; 3] {
    /// `FP_XSTATE_MAGIC1` (<asm/sigcontext.h>): the state is an XSAVE area
    /// whose `extended_size` follows the magic, in the FXSAVE area's
    /// software-reserved bytes (offset 464).
    const XSTATE_MAGIC1: u32 = 0x4650_5853;
    const FXSAVE_BYTES: u64 = 512;
    if ctx.is_null() {
        return [0; 3];
    }
    // SAFETY: the kernel passes an SA_SIGINFO handler its saved context, a
    // valid ucontext_t on this thread's stack for the handler's life.
    let m = unsafe { &(*ctx).uc_mcontext };
    let gregs = m.gregs.as_ptr() as u64;
    let fp = m.fpregs as *const u8;
    if fp.is_null() {
        return [gregs, 0, 0];
    }
    // SAFETY: fpregs points to the saved FXSAVE area (512 bytes, or an
    // XSAVE area that begins with one) in the same signal frame.
    let (magic, extended) = unsafe {
        (
            (fp.add(464) as *const u32).read_unaligned(),
            (fp.add(468) as *const u32).read_unaligned(),
        )
    };
    let bytes = if magic == XSTATE_MAGIC1 && extended as u64 >= FXSAVE_BYTES {
        extended as u64
    } else {
        FXSAVE_BYTES
    };
    [gregs, fp as u64, bytes]
}

/// Makes a frozen copy for a snapshot of the running process and records it
/// (see the module docs); `at`: where the signal interrupted the thread
/// ([`interrupted`]).
#[inline(never)]
fn take_running(at: [u64; 3]) {
    let t = crate::sys::now_ns();
    // Frames below this one are dead in the copy.
    let sp = &t as *const u64 as u64;
    let pid = frozen_copy();
    if pid > 0 {
        // What the copy's scan must leave out, as the scan at exit does:
        // this library's mappings (thread states, stack table, unwind cache:
        // their words include block addresses), its object, the sampled set.
        let (start, len) = crate::sample::set_range().unwrap_or((0, 0));
        let here = &SIGNAL as *const AtomicI32 as usize;
        let (mod_start, mod_len) = crate::sys::DlFindObject::find(here).map_or((0, 0), |o| {
            let start = o.map_start as u64;
            // To the end of its last page: the rest of the page is ours too.
            let end = (o.map_end as u64)
                .checked_next_multiple_of(4096)
                .unwrap_or(u64::MAX);
            (start, end.saturating_sub(start))
        });
        crate::record::marker(|b, dt| {
            encode::kernel(
                b,
                dt,
                KIND_SNAPSHOT_RUNNING,
                &[
                    pid as u64,
                    sp,
                    t,
                    &crate::sys::own::TABLE as *const crate::sys::own::Table as u64,
                    crate::sys::own::SLOTS as u64,
                    crate::sys::own::OVERFLOW.load(Ordering::Relaxed),
                    at[0],
                    at[1],
                    at[2],
                    start,
                    len,
                    mod_start,
                    mod_len,
                ],
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
            frozen(0);
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
        // SAFETY: getpid has no arguments.
        let me = unsafe { libc::syscall(libc::SYS_getpid) };
        let pid = raw_fork(libc::SIGCHLD as u64);
        if pid == 0 {
            frozen(me);
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
    unsafe { crate::sandbox::own_syscall(libc::SYS_clone, [flags as libc::c_long, 0, 0, 0, 0, 0]) }
}

/// This process's parent.
fn parent() -> i64 {
    // SAFETY: getppid has no arguments.
    unsafe { libc::syscall(libc::SYS_getppid) }
}

/// Arms a POSIX timer that sends this process `SIGKILL` after `s` seconds
/// (not inherited by forks; fires even while the process is stopped).
/// Failure is ignored: the caller has other bounds.
fn kill_after(s: u32) {
    // The kernel's struct sigevent (64 bytes): sigev_value (8), sigev_signo
    // (int), sigev_notify (int), then a union.
    let mut ev = [0u8; 64];
    ev[8..12].copy_from_slice(&libc::SIGKILL.to_ne_bytes());
    ev[12..16].copy_from_slice(&libc::SIGEV_SIGNAL.to_ne_bytes());
    let mut id: i32 = -1;
    // SAFETY: timer_create reads the 64-byte sigevent and writes the timer's
    // id into a local int; timer_settime reads an itimerspec we own.
    unsafe {
        if libc::syscall(
            libc::SYS_timer_create,
            libc::CLOCK_MONOTONIC,
            ev.as_ptr(),
            &mut id as *mut i32,
        ) != 0
        {
            return;
        }
        let when = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: s as libc::time_t,
                tv_nsec: 0,
            },
        };
        libc::syscall(
            libc::SYS_timer_settime,
            id as libc::c_long,
            0,
            &when as *const libc::itimerspec,
            0usize,
        );
    }
}

/// The copy (see "Lifetime" in the module docs): `mid` is the intermediate
/// that cloned it (0: it was cloned with `CLONE_PARENT`). It waits to be
/// `memtrace run`'s child and binds its life to it, closes its descriptors,
/// blocks signals, names itself, waits to be read, exits.
fn frozen(mid: i64) -> ! {
    let run = RUN_PID.load(Ordering::Relaxed) as i64;
    if mid > 0 {
        // The intermediate exits right after telling our pid; 5 s at most.
        for _ in 0..5000 {
            if parent() != mid {
                break;
            }
            crate::sys::sleep_ns(1_000_000);
        }
    }
    // SAFETY: raw system calls on arguments we own; none touches the memory
    // memtrace reads except this thread's stack.
    unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0usize,
            0usize,
            0usize,
        );
        // After PDEATHSIG: a parent that dies from now on kills us.
        if run <= 0 || parent() != run {
            libc::syscall(libc::SYS_exit_group, 0);
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
    }
    kill_after(LIFETIME_S);
    // SAFETY: prctl reads our NUL-terminated name.
    unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_NAME,
            RUNNING_NAME.as_ptr(),
            0usize,
            0usize,
            0usize,
        );
    }
    // Ticks, not a deadline: a copy stopped by memtrace run counts none.
    for _ in 0..IDLE_S * 10 {
        crate::sys::sleep_ns(100_000_000);
    }
    // SAFETY: exit_group has an integer argument.
    unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    #[allow(clippy::empty_loop)]
    loop {}
}
