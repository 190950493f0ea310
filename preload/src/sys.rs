//! Raw system calls and libc entry points that bypass the hooked symbols.
//!
//! libmemtrace.so exports `mmap`, `munmap`, `malloc`, ...: a call to
//! `libc::mmap` from inside this library would resolve to our own hook. Every
//! memory or file operation the recorder needs therefore goes through the raw
//! `syscall` instruction (via `libc::syscall`, which is a thin wrapper that
//! neither allocates nor locks). Functions here are async-signal-safe.

use core::ffi::{c_int, c_long, c_void};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

/// Anonymous private read-write memory, zero-filled, listed in [`own`] (the
/// reachability scan never takes memtrace's own memory for a root).
pub fn alloc_pages(len: usize) -> Option<*mut u8> {
    let p = mmap(
        0,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    )?;
    own::note(p as u64, len as u64);
    Some(p)
}

/// Marks `len` bytes at `addr` of memory from [`alloc_pages`] `MADV_WIPEONFORK`:
/// a fork child (of any kind) gets them zero-filled, and the fork copies no
/// page tables for them. False where the kernel does not know the advice
/// (before Linux 4.14).
pub fn wipe_on_fork(addr: usize, len: usize) -> bool {
    // SAFETY: madvise on memory of our own; it only sets a flag on it.
    unsafe { libc::syscall(libc::SYS_madvise, addr, len, libc::MADV_WIPEONFORK) == 0 }
}

/// Unmaps memory from [`alloc_pages`] (or only forgets it, once the program
/// has unmapped or mapped over memory of ours: the range may be its own now).
pub fn free_pages(addr: *mut u8, len: usize) {
    own::forget(addr as u64);
    if !crate::writer::clobbered() {
        munmap_own(addr, len);
    }
}

/// The list of the private memory this library mapped for itself (thread
/// states, the stack table, the unwind cache, the sampled-address set), so
/// that the reachability scan can leave it out of the roots: the scanner reads
/// [`own::TABLE`] from the process's memory (its address and length are in the
/// `KIND_EXIT_SCAN` record). Lock-free: a slot is claimed with one
/// compare-and-swap on its address and released by storing 0; a mapping that
/// finds no free slot is counted in [`own::OVERFLOW`], and the scan then says
/// its roots may include memtrace's memory.
pub mod own {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Slots: one per live thread, plus the global tables.
    pub const SLOTS: usize = 8192;

    /// `[address, bytes]` pairs; address 0 is a free slot.
    #[repr(C)]
    pub struct Table(pub [[AtomicU64; 2]; SLOTS]);

    pub static TABLE: Table = Table([const { [AtomicU64::new(0), AtomicU64::new(0)] }; SLOTS]);

    /// Mappings that found no free slot.
    pub static OVERFLOW: AtomicU64 = AtomicU64::new(0);

    /// One past the highest slot ever used: [`overlaps`] looks no further.
    static HIGH: AtomicUsize = AtomicUsize::new(0);

    /// Whether `[addr, addr + len)` meets any listed mapping.
    pub fn overlaps(addr: u64, len: u64) -> bool {
        let end = addr.saturating_add(len);
        let high = HIGH.load(Ordering::Acquire).min(SLOTS);
        TABLE.0[..high].iter().any(|slot| {
            let a = slot[0].load(Ordering::Acquire);
            a != 0 && a < end && addr < a.saturating_add(slot[1].load(Ordering::Relaxed))
        })
    }

