//! The CI leak gate's judgement (`memtrace check`): which leaks of which
//! processes count, and which rules they break.
//!
//! ## Steps, for each process of the run
//! 1. **Selection.** A process is judged when it ended by `exit` or `_exit`
//!    and its heap calls were seen. One replaced by exec lost its heap to the
//!    exec (nothing leaked); one killed by a signal or crashed never reached
//!    its exit (its live blocks are not leaks in any useful sense, as with
//!    LeakSanitizer, and the crash is the command's failure to report). With
//!    `select` globs, only processes whose executable (full path or file
//!    name) matches one are judged. The others are listed as skipped, with
//!    the reason.
//! 2. **Leaks.** The heap leaks, plus the mmap leaks when
//!    [`Rules::mmap_leaks`] is set. A heap leak whose blocks were classified
//!    by reachability ([`crate::analysis::reach`]) counts only its blocks of the chosen
//!    kinds ([`Rules::counted_kinds`]: by default definitely and indirectly
//!    lost, as valgrind's `--errors-for-leak-kinds`); one that was not
//!    classified (no scan: `memtrace run --no-reachability`, a plain
//!    `LD_PRELOAD` log, a failed scan) counts whole, since it could be lost.
//! 3. **Suppressions.** Each leak goes to the first suppression (in file
//!    order, files in the order given) that matches its stack; for a
//!    classified heap leak, each kind's blocks go to the first one that
//!    matches the stack and applies to that kind (valgrind's
//!    `match-leak-kinds:`, see [`crate::gate::suppress`]), so a leak can be
//!    suppressed in part. A suppression
//!    with a byte limit (`max:` in memtrace's format) that matches more bytes
//!    than that in one process suppresses nothing there: its leaks count.
//! 4. **Baseline.** The leaks of the baseline run (their blocks of the
//!    chosen kinds, when classified), by [stack key](stack_key),
//!    summed over all its processes, form allowances (each grown by the
//!    tolerance); a leak of a judged process draws from its stack's allowance,
//!    and only what exceeds it counts (as "new" bytes and blocks).
//! 5. **Rules**, on what counts: total bytes and blocks per process, bytes and
//!    blocks per stack, the peak of live heap bytes (absolute, and against
//!    the baseline's peak for the same program, with its own tolerance).
//!    When no leak limit is set at all, any leak fails (`max_leaked_bytes =
//!    0`): the gate's default is "no leaks".
//!
//! Suppression files are read by [`suppress`]. Uses `crate::report` and
//! the layers below it; the renderers of the verdict are in `crate::render::check`.

pub mod suppress;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::analysis::reach::Kind;
use crate::gate::suppress::{Suppression, SuppressionFile};
use crate::kinds::counted_part;
use crate::report::{Ended, Kinds, Report, Site};
use crate::units::parse_size;

/// Suppressions applied unless turned off: allocations that language
/// runtimes make once and keep until exit by design (valgrind calls them
/// "still reachable"), which every program of that language would otherwise
/// report. Like valgrind's `default.supp`.
pub const DEFAULT_SUPPRESSIONS: &str = "\
# memtrace's built-in suppressions (turn off with --no-default-suppressions).
# Rust: the main thread's stack-overflow guard info, kept in a global map for the process's life.
suppress rust-std-main-thread-info fun:std::sys::*stack_overflow::*
# Rust: the main thread's `Thread` handle, created on first use and never dropped.
suppress rust-std-main-thread-handle fun:std::thread::current::init_current
";

/// What fails the gate. Limits apply to each judged process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Most leaked bytes in one process.
    pub max_leaked_bytes: Option<u64>,
    /// Most leaked blocks (and regions, with `mmap_leaks`) in one process.
    pub max_leaked_blocks: Option<u64>,
    /// Most bytes leaked by any one stack.
    pub max_stack_leaked_bytes: Option<u64>,
    /// Most blocks leaked by any one stack.
    pub max_stack_leaked_blocks: Option<u64>,
    /// Mappings left at exit count as leaks too.
    pub mmap_leaks: bool,
    /// Highest allowed peak of live heap bytes.
    pub max_peak: Option<u64>,
    /// Growth over a baseline stack's leak that is still allowed.
    pub tolerance: Tolerance,
    /// Growth over the baseline's peak that is still allowed.
    pub peak_tolerance: Tolerance,
    /// The reachability kinds of a classified heap leak that count (see
    /// [`crate::analysis::reach`]); `None`: [`DEFAULT_LEAK_KINDS`]. A leak that was not
    /// classified counts whole.
    pub leak_kinds: Option<Vec<Kind>>,
}

/// The kinds that count by default: definitely and indirectly lost, as
/// valgrind's `--errors-for-leak-kinds` default. Still reachable blocks (a
/// global cache) and possibly lost ones do not fail the gate unless asked
/// (`--leak-kinds all`).
pub const DEFAULT_LEAK_KINDS: [Kind; 2] = [Kind::DefinitelyLost, Kind::IndirectlyLost];

impl Rules {
    /// The reachability kinds that count: [`Rules::leak_kinds`], else
    /// [`DEFAULT_LEAK_KINDS`].
    pub fn counted_kinds(&self) -> &[Kind] {
        self.leak_kinds.as_deref().unwrap_or(&DEFAULT_LEAK_KINDS)
    }

    /// The leak limits in force: with none set, no leaked byte is allowed.
    fn leak_limits(&self) -> (Option<u64>, Option<u64>) {
        let none = self.max_leaked_bytes.is_none()
            && self.max_leaked_blocks.is_none()
            && self.max_stack_leaked_bytes.is_none()
            && self.max_stack_leaked_blocks.is_none();
        if none {
            (Some(0), None)
        } else {
            (self.max_leaked_bytes, self.max_leaked_blocks)
        }
    }
}

/// An allowance over a baseline figure: absolute bytes or a percentage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    Bytes(u64),
    Percent(f64),
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Bytes(0)
    }
}

impl Tolerance {
    /// Parses `10%`, `4096`, `4k`, `1m`.
    pub fn parse(s: &str) -> Result<Tolerance, String> {
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage (e.g. 10%)"))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{s:?} is not a percentage (e.g. 10%)"));
            }
            return Ok(Tolerance::Percent(v));
        }
        parse_size(s).map(Tolerance::Bytes)
    }

    /// The allowed growth over `base`.
    pub fn allowance(self, base: u64) -> u64 {
        match self {
            Tolerance::Bytes(b) => b,
            Tolerance::Percent(p) => (base as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Bytes(b) => write!(f, "{b} bytes"),
            Tolerance::Percent(p) => write!(f, "{p}%"),
        }
    }
}

