//! A run's logs: the output pattern (`%p`, `%e`, the `.N` suffix of a taken
//! name) and finding, among the files of its directory, the logs this run's
//! processes wrote (name, owner, header; never through a symlink). Used by
//! the supervisor ([`super::trace`]) and by `memtrace snapshot`.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use memtrace_format::{HEADER_SIZE, Header};

/// One piece of a log name pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Lit(String),
    Pid,
    Exe,
}

/// A parsed `-o` pattern: a literal directory and a file-name pattern.
#[derive(Clone, Debug)]
pub(super) struct Pattern {
    /// The directory as the user wrote it ("" for the current one), for messages.
    pub(super) dir_shown: PathBuf,
    /// The directory, absolute.
    pub(super) dir: PathBuf,
    pub(super) file: Vec<Tok>,
}

/// `name` without the `.N` the preload puts before the extension of a taken
/// name (`app.12.1.mtr` -> `app.12.mtr`); `None` when it has none.
pub(super) fn without_taken_suffix(name: &str) -> Option<String> {
    let dot = name.rfind('.')?;
    let (stem, ext) = name.split_at(dot);
    let n = stem.rfind('.')?;
    let digits = &stem[n + 1..];
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}{ext}", &stem[..n]))
}

impl Pattern {
    pub(super) fn parse(pattern: &str, cwd: &Path) -> anyhow::Result<Pattern> {
        let p = Path::new(pattern);
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("the log pattern {pattern:?} does not end in a file name"))?;
        let dir_shown = p.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = cwd.join(&dir_shown);
        let mut file = Vec::new();
        let mut lit = String::new();
        let mut chars = name.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let tok = match chars.next() {
                Some('p') => Tok::Pid,
                Some('e') => Tok::Exe,
                Some('%') => {
                    lit.push('%');
                    continue;
                }
                Some(other) => {
                    lit.push('%');
                    lit.push(other);
                    continue;
                }
                None => {
                    lit.push('%');
                    continue;
                }
            };
            if !lit.is_empty() {
                file.push(Tok::Lit(std::mem::take(&mut lit)));
            }
            file.push(tok);
        }
        if !lit.is_empty() {
            file.push(Tok::Lit(lit));
        }
        Ok(Pattern {
            dir_shown,
            dir,
            file,
        })
    }

    /// Does `name` fit the pattern, with an optional `.N` before its
    /// extension (`app.12.1.mtr`: the preload's name when `app.12.mtr` was
    /// taken) or, as older versions named it, at its end (`app.12.mtr.1`)?
    pub(super) fn matches(&self, name: &str) -> bool {
        self.matches_exactly(name)
            || without_taken_suffix(name).is_some_and(|n| self.matches_exactly(&n))
    }

    pub(super) fn matches_exactly(&self, name: &str) -> bool {
        fn m(toks: &[Tok], s: &str) -> bool {
            match toks.split_first() {
                None => {
                    s.is_empty()
                        || s.strip_prefix('.')
                            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                }
                Some((Tok::Lit(l), rest)) => s.strip_prefix(l.as_str()).is_some_and(|s| m(rest, s)),
                Some((Tok::Pid, rest)) => {
                    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
                    (1..=digits).any(|k| m(rest, &s[k..]))
                }
                Some((Tok::Exe, rest)) => (1..=s.len())
                    .filter(|&k| s.is_char_boundary(k))
                    .any(|k| m(rest, &s[k..])),
            }
        }
        m(&self.file, name)
    }

    /// Is `p` a file of this pattern, in its directory?
    pub(super) fn owns(&self, p: &Path) -> bool {
        p.parent() == Some(&self.dir)
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| self.matches(n))
    }

    /// How to show a log file of this pattern to the user.
    pub(super) fn shown(&self, name: &str) -> PathBuf {
        self.dir_shown.join(name)
    }
}

/// A log written by this run.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) path: PathBuf,
    pub(super) shown: PathBuf,
    pub(super) pid: u32,
    pub(super) ppid: u32,
    pub(super) forked_from: u32,
    pub(super) start: u64,
}

