//! `memtrace export --format heaptrack`, read by heaptrack's own `heaptrack_print`
//! (Debian's `heaptrack`; required: missing, the tests fail naming the package).
//!
//! heaptrack_print's summary ("calls to allocation functions", "peak heap memory
//! consumption", "total memory leaked") must equal memtrace's report and the fixture's
//! header, and its exact per-stack figures (its flame-graph stacks, in bytes and calls)
//! must add up to them. The fixtures: `peak_tree.c` (a peak of 171000 bytes held by
//! leaf <- load_table, leaf <- load_index, cache and tiny; 18 allocations; 64 bytes
//! leaked by after), `heap.c` (realloc chains, aligned allocations, calloc, strdup:
//! 22 allocations, a 10 MiB peak, 2612 bytes leaked) and `reach.c` (384 bytes in 8
//! blocks live at exit, whatever their reachability); `fork_inherit.c`'s child, whose
//! inherited blocks are allocations at its start; `heap.c` sampled (`--sample 64`); and
//! `cpp.cpp` (demangled C++ names, new and new[]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::util::{
    TIMEOUT, clean_command, fixture, memtrace, output_with_timeout, report_with, require_tool,
    trace,
};

const NO_ARGS: &[&str] = &[];

/// The figures both tools state: allocations, peak bytes, leaked bytes.
#[derive(Debug, PartialEq, Eq)]
struct Figures {
    allocations: u64,
    peak: u64,
    leaked: u64,
}

/// The report's figures, the function of its largest heap leak, and the kernel's
/// peak RSS (bytes; 0 without samples).
struct Reported {
    figures: Figures,
    top_leak: String,
    peak_rss: u64,
}

/// A number of bytes as heaptrack_print writes it: whole bytes up to 1000, then
/// two decimals and K, M, G, T (powers of 1000).
fn heaptrack_bytes(b: u64) -> String {
    if b <= 1000 {
        return format!("{b}B");
    }
    let mut v = b as f64;
    let mut unit = 0;
    while unit < 4 && v > 1000.0 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.2}{}", ["B", "K", "M", "G", "T"][unit])
}

/// The report's figures of `log`.
fn reported(log: &Path) -> Reported {
    let r = report_with(log, &["--top", "1000000"]);
    r.assert_complete();
    let figures = Figures {
        allocations: r.summary("allocations"),
        peak: r.summary("peak_heap_bytes"),
        leaked: r.summary("leaked_heap_bytes"),
    };
    let heap = r.v["leaks"].as_array().unwrap().iter();
    let top = heap
        .filter(|l| l["kind"] == "heap")
        .max_by_key(|l| l["bytes"].as_u64().unwrap())
        .expect("a heap leak");
    Reported {
        figures,
        top_leak: top["stack"][0]["function"].as_str().unwrap().to_owned(),
        peak_rss: r.v["kernel"]["peak_rss"]["rss"].as_u64().unwrap_or(0),
    }
}

/// `memtrace export --format heaptrack LOG -o FILE`, asserting success; its stderr.
fn export(log: &Path, file: &Path) -> String {
    let mut cmd = memtrace();
    cmd.args(["export", "--format", "heaptrack"])
        .arg(log)
        .arg("-o")
        .arg(file);
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{cmd:?}: {:?}\n{stderr}", o.status);
    assert!(o.stdout.is_empty(), "nothing on stdout with -o");
    stderr
}

/// Runs fixture `name`, exports its log to `file_name` in the run's directory; the
/// report's figures and the export's path.
fn exported(name: &str, file_name: &str) -> (crate::util::Traced, Reported, PathBuf) {
    let t = trace(name, NO_ARGS);
    t.assert_exit(0);
    let log = t.only_log();
    let r = reported(&log);
    let file = t.dir.path().join(file_name);
    let stderr = export(&log, &file);
    assert!(stderr.is_empty(), "{stderr}");
    (t, r, file)
}

/// `heaptrack_print ARGS FILE`'s stdout, asserting it succeeded and did not complain.
fn heaptrack_print(file: &Path, args: &[&str]) -> String {
    let tool = require_tool("heaptrack_print", "heaptrack");
    let mut cmd = clean_command(&tool);
    cmd.args(args).arg(file);
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{cmd:?}: {:?}\n{stderr}", o.status);
    assert!(
        stderr.trim().is_empty(),
        "heaptrack_print complained:\n{stderr}"
    );
    assert!(
        !stdout.contains("failed to parse") && stdout.contains("finished reading file"),
        "{stdout}"
    );
    stdout
}

/// The value after `label: ` in heaptrack_print's summary, up to a space.
fn summary_value<'a>(text: &'a str, label: &str) -> &'a str {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(label).and_then(|l| l.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {label:?} in heaptrack_print's output:\n{text}"));
    line.split(' ').next().unwrap()
}

