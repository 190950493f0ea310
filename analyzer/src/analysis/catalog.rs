//! The first pass over a log: everything that is not replayed.
//!
//! STACK and MODULE records may appear after their first use, even in
//! another stream, so they are all collected before the replay. The pass
//! decodes every record (frames included), so a corrupt log is refused here,
//! before any output. It also gathers the process events (EXIT, EXEC, FORK),
//! lost-event counts and damage counts.
//!
//! One stack may come under several ids: the preload defines a stack again
//! when two threads intern it at once, or when its table has no room left.
//! [`Catalog::stack_aliases`] names, after the replay, the ids that stand for
//! the same stack as a smaller one, so that no report lists one stack twice
//! ([`crate::analysis::replay::Outcome::merge_stacks`]).

use crate::analysis::id_table::FirstUse;
use std::collections::HashMap;

use memtrace_format::Record;

use crate::analysis::stack_store::StackStore;
use crate::analysis::symbolize::{Module, Modules};
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::log::{Event, Index, Log};

/// What the first pass found.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Frames of each stack id, innermost first.
    pub stacks: StackStore,
    /// Distinct stacks defined by this log's STACK records.
    pub own_stacks: u64,
    /// Of those, the stacks the unwinder did not finish, by why it stopped
    /// (`Cut` as u8: index 1 to 3).
    pub cut_stacks: [u64; 4],
    /// Why each stack the unwinder did not finish was cut, by stack id: this
    /// log's own and those a fork child inherited ([`crate::analysis::inherit`]).
    pub cut: HashMap<u32, memtrace_format::Cut>,
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
    /// The path of an EXEC record, and its [`memtrace_format::lineage`] bits.
    pub exec: Option<(String, u8)>,
    /// Child processes, as their FORK records describe them.
    pub children: Vec<crate::analysis::lineage::Child>,
    /// Time of the last timed record.
    pub last_time: Option<u64>,
    /// Records decoded.
    pub records: u64,
    /// KERNEL records (times absolute, CLOCK_MONOTONIC).
    pub kernel: crate::analysis::kernel::KernelView,
    /// What the preload recorded for the scan at exit (`KIND_EXIT_SCAN`).
    pub exit_scan: Option<ExitScan>,
    /// How the scan at exit ended (`KIND_SCAN_DONE`).
    pub scan_done: Option<ScanDone>,
    /// Frozen copies made for snapshots while the process ran
    /// (`KIND_SNAPSHOT_RUNNING`).
    pub running: Vec<Running>,
    /// The reachability of the live blocks, by address (`memtrace run`'s scan).
    pub reach: HashMap<u64, crate::kinds::Kind>,
    /// The still reachable blocks that a leak heuristic saved, by address.
    pub reach_heuristics: HashMap<u64, crate::kinds::Heuristic>,
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
    /// The stack ids that name the same stack as a smaller id, each mapped
    /// to the smallest: the same frames, in the same module instances at
    /// each id's first use (`first_use`; a `dlclose` between two uses may
    /// put another object at the same address, and the symbolizer picks the
    /// instance by the first use). Empty in the usual log, where each stack
    /// is defined once.
    ///
    /// Costs one hash per stack (see [`StackStore::twins`]); module
    /// instances are looked up only for ids with equal frames.
    pub fn stack_aliases(&self, first_use: &FirstUse) -> FastMap<u32, u32> {
        let mut aliases = FastMap::default();
        let modules_of = |id: u32| -> Vec<Option<usize>> {
            let t = first_use.get(id);
            let frames = self.stacks.get(id).into_iter().flat_map(|f| f.iter());
            frames.map(|a| self.modules.find(a, t)).collect()
        };
        for group in self.stacks.twins() {
            // Classes of equal stacks, each under its smallest id (the
            // group is sorted, so a class's first member is its smallest).
            let mut classes: HashMap<Vec<Option<usize>>, u32> = HashMap::new();
            for &id in &group {
                let canonical = *classes.entry(modules_of(id)).or_insert(id);
                if canonical != id {
                    aliases.insert(id, canonical);
                }
            }
        }
        aliases
    }

    /// Takes in one merged event (the replay's pass calls this for every
    /// event, so that one pass over the log serves both).
    #[inline]
    pub fn observe(&mut self, ev: &Event<'_>, log: &Log, index: &Index) -> Result<()> {
        if ev.realloc_end {
            return Ok(());
        }
        self.records += 1;
        if ev.record.time().is_some() {
            self.last_time = Some(self.last_time.map_or(ev.time, |t| t.max(ev.time)));
        }
        match &ev.record {
            // The bulk of a log, and nothing to catalog.
            Record::Alloc { .. } | Record::Free { .. } | Record::Realloc { .. } => Ok(()),
            _ => self.observe_rest(ev, log, index),
        }
    }

    /// [`Catalog::observe`] of the records that are not heap events.
    #[inline(never)]
    fn observe_rest(&mut self, ev: &Event<'_>, log: &Log, index: &Index) -> Result<()> {
        let c = self;
        match &ev.record {
            Record::Stack { id, frames } => {
                let new =
                    c.stacks
                        .try_insert(*id, frames.clone())
                        .map_err(|err| Error::Record {
                            path: log.path().to_owned(),
                            stream: index.streams[ev.stream].id,
                            offset: ev.chunk_offset,
                            err,
                        })?;
                if new {
                    c.own_stacks += 1;
                    if let Some(cut) = frames.cut() {
                        c.cut_stacks[cut as usize] += 1;
                        c.cut.insert(*id, cut);
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
            Record::Exec { path, how, .. } => {
                c.exec = Some((String::from_utf8_lossy(path).into_owned(), *how))
            }
            Record::Fork {
                child_pid,
                how,
                path,
                ..
            } => c
                .children
                .push(crate::analysis::lineage::child(*child_pid, *how, path)),
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
                c.kernel_record(ev.time, *kind, &v);
            }
            Record::Torn => c.torn_records += 1,
            Record::Unknown { .. } => c.unknown_records += 1,
            _ => {}
        }
        Ok(())
    }

    /// Takes in a KERNEL record's kind and values (decoded), at `time`.
    fn kernel_record(&mut self, time: u64, kind: u8, v: &[u64]) {
        match kind {
            memtrace_format::kernel::KIND_EXIT_SCAN => {
                self.exit_scan = ExitScan::from_values(v);
            }
            memtrace_format::kernel::KIND_SCAN_DONE => {
                self.scan_done = ScanDone::from_values(v);
            }
            memtrace_format::kernel::KIND_SNAPSHOT_RUNNING => {
                self.running.extend(Running::from_values(v));
            }
            memtrace_format::kernel::KIND_REACH => {
                if let Some((&code, addrs)) = v.split_first() {
                    let k = crate::kinds::Kind::from_code(code);
                    let h = crate::kinds::Heuristic::from_code(code);
                    // A heuristic's blocks are still reachable.
                    let k = k.or(h.map(|_| crate::kinds::Kind::StillReachable));
                    let mut a = 0u64;
                    for &d in addrs {
                        a = a.wrapping_add(d);
                        if let Some(k) = k {
                            self.reach.insert(a, k);
                        }
                        if let Some(h) = h {
                            self.reach_heuristics.insert(a, h);
                        }
                    }
                }
            }
            _ => self.kernel.observe(time, kind, v),
        }
    }
}

/// A frozen copy made for a snapshot while the process ran
/// (`KIND_SNAPSHOT_RUNNING`), and what its scan must leave out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Running {
    /// The copy's pid.
    pub pid: u32,
    /// The stack pointer in the preload's signal handler: below it the stack is dead.
    pub sp: u64,
    /// CLOCK_MONOTONIC ns, taken just before the copy was made.
    pub time: u64,
    /// The preload's table of its own mappings, in the copy's memory
    /// (address, slots); (0, 0) in logs of earlier versions, which did not
    /// record it.
    pub own_table: (u64, u64),
    /// Mappings of the preload that its table could not hold.
    pub own_overflow: u64,
    /// Where the kernel saved the interrupted thread's general-purpose
    /// registers (23 words, glibc's `gregs`), in the copy's memory; 0 if not
    /// known.
    pub gregs: u64,
    /// Where it saved its floating-point and vector registers (start,
    /// bytes); (0, 0) if not known.
    pub fp_state: (u64, u64),
    /// The preload's other memory that is not a root (start, bytes): the
    /// sampled-address set, the preload's own object.
    pub not_roots: Vec<(u64, u64)>,
}

