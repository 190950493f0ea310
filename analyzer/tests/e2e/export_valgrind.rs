//! `memtrace export --format massif|dhat`, each read by valgrind's own viewer: the
//! massif file by `ms_print` (Debian's `valgrind`), the DHAT JSON by `dh_view.html`
//! (shipped with valgrind) in headless Chromium (Debian's `chromium`). Both are
//! required: missing, the tests fail naming the package.
//!
//! The figures are `peak_tree.c`'s (its header states them): a peak of 171000 bytes
//! held by leaf <- load_table (100000), leaf <- load_index (40000), cache (30000) and
//! tiny (1000, below massif's 1% threshold); 221064 bytes in 18 blocks allocated; 64
//! bytes leaked by after. `heap.c` (realloc chains, aligned allocations) checks that
//! the DHAT totals equal the report's.
//!
//! dh_view.html loads a file only from its file input: the test copies the viewer
//! into a scratch directory beside a page that includes valgrind's `dh_view.js`
//! unchanged and hands the export to that input (a `File` in a `DataTransfer`), so
//! the viewer's own loading, checks and rendering run; the DOM is dumped after.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{
    TIMEOUT, browser, chromium, clean_command, memtrace, missing_tool, output_with_timeout,
    report_with, require_tool, trace,
};

const NO_ARGS: &[&str] = &[];

/// peak_tree.c's peak, in bytes.
const PEAK: u64 = 171_000;

/// `memtrace export --format FORMAT LOG -o OUT`, asserting success; the file's text.
fn export_text(log: &Path, format: &str, out: &Path) -> String {
    let mut cmd = memtrace();
    cmd.args(["export", "--format", format])
        .arg(log)
        .arg("-o")
        .arg(out);
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !stderr.contains("panicked"),
        "{cmd:?}: {:?}\n{stderr}",
        o.status
    );
    assert!(o.stdout.is_empty(), "nothing on stdout with -o");
    std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The fixture's one log, its exit checked, and its full JSON report.
fn traced(name: &str) -> (crate::util::Traced, PathBuf, crate::util::Report) {
    let t = trace(name, NO_ARGS);
    t.assert_exit(0);
    let log = t.only_log();
    let r = report_with(&log, &["--top", "1000000"]);
    r.assert_complete();
    (t, log, r)
}

// ---------------------------------------------------------------------------------------
// massif, read by ms_print
// ---------------------------------------------------------------------------------------

/// One node of a massif heap tree: bytes, label, children.
struct Node {
    bytes: u64,
    label: String,
    kids: Vec<Node>,
}

/// Reads the tree starting at `lines[*i]` (massif's `nN: BYTES LABEL` lines).
fn read_node(lines: &[&str], i: &mut usize) -> Node {
    let line = lines[*i].trim_start();
    *i += 1;
    let (n, rest) = line
        .strip_prefix('n')
        .and_then(|l| l.split_once(": "))
        .unwrap_or_else(|| panic!("not a tree line: {line:?}"));
    let (bytes, label) = rest.split_once(' ').unwrap_or((rest, ""));
    let n: usize = n.parse().unwrap();
    let mut node = Node {
        bytes: bytes.parse().unwrap(),
        label: label.to_owned(),
        kids: Vec::new(),
    };
    for _ in 0..n {
        node.kids.push(read_node(lines, i));
    }
    node
}

/// massif's rule: a node with children has exactly their sum, sorted largest first.
fn assert_sums(n: &Node) {
    if !n.kids.is_empty() {
        let sum: u64 = n.kids.iter().map(|k| k.bytes).sum();
        assert_eq!(sum, n.bytes, "children of {:?} do not sum to it", n.label);
        assert!(
            n.kids.windows(2).all(|w| w[0].bytes >= w[1].bytes),
            "children of {:?} not sorted",
            n.label
        );
    }
    n.kids.iter().for_each(assert_sums);
}

