//! The reachability scan at exit, taken as memcheck and LeakSanitizer take it.
//!
//! ## Roots
//! - **The exiting thread's stack from its stack pointer at the entry to
//!   `exit`, `_exit` or `_Exit`, or at `main`'s return** — never from inside
//!   memtrace's exit path, whose frames (and the stale words the program's
//!   deeper calls left below `main`'s frame) are dead. The exported `exit`,
//!   `_exit`, `_Exit` and a trampoline around `main` (installed by
//!   interposing `__libc_start_main`) are naked functions that store the
//!   stack pointer and the callee-saved registers (the caller's values: what
//!   `main` still holds in registers) into [`EXIT_REGS`] before anything
//!   else runs.
//! - **Every other thread's stack from its own stack pointer, and its
//!   registers** (general-purpose and vector): the scanner stops each thread
//!   with ptrace (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`, which neither runs a
//!   signal handler nor makes a blocked system call fail with `EINTR`),
//!   reads its registers, and lets it go when the scan is over.
//!
//! ## How
//! At exit, after libc's clean-up ([`crate::init::finish`]), [`at_exit`]
//! records what the scan needs from inside (`KIND_EXIT_SCAN`: the exiting
//! thread's registers, memtrace's own memory, which is never a root), then
//! starts the scanner — the `memtrace` binary (`MEMTRACE_SCANNER`, which
//! `memtrace run` sets to itself, or the `memtrace` next to this library) as
//! `memtrace __scan` — as a child with a raw `clone` (exit signal 0: the
//! program gets no `SIGCHLD`, and a `wait(-1)` of the program's does not see
//! it; `PR_SET_PDEATHSIG` kills it if the process dies), allows it to trace
//! the process (`PR_SET_PTRACER`, for Yama), and waits for its records on a
//! pipe, at most `MEMTRACE_SCAN_TIMEOUT` seconds (300). The scanner replays
//! the log, stops the other threads, reads the process's memory through
//! `/proc/PID/mem`, classifies every live block as memcheck does and writes
//! REACH records back; this thread writes them into the log. So the kinds are
//! in the log by the time the program has exited, under `memtrace run`,
//! `memtrace check` and plain `LD_PRELOAD` alike. No frozen copy is made:
//! the process itself is the image, still and whole while its threads are
//! stopped and this one waits.
//!
//! ## The scanner never outlives the scan
//! - **The process dies mid-scan** (killed by any signal, from any thread):
//!   the scanner gets `SIGKILL` (`PR_SET_PDEATHSIG`, set in the child before
//!   `execve` and kept by it, since memtrace is not set-id; set again by the
//!   scanner itself). A process that died before the child set it would
//!   leave an orphan that nothing kills, so the child checks after setting
//!   that its parent is still the process, and exits otherwise. The threads
//!   it had stopped are let go by the kernel when it dies.
//! - `PDEATHSIG` fires when the parent *thread* ends: the thread that starts
//!   the scanner is the one that waits for it, so that is exactly when the
//!   wait is cut short.
//! - **The time is up** (`MEMTRACE_SCAN_TIMEOUT`) or the scanner speaks another
//!   protocol: the exiting thread kills it (`SIGKILL` to its own child, not
//!   yet reaped, so the pid cannot have been reused) and reaps it.
//! - **The scanner dies or closes its output**: the wait ends at once and
//!   the log names the failure.
//!
//! Under a seccomp filter nothing is started (a system call the filter does
//! not expect could kill the program); the log says why there are no kinds
//! (`KIND_SCAN_DONE`), as it does for every other way the scan can fail.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::*;

use crate::{record, sys, writer};

mod entry;
mod scanner;

pub use entry::{__libc_start_main, _Exit, _exit, exit};
use scanner::{Helper, MAILBOX};
pub use scanner::{MAILBOX_RING, Mailbox};

/// Whether to scan at exit (`MEMTRACE_REACH`, on unless `0`).
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// Whether a heap block was ever recorded in this process's memory (set by
/// the first allocation; a fork child inherits it, an exec'd image starts
/// without). Without one there is nothing to classify at exit, and no
/// scanner is started: a tree of short processes (`make`, a shell loop of
/// `/bin/true`) does not pay a process per exit for nothing.
static HEAP_USED: AtomicBool = AtomicBool::new(false);

/// Notes that a heap block was recorded (see `HEAP_USED`): one relaxed
/// load on the hot path, one store ever.
#[inline(always)]
pub fn heap_used() {
    if !HEAP_USED.load(Ordering::Relaxed) {
        HEAP_USED.store(true, Ordering::Relaxed);
    }
}

/// Seconds the exit waits for the scanner.
static TIMEOUT_S: AtomicU32 = AtomicU32::new(300);

