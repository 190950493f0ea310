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
//! The scan at exit (`memtrace __scan`, [`super::scan`]) needs the blocks
//! live at the end, which it would find by reading the whole log while the
//! program waits (a quarter of a second for a 100 MiB log). The packer
//! knows the blocks live after what it packed ([`pack::Progress`]), so the
//! scanner of the command's own log is answered on a [`Socket`] of the
//! packer's (`MEMTRACE_LIVE_PACKER`, which the preload hands to the
//! scanner): the packer hands over its progress between rounds (waited
//! for at most [`PROGRESS_WAIT`]), and a thread at the command's priority
//! reads only the rest of the log ([`reach::live_set::end_state_after`]).
//! The request names the log's file (device and inode) and the answer is
//! taken only from a peer of the scanner's own user (`SO_PEERCRED`). The scanner asks once it has
//! stopped the process's threads, so nothing is written meanwhile. Any
//! other scanner, or any failure, gets no answer and reads the log itself
//! ([`ask`]). Uses `cmd::logs`, `pack::LivePack`, `analysis::reach` and the
//! clock of `analysis::kernel`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use memtrace_analyzer::analysis::kernel::mono_ns;
use memtrace_analyzer::analysis::reach::{self, Block, ExitScan, ScanInput};
use memtrace_analyzer::log::Log;
use memtrace_analyzer::pack::{self, LivePack, Progress};

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

/// The variable that names the [`Socket`] to the preload, which passes it on
/// to the scanner it starts at exit.
pub(super) const SOCKET_ENV: &str = "MEMTRACE_LIVE_PACKER";

/// How long the scanner waits for the answer (reading the rest of the log
/// for it takes no longer than its reading the whole log), and how long an
/// answer may take to write.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// How long the listener waits for the packer's progress (it gives it
/// between rounds) before it tells the scanner no.
const PROGRESS_WAIT: Duration = Duration::from_millis(200);

/// How often the listener looks whether it is to stop.
const POLL: Duration = Duration::from_millis(100);

/// The packing thread; [`LivePacker::finish`] stops it and hands over the
/// log it packs, if it found one.
pub(super) struct LivePacker {
    stop: Sender<Msg>,
    thread: JoinHandle<Option<LivePack>>,
    listener: Option<(Socket, Arc<AtomicBool>, JoinHandle<u64>)>,
}

/// What the packing thread is told besides stopping (all senders gone).
enum Msg {
    /// The scanner of the command's log waits: how far the packer got.
    Progress(Sender<Option<Progress>>),
}

impl LivePacker {
    /// Starts packing the log of the command `pid` (pattern `pat`) that
    /// started after `spawned`, answering its scanner on `socket`.
    pub(super) fn start(
        pat: Pattern,
        pid: u32,
        spawned: SystemTime,
        socket: Option<Socket>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("livepacker".into())
            .spawn(move || run(&pat, pid, spawned, &stopped))?;
        let listener = socket.and_then(|socket| {
            let done = Arc::new(AtomicBool::new(false));
            let (to_packer, quit) = (stop.clone(), done.clone());
            let l = socket.listener.try_clone().ok()?;
            let t = std::thread::Builder::new()
                .name("packer-socket".into())
                .spawn(move || serve(&l, pid, &to_packer, &quit))
                .ok()?;
            Some((socket, done, t))
        });
        Ok(LivePacker {
            stop,
            thread,
            listener,
        })
    }

    /// Stops the thread (after the round under way) and returns what it
    /// packed, and how many scanners were answered from it.
    pub(super) fn finish(self) -> (Option<LivePack>, u64) {
        let mut answered = 0;
        if let Some((socket, done, t)) = self.listener {
            done.store(true, Ordering::Relaxed);
            // Wakes the listener from its accept.
            drop(UnixStream::connect(&socket.path));
            answered = t.join().unwrap_or(0);
        }
        drop(self.stop);
        (self.thread.join().ok().flatten(), answered)
    }
}

