//! C++ `operator new` and `operator delete`.
//!
//! An allocator that a program brings (jemalloc, tcmalloc) defines the C++
//! operators itself, without going through `malloc`, so hooking the malloc
//! family alone misses every `new`. memtrace therefore interposes the
//! operators too, records them as one allocation or free each, and suppresses
//! the `malloc`/`free` that the next operator (libstdc++'s) makes inside, so
//! that nothing is counted twice.
//!
//! The throwing `new` forms must let `std::bad_alloc` (or whatever a
//! new-handler throws) propagate, and an exception must not unwind through a
//! Rust frame (this crate aborts on unwinding). So each throwing form is an
//! assembly stub that calls `memtrace_new_hook`, which allocates through the next
//! *nothrow* form and records; only when that fails, or when recording is not
//! possible, does the stub tail-jump to the next throwing form, leaving no
//! frame of ours on the stack for the exception to cross. libstdc++'s nothrow
//! `new` calls the throwing one inside a `try`: that inner call comes back to
//! the stub while the hook is active on this thread, and goes straight to the
//! real operator.

#![allow(non_snake_case)]

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use memtrace_format::Func;

use crate::record;

/// Set while an operator hook calls the real operator: the one allocator
/// call it makes (libstdc++'s `operator new` calls `malloc` once, its
/// `operator delete` calls `free`) is part of the operator's event and is
/// not recorded again. In an initial-exec TLS word ([`crate::tls`]).
struct Inside;

impl Inside {
    #[inline(always)]
    fn get() -> bool {
        // SAFETY: the slot is this thread's own aligned word.
        unsafe { *crate::tls::inside_slot() != 0 }
    }

    #[inline(always)]
    fn replace(v: bool) -> bool {
        let slot = crate::tls::inside_slot();
        // SAFETY: as in `get`; only this thread touches it.
        unsafe { core::mem::replace(&mut *slot, v as usize) != 0 }
    }
}

/// Whether an operator hook is calling the real operator on this thread
/// (asked by the operator hooks themselves: the real nothrow operators call
/// the throwing ones).
#[inline]
pub fn inside_operator() -> bool {
    Inside::get()
}

/// Like [`inside_operator`], for the recorder's own events: the first one
/// inside an operator is the real operator's allocator call and uses the
/// mark up. So a hook left without returning (a signal handler that
/// longjmp'd out of the real operator) costs at most one unrecorded event,
/// not the thread's recording.
#[inline]
pub fn take_inside() -> bool {
    Inside::replace(false)
}

/// Marks the real operator's call (see [`Inside`]) until dropped.
struct Suppress(bool);
impl Suppress {
    #[inline(always)]
    fn new() -> Suppress {
        Suppress(Inside::replace(true))
    }
}
impl Drop for Suppress {
    fn drop(&mut self) {
        Inside::replace(self.0);
    }
}

/// Lazily resolved next definitions (libstdc++ may be dlopen'ed after start-up).
struct Next {
    addr: AtomicUsize,
    name: &'static CStr,
}

impl Next {
    const fn new(name: &'static CStr) -> Next {
        Next {
            addr: AtomicUsize::new(0),
            name,
        }
    }
    fn get(&self) -> usize {
        let a = self.addr.load(Ordering::Acquire);
        if a != 0 {
            return a;
        }
        let a = next_definition(self.name, 0);
        self.addr.store(a, Ordering::Release);
        a
    }
}

/// The next definition of the operator `name` (not `own`, ours): after us in
/// the global scope, else in a C++ runtime loaded into a local scope (see
/// [`crate::cxx_runtime`]); 0 if there is none (yet).
fn next_definition(name: &CStr, own: usize) -> usize {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    let a = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if a != 0 && a != own {
        return a;
    }
    crate::cxx_runtime::find(name, own)
}

/// With no C++ runtime to forward to, what libstdc++'s operators come down
/// to: a block from the next `malloc` (or `aligned_alloc` for the aligned
/// forms; never null for the throwing forms, which have nobody to throw
/// `std::bad_alloc` for them: memtrace aborts instead, as an unhandled
/// `bad_alloc` would).
fn fallback_new(size: usize, align: usize, which: usize, throwing: bool) -> *mut c_void {
    let size = size.max(1);
    let p = if which < 2 {
        match crate::real::get(&crate::real::MALLOC) {
            // SAFETY: the next malloc, with its C signature.
            Some(f) => unsafe { core::mem::transmute::<usize, crate::real::MallocFn>(f)(size) },
            None => core::ptr::null_mut(),
        }
    } else {
        match crate::real::get(&crate::real::ALIGNED_ALLOC) {
            // SAFETY: the next aligned_alloc, with its C signature; the size
            // is rounded up to the alignment, as it requires.
            Some(f) => unsafe {
                core::mem::transmute::<usize, crate::real::AlignFn>(f)(
                    align,
                    size.next_multiple_of(align.max(1)),
                )
            },
            None => core::ptr::null_mut(),
        }
    };
    if p.is_null() && throwing {
        // SAFETY: abort never returns; it is async-signal-safe.
        unsafe { libc::abort() };
    }
    p
}

