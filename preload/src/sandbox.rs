//! Seccomp: recording goes on without a system call of memtrace's own.
//!
//! A program that installs a seccomp filter allows the system calls it needs
//! and nothing else; memtrace's `fallocate`, `fstat`, `openat` or `prlimit64`
//! would then kill it (`SIGSYS`) or fail. So the entry points a filter is
//! installed through, `prctl(PR_SET_SECCOMP, ..)` and the `seccomp` system
//! call made with `syscall(SYS_seccomp, ..)` (libseccomp's way), are hooked:
//! just before the filter takes effect, while every system call is still
//! allowed, `prepare` reserves [`RESERVE`] bytes of the log (with
//! `fallocate`, so they have disk blocks) and maps them once. From then on
//! ([`active`]) new chunks are carved out of that mapping with an atomic add
//! and nothing else; when it is used up, events are counted as lost in the
//! header. The header gets `SECCOMP`; the exit scan, the kernel's view,
//! libc's exit clean-up and re-listing objects after `dlopen` are left out,
//! as each would need system calls the filter may not allow. The memory for a
//! new thread's state is still mapped with `mmap`, which any program that
//! uses `malloc` allows (strict mode has no threads).
//!
//! A fork child of a sandboxed process is not traced: opening a log of its
//! own would need the calls the filter forbids.
//!
//! Filters in place before the program started (a container's) are not seen
//! here: memtrace runs as usual under them, since the program could not start
//! with a dynamic loader if `openat`, `mmap` and friends were forbidden.

use core::ffi::{c_int, c_long, c_ulong};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::writer;

/// Log space reserved for the rest of the run when a filter is installed.
pub const RESERVE: usize = memtrace_format::SANDBOX_RESERVE;

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Strict mode: not even `mmap` is allowed.
static STRICT: AtomicBool = AtomicBool::new(false);
static BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static FILE_OFF: AtomicU64 = AtomicU64::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Whether a seccomp filter was installed: no system call of our own since.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Whether the program entered strict mode (read, write, exit only): a
/// thread without a state yet cannot get one.
#[inline]
pub fn strict() -> bool {
    STRICT.load(Ordering::Relaxed)
}

/// Whether the process runs under a seccomp filter, installed through us
/// or not (one in place before the program started: a container's), as
/// `Seccomp:` in /proc/self/status says; `None` when that cannot be told.
pub fn filtered() -> Option<bool> {
    let mut buf = [0u8; 4096];
    let n = crate::sys::read_file(c"/proc/self/status", &mut buf);
    let s = &buf[..n];
    let key = b"\nSeccomp:";
    let i = s.windows(key.len()).position(|w| w == key)?;
    s[i + key.len()..]
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .map(|&c| c != b'0')
}

/// A chunk of `size` bytes from the reserve: its address and file offset.
pub fn carve(size: usize) -> Option<(*mut u8, usize)> {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return None;
    }
    let len = LEN.load(Ordering::Relaxed);
    let at = NEXT.fetch_add(size, Ordering::Relaxed);
    if at.checked_add(size)? > len {
        // Leave NEXT past the end: every later request fails the same way.
        return None;
    }
    // SAFETY: [at, at+size) lies inside the reserve mapping of `len` bytes.
    let p = unsafe { base.add(at) };
    Some((p, FILE_OFF.load(Ordering::Relaxed) as usize + at))
}

/// Called just before the program installs a filter: reserves the log space
/// and turns on sandboxed recording. Returns whether it was already on.
fn prepare(strict: bool) -> bool {
    if strict {
        STRICT.store(true, Ordering::Release);
    }
    if ACTIVE.load(Ordering::Acquire) {
        return true;
    }
    if BASE.load(Ordering::Acquire).is_null()
        && let Some((p, off)) = writer::reserve_region(RESERVE)
    {
        FILE_OFF.store(off as u64, Ordering::Relaxed);
        LEN.store(RESERVE, Ordering::Relaxed);
        BASE.store(p, Ordering::Release);
    }
    writer::set_flags(memtrace_format::hdr::flag::SECCOMP);
    ACTIVE.store(true, Ordering::Release);
    false
}

