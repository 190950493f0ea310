//! The JSON report. The structs here *are* the schema: field names and
//! nesting are a contract with the tools reading it, so they are spelled out
//! here instead of deriving `Serialize` on the internal types.
//!
//! Addresses are `"0x..."` strings (JSON numbers lose precision past 2^53);
//! stacks are innermost first.

use std::io::{self, Write};

use serde::Serialize;

use crate::analysis::symbolize::Frame;
use crate::report::{BrkSite, LiveFilter, Report, Site, Summary};

#[derive(Serialize)]
struct Json<'a> {
    memtrace_version: &'static str,
    format_version: u32,
    process: JProcess<'a>,
    summary: JSummary<'a>,
    leaks: Vec<JLeak<'a>>,
    peak: Vec<JSite<'a>>,
    allocated: Vec<JSite<'a>>,
    temporary: Vec<JSite<'a>>,
    brk: Vec<JBrk<'a>>,
    timeline: Vec<JPoint>,
    kernel: Option<JKernel<'a>>,
    /// How the leaks were narrowed (`--since`, `--older-than`), if they were.
    live_filter: Option<JFilter<'a>>,
    /// `--histogram`: allocations by requested size, smallest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    histogram: Option<Vec<JBucket>>,
    /// `--filter`: what it kept, and their totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<JFiltered<'a>>,
    /// `--by function`: the heap figures by allocating function.
    #[serde(skip_serializing_if = "Option::is_none")]
    by_function: Option<JByFunction<'a>>,
}

/// One bucket of the size histogram: sizes `min..=max`.
#[derive(Serialize)]
struct JBucket {
    min: u64,
    max: u64,
    allocations: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct JFiltered<'a> {
    pattern: &'a str,
    /// Whether the pattern is a glob over the whole name (else a substring).
    glob: bool,
    stacks: u64,
    stacks_total: u64,
    allocations: u64,
    bytes_allocated: u64,
    temporary_allocations: u64,
    temporary_bytes: u64,
    leaked_heap_bytes: u64,
    leaked_heap_blocks: u64,
    leaked_mmap_bytes: u64,
    leaked_mmap_regions: u64,
    peak_heap_bytes: u64,
    peak_heap_blocks: u64,
}

#[derive(Serialize)]
struct JTotals {
    allocations: u64,
    bytes_allocated: u64,
    temporary_allocations: u64,
    leaked_bytes: u64,
    leaked_blocks: u64,
    peak_bytes: u64,
    peak_blocks: u64,
}

#[derive(Serialize)]
struct JByFunction<'a> {
    /// Distinct allocating functions, before the `--top` limit.
    functions_total: u64,
    functions: Vec<JFunction<'a>>,
}

#[derive(Serialize)]
struct JFunction<'a> {
    /// The function's frame in its largest stack.
    frame: JFrame<'a>,
    #[serde(flatten)]
    totals: JTotals,
    stacks: u64,
    callers_total: u64,
    callers: Vec<JCaller<'a>>,
}

#[derive(Serialize)]
struct JCaller<'a> {
    /// `null`: the function was the stack's outermost frame.
    frame: Option<JFrame<'a>>,
    #[serde(flatten)]
    totals: JTotals,
    stacks: u64,
}

#[derive(Serialize)]
struct JSince {
    path: String,
    t_ms: f64,
    live_bytes: u64,
    live_blocks: u64,
}

#[derive(Serialize)]
struct JFilter<'a> {
    since: Option<JSince>,
    older_than_ms: Option<f64>,
    /// Every live block at the end, before narrowing.
    all_bytes: u64,
    all_blocks: u64,
    growth: Vec<JGrowth<'a>>,
    /// Blocks classified lost at `since` and freed since: missed pointers.
    lost_then_freed: JAmount,
}

#[derive(Serialize)]
struct JAmount {
    bytes: u64,
    count: u64,
}

#[derive(Serialize)]
struct JGrowth<'a> {
    bytes: u64,
    count: u64,
    then_bytes: u64,
    then_count: u64,
    stack: Vec<JFrame<'a>>,
}