/// The throwing forms' next definitions, read by the stubs (0 until resolved).
pub static MEMTRACE_NEXT_NEW: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

const THROWING: [&CStr; 4] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
];
static NOTHROW: [Next; 4] = [
    Next::new(c"_ZnwmRKSt9nothrow_t"),
    Next::new(c"_ZnamRKSt9nothrow_t"),
    Next::new(c"_ZnwmSt11align_val_tRKSt9nothrow_t"),
    Next::new(c"_ZnamSt11align_val_tRKSt9nothrow_t"),
];

/// `std::nothrow`: an empty object; only its address is passed.
static NOTHROW_T: u8 = 0;

/// Called by the stubs: returns the block, or 0/1 to make the stub jump to the
/// next throwing operator (0: the nothrow attempt failed, so the real operator
/// runs its new-handler and throws; 1: not recording on this call).
unsafe extern "C" fn memtrace_new_hook(size: usize, align: usize, which: usize) -> usize {
    let Some(throwing) = MEMTRACE_NEXT_NEW.get(which) else {
        return 1;
    };
    if throwing.load(Ordering::Acquire) == 0 {
        let a = next_definition(THROWING[which], STUBS[which] as usize);
        throwing.store(a, Ordering::Release);
    }
    let record = !inside_operator() && crate::thread::ENABLED.load(Ordering::Acquire);
    if throwing.load(Ordering::Acquire) == 0 {
        // The stub must not jump to nothing: the block comes from malloc.
        let p = fallback_new(size, align, which, true);
        if record {
            record::alloc(new_func(which), p as usize, size);
        }
        return p as usize;
    }
    if !record {
        return 1;
    }
    let f = NOTHROW[which].get();
    if f == 0 {
        return 1;
    }
    let p = {
        let _s = Suppress::new();
        let nt = &NOTHROW_T as *const u8 as *const c_void;
        // SAFETY: the next nothrow operator of the same family, with its C++ signature.
        unsafe {
            if which < 2 {
                core::mem::transmute::<
                    usize,
                    unsafe extern "C" fn(usize, *const c_void) -> *mut c_void,
                >(f)(size, nt)
            } else {
                core::mem::transmute::<
                    usize,
                    unsafe extern "C" fn(usize, usize, *const c_void) -> *mut c_void,
                >(f)(size, align, nt)
            }
        }
    };
    if p.is_null() {
        return 0;
    }
    record::alloc(new_func(which), p as usize, size);
    p as usize
}

/// `new` or `new[]`, by the form's index.
fn new_func(which: usize) -> Func {
    if which.is_multiple_of(2) {
        Func::New
    } else {
        Func::NewArray
    }
}

macro_rules! new_stub {
    ($name:ident, $which:expr) => {
        /// A throwing `operator new` form (see the module docs).
        ///
        /// # Safety
        /// As the C++ operator.
        #[cfg_attr(not(test), unsafe(no_mangle))]
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            // CFI directives let unwinders (ours, when the hook records the
            // stack, and the C++ runtime's) step through this frame.
            core::arch::naked_asm!(
                ".cfi_startproc",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "push rsi",
                ".cfi_adjust_cfa_offset 8",
                "sub rsp, 8",
                ".cfi_adjust_cfa_offset 8",
                // size in rdi; align (aligned forms) in rsi; which in rdx
                "mov edx, {which}",
                "call {hook}",
                "add rsp, 8",
                ".cfi_adjust_cfa_offset -8",
                "pop rsi",
                ".cfi_adjust_cfa_offset -8",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "cmp rax, 1",
                "jbe 2f",
                "ret",
                "2:",
                "mov rax, qword ptr [rip + {next} + {off}]",
                "jmp rax",
                ".cfi_endproc",
                which = const $which,
                off = const $which * 8,
                hook = sym memtrace_new_hook,
                next = sym MEMTRACE_NEXT_NEW,
            )
        }
    };
}

new_stub!(_Znwm, 0);
new_stub!(_Znam, 1);
new_stub!(_ZnwmSt11align_val_t, 2);
new_stub!(_ZnamSt11align_val_t, 3);

