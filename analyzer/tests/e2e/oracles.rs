//! memcheck as the oracle of the leak kinds (issue 12, item 6): the fixtures
//! `tests/fixtures/oracle_*.c` are the cases of memcheck's and LeakSanitizer's own leak
//! suites (stale stack slots at exit, other threads' registers, a blocked thread's dead
//! frames, cycles, unaligned and interior pointers, a failed realloc, exit() from a second
//! thread, threads that have ended, TLS, swapcontext stacks, programs whose malloc is
//! jemalloc or tcmalloc), each with memcheck's LEAK SUMMARY and loss records
//! in its header comment. Here memtrace's kinds must equal those figures, in total
//! (`summary.leak_kinds`) and per allocating function, three ways: `memtrace run` then
//! `memtrace report --format json`; `memtrace check --leak-kinds all --json`; and a plain
//! `LD_PRELOAD=libmemtrace.so` run, then `memtrace report` on its log. A last test runs
//! valgrind itself on every fixture and compares its loss records with the headers, so
//! that the headers stay memcheck's (it fails when valgrind is missing: CI installs it).
//!
//! The allocating function of a block is the innermost frame of its stack in one of the
//! fixture's own files (`oracle_*.c`, `liboracle_*.c`) other than the allocation helpers
//! (`block`, `block_in_xmm9`); for the allocations made by libc and ld.so (a thread's
//! DTV, dlopen's bookkeeping) it is the fixture function that called them.
//!
//! The figures of the threaded fixtures are memcheck's with `LD_PRELOAD=libtlstwin.so`:
//! libmemtrace.so has a TLS segment, which makes each thread's DTV 16 bytes larger (see
//! libtlstwin.c); the valgrind test runs it that way too.
//!
//! Several of these fail against today's memtrace (see each fixture's header and the
//! issue): that is what they are for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// Every oracle fixture, in the order the valgrind test runs them.
const FIXTURES: &[&str] = &[
    "oracle_stale_exit",
    "oracle_stale_return",
    "oracle_stale_atexit",
    "oracle_thread_regs",
    "oracle_thread_stale",
    "oracle_cycles",
    "oracle_unaligned",
    "oracle_pool",
    "oracle_realloc_fail",
    "oracle_thread_exit",
    "oracle_thread_joined",
    "oracle_tls",
    "oracle_swapcontext",
    "oracle_jemalloc",
    "oracle_tcmalloc",
    "oracle_own_memory",
];

/// The fixtures' allocation helpers: never the allocating function of a block.
const HELPERS: &[&str] = &["block", "block_in_xmm9"];

/// memtrace's names of the kinds, in the order of memcheck's LEAK SUMMARY.
const KINDS: [&str; 4] = ["definite", "indirect", "possible", "reachable"];
const MEMCHECK_KINDS: [&str; 4] = [
    "definitely lost",
    "indirectly lost",
    "possibly lost",
    "still reachable",
];

/// (kind, allocating function) -> (bytes, blocks).
type Records = BTreeMap<(String, String), (u64, u64)>;

/// A run's kinds: the totals by kind (`None`: not classified) and the records.
#[derive(Debug, PartialEq, Eq)]
struct Kinds {
    totals: Option<[(u64, u64); 4]>,
    records: Records,
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.totals {
            None => writeln!(f, "  totals: not classified")?,
            Some(t) => {
                for (k, (b, n)) in KINDS.iter().zip(t) {
                    writeln!(f, "  {k:<10} {b} bytes in {n} blocks")?;
                }
            }
        }
        for ((k, func), (b, n)) in &self.records {
            writeln!(f, "    {k:<12} {func:<20} {b:>6} {n}")?;
        }
        Ok(())
    }
}

fn is_own_file(file: &str) -> bool {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.starts_with("oracle_") || base.starts_with("liboracle_")
}

fn is_allocating_function(function: &str, file: &str) -> bool {
    is_own_file(file) && !HELPERS.contains(&function)
}

fn add(m: &mut Records, kind: &str, function: &str, bytes: u64, blocks: u64) {
    let e = m
        .entry((kind.to_owned(), function.to_owned()))
        .or_insert((0, 0));
    e.0 += bytes;
    e.1 += blocks;
}

