//! Snapshots of running processes (`memtrace_analyzer::live::snapshot`): the
//! watcher that `memtrace run` keeps while its command runs, and `memtrace
//! snapshot PID`, which asks for one.
//!
//! - **Watcher.** A finder thread lists memtrace's own children every 20 ms;
//!   a frozen copy (our child, named `memtrace-snap`, made by the preload's
//!   signal handler and handed to memtrace as the subreaper) is taken at once:
//!   held by a pidfd opened while it is checked to be our child with that
//!   name, and stopped (`SIGSTOP`), which keeps it alive past its idle
//!   lifetime (see the preload's `snapshot` module: an untaken copy exits by
//!   itself after 10 s, and every copy dies with `memtrace run`). A reader
//!   thread then reads each taken copy: its log is found among its mappings,
//!   the snapshot written next to the log (`NAME.snapN.mtr`, packed), and the
//!   copy killed through its pidfd and reaped. It keeps each log's replay
//!   state from one snapshot to the next (`live::follow`), so a snapshot
//!   reads only what the log gained since the previous one. The process itself never waits
//!   for this. (`MEMTRACE_TEST_IGNORE_COPIES=1`, for the tests only: the
//!   finder takes no copy, as if `memtrace run` were wedged.)
//! - **`memtrace snapshot PID`** checks that PID is traced with snapshots on
//!   (its environment names the signal, and it has a handler for it: an
//!   unhandled real-time signal would kill it), that the `memtrace run` named
//!   in its environment (`MEMTRACE_RUN_PID`) is still running and still its
//!   ancestor (else nobody would write the snapshot: a daemon that outlived
//!   its `memtrace run`, or a plain `LD_PRELOAD`), sends the signal through
//!   a pidfd opened before the checks (so a reused pid cannot take it), and
//!   waits for the next snapshot file of its log to appear, at most
//!   `--timeout` seconds and never past the end of that `memtrace run`.
//!
//! The only processes memtrace signals: the command it started (`cmd::run`),
//! its own children that are frozen copies (here), its scanner (the
//! preload's), and the traced process `memtrace snapshot PID` is asked to
//! signal, checked as above.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use memtrace_analyzer::live::follow::Follower;
use memtrace_analyzer::live::snapshot;

use crate::args::SnapshotArgs;

/// The name the preload gives a frozen copy made for a snapshot.
const FROZEN_NAME: &str = "memtrace-snap";

/// How often the finder lists memtrace's children: a snapshot waits half of
/// it on average; each look reads a file per thread of memtrace's.
const FINDER_INTERVAL: Duration = Duration::from_millis(20);

/// How long the watcher waits for the process to record its copy.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Takes the snapshots of a run's processes while it runs.
pub struct Watcher {
    /// Dropped to stop the finder: its wait between looks ends at once.
    stop: mpsc::Sender<()>,
    finder: JoinHandle<()>,
    reader: JoinHandle<()>,
}

/// The test hook that makes the finder leave copies alone.
const IGNORE_COPIES: &str = "MEMTRACE_TEST_IGNORE_COPIES";

