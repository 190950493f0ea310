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
//! - The pool holds `SLOTS` files named `0` to `15`, each made again by
//!   `memtrace run` once taken. A slot holding a pool file (a regular,
//!   empty file of ours, mode 0600, one link; anything else stays where it
//!   is) is renamed, inside the pool, to this process's own name there
//!   (`t<pid>`), opened (`O_NOFOLLOW`) and checked again: in the 0700
//!   directory nothing can swap it between the two. Then it is renamed into
//!   the log's name with `RENAME_NOREPLACE`, which, like `O_EXCL`, never
//!   replaces a name and never follows a symbolic link there; the
//!   descriptor is that very file's. No directory listing is needed.
//! - An empty slot (another process took it, `ENOENT`) makes us try the
//!   next; the first slot tried depends on the pid. A taken log name
//!   (`EEXIST`) puts the file back in its slot and is said to the caller,
//!   which tries the next `.N` name. Any other failure (no `renameat2`, a
//!   file system without `RENAME_NOREPLACE`, a sandbox refusing the call)
//!   removes our own name and ends the attempt: the log is created as
//!   before, as it is when every slot is empty.
//! - A process under a seccomp filter from its start (a container's) does
//!   not use the pool: such a filter may kill on `renameat2`, which the
//!   dynamic loader never needed.
//!
//! Not on the hot path: once per log.

use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{fstat as stat, sys_errno};

/// The pool's name, NUL-terminated (empty: no pool).
struct Name(core::cell::UnsafeCell<[u8; NAME_CAP]>);
// SAFETY: written once by `init`, in the constructor, before any other
// thread of the process can run our code; only read afterwards.
unsafe impl Sync for Name {}
const NAME_CAP: usize = 96;
static NAME: Name = Name(core::cell::UnsafeCell::new([0; NAME_CAP]));
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);

/// The pool's slots: files named `0` to `SLOTS - 1` (`memtrace run` makes
/// each again once taken).
const SLOTS: usize = 16;

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
    // A filter from the start (a container's) may kill on `renameat2`;
    // not knowing counts as one.
    if !ok || crate::sandbox::filtered().unwrap_or(true) {
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
    // A name already there (an exec'd image's first name is its fork
    // child's log) is passed over before a pool file is moved for it.
    if stat_at(libc::AT_FDCWD, path).is_some() {
        return Claim::Taken;
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
    // This process's own name in the pool, `t<pid>`: one left by a process
    // of the same pid that died holding it is ours to drop.
    let pid = crate::sys::getpid();
    let mut own = [0u8; 16];
    own[0] = b't';
    let n = crate::sys::write_decimal(pid as u64, &mut own[1..12]);
    own[1 + n] = 0;
    // SAFETY: unlinkat of a NUL-terminated name in our pool directory.
    unsafe { libc::syscall(libc::SYS_unlinkat, dfd, own.as_ptr(), 0) };
    // Processes starting together begin at different slots.
    for k in 0..SLOTS {
        let slot = (pid as usize + k) % SLOTS;
        let mut name = [0u8; 4];
        let n = crate::sys::write_decimal(slot as u64, &mut name[..3]);
        name[n] = 0;
        // Only what looks like a pool file is moved: anything else stays.
        match stat_at(dfd, &name) {
            Some(st) if is_pool_file(&st, euid) => {}
            _ => continue,
        }
        match rename(dfd, &name, dfd, &own) {
            0 => return place(dfd, &own, &name, path, euid),
            // Taken by another process since.
            libc::ENOENT => continue,
            // No renameat2, no RENAME_NOREPLACE here, or refused: no pool.
            _ => return Claim::None,
        }
    }
    Claim::None
}

/// Opens the pool file just moved to our own name `own` in the pool `dfd`,
/// checks it (it is in our 0700 directory: nothing can swap it any more)
/// and moves it to the log's name `path`, with the descriptor bound to that
/// very file. A taken name puts it back in its `slot` (or drops it, if the
/// slot was filled meanwhile).
fn place(dfd: c_int, own: &[u8], slot: &[u8], path: &[u8], euid: u32) -> Claim {
    // SAFETY: `own` is NUL-terminated; openat does not retain it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            dfd,
            own.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        ) as c_int
    };
    let fit = fd >= 0 && stat(fd).is_some_and(|st| is_pool_file(&st, euid));
    let moved = if fit {
        rename(dfd, own, libc::AT_FDCWD, path)
    } else {
        -1
    };
    if moved == 0 {
        return Claim::Got(fd);
    }
    if fd >= 0 {
        // SAFETY: closing the descriptor we opened above.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
    // Back in its slot if the name was taken (and the slot is still
    // empty), else dropped.
    if moved != libc::EEXIST || rename(dfd, own, dfd, slot) != 0 {
        // SAFETY: unlinkat of a NUL-terminated name in our pool directory.
        unsafe { libc::syscall(libc::SYS_unlinkat, dfd, own.as_ptr(), 0) };
    }
    if moved == libc::EEXIST {
        Claim::Taken
    } else {
        Claim::None
    }
}

/// `renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE)`: 0, or the
/// error number.
fn rename(from_dir: c_int, from: &[u8], to_dir: c_int, to: &[u8]) -> c_int {
    // SAFETY: both names are NUL-terminated; renameat2 retains neither.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            from_dir,
            from.as_ptr(),
            to_dir,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 { 0 } else { sys_errno() }
}

/// Whether `st` is a pool file's: a regular, empty file of `euid`, mode
/// 0600, one link.
fn is_pool_file(st: &libc::stat, euid: u32) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_mode & 0o7777 == 0o600
        && st.st_uid == euid
        && st.st_nlink == 1
        && st.st_size == 0
}

/// `fstatat` of `name` (NUL-terminated) in `dfd`, not following a symlink.
fn stat_at(dfd: c_int, name: &[u8]) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: newfstatat writes one `stat` into our own struct; `name` is
    // NUL-terminated and not retained.
    let r = unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            dfd,
            name.as_ptr(),
            &mut st as *mut libc::stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (r == 0).then_some(st)
}
