//! The run directory of `memtrace run` without `-o`: every log of the run
//! goes into `memtrace.<exe>.<pid>/` in the current directory, `<pid>` being
//! the traced command's (its own log inside is `<exe>.<pid>.mtr`), `.1`,
//! `.2`... appended when the name is taken, as the preload does for a log.
//!
//! The command's pid exists only once it is forked, and its preload opens
//! its log as soon as it has exec'd: so the forked child makes the directory
//! itself, between fork and exec ([`std::os::unix::process::CommandExt::pre_exec`]),
//! and points `MEMTRACE_OUTPUT` into it. What runs there must be
//! async-signal-safe (fork(2) of a process that may have threads): `getpid`,
//! `mkdir`, `write` and plain stores into buffers made before the fork; the
//! environment is one the parent built, whose `MEMTRACE_OUTPUT` entry the
//! child fills in, installed as `environ` for the exec (the child's
//! `execvp` reads it, as `std` does with an environment it was given).
//! The child tells the parent the pid and the suffix it took through a
//! close-on-exec pipe.
//!
//! The directory is made with mkdir(2), mode 0700: it never exists before
//! (any name taken, a symlink included, is skipped: mkdir does not follow a
//! symlink at the name it creates), and only this user can list it.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Names tried after the first (`.1` ... `.TRIES-1`).
const TRIES: u32 = 1000;

/// The pattern of the logs inside the directory.
const LOGS: &[u8] = b"/%e.%p.mtr";

/// Room for `<pid>.<n>` after the name's base.
const ROOM: usize = 24;

unsafe extern "C" {
    /// The process's environment, which execvp(3) passes on (environ(7)).
    static mut environ: *const *const libc::c_char;
}

/// A directory asked for, before the command is spawned (see [`arm`]).
pub(super) struct Pending {
    /// The name without the pid: `memtrace.<exe>.`.
    base: OsString,
    /// The current directory, absolute.
    cwd: PathBuf,
    /// The pipe's end the child writes its pid and suffix into.
    rx: File,
}

/// The run directory made.
pub(super) struct RunDir {
    /// Its path, absolute.
    pub(super) path: PathBuf,
    /// Its name in the current directory, for messages.
    pub(super) shown: PathBuf,
}

/// What the forked child works with: all of it allocated before the fork.
struct Child {
    /// `<cwd>/memtrace.<exe>.` then room for `<pid>.<n>` and a NUL.
    path: Vec<u8>,
    base_len: usize,
    /// `MEMTRACE_OUTPUT=`, then room for the path, [`LOGS`] and a NUL.
    slot: Vec<u8>,
    slot_prefix: usize,
    /// The environment's entries, kept alive for `envp`.
    _strings: Vec<CString>,
    /// Pointers to the entries, `slot` among them, then NULL.
    envp: Vec<*const libc::c_char>,
    /// The pipe's write end (close-on-exec).
    tx: OwnedFd,
}

// SAFETY: the raw pointers in `envp` point into `_strings` and `slot`, owned
// by the same value, whose heap buffers do not move; they are only read by
// the forked child's execvp.
unsafe impl Send for Child {}
// SAFETY: as for Send; the parent never reads or writes through them.
unsafe impl Sync for Child {}

/// The executable's name in the directory's name: the base name of the
/// command as given (`./app` -> `app`).
fn exe_name(prog: &OsStr) -> OsString {
    Path::new(prog)
        .file_name()
        .map_or_else(|| OsString::from("cmd"), OsStr::to_os_string)
}

/// Arms `cmd` so that its child makes the run directory of `prog` in `cwd`
/// and logs into it, with the environment `env` (the current one with these
/// entries set; `MEMTRACE_OUTPUT` is the child's). `cmd` must have no
/// environment of its own (`Command::env`): `std` would install it after
/// ours.
pub(super) fn arm(
    cmd: &mut Command,
    prog: &OsStr,
    cwd: &Path,
    env: &[(&str, OsString)],
) -> anyhow::Result<Pending> {
    let mut base = OsString::from("memtrace.");
    base.push(exe_name(prog));
    base.push(".");
    let mut path = cwd.join(&base).into_os_string().into_vec();
    let base_len = path.len();
    path.resize(base_len + ROOM, 0);
    if path.len() + LOGS.len() >= libc::PATH_MAX as usize {
        anyhow::bail!("the current directory's path is too long for a run directory");
    }
    let mut slot = b"MEMTRACE_OUTPUT=".to_vec();
    let slot_prefix = slot.len();
    slot.resize(slot_prefix + path.len() + LOGS.len() + 1, 0);

    let mut strings = Vec::new();
    let set = |k: &OsStr| env.iter().any(|(n, _)| OsStr::new(n) == k) || k == "MEMTRACE_OUTPUT";
    for (k, v) in std::env::vars_os().filter(|(k, _)| !set(k)) {
        strings.push(entry(&k, &v)?);
    }
    for (k, v) in env {
        strings.push(entry(OsStr::new(k), v)?);
    }
    let mut envp: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    envp.push(slot.as_ptr().cast());
    envp.push(std::ptr::null());

    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error()).context("cannot make a pipe");
    }
    // SAFETY: both descriptors were just made and are owned by nothing else.
    let (rx, tx) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut child = Child {
        path,
        base_len,
        slot,
        slot_prefix,
        _strings: strings,
        envp,
        tx,
    };
    // SAFETY: `make` only calls async-signal-safe functions and writes into
    // buffers allocated before the fork (module docs).
    unsafe { cmd.pre_exec(move || child.make()) };
    Ok(Pending {
        base,
        cwd: cwd.to_path_buf(),
        rx,
    })
}

