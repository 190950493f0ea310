//! The scan at exit asking `memtrace run`'s live packer
//! ([`super::livepack`]) for the blocks live at the end of the command's
//! log, and its answer.
//!
//! The scanner (`memtrace __scan`, [`super::scan`]) would find those blocks
//! by reading the whole log while the program waits (a quarter of a second
//! for a 100 MiB log). The packer knows them for the events it packed
//! ([`Progress`]), so the scanner of the command's own log asks on
//! the run's [`Socket`] (`MEMTRACE_LIVE_PACKER`, which the preload hands to
//! the scanner) once it has stopped the process's threads, so that nothing
//! is written meanwhile. The [`Listener`] takes the packer's progress
//! (handed over between rounds, waited for at most [`PROGRESS_WAIT`]) and,
//! on a thread at the command's priority, reads only the rest of the log
//! ([`reach::live_set::end_state_after`]). The request names the process
//! and its log's file (device and inode); the scanner takes the answer
//! only from a peer of its own user (`SO_PEERCRED`). Any other scanner, or
//! any failure, gets no answer and reads the log itself ([`ask`]). Uses
//! `pack::Progress`, `analysis::reach` and `log::Log`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

use memtrace_analyzer::analysis::reach::{self, Block, ExitScan, ScanInput};
use memtrace_analyzer::log::Log;
use memtrace_analyzer::pack::Progress;

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

/// A request for the packer's progress: where to send it (`None`: no log
/// found yet).
pub(super) type Ask = Sender<Option<Progress>>;

/// The thread that answers scanners on a [`Socket`], asking the packer.
pub(super) struct Listener {
    socket: Socket,
    done: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Listener {
    /// Answers the scanner of process `pid` on `socket` from what `packer`
    /// hands over.
    pub(super) fn start(socket: Socket, pid: u32, packer: Sender<Ask>) -> Option<Listener> {
        let done = Arc::new(AtomicBool::new(false));
        let quit = done.clone();
        let l = socket.listener.try_clone().ok()?;
        let thread = std::thread::Builder::new()
            .name("packer-socket".into())
            .spawn(move || serve(&l, pid, &packer, &quit))
            .ok()?;
        Some(Listener {
            socket,
            done,
            thread,
        })
    }

    /// Stops the thread; returns how many scanners it answered.
    pub(super) fn finish(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        // Wakes the listener from its poll.
        drop(UnixStream::connect(&self.socket.path));
        self.thread.join().unwrap_or(0)
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
fn serve(listener: &UnixListener, pid: u32, packer: &Sender<Ask>, done: &AtomicBool) -> u64 {
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
                packer.send(tx).ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
            while let Ok(reply) = rx.recv() {
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
}