impl Watcher {
    /// Starts watching; `is_log` tells the run's log files; `quiet`: say
    /// nothing but warnings; `heur`: the scans' leak heuristics.
    pub fn start(
        is_log: Box<dyn Fn(&Path) -> bool + Send>,
        quiet: bool,
        heur: memtrace_analyzer::analysis::reach::Heuristics,
    ) -> Watcher {
        let (stop, stopped) = mpsc::channel::<()>();
        let ignore = std::env::var_os(IGNORE_COPIES).is_some_and(|v| v == "1");
        let (tx, rx) = mpsc::channel::<Held>();
        // The finder takes copies as soon as they appear, whatever the reader
        // is busy with, so that none reaches its idle lifetime.
        let finder = std::thread::spawn(move || {
            let mut seen: HashSet<u32> = HashSet::new();
            loop {
                let last = matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Disconnected));
                let children = own_children();
                // A pid reaped by the reader may come back as a new copy's.
                seen.retain(|p| children.contains(p));
                for pid in children {
                    if ignore || seen.contains(&pid) {
                        continue;
                    }
                    if let Some(h) = Held::take(pid) {
                        seen.insert(pid);
                        if let Err(mpsc::SendError(h)) = tx.send(h) {
                            h.kill();
                        }
                    }
                }
                if last {
                    break;
                }
                // Returns early once `finish` drops the sender: one last look follows.
                let _ = stopped.recv_timeout(FINDER_INTERVAL);
            }
        });
        let reader = std::thread::spawn(move || {
            let mut followers = Followers::new();
            for h in rx {
                handle(h, &is_log, quiet, heur, &mut followers);
            }
        });
        Watcher {
            stop,
            finder,
            reader,
        }
    }

    /// Takes the snapshots still pending and stops. A copy made later is
    /// not read; it dies with this process or after its idle lifetime.
    pub fn finish(self) {
        drop(self.stop);
        let _ = self.finder.join();
        let _ = self.reader.join();
    }
}

/// A frozen copy taken by the watcher: our child, held by a pidfd (when the
/// kernel has them), stopped.
struct Held {
    pid: u32,
    fd: Option<OwnedFd>,
}

impl Held {
    /// Takes `pid` if it is a frozen copy of ours: opens a pidfd for it,
    /// then checks that it is our child and named as a copy (so the pidfd is
    /// the process checked), and stops it. `None`: not a copy (yet).
    fn take(pid: u32) -> Option<Held> {
        if !is_frozen_copy(pid) {
            return None;
        }
        let fd = pidfd(pid);
        if !is_frozen_copy(pid) {
            return None;
        }
        let h = Held { pid, fd };
        h.signal(libc::SIGSTOP);
        Some(h)
    }

    /// Sends `sig` to the copy: through its pidfd, or by pid (then it is
    /// our child, not reaped: its pid cannot have been reused).
    fn signal(&self, sig: i32) {
        match &self.fd {
            // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                );
            },
            // SAFETY: kill(2) on our own child, see above.
            None => unsafe {
                libc::kill(self.pid as i32, sig);
            },
        }
    }

    /// Kills and reaps the copy.
    fn kill(self) {
        self.signal(libc::SIGKILL);
        // SAFETY: waitpid on our own child, into no status.
        unsafe { libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0) };
    }
}

/// A pidfd for process `pid` (`None` on kernels without them, before 5.3).
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    // SAFETY: a descriptor just returned to us, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
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

/// Whether `pid` is a frozen copy of ours: our child, named as a copy.
fn is_frozen_copy(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == FROZEN_NAME)
        && parent_of(pid) == Some(std::process::id())
}

/// Process `pid`'s parent (`/proc/PID/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `ancestor` is an ancestor of `pid` (its parent, its parent's...).
fn is_ancestor(ancestor: u32, pid: u32) -> bool {
    let mut p = pid;
    for _ in 0..4096 {
        match parent_of(p) {
            Some(q) if q == ancestor => return true,
            Some(q) if q > 1 => p = q,
            _ => return false,
        }
    }
    false
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

/// The reader's state per traced log, kept from one snapshot to the next
/// (`None`: the log's snapshots are not incremental, see
/// `memtrace_analyzer::live::follow`).
type Followers = HashMap<PathBuf, Option<Follower>>;

/// The follower of the log at `log`, made at its first snapshot.
fn follower<'a>(followers: &'a mut Followers, log: &Path) -> &'a mut Option<Follower> {
    followers.entry(log.to_owned()).or_insert_with(|| {
        let l = memtrace_analyzer::log::Log::open(log).ok()?;
        if l.is_packed() {
            return None;
        }
        Follower::new(&l.header().ok()?)
    })
}

