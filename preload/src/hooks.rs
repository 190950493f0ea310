//! The exported entry points: the malloc family, the raw memory calls, and
//! the process-lifecycle calls memtrace must see (`fork`, `exec*`, `_exit`,
//! `dlclose`).
//!
//! Every hook calls the next definition (see `real`) and then records. The
//! exports are `#[no_mangle]` only outside `cfg(test)`, so unit tests do not
//! hook their own harness.
//!
//! # Safety
//! Each function has the contract of the C function of the same name.

#![allow(non_snake_case)]

use core::ffi::{c_char, c_int, c_void};
use core::mem::transmute;

use memtrace_format::{ExitHow, Func, encode};

use crate::real::{self, bootstrap};
use crate::{record, sys, writer};

macro_rules! next {
    ($slot:expr, $ty:ty) => {{
        match real::get(&$slot) {
            // SAFETY: the slot holds a function of this type, found by dlsym
            // under the same name or the glibc fallback with the same signature.
            Some(f) => Some(unsafe { transmute::<usize, $ty>(f) }),
            None => None,
        }
    }};
}

/// # Safety
/// As `malloc(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if real::MALLOC.get() == 0 && real::resolving() {
        return bootstrap::alloc(size, 16).cast();
    }
    let Some(f) = next!(real::MALLOC, real::MallocFn) else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments to the next malloc.
    let p = unsafe { f(size) };
    record::alloc(Func::Malloc, p as usize, size);
    p
}

/// # Safety
/// As `calloc(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    if real::CALLOC.get() == 0 && real::resolving() {
        // The bump arena is zero-initialised and never reused.
        return match n.checked_mul(size) {
            Some(total) => bootstrap::alloc(total, 16).cast(),
            None => core::ptr::null_mut(),
        };
    }
    let Some(f) = next!(real::CALLOC, real::CallocFn) else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { f(n, size) };
    record::alloc(Func::Calloc, p as usize, n.saturating_mul(size));
    p
}

/// # Safety
/// As `realloc(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: usize) -> *mut c_void {
    if bootstrap::owns(old.cast()) {
        // A block from the start-up arena: move it to the real allocator.
        // SAFETY: `old` came from the arena, which records its size.
        let old_size = unsafe { bootstrap::size_of(old.cast()) };
        // SAFETY: plain malloc through our own hook (recorded as a new block).
        let p = unsafe { malloc(size) };
        if !p.is_null() {
            // SAFETY: both ranges are valid for min(old_size, size) bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(old as *const u8, p as *mut u8, old_size.min(size))
            };
        }
        return p;
    }
    let Some(f) = next!(real::REALLOC, real::ReallocFn) else {
        return core::ptr::null_mut();
    };
    let recorded = record::realloc_begin(old as usize);
    let t0 = sys::now_ns();
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { f(old, size) };
    record::realloc(Func::Realloc, t0, old as usize, p as usize, size, recorded);
    p
}

/// # Safety
/// As `reallocarray(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn reallocarray(old: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        // SAFETY: __errno_location returns this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
        return core::ptr::null_mut();
    };
    if bootstrap::owns(old.cast()) {
        // SAFETY: as realloc.
        return unsafe { realloc(old, total) };
    }
    // reallocarray is realloc behind an overflow check (done above). glibc's
    // own reallocarray calls `realloc` through the PLT, i.e. our hook, which
    // would record the call twice: forward to the next realloc instead.
    let Some(f) = next!(real::REALLOC, real::ReallocFn) else {
        return core::ptr::null_mut();
    };
    let recorded = record::realloc_begin(old as usize);
    let t0 = sys::now_ns();
    // SAFETY: forwarding the caller's block and the checked total size.
    let p = unsafe { f(old, total) };
    record::realloc(
        Func::Reallocarray,
        t0,
        old as usize,
        p as usize,
        total,
        recorded,
    );
    p
}

/// # Safety
/// As `free(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() || bootstrap::owns(p.cast()) {
        return;
    }
    record::free(Func::Free, p as usize);
    if let Some(f) = next!(real::FREE, real::FreeFn) {
        // SAFETY: forwarding the caller's pointer.
        unsafe { f(p) };
    }
}

