//! `memtrace check`, the CI leak gate, on `tests/fixtures/gate.c` (leaks exactly what
//! its arguments ask for) and `heap.c`: every rule, the config file, every suppression
//! format (files written as valgrind and LeakSanitizer document them, and valgrind's own
//! `--gen-suppressions` output), the baseline, the JSON and JUnit outputs (JUnit parsed
//! by Python's XML parser), the exit statuses, and a process tree where only a
//! grandchild leaks.
//!
//! This module is the harness of the `check` tests (a run of `memtrace check` and its
//! JSON, read back); its submodules hold the tests, by subject, and use only it and
//! `crate::util`:
//! - `verdicts`: pass and fail, the exit statuses, memtrace's own failures
//! - `rules`: the limits (totals, per stack, mmap, peak) and the config file
//! - `junit`: the JUnit file, parsed by Python's XML parser; a process tree
//! - `baseline`: known leaks pass, growth fails, with tolerances
//! - `selection`: existing logs, `--exe`, the README's `cargo test` recipe
//! - `suppressions`: every suppression format, generated ones, the built-in ones

mod baseline;
mod junit;
mod rules;
mod selection;
mod suppressions;
mod verdicts;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::util::*;

/// Exit status of a failed rule (the documented default).
const FAILED: i32 = 23;

/// `opts` and `--leak-kinds all`: every unfreed block counts, whatever its
/// reachability. For the tests of other things than the leak kinds (gate.c's last leak
/// stays in a global, still reachable, which by default does not count; see its header).
fn all_kinds<'a>(opts: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--leak-kinds", "all"];
    v.extend_from_slice(opts);
    v
}

/// The outcome of one `memtrace check`.
struct Checked {
    out: Output,
    json: Option<Value>,
}

impl Checked {
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "memtrace check exit status\nstderr:\n{}\nstdout:\n{}",
            self.stderr(),
            self.stdout()
        );
        self
    }

    fn json(&self) -> &Value {
        self.json.as_ref().expect("the check wrote JSON")
    }

    /// The processes of the JSON document.
    fn processes(&self) -> &Vec<Value> {
        self.json()["processes"].as_array().expect("processes")
    }

    /// The only judged process.
    fn judged(&self) -> &Value {
        let j: Vec<&Value> = self
            .processes()
            .iter()
            .filter(|p| p["judged"] == true)
            .collect();
        assert_eq!(j.len(), 1, "{:#}", self.json());
        j[0]
    }
}

/// `memtrace check ARGS` in `dir`, always with `--json` (parsed when written).
fn check_in(dir: &Path, args: &[&str]) -> Checked {
    let json = dir.join("check.json");
    let _ = std::fs::remove_file(&json);
    let mut cmd = memtrace();
    cmd.current_dir(dir)
        .arg("check")
        .arg("--json")
        .arg(&json)
        .args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let json = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("check's JSON parses"));
    Checked { out, json }
}

/// `memtrace check OPTIONS -- gate GATE_ARGS` in a fresh directory.
fn check_gate(opts: &[&str], gate_args: &[&str]) -> (tempfile::TempDir, Checked) {
    let dir = tempfile::tempdir().unwrap();
    let gate = fixture("gate");
    let mut args: Vec<&str> = opts.to_vec();
    args.push("--");
    args.push(gate.to_str().unwrap());
    args.extend_from_slice(gate_args);
    let c = check_in(dir.path(), &args);
    (dir, c)
}

/// [`check_gate`] with `--junit check.xml` in the run's directory.
fn check_gate_junit(opts: &[&str], gate_args: &[&str]) -> (tempfile::TempDir, Checked) {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("check.xml");
    let gate = fixture("gate");
    let mut args: Vec<&str> = opts.to_vec();
    args.extend_from_slice(&["--junit", junit.to_str().unwrap(), "--"]);
    args.push(gate.to_str().unwrap());
    args.extend_from_slice(gate_args);
    let c = check_in(dir.path(), &args);
    (dir, c)
}

/// The leaks of process `p` whose stack has `function`, summed (a call site the
/// compiler duplicated is several stacks): `[(bytes, count, status)]`, one entry per
/// status.
fn leaks_at(p: &Value, function: &str) -> Vec<(u64, u64, String)> {
    let mut by_status: Vec<(u64, u64, String)> = Vec::new();
    for l in p["leaks"].as_array().unwrap() {
        if !stack_has(l, &fn_is(function)) {
            continue;
        }
        let status = l["status"].as_str().unwrap().to_owned();
        let (b, c) = (l["bytes"].as_u64().unwrap(), l["count"].as_u64().unwrap());
        match by_status.iter_mut().find(|e| e.2 == status) {
            Some(e) => {
                e.0 += b;
                e.1 += c;
            }
            None => by_status.push((b, c, status)),
        }
    }
    by_status
}

fn rules_failed(p: &Value) -> Vec<String> {
    p["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect()
}

/// `memtrace check OPTIONS -- FIXTURE FIXTURE_ARGS` in a fresh directory.
fn check_fixture(name: &str, opts: &[&str], fixture_args: &[&str]) -> (tempfile::TempDir, Checked) {
    let dir = tempfile::tempdir().unwrap();
    let prog = fixture(name);
    let mut args: Vec<&str> = opts.to_vec();
    args.push("--");
    args.push(prog.to_str().unwrap());
    args.extend_from_slice(fixture_args);
    let c = check_in(dir.path(), &args);
    (dir, c)
}
