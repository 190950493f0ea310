//! The JSON document of `memtrace check`: the rules, every process's
//! verdict with its leaks, the untraced processes and the suppressions'
//! usage. It can serve as a `--baseline` later. Uses `crate::gate` and the
//! report's JSON pieces of `crate::render::json`.

use std::io::{self, Write};

use serde::Serialize;

use crate::gate::{Leak, ProcessVerdict, Rules, Status, Verdict};
use crate::render::json;

#[derive(Serialize)]
struct JCheck<'a> {
    memtrace_version: &'static str,
    passed: bool,
    exit_status: u8,
    command: Option<JCommand<'a>>,
    rules: JRules,
    baseline: Option<String>,
    processes: Vec<JProcess<'a>>,
    /// Processes of the run without a log, with the reason.
    untraced: Vec<JUntraced<'a>>,
    suppressions: Vec<JSuppression>,
}

#[derive(Serialize)]
struct JUntraced<'a> {
    pid: u32,
    parent: u32,
    image: Option<&'a str>,
    reason: &'static str,
    message: &'static str,
}

/// The checked command, when `memtrace check` ran one.
#[derive(Clone, Debug, Serialize)]
pub struct JCommand<'a> {
    pub argv: &'a [String],
    pub exit_status: Option<i32>,
    pub signal: Option<i32>,
}

#[derive(Serialize)]
struct JRules {
    max_leaked_bytes: Option<u64>,
    max_leaked_blocks: Option<u64>,
    max_stack_leaked_bytes: Option<u64>,
    max_stack_leaked_blocks: Option<u64>,
    mmap_leaks: bool,
    max_peak: Option<u64>,
    tolerance: String,
    peak_tolerance: String,
    leak_kinds: Vec<&'static str>,
}

#[derive(Serialize)]
struct JFailure<'a> {
    rule: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct JLeak<'a> {
    kind: &'static str,
    bytes: u64,
    count: u64,
    status: &'static str,
    suppressed_by: Option<&'a str>,
    new_bytes: u64,
    new_count: u64,
    /// The bytes and blocks of each kind in `bytes` and `count`, when classified.
    reachability: Option<serde_json::Value>,
    stack: Vec<json::JFrame<'a>>,
}

#[derive(Serialize)]
struct JProcess<'a> {
    pid: u32,
    ppid: u32,
    exe: &'a str,
    cmdline: &'a [String],
    log: String,
    ended: &'static str,
    exit_status: Option<i32>,
    signal: Option<i32>,
    judged: bool,
    skipped: Option<String>,
    passed: bool,
    leaked_heap_bytes: u64,
    leaked_heap_blocks: u64,
    leaked_mmap_bytes: u64,
    leaked_mmap_regions: u64,
    peak_heap_bytes: u64,
    baseline_peak_heap_bytes: Option<u64>,
    counted_bytes: u64,
    counted_blocks: u64,
    /// The report's leaked bytes and blocks by kind, when classified.
    leak_kinds: Option<serde_json::Value>,
    /// Of those, the kinds that did not count (--leak-kinds).
    not_counted: Option<serde_json::Value>,
    estimated: bool,
    failures: Vec<JFailure<'a>>,
    notes: &'a [String],
    leaks: Vec<JLeak<'a>>,
}

#[derive(Serialize)]
struct JSuppression {
    name: String,
    file: String,
    line: usize,
    format: &'static str,
    limit: Option<u64>,
    matched_stacks: u64,
    matched_blocks: u64,
    matched_bytes: u64,
    over_limit: u64,
}