/// `k=v` as an environment entry.
fn entry(k: &OsStr, v: &OsStr) -> anyhow::Result<CString> {
    let mut e = k.as_bytes().to_vec();
    e.push(b'=');
    e.extend_from_slice(v.as_bytes());
    CString::new(e).with_context(|| format!("the environment variable {k:?} holds a NUL"))
}

/// Writes `bytes` into `buf` at `at`; the end, or `None` past its room.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> Option<usize> {
    let end = at.checked_add(bytes.len())?;
    buf.get_mut(at..end)?.copy_from_slice(bytes);
    Some(end)
}

/// Writes `n` in decimal into `buf` at `at`, without allocating.
fn put_num(buf: &mut [u8], at: usize, mut n: u32) -> Option<usize> {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(buf, at, &digits[i..])
}

impl Child {
    /// In the forked child: makes the directory, fills `MEMTRACE_OUTPUT`,
    /// tells the parent, installs the environment.
    fn make(&mut self) -> io::Result<()> {
        let too_long = || io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        // SAFETY: getpid(2) cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        let at = put_num(&mut self.path, self.base_len, pid).ok_or_else(too_long)?;
        for n in 0..TRIES {
            let mut end = at;
            if n > 0 {
                end = put(&mut self.path, end, b".").ok_or_else(too_long)?;
                end = put_num(&mut self.path, end, n).ok_or_else(too_long)?;
            }
            put(&mut self.path, end, b"\0").ok_or_else(too_long)?;
            // SAFETY: `path` is NUL-terminated at `end`.
            if unsafe { libc::mkdir(self.path.as_ptr().cast(), 0o700) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EEXIST) {
                    continue;
                }
                return Err(e);
            }
            let (path, slot) = (&self.path[..end], &mut self.slot);
            let p = put(slot, self.slot_prefix, path).ok_or_else(too_long)?;
            let p = put(slot, p, LOGS).ok_or_else(too_long)?;
            put(slot, p, b"\0").ok_or_else(too_long)?;
            let mut told = [0u8; 8];
            told[..4].copy_from_slice(&pid.to_le_bytes());
            told[4..].copy_from_slice(&n.to_le_bytes());
            // SAFETY: `told` is 8 readable bytes; a pipe takes 8 bytes at once.
            if unsafe { libc::write(self.tx.as_raw_fd(), told.as_ptr().cast(), 8) } != 8 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the child has one thread; `envp` is NULL-terminated and
            // outlives the exec (module docs).
            unsafe { environ = self.envp.as_ptr() };
            return Ok(());
        }
        Err(io::Error::from_raw_os_error(libc::EEXIST))
    }
}

impl Pending {
    /// After the spawn (`cmd` dropped, so that the pipe's write end is
    /// closed here): the directory the child made, if it made one.
    pub(super) fn made(mut self) -> Option<RunDir> {
        let mut told = [0u8; 8];
        self.rx.read_exact(&mut told).ok()?;
        let pid = u32::from_le_bytes(told[..4].try_into().ok()?);
        let n = u32::from_le_bytes(told[4..].try_into().ok()?);
        let mut name = self.base;
        name.push(pid.to_string());
        if n > 0 {
            name.push(format!(".{n}"));
        }
        Some(RunDir {
            path: self.cwd.join(&name),
            shown: PathBuf::from(name),
        })
    }
}

impl RunDir {
    /// The log pattern inside it, relative to the current directory.
    pub(super) fn pattern(&self) -> String {
        let logs = std::str::from_utf8(LOGS).unwrap_or("/%e.%p.mtr");
        format!("{}{logs}", self.shown.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child's directory: named after its pid, 0700, a planted symlink
    /// at that name skipped (`.1` taken instead) and its target untouched;
    /// `MEMTRACE_OUTPUT` points into it.
    #[test]
    fn the_child_makes_its_directory_past_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let cwd = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/bin/sh");
        // The child's pid is not known before the fork: plant the symlink
        // from inside, before `make` runs, at the name it will try first.
        let planted = cwd.path().join("memtrace.sh.");
        let mut name = planted.clone().into_os_string().into_vec();
        let base_len = name.len();
        name.resize(base_len + ROOM, 0);
        let target = CString::new(victim.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: the closure only calls getpid(2) and symlink(2) on buffers
        // made before the fork, as `make` does.
        unsafe {
            cmd.pre_exec(move || {
                let pid = libc::getpid() as u32;
                let end = put_num(&mut name, base_len, pid).unwrap_or(base_len);
                name[end] = 0;
                if libc::symlink(target.as_ptr(), name.as_ptr().cast()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        cmd.args(["-c", "printf %s \"$MEMTRACE_OUTPUT\""]);
        cmd.stdout(std::process::Stdio::piped());
        let pending = arm(&mut cmd, OsStr::new("/bin/sh"), cwd.path(), &[]).unwrap();
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        drop(cmd);
        let out = child.wait_with_output().unwrap();
        let dir = pending.made().unwrap();
        assert_eq!(dir.shown, PathBuf::from(format!("memtrace.sh.{pid}.1")));
        assert_eq!(dir.path, cwd.path().join(&dir.shown));
        let mut first = planted.into_os_string();
        first.push(pid.to_string());
        assert!(
            std::fs::symlink_metadata(&first)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let meta = std::fs::symlink_metadata(&dir.path).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}/%e.%p.mtr", dir.path.display())
        );
    }
}
