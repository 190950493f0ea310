//! window.c: `memtrace report --from T --to T`, a time window of the run — the blocks
//! allocated in it and live at its end, what was allocated in it, its peak — with the
//! exact figures of the fixture's header, in JSON, text and HTML; the exit scan's kinds
//! only for a window that reaches the exit; the errors.
//!
//! The bounds are the middles of the fixture's two 300 ms gaps, found in the report's
//! own timeline (its points are the phases' events), so no test depends on how long
//! the process took to start.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{Report, TIMEOUT, Traced, memtrace, output_with_timeout, report_with, trace};

const NO_ARGS: &[&str] = &[];

/// The fixture's one run, shared by the tests, and the middles of its gaps.
struct Run {
    _t: Traced,
    log: PathBuf,
    /// The middle of the gap after phase 1 and after phase 2, as `--from`/`--to`
    /// take them (`151.123ms`), and in ns since the start.
    g1: (String, u64),
    g2: (String, u64),
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let t = trace("window", NO_ARGS);
        t.assert_exit(0);
        let log = t.only_log();
        let (g1, g2) = gaps(&report_with(&log, &[]));
        Run { _t: t, log, g1, g2 }
    })
}

/// The middles of the two gaps of more than 150 ms between the timeline's points.
fn gaps(r: &Report) -> ((String, u64), (String, u64)) {
    let t: Vec<f64> = r.v["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|p| p["t_ms"].as_f64().expect("t_ms"))
        .collect();
    let mids: Vec<f64> = t
        .windows(2)
        .filter(|w| w[1] - w[0] > 150.0)
        .map(|w| (w[0] + w[1]) / 2.0)
        .collect();
    assert_eq!(mids.len(), 2, "two gaps between the phases in {t:?}");
    // The bound as passed (to the microsecond) and the ns it stands for, read
    // back from that text so that both round alike.
    let bound = |ms: f64| {
        let text = format!("{ms:.3}");
        let us: u64 = text.replace('.', "").parse().expect("digits");
        (format!("{text}ms"), us * 1000)
    };
    (bound(mids[0]), bound(mids[1]))
}

/// A leak entry: its innermost function, bytes, blocks, and its reachability
/// (`definite` and `reachable` bytes and blocks), `None` when not classified.
type Leak = (String, u64, u64, Option<[(u64, u64); 2]>);

fn leaks(r: &Report) -> Vec<Leak> {
    r.v["leaks"]
        .as_array()
        .expect("leaks")
        .iter()
        .map(|l| {
            let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("a number in {l}"));
            let func = l["stack"][0]["function"].as_str().unwrap_or("?").to_owned();
            let kinds = l["reachability"].as_object().map(|k| {
                [
                    (n(&k["definite"]["bytes"]), n(&k["definite"]["count"])),
                    (n(&k["reachable"]["bytes"]), n(&k["reachable"]["count"])),
                ]
            });
            (func, n(&l["bytes"]), n(&l["count"]), kinds)
        })
        .collect()
}

/// `summary.window`'s figures: allocations, frees, bytes allocated, peak, live bytes
/// and blocks at its end, whether classified.
fn figures(r: &Report) -> (u64, u64, u64, u64, u64, u64, bool) {
    let w = &r.v["summary"]["window"];
    let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("window.{k} in {w}"));
    (
        n("allocations"),
        n("frees"),
        n("bytes_allocated"),
        n("peak_heap_bytes"),
        n("live_bytes"),
        n("live_blocks"),
        w["classified"].as_bool().expect("window.classified"),
    )
}

/// The summary's listed heap bytes and blocks, and whether it has leak kinds.
fn listed(r: &Report) -> (u64, u64, bool) {
    (
        r.summary("leaked_heap_bytes"),
        r.summary("leaked_heap_blocks"),
        !r.v["summary"]["leak_kinds"].is_null(),
    )
}

/// The window's bounds in ns since the start, and the end of the log.
fn bounds(r: &Report) -> (u64, u64, u64) {
    let w = &r.v["summary"]["window"];
    let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("window.{k} in {w}"));
    (n("from_ns"), n("to_ns"), n("end_ns"))
}

fn p(f: &str, bytes: u64, count: u64, kinds: Option<[(u64, u64); 2]>) -> Leak {
    (f.to_owned(), bytes, count, kinds)
}