#[derive(Serialize)]
struct JPoint {
    t_ms: f64,
    heap: u64,
    mmap: u64,
}

/// Counters by name (`memtrace_format::kernel::COUNTERS`), with the time.
type JCounters = serde_json::Map<String, serde_json::Value>;

#[derive(Serialize)]
struct JMaps {
    t_ms: f64,
    /// Category name -> {size, rss, pss, swap}.
    categories: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct JGap<'a> {
    t_ms: f64,
    live_heap_bytes: u64,
    program_mmap_bytes: u64,
    heap_and_anonymous_rss: u64,
    /// RSS minus what the program asked for (negative: pages never touched).
    difference: i64,
    /// The program's own mappings at that moment, by stack.
    program_mmap_by_stack: Vec<JSite<'a>>,
}

#[derive(Serialize)]
struct JKernel<'a> {
    samples: Vec<JCounters>,
    peak_rss: JCounters,
    maps_at_peak: Option<JMaps>,
    maps_at_end: Option<JMaps>,
    gap: Option<JGap<'a>>,
}

fn counters(t_ms: f64, c: &crate::analysis::kernel::Counters) -> JCounters {
    let mut m = JCounters::new();
    m.insert("t_ms".into(), t_ms.into());
    for (name, v) in memtrace_format::kernel::COUNTERS.iter().zip(c) {
        m.insert((*name).into(), (*v).into());
    }
    m
}

fn maps(t: &(f64, crate::analysis::kernel::MapTable)) -> JMaps {
    let mut categories = serde_json::Map::new();
    for (name, v) in memtrace_format::kernel::CATEGORIES.iter().zip(t.1.iter()) {
        categories.insert(
            (*name).into(),
            serde_json::json!({"size": v[0], "rss": v[1], "pss": v[2], "swap": v[3]}),
        );
    }
    JMaps {
        t_ms: t.0,
        categories,
    }
}

fn kernel(k: &crate::report::KernelReport) -> JKernel<'_> {
    JKernel {
        samples: k.samples.iter().map(|(t, c)| counters(*t, c)).collect(),
        peak_rss: counters(k.peak.0, &k.peak.1),
        maps_at_peak: k.maps_at_peak.as_ref().map(maps),
        maps_at_end: k.maps_at_end.as_ref().map(maps),
        gap: match (&k.maps_at_peak, &k.heap_at_maps_peak) {
            (Some((t, m)), Some(p)) => {
                let held = m[0][1] + m[2][1];
                Some(JGap {
                    t_ms: *t,
                    live_heap_bytes: p.heap,
                    program_mmap_bytes: p.mmap,
                    heap_and_anonymous_rss: held,
                    difference: held as i64 - (p.heap + p.mmap) as i64,
                    program_mmap_by_stack: k.mmap_at_maps_peak.iter().map(site).collect(),
                })
            }
            _ => None,
        },
    }
}

#[derive(Serialize)]
struct JProcess<'a> {
    pid: u32,
    ppid: u32,
    exe: &'a str,
    cmdline: &'a [String],
    forked_from: Option<u32>,
    ended: &'static str,
    exit_status: Option<i32>,
    signal: Option<i32>,
    duration_ms: f64,
}

