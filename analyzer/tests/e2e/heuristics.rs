//! memcheck's leak heuristics (`--leak-check-heuristics`): tests/fixtures/heur_*.cpp each
//! keep blocks only through the interior pointers that one heuristic recognizes. Under
//! `memtrace run` their kinds, and the heuristics that saved the still reachable ones,
//! are their headers' (memcheck's LEAK SUMMARY), with the heuristics on (the default) and
//! off; and they equal memcheck's own, run here. valgrind is required: without it these
//! tests fail.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::*;

/// A LEAK SUMMARY: bytes and blocks definitely, indirectly, possibly lost and still
/// reachable, and the still reachable ones by heuristic.
#[derive(Debug, PartialEq, Eq, Clone)]
pub(crate) struct Leaks {
    pub(crate) kinds: [(u64, u64); 4],
    via: BTreeMap<String, (u64, u64)>,
}

fn leaks(kinds: [(u64, u64); 4], via: &[(&str, u64, u64)]) -> Leaks {
    Leaks {
        kinds,
        via: via
            .iter()
            .map(|(h, b, n)| (h.to_string(), (*b, *n)))
            .collect(),
    }
}

impl Leaks {
    fn add(&mut self, other: Leaks) {
        for (s, o) in self.kinds.iter_mut().zip(other.kinds) {
            s.0 += o.0;
            s.1 += o.1;
        }
        for (h, (b, n)) in other.via {
            let e = self.via.entry(h).or_default();
            e.0 += b;
            e.1 += n;
        }
    }
}

const KINDS: [&str; 4] = ["definite", "indirect", "possible", "reachable"];

/// The `{"bytes", "count"}` of a JSON entry.
fn bc(v: &Value) -> (u64, u64) {
    (
        v["bytes"].as_u64().unwrap_or_else(|| panic!("{v}")),
        v["count"].as_u64().unwrap_or_else(|| panic!("{v}")),
    )
}

/// A `leak_kinds`/`reachability` object of the JSON report as [`Leaks`].
pub(crate) fn from_json(k: &Value) -> Leaks {
    let kinds = KINDS.map(|n| bc(&k[n]));
    let via = k["reachable"]["heuristics"]
        .as_object()
        .unwrap_or_else(|| panic!("no reachable.heuristics in {k}"))
        .iter()
        .map(|(h, v)| (h.clone(), bc(v)))
        .collect();
    Leaks { kinds, via }
}

/// `memtrace run [ARGS] -- FIXTURE`, then its JSON report: the summary, and the report.
fn memtrace_leaks(name: &str, args: &[&str], env: Option<&str>) -> (Leaks, Report) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .args(args)
        .arg("--")
        .arg(fixture(name));
    if let Some(v) = env {
        cmd.env("MEMTRACE_LEAK_HEURISTICS", v);
    }
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let total = from_json(&r.v["summary"]["leak_kinds"]);
    // The leaks' own kinds and heuristics add up to the summary's.
    let mut sum = leaks([(0, 0); 4], &[]);
    for l in r.v["leaks"].as_array().unwrap() {
        if l["kind"] != "heap" {
            continue;
        }
        sum.add(from_json(&l["reachability"]));
    }
    assert_eq!(sum, total, "the leaks' kinds against the summary's");
    (total, r)
}

/// memcheck's LEAK SUMMARY of FIXTURE with `--leak-check-heuristics=SET`.
pub(crate) fn memcheck_leaks(name: &str, set: &str) -> Leaks {
    // The leak heuristics are tested against memcheck: required, never skipped.
    let valgrind = require_valgrind();
    let dir = tempfile::tempdir().unwrap();
    let out = output_with_timeout(
        clean_command(valgrind)
            .current_dir(dir.path())
            .args(["--leak-check=full", "--show-leak-kinds=all"])
            .arg(format!("--leak-check-heuristics={set}"))
            .arg(fixture(name)),
        std::time::Duration::from_secs(600),
    );
    parse_leak_summary(&String::from_utf8_lossy(&out.stderr))
}

