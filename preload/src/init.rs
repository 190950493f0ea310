//! Start-up, fork and exit.
#![cfg_attr(test, allow(dead_code))]
//!
//! - The constructor (in `.init_array`) resolves the next definitions, opens
//!   the log, maps the global tables, registers the fork-child and exit
//!   handlers, records the loaded objects, and only then enables recording.
//!   Calls made before that are passed through unrecorded.
//! - A setuid/setgid program (AT_SECURE) is never traced: no file is touched;
//!   nor is an image exec'd under a seccomp filter (`MEMTRACE_SANDBOXED`).
//! - The exit handler is registered with `__cxa_atexit` and no DSO handle
//!   before the program's own handlers, so it runs after all of them and after
//!   the library destructors: it calls libc's (and libstdc++'s) clean-up of
//!   their own at-exit allocations, as valgrind does, bracketed by FREERES
//!   records, then marks the log as ended by exit.
//! - A fork child drops the parent's chunks and opens its own log.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memtrace_format::{ExitHow, encode};

use crate::{real, record, stacks, sys, thread, unwind, writer};

const PATH_CAP: usize = 4096;
struct PathBuf(core::cell::UnsafeCell<([u8; PATH_CAP], usize)>);
// SAFETY: written only by the constructor (before any thread of ours runs)
// and read afterwards, or rewritten in a single-threaded fork child.
unsafe impl Sync for PathBuf {}
static PATTERN: PathBuf = PathBuf(core::cell::UnsafeCell::new(([0; PATH_CAP], 0)));

static CXX_FREERES: AtomicUsize = AtomicUsize::new(0);
static LIBC_FREERES: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicBool = AtomicBool::new(false);

// Not in unit tests: the test harness must not trace itself.
#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    constructor;

/// Runs first of all constructors (the library is linked `-z initfirst`), so
/// it reads the environment from its arguments rather than from libc, whose
/// own constructor may not have run yet.
unsafe extern "C" fn constructor(
    _argc: c_int,
    _argv: *const *const c_char,
    envp: *const *const c_char,
) {
    // SAFETY: getauxval only reads the auxiliary vector.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return;
    }
    // An image exec'd under its parent's seccomp filter (see
    // `hooks::exec_env`): no log, no system call of ours.
    if env_var(envp, &crate::hooks::SANDBOXED_ENV.to_bytes()[..18]).is_some() {
        return;
    }
    real::resolve();
    sys::remember_exe();
    sys::start_clock_calibration();
    save_pattern(envp);
    writer::pool::init(env_var(envp, b"MEMTRACE_LOG_POOL"));
    if let Some(v) = env_var(envp, b"MEMTRACE_VERIFY_UNWIND") {
        let n = v
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .fold(0u32, |a, &c| {
                a.saturating_mul(10).saturating_add((c - b'0') as u32)
            });
        unwind::VERIFY_EVERY.store(n, Ordering::Relaxed);
    }
    crate::sample::init(
        env_var(envp, b"MEMTRACE_SAMPLE"),
        env_var(envp, b"MEMTRACE_SAMPLE_SEED"),
    );
    crate::kernel::init(env_var(envp, b"MEMTRACE_KERNEL_INTERVAL"));
    crate::scan::init(
        env_var(envp, b"MEMTRACE_REACH"),
        env_var(envp, b"MEMTRACE_SCANNER"),
        env_var(envp, b"MEMTRACE_SCAN_TIMEOUT"),
        env_var(envp, b"MEMTRACE_LEAK_HEURISTICS"),
        env_var(envp, b"MEMTRACE_LIVE_PACKER"),
    );
    if !open_log(0) {
        return;
    }
    crate::forks::init();
    unwind::init_self();
    unwind::init_cache();
    stacks::reset();
    // SAFETY: registering plain function pointers; glibc's tables for these
    // have static initial storage.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_child));
        sys::__cxa_atexit(at_exit, core::ptr::null_mut(), core::ptr::null_mut());
        LIBC_FREERES.store(
            libc::dlsym(libc::RTLD_DEFAULT, c"__libc_freeres".as_ptr()) as usize,
            Ordering::Relaxed,
        );
    }
    note_interposition();
    thread::ENABLED.store(true, Ordering::Release);
    // Record the loaded objects now, stamped with the start time.
    record::modules_changed();
    crate::snapshot::init_signal(
        env_var(envp, b"MEMTRACE_SNAPSHOT_SIGNAL"),
        env_var(envp, b"MEMTRACE_RUN_PID"),
    );
}

