//! The kernel's accounting at exit: when `memtrace run` samples the kernel's
//! view (`MEMTRACE_KERNEL_INTERVAL` set and not 0), the process reads its own
//! `/proc/self/smaps_rollup` and `/proc/self/smaps` once, at exit, after
//! libc's clean-up, and records them as KERNEL records (the counters, and the
//! mappings summed by category), so that the report's "at exit" figures are
//! exact rather than the last sample taken from outside. A process that lived
//! less than [`TABLE_FROM_NS`] records the counters only (see there).
//!
//! Constraints: this runs once, in the exit path ([`crate::init::finish`]),
//! never in a hook; it allocates nothing (one static buffer, parsed a line at
//! a time as the file is read) and takes no lock.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, Ordering};

use memtrace_format::encode;
use memtrace_format::kernel::{CATEGORIES, COUNTERS, KIND_COUNTERS, KIND_MAPS_AT_END};

/// Whether to take the snapshot at exit.
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// Reads `MEMTRACE_KERNEL_INTERVAL`: any value but an empty one or `0` turns
/// the snapshot on.
pub fn init(v: Option<&[u8]>) {
    let on = v.is_some_and(|v| !v.is_empty() && v.iter().any(|&c| c != b'0'));
    AT_EXIT.store(on, Ordering::Relaxed);
}

/// A process younger than this at exit records the counters but not the
/// mapping table: `/proc/self/smaps` makes the kernel walk every mapping's
/// page tables, about 0.5 ms of a short process (200 `/bin/true` fork-exec'd
/// under `MEMTRACE_KERNEL_INTERVAL`, medians of 5 rounds: 0.51 s with the
/// table, 0.41 s without it, 0.35 s with no kernel view at all), while a
/// `make` recipe's or a shell loop's processes are over in a few
/// milliseconds and the report's table of their mappings says little. From
/// 10 ms on, the table costs about 5% of the process's run or less.
pub const TABLE_FROM_NS: u64 = 10_000_000;

/// Room for a few lines of /proc output (a line is at most a path plus ~80 bytes).
const BUF: usize = 16 << 10;

/// The read buffer; used only by [`record_at_exit`], which runs once.
struct Buf(UnsafeCell<[u8; BUF]>);
// SAFETY: accessed only from `record_at_exit`, which `init::finish` calls at
// most once per process (its FINISHED flag), so never from two threads.
unsafe impl Sync for Buf {}
static BUFFER: Buf = Buf(UnsafeCell::new([0; BUF]));

/// Calls `line` with each line of the file at `path` (a line longer than the
/// buffer comes in pieces). Returns false if the file cannot be opened.
fn for_each_line(path: &core::ffi::CStr, buf: &mut [u8], mut line: impl FnMut(&[u8])) -> bool {
    // SAFETY: openat/read/close on a NUL-terminated path into a buffer we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        ) as c_int
    };
    if fd < 0 {
        return false;
    }
    let mut have = 0usize;
    loop {
        // SAFETY: reads into the unused tail of `buf`, which we own.
        let r = unsafe {
            libc::syscall(
                libc::SYS_read,
                fd,
                buf.as_mut_ptr().add(have),
                buf.len() - have,
            )
        };
        if r <= 0 {
            break;
        }
        have += r as usize;
        let mut start = 0;
        while let Some(nl) = buf[start..have].iter().position(|&b| b == b'\n') {
            line(&buf[start..start + nl]);
            start += nl + 1;
        }
        if start == 0 && have == buf.len() {
            // One line fills the buffer: it is passed in pieces.
            line(&buf[..have]);
            have = 0;
            continue;
        }
        buf.copy_within(start..have, 0);
        have -= start;
    }
    if have > 0 {
        line(&buf[..have]);
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
    true
}

/// The bytes of a `Name:   123 kB` line, if `line` is about `name`.
fn kb_field(line: &[u8], name: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    let digits = rest.iter().skip_while(|c| **c == b' ');
    let mut n = 0u64;
    let mut any = false;
    for &c in digits {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add((c - b'0') as u64);
        any = true;
    }
    any.then_some(n.saturating_mul(1024))
}

/// Splits off the next space-separated field.
fn field(s: &[u8]) -> (&[u8], &[u8]) {
    let s = s.trim_ascii_start();
    match s.iter().position(|&c| c == b' ') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, &[]),
    }
}

/// The log file's device and inode, to recognize its mapping.
fn log_identity() -> Option<(u64, u64)> {
    let id = crate::writer::log_identity();
    (id != (0, 0)).then_some(id)
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for &c in s {
        let d = (c as char).to_digit(16)? as u64;
        n = n.checked_mul(16)?.checked_add(d)?;
    }
    Some(n)
}

/// The category (index into [`CATEGORIES`]) of a mapping's header line.
fn category(header: &[u8], log: Option<(u64, u64)>) -> usize {
    let (_range, rest) = field(header);
    let (_perms, rest) = field(rest);
    let (_offset, rest) = field(rest);
    let (dev, rest) = field(rest);
    let (inode, rest) = field(rest);
    let path = rest.trim_ascii();
    if let (Some((log_dev, log_ino)), Some((maj, min))) = (log, dev.split_once_byte(b':')) {
        let ino = core::str::from_utf8(inode)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if let (Some(maj), Some(min), Some(ino)) = (parse_hex(maj), parse_hex(min), ino)
            && ino == log_ino
            && libc::makedev(maj as u32, min as u32) == log_dev
        {
            return 4;
        }
    }
    match path {
        b"[heap]" => 0,
        p if p.starts_with(b"[stack") => 1,
        b"" => 2,
        p if p.starts_with(b"[anon") => 2,
        p if p.ends_with(b"/libmemtrace.so") => 4,
        p if p.starts_with(b"/") => 3,
        _ => 5,
    }
}