/// Parses memcheck's LEAK SUMMARY, with its "of which reachable via heuristic:" lines.
fn parse_leak_summary(text: &str) -> Leaks {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split_once("== ").map_or(l, |x| x.1).trim())
        .skip_while(|l| *l != "LEAK SUMMARY:")
        .take_while(|l| !l.starts_with("suppressed:"))
        .collect();
    assert!(!lines.is_empty(), "no LEAK SUMMARY:\n{text}");
    // "N bytes in M blocks"
    let nums = |s: &str| -> (u64, u64) {
        let n: Vec<u64> = s
            .split_whitespace()
            .filter_map(|w| w.replace(',', "").parse().ok())
            .collect();
        assert_eq!(n.len(), 2, "{s}");
        (n[0], n[1])
    };
    let words = [
        "definitely lost",
        "indirectly lost",
        "possibly lost",
        "still reachable",
    ];
    let kinds = words.map(|w| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(w).and_then(|r| r.strip_prefix(':')))
            .map(nums)
            .unwrap_or_else(|| panic!("no `{w}` line:\n{text}"))
    });
    let via = lines
        .iter()
        .skip_while(|l| **l != "of which reachable via heuristic:")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(h, rest)| (h.trim().to_owned(), nums(rest)))
        .collect();
    Leaks { kinds, via }
}

/// A fixture's figures, by `--leak-check-heuristics` value, as its header states them.
fn header(name: &str) -> Vec<(&'static str, Leaks)> {
    match name {
        "heur_newarray" => vec![
            (
                "all",
                leaks([(0, 0), (0, 0), (72, 1), (152, 3)], &[("newarray", 144, 2)]),
            ),
            ("none", leaks([(0, 0), (0, 0), (216, 3), (8, 1)], &[])),
        ],
        "heur_length64" => vec![
            (
                "all",
                leaks(
                    [(0, 0), (0, 0), (108, 1), (164, 3)],
                    &[("length64", 156, 2)],
                ),
            ),
            ("none", leaks([(0, 0), (0, 0), (264, 3), (8, 1)], &[])),
            (
                "newarray",
                leaks(
                    [(0, 0), (0, 0), (108, 1), (164, 3)],
                    &[("newarray", 156, 2)],
                ),
            ),
        ],
        "heur_multi" => vec![
            (
                "all",
                leaks(
                    [(0, 0), (0, 0), (40, 1), (88, 3)],
                    &[("multipleinheritance", 80, 2)],
                ),
            ),
            ("none", leaks([(0, 0), (0, 0), (120, 3), (8, 1)], &[])),
        ],
        "heur_stdstring" => vec![
            (
                "all",
                leaks(
                    [(8, 1), (0, 0), (85, 1), (198, 3)],
                    &[("stdstring", 190, 2)],
                ),
            ),
            ("none", leaks([(8, 1), (0, 0), (275, 3), (8, 1)], &[])),
        ],
        _ => unreachable!(),
    }
}

/// For each heuristic set of the header: memtrace's figures are the header's, and
/// memcheck's (live) are too. "all" is also memtrace's default.
fn matches_header_and_memcheck(name: &str) {
    for (set, want) in header(name) {
        let (got, _) = memtrace_leaks(name, &["--leak-check-heuristics", set], None);
        assert_eq!(
            got, want,
            "{name}: memtrace with --leak-check-heuristics {set}"
        );
        let vg = memcheck_leaks(name, set);
        assert_eq!(
            vg, want,
            "{name}: memcheck with --leak-check-heuristics={set}"
        );
    }
    let (default, _) = memtrace_leaks(name, &[], None);
    assert_eq!(default, header(name)[0].1, "{name}: memtrace's default");
}

#[test]
fn newarray() {
    matches_header_and_memcheck("heur_newarray");
}

#[test]
fn length64() {
    matches_header_and_memcheck("heur_length64");
}

#[test]
fn multipleinheritance() {
    matches_header_and_memcheck("heur_multi");
}

#[test]
fn stdstring() {
    matches_header_and_memcheck("heur_stdstring");
}

