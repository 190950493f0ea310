//! The scanner process: starting it (`memtrace __scan`) with pipes or the
//! [`Mailbox`] for a channel, and relaying its records into the log.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicU64, Ordering};

use memtrace_format::kernel::*;

use super::{TIMEOUT_S, done, put};
use crate::sys;

/// How the scanner's records reach the exiting thread.
enum Channel {
    /// Our end of the pipe that is the scanner's standard output.
    Pipe(c_int),
    /// [`MAILBOX`]: the process had no descriptor left for pipes.
    Mailbox,
}

/// The running scanner: its pid and where its records come from.
pub(super) struct Helper {
    pid: i64,
    from: Channel,
}

/// The largest record the scanner may send, in values.
const MAX_VALUES: usize = 800;

/// Bytes of the mailbox's ring ([`Mailbox`]).
pub const MAILBOX_RING: usize = 64 * 1024;

/// The channel to the scanner that needs no descriptor, for a process that
/// has none left (`EMFILE` from `pipe2`: a program at its `RLIMIT_NOFILE`):
/// the scanner (`memtrace __scan --mailbox ADDR`) reads and writes it
/// through `/proc/PID/mem`, which it opens anyway to scan the process.
/// `go` is set once the scanner may trace the process; the scanner writes
/// its frames into `ring` (at `written % MAILBOX_RING`) and then raises
/// `written`; the exiting thread copies them out and raises `read`, which
/// the scanner waits on when the ring is full. Untouched (and so never
/// resident) unless used.
#[repr(C, align(64))]
pub struct Mailbox {
    go: AtomicU64,
    written: AtomicU64,
    read: AtomicU64,
    ring: UnsafeCell<[u8; MAILBOX_RING]>,
}
// SAFETY: `ring` is written only by the scanner (another process, through
// /proc/PID/mem) below `read + MAILBOX_RING` and above `read`, and read by
// the exiting thread alone, below `written`.
unsafe impl Sync for Mailbox {}
pub(super) static MAILBOX: Mailbox = Mailbox {
    go: AtomicU64::new(0),
    written: AtomicU64::new(0),
    read: AtomicU64::new(0),
    ring: UnsafeCell::new([0; MAILBOX_RING]),
};

/// What one look at the scanner's channel found.
enum Got {
    /// This many bytes, appended to the buffer.
    Bytes(usize),
    /// Nothing yet.
    Nothing,
    /// The scanner is gone or closed its output.
    End,
}