trait SplitOnce {
    fn split_once_byte(&self, b: u8) -> Option<(&[u8], &[u8])>;
}

impl SplitOnce for [u8] {
    fn split_once_byte(&self, b: u8) -> Option<(&[u8], &[u8])> {
        let i = self.iter().position(|&c| c == b)?;
        Some((&self[..i], &self[i + 1..]))
    }
}

/// Records the counters and the mapping table, if `memtrace run` asked.
pub fn record_at_exit() {
    if !AT_EXIT.load(Ordering::Relaxed) || crate::sandbox::active() {
        return;
    }
    // SAFETY: see `Buf`: this is the buffer's only user, and it runs once.
    let buf = unsafe { &mut *BUFFER.0.get() };
    let mut c = [0u64; COUNTERS.len()];
    let read = for_each_line(c"/proc/self/smaps_rollup", buf, |l| {
        if let Some(x) = kb_field(l, b"Rss") {
            c[0] = x;
        } else if let Some(x) = kb_field(l, b"Pss") {
            c[1] = x;
        } else if let Some(x) = kb_field(l, b"Private_Clean") {
            c[2] += x;
        } else if let Some(x) = kb_field(l, b"Private_Dirty") {
            c[2] += x;
        } else if let Some(x) = kb_field(l, b"Swap") {
            c[3] = x;
        } else if let Some(x) = kb_field(l, b"Anonymous") {
            c[4] = x;
        }
    });
    if !read {
        return;
    }
    crate::record::marker(|b, t| encode::kernel(b, t, KIND_COUNTERS, &c));
    let started = crate::writer::started_ns();
    if started == 0 || crate::sys::now_ns().saturating_sub(started) < TABLE_FROM_NS {
        return;
    }
    let log = log_identity();
    let mut table = [[0u64; 4]; CATEGORIES.len()];
    let mut cur = 5;
    let read = for_each_line(c"/proc/self/smaps", buf, |l| {
        let first = field(l).0;
        let is_header =
            first.contains(&b'-') && first.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
        if is_header {
            cur = category(l, log);
        } else if let Some(x) = kb_field(l, b"Size") {
            table[cur][0] += x;
        } else if let Some(x) = kb_field(l, b"Rss") {
            table[cur][1] += x;
        } else if let Some(x) = kb_field(l, b"Pss") {
            table[cur][2] += x;
        } else if let Some(x) = kb_field(l, b"Swap") {
            table[cur][3] += x;
        }
    });
    if read {
        let mut flat = [0u64; 4 * CATEGORIES.len()];
        for (i, v) in table.iter().flatten().enumerate() {
            flat[i] = *v;
        }
        crate::record::marker(|b, t| encode::kernel(b, t, KIND_MAPS_AT_END, &flat));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields, kB values and categories of smaps lines.
    #[test]
    fn parses_lines() {
        assert_eq!(kb_field(b"Rss:      12 kB", b"Rss"), Some(12 << 10));
        assert_eq!(kb_field(b"Rss:      12 kB", b"Pss"), None);
        assert_eq!(kb_field(b"Rss:", b"Rss"), None);
        let h = |s: &str| category(s.as_bytes(), Some((libc::makedev(8, 1), 42)));
        assert_eq!(h("55d0-55e0 rw-p 00000000 00:00 0          [heap]"), 0);
        assert_eq!(h("7ffd-7ffe rw-p 00000000 00:00 0          [stack]"), 1);
        assert_eq!(h("7f00-7f01 rw-p 00000000 00:00 0 "), 2);
        assert_eq!(
            h("7f00-7f01 r-xp 00000000 08:01 7    /usr/lib/libc.so.6"),
            3
        );
        assert_eq!(h("7f00-7f01 rw-s 00000000 08:01 42   /tmp/any name.log"), 4);
        assert_eq!(h("7f00-7f01 r-xp 00000000 08:01 9    /x/libmemtrace.so"), 4);
        assert_eq!(h("7f00-7f01 r-xp 00000000 00:00 0    [vdso]"), 5);
    }

    /// Lines split across reads and lines longer than the buffer.
    #[test]
    fn reads_lines_of_a_file() {
        let mut buf = [0u8; 64];
        let mut n = 0;
        let mut longest = 0;
        assert!(for_each_line(c"/proc/self/maps", &mut buf, |l| {
            n += 1;
            longest = longest.max(l.len());
        }));
        assert!(n > 5 && longest <= 64);
        assert!(!for_each_line(c"/nonexistent", &mut buf, |_| {}));
        let mut c = 0u64;
        let mut big = [0u8; BUF];
        for_each_line(c"/proc/self/smaps_rollup", &mut big, |l| {
            if let Some(x) = kb_field(l, b"Rss") {
                c = x;
            }
        });
        assert!(c > 0);
    }
}
