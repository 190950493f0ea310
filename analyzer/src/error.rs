//! The library's error type: every message names the log file and, where
//! one applies, the place in it (chunk offset, stream), so the binary can
//! print it as one line.

use std::path::PathBuf;

use memtrace_format::DecodeError;

/// Why a log could not be analyzed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, inspected or mapped.
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path names something that is not a regular file.
    #[error("{}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// The file is empty (the traced process never wrote its header).
    #[error("{}: empty file, not a memtrace log", path.display())]
    Empty { path: PathBuf },
    /// The header is missing, foreign, of another version, or corrupt.
    #[error("{}: {err}", path.display())]
    Header { path: PathBuf, err: DecodeError },
    /// A chunk header is corrupt.
    #[error("{}: {err} (chunk at file offset {offset:#x})", path.display())]
    Chunk {
        path: PathBuf,
        offset: u64,
        err: DecodeError,
    },
    /// A record inside an intact chunk is corrupt.
    #[error("{}: {err} (stream {stream}, chunk at file offset {offset:#x})", path.display())]
    Record {
        path: PathBuf,
        stream: u32,
        offset: u64,
        err: DecodeError,
    },
    /// A packed log is damaged, or a log could not be packed.
    #[error("{}: packed log: {why}", path.display())]
    Pack { path: PathBuf, why: String },
    /// The file was truncated by another process while it was being read
    /// (its mapping's pages past the new end read as zeros, see
    /// [`crate::log::Log::checked`]).
    #[error("{}: the file shrank while it was being read (truncated by another process)", path.display())]
    Shrank { path: PathBuf },
    /// A raw log whose writer is still running (see [`crate::log::live`]).
    #[error("{} is still being written by pid {pid}", path.display())]
    Live { path: PathBuf, pid: u32 },
    /// A fork child's inheritance could not be found: its parent's log is
    /// missing, or unreadable ([`crate::analysis::inherit`]).
    #[error("{}: {why}", path.display())]
    Inherit { path: PathBuf, why: String },
    /// A snapshot given to compare with does not fit (`--since`).
    #[error("{}: {why}", path.display())]
    Since { path: PathBuf, why: String },
    /// The time window asked for does not fit the log (`--from`, `--to`).
    #[error("{0}")]
    Window(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
