//! The run's log pool: empty log files made ahead of time, next to the logs,
//! which the preload claims by renaming one into a new log's name instead of
//! creating the file (the preload's `writer::pool` says how, and why).
//!
//! `memtrace run` makes the pool's directory in the logs' directory
//! (`.memtrace-pool.PID.RANDOM`, mode 0700, made exclusively: `mkdir`
//! never follows a symbolic link) and names it to the command in
//! `MEMTRACE_LOG_POOL`. A thread keeps its [`KEEP`] slots (files `0` to
//! `15`) filled, each file made with `O_EXCL | O_NOFOLLOW` relative to the
//! directory's descriptor, mode 0600, then moved into the slot; it fills a
//! slot again as soon as the directory tells it (`inotify`) that its file
//! was taken. With `-o`, the pool and its first files are made before the
//! command starts; without, the run directory is made by the command's
//! child between fork and exec, and the pool only after it: the command's
//! own log, and a child it starts at once, may be created as without a
//! pool. At the end the files left are removed through that descriptor,
//! and the directory with them (also when the run ends in an error). If
//! memtrace is killed, the directory and its empty files stay behind.
//!
//! Any failure (a directory that cannot be made, a full disk) only means
//! fewer files ready: each process then creates its log itself, as without
//! a pool. Uses `libc` only.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The variable that names the pool's directory (relative to the logs'
/// directory) to the preload.
pub(super) const POOL_ENV: &str = "MEMTRACE_LOG_POOL";

/// Files kept ready, in slots `0` to `KEEP - 1` (the preload's `SLOTS`): a
/// burst of short processes takes two each (the fork child's log and the
/// exec'd image's).
const KEEP: usize = 16;

/// How often the thread looks whether it is to stop, and how often it
/// looks for taken files when `inotify` is not to be had.
const POLL: Duration = Duration::from_millis(100);
const POLL_WITHOUT_INOTIFY: Duration = Duration::from_millis(20);

/// A name for the pool of this run that no one can guess ahead of it
/// (`.memtrace-pool.PID.RANDOM`): one planted at it would only leave the run
/// without a pool.
pub(super) fn fresh_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState's keys come from the OS's randomness.
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!(".memtrace-pool.{}.{r:016x}", std::process::id())
}

/// A pool being kept (see the module docs). Dropped without [`finish`]
/// (an error on the way), it is removed all the same.
///
/// [`finish`]: LogPool::finish
pub(super) struct LogPool {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Closed to wake the thread at once.
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<u64>>,
}

impl LogPool {
    /// Makes the pool's directory `name` in `dir`, its first [`FIRST`]
    /// files (with `-o`, before the command starts: for its own log and its
    /// first child's), and starts keeping it.
    pub(super) fn start(dir: &Path, name: &str) -> std::io::Result<LogPool> {
        let path = dir.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let made = pipe().and_then(|p| Ok((p, open_dir(&path).and_then(Keeper::new)?)));
        let ((woken, wake), mut keeper) = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(e);
            }
        };
        keeper.fill(FIRST);
        let watch = Watch::new(&path, woken);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-pool".into())
            .spawn(move || keeper.keep(watch, &stopping));
        match thread {
            Ok(thread) => Ok(LogPool {
                path,
                stop,
                wake: Some(wake),
                thread: Some(thread),
            }),
            Err(e) => {
                // The keeper, dropped with the closure, removed its files.
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// Stops keeping the pool, removes it and the files left in it; returns
    /// how many of its files were taken.
    pub(super) fn finish(mut self) -> u64 {
        self.stop()
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.wake = None;
        let taken = self.thread.take().map_or(0, |t| t.join().unwrap_or(0));
        // Empty now; `rmdir` neither follows a symbolic link nor removes a
        // directory with anything in it.
        let _ = std::fs::remove_dir(&self.path);
        taken
    }
}

impl Drop for LogPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pipe (read end, write end), both ends close-on-exec, the read end
/// nonblocking.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into our array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: descriptors just returned to us, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Files made before the command starts.
const FIRST: usize = 4;

/// Opens the pool's directory `path`, made just now, and makes sure it is
/// ours and 0700 whatever the umask.
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)?;
    ours(&dir)?;
    Ok(dir.into())
}

/// Makes sure the directory open as `dir` is this process's (not one put at
/// its name since it was made, in a directory others may write) and 0700
/// whatever the umask.
fn ours(dir: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid cannot fail.
    if dir.metadata()?.uid() != unsafe { libc::geteuid() } {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the log pool's directory is not ours",
        ));
    }
    dir.set_permissions(std::fs::Permissions::from_mode(0o700))
}