impl Running {
    /// The values before the pairs (see `KIND_SNAPSHOT_RUNNING`).
    const FIXED: usize = 9;

    /// From a `KIND_SNAPSHOT_RUNNING` record's values; earlier versions'
    /// 5 values (`[pid, sp, time, sampled set start, bytes]`) too.
    pub fn from_values(v: &[u64]) -> Option<Running> {
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        if v.len() < 3 {
            return None;
        }
        let mut r = Running {
            pid: u32::try_from(g(0)).ok()?,
            sp: g(1),
            time: g(2),
            ..Running::default()
        };
        if v.len() < Self::FIXED {
            r.not_roots = pairs(&v[3..]);
        } else {
            r.own_table = (g(3), g(4));
            r.own_overflow = g(5);
            (r.gregs, r.fp_state) = (g(6), (g(7), g(8)));
            r.not_roots = pairs(&v[Self::FIXED..]);
        }
        Some(r)
    }
}

/// What the preload recorded for the scan at exit (`KIND_EXIT_SCAN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitScan {
    /// The exiting thread.
    pub tid: u32,
    /// Its stack pointer at the entry to `exit` (or at `main`'s return).
    pub sp: u64,
    /// Its callee-saved registers then: rbx, rbp, r12 to r15.
    pub registers: [u64; 6],
    /// The preload's table of its own mappings: address and slots.
    pub own_table: (u64, u64),
    /// The preload's own object (start, end).
    pub module: (u64, u64),
    /// The sampled-address set (start, bytes).
    pub sampled: (u64, u64),
    /// Mappings of the preload that its table could not hold.
    pub own_overflow: u64,
    /// Whether the registers were taken at the call to exit
    /// (`EXIT_AT_CALL`) or only in the exit path (`EXIT_AT_HANDLER`).
    pub at_call: bool,
}