/// The heuristic is named on the leaks of the functions that made the blocks: in
/// heur_newarray.cpp keep_array's 88 bytes and keep_holder's array (56 of its 64 bytes;
/// the Holder is reachable by a start pointer); keep_second's array is possibly lost.
/// MEMTRACE_LEAK_HEURISTICS sets the default (`none` here), and `memtrace run` hands the
/// set to the command in that variable.
#[test]
fn named_per_leak_and_passed_on() {
    let (_, r) = memtrace_leaks("heur_newarray", &[], None);
    // The leaks (one per stack) of function `f`, summed.
    let by_fn = |f: &str| -> Leaks {
        let mut sum = leaks([(0, 0); 4], &[]);
        for l in r.v["leaks"].as_array().unwrap() {
            if l["kind"] != "heap" || !stack_has(l, &fn_is(f)) {
                continue;
            }
            sum.add(from_json(&l["reachability"]));
        }
        sum
    };
    assert_eq!(
        by_fn("keep_array()"),
        leaks([(0, 0), (0, 0), (0, 0), (88, 1)], &[("newarray", 88, 1)])
    );
    assert_eq!(
        by_fn("keep_holder()"),
        leaks([(0, 0), (0, 0), (0, 0), (64, 2)], &[("newarray", 56, 1)])
    );
    assert_eq!(
        by_fn("keep_second()"),
        leaks([(0, 0), (0, 0), (72, 1), (0, 0)], &[])
    );

    let (env_none, _) = memtrace_leaks("heur_newarray", &[], Some("none"));
    assert_eq!(env_none, header("heur_newarray")[1].1);

    let dir = tempfile::tempdir().unwrap();
    for (arg, passed) in [
        (None, "all"),
        (Some("newarray,stdstring"), "stdstring,newarray"),
        (Some("none"), "none"),
    ] {
        let mut cmd = memtrace();
        cmd.current_dir(dir.path()).arg("run");
        if let Some(a) = arg {
            cmd.args(["--leak-check-heuristics", a]);
        }
        cmd.args(["--", "sh", "-c", "printf %s \"$MEMTRACE_LEAK_HEURISTICS\""]);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), passed);
    }
    let mut bad = memtrace();
    bad.current_dir(dir.path()).args([
        "run",
        "--leak-check-heuristics",
        "stdstrings",
        "--",
        "true",
    ]);
    let out = output_with_timeout(&mut bad, TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown leak heuristic \"stdstrings\""),
        "{out:?}"
    );
}