pub use crate::frames::{above_main, file_name, stack_key};

fn site_key(kind: &str, s: &Site) -> String {
    crate::frames::key_of(kind, &s.stack)
}

/// A program's name for matching runs across builds: the executable's file
/// name, without the `-<16 hex digits>` cargo appends to test binaries.
pub fn program_name(exe: &str) -> String {
    let name = file_name(exe);
    if let Some((stem, hash)) = name.rsplit_once('-')
        && hash.len() == 16
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return stem.to_owned();
    }
    name.to_owned()
}

/// Leaks and peaks of an earlier run, to compare against.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// Where it was read from.
    pub source: PathBuf,
    /// Leaked bytes and blocks by [`stack_key`], over all processes.
    pub stacks: HashMap<String, (u64, u64)>,
    /// Highest peak heap bytes by [`program_name`].
    pub peaks: HashMap<String, u64>,
}

impl Baseline {
    /// The baseline of analyzed logs: of their classified heap leaks, the
    /// blocks of `kinds` (the kinds that count, [`Rules::counted_kinds`]).
    pub fn from_reports(reports: &[Report], source: &Path, kinds: &[Kind]) -> Baseline {
        let mut b = Baseline {
            source: source.to_owned(),
            ..Baseline::default()
        };
        for r in reports {
            let leaks = r.heap_leaks.iter().map(|s| ("heap", s));
            for (kind, s) in leaks.chain(r.mmap_leaks.iter().map(|s| ("mmap", s))) {
                if let Some((bytes, count)) =
                    counted_part(s.bytes, s.count, s.kinds.as_ref(), kinds)
                {
                    b.add_leak(site_key(kind, s), bytes, count);
                }
            }
            b.add_peak(&r.process.exe, r.summary.peak_heap_bytes);
        }
        b
    }

    /// The baseline in a JSON document written by `memtrace check --json`
    /// (`processes[]`) or `memtrace report --format json` (one process); of a
    /// leak with a `reachability` object, the blocks of `kinds`.
    pub fn from_json(
        doc: &serde_json::Value,
        source: &Path,
        kinds: &[Kind],
    ) -> Result<Baseline, String> {
        use serde_json::Value;
        let mut b = Baseline {
            source: source.to_owned(),
            ..Baseline::default()
        };
        let processes: Vec<&Value> = match doc.get("processes") {
            Some(Value::Array(v)) => v.iter().collect(),
            Some(_) => return Err("\"processes\" is not an array".into()),
            None if doc.get("leaks").is_some() => vec![doc],
            None => {
                return Err(
                    "neither a `memtrace check --json` nor a `memtrace report --format json` document"
                        .into(),
                );
            }
        };
        for p in processes {
            let exe = p
                .get("exe")
                .or_else(|| p.get("process").and_then(|q| q.get("exe")))
                .and_then(Value::as_str)
                .unwrap_or("");
            let peak = p
                .get("peak_heap_bytes")
                .or_else(|| p.get("summary").and_then(|s| s.get("peak_heap_bytes")))
                .and_then(Value::as_u64);
            if let Some(peak) = peak {
                b.add_peak(exe, peak);
            }
            let Some(leaks) = p.get("leaks") else {
                continue;
            };
            let leaks = leaks
                .as_array()
                .ok_or_else(|| format!("\"leaks\" of {exe:?} is not an array"))?;
            for (i, l) in leaks.iter().enumerate() {
                let bad = || format!("leak {i} of {exe:?} lacks kind, bytes, count or stack");
                let kind = l.get("kind").and_then(Value::as_str).ok_or_else(bad)?;
                let bytes = l.get("bytes").and_then(Value::as_u64).ok_or_else(bad)?;
                let count = l.get("count").and_then(Value::as_u64).ok_or_else(bad)?;
                let frames = l.get("stack").and_then(Value::as_array).ok_or_else(bad)?;
                let reach = match l.get("reachability") {
                    Some(Value::Object(m)) => {
                        let mut k: Kinds = [(0, 0); 4];
                        for kind in Kind::ALL {
                            if let Some(v) = m.get(kind.as_str()) {
                                k[kind.index()] = (
                                    v.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                                    v.get("count").and_then(Value::as_u64).unwrap_or(0),
                                );
                            }
                        }
                        Some(k)
                    }
                    _ => None,
                };
                let Some((bytes, count)) = counted_part(bytes, count, reach.as_ref(), kinds) else {
                    continue;
                };
                let key = stack_key(
                    kind,
                    frames.iter().map(|f| {
                        (
                            f.get("function").and_then(Value::as_str),
                            f.get("module").and_then(Value::as_str),
                        )
                    }),
                );
                b.add_leak(key, bytes, count);
            }
        }
        Ok(b)
    }

    fn add_leak(&mut self, key: String, bytes: u64, count: u64) {
        let e = self.stacks.entry(key).or_default();
        e.0 = e.0.saturating_add(bytes);
        e.1 = e.1.saturating_add(count);
    }

    fn add_peak(&mut self, exe: &str, peak: u64) {
        let e = self.peaks.entry(program_name(exe)).or_default();
        *e = (*e).max(peak);
    }
}

/// What became of one leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It counts against the rules (wholly, or what exceeds the baseline).
    Counted,
    /// Matched by the suppression with this index in [`Verdict::suppressions`].
    Suppressed(usize),
    /// Within the baseline's allowance for its stack.
    Baseline,
}

/// One leaked stack of a judged process.
#[derive(Clone, Debug)]
pub struct Leak {
    /// `"heap"` or `"mmap"`.
    pub kind: &'static str,
    /// The leak's blocks, merged over the stacks that symbolize the same (a
    /// call site the compiler duplicated records several stacks). For a
    /// classified heap leak, only its blocks of the kinds that count and
    /// share this status: `site.kinds` says which (a leak suppressed for some
    /// kinds only is two `Leak`s).
    pub site: Site,
    pub status: Status,
    /// What counts: all of the site's bytes and blocks, or what exceeds the
    /// baseline; 0 unless counted.
    pub new_bytes: u64,
    pub new_count: u64,
}

/// Why a process was not judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Its image was replaced by exec: its heap went with it.
    Exec,
    /// It never reached its exit (killed, crashed), or its log ends early.
    Abnormal,
    /// Its `malloc` was not the preload's: its heap was not seen.
    NotTraced,
    /// Its executable matches none of the selection's globs.
    NotSelected,
}

