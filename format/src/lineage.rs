//! How a process came to be and whether the next one can be traced: the
//! `how` bits of FORK and EXEC records.
//!
//! A process memtrace could not trace leaves no log, so what is known of it
//! is what its traced parent saw when it made it (FORK) or what a traced
//! process saw just before it replaced its image (EXEC). The analyzer puts
//! these together into the list of the untraced processes of a run, each
//! with its reason. Logs written before these bits have `how` = 0 and an
//! empty FORK path.

/// FORK: the child was made under the parent's seccomp filter; it is not
/// traced (a log of its own needs system calls the filter may forbid).
/// EXEC: the new image runs under the filter and is not traced, for the same
/// reason.
pub const SANDBOXED: u8 = 1;
/// FORK: made without fork handlers (`_Fork`, `syscall(SYS_fork)`, a raw
/// `clone`): the child's log starts at its first heap event, so a child that
/// made none has no log.
pub const RAW: u8 = 2;
/// FORK: the child was spawned to run the record's path at once
/// (`posix_spawn`, or a `vfork` child's exec).
pub const SPAWNED: u8 = 4;
/// FORK (spawned) and EXEC: the new image's environment does not preload
/// libmemtrace.so, so it is not traced.
pub const NO_PRELOAD: u8 = 8;