    /// Lists `[addr, addr + len)`.
    pub fn note(addr: u64, len: u64) {
        for (i, slot) in TABLE.0.iter().enumerate() {
            if slot[0].load(Ordering::Relaxed) == 0 {
                // Length first: a reader that sees the address sees a length
                // no larger than the mapping (0 before this store).
                slot[1].store(len, Ordering::Relaxed);
                if slot[0]
                    .compare_exchange(0, addr, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    HIGH.fetch_max(i + 1, Ordering::AcqRel);
                    return;
                }
            }
        }
        OVERFLOW.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the mapping at `addr` from the list.
    pub fn forget(addr: u64) {
        for slot in &TABLE.0 {
            if slot[0].load(Ordering::Relaxed) == addr {
                slot[0].store(0, Ordering::Release);
                return;
            }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
///
/// When the kernel's clocksource is the TSC (it then vouches for it being
/// constant and synchronised across CPUs), this reads the TSC directly and
/// converts with a factor calibrated against CLOCK_MONOTONIC: ~10 ns instead
/// of ~25 ns for the vDSO call, on every event. Plain `rdtsc` (not the
/// serialising `rdtscp`, which costs a pipeline drain) is enough for the
/// order the analyzer needs: "before" stamps (free, munmap, realloc's first)
/// are taken before the call's stores can retire, and "after" stamps are
/// taken after the stack walk, far beyond the reach of out-of-order execution
/// from the call they follow.
///
/// The calibration costs nothing at start-up: the constructor notes the TSC
/// and the clock together ([`start_clock_calibration`]); events use the vDSO
/// clock until [`CALIBRATION_NS`] have passed, and the first event after that
/// notes the pair again and switches to the TSC. A short process (a `make`
/// recipe's `/bin/true`) never spins for it.
#[inline]
pub fn now_ns() -> u64 {
    let mult = TSC_MULT.load(Ordering::Acquire);
    if mult == 0 {
        return now_ns_calibrating();
    }
    // SAFETY: rdtsc is available (the kernel uses the TSC as its clocksource).
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    let ticks = tsc.saturating_sub(TSC_BASE.load(Ordering::Relaxed));
    let ns = ((ticks as u128 * mult as u128) >> 32) as u64;
    NS_BASE.load(Ordering::Relaxed).wrapping_add(ns)
}

/// Nanoseconds per TSC tick in 32.32 fixed point (0: use the vDSO clock).
/// Stored last, with `Release`, once the bases are set: a thread that sees
/// it sees them.
static TSC_MULT: AtomicU64 = AtomicU64::new(0);
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
static NS_BASE: AtomicU64 = AtomicU64::new(0);

/// The pair noted at start-up (0: no calibration under way).
static CAL_TSC: AtomicU64 = AtomicU64::new(0);
static CAL_NS: AtomicU64 = AtomicU64::new(0);

/// How long the calibration runs: 2 ms, over which the error of reading
/// each pair (tens of nanoseconds) is about 1e-5 of the rate.
pub const CALIBRATION_NS: u64 = 2_000_000;

/// The vDSO clock, and the end of the calibration once it is due.
#[inline(never)]
fn now_ns_calibrating() -> u64 {
    let ns = clock(libc::CLOCK_MONOTONIC);
    let ns0 = CAL_NS.load(Ordering::Acquire);
    if ns0 != 0 && ns.wrapping_sub(ns0) >= CALIBRATION_NS {
        finish_clock_calibration(ns0);
    }
    ns
}

/// The TSC and CLOCK_MONOTONIC read together: the TSC between two clock
/// reads, paired with their midpoint.
fn tsc_and_ns() -> (u64, u64) {
    let mut aux = 0u32;
    let a = clock(libc::CLOCK_MONOTONIC);
    // SAFETY: rdtscp is available (checked by `start_clock_calibration`
    // before any calibration begins).
    let tsc = unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
    let b = clock(libc::CLOCK_MONOTONIC);
    (tsc, a + (b.wrapping_sub(a)) / 2)
}

/// Begins the calibration of the TSC against CLOCK_MONOTONIC, if the
/// kernel's clocksource is the TSC. Called once by the constructor; a fork
/// child inherits the calibration (or its progress) with its memory.
pub fn start_clock_calibration() {
    let mut src = [0u8; 32];
    let n = read_file(
        c"/sys/devices/system/clocksource/clocksource0/current_clocksource",
        &mut src,
    );
    let s = &src[..n];
    if s.strip_suffix(b"\n").unwrap_or(s) != b"tsc" {
        return;
    }
    // cpuid leaf 0x80000001 exists on every x86_64 CPU.
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    if ext.edx & (1 << 27) == 0 {
        return; // no rdtscp
    }
    let (tsc0, ns0) = tsc_and_ns();
    if ns0 == 0 {
        return;
    }
    CAL_TSC.store(tsc0, Ordering::Relaxed);
    CAL_NS.store(ns0, Ordering::Release);
}

/// Ends the calibration begun at `ns0`: one thread (the one that takes the
/// pair away) computes the rate and switches every thread to the TSC.
fn finish_clock_calibration(ns0: u64) {
    if CAL_NS
        .compare_exchange(ns0, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let tsc0 = CAL_TSC.load(Ordering::Relaxed);
    let (tsc1, ns1) = tsc_and_ns();
    let dt = tsc1.wrapping_sub(tsc0);
    if dt == 0 || tsc1 < tsc0 || ns1 <= ns0 {
        return;
    }
    let mult = (((ns1 - ns0) as u128) << 32) / dt as u128;
    if mult == 0 || mult > u64::MAX as u128 {
        return;
    }
    TSC_BASE.store(tsc1, Ordering::Relaxed);
    NS_BASE.store(ns1, Ordering::Relaxed);
    TSC_MULT.store(mult as u64, Ordering::Release);
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

/// The stack pointer where it is called.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads rsp into a register; no memory is touched.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// Whether the calling thread runs on its alternate signal stack (asked
/// with `sigaltstack`). Under a seccomp filter, where memtrace makes no
/// system call of its own, the answer is "yes": callers then assume a
/// signal handler, the case in which they must not reset anything.
pub fn on_alt_stack() -> bool {
    if crate::sandbox::active() {
        return true;
    }
    // SAFETY: a zeroed stack_t is valid; sigaltstack with a null new stack
    // only reports the current one.
    unsafe {
        let mut ss: libc::stack_t = core::mem::zeroed();
        libc::syscall(
            libc::SYS_sigaltstack,
            core::ptr::null::<libc::stack_t>(),
            &mut ss,
        ) == 0
            && ss.ss_flags & libc::SS_ONSTACK != 0
    }
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

/// The executable's path (`/proc/self/exe`), read once by the constructor:
/// every log of the process image (a fork child's too) names it, and each
/// readlink of /proc costs a path walk.
struct ExePath(core::cell::UnsafeCell<[u8; 4096]>);
// SAFETY: written only by `remember_exe`, in the constructor before any
// thread of ours runs and before EXE_LEN publishes it; read-only afterwards.
unsafe impl Sync for ExePath {}
static EXE: ExePath = ExePath(core::cell::UnsafeCell::new([0; 4096]));
/// Its length; `usize::MAX`: not read (unit tests, or a failed readlink).
static EXE_LEN: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Reads the executable's path once (constructor).
pub fn remember_exe() {
    // SAFETY: see ExePath: nothing reads EXE before EXE_LEN is set below.
    let buf = unsafe { &mut *EXE.0.get() };
    let n = readlink(c"/proc/self/exe", buf);
    if n > 0 {
        EXE_LEN.store(n, Ordering::Release);
    }
}

/// Copies the executable's path into `buf` (cut to its length); returns the
/// length, 0 if it cannot be told.
pub fn exe(buf: &mut [u8]) -> usize {
    let n = EXE_LEN.load(Ordering::Acquire);
    if n == usize::MAX {
        return readlink(c"/proc/self/exe", buf);
    }
    let n = n.min(buf.len());
    // SAFETY: EXE_LEN is set only after EXE was written, never again.
    let exe: &[u8; 4096] = unsafe { &*EXE.0.get() };
    buf[..n].copy_from_slice(&exe[..n]);
    n
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

impl DlFindObject {
    /// The loaded object containing `addr`, if any (`_dl_find_object`:
    /// lock-free and async-signal-safe).
    pub fn find(addr: usize) -> Option<DlFindObject> {
        let mut obj = DlFindObject {
            flags: 0,
            map_start: core::ptr::null_mut(),
            map_end: core::ptr::null_mut(),
            link_map: core::ptr::null_mut(),
            eh_frame: core::ptr::null_mut(),
            reserved: [0; 7],
        };
        // SAFETY: _dl_find_object only writes `obj`.
        let r = unsafe { _dl_find_object(addr as *mut c_void, &mut obj) };
        if r == 0 { Some(obj) } else { None }
    }
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

/// Writes `v` in decimal at the start of `out` (20 bytes hold any `u64`);
/// returns the number of digits written (fewer if `out` is too short).
pub fn write_decimal(v: u64, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let (mut n, mut v) = (0, v);
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = n.min(out.len());
    for (i, d) in out[..n].iter_mut().enumerate() {
        *d = digits[n - 1 - i];
    }
    n
}

/// The soft limit of `resource` for this process (`prlimit64`, read only),
/// or `None` if it cannot be read.
pub fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on this process, reading only, into our own struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            core::ptr::null::<libc::rlimit64>(),
            &mut lim as *mut libc::rlimit64,
        )
    };
    (r == 0).then_some(lim.rlim_cur)
}

/// A decimal number made of digits only (at most 19 of them).
pub fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, &c| a * 10 + (c - b'0') as u64))
}

/// Sleeps `ns` nanoseconds (less if a signal interrupts it).
pub fn sleep_ns(ns: u64) {
    let t = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: nanosleep reads a timespec we own.
    unsafe { libc::syscall(libc::SYS_nanosleep, &t as *const libc::timespec, 0usize) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calibration ends with the first event 2 ms after it began (when
    /// the clocksource is the TSC), and the TSC's times then stay within
    /// 20 µs of CLOCK_MONOTONIC and never go back.
    #[test]
    fn clock_switches_to_the_tsc_after_its_calibration() {
        let mut src = [0u8; 32];
        let n = read_file(
            c"/sys/devices/system/clocksource/clocksource0/current_clocksource",
            &mut src,
        );
        let tsc = src[..n].strip_suffix(b"\n").unwrap_or(&src[..n]) == b"tsc"
            && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0;
        start_clock_calibration();
        let begun = clock(libc::CLOCK_MONOTONIC);
        let mut last = now_ns();
        while clock(libc::CLOCK_MONOTONIC) - begun < CALIBRATION_NS + 100_000 {
            let t = now_ns();
            assert!(t >= last, "{t} < {last}");
            last = t;
        }
        let _ = now_ns();
        assert_eq!(TSC_MULT.load(Ordering::Acquire) != 0, tsc);
        for _ in 0..1000 {
            let a = clock(libc::CLOCK_MONOTONIC);
            let t = now_ns();
            let b = clock(libc::CLOCK_MONOTONIC);
            assert!(t + 20_000 >= a && t <= b + 20_000, "{a} {t} {b}");
            assert!(t >= last, "{t} < {last}");
            last = t;
        }
    }
}
