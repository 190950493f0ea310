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
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::*;

use crate::{record, sys, writer};

/// Whether to scan at exit (`MEMTRACE_REACH`, on unless `0`).
static AT_EXIT: AtomicBool = AtomicBool::new(false);

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

/// The program's `main`, called by [`main_trampoline`].
static REAL_MAIN: AtomicUsize = AtomicUsize::new(0);

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

/// Reads the environment (called by the constructor): `MEMTRACE_REACH`,
/// `MEMTRACE_SCANNER`, `MEMTRACE_SCAN_TIMEOUT`, `MEMTRACE_LEAK_HEURISTICS`.
pub fn init(
    reach: Option<&[u8]>,
    scanner: Option<&[u8]>,
    timeout: Option<&[u8]>,
    heuristics: Option<&[u8]>,
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

/// Interposes glibc's `__libc_start_main` to run `main` through
/// a trampoline, which notes the registers at its return.
///
/// # Safety
/// As glibc's `__libc_start_main` (called by the executable's `_start`).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __libc_start_main(
    main: usize,
    argc: c_int,
    argv: *mut *mut c_char,
    init: usize,
    fini: usize,
    rtld_fini: usize,
    stack_end: *mut c_void,
) -> c_int {
    type Start = unsafe extern "C" fn(
        usize,
        c_int,
        *mut *mut c_char,
        usize,
        usize,
        usize,
        *mut c_void,
    ) -> c_int;
    let Some(real) = crate::real::get(&crate::real::START_MAIN) else {
        // No C library to start the program: nothing sensible is left.
        // SAFETY: exit_group ends the process.
        unsafe { libc::syscall(libc::SYS_exit_group, 127) };
        return 127;
    };
    let main = if crate::thread::ENABLED.load(Ordering::Acquire) {
        REAL_MAIN.store(main, Ordering::Release);
        main_trampoline as *const () as usize
    } else {
        main
    };
    // SAFETY: the next definition has this signature; the arguments are the
    // caller's, with `main` possibly replaced by the trampoline, which has
    // main's signature.
    unsafe {
        core::mem::transmute::<usize, Start>(real)(
            main, argc, argv, init, fini, rtld_fini, stack_end,
        )
    }
}

/// Calls the program's `main`, then stores the callee-saved registers (the
/// C library's, restored by `main`) and the stack pointer the caller gets
/// back, and returns main's result. What main's frame and its callees left
/// below that point is dead.
///
/// # Safety
/// Called by `__libc_start_main` with main's arguments.
#[unsafe(naked)]
unsafe extern "C" fn main_trampoline(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut c_void,
) -> c_int {
    // With call frame information of its own, so that stacks unwind through
    // it to `__libc_start_call_main` and `_start` as they did without it.
    core::arch::naked_asm!(
        ".cfi_startproc",
        "sub rsp, 8",
        ".cfi_adjust_cfa_offset 8",
        "call qword ptr [rip + {main}]",
        "lea rcx, [rip + {regs}]",
        "mov [rcx], rbx",
        "mov [rcx + 8], rbp",
        "mov [rcx + 16], r12",
        "mov [rcx + 24], r13",
        "mov [rcx + 32], r14",
        "mov [rcx + 40], r15",
        "lea rdx, [rsp + 16]",
        "mov [rcx + 48], rdx",
        "mov [rsp], rax",
        "call {note}",
        "mov rax, [rsp]",
        "add rsp, 8",
        ".cfi_adjust_cfa_offset -8",
        "ret",
        ".cfi_endproc",
        main = sym REAL_MAIN,
        regs = sym EXIT_REGS,
        note = sym note_exit_thread,
    )
}

/// Marks [`EXIT_REGS`] as this thread's.
extern "C" fn note_exit_thread() {
    // Under the program's seccomp filter there is no scan to take them for.
    if !crate::sandbox::active() {
        EXIT_TID.store(sys::gettid(), Ordering::Release);
    }
}