/// The install failed: the program can make any system call still, and so
/// can memtrace (the reserve stays, unused).
fn failed(was_active: bool) {
    if !was_active {
        STRICT.store(false, Ordering::Release);
        ACTIVE.store(false, Ordering::Release);
        writer::clear_flags(memtrace_format::hdr::flag::SECCOMP);
    }
}

/// A raw system call with six arguments; the kernel's result (negative errno
/// on failure).
///
/// # Safety
/// As the system call `n` with these arguments.
#[inline(always)]
unsafe fn raw(n: c_long, a: [c_long; 6]) -> c_long {
    let r: c_long;
    // SAFETY: by the caller's contract; the kernel clobbers rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n => r,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// A system call of memtrace's own, in the C convention (-1 and errno),
/// past the checks [`syscall`] makes of the program's calls: memtrace's
/// own forks (the frozen copies) are not the program's children.
///
/// # Safety
/// As the system call `n` with these arguments.
pub(crate) unsafe fn own_syscall(n: c_long, a: [c_long; 6]) -> c_long {
    // SAFETY: by the caller's contract.
    c_result(unsafe { raw(n, a) })
}

/// Turns a kernel result into the C convention (-1 and errno).
fn c_result(r: c_long) -> c_long {
    if (-4095..0).contains(&r) {
        // SAFETY: errno is this thread's own.
        unsafe { *libc::__errno_location() = -r as c_int };
        -1
    } else {
        r
    }
}

/// `syscall(3)`, the C library's generic system call, in full: a
/// `SYS_seccomp` that installs a filter (or strict mode) is prepared for
/// first. Variadic in C; on x86_64 its integer arguments arrive exactly
/// where these six parameters are read from (the last on the stack).
///
/// # Safety
/// As `syscall(2)` with these arguments.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let installs = n == libc::SYS_seccomp
        && (a1 == libc::SECCOMP_SET_MODE_STRICT as c_long
            || a1 == libc::SECCOMP_SET_MODE_FILTER as c_long);
    let was = installs && prepare(a1 == libc::SECCOMP_SET_MODE_STRICT as c_long);
    // SAFETY: the caller's system call, unchanged.
    let r = unsafe { raw(n, [a1, a2, a3, a4, a5, a6]) };
    if installs && r < 0 {
        failed(was);
    }
    if r > 0 && makes_process(n, a1) {
        crate::hooks::made_child(r as libc::pid_t, memtrace_format::lineage::RAW, b"");
    }
    c_result(r)
}

/// Whether system call `n` with first argument `a1` makes a new process
/// (not a thread) whose pid it returns in the parent.
fn makes_process(n: c_long, a1: c_long) -> bool {
    let separate = |flags: u64| flags & (libc::CLONE_THREAD | libc::CLONE_VM) as u64 == 0;
    match n {
        libc::SYS_fork => true,
        libc::SYS_clone => separate(a1 as u64),
        libc::SYS_clone3 if a1 != 0 => {
            // SAFETY: clone3's first argument points to a `struct clone_args`
            // whose first field is the u64 flags; the kernel has just read it.
            separate(unsafe { core::ptr::read_unaligned(a1 as *const u64) })
        }
        // A vfork child shares our memory and stops us until it execs: it
        // is the exec'd image that shows (by its own log, or not at all).
        _ => false,
    }
}

/// `prctl(2)`: `PR_SET_SECCOMP` is prepared for first. Variadic in C, with
/// integer arguments only.
///
/// # Safety
/// As `prctl(2)` with these arguments.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn prctl(
    option: c_int,
    a2: c_ulong,
    a3: c_ulong,
    a4: c_ulong,
    a5: c_ulong,
) -> c_int {
    let installs = option == libc::PR_SET_SECCOMP;
    let was = installs && prepare(a2 == libc::SECCOMP_MODE_STRICT as c_ulong);
    // SAFETY: the caller's prctl, unchanged.
    let r = unsafe {
        raw(
            libc::SYS_prctl,
            [
                option as c_long,
                a2 as c_long,
                a3 as c_long,
                a4 as c_long,
                a5 as c_long,
                0,
            ],
        )
    };
    if installs && r < 0 {
        failed(was);
    }
    c_result(r) as c_int
}