/// heaptrack_print's flame-graph stacks of one cost type: `outer;...;inner; WEIGHT`
/// lines, as stack (function names, outermost first) to weight, summed.
fn flame(file: &Path, cost: &str) -> HashMap<String, u64> {
    let out = file.with_extension(format!("{cost}.folded"));
    let o = out.to_str().unwrap();
    heaptrack_print(file, &["--flamegraph-cost-type", cost, "-F", o]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut m = HashMap::new();
    for line in text.lines() {
        let (stack, w) = line.rsplit_once(' ').unwrap();
        let names: Vec<&str> = stack
            .split(';')
            .filter(|f| !f.is_empty())
            .map(|f| f.split(" (").next().unwrap())
            .collect();
        *m.entry(names.join(";")).or_default() += w.parse::<u64>().unwrap();
    }
    m
}

/// The exact figures of heaptrack_print's flame graphs: allocations (calls), peak and
/// leaked (bytes), each summed over every stack.
fn flame_figures(file: &Path) -> Figures {
    let sum = |c: &str| flame(file, c).values().sum::<u64>();
    Figures {
        allocations: sum("allocations"),
        peak: sum("peak"),
        leaked: sum("leaked"),
    }
}

/// heaptrack_print's summary, asserted equal to `f` as it writes them.
fn assert_summary(text: &str, f: &Figures) {
    let calls = summary_value(text, "calls to allocation functions");
    assert_eq!(calls, f.allocations.to_string(), "{text}");
    let peak = summary_value(text, "peak heap memory consumption");
    assert_eq!(peak, heaptrack_bytes(f.peak), "{text}");
    let leaked = summary_value(text, "total memory leaked");
    assert_eq!(leaked, heaptrack_bytes(f.leaked), "{text}");
}

/// The function of heaptrack_print's first leak (`-l`): the line after
/// "BYTES leaked over N calls from".
fn top_leak(text: &str) -> String {
    let leaks = text
        .split("MEMORY LEAKS\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no MEMORY LEAKS in:\n{text}"));
    let mut lines = leaks.lines();
    let head = lines.next().unwrap();
    assert!(head.contains(" leaked over "), "{head}");
    lines.next().unwrap().trim().to_owned()
}

#[test]
fn heaptrack_print_reads_peak_tree() {
    let (_t, r, file) = exported("peak_tree", "heaptrack.peak_tree.zst");
    let f = r.figures;
    let stated = Figures {
        allocations: 18,
        peak: 171_000,
        leaked: 64,
    };
    assert_eq!(f, stated, "the report states the fixture's figures");
    assert_eq!(
        &std::fs::read(&file).unwrap()[..4],
        b"\x28\xb5\x2f\xfd",
        "zstd"
    );

    let text = heaptrack_print(&file, &["-l", "1"]);
    assert_summary(&text, &f);
    assert!(text.contains("Debuggee command was: "), "{text}");
    assert_eq!(r.top_leak, "after");
    assert_eq!(top_leak(&text), r.top_leak);
    assert_eq!(flame_figures(&file), f);
    // Under the bare preload no kernel samples: no RSS.
    assert_eq!(r.peak_rss, 0);
    let rss = summary_value(&text, "peak RSS (including heaptrack overhead)");
    assert_eq!(rss, "0B", "{text}");

    // The peak's stacks, each exactly (heaptrack stops a stack at main).
    let peak = flame(&file, "peak");
    for (stack, bytes) in [
        ("main;load_table;leaf", 100_000),
        ("main;load_index;leaf", 40_000),
        ("main;cache", 30_000),
        ("main;tiny", 1000),
    ] {
        assert_eq!(peak.get(stack), Some(&bytes), "{stack}: {peak:?}");
    }
    let leaked = flame(&file, "leaked");
    assert_eq!(leaked.get("main;after"), Some(&64), "{leaked:?}");
}

#[test]
fn heaptrack_print_reads_heap_gzip() {
    let (_t, r, file) = exported("heap", "heaptrack.heap.gz");
    let f = r.figures;
    let stated = Figures {
        allocations: 22,
        peak: 10_485_760,
        leaked: 2612,
    };
    assert_eq!(f, stated, "the report states the fixture's figures");
    assert_eq!(&std::fs::read(&file).unwrap()[..2], b"\x1f\x8b", "gzip");
    let text = heaptrack_print(&file, &["-l", "1"]);
    assert_summary(&text, &f);
    // The largest leak: valloc(1000) in leak_aligned (whose 1736 bytes are 4 blocks).
    assert_eq!(r.top_leak, "leak_aligned");
    assert_eq!(top_leak(&text), r.top_leak);
    assert_eq!(flame_figures(&file), f);
    // A realloc chain is a free and an allocation per step: only its last block leaks.
    let leaked = flame(&file, "leaked");
    let realloc: u64 = leaked
        .iter()
        .filter(|(s, _)| s.contains("leak_realloc_chain"))
        .map(|(_, w)| w)
        .sum();
    assert_eq!(realloc, 200, "{leaked:?}");
}

