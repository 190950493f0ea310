//! Packing the logs of processes that have ended while the command still
//! runs, on the core it leaves idle, so that `memtrace run` on a process tree
//! does not pack hundreds of logs after the tree has ended (step 5 of
//! [`super::trace`]).
//!
//! A thread of the lowest priority (nice 19) looks at the pattern's directory
//! every [`ROUND`]. A log is
//! packed ahead ([`pack::stage`]: into a temporary file beside it, the raw
//! log untouched) once nothing more can be added to it: its process is gone
//! (a zombie counts), it is not the command's own (whose logs get the wait
//! status at the end), and the kernel sampler has never tried to sample it
//! (else its samples are appended at the end). What is staged is put in place
//! with the rest at the end ([`pack::commit_all`]), and only if the log turns
//! out to be one of the run's ([`super::logs::find_logs`]); the others' staged
//! copies are dropped, which removes them. Uses `cmd::logs`, `pack` and the
//! kernel sampler's [`Sampled`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use memtrace_analyzer::analysis::kernel::Sampled;
use memtrace_analyzer::log::live::process_alive;
use memtrace_analyzer::pack::{self, Staged};

use super::logs::{Pattern, read_header};

/// How often the directory is looked at.
const ROUND: Duration = Duration::from_millis(50);

/// The packing thread; [`Prepacker::finish`] stops it and hands over what
/// it staged.
pub(super) struct Prepacker {
    stop: Sender<()>,
    thread: JoinHandle<HashMap<PathBuf, Staged>>,
}

impl Prepacker {
    /// Starts packing ahead the logs of `pat` that started after `spawned`,
    /// but for those of the command `pid` and those `sampled` has tried.
    pub(super) fn start(
        pat: Pattern,
        pid: u32,
        spawned: SystemTime,
        sampled: Sampled,
    ) -> std::io::Result<Prepacker> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("prepacker".into())
            .spawn(move || run(&pat, pid, spawned, &sampled, &stopped))?;
        Ok(Prepacker { stop, thread })
    }

    /// Stops the thread (after the log it is packing, if any) and returns
    /// the staged logs by path.
    pub(super) fn finish(self) -> HashMap<PathBuf, Staged> {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}

fn run(
    pat: &Pattern,
    pid: u32,
    spawned: SystemTime,
    sampled: &Sampled,
    stopped: &Receiver<()>,
) -> HashMap<PathBuf, Staged> {
    // The program's cores are its own: packing ahead takes what it leaves
    // idle (the threads a large log is packed on inherit this).
    // SAFETY: setpriority(2) on this very thread (PRIO_PROCESS with a tid
    // names one thread on Linux); a failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
    let since = spawned
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut staged = HashMap::new();
    // The names seen: by the pid that writes them while they wait for it to
    // end; None once decided for good (staged, or left to the end).
    let mut seen: HashMap<PathBuf, Option<u32>> = HashMap::new();
    loop {
        match stopped.recv_timeout(ROUND) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return staged,
        }
        look(pat, since, &mut seen);
        let ready: Vec<(PathBuf, u32)> = seen
            .iter()
            .filter_map(|(path, &w)| Some((path.clone(), w?)))
            .filter(|&(_, w)| w != pid && !process_alive(w))
            .collect();
        for (path, writer) in ready {
            seen.insert(path.clone(), None);
            // Sampled: its samples go into the raw log at the end, then it
            // is packed there. A log that cannot be staged is too.
            if sampled.contains(writer) {
                continue;
            }
            // A log of one chunk is left to the end: whether it is worth
            // packing depends on how many logs the run has (see
            // `pack::worth_packing`), known then.
            let worth = |m: std::fs::Metadata| pack::worth_packing(m.len(), pack::TREE_FROM);
            if !std::fs::metadata(&path).is_ok_and(worth) {
                continue;
            }
            if let Ok(s) = pack::stage(&path, &path) {
                staged.insert(path, s);
            }
            if let Ok(()) | Err(std::sync::mpsc::TryRecvError::Disconnected) = stopped.try_recv() {
                return staged;
            }
        }
    }
}

/// Adds the logs of this run that appeared in the directory to `seen`.
fn look(pat: &Pattern, since: u64, seen: &mut HashMap<PathBuf, Option<u32>>) {
    let Ok(dir) = std::fs::read_dir(&pat.dir) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if pack::is_staged_name(name) || !pat.matches(name) {
            continue;
        }
        let path = entry.path();
        if seen.contains_key(&path) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            seen.insert(path, None);
            continue;
        }
        match read_header(&path) {
            // Only a log of this run, and only raw: a packed one is done.
            Some((pid, _, _, start)) if start >= since && start != 0 => {
                seen.insert(path, Some(pid));
            }
            // Not yet a log (its header is being written), or not ours.
            None => {}
            Some(_) => {
                seen.insert(path, None);
            }
        }
    }
}
