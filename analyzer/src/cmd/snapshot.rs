//! Snapshots of running processes (`memtrace_analyzer::snapshot`): the
//! watcher that `memtrace run` keeps while its command runs, and `memtrace
//! snapshot PID`, which asks for one.
//!
//! - **Watcher.** Every 50 ms it lists memtrace's own children; a frozen copy
//!   named `memtrace-snap` (made by the preload's signal handler, and handed
//!   to memtrace as the subreaper) is read: its log is found among its
//!   mappings, the snapshot written next to the log (`NAME.snapN.mtr`,
//!   packed), and the copy killed. The process itself never waits for this.
//! - **`memtrace snapshot PID`** checks that PID is traced with snapshots on
//!   (its environment names the signal, and it has a handler for it: an
//!   unhandled real-time signal would kill it), sends the signal, and waits
//!   for the next snapshot file of its log to appear.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use memtrace_analyzer::snapshot;

use crate::args::SnapshotArgs;

/// The name the preload gives a frozen copy made for a snapshot.
const FROZEN_NAME: &str = "memtrace-snap";

/// How long the watcher waits for the process to record its copy.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Takes the snapshots of a run's processes while it runs.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching; `is_log` tells the run's log files; `quiet`: say
    /// nothing but warnings; `heur`: the scans' leak heuristics.
    pub fn start(
        is_log: Box<dyn Fn(&Path) -> bool + Send>,
        quiet: bool,
        heur: memtrace_analyzer::reach::Heuristics,
    ) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: HashSet<u32> = HashSet::new();
            loop {
                let last = flag.load(Ordering::Relaxed);
                for pid in own_children() {
                    if seen.contains(&pid) || !is_frozen_copy(pid) {
                        continue;
                    }
                    seen.insert(pid);
                    handle(pid, &is_log, quiet, heur);
                }
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watcher { stop, thread }
    }

    /// Takes the snapshots still pending and stops.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// This process's children (of all its threads).
fn own_children() -> Vec<u32> {
    children_of("/proc/self")
}

/// Process `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    children_of(&format!("/proc/{pid}"))
}

/// The children of the process at `/proc` entry `proc` (of all its threads).
fn children_of(proc: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("{proc}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn is_frozen_copy(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == FROZEN_NAME)
}

/// The memtrace log that process `pid` has mapped, among the files `is_log` accepts.
fn mapped_log(pid: u32, is_log: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(Path::new)
        .find(|p| is_log(p))
        .map(Path::to_owned)
}

/// Reads a frozen copy into a snapshot, then kills it.
fn handle(
    pid: u32,
    is_log: &dyn Fn(&Path) -> bool,
    quiet: bool,
    heur: memtrace_analyzer::reach::Heuristics,
) {
    match mapped_log(pid, is_log) {
        Some(log) => write(pid, &log, quiet, heur),
        None => eprintln!(
            "memtrace: warning: a snapshot was asked (frozen copy {pid}) but its log is not among its mappings"
        ),
    }
    kill_frozen(pid);
}

/// Writes the snapshot of frozen copy `pid` of the process writing `log`,
/// once the log records the copy (it is written just after the copy is made).
fn write(pid: u32, log: &Path, quiet: bool, heur: memtrace_analyzer::reach::Heuristics) {
    let out = snapshot::next_path(log);
    let deadline = Instant::now() + RECORD_WAIT;
    let t = loop {
        match snapshot::take(log, pid, &out, true, heur) {
            Ok(Some(t)) => break t,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                return eprintln!(
                    "memtrace: warning: no snapshot from frozen copy {pid}: {} does not record it",
                    log.display()
                );
            }
            Err(e) => {
                return eprintln!(
                    "memtrace: warning: cannot write snapshot {}: {e}",
                    out.display()
                );
            }
        }
    };
    if let Some(e) = &t.scan_error {
        eprintln!(
            "memtrace: warning: the blocks of snapshot {} are not classified: cannot read the memory of pid {pid}: {e}",
            out.display()
        );
    }
    if !quiet {
        eprintln!(
            "memtrace: snapshot written to {} ({} live in {} blocks)",
            out.display(),
            memtrace_analyzer::render::text::human(t.bytes),
            t.blocks
        );
    }
}

/// Kills and reaps a frozen copy, our child (we are its subreaper).
pub(super) fn kill_frozen(pid: u32) {
    // SAFETY: kill and waitpid on our own child: its pid cannot be reused
    // before we reap it.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
    }
}

