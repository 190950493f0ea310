//! A fork child's leaks include what it inherited from its parent
//! (tests/fixtures/fork_inherit.c): its report replays the parent's log up to the fork,
//! so the parent's blocks it never frees are its leaks, classified by `memtrace run`'s
//! reachability scan, and its frees of them are ordinary frees. memcheck
//! (`--trace-children=yes`) is the oracle: valgrind must be installed (CI installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// memcheck's figures for one process: in use at exit, and (kind, function) -> (bytes,
/// blocks) from its loss records.
#[derive(Debug, Default)]
struct Memcheck {
    in_use: (u64, u64),
    kinds: BTreeMap<(String, String), (u64, u64)>,
}

fn num(s: &str) -> u64 {
    s.trim().replace(',', "").parse().unwrap()
}

/// Runs fixture `name` under memcheck following its children, and parses each process's
/// HEAP SUMMARY and loss records, by pid.
fn memcheck_tree(name: &str, args: &[&str]) -> BTreeMap<u64, Memcheck> {
    // memcheck is the oracle of the fork-inheritance tests: required, never skipped.
    let valgrind = require_valgrind();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(valgrind);
    cmd.current_dir(dir.path())
        .args([
            "--trace-children=yes",
            "--child-silent-after-fork=no",
            "--leak-check=full",
            "--show-leak-kinds=all",
        ])
        .arg(fixture(name))
        .args(args);
    let out = output_with_timeout(&mut cmd, std::time::Duration::from_secs(600));
    let text = String::from_utf8_lossy(&out.stderr);
    let mut by_pid: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("==") else {
            continue;
        };
        let Some((pid, line)) = rest.split_once("== ") else {
            continue;
        };
        if let Ok(pid) = pid.parse() {
            by_pid.entry(pid).or_default().push(line.trim());
        }
    }
    let mut procs = BTreeMap::new();
    for (pid, lines) in by_pid {
        let mut m = Memcheck::default();
        let mut it = lines.into_iter();
        while let Some(l) = it.next() {
            if let Some(rest) = l.strip_prefix("in use at exit:") {
                let (b, n) = rest.split_once("bytes in").unwrap();
                m.in_use = (num(b), num(n.split_whitespace().next().unwrap()));
                continue;
            }
            let Some((head, _)) = l.split_once(" in loss record ") else {
                continue;
            };
            let bytes = num(head.split_whitespace().next().unwrap());
            let blocks = num(head
                .split_once("bytes in ")
                .unwrap()
                .1
                .split_whitespace()
                .next()
                .unwrap());
            let kind = match head.rsplit_once(" are ").map(|x| x.1) {
                Some("definitely lost") => "definite",
                Some("indirectly lost") => "indirect",
                Some("possibly lost") => "possible",
                Some("still reachable") => "reachable",
                other => panic!("unknown kind {other:?} in {l}"),
            };
            let f = it
                .by_ref()
                .take_while(|l| l.starts_with("at ") || l.starts_with("by "))
                .filter_map(|l| l.split_once(": ").map(|x| x.1))
                .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
                .find(|f| f != "malloc")
                .unwrap_or_default();
            let e = m.kinds.entry((kind.to_owned(), f)).or_insert((0, 0));
            e.0 += bytes;
            e.1 += blocks;
        }
        procs.insert(pid, m);
    }
    procs
}

/// (kind, innermost function) -> (bytes, blocks), from a report's classified heap leaks.
fn memtrace_kinds(r: &Report) -> BTreeMap<(String, String), (u64, u64)> {
    let mut m = BTreeMap::new();
    for l in r.leaks("heap") {
        let f = l["stack"][0]["function"].as_str().unwrap_or("?").to_owned();
        let kinds = l["reachability"].as_object().expect("leaks are classified");
        for (kind, v) in kinds {
            let (b, n) = (v["bytes"].as_u64().unwrap(), v["count"].as_u64().unwrap());
            if n > 0 {
                let e = m.entry((kind.clone(), f.clone())).or_insert((0, 0));
                e.0 += b;
                e.1 += n;
            }
        }
    }
    m
}