/// `memtrace check`: blocks a heuristic saved are still reachable, so they count only
/// when reachable blocks do, and `--leak-check-heuristics none` (or the config file's
/// `leak-check-heuristics = "none"`) makes them possibly lost;
/// valgrind's `match-leak-kinds: reachable` suppresses them (tests/suppressions/
/// heuristics.supp, which memcheck applies the same way: 88 bytes in 1 block suppressed).
#[test]
fn check_counts_them_as_reachable() {
    let run_with = |config: Option<&str>, args: &[&str]| -> (Option<i32>, String, Value) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = config {
            std::fs::write(dir.path().join(".memtrace.toml"), c).unwrap();
        }
        let json = dir.path().join("c.json");
        let mut cmd = memtrace();
        cmd.current_dir(dir.path())
            .arg("check")
            .args(args)
            .arg("--json")
            .arg(&json)
            .arg("--")
            .arg(fixture("heur_newarray"));
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
        (out.status.code(), err, serde_json::from_str(&text).unwrap())
    };
    let run = |args: &[&str]| run_with(None, args);
    let counted = |v: &Value| {
        let p = &v["processes"][0];
        (
            p["counted_bytes"].as_u64().unwrap(),
            p["counted_blocks"].as_u64().unwrap(),
        )
    };
    // Nothing lost by default.
    let (code, err, v) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(counted(&v), (0, 0), "{err}");
    assert_eq!(
        from_json(&v["processes"][0]["leak_kinds"]),
        header("heur_newarray")[0].1
    );
    // Possibly lost: only keep_second's array; without heuristics all three arrays.
    let (code, err, v) = run(&["--leak-kinds", "possible"]);
    assert_eq!(code, Some(23), "{err}");
    assert_eq!(counted(&v), (72, 1), "{err}");
    let (code, err, v) = run(&[
        "--leak-kinds",
        "possible",
        "--leak-check-heuristics",
        "none",
    ]);
    assert_eq!(code, Some(23), "{err}");
    assert_eq!(counted(&v), (216, 3), "{err}");
    // The same from the config file; the command line wins.
    let none = Some("[check]\nleak-check-heuristics = \"none\"\n");
    let (code, err, v) = run_with(none, &["--leak-kinds", "possible"]);
    assert_eq!(code, Some(23), "{err}");
    assert_eq!(counted(&v), (216, 3), "{err}");
    let (_, err, v) = run_with(
        none,
        &["--leak-kinds", "possible", "--leak-check-heuristics", "all"],
    );
    assert_eq!(counted(&v), (72, 1), "{err}");
    // Suppressed as reachable.
    let supp = root().join("tests/suppressions/heuristics.supp");
    let (code, err, v) = run(&["--leak-kinds", "all", "-s", supp.to_str().unwrap()]);
    assert_eq!(code, Some(23), "{err}");
    assert_eq!(counted(&v), (72 + 64, 1 + 2), "{err}");
    let s = v["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "heur-newarray-reachable")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        (s["matched_blocks"].as_u64(), s["matched_bytes"].as_u64()),
        (Some(1), Some(88)),
        "{v:#}"
    );
}

/// A snapshot while heur_newarray waits (`wait`) classifies its blocks as at exit, with
/// the run's heuristics: all, then none (`memtrace run`'s snapshot watcher scans).
#[test]
fn snapshots_apply_the_heuristics() {
    for (set, want) in header("heur_newarray") {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_while_waiting(
            dir.path(),
            &["--leak-check-heuristics", set],
            "heur_newarray",
        );
        let r = report(&snap);
        assert_eq!(r.process("ended"), "snapshot");
        // The fixture's blocks; the rest (libstdc++'s emergency exception pool, freed
        // only at exit) is plainly still reachable.
        let (mut mine, mut rest) = (leaks([(0, 0); 4], &[]), leaks([(0, 0); 4], &[]));
        for l in r.v["leaks"].as_array().unwrap() {
            let k = from_json(&l["reachability"]);
            if ["keep_array()", "keep_holder()", "keep_second()"]
                .iter()
                .any(|f| stack_has(l, &fn_is(f)))
            {
                mine.add(k);
            } else {
                rest.add(k);
            }
        }
        assert_eq!(mine, want, "snapshot with --leak-check-heuristics {set}");
        assert!(
            rest.kinds[..3] == [(0, 0); 3] && rest.via.is_empty(),
            "{rest:?}"
        );
    }
}

/// heur_multi_top.cpp: an object's second base where glibc puts the next chunk's header.
/// With the heuristics memtrace agrees with memcheck (still reachable via
/// multipleinheritance); without them memcheck says possibly lost and memtrace, which
/// takes a root pointer to that byte for glibc's own, definitely lost (the README's
/// limits).
#[test]
fn multipleinheritance_where_glibc_puts_the_next_chunk() {
    let name = "heur_multi_top";
    let all = leaks(
        [(0, 0), (0, 0), (0, 0), (24, 1)],
        &[("multipleinheritance", 24, 1)],
    );
    assert_eq!(memtrace_leaks(name, &[], None).0, all);
    assert_eq!(memcheck_leaks(name, "all"), all);
    assert_eq!(
        memcheck_leaks(name, "none"),
        leaks([(0, 0), (0, 0), (24, 1), (0, 0)], &[])
    );
    assert_eq!(
        memtrace_leaks(name, &["--leak-check-heuristics", "none"], None).0,
        leaks([(24, 1), (0, 0), (0, 0), (0, 0)], &[])
    );
}
