//! The recorder's two thread-local words, in the initial-exec TLS model.
//!
//! A `thread_local!` in a shared library is reached through
//! `__tls_get_addr` (the general-dynamic model), a call on every event: 1-2%
//! of a traced churn's samples. libmemtrace.so is loaded with the program,
//! by `LD_PRELOAD`, so its TLS is in the static block of every thread and
//! the initial-exec sequence reaches it with two loads: the thread pointer
//! (`%fs:0`) plus the block's offset, which the dynamic linker writes into
//! the GOT once. (A `dlopen` of the library later would take the offset from
//! the small surplus glibc keeps for this; the two words fit.) The words
//! start at zero in every thread, as the `const` initialisers did.
//!
//! Uses nothing else of the crate.

core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl memtrace_tls_words",
    ".hidden memtrace_tls_words",
    ".type memtrace_tls_words, @object",
    ".size memtrace_tls_words, 16",
    "memtrace_tls_words:",
    ".zero 16",
    ".popsection",
);

/// The calling thread's two words.
#[inline(always)]
fn words() -> *mut [usize; 2] {
    let p: *mut [usize; 2];
    // SAFETY: the initial-exec sequence for a TLS symbol of this object:
    // `%fs:0` holds the thread pointer (x86-64 TLS ABI), and the GOT entry
    // the linker made for `@GOTTPOFF` holds the symbol's offset from it. It
    // only reads the thread pointer and the GOT.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + memtrace_tls_words@GOTTPOFF]",
            p = out(reg) p,
            options(pure, readonly, nostack),
        );
    }
    p
}

/// The calling thread's first word: its `thread::ThreadState` pointer.
#[inline(always)]
pub fn state_slot() -> *mut usize {
    words().cast::<usize>()
}

/// The calling thread's second word: whether a C++ operator hook is inside
/// the real operator (`cxx`), 0 or 1.
#[inline(always)]
pub fn inside_slot() -> *mut usize {
    // SAFETY: the second of the two words `words` points at.
    unsafe { words().cast::<usize>().add(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each thread has its own words, zero at its start.
    #[test]
    fn words_are_per_thread() {
        // SAFETY: the slots are this thread's own, aligned words.
        unsafe {
            assert_eq!(*state_slot(), 0);
            *state_slot() = 7;
            *inside_slot() = 1;
        }
        let (a, b) = std::thread::spawn(|| {
            // SAFETY: as above, for the new thread.
            unsafe {
                let seen = (*state_slot(), *inside_slot());
                *state_slot() = 9;
                seen
            }
        })
        .join()
        .unwrap();
        assert_eq!((a, b), (0, 0));
        // SAFETY: as above.
        unsafe {
            assert_eq!((*state_slot(), *inside_slot()), (7, 1));
            *state_slot() = 0;
            *inside_slot() = 0;
        }
        assert_ne!(state_slot(), inside_slot());
    }
}
