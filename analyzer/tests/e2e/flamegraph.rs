//! `memtrace flamegraph` and `memtrace diff` on fixtures with exact figures: `heap.c`
//! (leaks, peak, allocated), `temporary.c` (temporary allocations), `gate.c` (leaks on
//! demand, for diffs) and `reach.c` (leaks of every reachability kind, `--leak-kinds`). Every SVG is parsed by Python's XML parser; the assertions are on
//! the title (the run's totals), the frames' tooltips (`leak_malloc (300 bytes, 11.49%)`:
//! the number) and the embedded search script.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

/// What Python's `xml.etree` reads out of an SVG.
struct Svg {
    v: Value,
}

impl Svg {
    /// Parses the SVG at `path` (panics, with the file, unless it is well-formed SVG).
    fn parse(path: &Path) -> Svg {
        let script = r#"
import json, sys, xml.etree.ElementTree as ET
NS = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
texts = {t.get("id"): "".join(t.itertext()) for t in root.iter(NS + "text") if t.get("id")}
frames = []
for g in root.iter(NS + "g"):
    t = g.find(NS + "title")
    if t is not None:
        frames.append(t.text)
scripts = "".join("".join(s.itertext()) for s in root.iter(NS + "script"))
print(json.dumps({"tag": root.tag, "texts": texts, "frames": frames,
                  "search": "function search(" in scripts}))
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "python's XML parser rejects {}: {}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tag"], "{http://www.w3.org/2000/svg}svg", "root element");
        Svg { v }
    }

    /// The text of the `<text id=ID>` element ("" if none).
    fn text(&self, id: &str) -> &str {
        self.v["texts"][id].as_str().unwrap_or("")
    }

    fn title(&self) -> &str {
        self.text("title")
    }

    fn frames(&self) -> Vec<&str> {
        self.v["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }

    /// The embedded JavaScript has its search function.
    fn has_search(&self) -> bool {
        self.v["search"] == true
    }

    /// The weight the tooltips give function `name` (`name (1,234 bytes, 5.00%)`),
    /// summed over its frames, with the unit; `None` if it has no frame.
    fn weight(&self, name: &str) -> Option<(u64, String)> {
        let prefix = format!("{name} (");
        let mut found = None;
        for f in self.frames() {
            let Some(rest) = f.strip_prefix(&prefix) else {
                continue;
            };
            let (num, rest) = rest.split_once(' ').expect("a number and a unit");
            let unit = rest.split([',', ')']).next().unwrap().to_owned();
            let n: u64 = num.replace(',', "").parse().expect("a number");
            let e = found.get_or_insert((0, unit));
            e.0 += n;
        }
        found
    }

    /// Asserts the tooltips give `name` exactly `n` of `unit`.
    fn assert_weight(&self, name: &str, n: u64, unit: &str) {
        assert_eq!(
            self.weight(name),
            Some((n, unit.to_owned())),
            "frames of {name}; all frames: {:#?}",
            self.frames()
        );
    }
}

/// `memtrace ARGS` in `dir`.
fn memtrace_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = memtrace();
    cmd.current_dir(dir).args(args);
    output_with_timeout(&mut cmd, TIMEOUT)
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        describe(out)
    );
}

/// Runs fixture `name` with `args` under the preload; returns the run (its directory
/// must outlive the log) and the log.
fn traced(name: &str, args: &[&str]) -> (Traced, PathBuf) {
    let t = trace(name, args);
    t.assert_exit(0);
    let log = t.only_log();
    (t, log)
}