impl Helper {
    /// Starts the scanner with `argv` and `envp` (NULL-terminated arrays of
    /// NUL-terminated strings), its standard input and output on two pipes;
    /// if the process has no descriptor left for them, with `mailbox_arg`
    /// (`--mailbox ADDR`, two strings) inserted before argv's NULL and
    /// [`MAILBOX`] for a channel.
    pub(super) fn start(
        argv: &[*const u8],
        mailbox_arg: [*const u8; 2],
        envp: &[*const u8],
    ) -> Option<Helper> {
        let mut out = [-1i32; 2];
        let mut go = [-1i32; 2];
        // SAFETY: pipe2 writes two descriptors into each array.
        let piped = unsafe {
            if libc::syscall(libc::SYS_pipe2, out.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                false
            } else if libc::syscall(libc::SYS_pipe2, go.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                close(out[0]);
                close(out[1]);
                false
            } else {
                true
            }
        };
        if !piped && !matches!(sys_errno(), libc::EMFILE | libc::ENFILE) {
            return None;
        }
        let mut with_mailbox = [core::ptr::null::<u8>(); 12];
        if !piped {
            let n = argv.len() - 1;
            if n + 3 > with_mailbox.len() {
                return None;
            }
            with_mailbox[..n].copy_from_slice(&argv[..n]);
            with_mailbox[n..n + 2].copy_from_slice(&mailbox_arg);
        }
        let argv: &[*const u8] = if piped { argv } else { &with_mailbox };
        // SAFETY: getpid has no arguments.
        let me = unsafe { libc::syscall(libc::SYS_getpid) };
        let pid = crate::snapshot::raw_fork(0);
        if pid == 0 {
            // The child: only raw system calls, then exec.
            // SAFETY: descriptor shuffling on our own pipes (the child's
            // copies of the process's descriptors are closed, not touched),
            // then execve with the NULL-terminated arrays built by the caller.
            unsafe {
                libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // A process killed before the line above left us an orphan
                // that PDEATHSIG will never kill: go (the scanner would
                // otherwise take its new parent for the process).
                if libc::syscall(libc::SYS_getppid) != me {
                    libc::syscall(libc::SYS_exit_group, 127);
                }
                if piped {
                    let i = libc::syscall(libc::SYS_fcntl, go[0], libc::F_DUPFD, 64);
                    let o = libc::syscall(libc::SYS_fcntl, out[1], libc::F_DUPFD, 64);
                    if i < 0 || o < 0 {
                        libc::syscall(libc::SYS_exit_group, 127);
                    }
                    libc::syscall(libc::SYS_dup3, i, 0, 0);
                    libc::syscall(libc::SYS_dup3, o, 1, 0);
                }
                let from = if piped { 2u32 } else { 0 };
                if libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32) != 0 {
                    for fd in from as i64..4096 {
                        libc::syscall(libc::SYS_close, fd);
                    }
                }
                if !piped {
                    // Standard input, output and error on /dev/null.
                    let null = libc::syscall(
                        libc::SYS_openat,
                        libc::AT_FDCWD,
                        c"/dev/null".as_ptr(),
                        libc::O_RDWR,
                    );
                    if null == 0 {
                        libc::syscall(libc::SYS_dup3, 0, 1, 0);
                    }
                }
                libc::syscall(libc::SYS_execve, argv[0], argv.as_ptr(), envp.as_ptr());
                libc::syscall(libc::SYS_exit_group, 127);
            }
        }
        if piped {
            // SAFETY: closing the child's ends, which are ours.
            unsafe {
                close(go[0]);
                close(out[1]);
            }
        }
        if pid < 0 {
            if piped {
                // SAFETY: our own descriptors.
                unsafe {
                    close(out[0]);
                    close(go[1]);
                }
            }
            return None;
        }
        // SAFETY: prctl with integer arguments; without Yama it fails harmlessly.
        unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_PTRACER, pid, 0, 0, 0) };
        if piped {
            // The go: the end of the scanner's standard input. Closing, not
            // writing: a scanner that is already gone must not earn the
            // program a SIGPIPE.
            // SAFETY: our own descriptor.
            unsafe { close(go[1]) };
            Some(Helper {
                pid,
                from: Channel::Pipe(out[0]),
            })
        } else {
            MAILBOX.go.store(1, Ordering::Release);
            Some(Helper {
                pid,
                from: Channel::Mailbox,
            })
        }
    }

    /// Waits at most `ms` milliseconds for the scanner's next bytes, which it
    /// appends to `buf[*have..]`.
    fn next(&self, buf: &mut [u8], have: usize, ms: c_int, reaped: &mut bool) -> Got {
        match self.from {
            Channel::Pipe(fd) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll on one pollfd we own.
                let r =
                    unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, ms) };
                if r == 0 || (r < 0 && sys_errno() == libc::EINTR) {
                    return Got::Nothing;
                }
                if r < 0 {
                    return Got::End;
                }
                // SAFETY: reads into the free part of our buffer.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_read,
                        fd,
                        buf.as_mut_ptr().add(have),
                        buf.len() - have,
                    )
                };
                match n {
                    n if n > 0 => Got::Bytes(n as usize),
                    n if n < 0 && sys_errno() == libc::EINTR => Got::Nothing,
                    _ => Got::End,
                }
            }
            Channel::Mailbox => {
                let read = MAILBOX.read.load(Ordering::Relaxed);
                let written = MAILBOX.written.load(Ordering::Acquire);
                if written > read {
                    let n = ((written - read) as usize).min(buf.len() - have);
                    let at = (read % MAILBOX_RING as u64) as usize;
                    let n = n.min(MAILBOX_RING - at);
                    // SAFETY: bytes below `written`, which the scanner wrote
                    // before raising it and leaves alone until `read` passes them.
                    let ring = unsafe { &*MAILBOX.ring.get() };
                    buf[have..have + n].copy_from_slice(&ring[at..at + n]);
                    MAILBOX.read.store(read + n as u64, Ordering::Release);
                    return Got::Bytes(n);
                }
                if *reaped {
                    return Got::End;
                }
                let mut ws = 0i32;
                // SAFETY: polls our own child (exit signal 0: __WALL).
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_wait4,
                        self.pid,
                        &mut ws as *mut i32,
                        libc::__WALL | libc::WNOHANG,
                        0usize,
                    )
                };
                if r == self.pid {
                    // Gone: whatever it wrote before is still to be read.
                    *reaped = true;
                    return Got::Nothing;
                }
                sys::sleep_ns(ms.min(1) as u64 * 1_000_000);
                Got::Nothing
            }
        }
    }

    /// Writes the scanner's records into the log until it ends or the time
    /// is up, then reaps it.
    pub(super) fn relay(self, started: u64) {
        let deadline = started + TIMEOUT_S.load(Ordering::Relaxed) as u64 * 1_000_000_000;
        let mut buf = [0u8; 16 * 1024];
        let mut have = 0usize;
        let mut finished = false;
        let mut reaped = false;
        let mut status = SCAN_FAILED;
        loop {
            let now = sys::now_ns();
            if now >= deadline {
                status = SCAN_TIMED_OUT;
                break;
            }
            let ms = ((deadline - now) / 1_000_000).clamp(1, 1000) as c_int;
            match self.next(&mut buf, have, ms, &mut reaped) {
                Got::Nothing => continue,
                Got::End => break,
                Got::Bytes(n) => have += n,
            }
            match frames(&mut buf, &mut have) {
                Frames::More => {}
                Frames::Done => {
                    finished = true;
                    if matches!(self.from, Channel::Mailbox) {
                        break;
                    }
                }
                Frames::Bad => break,
            }
        }
        if !reaped {
            if status == SCAN_TIMED_OUT || !finished {
                // SAFETY: our own child, not yet reaped, so its pid is still its own.
                unsafe { libc::syscall(libc::SYS_kill, self.pid, libc::SIGKILL) };
            }
            let mut ws = 0i32;
            // SAFETY: reaps our own child (exit signal 0: __WALL).
            while unsafe {
                libc::syscall(
                    libc::SYS_wait4,
                    self.pid,
                    &mut ws as *mut i32,
                    libc::__WALL,
                    0usize,
                )
            } < 0
                && sys_errno() == libc::EINTR
            {}
        }
        if let Channel::Pipe(fd) = self.from {
            // SAFETY: our own descriptor.
            unsafe { close(fd) };
        }
        if !finished {
            done(status, started);
        }
    }
}