/// The value of `NAME=` in process `pid`'s initial environment.
fn environ_var(pid: u32, name: &str) -> std::io::Result<Option<String>> {
    let env = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(env.split(|&b| b == 0).find_map(|e| {
        let e = String::from_utf8_lossy(e);
        e.strip_prefix(name)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_owned)
    }))
}

/// Whether process `pid` has a handler for signal `sig` (`SigCgt`).
fn catches(pid: u32, sig: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

/// Whether the log says the program took the snapshot signal over (header
/// flag `SNAPSHOT_SIGNAL_TAKEN`, set by the preload's sigaction hook).
fn snapshot_signal_taken(log: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = std::fs::File::open(log) else {
        return false;
    };
    let mut page = vec![0u8; memtrace_format::HEADER_SIZE];
    f.read_exact_at(&mut page, 0).is_ok()
        && memtrace_format::hdr::Header::parse(&page)
            .is_ok_and(|h| h.flags & memtrace_format::hdr::flag::SNAPSHOT_SIGNAL_TAKEN != 0)
}

/// Whether `p` is a memtrace log of process `pid` (not a snapshot).
fn is_log_of(p: &Path, pid: u32) -> bool {
    super::run::read_header(p).is_some_and(|h| h.0 == pid)
}

/// Runs `memtrace snapshot PID`.
pub fn run(a: &SnapshotArgs) -> anyhow::Result<u8> {
    let mut pid = a.pid;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        bail!("no process {pid}");
    }
    let log = match mapped_log(pid, &|p| is_log_of(p, pid)) {
        Some(log) => log,
        None => {
            // `memtrace run`'s own pid: its one traced child is meant.
            let traced: Vec<(u32, PathBuf)> = children(pid)
                .into_iter()
                .filter_map(|c| Some((c, mapped_log(c, &|p| is_log_of(p, c))?)))
                .collect();
            match &traced[..] {
                [(c, log)] => {
                    eprintln!("memtrace: pid {pid} runs the traced pid {c}: taking its snapshot");
                    pid = *c;
                    log.clone()
                }
                _ => bail!(
                    "process {pid} is not traced by memtrace (no memtrace log among its mappings)"
                ),
            }
        }
    };
    let sig = environ_var(pid, "MEMTRACE_SNAPSHOT_SIGNAL")
        .with_context(|| format!("cannot read the environment of process {pid}"))?
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    if sig <= 0 {
        bail!(
            "process {pid} was not started with snapshots on (memtrace run --snapshot-signal; `none` turns them off)"
        );
    }
    if snapshot_signal_taken(&log) {
        bail!(
            "process {pid} installed its own handler for signal {sig}, memtrace's snapshot signal: memtrace's handler is gone; not sending it"
        );
    }
    if !catches(pid, sig) {
        bail!(
            "process {pid} has no handler for signal {sig}, memtrace's snapshot signal: it is still starting, or the program installed its own; not sending it"
        );
    }
    let out = snapshot::next_path(&log);
    // SAFETY: kill(2) with a signal the process handles.
    if unsafe { libc::kill(pid as i32, sig) } != 0 {
        bail!(
            "cannot send signal {sig} to process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    while !out.exists() {
        if Instant::now() >= deadline {
            bail!(
                "no snapshot after {} s: `memtrace run`, which writes it, is not running or cannot read the process",
                a.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{}", out.display());
    // One line of what it holds (no stacks: `memtrace report` shows them).
    let opts = memtrace_analyzer::Options {
        top: Some(0),
        ..Default::default()
    };
    if let Ok(r) = memtrace_analyzer::analyze(&out, &opts) {
        let s = &r.summary;
        let plural = memtrace_analyzer::report::plural;
        let mut line = format!(
            "memtrace: snapshot of pid {pid} at {:.3} s: {} live in {}",
            r.process.duration_ms / 1000.0,
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks")
        );
        if let Some(k) = &s.leak_kinds {
            let parts: Vec<String> = memtrace_analyzer::reach::Kind::ALL
                .iter()
                .zip(k)
                .map(|(kind, (b, _))| format!("{} {}", kind.words(), plural(*b, "byte", "bytes")))
                .collect();
            line += &format!(" ({})", parts.join(", "));
        }
        eprintln!("{line}");
    }
    Ok(0)
}
