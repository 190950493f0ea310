//! The exit statuses of `memtrace`, named in one place.
//!
//! | status | when |
//! |---|---|
//! | [`OK`] | the subcommand did its job (`check`: every judged process passed) |
//! | [`ERROR`] | memtrace could not do its job: bad usage, an unreadable or corrupt log, a missing preload library, a log that cannot be packed; `check` when nothing could be judged ([`NOTHING_JUDGED`]) |
//! | [`TRUNCATED`] | `report`, `export`, `flamegraph`, `diff`: the output was written from a truncated log |
//! | [`LEAKED`] | `check`: a rule failed (unless `--error-exitcode` says otherwise; LeakSanitizer's default) |
//! | the command's own | `run` (and `check` when the command failed): its exit code, or 128 + the signal that killed it ([`of_status`]) |
//!
//! Uses nothing of the crate.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The subcommand did its job.
pub const OK: u8 = 0;

/// memtrace could not do its job (the error is printed in one line).
pub const ERROR: u8 = 2;

/// The output was written from a truncated log (said in one error line).
pub const TRUNCATED: u8 = 3;

/// `memtrace check`: a rule failed, unless `--error-exitcode` says
/// otherwise (LeakSanitizer's exit code).
pub const LEAKED: u8 = 23;

/// `memtrace check`: no process was judged (every log skipped: replaced by
/// exec, killed, not selected, its malloc not interposed): memtrace could
/// not do its job, as when a log cannot be read.
pub const NOTHING_JUDGED: u8 = ERROR;

/// The exit status that stands for a child's `status`, as a shell gives it:
/// its code, or 128 + the signal that killed it.
pub fn of_status(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        (None, None) => 1,
    }
}
