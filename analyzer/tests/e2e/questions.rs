//! questions.c: heaptrack_print's questions — `memtrace report --histogram`,
//! `--filter` and `--by function` — in JSON, text and HTML, with the exact
//! figures of the fixture's header; and the histogram and the per-function
//! allocation counts against heaptrack_print's on heaptrack's own run.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::util::{
    Report, TIMEOUT, clean_command, fixture, memtrace, output_with_timeout, report_with,
    require_tool, trace,
};

const NO_ARGS: &[&str] = &[];

/// The fixture's run, checked complete.
fn traced() -> (crate::util::Traced, std::path::PathBuf) {
    let t = trace("questions", NO_ARGS);
    t.assert_exit(0);
    let log = t.only_log();
    (t, log)
}

/// `memtrace report ARGS LOG`'s stdout, asserting success.
fn report_out(log: &Path, args: &[&str]) -> String {
    let mut cmd = memtrace();
    cmd.arg("report").args(args).arg(log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "memtrace report {args:?} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the report is UTF-8")
}

/// The JSON histogram as (min, max, allocations, bytes).
fn histogram(r: &Report) -> Vec<(u64, u64, u64, u64)> {
    let h = r.v["histogram"].as_array().expect("a histogram array");
    h.iter()
        .map(|b| {
            let n = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("{k} in {b}"));
            (n("min"), n("max"), n("allocations"), n("bytes"))
        })
        .collect()
}

/// The JSON filter's figures by name.
fn filter_fig(r: &Report, key: &str) -> u64 {
    r.v["filter"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("filter.{key} in {}", r.v["filter"]))
}

/// A JSON function or caller: (name, allocations, bytes, leaked bytes, leaked blocks, peak bytes).
fn figures(e: &Value) -> (String, u64, u64, u64, u64, u64) {
    let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e}"));
    let name = e["frame"]["function"].as_str().unwrap_or("?").to_owned();
    (
        name,
        n("allocations"),
        n("bytes_allocated"),
        n("leaked_bytes"),
        n("leaked_blocks"),
        n("peak_bytes"),
    )
}

// Without the flags the report has none of the new keys.
#[test]
fn absent_without_the_flags() {
    let (_t, log) = traced();
    let r = report_with(&log, &[]);
    for k in ["histogram", "filter", "by_function"] {
        assert!(r.v.get(k).is_none(), "{k} without its flag");
    }
    let text = report_out(&log, &[]);
    for s in ["ALLOCATION SIZES", "FILTER", "BY FUNCTION"] {
        assert!(!text.contains(s), "{s} without its flag:\n{text}");
    }
}