/// A naked entry point that stores the callee-saved registers and the
/// caller's stack pointer into [`EXIT_REGS`], then jumps to `$imp` (which
/// gets the same arguments and return address).
macro_rules! exit_entry {
    ($(#[$m:meta])* $name:ident => $imp:path) => {
        $(#[$m])*
        #[cfg_attr(not(test), unsafe(no_mangle))]
        #[allow(non_snake_case)]
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name(status: c_int) -> ! {
            core::arch::naked_asm!(
                "lea rax, [rip + {regs}]",
                "mov [rax], rbx",
                "mov [rax + 8], rbp",
                "mov [rax + 16], r12",
                "mov [rax + 24], r13",
                "mov [rax + 32], r14",
                "mov [rax + 40], r15",
                "lea rcx, [rsp + 8]",
                "mov [rax + 48], rcx",
                "jmp {imp}",
                regs = sym EXIT_REGS,
                imp = sym $imp,
            )
        }
    };
}

exit_entry!(
    /// # Safety
    /// As `exit(3)`.
    exit => exit_impl
);
exit_entry!(
    /// # Safety
    /// As `_exit(2)`.
    _exit => underscore_exit_impl
);
exit_entry!(
    /// # Safety
    /// As `_Exit(2)`.
    _Exit => upper_exit_impl
);

unsafe extern "C" fn exit_impl(status: c_int) -> ! {
    note_exit_thread();
    if let Some(f) = crate::real::get(&crate::real::EXIT) {
        // SAFETY: the real exit has this signature and does not return.
        unsafe { core::mem::transmute::<usize, crate::real::ExitFn>(f)(status) }
    }
    // SAFETY: exit_group ends the process.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable_exit()
}

unsafe extern "C" fn underscore_exit_impl(status: c_int) -> ! {
    note_exit_thread();
    crate::init::finish(memtrace_format::ExitHow::UnderscoreExit, status);
    if let Some(f) = crate::real::get(&crate::real::EXIT_) {
        // SAFETY: the real _exit has this signature and does not return.
        unsafe { core::mem::transmute::<usize, crate::real::ExitFn>(f)(status) }
    }
    // SAFETY: exit_group ends the process.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable_exit()
}

unsafe extern "C" fn upper_exit_impl(status: c_int) -> ! {
    note_exit_thread();
    crate::init::finish(memtrace_format::ExitHow::UnderscoreExit, status);
    if let Some(f) = crate::real::get(&crate::real::EXIT_UPPER) {
        // SAFETY: the real _Exit has this signature and does not return.
        unsafe { core::mem::transmute::<usize, crate::real::ExitFn>(f)(status) }
    }
    // SAFETY: exit_group ends the process.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable_exit()
}

/// exit_group does not return; spin politely if the kernel somehow disagrees.
fn unreachable_exit() -> ! {
    loop {
        core::hint::spin_loop();
    }
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

/// Whether the process runs under a seccomp filter (`Seccomp:` in
/// /proc/self/status is not 0).
fn under_seccomp() -> bool {
    let mut buf = [0u8; 4096];
    let n = sys::read_file(c"/proc/self/status", &mut buf);
    let s = &buf[..n];
    let key = b"\nSeccomp:";
    match s.windows(key.len()).position(|w| w == key) {
        Some(i) => s[i + key.len()..]
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|&c| c != b'0'),
        None => false,
    }
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
    let Some(log_fd) = writer::log_fd() else {
        return done(SCAN_BAD_LOG, started);
    };
    if under_seccomp() {
        return done(SCAN_SECCOMP, started);
    }
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
        decimal(me as u64, &mut tid).as_ptr(),
        c"--fd".as_ptr().cast(),
        decimal(log_fd as u64, &mut fd).as_ptr(),
        c"--header".as_ptr().cast(),
        decimal(writer::header_addr(), &mut header).as_ptr(),
        core::ptr::null(),
    ];
    // SAFETY: see Text.
    let heur = unsafe { &*HEURISTICS.0.get() };
    let envp: [*const u8; 3] = [
        c"MEMTRACE_SCAN_HELPER=1".as_ptr().cast(),
        if heur[0] != 0 {
            heur.as_ptr()
        } else {
            core::ptr::null()
        },
        core::ptr::null(),
    ];
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

/// How the scanner's records reach the exiting thread.
enum Channel {
    /// Our end of the pipe that is the scanner's standard output.
    Pipe(c_int),
    /// [`MAILBOX`]: the process had no descriptor left for pipes.
    Mailbox,
}

/// The running scanner: its pid and where its records come from.
struct Helper {
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
static MAILBOX: Mailbox = Mailbox {
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
    fn start(
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
    fn relay(self, started: u64) {
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
