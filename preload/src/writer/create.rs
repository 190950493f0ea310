//! Creating the log file: a free name next to the one asked for, the file
//! extended to its header's size, the header page mapped and filled in.

use core::ffi::c_int;
use core::sync::atomic::Ordering;

use memtrace_format::HEADER_SIZE;
use memtrace_format::hdr::off;

use super::{DEV, FD, HEADER, INO, extend, identity, move_high, remember_path, sys_errno};
use crate::sys;

/// Creates the log file named by `path` (NUL-terminated) with O_EXCL and
/// O_NOFOLLOW, mode 0600, and maps its header. Tries `path.1`, `path.2`, ...
/// when the name is taken. Returns false if no log could be created.
pub fn open_log(path: &mut [u8], len: usize, forked_from: u32) -> bool {
    let Some(fd) = create_unique(path, len) else {
        return false;
    };
    let Some(h) = map_header(fd) else {
        return false;
    };
    // SAFETY: `h` is a fresh, exclusively owned HEADER_SIZE mapping.
    let page = unsafe { &mut *(h as *mut [u8; HEADER_SIZE]) };
    fill_header(page, forked_from);
    let (dev, ino) = identity(fd).unwrap_or((0, 0));
    DEV.store(dev, Ordering::Relaxed);
    INO.store(ino, Ordering::Relaxed);
    remember_path(fd);
    FD.store(move_high(fd) as u32, Ordering::Release);
    HEADER.store(h, Ordering::Release);
    true
}

/// Creates the file named by `path[..len]` with O_EXCL and O_NOFOLLOW, mode
/// 0600, trying `.1` to `.99` before its extension when the name is taken;
/// `path` ends up holding the name created, NUL-terminated. `None` if no
/// name was free or `path` has no room for the suffix.
fn create_unique(path: &mut [u8], len: usize) -> Option<c_int> {
    // A taken name gets ".N" before its extension (`app.12.1.mtr`), so that
    // globs on the extension still find it; a name without one gets it at
    // the end.
    let mut orig = [0u8; 4096];
    if len > orig.len() || len > path.len() {
        return None;
    }
    orig[..len].copy_from_slice(&path[..len]);
    let base = orig[..len]
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |i| i + 1);
    let dot = orig[base..len]
        .iter()
        .rposition(|&c| c == b'.')
        .filter(|&i| i > 0)
        .map_or(len, |i| base + i);
    let mut fd = -1;
    let mut n = 0;
    let mut pool = true;
    while n < 100 {
        let mut l = len;
        if n > 0 {
            let mut digits = [0u8; 3];
            let mut k = 0;
            let mut v = n;
            while v > 0 {
                digits[k] = b'0' + (v % 10) as u8;
                v /= 10;
                k += 1;
            }
            if len + 1 + k + 1 > path.len() {
                return None;
            }
            l = dot;
            path[l] = b'.';
            l += 1;
            while k > 0 {
                k -= 1;
                path[l] = digits[k];
                l += 1;
            }
            path[l..l + (len - dot)].copy_from_slice(&orig[dot..len]);
            l += len - dot;
        }
        path[l] = 0;
        if pool {
            match super::pool::claim(&path[..=l], base) {
                super::pool::Claim::Got(got) => {
                    fd = got;
                    break;
                }
                super::pool::Claim::Taken => {
                    n += 1;
                    continue;
                }
                super::pool::Claim::None => pool = false,
            }
        }
        // SAFETY: `path` is NUL-terminated at `l`; openat does not retain it.
        fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            ) as c_int
        };
        if fd >= 0 || sys_errno() != libc::EEXIST {
            break;
        }
        n += 1;
    }
    if fd < 0 {
        return None;
    }
    Some(fd)
}

/// Extends the new log at `fd` to its header's size and maps the header;
/// closes `fd` and returns `None` if either fails.
fn map_header(fd: c_int) -> Option<*mut u8> {
    if !extend(fd, 0, HEADER_SIZE) {
        // SAFETY: closing the descriptor we just opened.
        unsafe { libc::syscall(libc::SYS_close, fd) };
        return None;
    }
    let Some(h) = sys::mmap(
        0,
        HEADER_SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
        0,
    ) else {
        // SAFETY: closing the descriptor we just opened.
        unsafe { libc::syscall(libc::SYS_close, fd) };
        return None;
    };
    Some(h)
}

/// Writes the file header into the new log's header `page`: this process,
/// its executable and command line, the clocks, the sampling interval.
fn fill_header(page: &mut [u8; HEADER_SIZE], forked_from: u32) {
    let mut exe = [0u8; 1024];
    let exe_len = sys::exe(&mut exe);
    let mut cmd = [0u8; 2814];
    let mut cmd_len = sys::read_file(c"/proc/self/cmdline", &mut cmd);
    while cmd_len > 0 && cmd[cmd_len - 1] == 0 {
        cmd_len -= 1;
    }
    // SAFETY: sysconf is async-signal-safe in practice and does not allocate for _SC_PAGESIZE.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    memtrace_format::hdr::write_header(
        page,
        page_size,
        sys::getpid(),
        sys::getppid(),
        sys::realtime_ns(),
        sys::now_ns(),
        sys::current_brk(),
        forked_from,
        &exe[..exe_len],
        &cmd[..cmd_len],
    );
    let interval = crate::sample::interval().to_le_bytes();
    page[off::SAMPLE_INTERVAL..off::SAMPLE_INTERVAL + 8].copy_from_slice(&interval);
}