/// `memtrace flamegraph --metric METRIC LOG -o FILE`, asserting exit 0, parsed.
fn flamegraph(log: &Path, metric: &str) -> Svg {
    let dir = log.parent().unwrap();
    let svg = dir.join(format!("{metric}.svg"));
    let out = memtrace_in(
        dir,
        &[
            "flamegraph",
            "--metric",
            metric,
            "-o",
            svg.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    Svg::parse(&svg)
}

/// heap.c's leaks: the title states the totals, each leaking function's frame its
/// bytes, and the SVG is interactive (search script).
#[test]
fn flamegraph_leaks_of_heap() {
    let (_t, log) = traced("heap", &[]);
    let svg = flamegraph(&log, "leaked");
    assert!(
        svg.title().starts_with("heap (pid ")
            && svg.title().ends_with("): 2,612 bytes leaked in 11 blocks"),
        "title: {}",
        svg.title()
    );
    assert!(
        svg.text("subtitle").contains("at exit"),
        "{}",
        svg.text("subtitle")
    );
    for (f, bytes) in [
        ("leak_malloc", 300),
        ("leak_calloc", 120),
        ("leak_realloc_chain", 200),
        ("leak_aligned", 1736),
        ("leak_strdup", 16),
        ("leak_reallocarray", 240),
        ("main", 2612),
        ("all", 2612),
    ] {
        svg.assert_weight(f, bytes, "bytes");
    }
    assert!(
        svg.frames().contains(&"leak_malloc (300 bytes, 11.49%)"),
        "{:#?}",
        svg.frames()
    );
    assert!(svg.has_search(), "no search function in the SVG");
    assert!(svg.weight("big_peak").is_none(), "big_peak leaks nothing");
}

/// Every metric renders, with its own total in the title and its unit in the tooltips;
/// without -o the graph goes to memtrace-METRIC.svg, with `-o -` to stdout.
#[test]
fn flamegraph_every_metric() {
    let (t, log) = traced("heap", &[]);

    let peak = flamegraph(&log, "peak");
    assert!(
        peak.title()
            .ends_with("): peak of 10,485,760 bytes live on the heap"),
        "{}",
        peak.title()
    );
    peak.assert_weight("big_peak", 10_485_760, "bytes");

    let allocated = flamegraph(&log, "allocated");
    assert!(
        allocated
            .title()
            .ends_with("): 10,492,875 bytes allocated in 22 allocations"),
        "{}",
        allocated.title()
    );
    allocated.assert_weight("big_peak", 10_485_760, "bytes");
    // 300 of 10,492,875 bytes: narrower than 0.01%, left out (as flamegraph.pl does).
    assert!(allocated.weight("leak_malloc").is_none());

    let allocations = flamegraph(&log, "allocations");
    assert!(
        allocations.title().ends_with("): 22 allocations"),
        "{}",
        allocations.title()
    );
    allocations.assert_weight("leak_malloc", 3, "allocations");
    allocations.assert_weight("all", 22, "allocations");
    assert!(allocations.has_search());

    let (_tt, tlog) = traced("temporary", &[]);
    let temporary = flamegraph(&tlog, "temporary");
    assert!(
        temporary
            .title()
            .ends_with("): 2,111 temporary allocations (38,888 bytes)"),
        "{}",
        temporary.title()
    );
    for (f, n) in [
        ("temp_site", 100),
        ("pair_second_site", 10),
        ("thread_temp_site", 2000),
        ("final_site", 1),
    ] {
        temporary.assert_weight(f, n, "allocations");
    }
    assert!(temporary.weight("pair_first_site").is_none());
    assert!(temporary.weight("kept_site").is_none());

    // Default output name, in the current directory.
    let out = memtrace_in(t.dir.path(), &["flamegraph", log.to_str().unwrap()]);
    assert_code(&out, 0);
    let default = t.dir.path().join("memtrace-leaked.svg");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memtrace-leaked.svg"),
        "{}",
        describe(&out)
    );
    Svg::parse(&default).assert_weight("leak_malloc", 300, "bytes");

    // `-o -`: stdout.
    let out = memtrace_in(
        t.dir.path(),
        &[
            "flamegraph",
            "--metric",
            "allocations",
            "-o",
            "-",
            log.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    let stdout = t.dir.path().join("stdout.svg");
    std::fs::write(&stdout, &out.stdout).unwrap();
    Svg::parse(&stdout).assert_weight("leak_malloc", 3, "allocations");
}

/// A run that leaks nothing gives a valid SVG that says so, and exit 0; a missing log
/// is exit 2 with a message naming it; an unknown metric is a usage error.
#[test]
fn flamegraph_empty_and_bad_input() {
    let (t, log) = traced("gate", &[]);
    let svg = flamegraph(&log, "leaked");
    assert!(
        svg.title().ends_with("): 0 bytes leaked in 0 blocks"),
        "{}",
        svg.title()
    );
    assert_eq!(svg.text("message"), "no leaked bytes in this run");
    assert!(svg.frames().is_empty());

    let dir = t.dir.path();
    let out = memtrace_in(dir, &["flamegraph", "-o", "x.svg", "missing.mtr"]);
    assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("memtrace: error:") && err.contains("missing.mtr"),
        "{err}"
    );
    assert!(!dir.join("x.svg").exists(), "no SVG for a missing log");

    let out = memtrace_in(dir, &["diff", log.to_str().unwrap(), "missing-new.mtr"]);
    assert_code(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing-new.mtr"),
        "{}",
        describe(&out)
    );

    let out = memtrace_in(
        dir,
        &["flamegraph", "--metric", "bogus", log.to_str().unwrap()],
    );
    assert_code(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{}",
        describe(&out)
    );
}

/// `--leak-kinds` on reach.c, classified by `memtrace run`: the leaked bytes of the chosen
/// kinds only, exactly the fixture header's (`definite`: 80 bytes, plain_lost 48 and
/// lost_list 32), in the title, the root frame and each frame's tooltip, which name the
/// kinds; without it, every leaked byte, the subtitle giving each kind's. `memtrace diff`
/// takes the option too. A log that was not classified (plain LD_PRELOAD) is drawn whole,
/// with a warning; another metric refuses the option.
#[test]
fn flamegraph_by_leak_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut run = memtrace();
    run.current_dir(d)
        .args(["run", "-o", "reach.mtr", "--"])
        .arg(fixture("reach"));
    assert_code(&output_with_timeout(&mut run, TIMEOUT), 0);
    each_kind_weighs_its_bytes(d);
    frames_and_subtitle_name_the_kinds(d);
    diff_takes_the_option_other_metrics_refuse_it(d);
    unclassified_log_drawn_whole();
}

/// `memtrace flamegraph -o NAME ARGS reach.mtr` in `d`, which must succeed: the SVG,
/// parsed, and the run's output.
fn reach_graph(d: &Path, args: &[&str], name: &str) -> (Svg, Output) {
    let mut a = vec!["flamegraph", "-o", name];
    a.extend_from_slice(args);
    a.push("reach.mtr");
    let out = memtrace_in(d, &a);
    assert_code(&out, 0);
    (Svg::parse(&d.join(name)), out)
}

/// Each `--leak-kinds` weighs exactly its kinds' bytes, in the title, the root and main.
fn each_kind_weighs_its_bytes(d: &Path) {
    for (kinds, total, unit, title) in [
        (
            "definite",
            80,
            "bytes definitely lost",
            "80 bytes in 2 blocks definitely lost",
        ),
        (
            "definite,indirect",
            176,
            "bytes definitely or indirectly lost",
            "176 bytes in 5 blocks definitely or indirectly lost",
        ),
        (
            "possible",
            128,
            "bytes possibly lost",
            "128 bytes in 1 block possibly lost",
        ),
        (
            "reachable",
            80,
            "bytes still reachable",
            "80 bytes in 2 blocks still reachable",
        ),
        ("all", 384, "bytes", "384 bytes leaked in 8 blocks"),
    ] {
        let (svg, _) = reach_graph(d, &["--leak-kinds", kinds], &format!("{kinds}.svg"));
        assert!(
            svg.title().ends_with(&format!("): {title}")),
            "{kinds}: {}",
            svg.title()
        );
        svg.assert_weight("all", total, unit);
        svg.assert_weight("main", total, unit);
    }
}

/// The frames' tooltips and the subtitle name the kinds drawn; without the option,
/// every leaked byte, the subtitle giving each kind's.
fn frames_and_subtitle_name_the_kinds(d: &Path) {
    let (svg, out) = reach_graph(d, &["--leak-kinds", "definite"], "d.svg");
    svg.assert_weight("plain_lost", 48, "bytes definitely lost");
    svg.assert_weight("lost_list", 32, "bytes definitely lost");
    assert!(
        svg.weight("kept_by_global").is_none(),
        "{:#?}",
        svg.frames()
    );
    assert!(
        svg.text("subtitle")
            .contains("(--leak-kinds definite; 384 bytes leaked in all)"),
        "{}",
        svg.text("subtitle")
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flame graph of bytes definitely lost"),
        "{}",
        describe(&out)
    );
    let (svg, _) = reach_graph(d, &["--leak-kinds", "reachable"], "r.svg");
    svg.assert_weight("kept_by_global", 80, "bytes still reachable");
    svg.assert_weight("kept_child", 16, "bytes still reachable");
    let (svg, _) = reach_graph(d, &[], "leaked.svg");
    svg.assert_weight("all", 384, "bytes");
    assert!(
        svg.text("subtitle").contains(
            "all kinds: definitely lost 80, indirectly lost 96, possibly lost 128, still reachable 80 bytes"
        ),
        "{}",
        svg.text("subtitle")
    );
}

/// `memtrace diff --leak-kinds` compares the chosen kinds; another metric than
/// `leaked`, and an unknown kind, are refused.
fn diff_takes_the_option_other_metrics_refuse_it(d: &Path) {
    let out = memtrace_in(
        d,
        &[
            "diff",
            "--leak-kinds",
            "definite",
            "--format",
            "json",
            "reach.mtr",
            "reach.mtr",
        ],
    );
    assert_code(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["old_total"].as_u64(), doc["new_total"].as_u64()),
        (Some(80), Some(80))
    );
    assert_eq!(doc["leak_kinds"], serde_json::json!(["definite"]));
    assert_eq!(diff_entry(&doc, "plain_lost")["new"], 48);
    let out = memtrace_in(
        d,
        &[
            "flamegraph",
            "--metric",
            "peak",
            "--leak-kinds",
            "definite",
            "reach.mtr",
        ],
    );
    assert_code(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--metric leaked only"),
        "{}",
        describe(&out)
    );
    let out = memtrace_in(d, &["flamegraph", "--leak-kinds", "lost", "reach.mtr"]);
    assert_code(&out, 2);
}