/// A massif snapshot: number, time, heap bytes, and its tree (`heap_tree` kind and
/// root) when detailed.
type Snapshot = (u64, u64, u64, Option<(String, Node)>);

/// The snapshots of a massif file.
fn snapshots(text: &str) -> Vec<Snapshot> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines[0].starts_with("desc: "), "{}", lines[0]);
    assert!(lines[1].starts_with("cmd: "), "{}", lines[1]);
    assert_eq!(lines[2], "time_unit: B");
    let field = |l: &str, name: &str| -> String {
        l.strip_prefix(name)
            .and_then(|l| l.strip_prefix('='))
            .unwrap_or_else(|| panic!("expected {name}=, got {l:?}"))
            .to_owned()
    };
    let mut out = Vec::new();
    let mut i = 3;
    while i < lines.len() {
        let n: u64 = field(lines[i], "snapshot").parse().unwrap();
        let time: u64 = field(lines[i + 1], "time").parse().unwrap();
        let heap: u64 = field(lines[i + 2], "mem_heap_B").parse().unwrap();
        assert_eq!(field(lines[i + 3], "mem_heap_extra_B"), "0");
        assert_eq!(field(lines[i + 4], "mem_stacks_B"), "0");
        let kind = field(lines[i + 5], "heap_tree");
        i += 6;
        let tree = (kind != "empty").then(|| (kind, read_node(&lines, &mut i)));
        out.push((n, time, heap, tree));
    }
    out
}

/// The `ms_print` text of a massif file, asserting ms_print succeeded.
fn ms_print(file: &Path) -> String {
    let tool = require_tool("ms_print", "valgrind");
    let mut cmd = clean_command(&tool);
    cmd.arg(file);
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{cmd:?}: {:?}\n{stderr}", o.status);
    assert!(stderr.is_empty(), "ms_print complained:\n{stderr}");
    String::from_utf8(o.stdout).unwrap()
}

/// ms_print's table row of snapshot `n`: (time, total) as printed (with commas).
fn ms_print_row(text: &str, n: u64) -> (String, String) {
    text.lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 6 && w[0] == n.to_string()).then(|| (w[1].to_owned(), w[2].to_owned()))
        })
        .unwrap_or_else(|| panic!("no row for snapshot {n}:\n{text}"))
}

/// Commas every three digits, as ms_print writes numbers.
fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// ms_print's line for a tree node of `bytes` whose frame is `function (peak_tree.c:`.
fn printed_node<'a>(text: &'a str, bytes: u64, function: &str) -> Option<&'a str> {
    let b = format!("({}B) 0x", commas(bytes));
    let f = format!(": {function} (peak_tree.c:");
    text.lines().find(|l| l.contains(&b) && l.contains(&f))
}

