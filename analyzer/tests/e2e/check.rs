//! `memtrace check`, the CI leak gate, on `tests/fixtures/gate.c` (leaks exactly what
//! its arguments ask for) and `heap.c`: every rule, the config file, every suppression
//! format (files written as valgrind and LeakSanitizer document them, and valgrind's own
//! `--gen-suppressions` output), the baseline, the JSON and JUnit outputs (JUnit parsed
//! by Python's XML parser), the exit statuses, and a process tree where only a
//! grandchild leaks.

use std::path::Path;
use std::process::{Command, Output};

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

/// A clean program passes (0) and its logs are removed; a leak fails with 23, names
/// the stack on stderr, and keeps the logs; `--error-exitcode` changes the status. By
/// default only the definitely (and indirectly) lost blocks count: of leak_item's two
/// blocks, the first (the second stays in the global `sink`, still reachable).
#[test]
fn pass_fail_and_error_exitcode() {
    let (_d, c) = check_gate(&[], &[]);
    c.assert_code(0);
    assert!(
        c.stderr().contains("memtrace check: passed"),
        "{}",
        c.stderr()
    );
    assert_eq!(c.json()["passed"], true);
    let log = c.judged()["log"].as_str().unwrap().to_owned();
    assert!(
        !Path::new(&log).exists(),
        "the temporary logs are removed on success"
    );

    let (_d, c) = check_gate(&[], &["items", "2"]);
    c.assert_code(FAILED);
    let err = c.stderr();
    assert!(err.contains("FAILED") && err.contains("leak_item"), "{err}");
    assert!(
        err.contains(
            "counting definitely and indirectly lost blocks (--leak-kinds definite,indirect)"
        ),
        "{err}"
    );
    assert!(
        err.contains("100 bytes in 1 block\n          (100 bytes in 1 block definitely lost)\n"),
        "{err}"
    );
    assert!(
        err.contains("100 bytes in 1 block still reachable not counted"),
        "{err}"
    );
    let p = c.judged();
    assert_eq!(leaks_at(p, "leak_item"), vec![(100, 1, "counted".into())]);
    assert_eq!(p["counted_bytes"], 100);
    assert_eq!(p["not_counted"]["reachable"]["bytes"], 100);
    assert_eq!(rules_failed(p), vec!["max-leaked-bytes"]);
    let log = p["log"].as_str().unwrap();
    assert!(Path::new(log).exists(), "the logs are kept on failure");
    assert!(err.contains("the logs are kept in"), "{err}");
    report(Path::new(log)).assert_leak("heap", "leak_item", 200, 2);
    std::fs::remove_dir_all(Path::new(log).parent().unwrap()).unwrap();

    let (_d, c) = check_gate(&["--error-exitcode", "7"], &["items", "2"]);
    c.assert_code(7);
    assert_eq!(c.json()["exit_status"], 7);
    let (_d, c) = check_gate(&["--error-exitcode", "0"], &["items", "2"]);
    c.assert_code(0);
    assert_eq!(
        c.json()["passed"],
        false,
        "report only: the verdict still says it"
    );
}

/// The command's own failure is never masked: its status wins over the gate's.
#[test]
fn command_failure_is_not_masked() {
    let (_d, c) = check_gate(&[], &["exit", "3"]);
    c.assert_code(3);
    assert!(c.stderr().contains("the command failed"), "{}", c.stderr());
    assert_eq!(c.json()["command"]["exit_status"], 3);
    let (_d, c) = check_gate(&[], &["items", "2", "exit", "4"]);
    c.assert_code(4);
    assert_eq!(c.json()["passed"], false);
    // Killed by a signal: 128 + the signal, and the process is not judged.
    let dir = tempfile::tempdir().unwrap();
    let c = check_in(dir.path(), &["--", "sh", "-c", "kill -9 $$"]);
    c.assert_code(128 + 9);
    assert_eq!(c.json()["command"]["signal"], 9);
    let top = &c.processes()[0];
    assert_eq!(top["judged"], false);
    assert!(
        top["skipped"].as_str().unwrap().contains("signal 9"),
        "{top:#}"
    );
}

