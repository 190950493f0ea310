//! Opening a log file: mapping it read-only and covering its holes with zero pages.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::{Data, Log, bus, page_size};
use crate::error::{Error, Result};

impl Log {
    /// Opens and maps `path`; checks only that it is a non-empty regular file.
    pub fn open(path: &Path) -> Result<Log> {
        Log::map(path, true)
    }

    /// [`Log::open`] for a log its writer is still filling, read again and
    /// again as it grows (`memtrace run`'s live packer): its holes are not
    /// covered. Finding them costs time in proportion to the file where the
    /// writer's reserved space is unwritten extents (ext4: `SEEK_HOLE` walks
    /// the page cache, 12% of the live packer's time on a 100 MiB log), and
    /// the writer fills them after. A hole that cannot be read (a full tmpfs)
    /// raises SIGBUS, which the SIGBUS guard turns into [`Log::shrank`].
    pub fn open_growing(path: &Path) -> Result<Log> {
        Log::map(path, false)
    }

    fn map(path: &Path, holes: bool) -> Result<Log> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::NotAFile {
                path: path.to_owned(),
            });
        }
        if meta.len() == 0 {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        // SAFETY: the mapping is read-only and private to this process. The
        // file may still be written by a live target; the decoder checks
        // every length against the bytes present and treats the contents as
        // hostile, so a concurrently changing byte yields a decode error or
        // a torn record, never an out-of-bounds access.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        // Each pass reads every stream front to back: ask for read-ahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        if holes {
            cover_holes(&file, &map);
        }
        Ok(Log {
            path: path.to_owned(),
            bus: bus::Guard::new(map.as_ptr() as usize, map.len()),
            data: Data::Map(map),
        })
    }
}

/// Most holes [`cover_holes`] covers (each costs a mapping of its own, and
/// the kernel limits their number).
const MAX_HOLES: usize = 4096;

/// Maps anonymous zero pages over the holes of a sparse log (chunk slots
/// reserved but never written, or space the writer could not back). Reading
/// a hole through a file mapping needs a fresh page of the file system's, so
/// on a full tmpfs it raises SIGBUS; the zero page needs nothing. Best
/// effort: the holes present when the log is opened, at most [`MAX_HOLES`].
fn cover_holes(file: &File, map: &Mmap) {
    use std::os::fd::AsRawFd;
    let page = page_size() as i64;
    let len = map.len() as i64;
    let fd = file.as_raw_fd();
    let mut pos = 0i64;
    for _ in 0..MAX_HOLES {
        // SAFETY: lseek on our own descriptor has no memory effects.
        let hole = unsafe { libc::lseek(fd, pos, libc::SEEK_HOLE) };
        if hole < 0 || hole >= len {
            return;
        }
        // SAFETY: as above.
        let data = unsafe { libc::lseek(fd, hole, libc::SEEK_DATA) };
        let end = if data < 0 { len } else { data.min(len) };
        let (a, b) = ((hole + page - 1) / page * page, end / page * page);
        if a < b {
            // SAFETY: [a, b) lies inside our read-only mapping, which nothing
            // borrows yet; MAP_FIXED replaces those pages with private zero
            // pages, which is what the file holds there.
            let r = unsafe {
                libc::mmap(
                    map.as_ptr().add(a as usize) as *mut libc::c_void,
                    (b - a) as usize,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r == libc::MAP_FAILED {
                return;
            }
        }
        if end >= len {
            return;
        }
        pos = end;
    }
}