/// `memtrace report ARGS LOG`'s output, whatever its status.
fn memtrace_report(log: &Path, args: &[&str]) -> Output {
    let mut cmd = memtrace();
    cmd.arg("report").args(args).arg(log);
    output_with_timeout(&mut cmd, TIMEOUT)
}

/// `memtrace report ARGS LOG`'s stdout, asserting success.
fn report_text(log: &Path, args: &[&str]) -> String {
    let out = memtrace_report(log, args);
    assert!(
        out.status.success(),
        "memtrace report {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

// Without --from/--to the report has no window; the whole run's figures.
#[test]
fn absent_without_the_flags() {
    let run = run();
    let r = report_with(&run.log, &[]);
    assert!(r.v["summary"].get("window").is_none(), "{}", r.v["summary"]);
    assert_eq!(listed(&r), (196, 5, true));
    assert_eq!(r.summary("allocations"), 11);
    assert_eq!(r.summary("frees"), 6);
    assert_eq!(r.summary("bytes_allocated"), 1516);
    assert_eq!(r.summary("peak_heap_bytes"), 1196);
    let text = report_text(&run.log, &[]);
    for s in ["window:", "in the window", "IN THE WINDOW"] {
        assert!(!text.contains(s), "{s:?} in\n{text}");
    }
}

// --from 0: the whole run, classified as at exit; every figure of the run's.
#[test]
fn whole_run() {
    let run = run();
    for args in [&["--from", "0"][..], &["--from", "0%", "--to", "100%"]] {
        let r = report_with(&run.log, args);
        let (from, to, end) = bounds(&r);
        assert_eq!((from, to), (0, end), "{args:?}");
        assert!(end > run.g2.1, "{args:?}: the end after the second gap");
        assert_eq!(figures(&r), (11, 6, 1516, 1196, 196, 5, true), "{args:?}");
        assert_eq!(listed(&r), (196, 5, true), "{args:?}");
        assert_eq!(
            leaks(&r),
            [
                p("p1", 100, 1, Some([(0, 0), (100, 1)])),
                p("p2", 80, 2, Some([(80, 2), (0, 0)])),
                p("p3", 16, 2, Some([(0, 0), (16, 2)])),
            ],
            "{args:?}"
        );
        let k = &r.v["summary"]["leak_kinds"];
        assert_eq!(k["definite"]["bytes"], 80, "{k}");
        assert_eq!(k["reachable"]["bytes"], 116, "{k}");
    }
}

// Phase 2 only: its 3 blocks still live at the second gap; not classified.
#[test]
fn phase_two_only() {
    let run = run();
    let r = report_with(&run.log, &["--from", &run.g1.0, "--to", &run.g2.0]);
    let (from, to, end) = bounds(&r);
    assert_eq!((from, to), (run.g1.1, run.g2.1));
    assert!(end > to);
    assert_eq!(figures(&r), (5, 3, 200, 400, 220, 4, false));
    assert_eq!(listed(&r), (120, 3, false));
    assert_eq!(leaks(&r), [p("p2", 120, 3, None)]);
    // The rest of the summary stays the whole run's.
    assert_eq!(r.summary("allocations"), 11);
    assert_eq!(r.v["summary"]["window"]["end_bytes"], 196);
}

// Ending before exit, from the start: phases 1 and 2's blocks live then, not classified.
#[test]
fn ending_before_exit() {
    let run = run();
    let r = report_with(&run.log, &["--to", &run.g2.0]);
    assert_eq!(bounds(&r).0, 0);
    assert_eq!(figures(&r), (8, 4, 500, 400, 220, 4, false));
    assert_eq!(listed(&r), (220, 4, false));
    assert_eq!(leaks(&r), [p("p2", 120, 3, None), p("p1", 100, 1, None)]);
}

// --to only, in the first gap: phase 1's 2 blocks live then.
#[test]
fn to_only() {
    let run = run();
    let r = report_with(&run.log, &["--to", &run.g1.0]);
    assert_eq!(figures(&r), (3, 1, 300, 300, 200, 2, false));
    assert_eq!(listed(&r), (200, 2, false));
    assert_eq!(leaks(&r), [p("p1", 200, 2, None)]);
    let t = r.v["summary"]["window"]["peak_heap_time_ms"]
        .as_f64()
        .unwrap();
    assert!(
        t * 1e6 < run.g1.1 as f64,
        "the window's peak in phase 1: {t} ms"
    );
}

// --from only: the blocks of the window that survive to exit, with the exit's kinds.
#[test]
fn from_only() {
    let run = run();
    let r = report_with(&run.log, &["--from", &run.g2.0]);
    let (from, to, end) = bounds(&r);
    assert_eq!((from, to), (run.g2.1, end));
    assert_eq!(figures(&r), (3, 2, 1016, 1196, 196, 5, true));
    assert_eq!(listed(&r), (16, 2, true));
    assert_eq!(leaks(&r), [p("p3", 16, 2, Some([(0, 0), (16, 2)]))]);
    let k = &r.v["summary"]["leak_kinds"];
    assert_eq!(
        (&k["definite"]["bytes"], &k["reachable"]["bytes"]),
        (&0.into(), &16.into())
    );

    let r = report_with(&run.log, &["--from", &run.g1.0]);
    assert_eq!(figures(&r), (8, 5, 1216, 1196, 196, 5, true));
    assert_eq!(listed(&r), (96, 4, true));
    assert_eq!(
        leaks(&r),
        [
            p("p2", 80, 2, Some([(80, 2), (0, 0)])),
            p("p3", 16, 2, Some([(0, 0), (16, 2)])),
        ]
    );
}

// A --to past the end is the end: the whole run, classified.
#[test]
fn to_past_the_end_is_the_end() {
    let run = run();
    let r = report_with(&run.log, &["--from", &run.g1.0, "--to", "1h"]);
    let (_, to, end) = bounds(&r);
    assert_eq!(to, end);
    assert_eq!(listed(&r), (96, 4, true));
}

// Text and HTML say the window, the figures and why the blocks are not classified.
#[test]
fn text_and_html() {
    let run = run();
    let (g1, g2) = (&run.g1, &run.g2);
    let args = ["--from", &g1.0, "--to", &g2.0];
    let text = report_text(&run.log, &args);
    let ms = |ns: u64| format!("{:.3} ms", ns as f64 / 1e6);
    let window = format!("  window:           {} .. {} of ", ms(g1.1), ms(g2.1));
    assert!(text.contains(&window), "{window:?} in\n{text}");
    for line in [
        "  in use at exit:    196 bytes in 5 blocks",
        "  in the window:    5 allocs, 3 frees, 200 bytes allocated; peak 400 bytes at ",
        "; allocated in the window: 120 bytes in 3 blocks",
        "    not classified by reachability: the window ends before exit",
        "HEAP BLOCKS ALLOCATED IN THE WINDOW, LIVE AT ITS END: 120 bytes in 3 blocks from 1 stack",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(!text.contains("definitely lost"), "{text}");
    let text = report_text(&run.log, &["--from", &g2.0]);
    assert!(
        text.contains("    still reachable: 16 bytes in 2 blocks"),
        "{text}"
    );
    assert!(!text.contains("not classified"), "{text}");

    let html = report_text(&run.log, &["--from", &g1.0, "--to", &g2.0, "--html", "-"]);
    let row = format!("<tr><th>Window</th><td>{} .. {} of ", ms(g1.1), ms(g2.1));
    for s in [
        &row[..],
        "<th>In the window</th><td>5 allocs, 3 frees, 200 bytes allocated; peak 400 bytes at ",
        "not classified by reachability: the window ends before exit",
        "<h3>Heap, allocated in the window and live at its end: 120 bytes in 3 blocks from 1 stack</h3>",
    ] {
        assert!(html.contains(s), "{s:?} in the page");
    }
}

// Bad bounds: one error line, exit status 2.
#[test]
fn errors() {
    let run = run();
    for (args, error) in [
        (
            &["--from", "2s", "--to", "1s"][..],
            "memtrace: error: --from 2.000 s is after --to 1.000 s\n".to_owned(),
        ),
        (
            &["--to", "1x"],
            "memtrace: error: --to: `1x` is not a time since the start (e.g. 1.5s, 250ms, 2s, 50%)\n".to_owned(),
        ),
        (
            &["--from", "150%"],
            "memtrace: error: --from: `150%` is not a percentage of the run (0% to 100%)\n"
                .to_owned(),
        ),
    ] {
        let out = memtrace_report(&run.log, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), error, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = memtrace_report(&run.log, &["--from", "1h"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.starts_with("memtrace: error: --from 1.000 h is past the end of the log (")
            && e.ends_with(" ms after the start)\n")
            && e.lines().count() == 1,
        "{e}"
    );
}
