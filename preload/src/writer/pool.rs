//! Log files made ahead of time by `memtrace run`, claimed instead of
//! created.
//!
//! Creating a file costs an inode allocation, which on a busy ext4 takes
//! from tens of microseconds to a millisecond (the allocator skips inodes
//! deleted recently), and a short process pays it twice: in the fork child
//! and again after exec. `memtrace run` keeps a few empty files ready in a
//! directory of its own next to the logs (`MEMTRACE_LOG_POOL` names it,
//! relative to the log's directory), made on its own thread. Claiming one is
//! a rename into the log's name, which allocates nothing.
//!
//! ## What is taken, and how
//! - The directory is opened with `O_NOFOLLOW` and must be the process's
//!   own (effective uid) with mode 0700: no one else can have put files in
//!   it. Anything else and the log is created as before.
//! - An entry is opened first (`O_NOFOLLOW`), checked (a regular, empty
//!   file of ours, mode 0600, one link), then renamed into the log's name
//!   with `RENAME_NOREPLACE`, which, like `O_EXCL`, never replaces a name
//!   and never follows a symbolic link there. The descriptor is the entry's
//!   inode whatever happens to the names: `memtrace run` never reuses an
//!   entry's name, so the rename moves that very inode.
//! - Another process that renamed the entry first leaves us `ENOENT`: the
//!   next entry is tried. A taken log name (`EEXIST`) is said to the caller,
//!   which tries the next `.N` name. Any other failure (no `renameat2`, a
//!   file system without `RENAME_NOREPLACE`, a sandbox refusing the call)
//!   ends the attempt: the log is created as before.
//!
//! Not on the hot path: once per log.

use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::sys_errno;

/// The pool's name, NUL-terminated (empty: no pool).
struct Name(core::cell::UnsafeCell<[u8; NAME_CAP]>);
// SAFETY: written once by `init`, in the constructor, before any other
// thread of the process can run our code; only read afterwards.
unsafe impl Sync for Name {}
const NAME_CAP: usize = 96;
static NAME: Name = Name(core::cell::UnsafeCell::new([0; NAME_CAP]));
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);

/// Entries tried per claim before giving up on the pool.
const TRIES: usize = 8;

/// Takes the pool's name from `MEMTRACE_LOG_POOL`: one path component of
/// letters, digits, `.`, `_` and `-` (not `.` or `..`); anything else is
/// ignored.
pub fn init(v: Option<&[u8]>) {
    let Some(v) = v else { return };
    let ok = !v.is_empty()
        && v.len() < NAME_CAP
        && v != b"."
        && v != b".."
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-');
    if !ok {
        return;
    }
    // SAFETY: see `Name`.
    let buf = unsafe { &mut *NAME.0.get() };
    buf[..v.len()].copy_from_slice(v);
    buf[v.len()] = 0;
    NAME_LEN.store(v.len(), Ordering::Release);
}

/// What [`claim`] did.
pub enum Claim {
    /// A pool file is now the log, open read-write at this descriptor.
    Got(c_int),
    /// The log's name is taken: the caller tries its next name.
    Taken,
    /// No pool file: the caller creates the log itself.
    None,
}

/// Claims a pool file as the log named by `path` (NUL-terminated, absolute
/// or relative to the current directory), whose file name starts at `base`.
pub fn claim(path: &[u8], base: usize) -> Claim {
    let n = NAME_LEN.load(Ordering::Acquire);
    if n == 0 || crate::sandbox::active() || base > path.len() {
        return Claim::None;
    }
    let mut dir = [0u8; super::PATH_CAP];
    if base + n + 1 > dir.len() {
        return Claim::None;
    }
    dir[..base].copy_from_slice(&path[..base]);
    // SAFETY: see `Name`.
    let name = unsafe { &*NAME.0.get() };
    dir[base..base + n].copy_from_slice(&name[..n]);
    dir[base + n] = 0;
    // SAFETY: `dir` is NUL-terminated; openat does not retain it.
    let dfd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        ) as c_int
    };
    if dfd < 0 {
        return Claim::None;
    }
    let got = claim_in(dfd, path);
    // SAFETY: closing the directory descriptor we opened above.
    unsafe { libc::syscall(libc::SYS_close, dfd) };
    got
}

/// [`claim`] with the pool's directory open at `dfd`.
fn claim_in(dfd: c_int, path: &[u8]) -> Claim {
    // SAFETY: geteuid has no arguments and cannot fail.
    let euid = unsafe { libc::syscall(libc::SYS_geteuid) } as u32;
    match stat(dfd) {
        Some(st) if st.st_uid == euid && st.st_mode & 0o7777 == 0o700 => {}
        _ => return Claim::None,
    }
    let mut ents = [0u8; 1024];
    // SAFETY: getdents64 writes at most `ents.len()` bytes into our buffer.
    let len = unsafe { libc::syscall(libc::SYS_getdents64, dfd, ents.as_mut_ptr(), ents.len()) };
    if len <= 0 {
        return Claim::None;
    }
    let ents = &ents[..len as usize];
    // Processes starting together begin at different entries.
    let skip = crate::sys::getpid() as usize % 4;
    let mut tried = 0;
    for pass in 0..2 {
        let mut at = 0usize;
        let mut k = 0usize;
        while at + 19 < ents.len() && tried < TRIES {
            // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
            let reclen = u16::from_ne_bytes([ents[at + 16], ents[at + 17]]) as usize;
            if reclen < 20 || at + reclen > ents.len() {
                return Claim::None;
            }
            let (d_type, name) = (ents[at + 18], &ents[at + 19..at + reclen]);
            at += reclen;
            let this = k;
            k += 1;
            if (pass == 0) != (this >= skip) {
                continue;
            }
            if name.first() == Some(&b'.') || !name.contains(&0) {
                continue;
            }
            if d_type != libc::DT_REG && d_type != libc::DT_UNKNOWN {
                continue;
            }
            tried += 1;
            match take(dfd, name, path, euid) {
                Some(done) => return done,
                None => continue,
            }
        }
    }
    Claim::None
}

/// Opens the pool entry `name` (NUL-terminated) of `dfd`, checks it and
/// renames it to `path`. `None`: this entry is not to be had, try the next.
fn take(dfd: c_int, name: &[u8], path: &[u8], euid: u32) -> Option<Claim> {
    // SAFETY: `name` is NUL-terminated (checked by the caller); openat does
    // not retain it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            dfd,
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        ) as c_int
    };
    if fd < 0 {
        return None;
    }
    let fit = stat(fd).is_some_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_mode & 0o7777 == 0o600
            && st.st_uid == euid
            && st.st_nlink == 1
            && st.st_size == 0
    });
    let r = if fit {
        // SAFETY: both names are NUL-terminated; renameat2 retains neither.
        unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                dfd,
                name.as_ptr(),
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        }
    } else {
        -1
    };
    if r == 0 {
        return Some(Claim::Got(fd));
    }
    let e = sys_errno();
    // SAFETY: closing the descriptor we opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
    match (fit, e) {
        (true, libc::EEXIST) => Some(Claim::Taken),
        // Another process renamed it first, or it is not a pool file.
        (false, _) | (true, libc::ENOENT) => None,
        // No renameat2, no RENAME_NOREPLACE here, or refused: no pool.
        _ => Some(Claim::None),
    }
}

/// `fstat` of `fd`.
fn stat(fd: c_int) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into our own struct.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some(st)
}
