//! Leak classification by reachability: `memtrace run` classifies the blocks live at
//! exit as memcheck does (definitely, indirectly, possibly lost, still reachable), from a
//! frozen copy of the process read from outside. On tests/fixtures/reach.c the figures
//! are the fixture's header's, and, per allocating function, memcheck's own. `memtrace
//! check` counts the definitely and indirectly lost blocks by default (`--leak-kinds`
//! chooses), and valgrind suppressions apply to the kinds their `match-leak-kinds:` names
//! (tests/suppressions/reach.supp, with memcheck as the oracle).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::*;

/// (kind, function) -> (bytes, blocks), from a report's leaks.
fn memtrace_kinds(r: &Report) -> BTreeMap<(String, String), (u64, u64)> {
    let mut m = BTreeMap::new();
    for l in r.v["leaks"].as_array().unwrap() {
        if l["kind"] != "heap" {
            continue;
        }
        let f = first_fixture_function(l);
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

/// The innermost function of a stack that is one of the fixture's.
fn first_fixture_function(l: &Value) -> String {
    l["stack"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .find(|f| !f.starts_with("__") && *f != "malloc")
        .unwrap_or("?")
        .to_owned()
}

/// The same from valgrind's loss records (`--show-leak-kinds=all`).
/// memcheck's kinds of fixture `name`, by kind and allocating function, are
/// `ours` (in one of [`MEMCHECK_RUNS`] runs at most: [`agreeing_memcheck`]).
fn assert_memcheck_agrees(name: &str, ours: &BTreeMap<(String, String), (u64, u64)>) {
    let theirs = agreeing_memcheck(ours, || {
        let vg = clean_command(require_valgrind())
            .args(["--vgdb=no", "--leak-check=full", "--show-leak-kinds=all"])
            .arg(fixture(name))
            .output()
            .unwrap();
        valgrind_kinds(&String::from_utf8_lossy(&vg.stderr))
    });
    assert!(
        theirs.is_ok(),
        "memtrace:\n{ours:?}\nvs memcheck, by kind and function, every run:\n{theirs:?}"
    );
}

fn valgrind_kinds(text: &str) -> BTreeMap<(String, String), (u64, u64)> {
    let mut m = BTreeMap::new();
    let mut lines = text
        .lines()
        .map(|l| l.split_once("== ").map_or(l, |x| x.1).trim());
    while let Some(l) = lines.next() {
        let Some((head, _)) = l.split_once(" in loss record ") else {
            continue;
        };
        // "N bytes in M blocks are definitely lost", or for a block holding others
        // "N (D direct, I indirect) bytes in M blocks are definitely lost": its own D.
        let num = |s: &str| s.trim().replace(',', "").parse::<u64>().unwrap();
        let bytes = match head.split_once('(') {
            Some((_, rest)) => num(rest.split_whitespace().next().unwrap()),
            None => num(head.split_whitespace().next().unwrap()),
        };
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
        // Frames: "at 0x...: malloc (...)", "by 0x...: lost_list (reach.c:40)".
        let f = lines
            .by_ref()
            .take_while(|l| l.starts_with("at ") || l.starts_with("by "))
            .filter_map(|l| l.split_once(": ").map(|x| x.1))
            .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
            .find(|f| f != "malloc" && !f.starts_with("__"))
            .unwrap_or_default();
        let e = m.entry((kind.to_owned(), f)).or_insert((0, 0));
        e.0 += bytes;
        e.1 += blocks;
    }
    m
}

#[test]
fn classification_matches_the_header_and_memcheck() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("--")
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let totals = &r.v["summary"]["leak_kinds"];
    let t = |k: &str| {
        (
            totals[k]["bytes"].as_u64().unwrap(),
            totals[k]["count"].as_u64().unwrap(),
        )
    };
    assert_eq!(t("definite"), (80, 2), "{totals}");
    assert_eq!(t("indirect"), (96, 3), "{totals}");
    assert_eq!(t("possible"), (128, 1), "{totals}");
    assert_eq!(t("reachable"), (80, 2), "{totals}");
    // The frozen copy is gone: no process is left in the run's directory.
    let here = std::fs::canonicalize(dir.path()).unwrap();
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c == here))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(alive.is_empty(), "left running: {alive:?}");
    let ours = memtrace_kinds(&r);
    let key = |k: &str, f: &str| (k.to_owned(), f.to_owned());
    assert_eq!(ours[&key("definite", "lost_list")], (32, 1));
    assert_eq!(ours[&key("indirect", "lost_list")], (96, 3));
    assert_eq!(ours[&key("definite", "plain_lost")], (48, 1));
    assert_eq!(ours[&key("reachable", "kept_by_global")], (64, 1));
    assert_eq!(ours[&key("reachable", "kept_child")], (16, 1));
    assert_eq!(ours[&key("possible", "kept_by_interior")], (128, 1));

    // memcheck is the oracle: required, never skipped.
    assert_memcheck_agrees("reach", &ours);
}