#[test]
fn massif_is_read_by_ms_print() {
    let (t, log, r) = traced("peak_tree");
    assert_eq!(r.summary("peak_heap_bytes"), PEAK);
    let file = t.dir.path().join("massif.out");
    let text = export_text(&log, "massif", &file);

    // The file as massif writes it: snapshots in order, the peak's and the end's trees.
    let snaps = snapshots(&text);
    assert!(snaps.len() <= 100, "{} snapshots", snaps.len());
    assert!(
        snaps.windows(2).all(|w| w[0].1 < w[1].1),
        "times not increasing"
    );
    assert_eq!((snaps[0].1, snaps[0].2), (0, 0));
    let peaks: Vec<_> = snaps
        .iter()
        .filter(|s| s.3.as_ref().is_some_and(|t| t.0 == "peak"))
        .collect();
    assert_eq!(peaks.len(), 1, "one peak snapshot");
    let (peak_n, _, peak_heap, Some((_, tree))) = peaks[0] else {
        unreachable!()
    };
    assert_eq!(*peak_heap, PEAK);
    assert_eq!(snaps.iter().map(|s| s.2).max(), Some(PEAK));
    assert_eq!(tree.bytes, PEAK);
    assert_sums(tree);
    let top: Vec<(u64, &str)> = tree
        .kids
        .iter()
        .map(|k| (k.bytes, k.label.as_str()))
        .collect();
    assert_eq!(top.len(), 3, "{top:?}");
    assert!(top[0].0 == 140_000 && top[0].1.contains(": leaf (peak_tree.c:"));
    assert!(top[1].0 == 30_000 && top[1].1.contains(": cache (peak_tree.c:"));
    assert_eq!(
        top[2],
        (1000, "in 1 place, below massif's threshold (1.00%)")
    );
    let leaf: Vec<(u64, &str)> = tree.kids[0]
        .kids
        .iter()
        .map(|k| (k.bytes, k.label.as_str()))
        .collect();
    assert!(leaf[0].0 == 100_000 && leaf[0].1.contains(": load_table ("));
    assert!(leaf[1].0 == 40_000 && leaf[1].1.contains(": load_index ("));
    // Time is in bytes allocated plus bytes freed: 221064 + (221064 - 64).
    let last = snaps.last().unwrap();
    assert_eq!((last.1, last.2), (2 * 221_064 - 64, 64));
    let (_, end_tree) = last.3.as_ref().expect("the end is detailed");
    assert_sums(end_tree);
    assert!(end_tree.kids[0].label.contains(": after (peak_tree.c:"));

    // What ms_print makes of it.
    let out = ms_print(&file);
    assert!(
        out.contains(&format!(
            "Detailed snapshots: [{peak_n} (peak), {}]",
            last.0
        )),
        "{out}"
    );
    assert_eq!(ms_print_row(&out, *peak_n).1, commas(PEAK), "{out}");
    assert!(
        out.contains("100.00% (171,000B) (heap allocation functions)"),
        "{out}"
    );
    for (bytes, f) in [
        (140_000, "leaf"),
        (100_000, "load_table"),
        (40_000, "load_index"),
        (30_000, "cache"),
    ] {
        assert!(
            printed_node(&out, bytes, f).is_some(),
            "{f} {bytes}B:\n{out}"
        );
    }
    assert!(
        out.contains("->00.58% (1,000B) in 1+ places, all below ms_print's threshold"),
        "{out}"
    );
    assert!(out.contains("->100.00% (64B) 0x"), "{out}");
}

