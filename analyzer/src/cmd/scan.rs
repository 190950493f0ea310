//! `memtrace __scan --tid TID --fd FD`: the scanner that a process traced by
//! libmemtrace.so starts at exit (the preload's `scan` module), not a command
//! for people. It is that process's child; its standard input and output are
//! pipes to the exiting thread, which waits.
//!
//! 1. Dies with the process (`PR_SET_PDEATHSIG`) and waits for the end of
//!    standard input (the process closes it once it has allowed this process
//!    to trace it).
//! 2. Stops every other thread of the process ([`Stopped`]): their
//!    stack pointers and registers.
//! 3. Replays the process's log (`/proc/PPID/fd/FD`) for the blocks live now
//!    and what the exit recorded (`KIND_EXIT_SCAN`); under `memtrace run`
//!    (`MEMTRACE_LIVE_PACKER` set), first asks its live packer, which knows
//!    them for the events it packed and reads only the rest of the log
//!    ([`super::livescan::ask`]).
//! 4. Reads the process's memory and classifies the blocks
//!    ([`reach::classify_process`]), then lets the threads go.
//! 5. Writes REACH records and one SCAN_DONE record to standard output as
//!    frames `[kind, n, n values]` (little-endian u64), which the process
//!    writes into its log.
//!
//! With `--mailbox ADDR` (a process that had no descriptor left for the
//! pipes) the go and the frames go through the preload's mailbox in the
//! process's memory instead, read and written through `/proc/PPID/mem`
//! ([`Mailbox`]).
//!
//! It never writes to the log or anywhere else in the process, and prints
//! nothing.

use std::io::{Read, Write};
use std::time::Instant;

use memtrace_analyzer::analysis::reach::{self, ExitScan, Roots};
use memtrace_analyzer::live::stop::Stopped;
use memtrace_format::kernel::*;

use crate::args::ScanArgs;