/// Names and messages that XML must escape still give a well-formed JUnit file.
#[test]
fn junit_escapes_what_it_must() {
    let (dir, c) = check_gate(
        &["--junit", "j.xml"],
        &["items", "2", "<tag attr=\"x\">&amp;'\u{1}"],
    );
    c.assert_code(FAILED);
    let j = parse_junit(&dir.path().join("j.xml"));
    assert_eq!((j.tests, j.failures, j.skipped), (1, 1, 0));
    assert!(
        j.failed_cases[0].0.contains("<tag attr=\"x\">&amp;'?"),
        "{j:?}"
    );
    assert!(j.failed_cases[0].1.contains("leak_item"), "{j:?}");
}

/// memtrace's own failures exit 2 with one clear line, and nothing is judged.
#[test]
fn memtrace_failures_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let junk = d.join("junk.mtr");
    std::fs::write(&junk, b"not a log").unwrap();
    std::fs::write(d.join("bad.supp"), "this is no suppression\n").unwrap();
    let gate = fixture("gate");
    let gate = gate.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["missing.mtr"], "missing.mtr"),
        (vec!["junk.mtr"], "junk.mtr"),
        (vec![], "nothing to check"),
        (vec!["junk.mtr", "--", gate], "not both"),
        (vec!["-s", "bad.supp", "--", gate], "bad.supp:1"),
        (vec!["-s", "nope.supp", "--", gate], "nope.supp"),
        (vec!["--baseline", "junk.mtr", "--", gate], "junk.mtr"),
        (vec!["--max-leaked-bytes", "lots", "--", gate], "lots"),
        (vec!["--tolerance", "x%", "--", gate], "x%"),
        (vec!["--gen-suppressions=xml", "--", gate], "xml"),
        (vec!["--", "/nonexistent/program"], "/nonexistent/program"),
    ];
    for (args, needle) in cases {
        let c = check_in(d, &args);
        assert_eq!(c.code(), Some(2), "{args:?}: {}", c.stderr());
        assert!(c.stderr().contains(needle), "{args:?}: {}", c.stderr());
    }
    // A static program writes no log: the gate cannot vouch for it.
    let c = check_in(d, &["--", "/bin/true"]);
    if c.code() == Some(2) {
        assert!(c.stderr().contains("nothing was traced"), "{}", c.stderr());
    } else {
        c.assert_code(0); // /bin/true is dynamic on this machine
    }
}

/// Total limits: at the limit passes, one under fails; a blocks limit alone leaves
/// bytes unlimited. (Every kind of leak counts here.)
#[test]
fn total_limits() {
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-bytes", "300"]), &["items", "3"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-bytes", "299"]), &["items", "3"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-leaked-bytes"]);
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-blocks", "3"]), &["items", "3"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-blocks", "2"]), &["items", "3"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-leaked-blocks"]);
    assert!(
        c.stderr().contains("3 blocks leaked (max 2)"),
        "{}",
        c.stderr()
    );
}

