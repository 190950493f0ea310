//! The processes of a run that left no log, and why.
//!
//! A process memtrace could not trace writes nothing, so it is known only by
//! what its traced parent saw: a FORK record when the parent made it (with
//! how, see [`memtrace_format::lineage`]), or an EXEC record when a traced
//! process replaced its image. [`untraced`] matches these against the logs
//! the run has and names each process without one, with the reason: the
//! recorded bits first (a seccomp filter, an environment that no longer
//! preloads memtrace), then what the image itself says (statically linked,
//! setuid), then what is left (no heap event, or no log could be created).
//!
//! Used by `memtrace run` (from the logs' headers and records, see
//! [`Proc::read`]) and by the gate (from the reports). Depends on the log
//! reader only.

use std::path::{Path, PathBuf};

use memtrace_format::{ExitHow, Record, hdr::flag, lineage as how};

use crate::log::Log;

/// A child process as its parent's FORK record describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub pid: u32,
    /// [`memtrace_format::lineage`] bits.
    pub how: u8,
    /// The image a spawned child runs (`posix_spawn`); `None` for a fork.
    pub image: Option<String>,
}

/// What a log says about its process's place in the tree.
#[derive(Clone, Debug, Default)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// The parent whose fork this log continues (0: none).
    pub forked_from: u32,
    /// CLOCK_MONOTONIC at the log's start, ns.
    pub start: u64,
    pub children: Vec<Child>,
    /// The image it exec'd and the EXEC record's bits, when it ended by exec.
    pub exec: Option<(String, u8)>,
}

impl Proc {
    /// Reads a log's header and, only when the header says there is
    /// something to find (children, an exec), its FORK and EXEC records.
    pub fn read(path: &Path) -> crate::error::Result<Proc> {
        let log = Log::open(path)?;
        let h = log.header()?;
        let mut p = Proc {
            pid: h.pid,
            ppid: h.ppid,
            forked_from: h.forked_from,
            start: h.start_mono_ns,
            ..Proc::default()
        };
        let exec = ExitHow::from_u32(h.state) == Some(ExitHow::Exec);
        if h.flags & flag::CHILDREN == 0 && !exec {
            return Ok(p);
        }
        let index = log.index(&h)?;
        let mut exec_seen = None;
        for ev in log.merge(&index) {
            match ev?.record {
                Record::Fork {
                    child_pid,
                    how,
                    path,
                    ..
                } => p.children.push(child(child_pid, how, path)),
                Record::Exec { path, how, .. } => {
                    exec_seen = Some((String::from_utf8_lossy(path).into_owned(), how))
                }
                _ => {}
            }
        }
        if exec {
            p.exec = exec_seen;
        }
        Ok(p)
    }
}

/// A [`Child`] from a FORK record's fields.
pub fn child(pid: u64, how: u8, path: &[u8]) -> Child {
    Child {
        pid: pid as u32,
        how,
        image: (how & how::SPAWNED != 0).then(|| String::from_utf8_lossy(path).into_owned()),
    }
}

/// Why a process has no log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Made or exec'd under a seccomp filter.
    Sandboxed,
    /// Its environment does not preload libmemtrace.so.
    NoPreload,
    /// Statically linked: no dynamic loader, no LD_PRELOAD.
    Static,
    /// Setuid or setgid: the loader ignores LD_PRELOAD.
    Setuid,
    /// A raw fork child that made no heap event (its log would have started
    /// at the first).
    NoEvent,
    /// None of the above: its log could not be created.
    NoLog,
}

impl Reason {
    /// The reason in words.
    pub fn text(&self) -> &'static str {
        match self {
            Reason::Sandboxed => {
                "under a seccomp filter: a log of its own needs system calls the filter may forbid"
            }
            Reason::NoPreload => {
                "its environment does not preload libmemtrace.so (LD_PRELOAD was changed or cleared)"
            }
            Reason::Static => "statically linked: LD_PRELOAD needs the dynamic loader",
            Reason::Setuid => "setuid or setgid: the loader ignores LD_PRELOAD for it",
            Reason::NoEvent => {
                "made no heap event (a child of _Fork, clone or syscall(SYS_fork) gets its log at its first)"
            }
            Reason::NoLog => "its log could not be created (see its error output)",
        }
    }

    /// A short name for machine-readable output.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Sandboxed => "seccomp",
            Reason::NoPreload => "no-preload",
            Reason::Static => "static",
            Reason::Setuid => "setuid",
            Reason::NoEvent => "no-event",
            Reason::NoLog => "no-log",
        }
    }
}

/// A process of the run without a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untraced {
    pub pid: u32,
    /// The traced process that made it (or that it was, before exec).
    pub parent: u32,
    /// The image it runs, when known (exec'd or spawned).
    pub image: Option<String>,
    pub reason: Reason,
}

impl Untraced {
    /// Where it came from: its image and parent.
    pub fn origin(&self) -> String {
        match &self.image {
            Some(img) if self.parent == self.pid => format!("{img}, exec'd"),
            Some(img) => format!("{img}, spawned by pid {}", self.parent),
            None => format!("forked by pid {}", self.parent),
        }
    }

    /// One line: pid, origin and reason.
    pub fn line(&self) -> String {
        format!(
            "pid {} ({}): {}",
            self.pid,
            self.origin(),
            self.reason.text()
        )
    }
}