impl Skip {
    /// Why, in a few words.
    pub fn reason(&self, r: &Report) -> String {
        match self {
            Skip::Exec => "replaced by exec (its heap went with it)".into(),
            Skip::Abnormal if r.process.ended == Ended::Running => {
                "still running (its log is still being written): leaks not judged".into()
            }
            Skip::Abnormal => match r.process.signal {
                Some(sig) => format!("killed by signal {sig} before its exit: leaks not judged"),
                None => "did not reach its exit (killed or crashed): leaks not judged".into(),
            },
            Skip::NotTraced => "its malloc is not the preload's: its heap was not seen".into(),
            Skip::NotSelected => "not selected by --exe".into(),
        }
    }
}

/// A broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The rule's option name, e.g. `max-leaked-bytes`.
    pub rule: &'static str,
    pub message: String,
}

/// The judgement of one process.
#[derive(Clone, Debug)]
pub struct ProcessVerdict<'a> {
    pub report: &'a Report,
    pub skipped: Option<Skip>,
    /// Leaks of the kinds that count, largest first (by new bytes, then bytes).
    pub leaks: Vec<Leak>,
    pub counted_bytes: u64,
    pub counted_blocks: u64,
    /// Bytes and blocks of the classified heap leaks of each kind that does
    /// not count (order of [`Kind::ALL`]; zeros for the kinds that count).
    pub not_counted: Kinds,
    /// The baseline's peak for this program, if it has one.
    pub baseline_peak: Option<u64>,
    pub failures: Vec<Failure>,
    /// Things worth saying that are not failures themselves.
    pub notes: Vec<String>,
}

impl ProcessVerdict<'_> {
    /// Judged, and no rule broken.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// How much one suppression matched, over all processes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub stacks: u64,
    pub blocks: u64,
    pub bytes: u64,
    /// Processes where it matched more than its byte limit.
    pub over_limit: u64,
}

/// The gate's judgement of a run.
#[derive(Clone, Debug)]
pub struct Verdict<'a> {
    pub processes: Vec<ProcessVerdict<'a>>,
    /// Processes of the run without a log (not judged), with the reason.
    pub untraced: Vec<crate::analysis::lineage::Untraced>,
    /// Every suppression, in matching order.
    pub suppressions: Vec<&'a Suppression>,
    /// Parallel to `suppressions`.
    pub usage: Vec<Usage>,
    pub rules: Rules,
    pub baseline: Option<&'a Baseline>,
}

impl Verdict<'_> {
    /// No judged process broke a rule.
    pub fn passed(&self) -> bool {
        self.processes.iter().all(ProcessVerdict::passed)
    }

    /// Judged processes.
    pub fn judged(&self) -> usize {
        self.processes
            .iter()
            .filter(|p| p.skipped.is_none())
            .count()
    }
}

/// What the gate is given besides the reports.
#[derive(Clone, Copy, Debug)]
pub struct Gate<'a> {
    pub rules: &'a Rules,
    pub suppressions: &'a [SuppressionFile],
    pub baseline: Option<&'a Baseline>,
    /// Globs on the executable: only matching processes are judged (empty: all).
    pub select: &'a [String],
}

