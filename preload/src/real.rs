//! The next definitions of the hooked functions, in symbol lookup order.
//!
//! Each hook forwards to `dlsym(RTLD_NEXT, name)`, so an allocator that comes
//! after libmemtrace.so (jemalloc linked into the program or preloaded after
//! us) keeps serving the program. `dlsym` itself may call `calloc`/`malloc`
//! while we resolve; those early requests are served from a small static
//! bump buffer (see [`bootstrap`]) whose blocks are never handed to the real
//! allocator's `free`. If `dlsym` finds nothing, glibc's `__libc_*` entry
//! points are the fallback.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

pub type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
pub type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
pub type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
pub type FreeFn = unsafe extern "C" fn(*mut c_void);
pub type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
pub type AlignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
pub type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;
pub type BrkFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type SbrkFn = unsafe extern "C" fn(isize) -> *mut c_void;
pub type DlcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type ExitFn = unsafe extern "C" fn(c_int) -> !;
pub type ForkFn = unsafe extern "C" fn() -> libc::pid_t;
pub type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;
pub type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
pub type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
pub type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
pub type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
pub type FexecveFn =
    unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
pub type ExecveatFn = unsafe extern "C" fn(
    c_int,
    *const c_char,
    *const *const c_char,
    *const *const c_char,
    c_int,
) -> c_int;

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_valloc(size: usize) -> *mut c_void;
    fn __libc_pvalloc(size: usize) -> *mut c_void;
}

/// A lazily resolved function pointer (0 = not resolved).
pub struct Slot(AtomicUsize);

impl Slot {
    const fn new() -> Slot {
        Slot(AtomicUsize::new(0))
    }
    #[inline]
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

pub static MALLOC: Slot = Slot::new();
pub static CALLOC: Slot = Slot::new();
pub static REALLOC: Slot = Slot::new();
pub static FREE: Slot = Slot::new();
pub static POSIX_MEMALIGN: Slot = Slot::new();
pub static ALIGNED_ALLOC: Slot = Slot::new();
pub static MEMALIGN: Slot = Slot::new();
pub static VALLOC: Slot = Slot::new();
pub static PVALLOC: Slot = Slot::new();
pub static USABLE_SIZE: Slot = Slot::new();
pub static BRK: Slot = Slot::new();
pub static SBRK: Slot = Slot::new();
pub static DLCLOSE: Slot = Slot::new();
pub static EXIT: Slot = Slot::new();
pub static START_MAIN: Slot = Slot::new();
pub static EXIT_: Slot = Slot::new();
pub static EXIT_UPPER: Slot = Slot::new();
pub static FORK: Slot = Slot::new();
pub static FORK_RAW: Slot = Slot::new();
pub static POSIX_SPAWN: Slot = Slot::new();
pub static POSIX_SPAWNP: Slot = Slot::new();
pub static EXECVE: Slot = Slot::new();
pub static EXECV: Slot = Slot::new();
pub static EXECVP: Slot = Slot::new();
pub static EXECVPE: Slot = Slot::new();
pub static FEXECVE: Slot = Slot::new();
pub static EXECVEAT: Slot = Slot::new();
pub static SIGACTION: Slot = Slot::new();
pub static SIGNAL: Slot = Slot::new();

/// 0: not resolved, 1: resolving (dlsym's own allocations go to the bootstrap buffer), 2: done.
static STATE: AtomicU8 = AtomicU8::new(0);

/// True while `dlsym` runs on behalf of [`resolve`].
#[inline]
pub fn resolving() -> bool {
    STATE.load(Ordering::Acquire) == 1
}

fn lookup(name: &CStr) -> usize {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; it returns NULL if absent.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
}

fn set(slot: &Slot, name: &CStr, fallback: usize) {
    let mut f = lookup(name);
    if f == 0 {
        f = fallback;
    }
    slot.0.store(f, Ordering::Release);
}

/// Resolves every next definition. Idempotent; safe to call from any hook.
/// Concurrent callers wait for the first (only possible during start-up).
pub fn resolve() {
    match STATE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(2) => return,
        Err(_) => {
            // Another thread is resolving; its dlsym cannot need us to finish.
            while STATE.load(Ordering::Acquire) != 2 {
                core::hint::spin_loop();
            }
            return;
        }
    }
    set(&MALLOC, c"malloc", __libc_malloc as *const () as usize);
    set(&CALLOC, c"calloc", __libc_calloc as *const () as usize);
    set(&REALLOC, c"realloc", __libc_realloc as *const () as usize);
    set(&FREE, c"free", __libc_free as *const () as usize);
    set(
        &MEMALIGN,
        c"memalign",
        __libc_memalign as *const () as usize,
    );
    set(&VALLOC, c"valloc", __libc_valloc as *const () as usize);
    set(&PVALLOC, c"pvalloc", __libc_pvalloc as *const () as usize);
    set(&POSIX_MEMALIGN, c"posix_memalign", 0);
    set(&ALIGNED_ALLOC, c"aligned_alloc", 0);
    set(&USABLE_SIZE, c"malloc_usable_size", 0);
    set(&BRK, c"brk", 0);
    set(&SBRK, c"sbrk", 0);
    set(&DLCLOSE, c"dlclose", 0);
    crate::modules::MEMTRACE_REAL_DLOPEN.store(lookup(c"dlopen"), Ordering::Release);
    set(&EXIT, c"exit", 0);
    set(&START_MAIN, c"__libc_start_main", 0);
    set(&EXIT_, c"_exit", 0);
    set(&EXIT_UPPER, c"_Exit", 0);
    set(&FORK, c"fork", 0);
    set(&FORK_RAW, c"_Fork", 0);
    set(&POSIX_SPAWN, c"posix_spawn", 0);
    set(&POSIX_SPAWNP, c"posix_spawnp", 0);
    set(&EXECVE, c"execve", 0);
    set(&EXECV, c"execv", 0);
    set(&EXECVP, c"execvp", 0);
    set(&EXECVPE, c"execvpe", 0);
    set(&FEXECVE, c"fexecve", 0);
    set(&EXECVEAT, c"execveat", 0);
    set(&SIGACTION, c"sigaction", 0);
    set(&SIGNAL, c"signal", 0);
    STATE.store(2, Ordering::Release);
}

