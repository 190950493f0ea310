//! The first pass over a log: everything that is not replayed.
//!
//! STACK and MODULE records may appear after their first use, even in
//! another stream, so they are all collected before the replay. The pass
//! decodes every record (frames included), so a corrupt log is refused here,
//! before any output. It also gathers the process events (EXIT, EXEC, FORK),
//! lost-event counts and damage counts.

use std::collections::HashMap;

use memtrace_format::Record;

use crate::error::{Error, Result};
use crate::log::{Event, Index, Log};
use crate::symbolize::{Module, Modules};

/// What the first pass found.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Frames of each stack id, innermost first.
    pub stacks: HashMap<u32, Vec<u64>>,
    /// Distinct stacks defined by this log's STACK records.
    pub own_stacks: u64,
    /// Of those, the stacks the unwinder did not finish, by why it stopped
    /// (`Cut` as u8: index 1 to 3).
    pub cut_stacks: [u64; 4],
    /// Loaded ELF objects with their lifetimes.
    pub modules: Modules,
    /// Records whose writer died before storing the tag.
    pub torn_records: u64,
    /// Records with a tag this version does not know (skipped).
    pub unknown_records: u64,
    /// Sum of the LOST records.
    pub lost_in_records: u64,
    /// The last EXIT record: how (`ExitHow` value) and status.
    pub exit: Option<(u8, i64)>,
    /// The path of an EXEC record.
    pub exec: Option<String>,
    /// Pids of fork children.
    pub forks: Vec<u64>,
    /// Time of the last timed record.
    pub last_time: Option<u64>,
    /// Records decoded.
    pub records: u64,
    /// KERNEL records (times absolute, CLOCK_MONOTONIC).
    pub kernel: crate::kernel::KernelView,
    /// What the preload recorded for the scan at exit (`KIND_EXIT_SCAN`).
    pub exit_scan: Option<crate::reach::ExitScan>,
    /// How the scan at exit ended (`KIND_SCAN_DONE`).
    pub scan_done: Option<crate::reach::ScanDone>,
    /// Frozen copies made for snapshots while the process ran
    /// (`KIND_SNAPSHOT_RUNNING`): pid, stack pointer, time.
    pub running: Vec<(u32, u64, u64)>,
    /// Memory of the preload that is not a root (start, bytes), from the
    /// snapshot records.
    pub not_roots: Vec<(u64, u64)>,
    /// The reachability of the live blocks, by address (`memtrace run`'s scan).
    pub reach: HashMap<u64, crate::reach::Kind>,
    /// The still reachable blocks that a leak heuristic saved, by address.
    pub reach_heuristics: HashMap<u64, crate::reach::Heuristic>,
}

/// `[start, bytes, start, bytes...]` as ranges, empty ones dropped.
fn pairs(v: &[u64]) -> Vec<(u64, u64)> {
    v.chunks_exact(2)
        .filter(|p| p[1] != 0)
        .map(|p| (p[0], p[1]))
        .collect()
}

/// Runs the first pass.
pub fn scan(log: &Log, index: &Index) -> Result<Catalog> {
    let mut c = Catalog::default();
    for ev in log.merge(index) {
        c.observe(&ev?, log, index)?;
    }
    Ok(c)
}

impl Catalog {
    /// Takes in one merged event (the replay's pass calls this for every
    /// event, so that one pass over the log serves both).
    pub fn observe(&mut self, ev: &Event<'_>, log: &Log, index: &Index) -> Result<()> {
        let c = self;
        if ev.realloc_end {
            return Ok(());
        }
        c.records += 1;
        if ev.record.time().is_some() {
            c.last_time = Some(c.last_time.map_or(ev.time, |t| t.max(ev.time)));
        }
        match &ev.record {
            Record::Stack { id, frames } => {
                let mut v = Vec::with_capacity(frames.len());
                for f in frames.clone() {
                    v.push(f.map_err(|err| Error::Record {
                        path: log.path().to_owned(),
                        stream: index.streams[ev.stream].id,
                        offset: ev.chunk_offset,
                        err,
                    })?);
                }
                if let std::collections::hash_map::Entry::Vacant(e) = c.stacks.entry(*id) {
                    e.insert(v);
                    c.own_stacks += 1;
                    if let Some(cut) = frames.cut() {
                        c.cut_stacks[cut as usize] += 1;
                    }
                }
            }
            Record::Module {
                time,
                bias,
                start,
                end,
                build_id,
                path,
            } => c.modules.add(Module {
                path: String::from_utf8_lossy(path).into(),
                build_id: build_id.to_vec(),
                bias: *bias,
                start: *start,
                end: *end,
                loaded: *time,
                unloaded: None,
            }),
            Record::Unmodule { time, bias, start } => c.modules.remove(*bias, *start, *time),
            Record::Lost { count, .. } => {
                c.lost_in_records = c.lost_in_records.saturating_add(*count)
            }
            Record::Exit { how, status, .. } => c.exit = Some((*how, *status)),
            Record::Exec { path, .. } => c.exec = Some(String::from_utf8_lossy(path).into_owned()),
            Record::Fork { child_pid, .. } => c.forks.push(*child_pid),
            Record::Kernel { kind, values, .. } => {
                let mut v = Vec::with_capacity(values.len_hint());
                for x in values.clone() {
                    v.push(x.map_err(|err| Error::Record {
                        path: log.path().to_owned(),
                        stream: index.streams[ev.stream].id,
                        offset: ev.chunk_offset,
                        err,
                    })?);
                }
                match *kind {
                    memtrace_format::kernel::KIND_EXIT_SCAN => {
                        c.exit_scan = crate::reach::ExitScan::from_values(&v);
                    }
                    memtrace_format::kernel::KIND_SCAN_DONE => {
                        c.scan_done = crate::reach::ScanDone::from_values(&v);
                    }
                    memtrace_format::kernel::KIND_SNAPSHOT_RUNNING => {
                        if let [p, sp, t, ..] = v[..]
                            && let Ok(p) = u32::try_from(p)
                        {
                            c.running.push((p, sp, t));
                            c.not_roots = pairs(v.get(3..).unwrap_or(&[]));
                        }
                    }
                    memtrace_format::kernel::KIND_REACH => {
                        if let Some((&code, addrs)) = v.split_first() {
                            let k = crate::reach::Kind::from_code(code);
                            let h = crate::reach::Heuristic::from_code(code);
                            // A heuristic's blocks are still reachable.
                            let k = k.or(h.map(|_| crate::reach::Kind::StillReachable));
                            let mut a = 0u64;
                            for &d in addrs {
                                a = a.wrapping_add(d);
                                if let Some(k) = k {
                                    c.reach.insert(a, k);
                                }
                                if let Some(h) = h {
                                    c.reach_heuristics.insert(a, h);
                                }
                            }
                        }
                    }
                    _ => c.kernel.observe(ev.time, *kind, &v),
                }
            }
            Record::Torn => c.torn_records += 1,
            Record::Unknown { .. } => c.unknown_records += 1,
            _ => {}
        }
        Ok(())
    }
}