/// Judges the processes of one run (see the module docs).
pub fn evaluate<'a>(reports: &'a [Report], gate: &Gate<'a>) -> Verdict<'a> {
    let suppressions: Vec<&Suppression> = gate
        .suppressions
        .iter()
        .flat_map(|f| f.entries.iter())
        .collect();
    let mut usage = vec![Usage::default(); suppressions.len()];
    // Allowances left per stack key.
    let mut allowance: HashMap<&str, (u64, u64)> = gate
        .baseline
        .map(|b| {
            b.stacks
                .iter()
                .map(|(k, &(bytes, count))| {
                    let bytes = bytes.saturating_add(gate.rules.tolerance.allowance(bytes));
                    (k.as_str(), (bytes, count))
                })
                .collect()
        })
        .unwrap_or_default();
    let (max_bytes, max_blocks) = gate.rules.leak_limits();
    let mut processes = Vec::with_capacity(reports.len());
    for r in reports {
        let mut v = ProcessVerdict {
            report: r,
            skipped: skip(r, gate.select),
            leaks: Vec::new(),
            counted_bytes: 0,
            counted_blocks: 0,
            not_counted: [(0, 0); 4],
            baseline_peak: gate
                .baseline
                .and_then(|b| b.peaks.get(&program_name(&r.process.exe)).copied()),
            failures: Vec::new(),
            notes: Vec::new(),
        };
        if v.skipped.is_some() {
            processes.push(v);
            continue;
        }
        let counted_kinds = gate.rules.counted_kinds();
        let mut leaks: Vec<Leak> = Vec::new();
        // Suppressions whose stack matched leaks that were not classified,
        // but whose kinds do not cover every kind: bytes, blocks.
        let mut unchecked: HashMap<usize, (u64, u64)> = HashMap::new();
        let mut unclassified = false;
        for s in merged(&r.heap_leaks) {
            // Which suppressions match the stack, computed when first needed.
            let mut stack_matches: Vec<Option<bool>> = vec![None; suppressions.len()];
            let mut first = |kind: Option<Kind>| {
                (0..suppressions.len()).find(|&i| {
                    suppressions[i].covers(kind)
                        && *stack_matches[i]
                            .get_or_insert_with(|| suppressions[i].matches(&s.stack, s.func))
                })
            };
            let Some(k) = s.kinds else {
                unclassified = true;
                let status = first(None).map_or(Status::Counted, Status::Suppressed);
                if status == Status::Counted
                    && let Some(i) = suppressions
                        .iter()
                        .position(|x| x.matches(&s.stack, s.func))
                {
                    let e = unchecked.entry(i).or_default();
                    e.0 = e.0.saturating_add(s.bytes);
                    e.1 = e.1.saturating_add(s.count);
                }
                leaks.push(Leak {
                    kind: "heap",
                    site: s,
                    status,
                    new_bytes: 0,
                    new_count: 0,
                });
                continue;
            };
            // Each kind's blocks go to the first suppression for that kind.
            let mut parts: Vec<(Status, Kinds)> = Vec::new();
            for kind in Kind::ALL {
                let (b, n) = k[kind.index()];
                if b == 0 && n == 0 {
                    continue;
                }
                if !counted_kinds.contains(&kind) {
                    let e = &mut v.not_counted[kind.index()];
                    e.0 = e.0.saturating_add(b);
                    e.1 = e.1.saturating_add(n);
                    continue;
                }
                let status = first(Some(kind)).map_or(Status::Counted, Status::Suppressed);
                let i = match parts.iter().position(|p| p.0 == status) {
                    Some(i) => i,
                    None => {
                        parts.push((status, [(0, 0); 4]));
                        parts.len() - 1
                    }
                };
                parts[i].1[kind.index()] = (b, n);
            }
            for (status, kinds) in parts {
                let (bytes, count) = kinds.iter().fold((0u64, 0u64), |(b, n), (kb, kn)| {
                    (b.saturating_add(*kb), n.saturating_add(*kn))
                });
                leaks.push(Leak {
                    kind: "heap",
                    site: Site {
                        bytes,
                        count,
                        kinds: Some(kinds),
                        // The heuristics' blocks are the still reachable ones.
                        heuristics: if kinds[Kind::StillReachable.index()] == (0, 0) {
                            Default::default()
                        } else {
                            s.heuristics
                        },
                        ..s.clone()
                    },
                    status,
                    new_bytes: 0,
                    new_count: 0,
                });
            }
        }
        if unclassified {
            v.notes.push(
                "its heap leaks were not classified by reachability (the log of `memtrace run \
                 --no-reachability` or of a plain LD_PRELOAD run, or the scan failed): every \
                 unfreed block counts, whatever --leak-kinds says"
                    .into(),
            );
        }
        let mut unchecked: Vec<(usize, (u64, u64))> = unchecked.into_iter().collect();
        unchecked.sort_unstable();
        for (i, (bytes, count)) in unchecked {
            let supp = suppressions[i];
            v.notes.push(format!(
                "suppression {} ({}:{}) matches the stacks of {} in {} that were not \
                 classified by reachability, but applies only to {} blocks \
                 (match-leak-kinds: {}): they count",
                supp.name,
                supp.file.display(),
                supp.line,
                crate::units::plural(bytes, "byte", "bytes"),
                crate::units::plural(count, "block", "blocks"),
                Kind::phrase(supp.kinds(), "or"),
                supp.leak_kinds().join(",")
            ));
        }
        if gate.rules.mmap_leaks {
            for site in merged(&r.mmap_leaks) {
                let status = suppressions
                    .iter()
                    .position(|s| s.matches(&site.stack, None))
                    .map_or(Status::Counted, Status::Suppressed);
                leaks.push(Leak {
                    kind: "mmap",
                    site,
                    status,
                    new_bytes: 0,
                    new_count: 0,
                });
            }
        }
        // Byte limits of suppressions, within this process.
        let mut matched: HashMap<usize, u64> = HashMap::new();
        for l in &leaks {
            if let Status::Suppressed(i) = l.status {
                *matched.entry(i).or_default() += l.site.bytes;
            }
        }
        for (&i, &bytes) in &matched {
            if let Some(limit) = suppressions[i].limit
                && bytes > limit
            {
                usage[i].over_limit += 1;
                v.notes.push(format!(
                    "suppression {} ({}:{}) matched {} bytes, over its max of {}: those leaks count",
                    suppressions[i].name,
                    suppressions[i].file.display(),
                    suppressions[i].line,
                    crate::units::thousands(bytes),
                    crate::units::thousands(limit)
                ));
                for l in leaks.iter_mut() {
                    if l.status == Status::Suppressed(i) {
                        l.status = Status::Counted;
                    }
                }
            }
        }
        for l in leaks.iter_mut() {
            match l.status {
                Status::Suppressed(i) => {
                    let u = &mut usage[i];
                    u.stacks += 1;
                    u.blocks = u.blocks.saturating_add(l.site.count);
                    u.bytes = u.bytes.saturating_add(l.site.bytes);
                }
                Status::Counted => {
                    let (mut bytes, mut count) = (l.site.bytes, l.site.count);
                    if gate.baseline.is_some()
                        && let Some(left) = allowance.get_mut(site_key(l.kind, &l.site).as_str())
                    {
                        let take = bytes.min(left.0);
                        left.0 -= take;
                        bytes -= take;
                        let take = count.min(left.1);
                        left.1 -= take;
                        count -= take;
                        if bytes == 0 {
                            l.status = Status::Baseline;
                            count = 0;
                        }
                    }
                    l.new_bytes = bytes;
                    l.new_count = count;
                    v.counted_bytes = v.counted_bytes.saturating_add(bytes);
                    v.counted_blocks = v.counted_blocks.saturating_add(count);
                }
                Status::Baseline => {}
            }
        }
        leaks.sort_by(|a, b| {
            (b.new_bytes, b.site.bytes)
                .cmp(&(a.new_bytes, a.site.bytes))
                .then(a.kind.cmp(b.kind))
        });
        v.leaks = leaks;
        judge(&mut v, gate.rules, max_bytes, max_blocks);
        processes.push(v);
    }
    let lineage: Vec<crate::analysis::lineage::Proc> =
        reports.iter().map(|r| r.process.lineage.clone()).collect();
    Verdict {
        processes,
        untraced: crate::analysis::lineage::untraced(&lineage),
        suppressions,
        usage,
        rules: gate.rules.clone(),
        baseline: gate.baseline,
    }
}