#[derive(Serialize)]
struct JSummary<'a> {
    allocations: u64,
    frees: u64,
    bytes_allocated: u64,
    temporary_allocations: u64,
    temporary_bytes: u64,
    peak_heap_bytes: u64,
    peak_heap_time_ms: f64,
    leaked_heap_bytes: u64,
    leaked_heap_blocks: u64,
    leaked_mmap_bytes: u64,
    leaked_mmap_regions: u64,
    peak_mmap_bytes: u64,
    mmap_calls: u64,
    munmap_calls: u64,
    brk_growth_bytes: i64,
    events_lost: u64,
    torn_records: u64,
    unknown_frees: u64,
    libc_freeres_frees: u64,
    ended_abnormally: bool,
    truncated: bool,
    anomalies: u64,
    empty_chunk_slots: u64,
    nested_hooks: u64,
    abandoned_hooks: u64,
    malloc_not_interposed: bool,
    file_size_limit: bool,
    log_fd_replaced: bool,
    seccomp_filter: bool,
    mapping_clobbered: bool,
    unwind_checked: u64,
    unwind_mismatched: u64,
    /// Distinct stacks the unwinder did not follow to the thread's entry.
    truncated_stacks: u64,
    /// Those by why it stopped.
    truncated_stacks_by: JTruncated,
    sample_interval: u64,
    sample_overflow: u64,
    estimated: bool,
    /// Leaked bytes and blocks by reachability kind, when classified.
    leak_kinds: Option<serde_json::Value>,
    /// How the scan at exit ended.
    scan: Option<serde_json::Value>,
    inherited_blocks: u64,
    inherited_bytes: u64,
    inherited: Option<JInherited<'a>>,
    /// `--from`/`--to`: the time window (absent without them).
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<JWindow>,
}

/// The time window: bounds and the end of the log in ns since the start;
/// what was allocated in it, its peak, the heap live at its end.
#[derive(Serialize)]
struct JWindow {
    from_ns: u64,
    to_ns: u64,
    end_ns: u64,
    /// Whether `leak_kinds` applies: false when the window ends before the end.
    classified: bool,
    allocations: u64,
    frees: u64,
    bytes_allocated: u64,
    peak_heap_bytes: u64,
    peak_heap_time_ms: f64,
    /// Every heap block live at `to_ns`, whenever allocated.
    live_bytes: u64,
    live_blocks: u64,
    /// The heap in use at the end of the log, every block.
    end_bytes: u64,
    end_blocks: u64,
}

/// Cut stacks by why the unwinder stopped.
#[derive(Serialize)]
struct JTruncated {
    /// A frame without usable unwind information.
    no_cfi: u64,
    /// A frame whose CFA, return address or saved register was out of bounds.
    bad_frame: u64,
    /// The frame or step limit.
    limit: u64,
}

/// Where a fork child's inheritance came from.
#[derive(Serialize)]
struct JInherited<'a> {
    parent_log: std::borrow::Cow<'a, str>,
    parent_pid: u32,
    blocks: u64,
    bytes: u64,
    mmap_regions: u64,
    mmap_bytes: u64,
}

/// A frame as the JSON documents show it.
#[derive(Serialize)]
pub(crate) struct JFrame<'a> {
    function: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    module: Option<&'a str>,
    address: String,
    inlined: bool,
}

#[derive(Serialize)]
struct JLeak<'a> {
    kind: &'static str,
    bytes: u64,
    count: u64,
    /// Bytes and blocks by reachability kind, when classified.
    reachability: Option<serde_json::Value>,
    stack: Vec<JFrame<'a>>,
}

/// `{"definite": {"bytes", "count"}, "indirect": ..., "possible": ..., "reachable": ...}`;
/// with `heurs`, the reachable entry has `"heuristics": {"newarray": {"bytes", "count"},
/// ...}`, the blocks each leak heuristic saved (only those that saved some).
pub(crate) fn kinds_json(
    k: &crate::kinds::ByKind,
    heurs: Option<&crate::report::Heurs>,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (kind, (bytes, count)) in crate::analysis::reach::Kind::ALL.iter().zip(k) {
        let mut v = serde_json::json!({"bytes": bytes, "count": count});
        if *kind == crate::analysis::reach::Kind::StillReachable
            && let Some(h) = heurs
        {
            let by: serde_json::Map<String, serde_json::Value> = crate::report::heurs_present(h)
                .into_iter()
                .map(|(h, b, n)| {
                    (
                        h.name().to_owned(),
                        serde_json::json!({"bytes": b, "count": n}),
                    )
                })
                .collect();
            v["heuristics"] = serde_json::Value::Object(by);
        }
        m.insert(kind.as_str().into(), v);
    }
    serde_json::Value::Object(m)
}