/// The processes the FORK and EXEC records of `procs` name that have no log
/// among `procs`, in the order the records name them.
pub fn untraced(procs: &[Proc]) -> Vec<Untraced> {
    let mut out = Vec::new();
    for p in procs {
        for c in &p.children {
            // Its own log: a fork child's continues the parent's; a spawned
            // image's (or a forked child's after exec) names the parent.
            let traced = procs
                .iter()
                .any(|q| q.pid == c.pid && (q.forked_from == p.pid || q.ppid == p.pid));
            if traced {
                continue;
            }
            let reason = if c.how & how::SANDBOXED != 0 {
                Reason::Sandboxed
            } else if c.how & how::SPAWNED != 0 {
                image_reason(c.how, c.image.as_deref().unwrap_or(""))
            } else if c.how & how::RAW != 0 {
                Reason::NoEvent
            } else {
                Reason::NoLog
            };
            out.push(Untraced {
                pid: c.pid,
                parent: p.pid,
                image: c.image.clone(),
                reason,
            });
        }
        if let Some((image, bits)) = &p.exec {
            let traced = procs
                .iter()
                .any(|q| q.pid == p.pid && q.start > p.start && q.forked_from == 0);
            if !traced {
                out.push(Untraced {
                    pid: p.pid,
                    parent: p.pid,
                    image: Some(image.clone()),
                    reason: image_reason(*bits, image),
                });
            }
        }
    }
    out
}

/// Why the command `image` (as `execvp` takes it) may have left no log, from
/// what its file says.
pub fn command_reason(image: &str) -> Reason {
    image_reason(0, image)
}

/// Why an exec'd or spawned image left no log: the recorded bits, else what
/// the file says.
fn image_reason(bits: u8, image: &str) -> Reason {
    if bits & how::SANDBOXED != 0 {
        return Reason::Sandboxed;
    }
    if bits & how::NO_PRELOAD != 0 {
        return Reason::NoPreload;
    }
    match resolve(image) {
        Some(path) => file_reason(&path, 0),
        None => Reason::NoLog,
    }
}

/// The file `execvp` would run for `image`: as given when it has a slash,
/// else the first match on `PATH`.
fn resolve(image: &str) -> Option<PathBuf> {
    if image.contains('/') {
        return Some(PathBuf::from(image));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(image))
        .find(|p| p.is_file())
}

/// What an executable file says about being traced: setuid/setgid for
/// another user, no ELF interpreter, or a script whose interpreter is one
/// of these.
fn file_reason(path: &Path, depth: u32) -> Reason {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Reason::NoLog;
    };
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = meta.mode();
    if (mode & libc::S_ISUID != 0 && meta.uid() != uid)
        || (mode & libc::S_ISGID != 0 && meta.gid() != gid)
    {
        return Reason::Setuid;
    }
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head.truncate(n);
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or(b"");
        let interp = String::from_utf8_lossy(line);
        return match interp.split_whitespace().next() {
            Some(i) if depth < 4 => file_reason(Path::new(i), depth + 1),
            _ => Reason::NoLog,
        };
    }
    match elf_has_interp(&std::fs::read(path).unwrap_or_default()) {
        Some(false) => Reason::Static,
        _ => Reason::NoLog,
    }
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header
/// (`None`: not such a file).
fn elf_has_interp(b: &[u8]) -> Option<bool> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let phoff = u64::from_le_bytes(b[32..40].try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(54)?, u16_at(56)?);
    Some((0..phnum).any(|i| {
        let o = phoff.saturating_add(i.saturating_mul(phentsize));
        b.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ppid: u32, forked_from: u32, start: u64) -> Proc {
        Proc {
            pid,
            ppid,
            forked_from,
            start,
            ..Proc::default()
        }
    }

    /// Each kind of child without a log gets its reason; those with one are
    /// not listed.
    #[test]
    fn children_without_logs() {
        let mut top = proc(10, 1, 0, 0);
        top.children = vec![
            child(11, 0, b""),
            child(12, 0, b""),
            child(13, how::RAW, b""),
            child(14, how::SANDBOXED, b""),
            child(15, how::SPAWNED | how::NO_PRELOAD, b"/bin/true"),
            child(16, how::SPAWNED, b"/bin/true"),
        ];
        let procs = [top, proc(11, 10, 10, 5), proc(16, 10, 0, 6)];
        let u = untraced(&procs);
        let got: Vec<(u32, Reason)> = u.iter().map(|u| (u.pid, u.reason.clone())).collect();
        assert_eq!(
            got,
            [
                (12, Reason::NoLog),
                (13, Reason::NoEvent),
                (14, Reason::Sandboxed),
                (15, Reason::NoPreload)
            ]
        );
        assert_eq!(
            u[3].line(),
            "pid 15 (/bin/true, spawned by pid 10): its environment does not preload \
             libmemtrace.so (LD_PRELOAD was changed or cleared)"
        );
    }

    /// An exec is traced when a later log of the same pid starts afresh.
    #[test]
    fn exec_without_a_later_log() {
        let mut a = proc(20, 1, 0, 100);
        a.exec = Some(("/bin/true".into(), how::NO_PRELOAD));
        assert_eq!(
            untraced(std::slice::from_ref(&a))[0].reason,
            Reason::NoPreload
        );
        assert_eq!(
            untraced(std::slice::from_ref(&a))[0].line(),
            "pid 20 (/bin/true, exec'd): its environment does not preload libmemtrace.so \
             (LD_PRELOAD was changed or cleared)"
        );
        assert!(untraced(&[a.clone(), proc(20, 1, 0, 200)]).is_empty());
        // A log of the same pid from before the exec does not count.
        assert_eq!(untraced(&[a, proc(20, 1, 0, 50)]).len(), 1);
    }

    /// ELF program headers: PT_INTERP present or not.
    #[test]
    fn elf_interp() {
        let mut b = vec![0u8; 64 + 2 * 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(elf_has_interp(&b), Some(false));
        b[120..124].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(elf_has_interp(&b), Some(true));
        assert_eq!(elf_has_interp(b"#!/bin/sh"), None);
    }
}
