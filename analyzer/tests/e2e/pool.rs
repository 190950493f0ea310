//! The log pool of `memtrace run`: empty files made ahead in a 0700
//! directory of its own beside the logs, which the preload renames into a
//! new log's name instead of creating the file (`MEMTRACE_LOG_POOL`). The
//! run's logs come from it, nothing of it is left afterwards, and the preload
//! takes nothing from a pool it cannot trust.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::util::*;

/// Entries of `dir` whose names start with `.memtrace-pool`.
fn pools_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".memtrace-pool"))
        .collect()
}

// tree.c under `memtrace run -v`: its 3 logs (the parent's, the fork child's, the exec'd
// reach's) are all files of the pool, which `memtrace run` says under -v; each is 0600
// and complete (reach's leak is there: definitely lost 80 bytes in 2 blocks, indirectly
// 96 in 3), and the pool's
// directory is gone at the end.
#[test]
fn a_tree_takes_every_log_from_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_with_timeout(
        memtrace()
            .args(["run", "-v", "-o"])
            .arg(dir.path().join("%e.%p.mtr"))
            .arg("--")
            .arg(fixture("tree"))
            .arg(fixture("reach")),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.lines()
            .any(|l| l == "memtrace: 3 log files were made ahead by the run's log pool"),
        "{err}"
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 3, "{logs:?}");
    for log in &logs {
        let m = std::fs::metadata(log).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", log.display());
        // SAFETY: geteuid(2) cannot fail.
        assert_eq!(m.uid(), unsafe { libc::geteuid() });
    }
    let reach: Vec<_> = logs
        .iter()
        .filter(|l| {
            l.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("reach.")
        })
        .collect();
    assert_eq!(reach.len(), 1, "{logs:?}");
    let r = report(reach[0]);
    r.assert_complete();
    let kind = |k: &str| {
        let v = &r.v["summary"]["leak_kinds"][k];
        (v["bytes"].as_u64(), v["count"].as_u64())
    };
    assert_eq!(kind("definite"), (Some(80), Some(2)));
    assert_eq!(kind("indirect"), (Some(96), Some(3)));
    assert_eq!(pools_in(dir.path()), Vec::<String>::new());
}

// Without -o, the pool is made in the run directory once the command's child has made
// it: the run's 3 logs are all there, complete, and nothing of the pool is left.
#[test]
fn a_run_directory_has_no_pool_left() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_with_timeout(
        memtrace()
            .current_dir(dir.path())
            .args(["run", "--"])
            .arg(fixture("tree"))
            .arg(fixture("reach")),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let runs = run_dirs_in(dir.path());
    assert_eq!(runs.len(), 1, "{runs:?}");
    let logs = logs_in(&runs[0]);
    assert_eq!(logs.len(), 3, "{logs:?}");
    for log in &logs {
        report(log).assert_complete();
    }
    assert_eq!(pools_in(&runs[0]), Vec::<String>::new());
    let entries = std::fs::read_dir(&runs[0]).unwrap().count();
    assert_eq!(entries, 3, "only the logs are in the run directory");
}

/// Runs fixture `heap` under the preload, its log named `log`, with the pool
/// `pool` (a name in the log's directory).
fn heap_with_pool(log: &Path, pool: &str) {
    let mut cmd = clean_command(fixture("heap"));
    cmd.env("LD_PRELOAD", preload_lib())
        .env("MEMTRACE_OUTPUT", log)
        .env("MEMTRACE_LOG_POOL", pool);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "heap fixture under the preload");
}

