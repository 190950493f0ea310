//! The kernel's view: `memtrace run` samples /proc/PID/smaps_rollup (and the cgroup's
//! counters) from outside while the program runs and adds the samples to its log; the
//! report shows peak RSS, the mapping tables by category and the gap to what the program
//! asked for; `memtrace timeline` charts it all. Fixture: tests/fixtures/rss.c.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

const MIB: u64 = 1 << 20;

/// `memtrace run [opts] -- rss` in `dir`; returns the report of its log.
fn run_rss(dir: &Path, opts: &[&str]) -> Report {
    let mut cmd = memtrace();
    cmd.current_dir(dir)
        .arg("run")
        .args(opts)
        .arg("--")
        .arg(fixture("rss"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir);
    assert_eq!(logs.len(), 1, "{logs:?}");
    report(&logs[0])
}

/// Category `name` of a map table.
fn cat<'a>(table: &'a Value, name: &str) -> &'a Value {
    &table["categories"][name]
}

/// The samples, the tables at peak RSS and at the end, and the gap, as rss.c states;
/// in a packed log (the default) and a raw one alike.
#[test]
fn kernel_view_of_rss_fixture() {
    for opts in [&[][..], &["--raw"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let r = run_rss(dir.path(), opts);
        r.assert_no_leak("heap", "big_block_site");
        r.assert_leak("mmap", "map_site", 32 * MIB, 1);
        r.assert_leak("mmap", "arena_site", 8 * MIB, 1);
        assert_eq!(r.v["summary"]["peak_heap_bytes"], 64 * MIB);
        let k = &r.v["kernel"];
        let samples = k["samples"].as_array().expect("kernel samples");
        assert!(samples.len() >= 5, "{opts:?}: {} samples", samples.len());
        let peak = k["peak_rss"]["rss"].as_u64().unwrap();
        assert!(
            (64 * MIB..(64 + 32 + 48) * MIB).contains(&peak),
            "peak RSS {peak}"
        );
        for s in samples {
            let (rss, pss, uss) = (s["rss"].as_u64(), s["pss"].as_u64(), s["uss"].as_u64());
            assert!(pss <= rss && uss <= rss && rss > Some(0), "{s}");
        }
        let at_peak = &k["maps_at_peak"];
        assert!(
            cat(at_peak, "anonymous")["rss"].as_u64().unwrap() >= 64 * MIB,
            "{at_peak:#}"
        );
        let at_end = &k["maps_at_end"];
        // Recorded by the process itself at exit: within a few ms of its end.
        let end = r.v["process"]["duration_ms"].as_f64().unwrap();
        let t = at_end["t_ms"].as_f64().unwrap();
        assert!(
            t <= end && end - t < 20.0,
            "table at {t} ms, end at {end} ms"
        );
        let end_anon = cat(at_end, "anonymous")["rss"].as_u64().unwrap();
        assert!((40 * MIB..72 * MIB).contains(&end_anon), "{at_end:#}");
        assert!(
            cat(at_end, "memtrace")["rss"].as_u64().unwrap() > 0,
            "the log is mapped"
        );
        let gap = &k["gap"];
        assert_eq!(gap["live_heap_bytes"], 64 * MIB, "{gap:#}");
        assert_eq!(gap["program_mmap_bytes"], 8 * MIB, "{gap:#}");
        let by_stack = gap["program_mmap_by_stack"].as_array().unwrap();
        assert_eq!(by_stack.len(), 1, "{gap:#}");
        assert_eq!(
            (by_stack[0]["bytes"].as_u64(), by_stack[0]["count"].as_u64()),
            (Some(8 * MIB), Some(1))
        );
        assert!(stack_has(&by_stack[0], &fn_is("arena_site")), "{gap:#}");
        let text = {
            let mut cmd = memtrace();
            cmd.arg("report").arg("--full").arg(&r.log);
            String::from_utf8_lossy(&output_with_timeout(&mut cmd, TIMEOUT).stdout).into_owned()
        };
        assert!(
            text.contains("KERNEL'S VIEW") && text.contains("the gap at"),
            "{text}"
        );
    }
}

/// With sampling off, or under a plain LD_PRELOAD, there is no kernel view; the
/// timeline of the heap is still there.
#[test]
fn no_kernel_view_without_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_rss(dir.path(), &["--kernel-interval", "0"]);
    assert!(r.v["kernel"].is_null());
    let t = trace("rss", &[] as &[&str]);
    let r = t.report();
    assert!(r.v["kernel"].is_null());
    let points = r.v["timeline"].as_array().unwrap();
    assert!(points.len() > 2);
    let max = points
        .iter()
        .map(|p| p["heap"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(max, 64 * MIB, "the timeline catches the 600 ms plateau");
}

/// `memtrace timeline` draws the four lines and marks both peaks, in an SVG that a
/// real XML parser reads.
#[test]
fn timeline_svg() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_rss(dir.path(), &[]);
    let svg = dir.path().join("t.svg");
    let mut cmd = memtrace();
    cmd.arg("timeline").arg(&r.log).arg("-o").arg(&svg);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = r#"
import sys, json, xml.etree.ElementTree as ET
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[1]).getroot()
lines = {p.get("id"): len(p.get("points").split()) for p in root.iter("{http://www.w3.org/2000/svg}polyline")}
marks = {g.get("id"): g.find("s:title", ns).text for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("id")}
print(json.dumps({"title": root.find("s:title", ns).text, "lines": lines, "marks": marks}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for id in ["heap", "mmap", "rss", "pss"] {
        assert!(v["lines"][id].as_u64() >= Some(2), "{id}: {v}");
    }
    assert!(
        v["title"].as_str().unwrap().contains("peak heap 64.0 MiB"),
        "{v}"
    );
    assert!(
        v["marks"]["peak-heap"]
            .as_str()
            .unwrap()
            .contains("64.0 MiB"),
        "{v}"
    );
    assert!(
        v["marks"]["peak-rss"]
            .as_str()
            .unwrap()
            .contains("peak RSS"),
        "{v}"
    );
}

/// `memtrace export --format chrome-trace`: counter events equal the report's timeline
/// and kernel samples, one for one; both peaks are marked.
#[test]
fn chrome_trace_export() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_rss(dir.path(), &[]);
    let mut cmd = memtrace();
    cmd.args(["export", "--format", "chrome-trace"]).arg(&r.log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace: Value = serde_json::from_slice(&out.stdout).expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().unwrap();
    let named = |n: &str| -> Vec<&Value> { events.iter().filter(|e| e["name"] == n).collect() };
    let memory = named("memory");
    let timeline = r.v["timeline"].as_array().unwrap();
    assert_eq!(memory.len(), timeline.len());
    for (e, p) in memory.iter().zip(timeline) {
        assert_eq!(e["ph"], "C");
        assert_eq!(e["args"]["live heap"], p["heap"]);
        assert_eq!(e["args"]["program mmap"], p["mmap"]);
        let ts = e["ts"].as_f64().unwrap();
        assert!((ts - p["t_ms"].as_f64().unwrap() * 1000.0).abs() < 1.0);
    }
    let kernel = named("kernel");
    let samples = r.v["kernel"]["samples"].as_array().unwrap();
    assert_eq!(kernel.len(), samples.len());
    for (e, s) in kernel.iter().zip(samples) {
        for k in ["rss", "pss", "uss", "swap"] {
            assert_eq!(e["args"][k], s[k], "{k}");
        }
    }
    assert_eq!(named("peak heap")[0]["args"]["live heap"], 64 * MIB);
    assert_eq!(
        named("peak RSS")[0]["args"]["rss"],
        r.v["kernel"]["peak_rss"]["rss"]
    );
}

/// The preload's own record at exit, with no sampler outside (plain `LD_PRELOAD` with
/// `MEMTRACE_KERNEL_INTERVAL` set): every process records the kernel's counters as it
/// exits, and the table of its mappings only if it lived 10 ms or more (the table makes
/// the kernel walk every page table, more than a short process's whole run). no_heap
/// exits at once; rss lives over a second.
#[test]
fn table_at_exit_only_for_processes_that_lived() {
    for (name, table) in [("no_heap", false), ("rss", true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = traced_command(name, dir.path(), "%e.%p.mtr");
        cmd.env("MEMTRACE_KERNEL_INTERVAL", "100");
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(out.status.success(), "{name}: {out:?}");
        let logs = logs_in(dir.path());
        assert_eq!(logs.len(), 1, "{logs:?}");
        let r = report(&logs[0]);
        let k = &r.v["kernel"];
        let samples = k["samples"].as_array().expect("the counters at exit");
        assert_eq!(samples.len(), 1, "{name}: {k:#}");
        assert!(samples[0]["rss"].as_u64().unwrap() > 0, "{name}: {k:#}");
        assert_eq!(!k["maps_at_end"].is_null(), table, "{name}: {k:#}");
        if table {
            let end_anon = cat(&k["maps_at_end"], "anonymous")["rss"].as_u64().unwrap();
            assert!((40 * MIB..72 * MIB).contains(&end_anon), "{k:#}");
        }
    }
}