/// The socket the scanner asks the packer on: `scan` in a directory of its
/// own (`mkdtemp`: mode 0700, made exclusively) in the temporary directory,
/// both removed when it is dropped.
pub(super) struct Socket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl Socket {
    pub(super) fn bind() -> std::io::Result<Socket> {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut template = std::env::temp_dir()
            .join("memtrace-packer.XXXXXX")
            .as_os_str()
            .as_bytes()
            .to_vec();
        template.push(0);
        // SAFETY: mkdtemp rewrites the trailing X's of the NUL-terminated
        // buffer we own, in place.
        if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        template.pop();
        let dir = PathBuf::from(std::ffi::OsString::from_vec(template));
        let path = dir.join("scan");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(Socket {
                dir,
                path,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The listener: a scanner's request is the pid of the process it scans
/// and its log's device and inode. The command's scanner is answered from
/// how far the packer got, read here (at the command's priority, not the
/// packer's nice 19), any other is told no at once. Returns how many were
/// answered. It looks for `done` at least every [`POLL`], so that it ends
/// even when the socket's path is gone.
fn serve(listener: &UnixListener, pid: u32, to_packer: &Sender<Msg>, done: &AtomicBool) -> u64 {
    use std::os::fd::AsRawFd;
    let mut answered = 0;
    if listener.set_nonblocking(true).is_err() {
        return 0;
    }
    while !done.load(Ordering::Relaxed) {
        let mut fd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own, for at most POLL.
        unsafe { libc::poll(&mut fd, 1, POLL.as_millis() as libc::c_int) };
        let mut conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // Out of descriptors, say: not in a loop.
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        if done.load(Ordering::Relaxed) {
            break;
        }
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = conn.set_write_timeout(Some(ANSWER_WAIT));
        let mut b = [0u8; 24];
        if conn.read_exact(&mut b).is_err() {
            continue;
        }
        let word =
            |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or_default());
        let (asked, file) = (word(0), (word(1), word(2)));
        let progress = (asked == u64::from(pid))
            .then(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                to_packer.send(Msg::Progress(tx)).ok()?;
                // The packer answers between rounds; a long round is not
                // waited for (the scanner reads the log itself).
                rx.recv_timeout(PROGRESS_WAIT).ok()?
            })
            .flatten();
        answered += u64::from(answer(progress.as_ref(), pid, file, conn));
    }
    answered
}

/// Answers the scanner of the log `packed` is of (of process `pid`,
/// forked from nothing, the file `file`: device and inode, as the scanner
/// sees it): 1, the exit record's 16 values, the number of live blocks, then
/// each block's address and size (u64s, little-endian); or 0. Whether it
/// answered.
fn answer(packed: Option<&Progress>, pid: u32, file: (u64, u64), mut conn: UnixStream) -> bool {
    use std::os::unix::fs::MetadataExt;
    let state = packed.and_then(|p| {
        let m = std::fs::metadata(p.path()).ok()?;
        if (m.dev(), m.ino()) != file {
            return None;
        }
        let log = Log::open(p.path()).ok()?;
        let h = log.header().ok()?;
        if h.pid != pid || h.forked_from != 0 {
            return None;
        }
        let e = reach::live_set::end_state_after(&log, p).ok()??;
        Some((e.exit?, e.blocks))
    });
    let mut out = Vec::new();
    let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
    let Some((exit, blocks)) = state else {
        put(0);
        let _ = conn.write_all(&out);
        return false;
    };
    put(1);
    exit.values().into_iter().for_each(&mut put);
    put(blocks.len() as u64);
    for b in &blocks {
        put(b.addr);
        put(b.size);
    }
    conn.write_all(&out).is_ok()
}

/// What the packer of `memtrace run` knows of process `pid`'s end, whose
/// log is `log` (the scanner's way to it), asked on the socket `path` names
/// (see the module docs); `None` when it does not answer, or when what
/// listens there is not a process of this user, and the scanner reads the
/// log itself.
pub fn ask(path: &std::ffi::OsStr, pid: u32, log: &Path) -> Option<ScanInput> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(log).ok()?;
    let mut conn = UnixStream::connect(path).ok()?;
    if peer_uid(&conn)? != own_uid() {
        return None;
    }
    conn.set_read_timeout(Some(ANSWER_WAIT)).ok()?;
    conn.set_write_timeout(Some(ANSWER_WAIT)).ok()?;
    let mut request = Vec::with_capacity(24);
    for v in [u64::from(pid), m.dev(), m.ino()] {
        request.extend_from_slice(&v.to_le_bytes());
    }
    conn.write_all(&request).ok()?;
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).ok()?;
    let v: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let (&ok, v) = v.split_first()?;
    if ok != 1 || v.len() < 17 || bytes.len() % 8 != 0 {
        return None;
    }
    let exit = ExitScan::from_values(&v[..16])?;
    let n = usize::try_from(v[16]).ok()?;
    let pairs = &v[17..];
    if pairs.len() != n.checked_mul(2)? {
        return None;
    }
    let blocks = pairs
        .chunks_exact(2)
        .map(|p| Block {
            addr: p[0],
            size: p[1],
        })
        .collect();
    Some(ScanInput { pid, exit, blocks })
}

/// The user id of the process at the other end of `conn` (`SO_PEERCRED`).
fn peer_uid(conn: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

/// This process's real user id.
fn own_uid() -> u32 {
    // SAFETY: getuid has no arguments and cannot fail.
    unsafe { libc::getuid() }
}

fn run(pat: &Pattern, pid: u32, spawned: SystemTime, stopped: &Receiver<Msg>) -> Option<LivePack> {
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
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Msg::Progress(reply)) => {
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

    /// The socket's directory is the packer's alone (0700) and goes with it.
    #[test]
    fn the_socket_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let s = Socket::bind().unwrap();
        let dir = s.path().parent().unwrap().to_owned();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(s.path().exists());
        drop(s);
        assert!(!dir.exists());
    }

    /// A scanner of another process, or of the command when the packer has
    /// nothing (no log found yet), gets no answer and reads the log itself;
    /// the listener stops when told, even with its socket's path removed.
    #[test]
    fn other_scanners_get_no_answer() {
        let s = Socket::bind().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Arc::new(AtomicBool::new(false));
        let l = s.listener.try_clone().unwrap();
        let quit = done.clone();
        let t = std::thread::spawn(move || serve(&l, 4242, &tx, &quit));
        let packer = std::thread::spawn(move || {
            let mut asked = 0;
            while let Ok(Msg::Progress(reply)) = rx.recv() {
                asked += 1;
                reply.send(None).unwrap();
            }
            asked
        });
        let me = std::env::current_exe().unwrap();
        assert!(ask(s.path().as_os_str(), 1, &me).is_none());
        assert!(ask(s.path().as_os_str(), 4242, &me).is_none());
        // The socket's path gone (a cleaner of the temporary directory), the
        // listener still stops: no connection is needed to wake it.
        std::fs::remove_file(s.path()).unwrap();
        done.store(true, Ordering::Relaxed);
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(
            packer.join().unwrap(),
            1,
            "only the command's scanner reaches the packer"
        );
    }

    #[test]
    fn this_process_has_threads() {
        let t = threads(std::process::id()).expect("own threads");
        assert!(t.contains(&std::process::id()));
        assert!(threads(u32::MAX).is_none());
    }
}