/// Makes a directory at `p` with `mode`.
fn directory(p: &Path, mode: u32) {
    std::fs::create_dir(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes an empty file at `p` with `mode`.
fn empty(p: &Path, mode: u32) {
    std::fs::write(p, b"").unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn inode(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

// A good pool file becomes the log, by rename (the log is that very inode, and the
// pool is empty afterwards); a log name already taken is left alone, the pool file
// going to the next name, `.1`, as a created log would.
#[test]
fn the_preload_takes_a_pool_file_as_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    directory(&d.join("p"), 0o700);
    empty(&d.join("p/7"), 0o600);
    let ino = inode(&d.join("p/7"));
    std::fs::write(d.join("fixed.mtr"), b"taken\n").unwrap();
    heap_with_pool(&d.join("fixed.mtr"), "p");
    assert_eq!(std::fs::read(d.join("fixed.mtr")).unwrap(), b"taken\n");
    let log = d.join("fixed.1.mtr");
    assert_eq!(inode(&log), ino, "the pool file is the log");
    assert_eq!(std::fs::read_dir(d.join("p")).unwrap().count(), 0);
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    report(&log).assert_leak("heap", "leak_malloc", 300, 3);
}

// A pool that is not a 0700 directory of the process's own user is not used, nor is an
// entry that is a symlink, not empty, not 0600, or a second link to a file: each stays
// as it was, and the log is created as without a pool.
#[test]
fn the_preload_takes_nothing_from_a_pool_it_cannot_trust() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let victim = d.join("victim");
    empty(&victim, 0o600);

    // A directory others may read, or write into.
    for (k, mode) in [0o755, 0o770, 0o777].into_iter().enumerate() {
        let pool = format!("open{k}");
        directory(&d.join(&pool), mode);
        empty(&d.join(&pool).join("1"), 0o600);
        let open_ino = inode(&d.join(&pool).join("1"));
        let log = d.join(format!("a{k}.mtr"));
        heap_with_pool(&log, &pool);
        assert_ne!(inode(&log), open_ino, "{mode:o}");
        assert_eq!(
            inode(&d.join(&pool).join("1")),
            open_ino,
            "left in the pool"
        );
        report(&log).assert_leak("heap", "leak_malloc", 300, 3);
    }

    // A symlink to a good pool.
    directory(&d.join("real"), 0o700);
    empty(&d.join("real/1"), 0o600);
    let real_ino = inode(&d.join("real/1"));
    std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
    heap_with_pool(&d.join("b.mtr"), "link");
    assert_ne!(inode(&d.join("b.mtr")), real_ino);
    assert_eq!(inode(&d.join("real/1")), real_ino, "left in the pool");
    report(&d.join("b.mtr")).assert_leak("heap", "leak_malloc", 300, 3);

    // A good pool with only bad entries.
    directory(&d.join("bad"), 0o700);
    std::os::unix::fs::symlink(&victim, d.join("bad/1")).unwrap();
    std::fs::write(d.join("bad/2"), b"data\n").unwrap();
    std::fs::set_permissions(d.join("bad/2"), std::fs::Permissions::from_mode(0o600)).unwrap();
    empty(&d.join("bad/3"), 0o644);
    let inodes: Vec<u64> = (1..=3)
        .map(|k| inode(&d.join(format!("bad/{k}"))))
        .collect();
    heap_with_pool(&d.join("c.mtr"), "bad");
    let after: Vec<u64> = (1..=3)
        .map(|k| inode(&d.join(format!("bad/{k}"))))
        .collect();
    assert_eq!(after, inodes, "every entry left in the pool");
    assert!(!inodes.contains(&inode(&d.join("c.mtr"))));
    assert_eq!(std::fs::read(&victim).unwrap(), b"");
    assert_eq!(std::fs::read(d.join("bad/2")).unwrap(), b"data\n");
    report(&d.join("c.mtr")).assert_leak("heap", "leak_malloc", 300, 3);

    // A name that is a path, not a name in the log's directory: a good pool there
    // is not used.
    std::fs::create_dir(d.join("logs")).unwrap();
    directory(&d.join("up"), 0o700);
    empty(&d.join("up/1"), 0o600);
    let up_ino = inode(&d.join("up/1"));
    heap_with_pool(&d.join("logs/e.mtr"), "../up");
    assert_ne!(inode(&d.join("logs/e.mtr")), up_ino);
    assert_eq!(inode(&d.join("up/1")), up_ino, "left in the pool");
}