/// Not classified: every leaked byte, and a warning.
fn unclassified_log_drawn_whole() {
    // A log whose leaks were not classified: the scan at exit turned off.
    let t = {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let mut cmd = traced_command("reach", dir.path(), "%e.%p.mtr");
        cmd.env("MEMTRACE_REACH", "0");
        let output = output_with_timeout(&mut cmd, TIMEOUT);
        Traced { dir, output }
    };
    t.assert_exit(0);
    let log = t.only_log();
    let svg_path = t.dir.path().join("u.svg");
    let out = memtrace_in(
        t.dir.path(),
        &[
            "flamegraph",
            "--leak-kinds",
            "definite",
            "-o",
            svg_path.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("were not classified by reachability"),
        "{}",
        describe(&out)
    );
    let svg = Svg::parse(&svg_path);
    svg.assert_weight("all", 384, "bytes");
    assert!(
        svg.text("subtitle").contains("not classified"),
        "{}",
        svg.text("subtitle")
    );
}

/// The stack of a JSON diff entry whose innermost frame is `name`.
fn diff_entry<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stack"].as_array().unwrap().last().unwrap() == name)
        .unwrap_or_else(|| panic!("no stack ending in {name}: {doc:#}"))
}

/// `gate items 1` against `gate items 3 cache`: leak_item grew by exactly 200 bytes,
/// leak_cache by 64 (new); totals 100 and 364; the differential flame graph is
/// well-formed and draws leak_item at its new weight. The text table says the same,
/// and the reverse diff puts the shrinking stack last.
#[test]
fn diff_of_gate_runs() {
    let (t_old, old) = traced("gate", &["items", "1"]);
    let (_t_new, new) = traced("gate", &["items", "3", "cache"]);
    let dir = t_old.dir.path();
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());

    let out = memtrace_in(dir, &["diff", "--format", "json", "-o", "diff.svg", o, n]);
    assert_code(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["metric"], "leaked");
    assert_eq!(doc["old_total"], 100, "{doc:#}");
    assert_eq!(doc["new_total"], 364, "{doc:#}");
    assert_eq!(doc["delta"], 264, "{doc:#}");
    let item = diff_entry(&doc, "leak_item");
    assert_eq!(
        (&item["old"], &item["new"], &item["delta"]),
        (&100.into(), &300.into(), &200.into()),
        "{doc:#}"
    );
    let cache = diff_entry(&doc, "leak_cache");
    assert_eq!(
        (&cache["old"], &cache["new"], &cache["delta"]),
        (&0.into(), &64.into(), &64.into()),
        "{doc:#}"
    );
    let stacks = doc["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 2, "{doc:#}");
    assert_eq!(
        stacks[0]["stack"].as_array().unwrap().last().unwrap(),
        "leak_item"
    );
    let frames: Vec<&str> = item["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let main = frames.iter().position(|f| *f == "main").expect("main");
    assert_eq!(main + 1, frames.len() - 1, "outermost first: {frames:?}");

    let svg = Svg::parse(&dir.join("diff.svg"));
    assert!(
        svg.title().contains(" 100 → ")
            && svg.title().contains(" 364 (+264)")
            && svg.title().starts_with("leaked bytes: gate (pid "),
        "{}",
        svg.title()
    );
    svg.assert_weight("leak_item", 300, "bytes");
    svg.assert_weight("leak_cache", 64, "bytes");
    assert!(svg.has_search());

    // Text, with --top.
    let out = memtrace_in(dir, &["diff", "--top", "1", o, n]);
    assert_code(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("old: 100 bytes"), "{text}");
    assert!(text.contains("new: 364 bytes"), "{text}");
    assert!(text.contains("change: +264 bytes"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(" <- ")).collect();
    assert_eq!(rows.len(), 1, "{text}");
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        ["+200", "100", "300", "leak_item", "<-"],
        "{text}"
    );
    assert!(text.contains("1 more stacks"), "{text}");

    // The other way round: leak_item shrank, last.
    let out = memtrace_in(dir, &["diff", "--format", "json", n, o]);
    assert_code(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["delta"], -264);
    let last = doc["stacks"].as_array().unwrap().last().unwrap();
    assert_eq!(last["delta"], -200, "{doc:#}");

    // A new run with no leaks: the differential graph says so.
    let (_t_empty, empty) = traced("gate", &[]);
    let out = memtrace_in(
        dir,
        &["diff", "-o", "empty.svg", o, empty.to_str().unwrap()],
    );
    assert_code(&out, 0);
    let svg = Svg::parse(&dir.join("empty.svg"));
    assert!(
        svg.text("message")
            .starts_with("no leaked bytes in the new run"),
        "{}",
        svg.text("message")
    );
}