impl ExitScan {
    /// From a `KIND_EXIT_SCAN` record's values.
    pub fn from_values(v: &[u64]) -> Option<ExitScan> {
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        if v.len() < 16 {
            return None;
        }
        Some(ExitScan {
            tid: u32::try_from(g(0)).ok()?,
            sp: g(1),
            registers: [g(2), g(3), g(4), g(5), g(6), g(7)],
            own_table: (g(8), g(9)),
            module: (g(10), g(11)),
            sampled: (g(12), g(13)),
            own_overflow: g(14),
            at_call: g(15) == memtrace_format::kernel::EXIT_AT_CALL,
        })
    }

    /// The record's values again, as [`ExitScan::from_values`] reads them.
    pub fn values(&self) -> [u64; 16] {
        use memtrace_format::kernel::{EXIT_AT_CALL, EXIT_AT_HANDLER};
        let r = &self.registers;
        [
            self.tid as u64,
            self.sp,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            self.own_table.0,
            self.own_table.1,
            self.module.0,
            self.module.1,
            self.sampled.0,
            self.sampled.1,
            self.own_overflow,
            if self.at_call {
                EXIT_AT_CALL
            } else {
                EXIT_AT_HANDLER
            },
        ]
    }
}

/// How the scan at exit ended (`KIND_SCAN_DONE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanDone {
    /// One of `memtrace_format::kernel::SCAN_*`.
    pub status: u64,
    /// Threads stopped and read (besides the exiting one).
    pub threads: u64,
    /// Threads whose registers could not be read (their whole stack was
    /// scanned, or from the stack pointer the kernel showed).
    pub threads_without_registers: u64,
    /// Live blocks classified.
    pub blocks: u64,
    /// How long the scan took.
    pub micros: u64,
}