/// A log's pid, parent pid, forked-from pid and start time; `None` for
/// what is not a log, or is a snapshot.
pub(super) fn read_header(path: &Path) -> Option<(u32, u32, u32, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a symlink planted at a log's name.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    // A log is written by a process of this run, as this user; a file someone else
    // owns (planted in a shared directory) is never taken for one.
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) cannot fail.
    if f.metadata().ok()?.uid() != unsafe { libc::geteuid() } {
        return None;
    }
    let mut page = vec![0u8; HEADER_SIZE];
    f.read_exact_at(&mut page, 0).ok()?;
    let h = Header::parse(&page).ok()?;
    if h.snapshot_at != 0 {
        return None; // a snapshot, not a log
    }
    Some((h.pid, h.ppid, h.forked_from, h.start_realtime_ns))
}

/// The logs of this run, top process's first (see the module docs).
pub(super) fn find_logs(pat: &Pattern, child: u32, spawned: SystemTime) -> Vec<Found> {
    let since = spawned
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let Ok(dir) = std::fs::read_dir(&pat.dir) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // A packed copy staged beside its raw log (`super::prepack`).
        if memtrace_analyzer::pack::is_staged_name(name)
            || !pat.matches(name)
            || !entry.file_type().is_ok_and(|t| t.is_file())
        {
            continue;
        }
        let path = entry.path();
        {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid(2) cannot fail.
            let me = unsafe { libc::geteuid() };
            if let Ok(m) = entry.metadata()
                && m.uid() != me
            {
                eprintln!(
                    "memtrace: warning: {} is not taken for a log of this run: it belongs to uid {}, not to uid {me}",
                    path.display(),
                    m.uid()
                );
                continue;
            }
        }
        let Some((pid, ppid, forked_from, start)) = read_header(&path) else {
            continue;
        };
        let recent = if start != 0 {
            start >= since
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= spawned)
        };
        if recent {
            all.push(Found {
                path,
                shown: pat.shown(name),
                pid,
                ppid,
                forked_from,
                start,
            });
        }
    }
    // Keep the command's process tree: its own logs, then children of kept pids.
    let mut pids: HashSet<u32> = HashSet::from([child]);
    loop {
        let before = pids.len();
        for f in &all {
            if pids.contains(&f.ppid) || (f.forked_from != 0 && pids.contains(&f.forked_from)) {
                pids.insert(f.pid);
            }
        }
        if pids.len() == before {
            break;
        }
    }
    let mut kept: Vec<Found> = all.into_iter().filter(|f| pids.contains(&f.pid)).collect();
    let own = |f: &Found| f.pid == child && f.forked_from == 0;
    kept.sort_by_key(|f| (!own(f), f.start, f.path.clone()));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn pat(p: &str) -> Pattern {
        Pattern::parse(p, Path::new("/work")).unwrap()
    }

    /// Pattern matching: %p digits, %e anything, optional numeric suffix.
    #[test]
    pub(super) fn pattern_matching() {
        let p = pat("memtrace.%e.%p.mtr");
        assert!(p.matches("memtrace.ls.123.mtr"));
        assert!(p.matches("memtrace.my.prog.123.mtr"));
        assert!(p.matches("memtrace.ls.123.mtr.2"));
        assert!(p.matches("memtrace.ls.123.2.mtr"));
        assert!(!p.matches("memtrace.ls.123.x.mtr"));
        assert!(!p.matches("memtrace.ls.x12.mtr"));
        assert!(!p.matches("memtrace..123.mtr"));
        assert!(!p.matches("memtrace.ls.123.mtr.tmp"));
        assert!(!p.matches("other.ls.123.mtr"));
        let q = pat("out/%p-100%%.log");
        assert_eq!(q.dir, Path::new("/work/out"));
        assert!(q.matches("77-100%.log"));
        assert_eq!(q.shown("77-100%.log"), Path::new("out/77-100%.log"));
    }
}