/// Returns the resolved function at `slot`, resolving first if needed.
/// `None` only for optional functions the C library lacks.
#[inline]
pub fn get(slot: &Slot) -> Option<usize> {
    let f = slot.get();
    if f != 0 {
        return Some(f);
    }
    resolve();
    let f = slot.get();
    if f == 0 { None } else { Some(f) }
}

/// The bump allocator that serves allocations made while `dlsym` resolves.
pub mod bootstrap {
    use core::sync::atomic::{AtomicUsize, Ordering};

    const SIZE: usize = 256 * 1024;
    #[repr(C, align(64))]
    struct Arena(core::cell::UnsafeCell<[u8; SIZE]>);
    // SAFETY: disjoint ranges of the arena are handed out by an atomic bump
    // pointer; no two users ever get the same bytes.
    unsafe impl Sync for Arena {}
    static ARENA: Arena = Arena(core::cell::UnsafeCell::new([0; SIZE]));
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// 16 bytes in front of each block hold its size.
    const HDR: usize = 16;

    /// Allocates `size` bytes aligned to `align` (a power of two, at least 16).
    pub fn alloc(size: usize, align: usize) -> *mut u8 {
        let align = align.max(HDR);
        let base = ARENA.0.get() as usize;
        loop {
            let cur = NEXT.load(Ordering::Relaxed);
            let start = (base + cur + HDR).next_multiple_of(align);
            let end = start + size.max(1);
            if end > base + SIZE {
                return core::ptr::null_mut();
            }
            if NEXT
                .compare_exchange(cur, end - base, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: [start - HDR, end) lies inside the arena and is ours alone.
                unsafe { ((start - HDR) as *mut usize).write(size) };
                return start as *mut u8;
            }
        }
    }

    /// Whether `p` was handed out by [`alloc`].
    #[inline]
    pub fn owns(p: *const u8) -> bool {
        let base = ARENA.0.get() as usize;
        (p as usize) >= base && (p as usize) < base + SIZE
    }

    /// The size requested for a block of ours.
    ///
    /// # Safety
    /// `p` must satisfy [`owns`] and come from [`alloc`].
    pub unsafe fn size_of(p: *const u8) -> usize {
        // SAFETY: alloc stored the size HDR bytes before every block.
        unsafe { ((p as usize - HDR) as *const usize).read() }
    }
}