/// tests/fixtures/reach_big.c: blocks of 64 KiB and more, in arenas the scan does not
/// read whole (it reads each block as it comes to it, the heuristics' words too): the
/// figures are the header's and, per allocating function, memcheck's.
#[test]
fn large_blocks_classify_as_the_header_and_memcheck() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("--")
        .arg(fixture("reach_big"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let totals = &r.v["summary"]["leak_kinds"];
    let t = |k: &str| {
        (
            totals[k]["bytes"].as_u64().unwrap(),
            totals[k]["count"].as_u64().unwrap(),
        )
    };
    assert_eq!(t("definite"), (200_000, 1), "{totals}");
    assert_eq!(t("indirect"), (400_000, 2), "{totals}");
    assert_eq!(t("possible"), (250_000, 1), "{totals}");
    assert_eq!(t("reachable"), (570_008, 3), "{totals}");
    let ours = memtrace_kinds(&r);
    let key = |k: &str, f: &str| (k.to_owned(), f.to_owned());
    assert_eq!(ours[&key("definite", "big_list")], (200_000, 1));
    assert_eq!(ours[&key("indirect", "big_list")], (400_000, 2));
    assert_eq!(ours[&key("reachable", "big_kept")], (300_000, 1));
    assert_eq!(ours[&key("reachable", "big_child")], (70_000, 1));
    assert_eq!(ours[&key("possible", "big_interior")], (250_000, 1));
    assert_eq!(ours[&key("reachable", "big_length64")], (200_008, 1));

    // memcheck is the oracle: required, never skipped.
    assert_memcheck_agrees("reach_big", &ours);
}

/// tests/fixtures/reach_sparse.c: a root deep inside a 256 MiB anonymous mapping of
/// which two pages were written, one of them dropped again (MADV_DONTNEED): the scan
/// reads only the pages the pagemap lists, and the figures are still the header's and
/// memcheck's.
#[test]
fn roots_in_a_mostly_unwritten_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("--")
        .arg(fixture("reach_sparse"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&logs_in(dir.path())[0]);
    let totals = &r.v["summary"]["leak_kinds"];
    let t = |k: &str| {
        (
            totals[k]["bytes"].as_u64().unwrap(),
            totals[k]["count"].as_u64().unwrap(),
        )
    };
    assert_eq!(t("definite"), (148, 2), "{totals}");
    assert_eq!(t("reachable"), (64, 1), "{totals}");
    let ours = memtrace_kinds(&r);
    let key = |k: &str, f: &str| (k.to_owned(), f.to_owned());
    assert_eq!(ours[&key("reachable", "deep_kept")], (64, 1), "{ours:?}");
    assert_eq!(ours[&key("definite", "dropped_root")], (48, 1));
    assert_eq!(ours[&key("definite", "plain_lost")], (100, 1));

    // memcheck is the oracle: required, never skipped.
    assert_memcheck_agrees("reach_sparse", &ours);
}

/// In sampling mode the preload keeps the recorded blocks' addresses in a set of its
/// own; that set is not a root, so the kinds are the same as in a full run (with a
/// 1-byte interval every block is recorded exactly).
#[test]
fn sampled_runs_classify_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "--sample=1", "--"])
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success());
    let r = report(&logs_in(dir.path())[0]);
    assert!(r.summary("sample_interval") == 1);
    let ours = memtrace_kinds(&r);
    let key = |k: &str, f: &str| (k.to_owned(), f.to_owned());
    assert_eq!(ours[&key("definite", "lost_list")], (32, 1), "{ours:?}");
    assert_eq!(ours[&key("indirect", "lost_list")], (96, 3));
    assert_eq!(ours[&key("definite", "plain_lost")], (48, 1));
    assert_eq!(ours[&key("reachable", "kept_by_global")], (64, 1));
    assert_eq!(ours[&key("reachable", "kept_child")], (16, 1));
    assert_eq!(ours[&key("possible", "kept_by_interior")], (128, 1));
}