/// `summary.leak_kinds[kind]` as (bytes, blocks).
fn kind_total(r: &Report, kind: &str) -> (u64, u64) {
    let k = &r.v["summary"]["leak_kinds"][kind];
    (k["bytes"].as_u64().unwrap(), k["count"].as_u64().unwrap())
}

/// The pid the fixture printed ("child <pid>").
fn child_pid(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("child "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the fixture did not print the child's pid: {stdout:?}"))
}

/// `memtrace run -o log.%p.mtr -- fork_inherit ARGS` in a fresh directory: the
/// directory, the child's pid, and the logs by pid.
fn run(args: &[&str]) -> (tempfile::TempDir, u64, BTreeMap<u64, PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "-o", "log.%p.mtr", "--"])
        .arg(fixture("fork_inherit"))
        .args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memtrace run: {stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let child = child_pid(&String::from_utf8_lossy(&out.stdout));
    let logs = logs_in(dir.path())
        .into_iter()
        .map(|l| {
            let pid = l
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("log.")?.strip_suffix(".mtr")?.parse().ok())
                .unwrap_or_else(|| panic!("unexpected log name {}", l.display()));
            (pid, l)
        })
        .collect();
    (dir, child, logs)
}

/// The child's figures of the fixture's header: leaks by kind and function, inherited
/// blocks, frees; `unknown_frees` as the parent's (libc's blocks from before tracing).
fn assert_child(c: &Report, parent: &Report) {
    c.assert_complete();
    c.assert_ended("exit");
    assert_eq!(c.process("forked_from"), &parent.v["process"]["pid"]);
    c.assert_heap_leaked(336, 5);
    c.assert_leak("heap", "parent_dropped", 200, 1);
    c.assert_leak("heap", "parent_keep", 48, 1);
    c.assert_leak("heap", "child_leak", 64, 2);
    c.assert_leak("heap", "child_keep", 24, 1);
    c.assert_no_leak("heap", "parent_shared");
    c.assert_no_leak("heap", "parent_temp");
    assert_eq!(
        kind_total(c, "definite"),
        (264, 3),
        "{}",
        c.describe_leaks()
    );
    assert_eq!(kind_total(c, "indirect"), (0, 0));
    assert_eq!(kind_total(c, "possible"), (0, 0));
    assert_eq!(
        kind_total(c, "reachable"),
        (72, 2),
        "{}",
        c.describe_leaks()
    );
    assert_eq!(c.summary("inherited_blocks"), 3, "{}", c.v["summary"]);
    assert_eq!(c.summary("inherited_bytes"), 348, "{}", c.v["summary"]);
    let inh = &c.v["summary"]["inherited"];
    assert_eq!(inh["parent_pid"], parent.v["process"]["pid"], "{inh}");
    assert_eq!(Path::new(inh["parent_log"].as_str().unwrap()), parent.log);
    assert_eq!(
        (inh["blocks"].clone(), inh["bytes"].clone()),
        (3.into(), 348.into())
    );
    assert_eq!(c.summary("allocations"), 3, "the child's own calls");
    assert_eq!(c.summary("frees"), 1, "the free of the inherited `shared`");
    assert_eq!(
        c.summary("unknown_frees"),
        parent.summary("unknown_frees"),
        "no free of an inherited block is unknown"
    );
    assert_eq!(c.summary("anomalies"), 0);
    assert_eq!(
        c.summary("peak_heap_bytes"),
        348,
        "the inherited heap at the start"
    );
}