/// The directory, inside the pool's, where its files are made before they
/// are moved into the pool: making a file holds its directory's lock for
/// the whole inode allocation, which a process claiming a file would
/// otherwise wait for.
const WORKSHOP: &std::ffi::CStr = c".make";

/// The pool's directory and its files.
struct Keeper {
    dfd: OwnedFd,
    /// The [`WORKSHOP`].
    shop: OwnedFd,
    /// The slots' names, `0` to `KEEP - 1` (the preload's `SLOTS`).
    slots: Vec<CString>,
    /// The next workshop file's name.
    next: u64,
    /// Files made.
    made: u64,
    /// The files left and the workshop are removed.
    cleared: bool,
}

impl Keeper {
    fn new(dfd: OwnedFd) -> std::io::Result<Keeper> {
        // SAFETY: mkdirat of a NUL-terminated name relative to our directory.
        if unsafe { libc::mkdirat(dfd.as_raw_fd(), WORKSHOP.as_ptr(), 0o700) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        let fd = unsafe {
            libc::openat(
                dfd.as_raw_fd(),
                WORKSHOP.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: removes the workshop just made, relative to our directory.
            unsafe { libc::unlinkat(dfd.as_raw_fd(), WORKSHOP.as_ptr(), libc::AT_REMOVEDIR) };
            return Err(e);
        }
        // SAFETY: a descriptor just returned to us, owned by nobody else.
        let shop = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if let Err(e) = ours(&shop) {
            drop(shop);
            // SAFETY: as above.
            unsafe { libc::unlinkat(dfd.as_raw_fd(), WORKSHOP.as_ptr(), libc::AT_REMOVEDIR) };
            return Err(e);
        }
        Ok(Keeper {
            dfd,
            shop: shop.into(),
            slots: (0..KEEP)
                .map(|k| CString::new(k.to_string()).unwrap_or_default())
                .collect(),
            next: 0,
            made: 0,
            cleared: false,
        })
    }

    /// Fills the first `want` slots that are empty (until one cannot be
    /// made).
    fn fill(&mut self, want: usize) {
        let mut filled = 0;
        for slot in &self.slots {
            if filled == want {
                return;
            }
            if present(&self.dfd, slot) {
                filled += 1;
                continue;
            }
            let name = CString::new(self.next.to_string()).unwrap_or_default();
            self.next += 1;
            if !create(&self.shop, &name) {
                return;
            }
            // SAFETY: renameat of NUL-terminated names between our two
            // directories; only we put files in the slots.
            let moved = unsafe {
                libc::renameat(
                    self.shop.as_raw_fd(),
                    name.as_ptr(),
                    self.dfd.as_raw_fd(),
                    slot.as_ptr(),
                )
            } == 0;
            if !moved {
                // SAFETY: unlinkat of a NUL-terminated name in our workshop.
                unsafe { libc::unlinkat(self.shop.as_raw_fd(), name.as_ptr(), 0) };
                return;
            }
            self.made += 1;
            filled += 1;
        }
    }

    /// The thread: keeps every slot filled until `stop`, then removes the
    /// files left and the workshop; returns how many were taken.
    fn keep(mut self, mut watch: Watch, stop: &AtomicBool) -> u64 {
        while !stop.load(Ordering::Acquire) {
            self.fill(KEEP);
            watch.wait();
        }
        self.clear()
    }

    /// Removes the files left (in the slots, and the names `t<pid>` of
    /// processes that died while claiming one) and the workshop; returns how
    /// many files were taken.
    fn clear(&mut self) -> u64 {
        if std::mem::replace(&mut self.cleared, true) {
            return 0;
        }
        let unlink = |dir: &OwnedFd, name: &CString| {
            // SAFETY: unlinkat of a NUL-terminated name relative to our directory.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) == 0 }
        };
        let left = self.slots.iter().filter(|s| unlink(&self.dfd, s)).count() as u64;
        // Listed through the descriptor: no path is walked again.
        for dir in [&self.dfd, &self.shop] {
            let listed = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            for e in listed.into_iter().flatten().flatten() {
                let name = e.file_name();
                let b = name.as_bytes();
                let stray = dir.as_raw_fd() == self.shop.as_raw_fd()
                    || (b.len() > 1 && b[0] == b't' && b[1..].iter().all(u8::is_ascii_digit));
                if stray && let Ok(c) = CString::new(b) {
                    unlink(dir, &c);
                }
            }
        }
        // SAFETY: removes the (empty) workshop, relative to our directory.
        unsafe { libc::unlinkat(self.dfd.as_raw_fd(), WORKSHOP.as_ptr(), libc::AT_REMOVEDIR) };
        self.made.saturating_sub(left)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Makes the empty file `name` in `dfd`: exclusively, never through a
/// symbolic link, mode 0600 whatever the umask (removed if it cannot be).
fn create(dfd: &OwnedFd, name: &CString) -> bool {
    // SAFETY: openat of a NUL-terminated name relative to our directory.
    let fd = unsafe {
        libc::openat(
            dfd.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: a descriptor just returned to us, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fchmod on our own descriptor.
    if unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } != 0 {
        // SAFETY: as in `keep`.
        unsafe { libc::unlinkat(dfd.as_raw_fd(), name.as_ptr(), 0) };
        return false;
    }
    true
}

/// Whether `name` is still in `dfd` (not taken yet).
fn present(dfd: &OwnedFd, name: &CString) -> bool {
    // SAFETY: an all-zero `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat writes one `stat` into our struct.
    unsafe {
        libc::fstatat(
            dfd.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ) == 0
    }
}

/// What the thread waits on: an `inotify` watch on the pool's directory,
/// for names moved out of it, when there is one, and the pipe [`LogPool`]
/// closes to stop it.
struct Watch {
    inotify: Option<OwnedFd>,
    woken: OwnedFd,
}

impl Watch {
    fn new(path: &Path, woken: OwnedFd) -> Watch {
        Watch {
            inotify: inotify(path),
            woken,
        }
    }

    /// Waits until something left the directory, the pipe was closed, or
    /// [`POLL`] (without `inotify`, [`POLL_WITHOUT_INOTIFY`]).
    fn wait(&mut self) {
        let fd = |fd: &OwnedFd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut p = vec![fd(&self.woken)];
        p.extend(self.inotify.as_ref().map(fd));
        let timeout = match self.inotify {
            Some(_) => POLL,
            None => POLL_WITHOUT_INOTIFY,
        };
        // SAFETY: poll on our pollfds, `p.len()` of them.
        unsafe {
            libc::poll(
                p.as_mut_ptr(),
                p.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            )
        };
        if let Some(i) = &self.inotify {
            let mut buf = [0u8; 4096];
            // SAFETY: read into our buffer from our nonblocking descriptor.
            while unsafe { libc::read(i.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
    }
}

/// An `inotify` descriptor watching `path` for names moved out or removed.
fn inotify(path: &Path) -> Option<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: inotify_init1 with flags returns a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just returned to us, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a watch on a NUL-terminated path, on our descriptor.
    let w = unsafe {
        libc::inotify_add_watch(
            fd.as_raw_fd(),
            c.as_ptr(),
            libc::IN_MOVED_FROM | libc::IN_DELETE,
        )
    };
    (w >= 0).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn keeps_files_ready_and_removes_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let name = fresh_name();
        let pool = LogPool::start(dir.path(), &name).unwrap();
        let path = dir.path().join(&name);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        let files = || -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p != &path.join(".make"))
                .collect();
            v.sort();
            v
        };
        let wait_for = |n: usize| {
            for _ in 0..500 {
                if files().len() == n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("the pool did not reach {n} files: {:?}", files());
        };
        wait_for(KEEP);
        for f in files() {
            let m = std::fs::symlink_metadata(&f).unwrap();
            assert!(m.is_file());
            assert_eq!(m.len(), 0);
            assert_eq!(m.mode() & 0o7777, 0o600);
        }
        // Three taken, as the preload takes them: renamed out.
        for (k, f) in files().iter().take(3).enumerate() {
            std::fs::rename(f, dir.path().join(format!("log{k}"))).unwrap();
        }
        wait_for(KEEP);
        assert_eq!(pool.finish(), 3);
        assert!(!path.exists());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["log0", "log1", "log2"]);
    }

    #[test]
    fn a_pool_dropped_on_the_way_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pool = LogPool::start(dir.path(), "p").unwrap();
        // A claim cut short: the name of a process that died holding a file.
        std::fs::rename(dir.path().join("p/3"), dir.path().join("p/t4242")).unwrap();
        drop(pool);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_name_already_there_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(target.path(), dir.path().join("planted")).unwrap();
        assert!(LogPool::start(dir.path(), "planted").is_err());
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    }
}