/// # Safety
/// As `posix_memalign(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if real::MALLOC.get() == 0 && real::resolving() {
        let p = bootstrap::alloc(size, align);
        if p.is_null() {
            return libc::ENOMEM;
        }
        // SAFETY: `out` is the caller's result slot.
        unsafe { *out = p.cast() };
        return 0;
    }
    let Some(f) = next!(real::POSIX_MEMALIGN, real::PosixMemalignFn) else {
        return libc::ENOMEM;
    };
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { f(out, align, size) };
    if r == 0 {
        // SAFETY: on success the next posix_memalign stored the block in *out.
        record::alloc(Func::PosixMemalign, unsafe { *out } as usize, size);
    }
    r
}

/// # Safety
/// As `aligned_alloc(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let Some(f) = next!(real::ALIGNED_ALLOC, real::AlignFn) else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { f(align, size) };
    record::alloc(Func::AlignedAlloc, p as usize, size);
    p
}

/// # Safety
/// As `memalign(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if real::MALLOC.get() == 0 && real::resolving() {
        return bootstrap::alloc(size, align).cast();
    }
    let Some(f) = next!(real::MEMALIGN, real::AlignFn) else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { f(align, size) };
    record::alloc(Func::Memalign, p as usize, size);
    p
}

/// # Safety
/// As `valloc(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    let Some(f) = next!(real::VALLOC, real::MallocFn) else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { f(size) };
    record::alloc(Func::Valloc, p as usize, size);
    p
}

/// # Safety
/// As `pvalloc(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(f) = next!(real::PVALLOC, real::MallocFn) else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { f(size) };
    record::alloc(Func::Pvalloc, p as usize, size);
    p
}

/// Pass-through (blocks are never grown or tagged by memtrace).
///
/// # Safety
/// As `malloc_usable_size(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    if bootstrap::owns(p.cast()) {
        // SAFETY: `p` came from the arena.
        return unsafe { bootstrap::size_of(p.cast()) };
    }
    match next!(real::USABLE_SIZE, real::UsableFn) {
        // SAFETY: forwarding the caller's pointer.
        Some(f) => unsafe { f(p) },
        None => 0,
    }
}

fn do_mmap(
    func: Func,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    if flags & libc::MAP_FIXED != 0 {
        writer::program_replaces(addr as usize, len);
    }
    // SAFETY: the caller's request is passed to the kernel unchanged.
    let p = unsafe { sys::raw_mmap(addr as usize, len, prot, flags, fd, off) };
    if p != libc::MAP_FAILED {
        record::mmap(func, p as usize, len, prot, flags, fd, off);
    }
    p
}

/// # Safety
/// As `mmap(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    do_mmap(Func::Mmap, addr, len, prot, flags, fd, off)
}

/// # Safety
/// As `mmap64(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    do_mmap(Func::Mmap64, addr, len, prot, flags, fd, off)
}

/// # Safety
/// As `munmap(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let t0 = sys::now_ns();
    writer::program_replaces(addr as usize, len);
    // SAFETY: the caller's request is passed to the kernel unchanged.
    let r = unsafe { sys::raw_munmap(addr, len) };
    if r == 0 {
        record::munmap(t0, addr as usize, len);
    }
    r
}

/// `mremap` is variadic in C; on x86_64 the optional fifth argument arrives
/// in a register and is only read with MREMAP_FIXED, as the kernel does.
///
/// # Safety
/// As `mremap(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let fixed = flags & libc::MREMAP_FIXED != 0;
    let target = if fixed {
        writer::program_replaces(new_addr as usize, new_len);
        new_addr
    } else {
        core::ptr::null_mut()
    };
    writer::program_replaces(old as usize, old_len);
    // SAFETY: the caller's request is passed to the kernel unchanged.
    let p = unsafe { sys::raw_mremap(old, old_len, new_len, flags, target) };
    if p != libc::MAP_FAILED {
        record::mremap(old as usize, old_len, p as usize, new_len, flags);
    }
    p
}

/// # Safety
/// As `brk(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn brk(addr: *mut c_void) -> c_int {
    let (Some(b), Some(s)) = (
        next!(real::BRK, real::BrkFn),
        next!(real::SBRK, real::SbrkFn),
    ) else {
        return -1;
    };
    // SAFETY: sbrk(0) only reads the break.
    let old = unsafe { s(0) } as usize;
    // SAFETY: forwarding the caller's argument.
    let r = unsafe { b(addr) };
    if r == 0 {
        record::brk(Func::Brk, addr as i64, old, addr as usize);
    }
    r
}