#[derive(Serialize)]
struct JSite<'a> {
    bytes: u64,
    count: u64,
    stack: Vec<JFrame<'a>>,
}

#[derive(Serialize)]
struct JBrk<'a> {
    bytes: i64,
    stack: Vec<JFrame<'a>>,
}

pub(crate) fn stack(frames: &[Frame]) -> Vec<JFrame<'_>> {
    frames
        .iter()
        .map(|f| JFrame {
            function: f.function.as_deref(),
            file: f.file.as_deref(),
            line: f.line,
            module: f.module.as_deref(),
            address: format!("{:#x}", f.address),
            inlined: f.inlined,
        })
        .collect()
}

fn leak<'a>(kind: &'static str, s: &'a Site) -> JLeak<'a> {
    JLeak {
        kind,
        bytes: s.bytes,
        count: s.count,
        reachability: s.kinds.as_ref().map(|k| kinds_json(k, Some(&s.heuristics))),
        stack: stack(&s.stack),
    }
}

fn site(s: &Site) -> JSite<'_> {
    JSite {
        bytes: s.bytes,
        count: s.count,
        stack: stack(&s.stack),
    }
}

fn brk(b: &BrkSite) -> JBrk<'_> {
    JBrk {
        bytes: b.bytes,
        stack: stack(&b.stack),
    }
}

/// Writes `r` as one pretty-printed JSON document followed by a newline.
pub fn render(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let p = &r.process;
    let s = &r.summary;
    let doc = Json {
        memtrace_version: env!("CARGO_PKG_VERSION"),
        format_version: r.format_version,
        process: JProcess {
            pid: p.pid,
            ppid: p.ppid,
            exe: &p.exe,
            cmdline: &p.cmdline,
            forked_from: p.forked_from,
            ended: p.ended.as_str(),
            exit_status: p.exit_status,
            signal: p.signal,
            duration_ms: p.duration_ms,
        },
        summary: summary(s),
        leaks: r
            .heap_leaks
            .iter()
            .map(|l| leak("heap", l))
            .chain(r.mmap_leaks.iter().map(|l| leak("mmap", l)))
            .collect(),
        peak: r.peak.iter().map(site).collect(),
        allocated: r.allocated.iter().map(site).collect(),
        temporary: r.temporary.iter().map(site).collect(),
        timeline: r
            .timeline
            .iter()
            .map(|p| JPoint {
                t_ms: p.t_ms,
                heap: p.heap,
                mmap: p.mmap,
            })
            .collect(),
        kernel: r.kernel.as_ref().map(kernel),
        brk: r.brk.iter().map(brk).collect(),
        live_filter: r.live_filter.as_ref().map(live_filter),
        histogram: r.questions.histogram.as_ref().map(|h| {
            h.iter()
                .map(|b| JBucket {
                    min: b.min,
                    max: b.max,
                    allocations: b.allocations,
                    bytes: b.bytes,
                })
                .collect()
        }),
        filter: r.questions.filter.as_ref().map(filtered),
        by_function: r.questions.by_function.as_ref().map(by_function),
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}

fn filtered(f: &crate::report::questions::Filtered) -> JFiltered<'_> {
    JFiltered {
        pattern: &f.pattern.text,
        glob: f.pattern.is_glob(),
        stacks: f.stacks,
        stacks_total: f.stacks_total,
        allocations: f.allocations,
        bytes_allocated: f.bytes_allocated,
        temporary_allocations: f.temporary_allocations,
        temporary_bytes: f.temporary_bytes,
        leaked_heap_bytes: f.leaked_heap_bytes,
        leaked_heap_blocks: f.leaked_heap_blocks,
        leaked_mmap_bytes: f.leaked_mmap_bytes,
        leaked_mmap_regions: f.leaked_mmap_regions,
        peak_heap_bytes: f.peak_heap_bytes,
        peak_heap_blocks: f.peak_heap_blocks,
    }
}

