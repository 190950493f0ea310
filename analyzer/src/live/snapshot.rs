//! Snapshots of a running process: the live heap at a moment, classified by
//! reachability, without stopping the process.
//!
//! ## How one is taken
//! 1. The process gets the snapshot signal (`memtrace snapshot PID`, or
//!    `kill -SIG`); the preload's handler makes a frozen copy of the process
//!    (a child of `memtrace run`, named `memtrace-snap`) and records its pid,
//!    the stack pointer, the time `t`, where the kernel saved the interrupted
//!    thread's registers and the preload's own memory in the log
//!    (`KIND_SNAPSHOT_RUNNING`), then returns: the process goes on.
//! 2. `memtrace run` (its watcher thread) finds the copy among its children
//!    and takes the snapshot from the state it keeps for the log
//!    ([`crate::live::follow`]: only the records since the previous snapshot
//!    are read). For a fork child's or a sampled log it calls [`take`]
//!    instead: the log is copied as it is now (the process keeps
//!    writing the original), the copy's header gets `SNAPSHOT_AT = t`, the
//!    blocks live at `t` are replayed from it, the frozen copy's memory is
//!    scanned ([`crate::analysis::reach::classify_process`]) and the kinds are appended.
//!    The frozen copy is then killed.
//! 3. The snapshot is a log like any other: `memtrace report SNAP` shows the
//!    blocks live at `t` as its leaks, with their kinds; readers ignore the
//!    events after `t` (`replay::Config::until`). `memtrace report LOG
//!    --since SNAP` compares a later log or snapshot of the same process with
//!    it (see `report::Since`).
//!
//! Events recorded by other threads between `t` and the copy (a few
//! microseconds) are after the cut: the copy may hold a block the snapshot
//! does not list, never the reverse.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memtrace_format::hdr::off;

use crate::analysis::catalog::Running;
use crate::analysis::reach::{self, Block, Kind};
use crate::error::{Error, Result};

/// What [`take`] made.
#[derive(Clone, Debug)]
pub struct Taken {
    /// CLOCK_MONOTONIC ns of the snapshot.
    pub time: u64,
    /// Live heap blocks at that moment, and their bytes.
    pub blocks: u64,
    pub bytes: u64,
    /// Bytes and blocks by kind (in [`Kind::ALL`] order), if the scan worked.
    pub kinds: Option<[(u64, u64); 4]>,
    /// Why the blocks could not be classified, if they could not.
    pub scan_error: Option<String>,
}

/// The name of the `n`-th snapshot of the log at `log`: `NAME.snapN.mtr`
/// (`NAME` without its `.mtr`).
pub fn path_for(log: &Path, n: u32) -> PathBuf {
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".mtr").unwrap_or(&name);
    log.with_file_name(format!("{stem}.snap{n}.mtr"))
}

/// The first snapshot name of `log` that is not taken.
pub fn next_path(log: &Path) -> PathBuf {
    (1..)
        .map(|n| path_for(log, n))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path_for(log, 0))
}

/// Makes the snapshot for the frozen copy `frozen` of the process writing
/// the log at `log`, into `out` (see the module docs). `Ok(None)`: the log
/// does not name the copy (yet): the caller may retry. The frozen copy is
/// only read, not killed. `pack`: store it packed (`crate::pack`). `heur`:
/// the leak heuristics of the scan.
pub fn take(
    log: &Path,
    frozen: u32,
    out: &Path,
    pack: bool,
    heur: reach::Heuristics,
) -> Result<Option<Taken>> {
    let tmp = out.with_extension("tmp");
    let io = |e: std::io::Error, p: &Path| Error::Io {
        path: p.to_owned(),
        source: e,
    };
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut from = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(log)
            .map_err(|e| io(e, log))?;
        let mut to = crate::outfile::create_temp(&tmp).map_err(|e| io(e, &tmp))?;
        std::io::copy(&mut from, &mut to).map_err(|e| io(e, &tmp))?;
    }
    let mut made = fill(&tmp, frozen, heur);
    if pack
        && let Ok(Some(_)) = made
        && let Err(e) = crate::pack::pack_file(&tmp, &tmp)
    {
        made = Err(e);
    }
    match made {
        Ok(Some(t)) => {
            std::fs::rename(&tmp, out).map_err(|e| io(e, out))?;
            Ok(Some(t))
        }
        other => {
            let _ = std::fs::remove_file(&tmp);
            other
        }
    }
}

/// Turns the copy of the log at `path` into the snapshot of `frozen`.
fn fill(path: &Path, frozen: u32, heur: reach::Heuristics) -> Result<Option<Taken>> {
    let found = {
        let log = crate::log::Log::open(path)?;
        let header = log.header()?;
        let index = log.index(&header)?;
        let cat = crate::analysis::catalog::scan(&log, &index)?;
        cat.running.into_iter().find(|r| r.pid == frozen)
    };
    let Some(running) = found else {
        return Ok(None);
    };
    let time = running.time;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })?;
    f.write_all_at(&time.to_le_bytes(), off::SNAPSHOT_AT as u64)
        .map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })?;
    drop(f);
    let live = {
        let log = crate::log::Log::open(path)?;
        let header = log.header()?;
        let index = log.index(&header)?;
        // A fork child's inherited blocks are live in it too.
        let inherited = crate::analysis::inherit::of_header(path, &header, &[]).unwrap_or(None);
        let seed = inherited.as_ref().map(|i| &i.seed);
        let cfg = crate::analysis::replay::Config::of(&header);
        crate::analysis::replay::replay_seeded(&log, &index, cfg, seed, |_| Ok(()))?.live
    };
    classify_into(path, &running, &live, heur).map(Some)
}