/// # Safety
/// As `sbrk(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sbrk(incr: isize) -> *mut c_void {
    let Some(s) = next!(real::SBRK, real::SbrkFn) else {
        return usize::MAX as *mut c_void;
    };
    // SAFETY: forwarding the caller's argument.
    let old = unsafe { s(incr) };
    if old as isize != -1 && incr != 0 {
        record::brk(
            Func::Sbrk,
            incr as i64,
            old as usize,
            (old as usize).wrapping_add(incr as usize),
        );
    }
    old
}

/// # Safety
/// As `dlclose(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let Some(f) = next!(real::DLCLOSE, real::DlcloseFn) else {
        return -1;
    };
    // SAFETY: forwarding the caller's handle.
    let r = unsafe { f(handle) };
    // dlclose returned, so the loader's locks work in this process.
    crate::modules::LOADER_USABLE.store(true, core::sync::atomic::Ordering::Release);
    record::modules_changed();
    r
}

/// # Safety
/// As `fork(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    let Some(f) = next!(real::FORK, real::ForkFn) else {
        return -1;
    };
    // SAFETY: plain fork; the child is re-initialised by the atfork handler.
    let pid = unsafe { f() };
    if pid > 0 {
        record::marker(|b, t| encode::fork(b, t, pid as u64));
    }
    pid
}

fn before_exec(path: *const c_char) {
    // A vfork child shares the parent's memory and log: it must not mark it.
    if !writer::is_log_owner() {
        return;
    }
    let p: &[u8] = if path.is_null() {
        b""
    } else {
        // SAFETY: exec's path argument is a NUL-terminated string.
        unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes()
    };
    record::marker(|b, t| encode::exec(b, t, p));
    writer::set_state(ExitHow::Exec, 0);
}

fn exec_failed() {
    if !writer::is_log_owner() {
        return;
    }
    writer::set_state(ExitHow::Running, 0);
}

macro_rules! exec_hook {
    ($name:ident, $slot:expr, $ty:ty, ($($arg:ident : $t:ty),*), $path:expr) => {
        /// # Safety
        /// As the C function of the same name.
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            let Some(f) = next!($slot, $ty) else { return -1 };
            before_exec($path);
            // SAFETY: forwarding the caller's arguments; returns only on failure.
            let r = unsafe { f($($arg),*) };
            exec_failed();
            r
        }
    };
}

exec_hook!(execve, real::EXECVE, real::ExecveFn, (path: *const c_char, argv: *const *const c_char, envp: *const *const c_char), path);
exec_hook!(execv, real::EXECV, real::ExecvFn, (path: *const c_char, argv: *const *const c_char), path);
exec_hook!(execvp, real::EXECVP, real::ExecvFn, (path: *const c_char, argv: *const *const c_char), path);
exec_hook!(execvpe, real::EXECVPE, real::ExecveFn, (path: *const c_char, argv: *const *const c_char, envp: *const *const c_char), path);
exec_hook!(fexecve, real::FEXECVE, real::FexecveFn, (fd: c_int, argv: *const *const c_char, envp: *const *const c_char), core::ptr::null());
exec_hook!(execveat, real::EXECVEAT, real::ExecveatFn, (dirfd: c_int, path: *const c_char, argv: *const *const c_char, envp: *const *const c_char, flags: c_int), path);

// The variadic execs, `execl(path, arg0, ..., NULL)`, `execlp(file, ...)`
// and `execle(path, arg0, ..., NULL, envp)`: Rust cannot define a C-variadic
// function, so a naked entry point spills the five argument registers after
// `path` into its frame, just below the arguments the caller passed on the
// stack, and hands both to [`exec_list`], which builds the argument vector
// and goes on as `execv`, `execvp` or `execve` do (marking the log "exec").

/// Which variadic exec an entry point is.
const L_EXECL: usize = 0;
const L_EXECLP: usize = 1;
const L_EXECLE: usize = 2;

/// The variadic arguments of an `execl*` call after `path`: the five that
/// came in registers (`regs`), then those on the caller's stack (`stack`).
struct VarArgs {
    regs: *const usize,
    stack: *const usize,
}

impl VarArgs {
    /// Argument `i` (0: `arg0`).
    ///
    /// # Safety
    /// The caller passed at least `i + 1` arguments after `path`.
    unsafe fn get(&self, i: usize) -> usize {
        // SAFETY: the first five are in the spilled registers, the rest on
        // the caller's stack in order (System V x86-64 calling convention).
        unsafe {
            if i < 5 {
                *self.regs.add(i)
            } else {
                *self.stack.add(i - 5)
            }
        }
    }
}

