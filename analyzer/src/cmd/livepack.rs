//! Packing the command's own log while the command runs (step 5 of
//! [`super::trace`]), on the core it leaves idle, so that `memtrace run`
//! returns soon after the command ends instead of packing its whole log then.
//!
//! A thread of the lowest priority (nice 19) finds the command's log (its
//! pid's, not a fork child's, started after the spawn) and every [`ROUND`]
//! packs what no record still to come can precede ([`pack::LivePack`]).
//! That time, the *horizon*, is the earliest of:
//! - each live thread's bound: a thread stamps its records in the order it
//!   stores them, so none it stores from now on is earlier than the latest
//!   it stored ([`pack::LivePack::bounds`]), whichever of its streams (a
//!   signal handler's has one of its own) it is in;
//! - the clock when the threads were listed, less [`margin`]: a thread
//!   started since stamps later than that.
//!
//! The threads are those `/proc/PID/task` lists, read after the clock.
//! Streams of threads that have gone are whole (a thread stores before it
//! ends) and bound nothing. Nothing is packed in a round where a live
//! thread has no stream yet (its first record may be stamped and not stored)
//! or a stream does not name its thread (a sandboxed writer's): the horizon
//! waits, and what is left is packed at the end.
//!
//! Between rounds it hands over how far it got ([`pack::Progress`]) to
//! the scan at exit of the command's log, which asks through
//! [`super::livescan`]. Uses `cmd::logs`, `cmd::livescan`,
//! `pack::LivePack` and the clock of `analysis::kernel`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use memtrace_analyzer::analysis::kernel::mono_ns;
use memtrace_analyzer::pack::{self, LivePack};

use super::livescan::{Ask, Listener, Socket};
use super::logs::{Pattern, read_header};

/// How often the log is read.
const ROUND: Duration = Duration::from_millis(20);

/// About how many events a round packs when the packer is behind (they are
/// held in memory for the round): the time span read is sized by the last
/// round's, between [`MIN_STEP`] and [`MAX_STEP`] nanoseconds, and grows
/// sixteenfold after a round that found nothing.
const BEHIND: u64 = 1 << 16;
const MIN_STEP: u64 = 10_000;
const MAX_STEP: u64 = 1_000_000_000;

/// The packing thread; [`LivePacker::finish`] stops it and hands over the
/// log it packs, if it found one.
pub(super) struct LivePacker {
    /// Asks for its progress; dropped (with the listener's), it stops.
    asks: Sender<Ask>,
    thread: JoinHandle<Option<LivePack>>,
    listener: Option<Listener>,
}

impl LivePacker {
    /// Starts packing the log of the command `pid` (pattern `pat`) that
    /// started after `spawned`, answering its scanner on `socket`
    /// ([`super::livescan`]).
    pub(super) fn start(
        pat: Pattern,
        pid: u32,
        spawned: SystemTime,
        socket: Option<Socket>,
    ) -> std::io::Result<Self> {
        let (asks, asked) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("livepacker".into())
            .spawn(move || run(&pat, pid, spawned, &asked))?;
        let listener = socket.and_then(|s| Listener::start(s, pid, asks.clone()));
        Ok(LivePacker {
            asks,
            thread,
            listener,
        })
    }

    /// Stops the thread (after the round under way) and returns what it
    /// packed, and how many scanners were answered from it.
    pub(super) fn finish(self) -> (Option<LivePack>, u64) {
        let answered = self.listener.map_or(0, Listener::finish);
        drop(self.asks);
        (self.thread.join().ok().flatten(), answered)
    }
}

fn run(pat: &Pattern, pid: u32, spawned: SystemTime, asked: &Receiver<Ask>) -> Option<LivePack> {
    // SAFETY: setpriority(2) on this very thread (PRIO_PROCESS with a tid
    // names one thread on Linux); a failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
    let since = spawned
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let began = mono_ns();
    let mut live: Option<LivePack> = None;
    let mut packed_until = 0u64;
    let mut wait = ROUND;
    let mut step = MAX_STEP;
    loop {
        match asked.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(reply) => {
                let _ = reply.send(live.as_ref().map(LivePack::progress));
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return live,
        }
        wait = ROUND;
        let Some(lp) = live.as_mut() else {
            live = find(pat, pid, since).and_then(|p| LivePack::new(&p).ok());
            packed_until = live.as_ref().map_or(0, |l| l.started().saturating_sub(1));
            step = MIN_STEP;
            continue;
        };
        // Without a horizon the read still finds the streams (and their
        // bounds) written since, which the next round's horizon needs.
        let horizon = horizon(lp, pid, began).map_or(packed_until, |h| h.max(packed_until));
        // A round holds its events in memory: it takes about BEHIND of them,
        // by how long the last round's took to happen.
        let until = horizon.min(packed_until.saturating_add(step));
        match lp.advance(until) {
            Ok(n) => {
                if until > packed_until && n > 0 {
                    let span = (until - packed_until) as u128;
                    step = (span * BEHIND as u128 / n as u128)
                        .clamp(MIN_STEP as u128, MAX_STEP as u128)
                        as u64;
                } else if n == 0 && until < horizon {
                    // Nothing in the span (before the first record, or a
                    // quiet while): look further at once.
                    step = step.saturating_mul(16);
                }
                packed_until = until;
                if until < horizon {
                    wait = Duration::ZERO;
                }
            }
            // Left to the end, where the log is packed from scratch.
            Err(_) => return None,
        }
    }
}

/// The command's log: its pid's, not a fork child's, of this run.
fn find(pat: &Pattern, pid: u32, since: u64) -> Option<PathBuf> {
    for entry in std::fs::read_dir(&pat.dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if pack::is_staged_name(name) || !pat.matches(name) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match read_header(&path) {
            Some((p, _, 0, start)) if p == pid && start >= since && start != 0 => {
                return Some(path);
            }
            _ => {}
        }
    }
    None
}

/// The latest time up to which the log of `pid` may be packed now (see the
/// module docs), `None` when nothing may; `began`: when packing began.
fn horizon(lp: &LivePack, pid: u32, began: u64) -> Option<u64> {
    let now = mono_ns();
    let threads = threads(pid)?;
    let mut with_stream = HashSet::new();
    let mut until = now.checked_sub(margin(now.saturating_sub(began)))?;
    for (tid, bound) in lp.bounds() {
        if tid == 0 {
            return None;
        }
        if threads.contains(&tid) {
            with_stream.insert(tid);
            until = until.min(bound);
        }
    }
    if with_stream.len() < threads.len() {
        return None;
    }
    // Strictly before: a record stamped at the bound itself may still come.
    until.checked_sub(1)
}

/// How far the writer's clock may be ahead of this one's, `elapsed` after
/// packing began: the preload converts the TSC with a rate calibrated
/// against CLOCK_MONOTONIC to about 1e-5 (`preload/src/sys.rs`); this allows
/// a hundred times that, and 2 ms.
fn margin(elapsed: u64) -> u64 {
    2_000_000 + elapsed / 1000
}

/// The threads of process `pid` (`None` once it has gone).
fn threads(pid: u32) -> Option<HashSet<u32>> {
    let dir = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("task")).ok()?;
    let tids: HashSet<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    (!tids.is_empty()).then_some(tids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_grows_with_time() {
        assert_eq!(margin(0), 2_000_000);
        assert_eq!(margin(100_000_000_000), 102_000_000);
    }

    #[test]
    fn this_process_has_threads() {
        let t = threads(std::process::id()).expect("own threads");
        assert!(t.contains(&std::process::id()));
        assert!(threads(u32::MAX).is_none());
    }
}