/// Sites merged by their stack ([`crate::frames::merge_key`]), largest first.
fn merged(sites: &[Site]) -> Vec<Site> {
    let mut index: HashMap<Vec<crate::frames::FrameKey>, usize> = HashMap::new();
    let mut out: Vec<Site> = Vec::with_capacity(sites.len());
    for s in sites {
        // Unrecorded stacks are never merged: nothing says they are the same.
        let key = crate::frames::merge_key(&s.stack);
        match key.as_ref().and_then(|k| index.get(k)) {
            Some(&i) => {
                out[i].bytes = out[i].bytes.saturating_add(s.bytes);
                out[i].count = out[i].count.saturating_add(s.count);
                match (&mut out[i].kinds, s.kinds) {
                    (Some(a), Some(b)) => {
                        for (x, y) in a.iter_mut().zip(b) {
                            x.0 = x.0.saturating_add(y.0);
                            x.1 = x.1.saturating_add(y.1);
                        }
                    }
                    // Part classified, part not: not classified.
                    (k, _) => *k = None,
                }
            }
            None => {
                if let Some(key) = key {
                    index.insert(key, out.len());
                }
                out.push(s.clone());
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    out
}

fn skip(r: &Report, select: &[String]) -> Option<Skip> {
    if !select.is_empty() {
        let exe = r.process.exe.as_str();
        let hit = select.iter().any(|g| {
            crate::gate::suppress::glob(g, exe) || crate::gate::suppress::glob(g, file_name(exe))
        });
        if !hit {
            return Some(Skip::NotSelected);
        }
    }
    if r.summary.malloc_not_interposed {
        return Some(Skip::NotTraced);
    }
    match r.process.ended {
        Ended::Exec => Some(Skip::Exec),
        Ended::Abnormal | Ended::Snapshot | Ended::Running => Some(Skip::Abnormal),
        Ended::Exit | Ended::UnderscoreExit => None,
    }
}

/// The name of a leak's stack in messages ([`crate::frames::name`]).
pub fn where_(s: &Site) -> String {
    crate::frames::name(&s.stack)
}

fn judge(v: &mut ProcessVerdict, rules: &Rules, max_bytes: Option<u64>, max_blocks: Option<u64>) {
    use crate::units::thousands as t;
    let base = if v.baseline_peak.is_some() || v.leaks.iter().any(|l| l.status == Status::Baseline)
    {
        " beyond the baseline"
    } else {
        ""
    };
    if let Some(max) = max_bytes
        && v.counted_bytes > max
    {
        v.failures.push(Failure {
            rule: "max-leaked-bytes",
            message: format!(
                "{} bytes in {} {} leaked{base} (max {})",
                t(v.counted_bytes),
                t(v.counted_blocks),
                blocks(v.counted_blocks),
                t(max)
            ),
        });
    }
    if let Some(max) = max_blocks
        && v.counted_blocks > max
    {
        v.failures.push(Failure {
            rule: "max-leaked-blocks",
            message: format!(
                "{} {} leaked{base} (max {})",
                t(v.counted_blocks),
                blocks(v.counted_blocks),
                t(max)
            ),
        });
    }
    let counted = || v.leaks.iter().filter(|l| l.status == Status::Counted);
    if let Some(max) = rules.max_stack_leaked_bytes {
        let over: Vec<&Leak> = counted().filter(|l| l.new_bytes > max).collect();
        if let Some(first) = over.first() {
            v.failures.push(Failure {
                rule: "max-stack-leaked-bytes",
                message: format!(
                    "{} stack(s) leaked more than {} bytes{base}, the largest {} bytes in {}",
                    over.len(),
                    t(max),
                    t(first.new_bytes),
                    where_(&first.site)
                ),
            });
        }
    }
    if let Some(max) = rules.max_stack_leaked_blocks {
        let over: Vec<&Leak> = counted().filter(|l| l.new_count > max).collect();
        if let Some(most) = over.iter().max_by_key(|l| l.new_count) {
            v.failures.push(Failure {
                rule: "max-stack-leaked-blocks",
                message: format!(
                    "{} stack(s) leaked more than {} blocks{base}, the most {} blocks in {}",
                    over.len(),
                    t(max),
                    t(most.new_count),
                    where_(&most.site)
                ),
            });
        }
    }
    let peak = v.report.summary.peak_heap_bytes;
    if let Some(max) = rules.max_peak
        && peak > max
    {
        v.failures.push(Failure {
            rule: "max-peak",
            message: format!("peak heap {} bytes (max {})", t(peak), t(max)),
        });
    }
    if let Some(old) = v.baseline_peak {
        let limit = old.saturating_add(rules.peak_tolerance.allowance(old));
        if peak > limit {
            v.failures.push(Failure {
                rule: "peak-tolerance",
                message: format!(
                    "peak heap grew from {} to {} bytes, over the baseline's tolerance of {}",
                    t(old),
                    t(peak),
                    rules.peak_tolerance
                ),
            });
        }
    }
}

/// "block" or "blocks", for `n` of them.
fn blocks(n: u64) -> &'static str {
    if n == 1 { "block" } else { "blocks" }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frames::Frame;
    use crate::report::{Process, Summary};

    fn frame(function: &str) -> Frame {
        Frame {
            function: Some(function.into()),
            mangled: None,
            file: Some(format!("/src/{function}.c")),
            line: Some(1),
            module: Some("/bin/app".into()),
            address: 0x1000,
            inlined: false,
        }
    }

    pub(crate) fn site(bytes: u64, count: u64, funcs: &[&str]) -> Site {
        Site {
            bytes,
            count,
            func: Some(memtrace_format::Func::Malloc),
            kinds: None,
            heuristics: Default::default(),
            stack: funcs.iter().map(|f| frame(f)).collect::<Vec<_>>().into(),
        }
    }

    pub(crate) fn report(
        exe: &str,
        ended: Ended,
        peak: u64,
        heap: Vec<Site>,
        mmap: Vec<Site>,
    ) -> Report {
        Report {
            path: "x.mtr".into(),
            format_version: 1,
            process: Process {
                lineage: Default::default(),
                pid: 10,
                ppid: 1,
                exe: exe.into(),
                cmdline: vec![exe.into()],
                forked_from: None,
                ended,
                exit_status: Some(0),
                signal: None,
                exec: None,
                forks: vec![],
                duration_ms: 1.0,
            },
            summary: Summary {
                peak_heap_bytes: peak,
                leaked_heap_bytes: heap.iter().map(|s| s.bytes).sum(),
                leaked_heap_blocks: heap.iter().map(|s| s.count).sum(),
                ..Summary::default()
            },
            heap_leak_stacks: heap.len() as u64,
            heap_leaks: heap,
            mmap_leak_stacks: mmap.len() as u64,
            mmap_leaks: mmap,
            peak: vec![],
            allocated: vec![],
            temporary: vec![],
            timeline: vec![],
            kernel: None,
            brk: vec![],
            live_filter: None,
            warnings: vec![],
        }
    }

    pub(crate) fn supp(text: &str) -> SuppressionFile {
        crate::gate::suppress::parse(text, Path::new("t.supp")).unwrap()
    }

    fn run<'a>(reports: &'a [Report], gate: &Gate<'a>) -> Verdict<'a> {
        evaluate(reports, gate)
    }

    const NONE: Gate<'static> = Gate {
        rules: &Rules {
            max_leaked_bytes: None,
            max_leaked_blocks: None,
            max_stack_leaked_bytes: None,
            max_stack_leaked_blocks: None,
            mmap_leaks: false,
            max_peak: None,
            tolerance: Tolerance::Bytes(0),
            peak_tolerance: Tolerance::Bytes(0),
            leak_kinds: None,
        },
        suppressions: &[],
        baseline: None,
        select: &[],
    };

    /// Sizes and tolerances parse; a percentage scales the base.
    #[test]
    fn parse_sizes_and_tolerances() {
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size(" 2 MiB"), Ok(2 << 20));
        assert!(parse_size("1x").is_err() && parse_size("").is_err());
        assert_eq!(Tolerance::parse("10%"), Ok(Tolerance::Percent(10.0)));
        assert_eq!(Tolerance::parse("1k"), Ok(Tolerance::Bytes(1024)));
        assert!(Tolerance::parse("-5%").is_err());
        assert_eq!(Tolerance::Percent(10.0).allowance(1000), 100);
        assert_eq!(Tolerance::Bytes(7).allowance(1000), 7);
    }

    /// Program names drop cargo's hash; stack keys use names, not addresses.
    #[test]
    fn names_and_keys() {
        assert_eq!(
            program_name("/t/target/debug/deps/mylib-0123456789abcdef"),
            "mylib"
        );
        assert_eq!(program_name("/usr/bin/foo-bar"), "foo-bar");
        let s = site(8, 1, &["leak", "main"]);
        assert_eq!(site_key("heap", &s), "heap|leak;main");
        let k = stack_key(
            "mmap",
            [(None, Some("/lib/libc.so.6")), (None, None)].into_iter(),
        );
        assert_eq!(k, "mmap|libc.so.6;?");
    }

    /// With no rule given, any leak fails; an exact limit passes at the limit.
    #[test]
    fn default_and_total_limits() {
        let reports = [report(
            "/bin/a",
            Ended::Exit,
            100,
            vec![site(10, 2, &["f"])],
            vec![],
        )];
        let v = run(&reports, &NONE);
        assert!(!v.passed());
        assert_eq!(v.processes[0].failures[0].rule, "max-leaked-bytes");
        assert_eq!(v.processes[0].counted_bytes, 10);

        let rules = Rules {
            max_leaked_bytes: Some(10),
            ..Rules::default()
        };
        assert!(
            run(
                &reports,
                &Gate {
                    rules: &rules,
                    ..NONE
                }
            )
            .passed()
        );
        let rules = Rules {
            max_leaked_blocks: Some(1),
            ..Rules::default()
        };
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            },
        );
        assert_eq!(
            v.processes[0].failures.len(),
            1,
            "only blocks: bytes unlimited"
        );
        assert_eq!(v.processes[0].failures[0].rule, "max-leaked-blocks");
    }

    /// Per-stack limits name the offending stack.
    #[test]
    fn per_stack_limits() {
        let reports = [report(
            "/bin/a",
            Ended::Exit,
            0,
            vec![site(100, 1, &["big"]), site(10, 5, &["many"])],
            vec![],
        )];
        let rules = Rules {
            max_stack_leaked_bytes: Some(50),
            max_stack_leaked_blocks: Some(4),
            ..Rules::default()
        };
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            },
        );
        let f = &v.processes[0].failures;
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].message.contains("big") && f[0].rule == "max-stack-leaked-bytes");
        assert!(f[1].message.contains("many") && f[1].rule == "max-stack-leaked-blocks");
    }

    /// mmap leaks count only when asked; the peak rule is absolute.
    #[test]
    fn mmap_and_peak() {
        let reports = [report(
            "/bin/a",
            Ended::Exit,
            5000,
            vec![],
            vec![site(4096, 1, &["map"])],
        )];
        assert!(run(&reports, &NONE).passed());
        let rules = Rules {
            mmap_leaks: true,
            ..Rules::default()
        };
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            },
        );
        assert!(!v.passed() && v.processes[0].leaks[0].kind == "mmap");
        let rules = Rules {
            max_peak: Some(4999),
            ..Rules::default()
        };
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                ..NONE
            },
        );
        assert_eq!(v.processes[0].failures[0].rule, "max-peak");
    }

    /// Exec'd, killed and unselected processes are skipped, not judged.
    #[test]
    fn skipped_processes() {
        let leak = || vec![site(10, 1, &["f"])];
        let reports = [
            report("/bin/sh", Ended::Exec, 0, leak(), vec![]),
            report("/bin/a", Ended::Abnormal, 0, leak(), vec![]),
            report("/bin/b", Ended::Exit, 0, leak(), vec![]),
        ];
        let v = run(&reports, &NONE);
        assert_eq!(v.processes[0].skipped, Some(Skip::Exec));
        assert_eq!(v.processes[1].skipped, Some(Skip::Abnormal));
        assert!(!v.processes[2].passed());
        let select = ["*/a".to_owned()];
        let v = run(
            &reports,
            &Gate {
                select: &select,
                ..NONE
            },
        );
        assert_eq!(v.processes[2].skipped, Some(Skip::NotSelected));
        assert!(v.passed());
    }

    /// Suppressions take leaks out and count what they matched; one over its
    /// byte limit suppresses nothing in that process.
    #[test]
    fn suppressions_and_limits() {
        let reports = [report(
            "/bin/a",
            Ended::Exit,
            0,
            vec![
                site(100, 1, &["cache", "main"]),
                site(10, 1, &["init", "main"]),
            ],
            vec![],
        )];
        let files = [supp(
            "suppress cache fun:cache\nsuppress init fun:init max:8\n",
        )];
        let v = run(
            &reports,
            &Gate {
                suppressions: &files,
                ..NONE
            },
        );
        assert_eq!(
            v.usage[0],
            Usage {
                stacks: 1,
                blocks: 1,
                bytes: 100,
                over_limit: 0
            }
        );
        assert_eq!(v.usage[1].over_limit, 1);
        assert_eq!(v.processes[0].counted_bytes, 10);
        assert!(
            v.processes[0]
                .notes
                .iter()
                .any(|n| n.contains("over its max")),
            "{:?}",
            v.processes[0].notes
        );
        let files = [supp(
            "suppress cache fun:cache\nsuppress init fun:init max:10\n",
        )];
        assert!(
            run(
                &reports,
                &Gate {
                    suppressions: &files,
                    ..NONE
                }
            )
            .passed()
        );
    }

    /// A baseline allows its leaks (with tolerance) and its peak; growth fails.
    #[test]
    fn baseline_pass_and_fail() {
        let old = [report(
            "/bin/a",
            Ended::Exit,
            1000,
            vec![site(100, 1, &["known"])],
            vec![],
        )];
        let base = Baseline::from_reports(&old, Path::new("old.mtr"), &DEFAULT_LEAK_KINDS);
        let same = [report(
            "/bin/a",
            Ended::Exit,
            1000,
            vec![site(100, 1, &["known"])],
            vec![],
        )];
        let gate = Gate {
            baseline: Some(&base),
            ..NONE
        };
        let v = run(&same, &gate);
        assert!(v.passed(), "{:?}", v.processes[0].failures);
        assert_eq!(v.processes[0].leaks[0].status, Status::Baseline);

        let grown = [report(
            "/bin/a",
            Ended::Exit,
            1200,
            vec![site(150, 2, &["known"]), site(8, 1, &["new"])],
            vec![],
        )];
        let v = run(&grown, &gate);
        let p = &v.processes[0];
        assert_eq!((p.counted_bytes, p.counted_blocks), (58, 2));
        assert_eq!(p.failures.len(), 2, "{:?}", p.failures);
        assert_eq!(p.failures[1].rule, "peak-tolerance");

        let rules = Rules {
            tolerance: Tolerance::Percent(50.0),
            peak_tolerance: Tolerance::Percent(20.0),
            max_leaked_bytes: Some(8),
            ..Rules::default()
        };
        let v = run(
            &grown,
            &Gate {
                rules: &rules,
                ..gate
            },
        );
        assert!(v.passed(), "{:?}", v.processes[0].failures);
    }

    /// The JSON baseline reads both check's and report's documents.
    #[test]
    fn baseline_from_json() {
        let check = serde_json::json!({"processes": [{"exe": "/bin/a-0123456789abcdef",
            "peak_heap_bytes": 77, "leaks": [{"kind": "heap", "bytes": 5, "count": 1,
            "stack": [{"function": "f", "module": "/bin/a"}, {"function": null, "module": null}]}]}]});
        let b = Baseline::from_json(&check, Path::new("b.json"), &DEFAULT_LEAK_KINDS).unwrap();
        assert_eq!(b.stacks["heap|f;?"], (5, 1));
        assert_eq!(b.peaks["a"], 77);
        let report = serde_json::json!({"process": {"exe": "/bin/a"}, "summary":
            {"peak_heap_bytes": 9}, "leaks": []});
        let b = Baseline::from_json(&report, Path::new("r.json"), &DEFAULT_LEAK_KINDS).unwrap();
        assert_eq!(b.peaks["a"], 9);
        assert!(
            Baseline::from_json(
                &serde_json::json!({"x": 1}),
                Path::new("x"),
                &DEFAULT_LEAK_KINDS
            )
            .is_err()
        );
        let bad = serde_json::json!({"leaks": [{"kind": "heap"}]});
        assert!(
            Baseline::from_json(&bad, Path::new("x"), &DEFAULT_LEAK_KINDS)
                .unwrap_err()
                .contains("leak 0")
        );
    }

    /// A site classified as `[definite, indirect, possible, reachable]`.
    pub(crate) fn classified(funcs: &[&str], k: Kinds) -> Site {
        let (bytes, count) = k.iter().fold((0, 0), |(b, n), (kb, kn)| (b + kb, n + kn));
        Site {
            kinds: Some(k),
            ..site(bytes, count, funcs)
        }
    }

    /// reach.c's leaks, one site per allocating function, as memtrace
    /// classifies them.
    pub(crate) fn reach_report() -> Report {
        let mut r = report(
            "/bin/reach",
            Ended::Exit,
            0,
            vec![
                classified(&["lost_list", "main"], [(32, 1), (96, 3), (0, 0), (0, 0)]),
                classified(&["plain_lost", "main"], [(48, 1), (0, 0), (0, 0), (0, 0)]),
                classified(
                    &["kept_by_global", "main"],
                    [(0, 0), (0, 0), (0, 0), (64, 1)],
                ),
                classified(&["kept_child", "main"], [(0, 0), (0, 0), (0, 0), (16, 1)]),
                classified(
                    &["kept_by_interior", "main"],
                    [(0, 0), (0, 0), (128, 1), (0, 0)],
                ),
            ],
            vec![],
        );
        r.summary.leak_kinds = Some([(80, 2), (96, 3), (128, 1), (80, 2)]);
        r
    }

    fn with_kinds(kinds: &[Kind]) -> Rules {
        Rules {
            leak_kinds: Some(kinds.to_vec()),
            ..Rules::default()
        }
    }

    /// By default only definitely and indirectly lost blocks count (valgrind's
    /// default); the other kinds are said not to count; `--leak-kinds` chooses.
    #[test]
    fn default_leak_kinds_are_definite_and_indirect() {
        use Kind::*;
        assert_eq!(DEFAULT_LEAK_KINDS, [DefinitelyLost, IndirectlyLost]);
        assert_eq!(Rules::default().counted_kinds(), DEFAULT_LEAK_KINDS);
        let reports = [reach_report()];
        let v = run(&reports, &NONE);
        let p = &v.processes[0];
        assert!(!p.passed());
        assert_eq!((p.counted_bytes, p.counted_blocks), (176, 5));
        assert_eq!(p.not_counted, [(0, 0), (0, 0), (128, 1), (80, 2)]);
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // Each leak keeps only its counted kinds.
        let list = &p.leaks[0];
        assert_eq!((list.site.bytes, list.site.count), (128, 4));
        assert_eq!(list.site.kinds, Some([(32, 1), (96, 3), (0, 0), (0, 0)]));
        assert_eq!(
            p.leaks.len(),
            2,
            "reachable and possible sites are not listed"
        );

        for (kinds, bytes, blocks) in [
            (&Kind::ALL[..], 384, 8),
            (&[StillReachable][..], 80, 2),
            (&[PossiblyLost][..], 128, 1),
            (&[DefinitelyLost][..], 80, 2),
            (&[][..], 0, 0),
        ] {
            let rules = with_kinds(kinds);
            let v = run(
                &reports,
                &Gate {
                    rules: &rules,
                    ..NONE
                },
            );
            let p = &v.processes[0];
            assert_eq!(
                (p.counted_bytes, p.counted_blocks),
                (bytes, blocks),
                "{kinds:?}"
            );
            assert_eq!(p.passed(), bytes == 0, "{kinds:?}");
        }

        // Only still reachable blocks left: passes by default.
        let cache = [report(
            "/bin/a",
            Ended::Exit,
            0,
            vec![classified(
                &["cache", "main"],
                [(0, 0), (0, 0), (0, 0), (64, 1)],
            )],
            vec![],
        )];
        let v = run(&cache, &NONE);
        assert!(v.passed());
        assert_eq!(v.processes[0].not_counted[StillReachable.index()], (64, 1));
    }

    /// Leaks that were not classified count whole under any kinds, and say so.
    #[test]
    fn unclassified_leaks_count_whole() {
        let reports = [report(
            "/bin/a",
            Ended::Exit,
            0,
            vec![site(10, 2, &["f"])],
            vec![],
        )];
        for kinds in [&[Kind::StillReachable][..], &[][..]] {
            let rules = with_kinds(kinds);
            let v = run(
                &reports,
                &Gate {
                    rules: &rules,
                    ..NONE
                },
            );
            let p = &v.processes[0];
            assert_eq!((p.counted_bytes, p.counted_blocks), (10, 2));
            assert!(
                p.notes[0].contains("not classified by reachability"),
                "{:?}",
                p.notes
            );
        }
    }

    /// valgrind's `match-leak-kinds:` suppresses a site kind by kind: the
    /// other kinds of the site still count; usage counts what was suppressed.
    #[test]
    fn suppressions_apply_per_kind() {
        let reports = [reach_report()];
        let files = [supp(
            "{\n n\n Memcheck:Leak\n match-leak-kinds: definite\n fun:malloc\n fun:lost_list\n}\n\
             {\n r\n Memcheck:Leak\n match-leak-kinds: reachable,possible\n fun:malloc\n ...\n fun:main\n}\n\
             {\n p\n Memcheck:Leak\n match-leak-kinds: reachable\n fun:malloc\n fun:plain_lost\n}\n",
        )];
        let rules = with_kinds(&Kind::ALL);
        let v = run(
            &reports,
            &Gate {
                rules: &rules,
                suppressions: &files,
                ..NONE
            },
        );
        let p = &v.processes[0];
        // lost_list's indirect blocks and plain_lost's block count.
        assert_eq!((p.counted_bytes, p.counted_blocks), (144, 4));
        let list: Vec<(Status, u64, u64)> = p
            .leaks
            .iter()
            .filter(|l| where_(&l.site) == "lost_list")
            .map(|l| (l.status, l.site.bytes, l.site.count))
            .collect();
        assert_eq!(
            list,
            [(Status::Counted, 96, 3), (Status::Suppressed(0), 32, 1)]
        );
        let usage = |i: usize| (v.usage[i].stacks, v.usage[i].blocks, v.usage[i].bytes);
        assert_eq!(usage(0), (1, 1, 32));
        assert_eq!(usage(1), (3, 3, 208));
        assert_eq!(usage(2), (0, 0, 0));

        // By default, only the definite blocks are there to suppress.
        let v = run(
            &reports,
            &Gate {
                suppressions: &files,
                ..NONE
            },
        );
        assert_eq!(
            (v.processes[0].counted_bytes, v.processes[0].counted_blocks),
            (144, 4)
        );
        assert_eq!(v.usage[0].bytes, 32);
        assert_eq!(v.usage[1].bytes, 0);
    }

    /// A leak that was not classified is suppressed only by an entry for every
    /// kind; an entry for some kinds that matches its stack is named in a note.
    #[test]
    fn unclassified_leaks_and_leak_kinds_suppressions() {
        let reports = [report(
            "/bin/a",
            Ended::Exit,
            0,
            vec![site(10, 2, &["f", "main"])],
            vec![],
        )];
        let entry = |kinds: &str| {
            format!(
                "{{\n {kinds}\n Memcheck:Leak\n match-leak-kinds: {kinds}\n fun:malloc\n fun:f\n}}\n"
            )
        };
        let files = [supp(&(entry("definite") + &entry("definite,indirect")))];
        let v = run(
            &reports,
            &Gate {
                suppressions: &files,
                ..NONE
            },
        );
        let p = &v.processes[0];
        assert_eq!(p.leaks[0].status, Status::Counted);
        assert_eq!(p.counted_bytes, 10);
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("suppression definite (t.supp:1)")
                    && n.contains("10 bytes in 2 blocks")
                    && n.contains("applies only to definitely lost blocks")),
            "{:?}",
            p.notes
        );
        for kinds in ["all", "definite,indirect,possible,reachable"] {
            let files = [supp(&entry(kinds))];
            let v = run(
                &reports,
                &Gate {
                    suppressions: &files,
                    ..NONE
                },
            );
            assert!(v.passed(), "{kinds}");
            assert_eq!(v.processes[0].leaks[0].status, Status::Suppressed(0));
        }
        let files = [supp("{\n n\n Memcheck:Leak\n fun:malloc\n fun:f\n}\n")];
        let v = run(
            &reports,
            &Gate {
                suppressions: &files,
                ..NONE
            },
        );
        assert!(v.passed(), "no match-leak-kinds: every kind");
    }

    /// A baseline counts only the kinds that count: a log's reachable blocks
    /// allow nothing; a JSON leak's `reachability` is read the same way.
    #[test]
    fn baseline_of_the_counted_kinds() {
        let old = [reach_report()];
        let base = Baseline::from_reports(&old, Path::new("old.mtr"), &DEFAULT_LEAK_KINDS);
        assert_eq!(base.stacks["heap|lost_list;main"], (128, 4));
        assert_eq!(base.stacks["heap|plain_lost;main"], (48, 1));
        assert!(!base.stacks.contains_key("heap|kept_by_global;main"));
        let all = Baseline::from_reports(&old, Path::new("old.mtr"), &Kind::ALL);
        assert_eq!(all.stacks["heap|kept_by_global;main"], (64, 1));

        let doc = serde_json::json!({"leaks": [{"kind": "heap", "bytes": 200, "count": 2,
            "reachability": {"definite": {"bytes": 100, "count": 1},
                "indirect": {"bytes": 0, "count": 0}, "possible": {"bytes": 0, "count": 0},
                "reachable": {"bytes": 100, "count": 1}},
            "stack": [{"function": "f", "module": "/bin/a"}]},
            {"kind": "heap", "bytes": 64, "count": 1,
            "reachability": {"reachable": {"bytes": 64, "count": 1}},
            "stack": [{"function": "g", "module": "/bin/a"}]}]});
        let b = Baseline::from_json(&doc, Path::new("r.json"), &DEFAULT_LEAK_KINDS).unwrap();
        assert_eq!(b.stacks["heap|f"], (100, 1));
        assert!(!b.stacks.contains_key("heap|g"));
        let b = Baseline::from_json(&doc, Path::new("r.json"), &Kind::ALL).unwrap();
        assert_eq!(b.stacks["heap|f"], (200, 2));
        assert_eq!(b.stacks["heap|g"], (64, 1));
    }
}