/// Classifies the blocks `live` (address, block) of the frozen copy
/// `running` names and appends the kinds to the snapshot at `path`. Its
/// roots are the copy's memory but the preload's own: the mappings its
/// table lists (read from the copy), its object and its sampled-address set,
/// as in the scan at exit. A scan that fails is said in
/// [`Taken::scan_error`], not as an error.
pub(super) fn classify_into(
    path: &Path,
    running: &Running,
    live: &[(u64, crate::analysis::replay::Block)],
    heur: reach::Heuristics,
) -> Result<Taken> {
    let (frozen, time) = (running.pid, running.time);
    let blocks: Vec<Block> = live
        .iter()
        .map(|(a, b)| Block {
            addr: *a,
            size: b.size,
        })
        .collect();
    let mut taken = Taken {
        time,
        blocks: live.iter().map(|(_, b)| b.count as u64).sum(),
        bytes: live.iter().map(|(_, b)| b.size).sum(),
        kinds: None,
        scan_error: None,
    };
    match reach::classify_process(frozen, &roots(running), &blocks, heur, reach::Pages::Shared) {
        Ok(scan) => {
            let mut by = [(0u64, 0u64); 4];
            for ((_, b), k) in live.iter().zip(&scan.kinds) {
                let i = Kind::ALL.iter().position(|x| x == k).unwrap_or(0);
                by[i].0 += b.size;
                by[i].1 += b.count as u64;
            }
            taken.kinds = Some(by);
            let events = reach::records(&blocks, &scan)
                .into_iter()
                .map(|v| (time, memtrace_format::kernel::KIND_REACH, v))
                .collect();
            crate::analysis::kernel::append_records(path, events).map_err(|e| Error::Io {
                path: path.to_owned(),
                source: e,
            })?;
        }
        Err(e) => taken.scan_error = Some(e.to_string()),
    }
    Ok(taken)
}

/// The roots of the scan of the frozen copy `running` names (see
/// `KIND_SNAPSHOT_RUNNING`): its memory but the preload's own (the mappings
/// its table lists, its object, its sampled-address set, as in the scan at
/// exit), and the interrupted thread as the kernel saved it in the signal
/// frame: its registers, and its stack from its stack pointer up, less the
/// red zone (its innermost function's), as for a thread stopped at exit. The
/// signal frame and the handler's frames below are the preload's. A thread
/// inside a system call keeps nothing in the red zone nor in its vector
/// registers ([`in_system_call`]): neither is a root then. Without the saved
/// context (earlier versions' logs), the stack from the handler's frame up.
fn roots(running: &Running) -> reach::Roots {
    let frozen = running.pid;
    let mut r = reach::Roots {
        stack_starts: vec![running.sp],
        not_roots: reach::own_mappings(frozen, running.own_table),
        ..Default::default()
    };
    r.not_roots.extend(&running.not_roots);
    let Ok(mem) = std::fs::File::open(format!("/proc/{frozen}/mem")) else {
        return r;
    };
    let words = |at: u64, bytes: u64| -> Option<Vec<u64>> {
        let mut b = vec![0u8; bytes.min(1 << 16) as usize];
        (at != 0 && mem.read_exact_at(&mut b, at).is_ok()).then(|| {
            b.chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
                .collect()
        })
    };
    let Some(gregs) = words(running.gregs, GREGS * 8) else {
        return r;
    };
    let reg = |i: libc::c_int| gregs[i as usize];
    let (rip, rax, rsp) = (reg(libc::REG_RIP), reg(libc::REG_RAX), reg(libc::REG_RSP));
    let in_call = in_system_call(&mem, rip, rax);
    r.stack_starts = vec![rsp.saturating_sub(if in_call { 0 } else { reach::RED_ZONE })];
    r.registers = gregs;
    if !in_call {
        r.registers
            .extend(words(running.fp_state.0, running.fp_state.1).unwrap_or_default());
    }
    r
}

/// The general-purpose registers in a signal frame (glibc's `NGREG`).
const GREGS: u64 = 23;

/// Whether the thread the snapshot signal interrupted was inside a system
/// call, from its saved `rip` and `rax` and the code there (read from the
/// frozen copy's memory `mem`, whose code is the process's): the kernel
/// restarts an interrupted call by moving `rip` back onto the `syscall`
/// instruction (`SA_RESTART`, and `restart_syscall`), or returns `-EINTR`
/// just after it. A thread inside one reached it through a call (the C
/// library's wrapper): its vector registers are caller-saved and its wrapper
/// keeps nothing below its stack pointer, so what they hold is stale (often
/// the preload's own values, from its hooks, or the dynamic linker's saved
/// copies of them). memcheck's register roots leave vector registers out
/// always.
fn in_system_call(mem: &std::fs::File, rip: u64, rax: u64) -> bool {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    let at = |addr: u64| {
        let mut b = [0u8; 2];
        mem.read_exact_at(&mut b, addr).is_ok() && b == SYSCALL
    };
    at(rip) || (rax == -(libc::EINTR as i64) as u64 && rip >= 2 && at(rip - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = Path::new("/d/memtrace.12.mtr");
        assert_eq!(path_for(p, 3), Path::new("/d/memtrace.12.snap3.mtr"));
        assert_eq!(
            path_for(Path::new("x/log.7"), 1),
            Path::new("x/log.7.snap1.mtr")
        );
    }
}