// The child's report has the parent's blocks it never freed among its leaks, classified;
// its free of an inherited block is an ordinary free. The parent's report is its own.
// Both equal memcheck's, pid by pid.
#[test]
fn child_leaks_what_it_inherited() {
    let (_dir, child, logs) = run(&[]);
    assert_eq!(logs.len(), 2, "{logs:?}");
    let parent_pid = *logs.keys().find(|p| **p != child).unwrap();
    let p = report(&logs[&parent_pid]);
    let c = report(&logs[&child]);
    p.assert_complete();
    p.assert_heap_leaked(48, 1);
    assert_eq!(kind_total(&p, "reachable"), (48, 1));
    assert_eq!(p.summary("inherited_blocks"), 0);
    assert!(p.v["summary"]["inherited"].is_null());
    assert_child(&c, &p);

    let vg = memcheck_tree("fork_inherit", &[]);
    assert_eq!(vg.len(), 2, "two processes under memcheck: {vg:?}");
    let (vp, vc) = {
        let mut it = vg.values();
        (it.next().unwrap(), it.next().unwrap())
    };
    // The parent started first (the lower pid, but for a wrap-around).
    let (vp, vc) = if vp.in_use == (48, 1) {
        (vp, vc)
    } else {
        (vc, vp)
    };
    assert_eq!(vc.in_use, (336, 5), "memcheck's child: {vc:?}");
    assert_eq!(
        memtrace_kinds(&c),
        vc.kinds,
        "the child: memtrace (left) vs memcheck (right), by kind and function"
    );
    assert_eq!(vp.in_use, (48, 1), "memcheck's parent: {vp:?}");
    assert_eq!(
        memtrace_kinds(&p),
        vp.kinds,
        "the parent: memtrace vs memcheck"
    );
}

// The same in a grandchild: it inherits the child's blocks live at its fork, the
// parent's among them, with their stacks from the parent's log.
#[test]
fn grandchild_inherits_through_its_parent() {
    let (_dir, child, logs) = run(&["grandchild"]);
    assert_eq!(logs.len(), 3, "{logs:?}");
    let reports: BTreeMap<u64, Report> = logs.iter().map(|(p, l)| (*p, report(l))).collect();
    let c = &reports[&child];
    let ff = |r: &Report| r.v["process"]["forked_from"].as_u64();
    let p = reports.values().find(|r| ff(r).is_none()).unwrap();
    let g = reports.values().find(|r| ff(r) == Some(child)).unwrap();
    assert_child(c, p);
    g.assert_complete();
    g.assert_heap_leaked(376, 6);
    g.assert_leak("heap", "parent_dropped", 200, 1);
    g.assert_leak("heap", "parent_keep", 48, 1);
    g.assert_leak("heap", "child_leak", 64, 2);
    g.assert_leak("heap", "grandchild_leak", 40, 1);
    g.assert_leak("heap", "child_keep", 24, 1);
    assert_eq!(
        kind_total(g, "definite"),
        (304, 4),
        "{}",
        g.describe_leaks()
    );
    assert_eq!(
        kind_total(g, "reachable"),
        (72, 2),
        "{}",
        g.describe_leaks()
    );
    assert_eq!(g.summary("inherited_blocks"), 4, "{}", g.v["summary"]);
    assert_eq!(g.summary("inherited_bytes"), 312, "{}", g.v["summary"]);
    assert_eq!(g.v["summary"]["inherited"]["parent_pid"], child);
    assert_eq!(g.summary("allocations"), 2);
    assert_eq!(g.summary("frees"), 0);

    let vg = memcheck_tree("fork_inherit", &["grandchild"]);
    assert_eq!(vg.len(), 3, "three processes under memcheck: {vg:?}");
    let vgc = vg
        .values()
        .find(|m| m.in_use == (376, 6))
        .unwrap_or_else(|| panic!("memcheck's grandchild: {vg:?}"));
    assert_eq!(
        memtrace_kinds(g),
        vgc.kinds,
        "the grandchild: memtrace (left) vs memcheck (right)"
    );
}

