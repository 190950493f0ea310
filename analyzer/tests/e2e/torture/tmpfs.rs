//! A full tmpfs under the log: events are lost, never the program; a sparse log on it
//! reads without SIGBUS.

use super::*;

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount(8) syntax). Needs root: as another user, or if
    /// the mount fails, the test fails with the reason (never skipped).
    fn mount(size: &str) -> Tmpfs {
        crate::util::require_root("it mounts a tmpfs");
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

// The log on a 512 KiB tmpfs that fills up (needs root to mount: fails otherwise): the
// program's output and status are unchanged, the report counts the lost events, and
// recorded + lost covers every malloc and free. (Fails intermittently while the report
// can die of SIGBUS on the sparse log: see the regression test below.)
#[test]
fn tmpfs_full_loses_events_not_the_program() {
    let fs = Tmpfs::mount("512k");
    let mut plain = crate::util::clean_command(fixture("torture_fill"));
    let want = output_with_timeout(&mut plain, Duration::from_secs(60));
    assert!(want.status.success(), "{}", describe(&want));

    let mut cmd = traced_command("torture_fill", &fs.dir, "log.%p.mtr");
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want.stdout),
        "same output with and without memtrace"
    );
    let events = val(&kv(&String::from_utf8_lossy(&out.stdout)), "events");
    let r = only_report(&fs.dir);
    let lost = r.summary("events_lost");
    assert!(lost > 0, "the file system was full\n{}", r.v["summary"]);
    let seen = r.summary("allocations") + r.summary("frees") + r.summary("unknown_frees");
    assert!(
        seen + lost >= events && seen + lost <= events + 64,
        "{seen} recorded + {lost} lost vs the program's {events} (+ libc's few)"
    );
}

// Found by the test above (intermittently: when the preload leaves holes in the log, e.g.
// reserved slots whose fallocate failed while a later, smaller reservation succeeded):
// `memtrace report` died of SIGBUS reading a sparse log on a full tmpfs, because reading
// a hole of a tmpfs file through a mapping needs a new page. Deterministic: a real log
// copied to a tmpfs, every page after the first chunk punched out, the tmpfs filled.
#[test]
fn regression_report_sigbus_on_sparse_log_in_full_tmpfs() {
    use std::os::fd::AsRawFd;
    let fs = Tmpfs::mount("2m");
    let t = run("torture_fill", &["2000"], 60);
    t.assert_exit(0);
    let src = t.only_log();
    let log = fs.dir.join("log.mtr");
    std::fs::copy(&src, &log).expect("copy the log to the tmpfs");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open the copy");
    let len = f.metadata().unwrap().len() as i64;
    assert!(len > 3 * 4096, "log of {len} bytes");
    // SAFETY: fallocate(2) on a file we own; punching keeps the size (the tail reads as zeros).
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            8192,
            len - 8192,
        )
    };
    assert_eq!(r, 0, "punch: {}", std::io::Error::last_os_error());
    drop(f);
    // Fill the tmpfs to the last page.
    let mut filler = std::fs::File::create(fs.dir.join("filler")).unwrap();
    let page = [0u8; 4096];
    while std::io::Write::write_all(&mut filler, &page).is_ok() {}
    drop(filler);
    let mut cmd = memtrace();
    cmd.arg("report").arg("--format").arg("json").arg(&log);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(
        out.status.signal(),
        None,
        "memtrace report must not be killed reading a sparse log on a full file system\n{}",
        describe(&out)
    );
    assert!(out.status.success(), "{}", describe(&out));
}