/// The exiting thread's callee-saved registers and stack pointer, stored by
/// the naked entry points: `[rbx, rbp, r12, r13, r14, r15, sp]`.
#[repr(C)]
pub struct ExitRegs(UnsafeCell<[u64; 7]>);
// SAFETY: written by the thread that calls exit (before it sets EXIT_TID with
// release ordering) and read by the same thread in the exit handler.
unsafe impl Sync for ExitRegs {}
pub static EXIT_REGS: ExitRegs = ExitRegs(UnsafeCell::new([0; 7]));

/// The thread that stored [`EXIT_REGS`], 0 if none.
static EXIT_TID: AtomicU32 = AtomicU32::new(0);

const PATH_CAP: usize = 4096;
/// NUL-terminated strings set once by the constructor.
struct Text(UnsafeCell<[u8; PATH_CAP]>);
// SAFETY: written only by the constructor, before any thread of ours runs,
// and read afterwards.
unsafe impl Sync for Text {}
/// The scanner's path.
static SCANNER: Text = Text(UnsafeCell::new([0; PATH_CAP]));
/// `MEMTRACE_LEAK_HEURISTICS=...` for the scanner's environment, or empty.
static HEURISTICS: Text = Text(UnsafeCell::new([0; PATH_CAP]));
/// `MEMTRACE_LIVE_PACKER=...` for the scanner's environment, or empty: the
/// socket of `memtrace run`'s live packer, which may already hold most of
/// the live set the scanner needs.
static LIVE_PACKER: Text = Text(UnsafeCell::new([0; PATH_CAP]));

/// Reads the environment (called by the constructor): `MEMTRACE_REACH`,
/// `MEMTRACE_SCANNER`, `MEMTRACE_SCAN_TIMEOUT`, `MEMTRACE_LEAK_HEURISTICS`,
/// `MEMTRACE_LIVE_PACKER`.
pub fn init(
    reach: Option<&[u8]>,
    scanner: Option<&[u8]>,
    timeout: Option<&[u8]>,
    heuristics: Option<&[u8]>,
    live_packer: Option<&[u8]>,
) {
    AT_EXIT.store(reach != Some(b"0"), Ordering::Relaxed);
    if let Some(t) = timeout.and_then(sys::parse_decimal) {
        TIMEOUT_S.store(t.clamp(1, 86_400) as u32, Ordering::Relaxed);
    }
    // SAFETY: see Text: the constructor runs before any other thread of ours.
    let buf = unsafe { &mut *SCANNER.0.get() };
    match scanner {
        Some(s) if !s.is_empty() => copy_z(buf, &[s]),
        _ => beside_this_library(buf),
    }
    if let Some(h) = heuristics {
        // SAFETY: as above.
        let buf = unsafe { &mut *HEURISTICS.0.get() };
        copy_z(buf, &[b"MEMTRACE_LEAK_HEURISTICS=", h]);
    }
    if let Some(p) = live_packer.filter(|p| !p.is_empty()) {
        // SAFETY: as above.
        let buf = unsafe { &mut *LIVE_PACKER.0.get() };
        copy_z(buf, &[b"MEMTRACE_LIVE_PACKER=", p]);
    }
}