// `memtrace check` judges the child with its inheritance, as memcheck and LeakSanitizer
// do: the parent's block the child forgot counts in the child's verdict (and the parent
// passes: each process is judged on its own heap at its own exit). Given the logs, the
// parent's is found among them; run as a command, in the run's directory.
#[test]
fn check_counts_inherited_leaks_in_the_child() {
    let (dir, child, logs) = run(&[]);
    let judge = |args: &[&std::ffi::OsStr]| -> Value {
        let json = dir.path().join("check.json");
        let mut cmd = memtrace();
        cmd.current_dir(dir.path())
            .args(["check", "--json"])
            .arg(&json)
            .args(args);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(23),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
    };
    let logs: Vec<&std::ffi::OsStr> = logs.values().map(|l| l.as_os_str()).collect();
    let fixture = fixture("fork_inherit");
    let command = [std::ffi::OsStr::new("--"), fixture.as_os_str()];
    for (what, v) in [("logs", judge(&logs)), ("command", judge(&command))] {
        let procs = v["processes"].as_array().unwrap();
        assert_eq!(procs.len(), 2, "{what}: {v:#}");
        let (failed, passed): (Vec<&Value>, Vec<&Value>) =
            procs.iter().partition(|p| p["passed"] == false);
        assert_eq!((failed.len(), passed.len()), (1, 1), "{what}: {v:#}");
        let c = failed[0];
        if what == "logs" {
            assert_eq!(c["pid"], child, "{what}");
        }
        assert_eq!(c["counted_bytes"], 264, "{what}: {c:#}");
        assert_eq!(c["not_counted"]["reachable"]["bytes"], 72, "{what}: {c:#}");
        let at = |f: &str| -> Vec<(u64, u64, String)> {
            c["leaks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| stack_has(l, &fn_is(f)))
                .map(|l| {
                    (
                        l["bytes"].as_u64().unwrap(),
                        l["count"].as_u64().unwrap(),
                        l["status"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(at("parent_dropped"), [(200, 1, "counted".into())], "{what}");
        assert_eq!(at("child_leak"), [(64, 2, "counted".into())], "{what}");
        assert_eq!(passed[0]["counted_bytes"], 0, "{what}");
        assert_eq!(passed[0]["not_counted"]["reachable"]["bytes"], 48, "{what}");
    }
}

// Without its parent's log, a child's report says so in one warning (`inherited: null`)
// and holds what the child did after the fork, as before: its free of an inherited block
// is a free of an unknown block.
#[test]
fn child_without_its_parents_log() {
    let (dir, child, logs) = run(&[]);
    let alone = dir.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    let copy = alone.join(logs[&child].file_name().unwrap());
    std::fs::copy(&logs[&child], &copy).unwrap();
    let parent = logs.keys().find(|p| **p != child).unwrap();
    let p = report(&logs[parent]);

    let mut cmd = memtrace();
    cmd.args(["report", "--format", "json"]).arg(&copy);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&format!(
            "the log of its parent (pid {parent}) was not found"
        )),
        "{stderr}"
    );
    let c = Report {
        v: serde_json::from_slice(&out.stdout).unwrap(),
        log: copy.clone(),
    };
    assert!(c.v["summary"]["inherited"].is_null(), "{}", c.v["summary"]);
    assert_eq!(c.summary("inherited_blocks"), 0);
    c.assert_heap_leaked(88, 3);
    c.assert_no_leak("heap", "parent_dropped");
    assert_eq!(c.summary("frees"), 0);
    assert_eq!(c.summary("unknown_frees"), p.summary("unknown_frees") + 1);

    // Given with --parent-log, the parent's log is found where it is.
    let r = report_with(&copy, &["--parent-log", logs[parent].to_str().unwrap()]);
    assert_child(&r, &p);

    // The text report says it on the "forked from" line.
    let mut cmd = memtrace();
    cmd.arg("report").arg(&copy);
    let text = String::from_utf8_lossy(&output_with_timeout(&mut cmd, TIMEOUT).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "forked from pid {parent} (its log was not found: only what the child did after the fork is reported)"
        )),
        "{text}"
    );
    let mut cmd = memtrace();
    cmd.arg("report").arg(&logs[&child]);
    let text = String::from_utf8_lossy(&output_with_timeout(&mut cmd, TIMEOUT).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "forked from pid {parent}: inherited 348 bytes in 3 blocks live at the fork (from {})",
            logs[parent].display()
        )),
        "{text}"
    );
}