impl ScanDone {
    /// From a `KIND_SCAN_DONE` record's values.
    pub fn from_values(v: &[u64]) -> Option<ScanDone> {
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        (!v.is_empty()).then(|| ScanDone {
            status: g(0),
            threads: g(1),
            threads_without_registers: g(2),
            blocks: g(3),
            micros: g(4),
        })
    }

    /// Why there are no kinds, in words (`None` when the scan succeeded).
    pub fn failure(&self) -> Option<&'static str> {
        use memtrace_format::kernel::*;
        Some(match self.status {
            SCAN_OK => return None,
            SCAN_NO_SCANNER => {
                "no scanner: no `memtrace` beside libmemtrace.so and MEMTRACE_SCANNER not set"
            }
            SCAN_NOT_STARTED => "the scanner could not be started (no process or pipe left)",
            SCAN_FAILED => "the scanner ended without a result",
            SCAN_TIMED_OUT => "the scanner ran out of time (MEMTRACE_SCAN_TIMEOUT)",
            SCAN_NO_ACCESS => {
                "the process's memory could not be read (not dumpable, or ptrace denied)"
            }
            SCAN_SECCOMP => {
                "the process runs under a seccomp filter (no scan, so as not to trip it)"
            }
            SCAN_BAD_LOG => "the scanner could not read the log",
            _ => "the scan failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Running;
    use crate::report::{Options, Report, analyze_bytes};
    use crate::testlog::*;

    /// An exit-scan record's values come back whole from the struct (the
    /// live packer hands them to the scan this way).
    #[test]
    fn exit_scan_values_round_trip() {
        use memtrace_format::kernel::{EXIT_AT_CALL, EXIT_AT_HANDLER};
        for how in [EXIT_AT_CALL, EXIT_AT_HANDLER] {
            let mut v: Vec<u64> = (100..115).collect();
            v.push(how);
            let e = super::ExitScan::from_values(&v).unwrap();
            assert_eq!(e.at_call, how == EXIT_AT_CALL);
            assert_eq!(e.values().to_vec(), v);
        }
    }

    #[test]
    fn running_records_of_both_layouts() {
        // This version's: the fixed values, then pairs (an empty one dropped).
        let v = [
            7, 0x7ff0, 99, 0x5000, 8192, 1, 0x7fe0, 0x7f00, 832, 0x9000, 4096, 0xa000, 0,
        ];
        let r = Running::from_values(&v).unwrap();
        assert_eq!(
            r,
            Running {
                pid: 7,
                sp: 0x7ff0,
                time: 99,
                own_table: (0x5000, 8192),
                own_overflow: 1,
                gregs: 0x7fe0,
                fp_state: (0x7f00, 832),
                not_roots: vec![(0x9000, 4096)],
            }
        );
        // Earlier versions': [pid, sp, time, sampled set start, bytes].
        let r = Running::from_values(&[7, 0x7ff0, 99, 0x9000, 4096]).unwrap();
        assert_eq!(r.not_roots, [(0x9000, 4096)]);
        assert_eq!((r.own_table, r.gregs, r.fp_state), ((0, 0), 0, (0, 0)));
        assert_eq!(Running::from_values(&[7, 0x7ff0]), None);
        assert_eq!(Running::from_values(&[1 << 40, 0, 0]), None);
    }

    const MS: u64 = 1_000_000;

    fn module(c: &mut ChunkBuilder, t: u64, path: &str) {
        let d = c.dt(t);
        c.put(|b| memtrace_format::encode::module(b, d, 0, 0x1000, 0x3000, &[], path.as_bytes()));
    }

    fn unmodule(c: &mut ChunkBuilder, t: u64) {
        let d = c.dt(t);
        c.put(|b| memtrace_format::encode::unmodule(b, d, 0, 0x1000));
    }

    fn analyze(c: &ChunkBuilder, end: u64) -> Report {
        let mut b = LogBuilder::new();
        b.push(0, c).ended(end);
        analyze_bytes(&b.bytes, &Options::default()).unwrap()
    }

    /// (bytes, count, innermost address) of each site, in the list's order.
    fn sites(v: &[crate::report::Site]) -> Vec<(u64, u64, u64)> {
        v.iter()
            .map(|s| (s.bytes, s.count, s.stack.first().map_or(0, |f| f.address)))
            .collect()
    }

    /// A stack defined under three ids (as a saturated or racing stack table
    /// does) is one site in every list: leaks, mappings, peak, allocated and
    /// temporary, with the sums of its ids; another stack stays apart.
    #[test]
    fn one_stack_under_several_ids_is_one_site() {
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1100, 0x1200])
            .stack(2, &[0x2100, 0x1200])
            .stack(7, &[0x1100, 0x1200])
            .stack(9, &[0x1100, 0x1200])
            .alloc(T0 + MS, 0x10, 10, 1)
            .alloc(T0 + 2 * MS, 0x20, 20, 7)
            .alloc(T0 + 3 * MS, 0x30, 40, 2)
            .alloc(T0 + 4 * MS, 0x40, 30, 9)
            .alloc(T0 + 5 * MS, 0x50, 1000, 7)
            .free(T0 + 6 * MS, 0x50)
            .mmap(T0 + 7 * MS, 0x7000_0000, 4096, 0x22, 1)
            .mmap(T0 + 8 * MS, 0x7100_0000, 8192, 0x22, 9);
        let r = analyze(&c, T0 + 10 * MS);
        assert_eq!(r.heap_leak_stacks, 2);
        assert_eq!(sites(&r.heap_leaks), [(60, 3, 0x1100), (40, 1, 0x2100)]);
        assert_eq!(r.mmap_leak_stacks, 1);
        assert_eq!(sites(&r.mmap_leaks), [(12288, 2, 0x1100)]);
        assert_eq!(sites(&r.peak), [(1060, 4, 0x1100), (40, 1, 0x2100)]);
        assert_eq!(sites(&r.allocated), [(1060, 4, 0x1100), (40, 1, 0x2100)]);
        assert_eq!(sites(&r.temporary), [(1000, 1, 0x1100)]);
        assert_eq!(r.summary.leaked_heap_blocks, 4);
    }

    /// The same addresses in another object (one unloaded, another loaded
    /// at its place) are another stack: not merged. In the same object
    /// (nothing unloaded between the uses) they are.
    #[test]
    fn same_frames_in_another_object_stay_apart() {
        let mut c = LogBuilder::chunk(T0);
        module(&mut c, T0, "/lib/one.so");
        c.stack(1, &[0x1500]).alloc(T0 + MS, 0x10, 10, 1);
        c.stack(2, &[0x1500]).alloc(T0 + 2 * MS, 0x20, 20, 2);
        unmodule(&mut c, T0 + 3 * MS);
        module(&mut c, T0 + 4 * MS, "/lib/two.so");
        c.stack(3, &[0x1500]).alloc(T0 + 5 * MS, 0x30, 40, 3);
        let r = analyze(&c, T0 + 10 * MS);
        assert_eq!(sites(&r.heap_leaks), [(40, 1, 0x1500), (30, 2, 0x1500)]);
        let module = |i: usize| {
            r.heap_leaks[i].stack[0]
                .module
                .as_deref()
                .map(str::to_owned)
        };
        assert_eq!(module(0).as_deref(), Some("/lib/two.so"));
        assert_eq!(module(1).as_deref(), Some("/lib/one.so"));
    }
}