fn totals(t: &crate::report::questions::Totals) -> JTotals {
    JTotals {
        allocations: t.allocations,
        bytes_allocated: t.bytes_allocated,
        temporary_allocations: t.temporary_allocations,
        leaked_bytes: t.leaked_bytes,
        leaked_blocks: t.leaked_blocks,
        peak_bytes: t.peak_bytes,
        peak_blocks: t.peak_blocks,
    }
}

fn by_function(b: &crate::report::questions::ByFunction) -> JByFunction<'_> {
    let one = |f| stack(std::slice::from_ref(f)).pop();
    JByFunction {
        functions_total: b.total,
        functions: b
            .functions
            .iter()
            .filter_map(|f| {
                Some(JFunction {
                    frame: one(&f.frame)?,
                    totals: totals(&f.totals),
                    stacks: f.stacks,
                    callers_total: f.callers_total,
                    callers: f
                        .callers
                        .iter()
                        .map(|c| JCaller {
                            frame: c.frame.as_ref().and_then(one),
                            totals: totals(&c.totals),
                            stacks: c.stacks,
                        })
                        .collect(),
                })
            })
            .collect(),
    }
}

/// The report's summary as the JSON document spells it.
fn summary(s: &Summary) -> JSummary<'_> {
    JSummary {
        allocations: s.allocations,
        frees: s.frees,
        bytes_allocated: s.bytes_allocated,
        temporary_allocations: s.temporary_allocations,
        temporary_bytes: s.temporary_bytes,
        peak_heap_bytes: s.peak_heap_bytes,
        peak_heap_time_ms: s.peak_heap_time_ms,
        leaked_heap_bytes: s.leaked_heap_bytes,
        leaked_heap_blocks: s.leaked_heap_blocks,
        leaked_mmap_bytes: s.leaked_mmap_bytes,
        leaked_mmap_regions: s.leaked_mmap_regions,
        peak_mmap_bytes: s.peak_mmap_bytes,
        mmap_calls: s.mmap_calls,
        munmap_calls: s.munmap_calls,
        brk_growth_bytes: s.brk_growth_bytes,
        events_lost: s.events_lost,
        torn_records: s.torn_records,
        unknown_frees: s.unknown_frees,
        libc_freeres_frees: s.libc_freeres_frees,
        ended_abnormally: s.ended_abnormally,
        truncated: s.truncated,
        anomalies: s.anomalies,
        empty_chunk_slots: s.empty_chunk_slots,
        nested_hooks: s.nested_hooks,
        abandoned_hooks: s.abandoned_hooks,
        malloc_not_interposed: s.malloc_not_interposed,
        file_size_limit: s.file_size_limit,
        log_fd_replaced: s.log_fd_replaced,
        seccomp_filter: s.seccomp_filter,
        mapping_clobbered: s.mapping_clobbered,
        unwind_checked: s.unwind_checked,
        unwind_mismatched: s.unwind_mismatched,
        truncated_stacks: s.truncated_stacks_total(),
        truncated_stacks_by: JTruncated {
            no_cfi: s.truncated_stacks[0],
            bad_frame: s.truncated_stacks[1],
            limit: s.truncated_stacks[2],
        },
        sample_interval: s.sample_interval,
        sample_overflow: s.sample_overflow,
        estimated: s.sample_interval != 0,
        leak_kinds: s
            .leak_kinds
            .as_ref()
            .map(|k| kinds_json(k, Some(&s.leak_heuristics))),
        scan: s.scan.as_ref().map(|d| {
            serde_json::json!({
                "status": if d.failure().is_none() { "ok" } else { "failed" },
                "reason": d.failure(),
                "threads_stopped": d.threads,
                "threads_without_registers": d.threads_without_registers,
                "blocks": d.blocks,
                "duration_ms": d.micros as f64 / 1000.0,
            })
        }),
        inherited_blocks: s.inherited_blocks,
        inherited_bytes: s.inherited_bytes,
        inherited: s.inherited.as_ref().map(|i| JInherited {
            parent_log: i.parent_log.to_string_lossy(),
            parent_pid: i.parent_pid,
            blocks: s.inherited_blocks,
            bytes: s.inherited_bytes,
            mmap_regions: i.mmap_regions,
            mmap_bytes: i.mmap_bytes,
        }),
        window: s.window.as_ref().map(|w| JWindow {
            from_ns: w.from_ns,
            to_ns: w.to_ns,
            end_ns: w.end_ns,
            classified: !w.before_end(),
            allocations: w.allocations,
            frees: w.frees,
            bytes_allocated: w.bytes_allocated,
            peak_heap_bytes: w.peak_heap_bytes,
            peak_heap_time_ms: w.peak_heap_time_ms,
            live_bytes: w.live_bytes,
            live_blocks: w.live_blocks,
            end_bytes: w.end_bytes,
            end_blocks: w.end_blocks,
        }),
    }
}

