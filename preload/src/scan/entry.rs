//! The exit entry points: naked `exit`, `_exit`, `_Exit` and a trampoline
//! around `main` (installed by interposing `__libc_start_main`), which store
//! the exiting thread's registers into [`EXIT_REGS`] before anything else runs.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{EXIT_REGS, EXIT_TID};
use crate::sys;

/// The program's `main`, called by [`main_trampoline`].
static REAL_MAIN: AtomicUsize = AtomicUsize::new(0);

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
