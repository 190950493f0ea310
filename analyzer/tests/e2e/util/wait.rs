//! Waiting: for a file, a condition or a process, and the FIFO [`Gate`] that makes a
//! program wait for the test (never for a fixed time).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::*;

/// Waits until `path` exists (a fixture's ready marker).
pub fn wait_for_file(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        if let Some(st) = child.try_wait().expect("wait for child") {
            panic!("fixture ended ({st:?}) before writing {}", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` until it holds; fails the test, saying `what` was awaited, if it has not
/// within `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} for {what}, in vain"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` still runs: it exists and is not a zombie (as memtrace judges
/// a log's writer, analyzer/src/live.rs). An orphan's zombie may never be reaped in a
/// container whose init does not reap, so a zombie counts as ended.
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
    })
}

/// A FIFO a program waits on (`read x < FIFO` in a shell: a builtin, no child process)
/// until the test opens it: the test decides when the program goes on, instead of the
/// program sleeping for a time the test hopes is long enough.
pub struct Gate {
    path: PathBuf,
    held: Option<std::fs::File>,
}

impl Gate {
    /// A new FIFO `dir/name`.
    pub fn new(dir: &Path, name: &str) -> Gate {
        use std::os::unix::ffi::OsStrExt;
        let path = dir.join(name);
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Gate { path, held: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets the waiting program go: writes a line into the FIFO. The FIFO is opened
    /// read-write, which never blocks on Linux, and held open until the gate is
    /// dropped, so the line is there for a reader that opens it later.
    pub fn open(&mut self) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("open the FIFO {}: {e}", self.path.display()));
        f.write_all(b"go\n").expect("write to the FIFO");
        self.held = Some(f);
    }
}
