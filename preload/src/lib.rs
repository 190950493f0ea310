//! # libmemtrace.so: the recorder injected with `LD_PRELOAD`
//!
//! Intercepts the malloc family, `mmap`/`mmap64`/`munmap`/`mremap`,
//! `brk`/`sbrk`, and the lifecycle calls (`fork`, `exec*`, `_exit`,
//! `dlclose`), captures the call stack of each allocation with a cached
//! DWARF-CFI unwinder, and appends compact records (see `memtrace-format`)
//! to a log file mapped `MAP_SHARED`, which survives the process.
//!
//! ## Design constraints (this code runs inside someone else's process)
//! - **No allocation through the hooked allocator** on any path: all memory
//!   comes from raw `mmap` system calls; the per-thread words are
//!   initial-exec TLS without a destructor ([`tls`]). The log header counts hooks
//!   entered re-entrantly (`NESTED_HOOKS`), and a test asserts it stays 0.
//! - **No lock that a signal or fork can leave held** on the hot path: stack
//!   interning and the unwind cache are lock-free; the module table uses a
//!   try-lock that is skipped, not waited for.
//! - **Never change the program's behaviour**: every call is forwarded to the
//!   next definition in lookup order; blocks are never grown or tagged; if the
//!   log cannot be written, events are counted as lost and the program runs on.
//! - **No panic escapes**: the crate is built with `panic = "abort"` and the
//!   hot path avoids panicking operations.
//!
//! ## Modules
//! - [`hooks`]: the exported functions of the C library.
//! - [`cxx`]: C++ `operator new`/`delete`.
//! - [`real`]: how the next definitions are found.
//! - [`record`]: one call to records.
//! - [`sample`]: sampling mode (`MEMTRACE_SAMPLE`).
//! - [`thread`]: per-thread state and the reentrancy guard.
//! - [`tls`]: the two thread-local words, in the initial-exec model.
//! - [`writer`]: the log file, its header and chunks.
//! - [`unwind`]: stack capture.
//! - [`stacks`]: stack interning.
//! - [`modules`]: loaded objects.
//! - [`init`]: start-up, fork and exit.
//! - [`forks`]: telling a fork child from its parent (`_Fork`, raw `clone`).
//! - [`kernel`]: the kernel's accounting, recorded once at exit.
//! - [`scan`]: the reachability scan at exit (the scanner it starts, the
//!   registers at `exit`).
//! - [`sandbox`]: recording under the program's own seccomp filter.
//! - [`snapshot`]: frozen copies for snapshots of a running process.
//! - [`sys`]: raw system calls.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

pub mod cxx;
pub mod cxx_runtime;
pub mod forks;
pub mod hooks;
pub mod init;
pub mod kernel;
pub mod modules;
pub mod real;
pub mod record;
pub mod sample;
pub mod sandbox;
pub mod scan;
pub mod snapshot;
pub mod stacks;
pub mod sys;
pub mod thread;
pub mod tls;
pub mod unwind;
pub mod writer;