/// Argument vectors of up to this many entries are built on the stack; longer
/// ones in memtrace's own pages (never through the hooked allocator).
const ARGV_ON_STACK: usize = 256;

/// Builds the argument vector of an `execl*` call and execs.
///
/// # Safety
/// Called only by the naked entry points below, with the arguments of a C
/// call of `execl`, `execlp` or `execle` (a NULL-terminated list).
unsafe extern "C" fn exec_list(
    path: *const c_char,
    regs: *const usize,
    stack: *const usize,
    which: usize,
) -> c_int {
    let va = VarArgs { regs, stack };
    // SAFETY: the list is NULL-terminated (the caller's contract with exec).
    let n = (0..).find(|&i| unsafe { va.get(i) } == 0).unwrap_or(0);
    // execle's environment follows the NULL.
    let envp = if which == L_EXECLE {
        // SAFETY: execle's contract: the environment follows the terminator.
        unsafe { va.get(n + 1) as *const *const c_char }
    } else {
        core::ptr::null()
    };
    let mut small = [core::ptr::null::<c_char>(); ARGV_ON_STACK];
    let bytes = (n + 1) * core::mem::size_of::<*const c_char>();
    let big = if n + 1 > ARGV_ON_STACK {
        match crate::sys::alloc_pages(bytes) {
            Some(p) => Some(p as *mut *const c_char),
            None => {
                // SAFETY: errno is this thread's own.
                unsafe { *libc::__errno_location() = libc::E2BIG };
                return -1;
            }
        }
    } else {
        None
    };
    let argv: *mut *const c_char = big.unwrap_or(small.as_mut_ptr());
    for i in 0..=n {
        // SAFETY: argv has n + 1 entries; argument i <= n exists (the
        // terminator included).
        unsafe { *argv.add(i) = va.get(i) as *const c_char };
    }
    // SAFETY: forwarding to the hooked execs with a NULL-terminated vector.
    let r = unsafe {
        match which {
            L_EXECL => execv(path, argv),
            L_EXECLP => execvp(path, argv),
            _ => execve(path, argv, envp),
        }
    };
    if let Some(p) = big {
        crate::sys::free_pages(p as *mut u8, bytes);
    }
    r
}

macro_rules! exec_list_hook {
    ($name:ident, $which:expr) => {
        /// # Safety
        /// As the C function of the same name (variadic: `path, arg0, ...,
        /// NULL` and, for `execle`, `envp`).
        #[cfg_attr(not(test), unsafe(no_mangle))]
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name(path: *const c_char) -> c_int {
            // rsp is 8 mod 16 at entry; 40 bytes of spilled registers make
            // it 16-byte aligned for the call. The caller's stack arguments
            // start at entry rsp + 8, i.e. rsp + 48 after the sub.
            core::arch::naked_asm!(
                ".cfi_startproc",
                "sub rsp, 40",
                ".cfi_adjust_cfa_offset 40",
                "mov [rsp], rsi",
                "mov [rsp + 8], rdx",
                "mov [rsp + 16], rcx",
                "mov [rsp + 24], r8",
                "mov [rsp + 32], r9",
                "mov rsi, rsp",
                "lea rdx, [rsp + 48]",
                "mov ecx, {which}",
                "call {imp}",
                "add rsp, 40",
                ".cfi_adjust_cfa_offset -40",
                "ret",
                ".cfi_endproc",
                which = const $which,
                imp = sym exec_list,
            )
        }
    };
}

exec_list_hook!(execl, L_EXECL);
exec_list_hook!(execlp, L_EXECLP);
exec_list_hook!(execle, L_EXECLE);

/// # Safety
/// As `sigaction(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let Some(f) = next!(real::SIGACTION, real::SigactionFn) else {
        return -1;
    };
    if !act.is_null() {
        // SAFETY: a non-null `act` points to the caller's sigaction struct.
        crate::snapshot::program_sets_handler(sig, unsafe { (*act).sa_sigaction });
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(sig, act, old) }
}

/// # Safety
/// As `signal(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    let Some(f) = next!(real::SIGNAL, real::SignalFn) else {
        return libc::SIG_ERR;
    };
    crate::snapshot::program_sets_handler(sig, handler);
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(sig, handler) }
}