/// `--no-reachability` leaves the leaks unclassified, and no copy is made.
#[test]
fn no_reachability() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "--no-reachability", "--"])
        .arg(fixture("reach"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success());
    let r = report(&logs_in(dir.path())[0]);
    assert!(r.v["summary"]["leak_kinds"].is_null());
    assert!(r.v["leaks"][0]["reachability"].is_null());
}

/// `memtrace check --leak-kinds`: only the chosen kinds of classified leaks count.
#[test]
fn check_counts_the_chosen_kinds() {
    let reach = fixture("reach");
    for (kinds, bytes, blocks) in [
        ("definite,indirect", 176, 5),
        ("possible", 128, 1),
        ("reachable", 80, 2),
        ("all", 384, 8),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("c.json");
        let mut cmd = memtrace();
        cmd.current_dir(dir.path())
            .args(["check", "--leak-kinds", kinds, "--json"])
            .arg(&json)
            .arg("--")
            .arg(&reach);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(23),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let p = &v["processes"][0];
        assert_eq!(
            (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
            (Some(bytes), Some(blocks)),
            "{kinds}"
        );
    }
    let mut cmd = memtrace();
    cmd.args(["check", "--leak-kinds", "lost", "--"])
        .arg(&reach);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown leak kind \"lost\""));
}

/// `memtrace check ARGS -- PROGRAM PROGRAM_ARGS` in a fresh directory, with `--json`:
/// the exit status, stderr and the JSON document.
fn check(args: &[&str], program: &str, program_args: &[&str]) -> (Option<i32>, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("check")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--")
        .arg(fixture(program))
        .args(program_args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
    (out.status.code(), err, serde_json::from_str(&text).unwrap())
}

/// By default `memtrace check` counts what valgrind's memcheck counts as errors: the
/// definitely and indirectly lost blocks. reach.c fails with exactly those of its header
/// (176 bytes in 5 blocks), and the summary says which kinds counted, gives each counted
/// stack's kinds and what the other kinds left. A program whose leftovers are all still
/// reachable (gate.c's `cache`: one block kept in a global) passes, and fails when they
/// count.
#[test]
fn check_counts_definite_and_indirect_by_default() {
    let (code, err, v) = check(&[], "reach", &[]);
    assert_eq!(code, Some(23), "{err}");
    let p = &v["processes"][0];
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(176), Some(5)),
        "{err}"
    );
    assert_eq!(
        v["rules"]["leak_kinds"],
        serde_json::json!(["definite", "indirect"])
    );
    assert!(
        err.contains(
            "counting definitely and indirectly lost blocks (--leak-kinds definite,indirect)"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "128 bytes in 4 blocks\n          (32 bytes in 1 block definitely lost; \
             96 bytes in 3 blocks indirectly lost)\n          #0 lost_list"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "128 bytes in 1 block possibly lost not counted, 80 bytes in 2 blocks still \
             reachable not counted"
        ),
        "{err}"
    );
    let nc = &p["not_counted"];
    assert_eq!(
        (
            nc["possible"]["bytes"].as_u64(),
            nc["reachable"]["count"].as_u64()
        ),
        (Some(128), Some(2))
    );
    // Each counted leak, with its kinds.
    let list = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| first_fixture_function(l) == "lost_list")
        .unwrap();
    assert_eq!(list["bytes"], 128);
    assert_eq!(list["reachability"]["indirect"]["count"], 3);

    // Only still reachable blocks left: passes; counted when asked.
    let (code, err, v) = check(&[], "gate", &["cache"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("memtrace check: passed"), "{err}");
    assert!(
        err.contains("64 bytes in 1 block still reachable not counted"),
        "{err}"
    );
    assert_eq!(v["processes"][0]["counted_bytes"], 0);
    for kinds in ["all", "reachable"] {
        let (code, err, v) = check(&["--leak-kinds", kinds], "gate", &["cache"]);
        assert_eq!(code, Some(23), "{kinds}: {err}");
        assert_eq!(v["processes"][0]["counted_bytes"], 64, "{kinds}");
    }
    let (code, err, _) = check(&["--leak-kinds", "none"], "reach", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("counting no blocks (--leak-kinds none)"),
        "{err}"
    );
}

