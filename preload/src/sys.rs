//! Raw system calls and libc entry points that bypass the hooked symbols.
//!
//! libmemtrace.so exports `mmap`, `munmap`, `malloc`, ...: a call to
//! `libc::mmap` from inside this library would resolve to our own hook. Every
//! memory or file operation the recorder needs therefore goes through the raw
//! `syscall` instruction (via `libc::syscall`, which is a thin wrapper that
//! neither allocates nor locks). Functions here are async-signal-safe.

use core::ffi::{c_int, c_long, c_void};

/// `mmap` without going through the exported hook. Returns `None` on failure.
pub fn mmap(
    addr: usize,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> Option<*mut u8> {
    // SAFETY: the mmap system call validates its arguments; a failed call
    // returns -1 and changes nothing.
    let r = unsafe { raw_mmap(addr, len, prot, flags, fd, off) };
    if r == libc::MAP_FAILED {
        None
    } else {
        Some(r.cast())
    }
}

/// The raw mmap system call, returning `MAP_FAILED` on error and setting errno.
///
/// # Safety
/// Mapping over existing memory (`MAP_FIXED`) can invalidate live objects;
/// the caller must own the range it names.
pub unsafe fn raw_mmap(
    addr: usize,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwarded by contract of this function.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            addr,
            len,
            prot as c_long,
            flags as c_long,
            fd as c_long,
            off,
        )
    };
    if r == -1 {
        libc::MAP_FAILED
    } else {
        r as *mut c_void
    }
}

/// The raw munmap system call.
///
/// # Safety
/// The caller must own the range: nothing may use it afterwards.
pub unsafe fn raw_munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: forwarded by contract of this function.
    unsafe { libc::syscall(libc::SYS_munmap, addr, len) as c_int }
}

/// The raw mremap system call (`new_addr` is used only with MREMAP_FIXED).
///
/// # Safety
/// As for `mremap(2)`: the caller owns the old range.
pub unsafe fn raw_mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: forwarded by contract of this function.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mremap,
            old,
            old_len,
            new_len,
            flags as c_long,
            new_addr,
        )
    };
    if r == -1 {
        libc::MAP_FAILED
    } else {
        r as *mut c_void
    }
}

/// Unmaps memory this library mapped itself.
pub fn munmap_own(addr: *mut u8, len: usize) {
    // SAFETY: only called on mappings created by this library and no longer used.
    unsafe { raw_munmap(addr.cast(), len) };
}

/// Anonymous private read-write memory, zero-filled.
pub fn alloc_pages(len: usize) -> Option<*mut u8> {
    mmap(
        0,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    )
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO, no system call on x86_64).
#[inline]
pub fn now_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds.
pub fn realtime_ns() -> u64 {
    clock(libc::CLOCK_REALTIME)
}

#[inline]
fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`; it is async-signal-safe.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The calling thread's kernel id.
#[inline]
pub fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The process id, from the kernel (not glibc's cache, which fork updates late).
pub fn getpid() -> u32 {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) as u32 }
}

/// The parent's process id.
pub fn getppid() -> u32 {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) as u32 }
}

/// Current program break (`brk(0)` returns it without changing it).
pub fn current_brk() -> u64 {
    // SAFETY: brk(0) is an invalid request that the kernel answers with the current break.
    unsafe { libc::syscall(libc::SYS_brk, 0usize) as u64 }
}

/// Reads a whole small file (e.g. /proc/self/cmdline) into `buf`; returns the length read.
pub fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: open/read/close on a NUL-terminated path into a buffer we own.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        ) as c_int;
        if fd < 0 {
            return 0;
        }
        let mut n = 0usize;
        while n < buf.len() {
            let r = libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr().add(n), buf.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::syscall(libc::SYS_close, fd);
        n
    }
}

/// readlink into `buf`; returns the length (0 on error).
pub fn readlink(path: &core::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: readlinkat writes at most buf.len() bytes into buf.
    let r = unsafe {
        libc::syscall(
            libc::SYS_readlinkat,
            libc::AT_FDCWD,
            path.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if r < 0 { 0 } else { r as usize }
}

/// Mirrors `struct dl_find_object` from glibc's <dlfcn.h> (x86_64: no dlfo_eh_dbase).
#[repr(C)]
pub struct DlFindObject {
    pub flags: u64,
    pub map_start: *mut c_void,
    pub map_end: *mut c_void,
    pub link_map: *mut c_void,
    pub eh_frame: *mut c_void,
    pub reserved: [u64; 7],
}

unsafe extern "C" {
    /// glibc >= 2.35: lock-free, async-signal-safe lookup of the object containing `addr`.
    pub fn _dl_find_object(addr: *mut c_void, result: *mut DlFindObject) -> c_int;
    /// Registers an exit handler not tied to a DSO (dso_handle NULL), so it
    /// runs in plain atexit order, not at this library's unload.
    pub fn __cxa_atexit(
        f: unsafe extern "C" fn(*mut c_void),
        arg: *mut c_void,
        dso: *mut c_void,
    ) -> c_int;
}
