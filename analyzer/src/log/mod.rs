//! Opening a log and reading its records in time order.
//!
//! [`Log::open`] maps the file read-only; [`Log::index`] walks the chunk
//! headers once (records are not decoded) and groups the chunks by stream;
//! [`Merge`] then decodes the streams lazily from the mapping and merges them
//! by event time with a heap over one cursor per stream. Memory therefore
//! grows with the number of chunks and streams, never with the number of
//! events; the analysis on top grows with live blocks and distinct stacks.
//!
//! ## Resident memory
//! Pages of a file mapping count in the process's RSS once touched, so a
//! mapped log would otherwise end up wholly resident. Every pass releases
//! what it has consumed ([`Log::release`], `MADV_DONTNEED`, which keeps the
//! bytes valid): the index walk every 256 KiB, each stream's cursor when it
//! finishes a chunk and every window of up to 256 KiB inside one (8 MiB
//! shared by all streams), and with more than 1024 streams the merge
//! releases the whole mapping each time 16 MiB of records were decoded. A 20M-event log
//! (270 MB) is analyzed in about 22 MiB (`scripts/bench-analyzer.sh`).
//! The holes of a sparse log are covered with zero pages when it is opened,
//! so reading them never needs the file system's space (SIGBUS on a full
//! tmpfs otherwise).
//!
//! ## Invariants
//! - Records of one stream come out in file order (chunks sorted by `seq`,
//!   which is file order in a well-formed log), whatever their times; records
//!   of different streams come out by time, ties broken by stream order.
//! - A REALLOC comes out twice: at `time` with [`Event::realloc_end`] false
//!   (the moment the old block is released) and at `time_after` with it true
//!   (the moment the new block exists), so another thread reusing either
//!   address in between is replayed in the right order.
//! - Records without a time (STACK, torn, unknown tags) take the time of the
//!   stream's previous record.
//!
//! ## Damage policy
//! - Not a log, another format version, a corrupt header, a file that ends
//!   inside the 4096-byte header, an empty file: [`Error`] (exit status 2).
//! - The file ends before the header's `reserved_end` (copied while the
//!   target ran, or cut short by a full disk): *truncated*. Everything that
//!   can be decoded is reported, the report says so, and a record cut by the
//!   end of the file ends its stream quietly.
//! - A corrupt chunk header, or a corrupt record in a chunk that is wholly
//!   inside the file: [`Error`]. The writer never produces these, even when
//!   the target dies mid-write (it stores the tag byte last, which the
//!   decoder reports as a torn record), so they mean the file is damaged and
//!   a report from it could not be trusted.
//! - Torn records and chunk slots that were reserved but never written are
//!   counted and skipped.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use memtrace_format::Header;

use crate::error::{Error, Result};

mod bus;
mod handoff;
mod index;
pub mod live;
mod merge;
mod open;
pub mod packed;
mod stream;
pub mod tail;

pub(crate) use handoff::{Alloc, Sink};
pub use handoff::{for_each_event, for_each_event_ahead};
pub use index::{ChunkRef, Index, StreamChunks};
pub use merge::{Merge, RawMerge};
pub use stream::{Event, NO_SLOT, exit_scan_values};

/// The system's page size (4096 if it cannot be read).
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        match usize::try_from(v) {
            Ok(v) if v.is_power_of_two() => v,
            _ => 4096,
        }
    })
}

/// An opened, mapped log file (or bytes already in memory).
pub struct Log {
    path: PathBuf,
    /// Catches reads past the end of a file truncated under us (see
    /// [`bus`]); dropped before the mapping it guards.
    bus: Option<bus::Guard>,
    data: Data,
}

enum Data {
    /// A read-only shared mapping of the file; consumed windows are dropped
    /// from the process's page tables (see [`Log::release`]).
    Map(Mmap),
    /// Bytes handed over by the caller (tests, fuzzing).
    Owned(Box<[u8]>),
}

/// Bytes decoded from a stream before its consumed pages are released.
const RELEASE_WINDOW: usize = 256 * 1024;
/// The merge keeps every stream's window resident at once: the windows of
/// all streams together stay under this many bytes.
const RELEASE_BUDGET: usize = 8 << 20;
/// With more streams than this, the merge releases the whole mapping each
/// time records spanning [`SWEEP_PAGES`] pages have been decoded, instead: it
/// holds one decoded record per stream, so otherwise a page per stream would
/// stay resident (a whole file of small chunks, each its own stream).
const SWEEP_STREAMS: usize = 1024;
/// See [`SWEEP_STREAMS`]: at most this many pages (and the few of the
/// record being decoded) are resident between sweeps.
const SWEEP_PAGES: usize = 4096;

impl Log {
    /// Wraps bytes already in memory (tests, fuzzing): `path` only names the log in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Log {
        Log {
            path: path.to_owned(),
            bus: None,
            data: Data::Owned(bytes.into()),
        }
    }

    /// Whether the file was found shorter than its mapping while it was being
    /// read (truncated by another process): what was read past its new end
    /// was zeros, so nothing decoded from this log can be trusted.
    pub fn shrank(&self) -> bool {
        self.bus.as_ref().is_some_and(bus::Guard::shrank)
    }

    /// `r`, or [`Error::Shrank`] if the file shrank while it was being read
    /// (whatever was decoded from the zeros, error or not, is void).
    pub fn checked<T>(&self, r: Result<T>) -> Result<T> {
        if self.shrank() {
            return Err(Error::Shrank {
                path: self.path.clone(),
            });
        }
        r
    }

    /// Tells the kernel that the file's bytes in `[start, end)` will not be
    /// read again soon, so their pages leave this process's resident set
    /// (file-backed pages of a mapping count in RSS until then). The bytes stay
    /// valid: a later read faults them in again from the page cache. Only whole
    /// pages inside the range are released. No-op for in-memory logs.
    pub fn release(&self, start: usize, end: usize) {
        let Data::Map(map) = &self.data else {
            return;
        };
        let page = page_size();
        let end = end.min(map.len());
        let start = start.next_multiple_of(page);
        let end = end - end % page;
        if start >= end {
            return;
        }
        // SAFETY: the range lies inside the mapping. MADV_DONTNEED on a shared
        // file mapping only drops the page-table entries: the contents are
        // read again from the file on the next access, so references into the
        // mapping stay valid and see the same bytes.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }

    /// The path the log was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Map(m) => m,
            Data::Owned(b) => b,
        }
    }

    /// Whether this is a packed log (see [`crate::pack`]).
    pub fn is_packed(&self) -> bool {
        packed::is_packed(self.bytes())
    }

    /// Parses the file header (of a packed log: the raw log's, kept inside).
    pub fn header(&self) -> Result<Header<'_>> {
        let bytes = if self.is_packed() {
            packed::header_page(self.bytes())
        } else {
            self.bytes()
        };
        let r = Header::parse(bytes).map_err(|err| Error::Header {
            path: self.path.clone(),
            err,
        });
        self.checked(r)
    }
}

#[cfg(test)]
mod tests;