/// valgrind suppressions apply kind by kind (tests/suppressions/reach.supp): lost_list's
/// definitely lost head is suppressed, its indirectly lost nodes still count; an entry
/// for other kinds than plain_lost's suppresses nothing. The counts are valgrind's own
/// with the same file.
#[test]
fn suppressions_by_leak_kind() {
    let supp = crate::util::root().join("tests/suppressions/reach.supp");
    let supp = supp.to_str().unwrap();
    let matched = |v: &Value, name: &str| {
        let s = v["suppressions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no suppression {name}: {v:#}"));
        (
            s["matched_stacks"].as_u64().unwrap(),
            s["matched_blocks"].as_u64().unwrap(),
            s["matched_bytes"].as_u64().unwrap(),
        )
    };
    let (code, err, v) = check(&["--leak-kinds", "all", "-s", supp], "reach", &[]);
    assert_eq!(code, Some(23), "{err}");
    let p = &v["processes"][0];
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(144), Some(4)),
        "{err}"
    );
    assert_eq!(matched(&v, "reach-lost_list-definite"), (1, 1, 32));
    assert_eq!(matched(&v, "reach-plain_lost-not-definite"), (0, 0, 0));
    assert_eq!(matched(&v, "reach-kept_by_interior"), (1, 1, 128));
    assert_eq!(matched(&v, "reach-still-reachable"), (2, 2, 80));
    // lost_list: its head suppressed, its other nodes counted.
    let list: Vec<(String, u64, u64)> = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| first_fixture_function(l) == "lost_list")
        .map(|l| {
            (
                l["status"].as_str().unwrap().to_owned(),
                l["bytes"].as_u64().unwrap(),
                l["reachability"]["indirect"]["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        list,
        [
            ("counted".to_owned(), 96, 96),
            ("suppressed".to_owned(), 32, 0)
        ]
    );
    // By default: the same counted blocks; only definite ones are there to suppress.
    let (code, err, v) = check(&["-s", supp], "reach", &[]);
    assert_eq!(code, Some(23), "{err}");
    assert_eq!(v["processes"][0]["counted_bytes"], 144);
    assert_eq!(matched(&v, "reach-lost_list-definite"), (1, 1, 32));
    assert_eq!(matched(&v, "reach-still-reachable"), (0, 0, 0));

    // memcheck is the oracle: required, never skipped.
    let vg = clean_command(require_valgrind())
        .args([
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--errors-for-leak-kinds=all",
        ])
        .arg(format!("--suppressions={supp}"))
        .arg(fixture("reach"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&vg.stderr);
    // "definitely lost: 48 bytes in 1 blocks" ... "suppressed: 240 bytes in 4 blocks".
    let summary = |what: &str| -> (u64, u64) {
        let l = text
            .lines()
            .find_map(|l| l.split_once(&format!("{what}: ")).map(|x| x.1))
            .unwrap_or_else(|| panic!("no {what} line:\n{text}"));
        let n: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.replace(',', "").parse().ok())
            .collect();
        (n[0], n[1])
    };
    let unsuppressed = [
        "definitely lost",
        "indirectly lost",
        "possibly lost",
        "still reachable",
    ]
    .map(summary)
    .into_iter()
    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(unsuppressed, (144, 4), "{text}");
    assert_eq!(summary("suppressed"), (240, 4), "{text}");
}