/// The JSON document; `exit_status` is what `memtrace check` exits with.
/// It can serve as a `--baseline` later.
pub fn json(
    v: &Verdict,
    command: Option<JCommand<'_>>,
    exit_status: u8,
    out: &mut dyn Write,
) -> io::Result<()> {
    let doc = JCheck {
        memtrace_version: env!("CARGO_PKG_VERSION"),
        passed: v.passed(),
        exit_status,
        command,
        rules: JRules::of(&v.rules),
        baseline: v.baseline.map(|b| b.source.display().to_string()),
        processes: v.processes.iter().map(|p| JProcess::of(p, v)).collect(),
        untraced: v
            .untraced
            .iter()
            .map(|u| JUntraced {
                pid: u.pid,
                parent: u.parent,
                image: u.image.as_deref(),
                reason: u.reason.name(),
                message: u.reason.text(),
            })
            .collect(),
        suppressions: v
            .suppressions
            .iter()
            .zip(&v.usage)
            .map(|(s, u)| JSuppression {
                name: s.name.clone(),
                file: s.file.display().to_string(),
                line: s.line,
                format: s.syntax.as_str(),
                limit: s.limit,
                matched_stacks: u.stacks,
                matched_blocks: u.blocks,
                matched_bytes: u.bytes,
                over_limit: u.over_limit,
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}

impl JRules {
    fn of(r: &Rules) -> JRules {
        JRules {
            max_leaked_bytes: r.max_leaked_bytes,
            max_leaked_blocks: r.max_leaked_blocks,
            max_stack_leaked_bytes: r.max_stack_leaked_bytes,
            max_stack_leaked_blocks: r.max_stack_leaked_blocks,
            mmap_leaks: r.mmap_leaks,
            max_peak: r.max_peak,
            tolerance: r.tolerance.to_string(),
            peak_tolerance: r.peak_tolerance.to_string(),
            leak_kinds: r.counted_kinds().iter().map(|k| k.as_str()).collect(),
        }
    }
}

impl<'a> JProcess<'a> {
    fn of(p: &'a ProcessVerdict, v: &'a Verdict) -> JProcess<'a> {
        let rep = p.report;
        let s = &rep.summary;
        JProcess {
            pid: rep.process.pid,
            ppid: rep.process.ppid,
            exe: &rep.process.exe,
            cmdline: &rep.process.cmdline,
            log: rep.path.display().to_string(),
            ended: rep.process.ended.as_str(),
            exit_status: rep.process.exit_status,
            signal: rep.process.signal,
            judged: p.skipped.is_none(),
            skipped: p.skipped.as_ref().map(|k| k.reason(rep)),
            passed: p.passed(),
            leaked_heap_bytes: s.leaked_heap_bytes,
            leaked_heap_blocks: s.leaked_heap_blocks,
            leaked_mmap_bytes: s.leaked_mmap_bytes,
            leaked_mmap_regions: s.leaked_mmap_regions,
            peak_heap_bytes: s.peak_heap_bytes,
            baseline_peak_heap_bytes: p.baseline_peak,
            counted_bytes: p.counted_bytes,
            counted_blocks: p.counted_blocks,
            leak_kinds: s
                .leak_kinds
                .as_ref()
                .map(|k| json::kinds_json(k, Some(&s.leak_heuristics))),
            not_counted: s
                .leak_kinds
                .as_ref()
                .map(|_| json::kinds_json(&p.not_counted, None)),
            estimated: s.sample_interval != 0,
            failures: p
                .failures
                .iter()
                .map(|f| JFailure {
                    rule: f.rule,
                    message: &f.message,
                })
                .collect(),
            notes: &p.notes,
            leaks: p.leaks.iter().map(|l| JLeak::of(l, v)).collect(),
        }
    }
}

impl<'a> JLeak<'a> {
    fn of(l: &'a Leak, v: &'a Verdict) -> JLeak<'a> {
        JLeak {
            kind: l.kind,
            bytes: l.site.bytes,
            count: l.site.count,
            status: match l.status {
                Status::Counted => "counted",
                Status::Suppressed(_) => "suppressed",
                Status::Baseline => "baseline",
            },
            suppressed_by: match l.status {
                Status::Suppressed(i) => Some(v.suppressions[i].name.as_str()),
                _ => None,
            },
            new_bytes: l.new_bytes,
            new_count: l.new_count,
            reachability: l
                .site
                .kinds
                .as_ref()
                .map(|k| json::kinds_json(k, Some(&l.site.heuristics))),
            stack: json::stack(&l.site.stack),
        }
    }
}
