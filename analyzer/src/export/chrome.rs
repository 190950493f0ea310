//! Chrome's trace event format (JSON), counters only: memory over time for
//! Perfetto's UI (ui.perfetto.dev) or `chrome://tracing`.
//!
//! One process, named after the program; counter events (`"ph": "C"`):
//! `memory` with the live heap and the program's mapped bytes (the report's
//! timeline), and, when `memtrace run` sampled the kernel, `kernel` with RSS,
//! PSS, USS and swap, and `cgroup` with `memory.current` when there is one.
//! Times (`ts`) are microseconds since the process started; values are bytes.
//! Instant events mark the peak of the live heap and the peak RSS.

use serde_json::{Value, json};

use crate::report::Report;

/// The trace document.
pub fn document(r: &Report) -> Value {
    let pid = r.process.pid;
    let name = r
        .process
        .exe
        .rsplit('/')
        .next()
        .unwrap_or(&r.process.exe)
        .to_owned();
    let us = |ms: f64| (ms * 1000.0).round();
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
        "args": {"name": format!("{name} (pid {pid})")}
    })];
    for p in &r.timeline {
        events.push(json!({
            "name": "memory", "ph": "C", "pid": pid, "tid": 0, "ts": us(p.t_ms),
            "args": {"live heap": p.heap, "program mmap": p.mmap}
        }));
    }
    if let Some(k) = &r.kernel {
        for (t, c) in &k.samples {
            events.push(json!({
                "name": "kernel", "ph": "C", "pid": pid, "tid": 0, "ts": us(*t),
                "args": {"rss": c[0], "pss": c[1], "uss": c[2], "swap": c[3]}
            }));
            if c[5] != 0 {
                events.push(json!({
                    "name": "cgroup", "ph": "C", "pid": pid, "tid": 0, "ts": us(*t),
                    "args": {"memory.current": c[5], "anon": c[6], "file": c[7]}
                }));
            }
        }
        let (t, c) = &k.peak;
        events.push(json!({
            "name": "peak RSS", "ph": "i", "s": "p", "pid": pid, "tid": 0, "ts": us(*t),
            "args": {"rss": c[0]}
        }));
    }
    let s = &r.summary;
    if s.peak_heap_bytes > 0 {
        events.push(json!({
            "name": "peak heap", "ph": "i", "s": "p", "pid": pid, "tid": 0,
            "ts": us(s.peak_heap_time_ms), "args": {"live heap": s.peak_heap_bytes}
        }));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"exporter": super::exporter(), "log": r.path.display().to_string()}
    })
}