/// The throwing stubs, by index: what the next definition must not be.
static STUBS: [unsafe extern "C" fn(); 4] =
    [_Znwm, _Znam, _ZnwmSt11align_val_t, _ZnamSt11align_val_t];

/// The alignment argument of a nothrow form (1 for the unaligned ones).
macro_rules! nothrow_align {
    ($size:ident, $nt:ident) => {
        1
    };
    ($size:ident, $align:ident, $nt:ident) => {
        $align
    };
}

macro_rules! nothrow_new {
    ($name:ident, $which:expr, $func:expr, ($($arg:ident: $t:ty),*), $call:expr) => {
        /// A nothrow `operator new` form: forwards and records.
        ///
        /// # Safety
        /// As the C++ operator.
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> *mut c_void {
            let f = NOTHROW[$which].get();
            let record = !inside_operator();
            if f == 0 {
                #[allow(clippy::redundant_closure_call)]
                let size = ($call)($($arg),*);
                let p = fallback_new(size, nothrow_align!($($arg),*), $which, false);
                if record && !p.is_null() {
                    record::alloc($func, p as usize, size);
                }
                return p;
            }
            let p = {
                let _s = Suppress::new();
                // SAFETY: the next definition of this operator, same signature.
                unsafe { core::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> *mut c_void>(f)($($arg),*) }
            };
            if record && !p.is_null() {
                #[allow(clippy::redundant_closure_call)]
                record::alloc($func, p as usize, ($call)($($arg),*));
            }
            p
        }
    };
}

nothrow_new!(_ZnwmRKSt9nothrow_t, 0, Func::New, (size: usize, nt: *const c_void), |s, _| s);
nothrow_new!(_ZnamRKSt9nothrow_t, 1, Func::NewArray, (size: usize, nt: *const c_void), |s, _| s);
nothrow_new!(_ZnwmSt11align_val_tRKSt9nothrow_t, 2, Func::New, (size: usize, align: usize, nt: *const c_void), |s, _, _| s);
nothrow_new!(_ZnamSt11align_val_tRKSt9nothrow_t, 3, Func::NewArray, (size: usize, align: usize, nt: *const c_void), |s, _, _| s);

macro_rules! delete_hook {
    ($name:ident, $func:expr, ($($arg:ident: $t:ty),*)) => {
        /// An `operator delete` form: records the free, forwards.
        ///
        /// # Safety
        /// As the C++ operator.
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $arg: $t)*) {
            static NEXT: Next = Next::new({
                // SAFETY: the symbol name is a NUL-terminated literal.
                unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) }
            });
            if p.is_null() {
                return;
            }
            if !inside_operator() {
                record::free($func, p as usize);
            }
            let f = NEXT.get();
            if f == 0 {
                // No C++ runtime to forward to: the block came from malloc
                // (see `fallback_new`).
                if let Some(free) = crate::real::get(&crate::real::FREE) {
                    // SAFETY: the next free, with its C signature.
                    unsafe { core::mem::transmute::<usize, crate::real::FreeFn>(free)(p) };
                }
                return;
            }
            let _s = Suppress::new();
            // SAFETY: the next definition of this operator, same signature.
            unsafe { core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void $(, $t)*)>(f)(p $(, $arg)*) }
        }
    };
}

delete_hook!(_ZdlPv, Func::Delete, ());
delete_hook!(_ZdaPv, Func::DeleteArray, ());
delete_hook!(_ZdlPvm, Func::Delete, (size: usize));
delete_hook!(_ZdaPvm, Func::DeleteArray, (size: usize));
delete_hook!(_ZdlPvRKSt9nothrow_t, Func::Delete, (nt: *const c_void));
delete_hook!(_ZdaPvRKSt9nothrow_t, Func::DeleteArray, (nt: *const c_void));
delete_hook!(_ZdlPvSt11align_val_t, Func::Delete, (align: usize));
delete_hook!(_ZdaPvSt11align_val_t, Func::DeleteArray, (align: usize));
delete_hook!(_ZdlPvmSt11align_val_t, Func::Delete, (size: usize, align: usize));
delete_hook!(_ZdaPvmSt11align_val_t, Func::DeleteArray, (size: usize, align: usize));
delete_hook!(_ZdlPvSt11align_val_tRKSt9nothrow_t, Func::Delete, (align: usize, nt: *const c_void));
delete_hook!(_ZdaPvSt11align_val_tRKSt9nothrow_t, Func::DeleteArray, (align: usize, nt: *const c_void));