#[test]
fn heaptrack_print_reads_reach_plain() {
    let (_t, Reported { figures: f, .. }, file) = exported("reach", "heaptrack.reach.txt");
    assert_eq!((f.leaked, f.allocations), (384, 9), "{f:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("v 10400 3\n"), "{text}");
    let printed = heaptrack_print(&file, &["-l", "1"]);
    assert_summary(&printed, &f);
    assert_eq!(flame_figures(&file), f);
    // Per allocating function, whatever the blocks' reachability (lost_list's 4 nodes
    // are one site of heaptrack's, memtrace's report splits them by kind).
    let mut by_function: HashMap<String, u64> = HashMap::new();
    for (stack, w) in flame(&file, "leaked") {
        let function = stack.rsplit(';').next().unwrap().to_owned();
        *by_function.entry(function).or_default() += w;
    }
    by_function.retain(|_, w| *w != 0);
    let stated: HashMap<String, u64> = [
        ("lost_list", 128),
        ("plain_lost", 48),
        ("kept_by_global", 64),
        ("kept_child", 16),
        ("kept_by_interior", 128),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_function, stated);
}

/// A fork child under `memtrace run`: its inherited blocks are live from the start (in its peak and its
/// leaks, as the report has them), written as allocations since heaptrack has no
/// other way to hold them, which the export says; and its RSS, which `memtrace run`
/// samples.
#[test]
fn heaptrack_print_reads_a_fork_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "-o", "log.%p.mtr", "--"])
        .arg(fixture("fork_inherit"));
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(o.status.success(), "{cmd:?}: {o:?}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let child = stdout
        .lines()
        .find_map(|l| l.strip_prefix("child "))
        .unwrap_or_else(|| panic!("no child pid: {stdout}"));
    let log = dir.path().join(format!("log.{}.mtr", child.trim()));
    let r = reported(&log);
    // fork_inherit.c's header: 336 bytes in 5 blocks at exit, 3 of the child's own
    // allocations, 348 bytes in 3 blocks inherited.
    assert_eq!((r.figures.leaked, r.figures.allocations), (336, 3));
    let file = dir.path().join("child.zst");
    let stderr = export(&log, &file);
    assert!(stderr.contains("the 3 blocks inherited"), "{stderr}");
    let text = heaptrack_print(&file, &["-l", "1"]);
    let with_inherited = Figures {
        allocations: r.figures.allocations + 3,
        ..r.figures
    };
    assert_summary(&text, &with_inherited);
    assert_eq!(flame_figures(&file), with_inherited);
    assert_eq!(top_leak(&text), r.top_leak);
    // memtrace run samples the kernel's view: the peak RSS, in whole pages.
    assert!(
        r.peak_rss > 0 && r.peak_rss.is_multiple_of(4096),
        "{}",
        r.peak_rss
    );
    let rss = summary_value(&text, "peak RSS (including heaptrack overhead)");
    assert_eq!(rss, heaptrack_bytes(r.peak_rss), "{text}");
}

/// A sampled log: each sample's estimate (the report's) is that many allocations of
/// its share of the bytes, so heaptrack_print's figures are the report's estimates.
#[test]
fn heaptrack_print_reads_a_sampled_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "--sample", "64", "-o", "log.mtr", "--"])
        .arg(fixture("heap"));
    let o = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(o.status.success(), "{cmd:?}: {o:?}");
    let log = dir.path().join("log.mtr");
    let r = reported(&log);
    // heap.c's 10 MiB block is over the interval: always recorded, the peak exact.
    assert_eq!(r.figures.peak, 10_485_760);
    let file = dir.path().join("sampled.zst");
    let stderr = export(&log, &file);
    assert!(stderr.is_empty(), "{stderr}");
    let text = heaptrack_print(&file, &["-l", "1"]);
    assert_summary(&text, &r.figures);
    assert_eq!(flame_figures(&file), r.figures);
}

/// C++: demangled names (spaces, parentheses, `::`) in the sized strings; new and
/// new[] as allocations. cpp.cpp's header: 140 bytes leaked, leak_cpp(int)'s 100 the
/// largest, then ns::Widget::make()'s 40 (the allocations depend on libstdc++: the
/// report's).
#[test]
fn heaptrack_print_reads_cpp() {
    let (_t, r, file) = exported("cpp", "heaptrack.cpp.zst");
    assert_eq!(r.figures.leaked, 140);
    assert_eq!(r.top_leak, "leak_cpp(int)");
    let text = heaptrack_print(&file, &["-l", "1"]);
    assert_summary(&text, &r.figures);
    assert_eq!(top_leak(&text), r.top_leak);
    assert_eq!(flame_figures(&file), r.figures);
    let leaked = flame(&file, "leaked");
    assert_eq!(
        leaked.get("main;ns::Widget::make()"),
        Some(&40),
        "{leaked:?}"
    );
}