/// Finds `NAME=` in the NULL-terminated environment array `envp`.
fn env_var(envp: *const *const c_char, name: &[u8]) -> Option<&'static [u8]> {
    if envp.is_null() {
        return None;
    }
    let mut i = 0;
    loop {
        // SAFETY: envp is the NULL-terminated array the loader passed to constructors.
        let e = unsafe { *envp.add(i) };
        if e.is_null() {
            return None;
        }
        // SAFETY: each entry is a NUL-terminated string that lives as long as the process.
        let s = unsafe { core::ffi::CStr::from_ptr(e) }.to_bytes();
        if s.len() > name.len() && s.starts_with(name) && s[name.len()] == b'=' {
            return Some(&s[name.len() + 1..]);
        }
        i += 1;
    }
}

/// Copies MEMTRACE_OUTPUT (or the default pattern) into PATTERN.
fn save_pattern(envp: *const *const c_char) {
    let pat: &[u8] = match env_var(envp, b"MEMTRACE_OUTPUT") {
        Some(s) if !s.is_empty() => s,
        _ => b"memtrace.%e.%p.mtr",
    };
    // SAFETY: see PathBuf.
    let (buf, len) = unsafe { &mut *PATTERN.0.get() };
    let n = pat.len().min(PATH_CAP - 1);
    buf[..n].copy_from_slice(&pat[..n]);
    *len = n;
}