/// The live filter's part of the document.
fn live_filter(f: &LiveFilter) -> JFilter<'_> {
    JFilter {
        since: f.since.as_ref().map(|(path, t_ms, b, n)| JSince {
            path: path.display().to_string(),
            t_ms: *t_ms,
            live_bytes: *b,
            live_blocks: *n,
        }),
        older_than_ms: f.older_than_ms,
        all_bytes: f.all_bytes,
        all_blocks: f.all_blocks,
        lost_then_freed: JAmount {
            bytes: f.lost_then_freed.0,
            count: f.lost_then_freed.1,
        },
        growth: f
            .growth
            .iter()
            .map(|g| JGrowth {
                bytes: g.site.bytes,
                count: g.site.count,
                then_bytes: g.then_bytes,
                then_count: g.then_count,
                stack: stack(&g.site.stack),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Ended, Process, Summary};

    /// The schema's field names and value shapes.
    #[test]
    fn schema_shape() {
        let frame = Frame {
            mangled: None,
            function: Some("main".into()),
            file: Some("/src/a.c".into()),
            line: Some(5),
            module: Some("/bin/a".into()),
            address: 0x401136,
            offset: None,
            inlined: false,
        };
        let r = Report {
            path: "a.mtr".into(),
            format_version: 1,
            process: Process {
                lineage: Default::default(),
                pid: 7,
                ppid: 1,
                exe: "/bin/a".into(),
                cmdline: vec!["a".into()],
                forked_from: None,
                ended: Ended::Abnormal,
                exit_status: None,
                signal: Some(9),
                exec: None,
                forks: vec![],
                duration_ms: 1.5,
            },
            summary: Summary {
                allocations: 3,
                ended_abnormally: true,
                ..Default::default()
            },
            heap_leaks: vec![Site {
                func: None,
                kinds: None,
                heuristics: Default::default(),
                bytes: 10,
                count: 1,
                stack: vec![frame.clone()].into(),
            }],
            heap_leak_stacks: 1,
            mmap_leaks: vec![Site {
                func: None,
                kinds: None,
                heuristics: Default::default(),
                bytes: 4096,
                count: 1,
                stack: vec![].into(),
            }],
            mmap_leak_stacks: 1,
            peak: vec![],
            allocated: vec![],
            temporary: vec![],
            timeline: vec![],
            kernel: None,
            brk: vec![BrkSite {
                bytes: 4096,
                stack: vec![frame].into(),
            }],
            live_filter: None,
            warnings: vec![],
            questions: Default::default(),
        };
        let mut out = Vec::new();
        render(&r, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["process"]["ended"], "abnormal");
        assert_eq!(v["process"]["signal"], 9);
        assert!(v["process"]["forked_from"].is_null());
        assert_eq!(v["summary"]["allocations"], 3);
        assert_eq!(v["summary"]["ended_abnormally"], true);
        assert_eq!(v["leaks"][0]["kind"], "heap");
        assert_eq!(v["leaks"][0]["stack"][0]["address"], "0x401136");
        assert_eq!(v["leaks"][0]["stack"][0]["line"], 5);
        assert_eq!(v["leaks"][1]["kind"], "mmap");
        assert_eq!(v["brk"][0]["bytes"], 4096);
        assert!(v["peak"].as_array().unwrap().is_empty());
    }
}
