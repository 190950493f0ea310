//! Putting packed logs in place: a packed log is written beside its raw log
//! ([`super::stage`]), made durable, then renamed over it, so that a crash
//! leaves either log whole. Owns the durability step: one `fsync` per log, or
//! for a run's many logs ([`commit_all`]) one `syncfs` per filesystem. Uses
//! `crate::error` only.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Stats;
use crate::error::{Error, Result};

/// A packed log written to a temporary file, not yet in its place. Dropped
/// without a commit, the temporary file is removed and the raw log stays.
#[derive(Debug)]
pub struct Staged {
    pub(super) tmp: PathBuf,
    pub(super) dst: PathBuf,
    pub(super) stats: Stats,
    pub(super) done: bool,
}

/// From this many logs on, [`commit_all`] syncs each filesystem once
/// instead of each file: a process tree's hundreds of small logs took one
/// device flush each (403 logs of 200 `/bin/true`: 2.6 s, 0.34 s of it CPU).
/// Below it, per-file syncs cost less than flushing whatever else the
/// filesystem holds dirty.
pub const SYNCFS_FROM: usize = 32;

impl Staged {
    /// Where the packed log goes.
    pub fn path(&self) -> &Path {
        &self.dst
    }

    /// The events packed.
    pub fn events(&self) -> u64 {
        self.stats.events
    }

    /// Syncs the packed log and renames it over its raw log.
    pub fn commit(self) -> Result<Stats> {
        sync_file(&self.tmp)?;
        self.rename()
    }

    /// Renames the packed log over its raw log; its data is already durable.
    fn rename(mut self) -> Result<Stats> {
        std::fs::rename(&self.tmp, &self.dst).map_err(|source| Error::Io {
            path: self.dst.clone(),
            source,
        })?;
        self.done = true;
        Ok(self.stats)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `fsync` of the file at `path`.
fn sync_file(path: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io)
}

/// `syncfs` of the filesystem holding `path`.
fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: syncfs only flushes the filesystem of our own open descriptor.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Commits every staged log, in order: with `SYNCFS_FROM` (32) logs or more,
/// one `syncfs` per filesystem they are on makes them all durable (a
/// filesystem whose `syncfs` fails has its logs synced one by one), then they
/// are renamed into place on `RENAMERS` (8) threads; fewer are committed one by
/// one.
pub fn commit_all(staged: Vec<Staged>) -> Vec<Result<Stats>> {
    if staged.len() < SYNCFS_FROM {
        return staged.into_iter().map(Staged::commit).collect();
    }
    let mut synced: Vec<(u64, bool)> = Vec::new();
    let jobs: Vec<(Staged, bool)> = staged
        .into_iter()
        .map(|s| {
            let dev = std::fs::metadata(&s.tmp).map(|m| m.dev()).ok();
            let whole = dev.is_some_and(|dev| match synced.iter().find(|d| d.0 == dev) {
                Some(d) => d.1,
                None => {
                    let ok = sync_filesystem(&s.tmp).is_ok();
                    synced.push((dev, ok));
                    ok
                }
            });
            (s, whole)
        })
        .collect();
    let n = jobs.len();
    let jobs = std::sync::Mutex::new(jobs.into_iter().enumerate());
    let mut done: Vec<(usize, Result<Stats>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..RENAMERS.min(n))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let next = jobs.lock().map(|mut j| j.next());
                        let Ok(Some((i, (s, whole)))) = next else {
                            break;
                        };
                        mine.push((i, if whole { s.rename() } else { s.commit() }));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a renaming worker does not panic"))
            .collect()
    });
    done.sort_by_key(|d| d.0);
    done.into_iter().map(|d| d.1).collect()
}

/// Threads that rename packed logs into place: a rename frees the raw log's
/// blocks, which waits for the device on a filesystem mounted with `discard`
/// (3.4 ms each for a tree's 8 KiB logs, measured with `strace -w -c`), so
/// they overlap.
pub const RENAMERS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;
    use crate::testlog::two_stack_run;

    /// `n` copies of a small raw log in a new directory.
    fn raw_logs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = two_stack_run().bytes;
        let paths = (0..n)
            .map(|i| {
                let p = dir.path().join(format!("l{i}.mtr"));
                std::fs::write(&p, &bytes).unwrap();
                p
            })
            .collect();
        (dir, paths)
    }

    /// Leaked bytes of the log at `p` (two_stack_run leaks 40 + 60).
    fn leaked(p: &Path) -> u64 {
        let bytes = std::fs::read(p).unwrap();
        let r = crate::report::analyze_bytes(&bytes, &crate::flame::all()).unwrap();
        r.heap_leaks.iter().map(|l| l.bytes).sum()
    }

    /// Many logs go through the one-sync path, few through per-file syncs;
    /// either way each ends packed, in its place, with the same leaks, and
    /// no temporary file is left.
    #[test]
    fn committed_logs_are_packed_in_place() {
        for n in [SYNCFS_FROM - 1, SYNCFS_FROM + 3] {
            let (dir, paths) = raw_logs(n);
            let staged: Vec<_> = paths
                .iter()
                .map(|p| super::super::stage(p, p).unwrap())
                .collect();
            let results = commit_all(staged);
            assert_eq!(results.len(), n);
            for (p, r) in paths.iter().zip(results) {
                // Its records: 2 stack definitions, 3 allocations, 1 free.
                assert_eq!(r.unwrap().events, 6, "{}", p.display());
                assert!(Log::open(p).unwrap().is_packed(), "{}", p.display());
                assert_eq!(leaked(p), 100, "{}", p.display());
            }
            let names = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(names, n, "only the logs are left");
        }
    }

    /// A staged log dropped without a commit leaves the raw log as it was.
    #[test]
    fn an_uncommitted_log_stays_raw() {
        let (dir, paths) = raw_logs(1);
        let before = std::fs::read(&paths[0]).unwrap();
        drop(super::super::stage(&paths[0], &paths[0]).unwrap());
        assert_eq!(std::fs::read(&paths[0]).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