/// Concatenates `parts` into `buf`, NUL-terminated; empty if it does not fit.
fn copy_z(buf: &mut [u8; PATH_CAP], parts: &[&[u8]]) {
    let mut n = 0;
    for p in parts {
        if n + p.len() >= PATH_CAP {
            buf[0] = 0;
            return;
        }
        buf[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    buf[n] = 0;
}

/// `memtrace` in the directory of this library (made absolute with the
/// working directory at start-up, which is where a relative `LD_PRELOAD`
/// path was found).
fn beside_this_library(buf: &mut [u8; PATH_CAP]) {
    buf[0] = 0;
    // SAFETY: Dl_info is a plain C struct of pointers: zero is valid.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let here = &AT_EXIT as *const AtomicBool as *const c_void;
    // SAFETY: dladdr fills `info` for an address inside this library; it
    // takes the loader's lock but does not allocate.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return;
    }
    // SAFETY: dli_fname is the object's NUL-terminated name, owned by the loader.
    let name = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    let dir = match name.iter().rposition(|&c| c == b'/') {
        Some(i) => &name[..i],
        None => b".",
    };
    if dir.first() == Some(&b'/') {
        copy_z(buf, &[dir, b"/memtrace"]);
        return;
    }
    let mut cwd = [0u8; PATH_CAP];
    // SAFETY: getcwd writes at most PATH_CAP bytes, NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_getcwd, cwd.as_mut_ptr(), PATH_CAP) };
    if r <= 0 {
        return;
    }
    let len = cwd.iter().position(|&c| c == 0).unwrap_or(0);
    copy_z(buf, &[&cwd[..len], b"/", dir, b"/memtrace"]);
}

/// Records one KERNEL record of `kind`.
fn put(kind: u8, values: &[u64]) {
    record::marker(|b, t| encode::kernel(b, t, kind, values));
}

/// Records the end of a scan that did not run (or did not finish).
fn done(status: u64, started_ns: u64) {
    let us = sys::now_ns().saturating_sub(started_ns) / 1000;
    put(KIND_SCAN_DONE, &[status, 0, 0, 0, us]);
}

/// Writes `v` in decimal into `buf`, NUL-terminated; returns `buf`.
fn decimal(v: u64, buf: &mut [u8; 24]) -> &[u8; 24] {
    let n = sys::write_decimal(v, buf);
    buf[n] = 0;
    buf
}

/// The scan at exit (see the module docs); called once by the exit path,
/// after libc's clean-up.
pub fn at_exit() {
    if !AT_EXIT.load(Ordering::Relaxed) || !writer::active() {
        return;
    }
    let started = sys::now_ns();
    if crate::sandbox::active() {
        // Not even /proc/self/status can be read under the program's filter.
        return done(SCAN_SECCOMP, started);
    }
    let me = sys::gettid();
    let mut regs = [0u64; 7];
    let how = if EXIT_TID.load(Ordering::Acquire) == me {
        // SAFETY: stored by this thread's exit entry (EXIT_TID says so).
        regs = unsafe { *EXIT_REGS.0.get() };
        EXIT_AT_CALL
    } else {
        regs[6] = &regs as *const [u64; 7] as u64;
        EXIT_AT_HANDLER
    };
    let here = &AT_EXIT as *const AtomicBool as usize;
    let (mod_start, mod_end) =
        sys::DlFindObject::find(here).map_or((0, 0), |o| (o.map_start as u64, o.map_end as u64));
    let (sample_start, sample_len) = crate::sample::set_range().unwrap_or((0, 0));
    put(
        KIND_EXIT_SCAN,
        &[
            me as u64,
            regs[6],
            regs[0],
            regs[1],
            regs[2],
            regs[3],
            regs[4],
            regs[5],
            &sys::own::TABLE as *const sys::own::Table as u64,
            sys::own::SLOTS as u64,
            mod_start,
            mod_end,
            sample_start,
            sample_len,
            sys::own::OVERFLOW.load(Ordering::Relaxed),
            how,
        ],
    );
    if !HEAP_USED.load(Ordering::Relaxed) {
        // No block was ever recorded: every live block (none) is classified.
        return done(SCAN_OK, started);
    }
    let Some(log_fd) = writer::log_fd() else {
        return done(SCAN_BAD_LOG, started);
    };
    if crate::sandbox::filtered().unwrap_or(false) {
        return done(SCAN_SECCOMP, started);
    }
    start_scanner(me as u64, log_fd as u64, started);
}

/// Starts `memtrace __scan` for the exiting thread `me` and the log's
/// descriptor `log_fd`, and relays its records (or says why it could not).
fn start_scanner(me: u64, log_fd: u64, started: u64) {
    // SAFETY: see Text.
    let scanner = unsafe { &*SCANNER.0.get() };
    // SAFETY: faccessat on a NUL-terminated path.
    let ok = scanner[0] != 0
        && unsafe {
            libc::syscall(
                libc::SYS_faccessat,
                libc::AT_FDCWD,
                scanner.as_ptr(),
                libc::X_OK,
            )
        } == 0;
    if !ok {
        return done(SCAN_NO_SCANNER, started);
    }
    let mut tid = [0u8; 24];
    let mut fd = [0u8; 24];
    let mut header = [0u8; 24];
    let argv: [*const u8; 9] = [
        scanner.as_ptr(),
        c"__scan".as_ptr().cast(),
        c"--tid".as_ptr().cast(),
        decimal(me, &mut tid).as_ptr(),
        c"--fd".as_ptr().cast(),
        decimal(log_fd, &mut fd).as_ptr(),
        c"--header".as_ptr().cast(),
        decimal(writer::header_addr(), &mut header).as_ptr(),
        core::ptr::null(),
    ];
    // SAFETY: see Text.
    let heur = unsafe { &*HEURISTICS.0.get() };
    // SAFETY: see Text.
    let packer = unsafe { &*LIVE_PACKER.0.get() };
    // The variables set, then the terminating null.
    let mut envp: [*const u8; 4] = [
        c"MEMTRACE_SCAN_HELPER=1".as_ptr().cast(),
        core::ptr::null(),
        core::ptr::null(),
        core::ptr::null(),
    ];
    let mut n = 1;
    for v in [heur, packer] {
        if v[0] != 0 {
            envp[n] = v.as_ptr();
            n += 1;
        }
    }
    let mut mailbox = [0u8; 24];
    let mailbox_arg = [
        c"--mailbox".as_ptr().cast(),
        decimal(&MAILBOX as *const Mailbox as u64, &mut mailbox).as_ptr(),
    ];
    match Helper::start(&argv, mailbox_arg, &envp) {
        Some(h) => h.relay(started),
        None => done(SCAN_NOT_STARTED, started),
    }
}
