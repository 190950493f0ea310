//! Logs still being written: `memtrace pack` refuses them, `memtrace report`
//! says the process is still running.

use std::process::{Child, Stdio};

use crate::util::{
    TIMEOUT, logs_in, memtrace, output_with_timeout, report, traced_command, wait_for_file,
    wait_timeout,
};

/// The fixture `live_wait` running under the preload, its log and its directory.
struct Live {
    child: Child,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

fn start() -> Live {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut cmd = traced_command("live_wait", dir.path(), "%e.%p.mtr");
    cmd.arg(&ready).stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("start live_wait");
    wait_for_file(&ready, &mut child);
    let logs: Vec<_> = logs_in(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "mtr"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    Live {
        log: logs[0].clone(),
        child,
        dir,
    }
}

impl Live {
    /// Closes the fixture's stdin and reaps it.
    fn finish(mut self) -> Self {
        drop(self.child.stdin.take());
        let st = wait_timeout(&mut self.child, TIMEOUT).expect("live_wait ends");
        assert!(st.success(), "{st:?}");
        self
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = wait_timeout(&mut self.child, TIMEOUT);
    }
}

#[test]
fn pack_refuses_a_live_log() {
    let live = start();
    let before = std::fs::read(&live.log).unwrap();
    let mut cmd = memtrace();
    cmd.arg("pack").arg(&live.log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "memtrace pack: {} is still being written by pid {}: not packed\n",
            live.log.display(),
            live.child.id()
        )
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&live.log).unwrap(), before, "the log changed");
    assert_eq!(logs_in(live.dir.path()).len(), 1, "a file was left behind");

    // Once the writer has ended, the same log packs.
    let live = live.finish();
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&live.log).unwrap()[..8], b"MEMTRPAK");
}

#[test]
fn report_says_a_live_log_is_still_running() {
    let live = start();
    let pid = live.child.id();
    let r = report(&live.log);
    assert_eq!(r.process("ended"), "running");
    assert!(!r.summary_bool("ended_abnormally"));
    let mut cmd = memtrace();
    cmd.arg("report").arg(&live.log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let ended = text
        .lines()
        .find(|l| l.trim_start().starts_with("ended:"))
        .unwrap_or_else(|| panic!("no ended: line in\n{text}"));
    assert!(
        ended.contains(&format!("ended:    still running (pid {pid}), ")),
        "{ended}"
    );
    assert!(!text.contains("abnormally"), "{text}");

    // Once it has exited, the same log reports its exit.
    let live = live.finish();
    let r = report(&live.log);
    assert_eq!(r.process("ended"), "exit");
}