/// Expands the pattern for this process and opens the log.
fn open_log(forked_from: u32) -> bool {
    // SAFETY: see PathBuf.
    let (pat, plen) = unsafe { &*PATTERN.0.get() };
    let mut out = [0u8; PATH_CAP];
    let mut o = 0usize;
    let mut exe = [0u8; 1024];
    let exe_len = sys::exe(&mut exe);
    let base = match exe[..exe_len].iter().rposition(|&c| c == b'/') {
        Some(i) => &exe[i + 1..exe_len],
        None => &exe[..exe_len],
    };
    let mut digits = [0u8; 10];
    let dn = sys::write_decimal(sys::getpid() as u64, &mut digits);
    let mut i = 0;
    let limit = PATH_CAP - 16;
    while i < *plen && o < limit {
        let c = pat[i];
        if c == b'%' && i + 1 < *plen {
            match pat[i + 1] {
                b'p' => {
                    for &d in &digits[..dn] {
                        if o < limit {
                            out[o] = d;
                            o += 1;
                        }
                    }
                    i += 2;
                    continue;
                }
                b'e' => {
                    for &b in base {
                        if o < limit {
                            out[o] = b;
                            o += 1;
                        }
                    }
                    i += 2;
                    continue;
                }
                b'%' => {
                    out[o] = b'%';
                    o += 1;
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out[o] = c;
        o += 1;
        i += 1;
    }
    writer::open_log(&mut out, o, forked_from)
}

unsafe extern "C" fn after_fork_child() {
    child_starts();
}

/// Sets a fork child up with its own log: by the atfork handler after
/// `fork()`, or by the first event of a child whose fork ran no handlers
/// (`_Fork`, raw `clone`, `syscall(SYS_fork)`: see [`crate::forks`]).
pub fn child_starts() {
    crate::forks::rearm();
    if !thread::ENABLED.load(Ordering::Acquire) {
        return;
    }
    thread::ENABLED.store(false, Ordering::Release);
    if crate::sandbox::active() {
        // A log of its own would need the system calls the filter forbids:
        // the child is not traced (and never writes into the parent's log).
        return;
    }
    let parent = sys::getppid();
    thread::after_fork_child();
    writer::forget_log();
    stacks::reset();
    if open_log(parent) {
        thread::ENABLED.store(true, Ordering::Release);
        record::modules_after_fork();
    }
}

unsafe extern "C" fn at_exit(_: *mut c_void) {
    finish(ExitHow::Exit, 0);
}

/// Runs libc's clean-up of its own allocations and marks the end of the log.
/// Called once, by the exit handler or by `_exit`.
pub fn finish(how: ExitHow, status: c_int) {
    // A vfork child (sharing our memory until it execs or _exits) must
    // neither free libc's buffers nor mark the parent's log.
    if writer::clobbered() && writer::is_log_owner() && !FINISHED.swap(true, Ordering::AcqRel) {
        // Recording stopped (see `writer::program_replaces`): only the end
        // is marked, in the header.
        writer::set_state(how, status);
        return;
    }
    if !thread::ENABLED.load(Ordering::Acquire) || !writer::is_log_owner() {
        return;
    }
    if FINISHED.swap(true, Ordering::AcqRel) {
        return;
    }
    record::marker(|b, t| encode::freeres(b, t, 1));
    // Under the program's seccomp filter, libc's clean-up could make system
    // calls the bare program never makes at exit.
    let sandboxed = crate::sandbox::active();
    let cxx = CXX_FREERES.load(Ordering::Relaxed);
    if cxx > 1 && !sandboxed {
        // SAFETY: __gnu_cxx::__freeres() takes no arguments; valgrind calls it the same way at exit.
        unsafe { core::mem::transmute::<usize, unsafe extern "C" fn()>(cxx)() };
    }
    let libc_freeres = LIBC_FREERES.load(Ordering::Relaxed);
    if libc_freeres != 0 && !sandboxed {
        // SAFETY: __libc_freeres() takes no arguments and is meant to be called at exit.
        unsafe { core::mem::transmute::<usize, unsafe extern "C" fn()>(libc_freeres)() };
    }
    record::marker(|b, t| encode::freeres(b, t, 2));
    crate::scan::at_exit();
    crate::kernel::record_at_exit();
    record::marker(|b, t| encode::exit(b, t, how as u8, status as i64));
    writer::set_state(how, status);
}

/// Set by the module scan when it sees libstdc++; [`resolve_cxx_freeres`]
/// runs at the start of the next event, outside the recorder's guard.
pub static FREERES_PENDING: AtomicBool = AtomicBool::new(false);

/// Looks up libstdc++'s `__gnu_cxx::__freeres` once the module scan has seen
/// libstdc++, in the global scope or else in the local scope of a
/// `dlopen(RTLD_LOCAL)` that brought it (see `cxx_runtime`); once: a miss is
/// remembered (1). A failing `dlsym` allocates its error message, so this
/// runs at an event's start (`record`), never inside a hook's guard, where
/// that allocation would enter a hook within a hook. Done in normal context,
/// never at exit: a fork child's exit path must not wait on loader locks that
/// a parent thread held at the time of the fork.
pub fn resolve_cxx_freeres() {
    if CXX_FREERES.load(Ordering::Relaxed) != 0 {
        return;
    }
    let name = c"_ZN9__gnu_cxx9__freeresEv";
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    let mut f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    if f == 0 {
        f = crate::cxx_runtime::find(name, 0);
    }
    CXX_FREERES.store(if f == 0 { 1 } else { f }, Ordering::Relaxed);
}

/// Flags the log when the program's `malloc` is not ours: an executable that
/// links its own allocator statically comes before every preloaded library in
/// symbol lookup, and its heap calls never reach the hooks.
fn note_interposition() {
    // SAFETY: dlsym of a symbol that exists (libc defines malloc) does not allocate.
    let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as usize;
    // Our own references to `malloc` are interposed like everyone else's, so
    // compare objects, not addresses: which object holds the global `malloc`?
    let object_of = |addr: usize| sys::DlFindObject::find(addr).map_or(0, |o| o.map_start as usize);
    let ours = object_of(&FINISHED as *const AtomicBool as usize);
    if global == 0 || ours == 0 || object_of(global) == ours {
        return;
    }
    // A non-PIE executable that takes `malloc`'s address gets a canonical PLT
    // entry, which the lookup returns: a stub that jumps through the GOT to the
    // real `malloc` (ours, once bound). That is not an allocator of its own.
    if let Some(target) = plt_target(global)
        && (object_of(target) == ours || object_of(target) == object_of(global))
    {
        return;
    }
    writer::set_flags(memtrace_format::hdr::flag::MALLOC_NOT_INTERPOSED);
}

/// If the code at `addr` is a PLT stub (`jmp *GOT(%rip)`, possibly after
/// `endbr64` and a `bnd` prefix), the address its GOT slot holds.
fn plt_target(addr: usize) -> Option<usize> {
    // SAFETY: `addr` is a function's entry in a loaded object (dlsym returned
    // it); a PLT stub is 16 bytes, and any function there is readable code of
    // at least the 10 bytes looked at.
    let code = unsafe { core::slice::from_raw_parts(addr as *const u8, 10) };
    let at = match code {
        [0xff, 0x25, ..] => 0,
        [0xf3, 0x0f, 0x1e, 0xfa, 0xff, 0x25, ..] => 4,
        [0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, ..] => 5,
        _ => return None,
    };
    let disp = i32::from_le_bytes([code[at + 2], code[at + 3], code[at + 4], code[at + 5]]);
    let slot = (addr + at + 6).wrapping_add_signed(disp as isize);
    // The slot must be in a loaded object before it is read.
    sys::DlFindObject::find(slot)?;
    // SAFETY: `slot` is a GOT entry inside a loaded object, aligned as the
    // linker places GOT entries; reading it is how the stub itself jumps.
    Some(unsafe { core::ptr::read_volatile(slot as *const usize) })
}