/// What [`frames`] found.
enum Frames {
    /// Wants more bytes.
    More,
    /// The scanner's SCAN_DONE record was written.
    Done,
    /// Not the scanner's protocol.
    Bad,
}

/// Writes the complete frames at the start of `buf[..*have]` as KERNEL
/// records and moves the rest to the front. A frame is `[kind, n, n values]`
/// as little-endian u64s; only REACH and SCAN_DONE records are taken.
fn frames(buf: &mut [u8; 16 * 1024], have: &mut usize) -> Frames {
    let word = |b: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let mut at = 0usize;
    let mut out = Frames::More;
    let mut values = [0u64; MAX_VALUES];
    while *have - at >= 16 {
        let b = &buf[at..*have];
        let (kind, n) = (word(b, 0), word(b, 1) as usize);
        if n > MAX_VALUES || !(kind == KIND_REACH as u64 || kind == KIND_SCAN_DONE as u64) {
            return Frames::Bad;
        }
        if b.len() < 16 + n * 8 {
            break;
        }
        for (i, v) in values[..n].iter_mut().enumerate() {
            *v = word(b, 2 + i);
        }
        put(kind as u8, &values[..n]);
        if kind == KIND_SCAN_DONE as u64 {
            out = Frames::Done;
        }
        at += 16 + n * 8;
    }
    buf.copy_within(at..*have, 0);
    *have -= at;
    out
}

/// Closes a descriptor of ours.
///
/// # Safety
/// `fd` must be ours.
unsafe fn close(fd: c_int) {
    // SAFETY: by contract.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

fn sys_errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, valid for its life.
    unsafe { *libc::__errno_location() }
}
