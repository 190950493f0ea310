//! The allocator's frame of valgrind's stacks (see the parent's docs): the
//! names valgrind gives its replacement of each allocating function, the
//! synthetic frames a memtrace stack gets in front for matching, and the
//! file names of valgrind's replacement library. Uses only the format crate.

use memtrace_format::Func;

/// Names of one synthetic allocator frame: valgrind's replacement function,
/// mangled and demangled.
pub(super) type Names = &'static [&'static str];
/// Synthetic frames put in front of the stack, innermost first.
pub(super) type Prologue = &'static [Names];

const MALLOC: Names = &["malloc"];
const CALLOC: Names = &["calloc"];
const REALLOC: Names = &["realloc"];
const REALLOCARRAY: Names = &["reallocarray"];
const POSIX_MEMALIGN: Names = &["posix_memalign"];
const ALIGNED_ALLOC: Names = &["aligned_alloc"];
const MEMALIGN: Names = &["memalign"];
const VALLOC: Names = &["valloc"];
const PVALLOC: Names = &["pvalloc"];
const NEW: Names = &[
    "_Znwm",
    "operator new(unsigned long)",
    "_ZnwmRKSt9nothrow_t",
    "operator new(unsigned long, std::nothrow_t const&)",
    "_ZnwmSt11align_val_t",
    "operator new(unsigned long, std::align_val_t)",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
    "__builtin_new",
];
const NEW_ARRAY: Names = &[
    "_Znam",
    "operator new[](unsigned long)",
    "_ZnamRKSt9nothrow_t",
    "operator new[](unsigned long, std::nothrow_t const&)",
    "_ZnamSt11align_val_t",
    "operator new[](unsigned long, std::align_val_t)",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
    "__builtin_vec_new",
];
const MMAP: Names = &["mmap", "mmap64", "mremap"];
const BRK: Names = &["brk", "sbrk"];
const FREE: Names = &["free"];
const MUNMAP: Names = &["munmap"];
const DELETE: Names = &["_ZdlPv", "operator delete(void*)"];
const DELETE_ARRAY: Names = &["_ZdaPv", "operator delete[](void*)"];

/// The file names of valgrind's replacement library (memcheck's preload),
/// on the platforms valgrind supports on Linux.
pub(super) const VGPRELOAD: &[&str] = &[
    "vgpreload_memcheck-amd64-linux.so",
    "vgpreload_memcheck-x86-linux.so",
    "vgpreload_memcheck-arm64-linux.so",
    "vgpreload_memcheck-arm-linux.so",
    "vgpreload_memcheck-ppc64le-linux.so",
    "vgpreload_memcheck-ppc64be-linux.so",
    "vgpreload_memcheck-ppc32-linux.so",
    "vgpreload_memcheck-s390x-linux.so",
    "vgpreload_memcheck-mips64-linux.so",
    "vgpreload_memcheck-mips32-linux.so",
    "vgpreload_memcheck-nanomips-linux.so",
    "vgpreload_memcheck-riscv64-linux.so",
];

/// The allocating functions, for a leak whose function is unknown.
pub(super) const ALLOCATORS: &[Func] = &[
    Func::Malloc,
    Func::Calloc,
    Func::Realloc,
    Func::Reallocarray,
    Func::PosixMemalign,
    Func::AlignedAlloc,
    Func::Memalign,
    Func::Valloc,
    Func::Pvalloc,
    Func::New,
    Func::NewArray,
    Func::Mmap,
    Func::Mmap64,
    Func::Mremap,
];

/// The synthetic frames valgrind's stack has in front of memtrace's, one
/// alternative per behaviour of some valgrind version: the function's own
/// replacement first, then the ones valgrind 3.19 shows (its `valloc`,
/// `aligned_alloc` and `posix_memalign` call its `memalign`, and glibc's
/// `reallocarray` tail-calls `realloc`).
pub(super) fn prologues(func: Func) -> &'static [Prologue] {
    match func {
        Func::Malloc => &[&[MALLOC]],
        Func::Calloc => &[&[CALLOC]],
        Func::Realloc => &[&[REALLOC], &[MALLOC, REALLOC]],
        Func::Reallocarray => &[&[REALLOCARRAY], &[REALLOC], &[REALLOC, REALLOCARRAY]],
        Func::PosixMemalign => &[&[POSIX_MEMALIGN], &[MEMALIGN, POSIX_MEMALIGN]],
        Func::AlignedAlloc => &[&[ALIGNED_ALLOC], &[MEMALIGN], &[MEMALIGN, ALIGNED_ALLOC]],
        Func::Memalign => &[&[MEMALIGN]],
        Func::Valloc => &[&[VALLOC], &[MEMALIGN], &[MEMALIGN, VALLOC]],
        Func::Pvalloc => &[&[PVALLOC], &[MEMALIGN, PVALLOC]],
        Func::New => &[&[NEW]],
        Func::NewArray => &[&[NEW_ARRAY]],
        Func::Mmap | Func::Mmap64 | Func::Mremap => &[&[MMAP]],
        Func::Brk | Func::Sbrk => &[&[BRK]],
        Func::Free => &[&[FREE]],
        Func::Munmap => &[&[MUNMAP]],
        Func::Delete => &[&[DELETE]],
        Func::DeleteArray => &[&[DELETE_ARRAY]],
    }
}

/// The name valgrind gives the allocator's frame in its suppressions
/// (`malloc` when unknown).
pub(super) fn valgrind_name(func: Option<Func>) -> &'static str {
    func.map_or("malloc", |f| prologues(f)[0][0][0])
}