// ---------------------------------------------------------------------------------------
// The headers
// ---------------------------------------------------------------------------------------

/// "1,216" -> 1216.
fn number(s: &str) -> u64 {
    s.replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("not a number {s:?}: {e}"))
}

/// The figures of fixture `name`'s header comment: its LEAK SUMMARY lines
/// ("definitely lost: 1,216 bytes in 3 blocks") and the loss records after "loss records
/// by kind and allocating function" ("definite   stale_deep   1000 1").
fn expected(name: &str) -> Kinds {
    let path = root().join("tests/fixtures").join(format!("{name}.c"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let header = &text[..text.find("*/").expect("a header comment")];
    let mut totals = [None; 4];
    let mut records = Records::new();
    let mut in_records = false;
    for line in header.lines() {
        let line = line.trim_start_matches([' ', '/', '*']).trim();
        if line.starts_with("loss records by kind and allocating function") {
            in_records = true;
            continue;
        }
        if let Some(i) = MEMCHECK_KINDS
            .iter()
            .position(|k| line.starts_with(&format!("{k}: ")))
        {
            let w: Vec<&str> = line.split_whitespace().collect();
            // definitely lost: 1,216 bytes in 3 blocks
            assert!(
                w.len() == 7 && w[3] == "bytes",
                "{name}: bad summary line {line:?}"
            );
            totals[i] = Some((number(w[2]), number(w[5])));
            continue;
        }
        if in_records {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w[..] {
                [kind, function, bytes, blocks] if KINDS.contains(&kind) => {
                    add(&mut records, kind, function, number(bytes), number(blocks));
                }
                _ => in_records = false,
            }
        }
    }
    let totals =
        totals.map(|t| t.unwrap_or_else(|| panic!("{name}: a LEAK SUMMARY line is missing")));
    assert!(!records.is_empty(), "{name}: no loss records in the header");
    // The header must add up.
    let mut sums = [(0, 0); 4];
    for ((k, _), (b, n)) in &records {
        let i = KINDS.iter().position(|x| x == k).unwrap();
        sums[i].0 += b;
        sums[i].1 += n;
    }
    assert_eq!(
        sums, totals,
        "{name}: the header's records do not add up to its summary"
    );
    Kinds {
        totals: Some(totals),
        records,
    }
}

/// What memtrace must say of fixture `name`: memcheck's figures, except where the header
/// names a deliberate difference, one a line:
/// `memtrace differs: definite spin_xmm 96 1 -> reachable` (that record has the other
/// kind for memtrace, and the summary moves with it).
fn expected_of_memtrace(name: &str) -> Kinds {
    let mut k = expected(name);
    let path = root().join("tests/fixtures").join(format!("{name}.c"));
    let text = std::fs::read_to_string(&path).unwrap();
    let header = &text[..text.find("*/").expect("a header comment")];
    for line in header.lines() {
        let line = line.trim_start_matches([' ', '/', '*']).trim();
        let Some(rest) = line.strip_prefix("memtrace differs: ") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [from, function, bytes, blocks, "->", to, ..] = w[..] else {
            panic!("{name}: bad line {line:?}");
        };
        let (b, n) = (number(bytes), number(blocks));
        let key = (from.to_owned(), function.to_owned());
        let e = k
            .records
            .get_mut(&key)
            .unwrap_or_else(|| panic!("{name}: {line:?}: no such record"));
        assert!(
            e.0 >= b && e.1 >= n,
            "{name}: {line:?}: more than the record holds"
        );
        e.0 -= b;
        e.1 -= n;
        if *e == (0, 0) {
            k.records.remove(&key);
        }
        add(&mut k.records, to, function, b, n);
        let totals = k.totals.as_mut().unwrap();
        let (i, j) = (
            KINDS.iter().position(|x| *x == from).unwrap(),
            KINDS.iter().position(|x| *x == to).unwrap(),
        );
        totals[i].0 -= b;
        totals[i].1 -= n;
        totals[j].0 += b;
        totals[j].1 += n;
    }
    k
}

// ---------------------------------------------------------------------------------------
// memtrace's kinds
// ---------------------------------------------------------------------------------------

/// The records of a report's (or a check's) heap leaks; leaks that were not classified
/// are recorded as kind "unclassified".
fn leak_records(leaks: &Value) -> Records {
    let mut m = Records::new();
    for l in leaks.as_array().expect("leaks is an array") {
        if l["kind"] != "heap" {
            continue;
        }
        let function = l["stack"]
            .as_array()
            .expect("a leak has a stack")
            .iter()
            .find(|f| {
                is_allocating_function(
                    f["function"].as_str().unwrap_or(""),
                    f["file"].as_str().unwrap_or(""),
                )
            })
            .and_then(|f| f["function"].as_str())
            .unwrap_or("?");
        match l["reachability"].as_object() {
            None => add(
                &mut m,
                "unclassified",
                function,
                l["bytes"].as_u64().unwrap(),
                l["count"].as_u64().unwrap(),
            ),
            Some(kinds) => {
                for (kind, v) in kinds {
                    let (b, n) = (v["bytes"].as_u64().unwrap(), v["count"].as_u64().unwrap());
                    if n > 0 {
                        add(&mut m, kind, function, b, n);
                    }
                }
            }
        }
    }
    m
}

/// `{"definite": {"bytes", "count"}, ...}` as totals; `None` when null.
fn totals(v: &Value) -> Option<[(u64, u64); 4]> {
    if v.is_null() {
        return None;
    }
    Some(KINDS.map(|k| {
        (
            v[k]["bytes"]
                .as_u64()
                .unwrap_or_else(|| panic!("leak_kinds.{k}: {v}")),
            v[k]["count"]
                .as_u64()
                .unwrap_or_else(|| panic!("leak_kinds.{k}: {v}")),
        )
    }))
}

/// Gets `dir` ready to run fixture `name` in it, and returns its arguments. oracle_tls
/// dlopens liboracle_tls.so by the relative name its header's figures were taken with.
fn prepare(name: &str, dir: &Path) -> Vec<OsString> {
    if name != "oracle_tls" {
        return Vec::new();
    }
    std::fs::copy(fixture("liboracle_tls"), dir.join("liboracle_tls.so"))
        .expect("copy liboracle_tls.so into the run's directory");
    vec!["./liboracle_tls.so".into()]
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one log in `dir`, and its report.
fn only_report(dir: &Path, what: &str) -> Report {
    let logs = logs_in(dir);
    assert_eq!(logs.len(), 1, "{what}: expected one log, found {logs:?}");
    report(&logs[0])
}

/// `memtrace run -- FIXTURE`, then `memtrace report --format json LOG`.
fn under_run(name: &str) -> Kinds {
    let dir = tempfile::tempdir().unwrap();
    let args = prepare(name, dir.path());
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("--")
        .arg(fixture(name))
        .args(&args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "memtrace run -- {name}\n{}",
        stderr_of(&out)
    );
    let r = only_report(dir.path(), name);
    Kinds {
        totals: totals(&r.v["summary"]["leak_kinds"]),
        records: leak_records(&r.v["leaks"]),
    }
}

/// `memtrace check --leak-kinds all --json OUT -- FIXTURE`: the process's kinds from OUT.
fn under_check(name: &str) -> Kinds {
    let dir = tempfile::tempdir().unwrap();
    let args = prepare(name, dir.path());
    let json = dir.path().join("check.json");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["check", "--leak-kinds", "all", "--json"])
        .arg(&json)
        .arg("--")
        .arg(fixture(name))
        .args(&args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let err = stderr_of(&out);
    // 23: something leaked (every kind counts); 0: nothing did. Never memtrace's own 2.
    assert!(
        matches!(out.status.code(), Some(0 | 23)),
        "memtrace check -- {name}: {:?}\n{err}",
        out.status
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{name}: one process expected\n{err}");
    let p = &procs[0];
    assert_eq!(p["judged"], true, "{name}: not judged\n{err}");
    Kinds {
        totals: totals(&p["leak_kinds"]),
        records: leak_records(&p["leaks"]),
    }
}

/// `LD_PRELOAD=libmemtrace.so FIXTURE` in a temporary directory, then `memtrace report
/// --format json` on the log it wrote there.
fn under_preload(name: &str) -> Kinds {
    let dir = tempfile::tempdir().unwrap();
    let args = prepare(name, dir.path());
    let mut cmd = clean_command(fixture(name));
    cmd.current_dir(dir.path())
        .env("LD_PRELOAD", preload_lib())
        .args(&args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "LD_PRELOAD {name}\n{}",
        stderr_of(&out)
    );
    let r = only_report(dir.path(), name);
    Kinds {
        totals: totals(&r.v["summary"]["leak_kinds"]),
        records: leak_records(&r.v["leaks"]),
    }
}

/// The records that differ, one line each: "kind function: memtrace B/N, memcheck B/N".
fn differences(got: &Records, want: &Records) -> String {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let mut s = String::new();
    for k in keys {
        let (g, w) = (got.get(k), want.get(k));
        if g != w {
            let f =
                |x: Option<&(u64, u64)>| x.map_or("none".to_owned(), |(b, n)| format!("{b}/{n}"));
            s += &format!("  {} {}: memtrace {}, memcheck {}\n", k.0, k.1, f(g), f(w));
        }
    }
    s
}

fn assert_kinds(name: &str, how: &str, got: Kinds) {
    let want = expected_of_memtrace(name);
    assert!(
        got == want,
        "{name} under {how}: memtrace's kinds differ from memcheck's (tests/fixtures/{name}.c)\n\
         differences (bytes/blocks):\n{}memtrace:\n{got}memcheck:\n{want}",
        differences(&got.records, &want.records)
    );
}

/// For each fixture, one test per way of running it.
macro_rules! oracle_tests {
    ($($module:ident => $name:literal,)*) => {
        $(
            mod $module {
                use super::*;

                #[test]
                fn memtrace_run() {
                    assert_kinds($name, "memtrace run", under_run($name));
                }

                #[test]
                fn memtrace_check() {
                    assert_kinds($name, "memtrace check --leak-kinds all", under_check($name));
                }

                #[test]
                fn plain_preload() {
                    assert_kinds($name, "plain LD_PRELOAD", under_preload($name));
                }
            }
        )*

        /// The list above and FIXTURES are the same.
        #[test]
        fn every_fixture_is_tested() {
            assert_eq!(vec![$($name),*], FIXTURES.to_vec());
            let mut on_disk: Vec<String> = std::fs::read_dir(root().join("tests/fixtures"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".c").map(str::to_owned))
                .filter(|n| n.starts_with("oracle_"))
                .collect();
            on_disk.sort();
            let mut listed: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(on_disk, listed, "tests/fixtures/oracle_*.c and FIXTURES");
        }
    };
}

oracle_tests! {
    stale_exit => "oracle_stale_exit",
    stale_return => "oracle_stale_return",
    stale_atexit => "oracle_stale_atexit",
    thread_regs => "oracle_thread_regs",
    thread_stale => "oracle_thread_stale",
    cycles => "oracle_cycles",
    unaligned => "oracle_unaligned",
    pool => "oracle_pool",
    realloc_fail => "oracle_realloc_fail",
    thread_exit => "oracle_thread_exit",
    thread_joined => "oracle_thread_joined",
    tls => "oracle_tls",
    swapcontext => "oracle_swapcontext",
    jemalloc => "oracle_jemalloc",
    tcmalloc => "oracle_tcmalloc",
    own_memory => "oracle_own_memory",
}

// ---------------------------------------------------------------------------------------
// memcheck itself
// ---------------------------------------------------------------------------------------

/// memcheck's LEAK SUMMARY and loss records (`--show-leak-kinds=all`), keyed as above.
/// A record "N (D direct, I indirect) bytes in M blocks" counts its own D bytes.
fn memcheck_kinds(text: &str) -> Kinds {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split_once("== ").map_or(l, |x| x.1).trim())
        .collect();
    let mut records = Records::new();
    let mut totals = [None; 4];
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        i += 1;
        if let Some(k) = MEMCHECK_KINDS
            .iter()
            .position(|k| l.starts_with(&format!("{k}: ")))
        {
            let w: Vec<&str> = l.split_whitespace().collect();
            totals[k] = Some((number(w[2]), number(w[5])));
            continue;
        }
        let Some((head, _)) = l.split_once(" in loss record ") else {
            continue;
        };
        let bytes = match head.split_once('(') {
            Some((_, rest)) => number(rest.split_whitespace().next().unwrap()),
            None => number(head.split_whitespace().next().unwrap()),
        };
        let blocks = number(
            head.split_once("bytes in ")
                .unwrap()
                .1
                .split_whitespace()
                .next()
                .unwrap(),
        );
        let kind = match head.rsplit_once(" are ").map(|x| x.1) {
            Some("definitely lost") => "definite",
            Some("indirectly lost") => "indirect",
            Some("possibly lost") => "possible",
            Some("still reachable") => "reachable",
            other => panic!("unknown kind {other:?} in {l}"),
        };
        // "at 0x...: malloc (in /usr/...)", "by 0x...: kept (oracle_stale_below_main.h:23)".
        let mut function = "?".to_owned();
        while i < lines.len() && (lines[i].starts_with("at ") || lines[i].starts_with("by ")) {
            if function == "?"
                && let Some((_, frame)) = lines[i].split_once(": ")
            {
                let name = frame.split_whitespace().next().unwrap_or("");
                let file = frame
                    .rsplit_once('(')
                    .and_then(|(_, loc)| loc.split_once(':'))
                    .map_or("", |(file, _)| file);
                if is_allocating_function(name, file) {
                    function = name.to_owned();
                }
            }
            i += 1;
        }
        add(&mut records, kind, &function, bytes, blocks);
    }
    let totals = totals.map(|t| t.unwrap_or_else(|| panic!("no LEAK SUMMARY:\n{text}")));
    Kinds {
        totals: Some(totals),
        records,
    }
}

/// The extra valgrind options of fixture `name`'s header (`valgrind-flags: ...`).
fn valgrind_flags(name: &str) -> Vec<String> {
    let path = root().join("tests/fixtures").join(format!("{name}.c"));
    let text = std::fs::read_to_string(&path).unwrap();
    let header = &text[..text.find("*/").expect("a header comment")];
    header
        .lines()
        .filter_map(|l| l.split_once("valgrind-flags:").map(|x| x.1))
        .flat_map(|f| f.split_whitespace().map(str::to_owned))
        .collect()
}

/// valgrind on every fixture, as the headers say it was run: its loss records must be
/// the headers'. Sequential (valgrind is slow and the machine small).
#[test]
fn memcheck_agrees_with_the_headers() {
    // The oracle fixtures' figures are memcheck's and must be checked against it:
    // valgrind is required, never skipped.
    let valgrind = require_valgrind();
    let twin = fixture("libtlstwin");
    let mut wrong = Vec::new();
    for name in FIXTURES {
        let want = expected(name);
        let run = || {
            let dir = tempfile::tempdir().unwrap();
            let args = prepare(name, dir.path());
            let mut cmd = clean_command(&valgrind);
            cmd.current_dir(dir.path())
                .env("LD_PRELOAD", &twin)
                .args([
                    "--vgdb=no",
                    "--leak-check=full",
                    "--show-leak-kinds=all",
                    "--num-callers=40",
                ])
                .args(valgrind_flags(name))
                .arg(fixture(name))
                .args(&args);
            let out = output_with_timeout(&mut cmd, std::time::Duration::from_secs(300));
            let text = stderr_of(&out);
            assert_eq!(out.status.code(), Some(0), "valgrind {name}\n{text}");
            memcheck_kinds(&text)
        };
        if let Err(runs) = agreeing_memcheck(&want, run) {
            let runs: Vec<String> = runs.iter().map(|k| k.to_string()).collect();
            wrong.push(format!(
                "{name}: memcheck today, {} runs:\n{}the header (tests/fixtures/{name}.c):\n{want}",
                runs.len(),
                runs.join("  (next run)\n")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