/// Reads a frozen copy into a snapshot, then kills it.
fn handle(
    h: Held,
    is_log: &dyn Fn(&Path) -> bool,
    quiet: bool,
    heur: memtrace_analyzer::analysis::reach::Heuristics,
    followers: &mut Followers,
) {
    let pid = h.pid;
    match mapped_log(pid, is_log) {
        Some(log) => write(pid, &log, quiet, heur, follower(followers, &log)),
        None => eprintln!(
            "memtrace: warning: a snapshot was asked (frozen copy {pid}) but its log is not among its mappings"
        ),
    }
    h.kill();
}

/// Writes the snapshot of frozen copy `pid` of the process writing `log`,
/// once the log records the copy (it is written just after the copy is made).
fn write(
    pid: u32,
    log: &Path,
    quiet: bool,
    heur: memtrace_analyzer::analysis::reach::Heuristics,
    follower: &mut Option<Follower>,
) {
    let out = snapshot::next_path(log);
    let deadline = Instant::now() + RECORD_WAIT;
    let t = loop {
        // Gives up only when an attempt that began after the wait still
        // finds no record: one attempt copies and reads the whole log, which
        // on a big log under load takes longer than the wait itself.
        let began = Instant::now();
        let made = match follower {
            Some(f) => f.take(log, pid, &out, true, heur),
            None => snapshot::take(log, pid, &out, true, heur),
        };
        if made.is_err() {
            // Its state may be half updated: the log's later snapshots are
            // taken the whole way.
            *follower = None;
        }
        match made {
            Ok(Some(t)) => break t,
            Ok(None) if began < deadline => std::thread::sleep(Duration::from_millis(10)),
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
            memtrace_analyzer::units::human(t.bytes),
            t.blocks
        );
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
    super::logs::read_header(p).is_some_and(|h| h.0 == pid)
}

/// Whether process `pid`, held by `fd` when the kernel has pidfds, has ended.
fn ended(pid: u32, fd: Option<&OwnedFd>) -> bool {
    match fd {
        Some(fd) => {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own, without waiting; a pidfd is
            // readable once its process has ended.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        }
        None => !Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// Runs `memtrace snapshot PID`.
pub fn run(a: &SnapshotArgs) -> anyhow::Result<u8> {
    if !Path::new(&format!("/proc/{}", a.pid)).exists() {
        bail!("no process {}", a.pid);
    }
    let (pid, log) = traced_process(a.pid)?;
    // Held from now on: the checks below are of this very process, and the
    // signal goes to it even if it ends and its pid is reused meanwhile.
    let target = pidfd(pid);
    if mapped_log(pid, &|p| p == log) != Some(log.clone()) {
        bail!("process {pid} ended");
    }
    let sig = snapshot_signal_of(pid)?;
    let (run, run_fd) = memtrace_run_of(pid)?;
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
    send(target.as_ref(), pid, sig)?;
    wait_for_snapshot(&out, run, run_fd.as_ref(), a.timeout)?;
    println!("{}", out.display());
    tell_what_it_holds(pid, &out);
    Ok(0)
}

/// The traced process meant by `pid`, and its log: `pid` itself, or, given
/// `memtrace run`'s own pid, its one traced child (which is said).
fn traced_process(pid: u32) -> anyhow::Result<(u32, PathBuf)> {
    if let Some(log) = mapped_log(pid, &|p| is_log_of(p, pid)) {
        return Ok((pid, log));
    }
    // `memtrace run`'s own pid: its one traced child is meant.
    let traced: Vec<(u32, PathBuf)> = children(pid)
        .into_iter()
        .filter_map(|c| Some((c, mapped_log(c, &|p| is_log_of(p, c))?)))
        .collect();
    match &traced[..] {
        [(c, log)] => {
            eprintln!("memtrace: pid {pid} runs the traced pid {c}: taking its snapshot");
            Ok((*c, log.clone()))
        }
        _ => bail!("process {pid} is not traced by memtrace (no memtrace log among its mappings)"),
    }
}

/// The snapshot signal process `pid` was started with; an error if none.
fn snapshot_signal_of(pid: u32) -> anyhow::Result<i32> {
    let sig = environ_var(pid, "MEMTRACE_SNAPSHOT_SIGNAL")
        .with_context(|| format!("cannot read the environment of process {pid}"))?
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    if sig <= 0 {
        bail!(
            "process {pid} was not started with snapshots on (memtrace run --snapshot-signal; `none` turns them off)"
        );
    }
    Ok(sig)
}

/// The `memtrace run` that writes the snapshots of process `pid` (its pid, and
/// a pidfd on it when the kernel has them); an error if there is none, or it is
/// gone.
fn memtrace_run_of(pid: u32) -> anyhow::Result<(u32, Option<OwnedFd>)> {
    let run = environ_var(pid, "MEMTRACE_RUN_PID")
        .with_context(|| format!("cannot read the environment of process {pid}"))?
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&r| r > 0);
    let Some(run) = run else {
        bail!(
            "process {pid} was not started by `memtrace run` (no MEMTRACE_RUN_PID: a plain LD_PRELOAD?): nobody would write its snapshot; not sending the signal"
        );
    };
    let gone = || {
        format!(
            "`memtrace run` (pid {run}), which writes the snapshots of process {pid}, is gone: the process outlived it (its parent is now {}); no snapshot can be taken, not sending the signal",
            parent_of(pid).map_or("unknown".to_owned(), |p| p.to_string())
        )
    };
    // An ancestor is older than the process, so a pid of a `memtrace run`
    // that died cannot have been reused by one of them.
    if !is_ancestor(run, pid) {
        bail!("{}", gone());
    }
    let run_fd = pidfd(run);
    if !is_ancestor(run, pid) {
        bail!("{}", gone());
    }
    Ok((run, run_fd))
}

/// Sends `sig` to process `pid`, through its pidfd `target` when there is one.
fn send(target: Option<&OwnedFd>, pid: u32, sig: i32) -> anyhow::Result<()> {
    let sent = match target {
        // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            ) == 0
        },
        // SAFETY: kill(2) with a signal the process handles (no pidfds on
        // this kernel: checked just above, by pid).
        None => unsafe { libc::kill(pid as i32, sig) == 0 },
    };
    if !sent {
        bail!(
            "cannot send signal {sig} to process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Waits up to `timeout` seconds for `memtrace run` (pid `run`, held by
/// `run_fd`) to write the snapshot `out`; an error if it ends first or the
/// time is up.
fn wait_for_snapshot(
    out: &Path,
    run: u32,
    run_fd: Option<&OwnedFd>,
    timeout: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    while !out.exists() {
        if ended(run, run_fd) {
            // It may have written the snapshot just before it ended.
            if out.exists() {
                break;
            }
            bail!("`memtrace run` (pid {run}), which writes the snapshot, ended before writing it");
        }
        if Instant::now() >= deadline {
            bail!(
                "no snapshot after {} s: `memtrace run` (pid {run}) still runs but wrote none (see its warnings: it may be unable to read the process)",
                timeout
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// One line on stderr of what the snapshot `out` of process `pid` holds (no
/// stacks: `memtrace report` shows them); nothing if it cannot be read.
fn tell_what_it_holds(pid: u32, out: &Path) {
    let opts = memtrace_analyzer::Options {
        top: Some(0),
        ..Default::default()
    };
    if let Ok(r) = memtrace_analyzer::analyze(out, &opts) {
        let s = &r.summary;
        let plural = memtrace_analyzer::units::plural;
        let mut line = format!(
            "memtrace: snapshot of pid {pid} at {:.3} s: {} live in {}",
            r.process.duration_ms / 1000.0,
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks")
        );
        if let Some(k) = &s.leak_kinds {
            let parts: Vec<String> = memtrace_analyzer::analysis::reach::Kind::ALL
                .iter()
                .zip(k)
                .map(|(kind, (b, _))| format!("{} {}", kind.words(), plural(*b, "byte", "bytes")))
                .collect();
            line += &format!(" ({})", parts.join(", "));
        }
        eprintln!("{line}");
    }
}