// --histogram: 16 x3, 65-128 x2, 4097-8192 x1, in JSON, text and HTML.
#[test]
fn histogram_exact() {
    let (_t, log) = traced();
    let r = report_with(&log, &["--histogram"]);
    r.assert_heap_leaked(132, 3);
    assert_eq!(r.summary("allocations"), 6);
    assert_eq!(
        histogram(&r),
        [(16, 16, 3, 48), (65, 128, 2, 200), (4097, 8192, 1, 5000)]
    );
    let text = report_out(&log, &["--histogram"]);
    assert!(
        text.contains("ALLOCATION SIZES: 6 allocations by requested size"),
        "{text}"
    );
    for (size, n, bytes) in [
        ("16", "3", "48"),
        ("65-128", "2", "200"),
        ("4,097-8,192", "1", "5,000"),
    ] {
        let section = &text[text.find("ALLOCATION SIZES").unwrap()..];
        let line = section
            .lines()
            .find(|l| l.split_whitespace().next() == Some(size))
            .unwrap_or_else(|| panic!("no histogram line for {size}:\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..3], [size, n, bytes], "{line}");
    }
    let html = report_out(&log, &["--histogram", "--html", "-"]);
    assert!(html.contains("<a href=\"#histogram\">"), "nav link");
    for (min, max, n, bytes) in [
        (16, 16, "3", "48"),
        (65, 128, "2", "200"),
        (4097, 8192, "1", "5,000"),
    ] {
        let row = format!("<tr data-min=\"{min}\" data-max=\"{max}\">");
        let at = html.find(&row).unwrap_or_else(|| panic!("no row {row}"));
        let cells = &html[at..at + html[at..].find("</tr>").unwrap()];
        assert!(
            cells.contains(&format!(
                "<td class=\"num\">{n}</td><td class=\"num\">{bytes}</td>"
            )),
            "{cells}"
        );
    }
}

// --filter: a substring (b1), a glob (a?), a module's file name, nothing.
#[test]
fn filter_exact() {
    let (_t, log) = traced();
    // pattern, stacks, allocations, bytes, leaked bytes, leaked blocks, peak bytes
    let cases: [(&str, u64, u64, u64, u64, u64, u64); 4] = [
        ("b1", 1, 1, 100, 100, 1, 100),
        ("a?", 3, 3, 48, 32, 2, 32),
        ("questions", 6, 6, 5248, 132, 3, 5132),
        ("nosuchfunction", 0, 0, 0, 0, 0, 0),
    ];
    for (p, stacks, allocs, bytes, leaked, blocks, peak) in cases {
        let r = report_with(&log, &["--filter", p, "--histogram"]);
        let got = [
            "stacks",
            "allocations",
            "bytes_allocated",
            "leaked_heap_bytes",
            "leaked_heap_blocks",
            "peak_heap_bytes",
        ]
        .map(|k| filter_fig(&r, k));
        assert_eq!(
            got,
            [stacks, allocs, bytes, leaked, blocks, peak],
            "--filter {p}"
        );
        assert_eq!(filter_fig(&r, "stacks_total"), 6, "--filter {p}");
        assert_eq!(r.v["filter"]["glob"], p.contains('?'), "--filter {p}");
        // The summary stays the whole run's; the lists hold the kept stacks.
        assert_eq!(r.summary("allocations"), 6);
        let listed: u64 = r
            .leaks("heap")
            .iter()
            .map(|l| l["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(listed, leaked, "--filter {p}: leaks listed");
        let hist: u64 = histogram(&r).iter().map(|b| b.2).sum();
        assert_eq!(
            hist, allocs,
            "--filter {p}: the histogram of the kept stacks"
        );
    }
    let r = report_with(&log, &["--filter", "b1", "--histogram"]);
    assert_eq!(histogram(&r), [(65, 128, 1, 100)]);

    let text = report_out(&log, &["--filter", "a?"]);
    for want in [
        "FILTER: only the stacks through a frame whose function or module file name matches the glob \"a?\"",
        "  stacks:          3 of 6",
        "  heap usage:      3 allocs, 48 bytes allocated, 1 temporary",
        "  in use at end:   32 bytes in 2 blocks; mapped: 0 bytes in 0 regions",
        "  at the peak:     32 bytes in 2 blocks of the 5,132 bytes live at",
        "HEAP LEAKS: 32 bytes in 2 blocks from 2 stacks",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let text = report_out(&log, &["--filter", "nosuchfunction"]);
    assert!(text.contains("No leaks through the filter."), "{text}");

    let html = report_out(&log, &["--filter", "b1", "--html", "-"]);
    assert!(html.contains("id=\"filter-table\""), "the filter's table");
    assert!(html.contains("<tr><th>Stacks</th><td class=\"num\">1 of 6</td></tr>"));
    assert!(html.contains(
        "<tr><th>In use at the end</th><td class=\"num\">100 bytes in 1 block</td></tr>"
    ));
    assert!(html.contains("<h3>Heap: 100 bytes in 1 block from 1 stack</h3>"));
}

// --by function: h, g, f with their callers, exact.
#[test]
fn by_function_exact() {
    let (_t, log) = traced();
    let r = report_with(&log, &["--by", "function"]);
    let b = &r.v["by_function"];
    assert_eq!(b["functions_total"], 3);
    let fs = b["functions"].as_array().expect("functions");
    let got: Vec<_> = fs.iter().map(figures).collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        got,
        [
            (s("h"), 1, 5000, 0, 0, 5000),
            (s("g"), 2, 200, 100, 1, 100),
            (s("f"), 3, 48, 32, 2, 32),
        ]
    );
    let callers = |i: usize| -> Vec<_> {
        fs[i]["callers"]
            .as_array()
            .unwrap()
            .iter()
            .map(figures)
            .collect()
    };
    assert_eq!(callers(0), [(s("c1"), 1, 5000, 0, 0, 5000)]);
    assert_eq!(
        callers(1),
        [(s("b1"), 1, 100, 100, 1, 100), (s("b2"), 1, 100, 0, 0, 0)]
    );
    assert_eq!(
        callers(2),
        [(s("a1"), 2, 32, 32, 2, 32), (s("a2"), 1, 16, 0, 0, 0)]
    );
    assert_eq!(fs[2]["stacks"], 3, "f: a1's two call sites and a2's");
    assert!(
        fs[2]["frame"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("tests/fixtures/questions.c")),
        "{}",
        fs[2]["frame"]
    );
    // Under a filter, only the kept stacks are merged.
    let r = report_with(&log, &["--by", "function", "--filter", "a2"]);
    let fs = r.v["by_function"]["functions"].as_array().unwrap();
    assert_eq!(
        fs.iter().map(figures).collect::<Vec<_>>(),
        [(s("f"), 1, 16, 0, 0, 0)]
    );

    let text = report_out(&log, &["--by", "function"]);
    for want in [
        "BY FUNCTION: 3 allocating functions",
        "    2 allocations, 200 bytes allocated; leaked 100 bytes in 1 block; 100 bytes at the peak; 1 temporary from 2 stacks",
        "        2 allocations, 32 bytes allocated; leaked 32 bytes in 2 blocks; 32 bytes at the peak; 0 temporary",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let at = |name: &str| {
        text.find(&format!("\n  {name} at questions.c:"))
            .unwrap_or_else(|| panic!("function {name} in:\n{text}"))
    };
    assert!(
        at("h") < at("g") && at("g") < at("f"),
        "most bytes first:\n{text}"
    );
    assert!(text.contains("\n      a1 at questions.c:"), "{text}");

    let html = report_out(&log, &["--by", "function", "--html", "-"]);
    assert!(html.contains("id=\"by-function-table\""));
    assert!(html.contains("<tr class=\"function\" data-function=\"g\"><td class=\"fn\">g</td>"));
    let row = html
        .find("<tr class=\"caller\" data-function=\"f\" data-caller=\"a1\">")
        .expect("a1's row under f");
    let cells = &html[row..row + html[row..].find("</tr>").unwrap()];
    assert!(
        cells.contains("<td class=\"num\">2</td><td class=\"num\">32</td><td class=\"num\">32 bytes in 2 blocks</td>"),
        "{cells}"
    );
}

/// memtrace's bucket of a size (the rule the report states).
fn bucket(size: u64) -> (u64, u64) {
    if size <= 64 {
        return (size, size);
    }
    let hi = size.next_power_of_two();
    (hi / 2 + 1, hi)
}

/// heaptrack_print's "MOST CALLS TO ALLOCATION FUNCTIONS", merged by
/// function: (function, calls, calls by caller, whether the block names the
/// fixture's executable).
fn heaptrack_allocators(text: &str, exe: &str) -> Vec<(String, u64, BTreeMap<String, u64>, bool)> {
    let mut v: Vec<(String, u64, BTreeMap<String, u64>, bool)> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let calls = |l: &str, tail: &str| {
            l.strip_suffix(tail)
                .and_then(|l| l.split_whitespace().next())
                .filter(|_| l.contains(" calls "))
                .and_then(|n| n.parse::<u64>().ok())
        };
        if !l.starts_with(' ')
            && let Some(n) = calls(l, "peak consumption from")
        {
            let name = lines.next().unwrap_or("").trim().to_owned();
            v.push((name, n, BTreeMap::new(), false));
        } else if let Some(last) = v.last_mut() {
            if l.contains(&format!("in {exe}")) {
                last.3 = true;
            }
            if let Some(n) = calls(l.trim(), "peak consumption from:") {
                let caller = lines
                    .peek()
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_default();
                *last.2.entry(caller).or_default() += n;
            }
        }
    }
    v
}

// The histogram and the allocation counts by function and caller equal
// heaptrack_print's on heaptrack's own run of the fixture. heaptrack's
// preload brings libstdc++, whose load allocates too: heaptrack's
// allocations outside the fixture's executable are the only difference.
#[test]
fn against_heaptrack_print() {
    let heaptrack = require_tool("heaptrack", "heaptrack");
    let print = require_tool("heaptrack_print", "heaptrack");
    let (_t, log) = traced();
    let exe = fixture("questions");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(&heaptrack);
    cmd.current_dir(dir.path())
        .arg("-o")
        .arg(dir.path().join("hq"))
        .arg(&exe);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success(), "heaptrack failed: {out:?}");
    let data = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("hq."))
        })
        .expect("heaptrack's data file");
    let hist_file = dir.path().join("hist.txt");
    let mut cmd = clean_command(&print);
    cmd.arg("-f")
        .arg(&data)
        .arg("-H")
        .arg(&hist_file)
        .args(["-p", "0", "-T", "0", "-a", "1", "-n", "100"]);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success(), "heaptrack_print failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let exe_s = exe.to_string_lossy();
    let allocators = heaptrack_allocators(&text, &exe_s);
    let outside: u64 = allocators.iter().filter(|a| !a.3).map(|a| a.1).sum();

    // The histogram: heaptrack's exact sizes, in memtrace's buckets.
    let mut theirs: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for l in std::fs::read_to_string(&hist_file).unwrap().lines() {
        let mut it = l.split_whitespace().map(|x| x.parse::<u64>().unwrap());
        let (size, n) = (it.next().unwrap(), it.next().unwrap());
        *theirs.entry(bucket(size)).or_default() += n;
    }
    let r = report_with(&log, &["--histogram", "--by", "function"]);
    let ours: BTreeMap<(u64, u64), u64> = histogram(&r)
        .into_iter()
        .map(|b| ((b.0, b.1), b.2))
        .collect();
    let mut extra = 0;
    for (b, &n) in &theirs {
        let mine = ours.get(b).copied().unwrap_or(0);
        assert!(n >= mine, "bucket {b:?}: heaptrack {n}, memtrace {mine}");
        extra += n - mine;
    }
    for b in ours.keys() {
        assert!(
            theirs.contains_key(b),
            "bucket {b:?} not in heaptrack's {theirs:?}"
        );
    }
    assert_eq!(
        extra, outside,
        "heaptrack's histogram {theirs:?} against memtrace's {ours:?}: only heaptrack's \
         allocations outside the program may differ\n{text}"
    );

    // By function and caller: the same calls.
    let fs = r.v["by_function"]["functions"].as_array().unwrap();
    let program: Vec<_> = allocators.iter().filter(|a| a.3).collect();
    assert_eq!(program.len(), fs.len(), "{text}");
    for f in fs {
        let name = f["frame"]["function"].as_str().unwrap();
        let theirs = program
            .iter()
            .find(|a| a.0 == name)
            .unwrap_or_else(|| panic!("{name} not in heaptrack_print's list:\n{text}"));
        assert_eq!(f["allocations"].as_u64(), Some(theirs.1), "{name}");
        let mine: BTreeMap<String, u64> = f["callers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let who = c["frame"]["function"].as_str().unwrap_or("?").to_owned();
                (who, c["allocations"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(mine, theirs.2, "{name}'s callers");
    }
}

// In a sampled run the histogram counts the estimates the summary counts:
// its buckets add up to `allocations` and `bytes_allocated`.
#[test]
fn sampled_histogram_adds_up_to_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::util::traced_command("heap", dir.path(), "%e.%p.mtr");
    cmd.env("MEMTRACE_SAMPLE", "256");
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success(), "{out:?}");
    let logs = crate::util::logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report_with(
        &logs[0],
        &["--histogram", "--by", "function", "--top", "1000"],
    );
    assert!(r.summary_bool("estimated"));
    let h = histogram(&r);
    let n: u64 = h.iter().map(|b| b.2).sum();
    let bytes: u64 = h.iter().map(|b| b.3).sum();
    assert_eq!(n, r.summary("allocations"), "{h:?}");
    assert_eq!(bytes, r.summary("bytes_allocated"), "{h:?}");
    let fs = r.v["by_function"]["functions"].as_array().unwrap();
    let by_fn: u64 = fs.iter().map(|f| f["allocations"].as_u64().unwrap()).sum();
    assert_eq!(by_fn, n, "every sampled allocation under a function");
}