pub fn run(a: &ScanArgs) -> anyhow::Result<u8> {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no arguments.
    let ppid = unsafe { libc::getppid() } as u32;
    if ppid <= 1 {
        anyhow::bail!("not started by a traced process");
    }
    // The go is the end of standard input (the process closes its end once it
    // has allowed this process to trace it), or the mailbox's.
    let mailbox = match a.mailbox {
        Some(at) => Some(Mailbox::open(ppid, at)?),
        None => {
            let mut rest = Vec::new();
            std::io::stdin().read_to_end(&mut rest)?;
            None
        }
    };
    let started = Instant::now();
    let stopped = Stopped::all(ppid, a.tid);
    let threads = stopped.threads.len() as u64;
    let without = stopped
        .threads
        .iter()
        .filter(|t| t.registers.is_empty())
        .count() as u64;
    let scan = scan(ppid, a, &stopped);
    drop(stopped);
    let mut out: Box<dyn Write> = match mailbox {
        Some(m) => Box::new(std::io::BufWriter::with_capacity(MAILBOX_RING / 2, m)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for r in &scan.records {
        frame(&mut out, KIND_REACH, r)?;
    }
    let micros = started.elapsed().as_micros() as u64;
    frame(
        &mut out,
        KIND_SCAN_DONE,
        &[scan.status, threads, without, scan.blocks, micros],
    )?;
    out.flush()?;
    Ok(crate::exit::OK)
}

/// Bytes of the mailbox's ring (the preload's `scan::MAILBOX_RING`).
const MAILBOX_RING: usize = 64 * 1024;

/// The preload's mailbox in the process (its `scan::Mailbox`: `go`,
/// `written`, `read` as u64s, then the ring), reached through
/// `/proc/PID/mem`. Writing to it puts bytes into the ring as room allows.
struct Mailbox {
    mem: std::fs::File,
    at: u64,
    written: u64,
}

impl Mailbox {
    /// Opens process `pid`'s memory once it lets this process in, and waits
    /// for the go (at most 30 s: the process sets it right after
    /// `PR_SET_PTRACER`).
    fn open(pid: u32, at: u64) -> anyhow::Result<Mailbox> {
        let until = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let mem = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/{pid}/mem"));
            if let Ok(mem) = mem {
                let m = Mailbox {
                    mem,
                    at,
                    written: 0,
                };
                if m.word(0)? == 1 {
                    let written = m.word(1)?;
                    return Ok(Mailbox { written, ..m });
                }
            }
            if Instant::now() > until {
                anyhow::bail!("no go in the mailbox");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The mailbox's u64 number `i`.
    fn word(&self, i: u64) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 8];
        self.mem.read_exact_at(&mut b, self.at + 8 * i)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl Write for Mailbox {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            let room = MAILBOX_RING as u64 - (self.written - self.word(2)?);
            if room > 0 {
                let at = (self.written % MAILBOX_RING as u64) as usize;
                let n = buf.len().min(room as usize).min(MAILBOX_RING - at);
                self.mem.write_all_at(&buf[..n], self.at + 24 + at as u64)?;
                self.written += n as u64;
                self.mem
                    .write_all_at(&self.written.to_le_bytes(), self.at + 8)?;
                return Ok(n);
            }
            // The process copies the ring out every millisecond.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`scan`] found.
struct Scan {
    /// One of `SCAN_*`.
    status: u64,
    /// REACH records' values.
    records: Vec<Vec<u64>>,
    /// Live blocks classified.
    blocks: u64,
}

/// Classifies the live blocks of process `pid`, whose other threads are
/// `stopped`.
fn scan(pid: u32, a: &ScanArgs, stopped: &Stopped) -> Scan {
    let failed = |status| Scan {
        status,
        records: Vec::new(),
        blocks: 0,
    };
    let by_fd = std::path::PathBuf::from(format!("/proc/{pid}/fd/{}", a.fd));
    // `memtrace run`'s live packer may know the end of the command's log
    // already, and read only the rest of it (`cmd::livescan`).
    let asked = std::env::var_os(super::livescan::SOCKET_ENV)
        .and_then(|path| super::livescan::ask(&path, pid, &by_fd));
    // Else the log through the process's descriptor, or, if the program
    // closed it, by the path of its header's mapping. The file's own path,
    // where it is still there, so that a fork child's parent's log is looked
    // for beside it.
    let real = std::fs::read_link(&by_fd).ok().filter(|p| p.is_file());
    let input = asked.or_else(|| {
        [real, Some(by_fd), mapped_path(pid, a.header)]
            .into_iter()
            .flatten()
            .find_map(|log| match reach::scan_input(&log, &[]) {
                Ok(Some(i)) if i.pid == pid => Some(i),
                _ => None,
            })
    });
    let Some(input) = input else {
        return failed(SCAN_BAD_LOG);
    };
    let roots = roots(pid, &input.exit, stopped);
    // The heuristics the process was started with (memtrace run passes its
    // --leak-check-heuristics on); a bad value: memcheck's default, all.
    let heur = reach::Heuristics::from_env().unwrap_or(reach::Heuristics::ALL);
    match reach::classify_process(pid, &roots, &input.blocks, heur, reach::Pages::Own) {
        Ok(scan) => Scan {
            status: SCAN_OK,
            records: reach::records(&input.blocks, &scan),
            blocks: input.blocks.len() as u64,
        },
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => failed(SCAN_NO_ACCESS),
        Err(_) => failed(SCAN_FAILED),
    }
}

/// The roots as the exit recorded them and the stopped threads show them.
fn roots(pid: u32, exit: &ExitScan, stopped: &Stopped) -> Roots {
    let mut r = Roots {
        stack_starts: vec![exit.sp],
        registers: exit.registers.to_vec(),
        ..Roots::default()
    };
    for t in &stopped.threads {
        // A thread inside a system call is in its C library wrapper, which
        // keeps nothing in the red zone below it, and reached it through a
        // call, across which the vector registers are caller-saved: what lies
        // in either is stale (often memtrace's own hooks' frames and values).
        // One stopped in its own code may keep live words in both.
        if let Some(sp) = t.sp {
            let red_zone = if t.in_syscall { 0 } else { reach::RED_ZONE };
            r.stack_starts.push(sp.saturating_sub(red_zone));
        }
        r.registers.extend(&t.registers);
        if !t.in_syscall {
            r.registers.extend(&t.vector);
        }
    }
    r.not_roots.extend(reach::own_mappings(pid, exit.own_table));
    // The preload's image to the end of its last page (the end its loader
    // gives is that of its data: the rest of the page is its own too).
    let module_end = exit
        .module
        .1
        .checked_next_multiple_of(4096)
        .unwrap_or(u64::MAX);
    for (start, len) in [
        (exit.module.0, module_end.saturating_sub(exit.module.0)),
        exit.sampled,
    ] {
        if len > 0 {
            r.not_roots.push((start, len));
        }
    }
    r
}

/// The path of the file mapped at `addr` in process `pid`.
fn mapped_path(pid: u32, addr: u64) -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.splitn(6, ' ');
        let (a, b) = f.next()?.split_once('-')?;
        let (a, b) = (
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        );
        let path = f.nth(4)?.trim_start();
        ((a..b).contains(&addr) && path.starts_with('/')).then(|| path.into())
    })
}

/// Writes one frame.
fn frame(out: &mut impl Write, kind: u8, values: &[u64]) -> std::io::Result<()> {
    out.write_all(&(kind as u64).to_le_bytes())?;
    out.write_all(&(values.len() as u64).to_le_bytes())?;
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}