/// Per-stack limits fail on the stack over them and name it. (Every kind of leak
/// counts here.)
#[test]
fn per_stack_limits() {
    let opts = all_kinds(&["--max-stack-leaked-bytes", "100"]);
    let (_d, c) = check_gate(&opts, &["cache", "items", "1"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&opts, &["cache", "items", "2"]);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(rules_failed(p), vec!["max-stack-leaked-bytes"]);
    assert!(
        p["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("leak_item")
    );
    let opts = all_kinds(&["--max-stack-leaked-blocks", "1"]);
    let (_d, c) = check_gate(&opts, &["cache", "items", "2"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-stack-leaked-blocks"]);
    let (_d, c) = check_gate(&opts, &["cache", "items", "1"]);
    c.assert_code(0);
}

/// mmap leaks count only when asked; the peak rule is absolute.
#[test]
fn mmap_leaks_and_peak() {
    let (_d, c) = check_gate(&[], &["mmap"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&["--mmap-leaks"], &["mmap"]);
    c.assert_code(FAILED);
    let p = c.judged();
    let l = &p["leaks"][0];
    assert_eq!(
        (l["kind"].as_str(), l["bytes"].as_u64()),
        (Some("mmap"), Some(8192))
    );
    assert!(stack_has(l, &fn_is("map_site")));
    assert!(
        c.stderr().contains("8,192 bytes in 1 region mapped"),
        "{}",
        c.stderr()
    );
    let (_d, c) = check_gate(&["--mmap-leaks=false"], &["mmap"]);
    c.assert_code(0);

    let (_d, c) = check_gate(&["--max-peak", "2m"], &["peak", "1048576"]);
    c.assert_code(0);
    assert_eq!(c.judged()["peak_heap_bytes"], 1048576);
    let (_d, c) = check_gate(&["--max-peak", "1023k"], &["peak", "1048576"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-peak"]);
}

/// The config file is found in the current directory or above, its paths are relative
/// to it, and the command line wins over it; a bad one is an error. Its `leak-kinds`
/// makes every kind count here (gate.c's last leak is still reachable).
#[test]
fn config_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("build/deep");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(dir.path().join("ci")).unwrap();
    std::fs::write(
        dir.path().join("ci/known.supp"),
        "# known leaks\nsuppress the-cache fun:leak_cache\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".memtrace.toml"),
        "[check]\nmax-leaked-bytes = \"200\"\nsuppressions = [\"ci/known.supp\"]\nerror-exitcode = 9\n\
         leak-kinds = \"all\"\n",
    )
    .unwrap();
    let gate = fixture("gate");
    let gate = gate.to_str().unwrap();
    let c = check_in(&sub, &["--", gate, "cache", "items", "2"]);
    c.assert_code(0);
    assert!(c.stderr().contains(".memtrace.toml"), "{}", c.stderr());
    assert_eq!(c.json()["rules"]["max_leaked_bytes"], 200);
    assert_eq!(
        c.json()["rules"]["leak_kinds"],
        serde_json::json!(["definite", "indirect", "possible", "reachable"])
    );
    assert_eq!(c.json()["suppressions"][0]["matched_bytes"], 64);
    assert_eq!(c.judged()["counted_bytes"], 200);
    let c = check_in(&sub, &["--", gate, "cache", "items", "3"]);
    c.assert_code(9);
    // The command line's kinds win: of leak_item's 300 bytes, 100 are still reachable.
    let c = check_in(
        &sub,
        &[
            "--leak-kinds",
            "reachable",
            "--",
            gate,
            "cache",
            "items",
            "3",
        ],
    );
    c.assert_code(0);
    assert_eq!(c.judged()["counted_bytes"], 100);
    let c = check_in(
        &sub,
        &[
            "--max-leaked-bytes",
            "300",
            "--",
            gate,
            "cache",
            "items",
            "3",
        ],
    );
    c.assert_code(0);
    let c = check_in(&sub, &["--no-config", "--", gate, "cache", "items", "2"]);
    c.assert_code(FAILED);
    assert_eq!(
        c.judged()["counted_bytes"],
        164,
        "the defaults: definitely lost blocks"
    );

    std::fs::write(
        dir.path().join(".memtrace.toml"),
        "[check]\nmax-leaks = 1\n",
    )
    .unwrap();
    let c = check_in(&sub, &["--", gate]);
    c.assert_code(2);
    assert!(c.stderr().contains("max-leaks"), "{}", c.stderr());
}

/// A process tree where only the grandchild leaks: the grandchild alone fails, every
/// other process passes or is skipped with its reason, and the JUnit file (parsed by a
/// real XML parser) has one case per process and one failure. Of the grandchild's 3
/// blocks, the last stays in a global (still reachable): 2 count.
#[test]
fn grandchild_leak_in_a_process_tree() {
    let (dir, c) = check_gate(&["--junit", "junit.xml"], &["tree"]);
    c.assert_code(FAILED);
    let procs = c.processes();
    assert_eq!(
        procs.len(),
        4,
        "top, middle, exec'd fork child, grandchild: {procs:#?}"
    );
    let failing: Vec<&Value> = procs.iter().filter(|p| p["passed"] == false).collect();
    assert_eq!(failing.len(), 1, "{procs:#?}");
    let g = failing[0];
    assert_eq!(g["cmdline"][1], "grandchild");
    assert_eq!(
        leaks_at(g, "grandchild_leak"),
        vec![(200, 2, "counted".into())]
    );
    assert_eq!(g["counted_bytes"], 200);
    assert_eq!(g["not_counted"]["reachable"]["count"], 1);
    let others = g["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !stack_has(l, &fn_is("grandchild_leak")))
        .count();
    assert_eq!(others, 0, "{g:#}");
    for p in procs.iter().filter(|p| p["cmdline"][1] != "grandchild") {
        if p["judged"] == true {
            assert_eq!(p["counted_bytes"], 0, "{p:#}");
        } else {
            assert_eq!(p["ended"], "exec", "{p:#}");
        }
    }
    let junit = parse_junit(&dir.path().join("junit.xml"));
    assert_eq!(junit.tests, 4);
    assert_eq!(junit.failures, 1);
    assert_eq!(junit.skipped, 1);
    assert_eq!(junit.failed_cases.len(), 1);
    assert!(junit.failed_cases[0].0.contains("grandchild"), "{junit:?}");
    assert!(
        junit.failed_cases[0].1.contains("grandchild_leak"),
        "{junit:?}"
    );
    assert!(
        junit.failed_cases[0]
            .1
            .contains("(200 bytes in 2 blocks definitely lost)"),
        "{junit:?}"
    );
    assert_eq!(junit.leak_kinds.as_deref(), Some("definite,indirect"));
}

/// What Python's `xml.etree` reads from a JUnit file.
#[derive(Debug)]
struct Junit {
    tests: u64,
    failures: u64,
    skipped: u64,
    /// (test case name, failure text) of each failure.
    failed_cases: Vec<(String, String)>,
    /// The suite's `leak-kinds` property.
    leak_kinds: Option<String>,
}

fn parse_junit(path: &Path) -> Junit {
    let script = r#"
import sys, json, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
suite = root.find("testsuite")
cases = suite.findall("testcase")
assert int(suite.get("tests")) == len(cases)
failed = []
for c in cases:
    assert c.get("name") and c.get("classname") and float(c.get("time")) >= 0
    for f in c.findall("failure"):
        assert f.get("message") and f.get("type")
        failed.append([c.get("name"), f.text or ""])
props = {p.get("name"): p.get("value") for p in suite.iter("property")}
print(json.dumps({"tests": len(cases), "failures": int(suite.get("failures")),
    "skipped": sum(1 for c in cases if c.find("skipped") is not None), "failed": failed,
    "leak_kinds": props.get("leak-kinds")}))
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
    Junit {
        tests: v["tests"].as_u64().unwrap(),
        failures: v["failures"].as_u64().unwrap(),
        skipped: v["skipped"].as_u64().unwrap(),
        failed_cases: v["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f[0].as_str().unwrap().to_owned(),
                    f[1].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        leak_kinds: v["leak_kinds"].as_str().map(str::to_owned),
    }
}

/// A baseline (the JSON of an earlier check, or its log) lets known leaks pass and
/// fails on growth, per stack, with a tolerance; the peak is compared too. (Every kind
/// of leak counts here: the baseline's own kinds are in `baseline_of_counted_kinds`.)
#[test]
fn baseline_pass_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = fixture("gate");
    let gate = gate.to_str().unwrap();
    // The baseline run: known leaks, kept logs.
    let c = check_in(
        d,
        &all_kinds(&[
            "-o",
            "base/%e.%p.mtr",
            "--",
            gate,
            "cache",
            "items",
            "2",
            "peak",
            "100000",
        ]),
    );
    c.assert_code(FAILED);
    std::fs::copy(d.join("check.json"), d.join("base.json")).unwrap();
    let base_log = c.judged()["log"].as_str().unwrap().to_owned();

    for base in ["base.json", base_log.as_str()] {
        let c = check_in(
            d,
            &all_kinds(&[
                "--baseline",
                base,
                "--",
                gate,
                "cache",
                "items",
                "2",
                "peak",
                "100000",
            ]),
        );
        c.assert_code(0);
        let p = c.judged();
        assert_eq!(leaks_at(p, "leak_item"), vec![(200, 2, "baseline".into())]);
        assert_eq!(p["baseline_peak_heap_bytes"], 100000);

        // One more item: 100 new bytes at leak_item fail; the cache is still known.
        let c = check_in(
            d,
            &all_kinds(&[
                "--baseline",
                base,
                "--",
                gate,
                "cache",
                "items",
                "3",
                "peak",
                "100000",
            ]),
        );
        c.assert_code(FAILED);
        let p = c.judged();
        assert_eq!(p["counted_bytes"], 100);
        assert_eq!(p["counted_blocks"], 1);
        let item = p["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| stack_has(l, &fn_is("leak_item")))
            .unwrap();
        assert_eq!(
            (item["new_bytes"].as_u64(), item["new_count"].as_u64()),
            (Some(100), Some(1))
        );
        assert!(c.stderr().contains("beyond the baseline"), "{}", c.stderr());
    }
    // A tolerance absorbs the growth.
    let c = check_in(
        d,
        &all_kinds(&[
            "--baseline",
            "base.json",
            "--tolerance",
            "50%",
            "--",
            gate,
            "cache",
            "items",
            "3",
            "peak",
            "100000",
        ]),
    );
    c.assert_code(0);
    // Peak growth beyond the tolerance (default 5%) fails; a wider one passes.
    let c = check_in(
        d,
        &all_kinds(&[
            "--baseline",
            "base.json",
            "--",
            gate,
            "cache",
            "items",
            "2",
            "peak",
            "200000",
        ]),
    );
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["peak-tolerance"]);
    let c = check_in(
        d,
        &all_kinds(&[
            "--baseline",
            "base.json",
            "--peak-tolerance",
            "150%",
            "--",
            gate,
            "cache",
            "items",
            "2",
            "peak",
            "200000",
        ]),
    );
    c.assert_code(0);
    // Fewer leaks than the baseline pass.
    let c = check_in(
        d,
        &all_kinds(&["--baseline", "base.json", "--", gate, "cache"]),
    );
    c.assert_code(0);
    // With the default kinds, the base log allows only its definitely lost blocks:
    // leak_item's still reachable one allows nothing.
    let c = check_in(
        d,
        &[
            "--baseline",
            &base_log,
            "--",
            gate,
            "cache",
            "items",
            "3",
            "peak",
            "100000",
        ],
    );
    c.assert_code(FAILED);
    assert_eq!(c.judged()["counted_bytes"], 100);
}

/// Existing logs are checked as they are: one verdict per log.
#[test]
fn checks_existing_logs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = fixture("gate");
    let mut run = memtrace();
    run.current_dir(d)
        .args(["run", "-o", "a.%p.mtr", "--"])
        .arg(&gate)
        .args(["items", "2"]);
    assert!(output_with_timeout(&mut run, TIMEOUT).status.success());
    let mut run = memtrace();
    run.current_dir(d)
        .args(["run", "-o", "b.%p.mtr", "--"])
        .arg(&gate);
    assert!(output_with_timeout(&mut run, TIMEOUT).status.success());
    let logs = logs_in(d);
    assert_eq!(logs.len(), 2);
    let args: Vec<&str> = logs.iter().map(|p| p.to_str().unwrap()).collect();
    let c = check_in(d, &args);
    c.assert_code(FAILED);
    let passed: Vec<bool> = c
        .processes()
        .iter()
        .map(|p| p["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(passed, vec![false, true]);
    assert!(c.json()["command"].is_null());
    let c = check_in(d, &args[1..]);
    c.assert_code(0);
}

/// `--exe` judges only the matching processes.
#[test]
fn exe_selection() {
    // A gate that judged nothing never passes (issue 13): status 2, the reason in the
    // summary and in JUnit as an error.
    let (d, c) = check_gate_junit(&["--exe", "*/no-such-program"], &["items", "2"]);
    c.assert_code(2);
    assert!(
        c.stderr().contains(
            "memtrace check: error: no process was judged (see the reasons above): the gate checked nothing, exit status 2"
        ),
        "{}",
        c.stderr()
    );
    let xml = std::fs::read_to_string(d.path().join("check.xml")).unwrap();
    assert!(
        xml.contains("errors=\"1\"")
            && xml.contains("<error type=\"nothing-judged\" message=\"no process was judged: the gate checked nothing (1 skipped)\"/>"),
        "{xml}"
    );
    let (_d, c) = check_gate(&["--exe", "gate"], &["items", "2"]);
    c.assert_code(FAILED);
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

/// A suppression file of `tests/suppressions/`.
fn supp_file(name: &str) -> String {
    root()
        .join("tests/suppressions")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// `(matched_stacks, matched_blocks, matched_bytes)` of the suppression `name`.
fn matched(c: &Checked, name: &str) -> (u64, u64, u64) {
    let s = c.json()["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no suppression {name}: {:#}", c.json()["suppressions"]));
    (
        s["matched_stacks"].as_u64().unwrap(),
        s["matched_blocks"].as_u64().unwrap(),
        s["matched_bytes"].as_u64().unwrap(),
    )
}

/// (bytes, blocks) summed over the judged process's leaks with `function` and `status`.
fn at(c: &Checked, function: &str, status: &str) -> (u64, u64) {
    leaks_at(c.judged(), function)
        .into_iter()
        .filter(|e| e.2 == status)
        .fold((0, 0), |(b, n), e| (b + e.0, n + e.1))
}

/// valgrind's own format, as valgrind documents it (`...`, `*`/`?`, mangled names,
/// `match-leak-kinds`, `obj:`, `src:`, entries of other kinds ignored): heap.c's four
/// targeted leaks are suppressed, its two others fail the gate, and the counts are exact
/// (every leak of heap.c is definitely lost, which the default kinds count).
#[test]
fn valgrind_suppression_file() {
    let vg = supp_file("valgrind.supp");
    let (_d, c) = check_fixture("heap", &["-s", &vg], &[]);
    c.assert_code(FAILED);
    assert!(
        c.stderr()
            .contains("2 entries of other kinds than leaks ignored"),
        "{}",
        c.stderr()
    );
    assert_eq!(matched(&c, "heap-leak_malloc"), (1, 3, 300));
    assert_eq!(matched(&c, "heap-leak_strdup"), (1, 1, 16));
    assert_eq!(matched(&c, "heap-leak_calloc"), (1, 1, 120));
    assert_eq!(matched(&c, "heap-leak_aligned"), (4, 4, 1736));
    assert_eq!(at(&c, "leak_realloc_chain", "counted"), (200, 1));
    assert_eq!(at(&c, "leak_reallocarray", "counted"), (240, 1));
    assert_eq!(c.judged()["counted_bytes"], 440);
    assert_eq!(c.json()["suppressions"][0]["format"], "valgrind");
    assert!(
        c.stderr()
            .contains("300 bytes in 3 blocks (1 stack): heap-leak_malloc"),
        "{}",
        c.stderr()
    );

    let (_d, c) = check_fixture("cpp", &["-s", &vg], &[]);
    c.assert_code(FAILED);
    assert_eq!(matched(&c, "cpp-leak_cpp"), (1, 1, 100));
    assert_eq!(at(&c, "ns::Widget::make()", "counted"), (40, 1));
    assert_eq!(c.judged()["counted_bytes"], 40);

    // 39 of thread_leak_site's 40 blocks are definitely lost; one is still reachable
    // (the global `sink` holds it: whichever thread stored there last).
    let (_d, c) = check_fixture("threads", &["-s", &vg], &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "threads-thread_leak_site").1, 39);
    let (_d, c) = check_fixture("threads", &all_kinds(&["-s", &vg]), &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "threads-thread_leak_site").2, 2880);
}

/// LeakSanitizer's format: substrings, `^`/`$` anchors, demangled C++ names.
#[test]
fn lsan_suppression_file() {
    let lsan = supp_file("lsan.supp");
    let (_d, c) = check_fixture("heap", &all_kinds(&["-s", &lsan]), &[]);
    c.assert_code(FAILED);
    assert_eq!(matched(&c, "leak_realloc_chain"), (1, 1, 200));
    assert_eq!(matched(&c, "^leak_reallocarray$"), (1, 1, 240));
    assert_eq!(c.judged()["counted_bytes"], 2612 - 440);
    assert_eq!(c.json()["suppressions"][0]["format"], "lsan");
    let (_d, c) = check_fixture("cpp", &["-s", &lsan], &[]);
    assert_eq!(matched(&c, "ns::Widget::make"), (1, 1, 40));
    assert_eq!(at(&c, "leak_cpp(int)", "counted"), (100, 1));
}

/// memtrace's own format: terms anywhere in the stack, mangled names, byte limits (a
/// suppression over its limit suppresses nothing and the summary says so). Every kind
/// of leak counts here.
#[test]
fn memtrace_suppression_file() {
    let own = supp_file("memtrace.supp");
    let (_d, c) = check_fixture("threads", &all_kinds(&["-s", &own]), &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "threads"), (1, 40, 2880));
    let (_d, c) = check_fixture("pvalloc", &["-s", &own], &[]);
    c.assert_code(0);
    assert_eq!(matched(&c, "pvalloc"), (1, 1, 8192));
    let (_d, c) = check_fixture("cpp", &["-s", &own], &[]);
    assert_eq!(matched(&c, "cpp-array"), (1, 1, 100));
    assert_eq!(c.judged()["counted_bytes"], 40);
    // mmap leaks: 20480 bytes at mmap_partial_site, exactly its max:20k.
    let (_d, c) = check_fixture("mmap", &["-s", &own, "--mmap-leaks"], &[]);
    c.assert_code(FAILED);
    assert_eq!(matched(&c, "mmap-partial"), (1, 1, 20480));
    assert_eq!(c.judged()["counted_bytes"], 49152 - 20480);

    // Over its limit, a suppression lets its leaks count.
    let dir = tempfile::tempdir().unwrap();
    let tight = dir.path().join("tight.supp");
    std::fs::write(&tight, "suppress threads fun:thread_leak_site max:2k\n").unwrap();
    let (_d, c) = check_fixture("threads", &all_kinds(&["-s", tight.to_str().unwrap()]), &[]);
    c.assert_code(FAILED);
    assert_eq!(c.json()["suppressions"][0]["over_limit"], 1);
    assert_eq!(at(&c, "thread_leak_site", "counted"), (2880, 40));
    assert!(
        c.stderr().contains("over its max of 2,048"),
        "{}",
        c.stderr()
    );
}

/// The suppressions valgrind itself generates for heap.c (`--gen-suppressions=all`, each
/// with `match-leak-kinds: definite`) suppress every one of its leaks: memtrace finds
/// them all definitely lost, as memcheck does.
#[test]
fn suppressions_generated_by_valgrind() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vg.log");
    let out = clean_command(require_valgrind())
        .args([
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--gen-suppressions=all",
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(fixture("heap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // valgrind's log prefixes its own lines with ==PID==; suppressions are unprefixed.
    let text = std::fs::read_to_string(&log).unwrap();
    let supp: String = text
        .lines()
        .filter(|l| !l.starts_with("=="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(supp.matches("Memcheck:Leak").count() >= 6, "{text}");
    let file = dir.path().join("generated.supp");
    std::fs::write(&file, &supp).unwrap();
    let (_d, c) = check_fixture("heap", &["-s", file.to_str().unwrap()], &[]);
    c.assert_code(0);
    let total: u64 = c.json()["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["matched_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2612, "{supp}");
}

/// `--gen-suppressions` prints entries that, used as suppression files, make the same
/// run pass: in each of the three formats, with every kind of leak counted (valgrind's
/// entries name the kinds of their leak).
#[test]
fn gen_suppressions_round_trip() {
    for format in ["memtrace", "valgrind", "lsan"] {
        let opt = format!("--gen-suppressions={format}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("gen.{format}.supp"));
        let (_d, c) = check_fixture(
            "heap",
            &all_kinds(&[&opt, "--gen-suppressions-file", file.to_str().unwrap()]),
            &[],
        );
        c.assert_code(FAILED);
        assert_eq!(
            c.stdout(),
            "heap fixture done\n",
            "the program's stdout is its own"
        );
        let printed = std::fs::read_to_string(&file).unwrap();
        let (_d, c) = check_fixture("heap", &all_kinds(&["-s", file.to_str().unwrap()]), &[]);
        c.assert_code(0);
        assert_eq!(c.json()["suppressions"][0]["format"], format, "{printed}");
        let total: u64 = c.json()["suppressions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["matched_bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 2612, "{format}:\n{printed}");
    }
    // The default prints memtrace's and valgrind's formats, on stderr, for the leaks
    // that count (definitely lost, here).
    let (_d, c) = check_fixture("heap", &["--gen-suppressions"], &[]);
    let printed = c.stderr();
    assert!(
        printed.contains("suppress leak_malloc") && printed.contains("Memcheck:Leak"),
        "{printed}"
    );
    assert!(
        printed.contains("   match-leak-kinds: definite\n   fun:malloc\n   fun:leak_malloc\n"),
        "{printed}"
    );
    assert!(!printed.contains("match-leak-kinds: all"), "{printed}");
}

/// The Rust runtime's one-time allocations (the main thread's handle and guard info) are
/// still reachable, so they do not count by default; with every kind counted, the
/// built-in suppressions take them out: either way a Rust program's verdict is its own
/// leaks exactly.
#[test]
fn rust_runtime_is_suppressed_by_default() {
    let (_d, c) = check_fixture("rust_leak", &[], &[]);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(2200), Some(4))
    );
    assert!(
        p["not_counted"]["reachable"]["bytes"].as_u64() > Some(0),
        "{p:#}"
    );
    let (_d, c) = check_fixture("rust_leak", &["--no-default-suppressions"], &[]);
    c.assert_code(FAILED);
    assert_eq!(c.judged()["counted_bytes"], 2200);

    let (_d, c) = check_fixture("rust_leak", &all_kinds(&[]), &[]);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(
        (p["counted_bytes"].as_u64(), p["counted_blocks"].as_u64()),
        (Some(2200), Some(4))
    );
    assert_eq!(at(&c, "rust_leak::leak_rust_box", "counted"), (1000, 1));
    assert_eq!(at(&c, "rust_leak::leak_rust_vec", "counted"), (1200, 3));
    let builtin: Vec<&Value> = c.json()["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["file"] == "<built-in>")
        .collect();
    assert!(
        builtin
            .iter()
            .any(|s| s["matched_bytes"].as_u64() > Some(0)),
        "{builtin:?}"
    );

    let (_d, c) = check_fixture("rust_leak", &all_kinds(&["--no-default-suppressions"]), &[]);
    c.assert_code(FAILED);
    assert!(c.judged()["counted_bytes"].as_u64().unwrap() > 2200);
    assert!(c.json()["suppressions"].as_array().unwrap().is_empty());
}

/// The README's recipe `memtrace check --exe '*/target/*/deps/*' -- cargo test` on a
/// small crate: cargo itself is traced but not judged; a leaking test fails the gate
/// and is named, a clean one passes.
#[test]
fn cargo_test_recipe() {
    // cargo sets CARGO for the tests it runs, and for the build of this test binary: the
    // build's cargo stands in when the binary is run by hand, never a skip.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(
        d.join("Cargo.toml"),
        "[package]\nname = \"gatedemo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    let lib = |leak: bool| {
        format!(
            "pub fn make(n: usize) -> Vec<u8> {{ vec![1; n] }}\n\
             #[inline(never)] pub fn cache_it(v: Vec<u8>) {{ {} }}\n\
             #[cfg(test)] mod tests {{\n\
               #[test] fn makes() {{ let v = super::make(4321); assert_eq!(v.len(), 4321); super::cache_it(v); }}\n\
             }}\n",
            if leak {
                "std::mem::forget(v);"
            } else {
                "drop(v);"
            }
        )
    };
    let cargo_env = |cmd: &mut Command| {
        cmd.current_dir(d)
            .env("CARGO", &cargo)
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TARGET_DIR", d.join("target"))
            .env_remove("RUSTFLAGS");
    };
    for leak in [true, false] {
        std::fs::write(d.join("src/lib.rs"), lib(leak)).unwrap();
        let mut build = clean_command(&cargo);
        build.args(["test", "--no-run", "-q"]);
        cargo_env(&mut build);
        let out = output_with_timeout(&mut build, TIMEOUT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = memtrace();
        cmd.args([
            "check",
            "--exe",
            "*/target/*/deps/*",
            "--json",
            "check.json",
            "--",
        ])
        .arg(&cargo)
        .args(["test", "-q", "--lib"]);
        cargo_env(&mut cmd);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("check.json")).unwrap()).unwrap();
        let judged: Vec<&Value> = json["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["judged"] == true)
            .collect();
        assert_eq!(judged.len(), 1, "only the test binary is judged: {err}");
        assert!(
            judged[0]["exe"]
                .as_str()
                .unwrap()
                .contains("/deps/gatedemo-")
        );
        if leak {
            assert_eq!(out.status.code(), Some(FAILED), "{err}");
            assert_eq!(judged[0]["counted_bytes"], 4321, "{err}");
            assert!(
                err.contains("gatedemo::cache_it") || err.contains("gatedemo::tests::makes"),
                "{err}"
            );
        } else {
            assert_eq!(out.status.code(), Some(0), "{err}");
        }
    }
}