#[test]
fn massif_of_heap_c_names_big_peak() {
    let (t, log, r) = traced("heap");
    let file = t.dir.path().join("massif.out");
    export_text(&log, "massif", &file);
    let out = ms_print(&file);
    let peak = r.summary("peak_heap_bytes");
    assert_eq!(peak, 10_485_760);
    assert!(
        out.lines()
            .any(|l| l.contains("(10,485,760B) 0x") && l.contains(": big_peak (heap.c:")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// DHAT, loaded by dh_view.html in headless Chromium
// ---------------------------------------------------------------------------------------

/// The DHAT viewer valgrind ships (Debian: /usr/libexec/valgrind).
fn dh_view_dir() -> PathBuf {
    [
        "/usr/libexec/valgrind",
        "/usr/lib/valgrind",
        "/usr/local/libexec/valgrind",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|d| d.join("dh_view.js").is_file() && d.join("dh_view.html").is_file())
    .unwrap_or_else(|| missing_tool("valgrind's dh_view.html", "valgrind"))
}

/// The page that loads `json` through dh_view's own file input.
fn loader_page(json: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="UTF-8"><link rel="stylesheet" href="dh_view.css">
<script src="dh_view.js"></script></head>
<body onload="onLoad(); give()">
<script id="export" type="application/json">{}</script>
<script>
function give() {{
  const el = document.getElementById("export");
  const text = el.textContent;
  el.remove();
  const dt = new DataTransfer();
  dt.items.add(new File([text], "memtrace.dhat.json", {{type: "application/json"}}));
  gInput.files = dt.files;
  gInput.onchange();
}}
</script></body></html>"#,
        json.replace("</", "<\\/")
    )
}

/// The text dh_view shows for `json` (the DOM after its scripts ran, tags stripped),
/// and the DOM itself.
fn dh_view(json: &str, dir: &Path) -> (String, String) {
    let viewer = dh_view_dir();
    let site = dir.join("dh_view");
    std::fs::create_dir_all(&site).unwrap();
    for f in ["dh_view.js", "dh_view.css"] {
        std::fs::copy(viewer.join(f), site.join(f)).unwrap();
    }
    let page = site.join("load.html");
    std::fs::write(&page, loader_page(json)).unwrap();
    let out = chromium(&browser(), &page, "", &["--lang=en-US", "--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ");
    (text, dom)
}

/// The program point blocks of dh_view's text: each `PP ... {` to its closing `}`.
fn program_points(text: &str) -> Vec<String> {
    let mut pps = Vec::new();
    let mut cur: Option<String> = None;
    for l in text.lines() {
        let body = l.trim_start_matches(['│', '├', '└', '─', '▼', '▶', ' ']);
        if body.starts_with("PP ") {
            if let Some(p) = cur.take() {
                pps.push(p);
            }
            cur = Some(String::new());
        }
        if let Some(p) = &mut cur {
            p.push_str(body);
            p.push('\n');
        }
    }
    pps.extend(cur);
    pps
}

/// Sums of a DHAT document's program points' field.
fn pp_sum(d: &Value, field: &str) -> u64 {
    d["pps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_u64().unwrap())
        .sum()
}

#[test]
fn dhat_is_loaded_by_dh_view() {
    let (t, log, r) = traced("peak_tree");
    let file = t.dir.path().join("dhat.json");
    let json = export_text(&log, "dhat", &file);
    let d: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["dhatFileVersion"], 2);
    assert_eq!(d["mode"], "heap");
    assert_eq!(d["ftbl"][0], "[root]");
    assert_eq!(pp_sum(&d, "tb"), 221_064);
    assert_eq!(pp_sum(&d, "tbk"), 18);
    assert_eq!(pp_sum(&d, "gb"), PEAK);
    assert_eq!(pp_sum(&d, "gbk"), 16);
    assert_eq!((pp_sum(&d, "eb"), pp_sum(&d, "ebk")), (64, 1));
    assert_eq!(d["pid"], r.process("pid").clone());

    let (text, dom) = dh_view(&json, t.dir.path());
    assert!(
        !dom.contains("class=\"error\""),
        "dh_view shows an error:\n{text}"
    );
    assert!(
        !text.contains("Load a DHAT data file to begin"),
        "not loaded:\n{text}"
    );
    assert!(text.contains("Mode:    heap"), "{text}");
    assert!(
        text.contains("Total:     221,064 bytes (100%") && text.contains("in 18 blocks (100%"),
        "{text}"
    );
    assert!(
        text.contains("At t-gmax: 171,000 bytes (100%) in 16 blocks (100%)"),
        "{text}"
    );
    assert!(
        text.contains("At t-end:  64 bytes (100%) in 1 blocks (100%)"),
        "{text}"
    );
    let pps = program_points(&text);
    let pp = |bytes: &str, f: &str| {
        pps.iter()
            .find(|p| {
                p.contains(&format!("Total:     {bytes} bytes")) && p.contains(&format!(": {f} ("))
            })
            .unwrap_or_else(|| panic!("no PP of {bytes} bytes through {f}:\n{text}"))
    };
    let table = pp("100,000", "load_table");
    assert!(table.contains("in 4 blocks") && table.contains("Max:       100,000 bytes"));
    assert!(table.contains("At t-gmax: 100,000 bytes"), "{table}");
    assert!(pp("40,000", "load_index").contains("At t-gmax: 40,000 bytes"));
    assert!(pp("140,000", "leaf").contains("in 5 blocks"));
    assert!(pp("30,000", "cache").contains("At t-gmax: 30,000 bytes"));
    assert!(pp("1,000", "tiny").contains("in 10 blocks"));
    assert!(pp("50,000", "after").contains("At t-gmax: 0 bytes"));
    assert!(pp("64", "after").contains("At t-end:  64 bytes (100%)"));
}

#[test]
fn dhat_totals_equal_the_report() {
    let (t, log, r) = traced("heap");
    let file = t.dir.path().join("dhat.json");
    let d: Value = serde_json::from_str(&export_text(&log, "dhat", &file)).unwrap();
    assert_eq!(pp_sum(&d, "tb"), r.summary("bytes_allocated"));
    assert_eq!(pp_sum(&d, "tbk"), r.summary("allocations"));
    assert_eq!(pp_sum(&d, "gb"), r.summary("peak_heap_bytes"));
    assert_eq!(pp_sum(&d, "eb"), r.summary("leaked_heap_bytes"));
    assert_eq!(pp_sum(&d, "ebk"), r.summary("leaked_heap_blocks"));
    for p in d["pps"].as_array().unwrap() {
        let (mb, gb, eb) = (p["mb"].as_u64(), p["gb"].as_u64(), p["eb"].as_u64());
        assert!(mb >= gb && mb >= eb, "{p}");
    }
    let (text, dom) = dh_view(&serde_json::to_string(&d).unwrap(), t.dir.path());
    assert!(
        !dom.contains("class=\"error\""),
        "dh_view shows an error:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "Total:     {} bytes (100%",
            commas(r.summary("bytes_allocated"))
        )),
        "{text}"
    );
}

/// A truncated log is exported as far as it goes (exit 3, as `report`), and the viewers
/// still read the file; an unreadable one is an error (exit 2) and writes nothing.
#[test]
fn truncated_and_unreadable_logs() {
    let (t, log, _) = traced("peak_tree");
    let bytes = std::fs::read(&log).unwrap();
    let cut = t.dir.path().join("cut.mtr");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut cmd = memtrace();
    cmd.args(["report", "--format", "json", "--top", "1000000"])
        .arg(&cut);
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(o.status.code(), Some(3), "report of the cut log");
    let summary: Value = serde_json::from_slice::<Value>(&o.stdout).unwrap()["summary"].clone();
    let figure = |k: &str| summary[k].as_u64().unwrap();
    for format in ["massif", "dhat"] {
        let out = t.dir.path().join(format!("cut.{format}"));
        let mut cmd = memtrace();
        cmd.args(["export", "--format", format])
            .arg(&cut)
            .arg("-o")
            .arg(&out);
        let o = output_with_timeout(&mut cmd, TIMEOUT);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{format}: {stderr}");
        assert!(stderr.contains("is truncated"), "{stderr}");
        let text = std::fs::read_to_string(&out).unwrap();
        if format == "massif" {
            ms_print(&out);
            let max = snapshots(&text).iter().map(|s| s.2).max();
            assert_eq!(max, Some(figure("peak_heap_bytes")));
        } else {
            let d: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(pp_sum(&d, "tb"), figure("bytes_allocated"));
            assert_eq!(pp_sum(&d, "gb"), figure("peak_heap_bytes"));
        }
    }
    let junk = t.dir.path().join("junk.mtr");
    std::fs::write(&junk, b"not a log").unwrap();
    for format in ["massif", "dhat"] {
        let out = t.dir.path().join("junk.out");
        let mut cmd = memtrace();
        cmd.args(["export", "--format", format])
            .arg(&junk)
            .arg("-o")
            .arg(&out);
        let o = output_with_timeout(&mut cmd, TIMEOUT);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{format}: {stderr}");
        assert!(
            stderr.contains("junk.mtr") && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(!out.exists(), "no output file on failure");
    }
}
