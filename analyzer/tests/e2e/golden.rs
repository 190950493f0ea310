//! Golden files: where the output is the contract (issue 14, item 4). The text report,
//! the JSON report, `memtrace check`'s summary, its JSON and its JUnit of fixed runs of
//! `tests/fixtures/gate.c` are compared, line for line, with `tests/golden/*`, so that a
//! change of any of them is seen in review. What differs from run to run or machine to
//! machine is replaced before the comparison: the repository's and the run's paths,
//! pids, times, addresses, the kernel's figures (RSS, mappings: the kernel's view has
//! its own tests in kernel.rs).
//!
//! `MEMTRACE_BLESS=1 cargo test --test e2e golden::` rewrites the files from today's
//! output (as inferno's `INFERNO_BLESS_TESTS` does); review the diff before committing it.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// The run every golden file but the tree's is made of: gate.c leaking 64 bytes at
/// leak_cache, 200 at leak_item (2 blocks), 8,192 bytes of mmap at map_site; every heap
/// block definitely lost (the global `sink` ends holding the mapping).
const ARGS: &[&str] = &["cache", "items", "2", "mmap"];

/// Replaces the run-dependent parts of `text`: `dir` (the run's directory) becomes
/// `$DIR`, the fixtures' directory `$FIXTURES`, the repository `$ROOT`; then pids, times
/// and addresses become placeholders.
fn normalize(text: &str, dir: &Path) -> String {
    let mut s = text.replace(&dir.display().to_string(), "$DIR");
    let fixtures = fixture("gate");
    let fixtures = fixtures.parent().unwrap().display().to_string();
    s = s.replace(&fixtures, "$FIXTURES");
    s = s.replace(&root().display().to_string(), "$ROOT");
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        out.push_str(&normalize_line(line));
        out.push('\n');
    }
    out
}

/// One line's pids (`pid 123`, `parent 123`, `.123.mtr`, `memtrace.gate.123/`,
/// `"pid": 123`), times (`1.5 ms`,
/// `0.038 s`, `time="0.038"`) and addresses (`0x55...`) as placeholders.
fn normalize_line(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_alnum = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if c == b'0' && b.get(i + 1) == Some(&b'x') && !prev_alnum {
            let mut j = i + 2;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            out.push_str("<addr>");
            i = j;
            continue;
        }
        if c.is_ascii_digit() && !prev_alnum {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b',' || b[j] == b'.') {
                j += 1;
            }
            // A number ending in '.' or ',' (end of sentence) leaves that out.
            while j > i && matches!(b[j - 1], b'.' | b',') {
                j -= 1;
            }
            let num = &line[i..j];
            let before = &line[..i];
            let after = &line[j..];
            let is_time = num.contains('.')
                && (after.starts_with(" ms")
                    || after.starts_with(" s")
                    || after.starts_with('"') && before.ends_with("time=\""));
            let is_pid = before.ends_with("pid ")
                || before.ends_with("pids ")
                || (before.ends_with(", ") && out.ends_with("<pid>, "))
                || before.ends_with("parent ")
                || before.ends_with("\"pid\": ")
                || before.ends_with("\"ppid\": ")
                || (before.ends_with('.') && after.starts_with(".mtr"))
                || (before.ends_with('.') && after.starts_with(".snap"))
                || (after.starts_with('/')
                    && before
                        .rsplit(['/', ' '])
                        .next()
                        .is_some_and(|w| w.starts_with("memtrace.") && w.ends_with('.')));
            if before.ends_with("memtrace-check.") {
                // check's scratch directory: memtrace-check.PID.RANDOM (hex).
                let mut k = j;
                while k < b.len() && (b[k] == b'.' || b[k].is_ascii_hexdigit()) {
                    k += 1;
                }
                out.push_str("<pid>.<random>");
                i = k;
                continue;
            }
            if is_time {
                out.push_str("<time>");
            } else if is_pid {
                out.push_str("<pid>");
            } else {
                out.push_str(num);
            }
            i = j;
            continue;
        }
        let ch = line[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The text report without its last section, the kernel's view (RSS and mappings vary).
fn without_kernel(text: &str) -> String {
    match text.find("\nKERNEL'S VIEW") {
        Some(i) => text[..i + 1].to_owned(),
        None => text.to_owned(),
    }
}

/// A JSON document without what varies: the kernel's section, the timeline, times.
fn stable_json(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["kernel", "timeline"] {
                    if m.contains_key(k) {
                        m.insert(k.to_owned(), Value::String("<varies>".into()));
                    }
                }
                for (k, x) in m.iter_mut() {
                    let volatile = k.ends_with("_ms") || k.ends_with("_ns") || k == "time";
                    if volatile && x.is_number() {
                        *x = Value::String("<time>".into());
                    } else {
                        strip(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Compares `got` with `tests/golden/NAME`, or writes it there under MEMTRACE_BLESS.
fn golden(name: &str, got: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("MEMTRACE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; MEMTRACE_BLESS=1 cargo test --test e2e golden:: writes it",
            path.display()
        )
    });
    if got != want {
        let mut diff = String::new();
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        for i in 0..g.len().max(w.len()) {
            let (a, b) = (w.get(i).copied(), g.get(i).copied());
            if a != b {
                diff += &format!(
                    "line {}:\n  golden: {}\n  now:    {}\n",
                    i + 1,
                    a.unwrap_or("<none>"),
                    b.unwrap_or("<none>")
                );
            }
        }
        panic!(
            "{} differs from today's output (MEMTRACE_BLESS=1 rewrites it; review the diff):\n{diff}",
            path.display()
        );
    }
}

/// `memtrace run -- gate ARGS` in a fresh directory; returns the directory and its log.
fn run_gate(args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "--"])
        .arg(fixture("gate"))
        .args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "memtrace run -- gate {args:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "one log expected: {logs:?}");
    let log = logs[0].clone();
    (dir, log)
}

fn stdout_of(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = output_with_timeout(cmd, TIMEOUT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The whole text report (`--full`).
#[test]
fn text_report() {
    let (dir, log) = run_gate(ARGS);
    let (code, text, err) = stdout_of(memtrace().args(["report", "--full"]).arg(&log));
    assert_eq!(code, Some(0), "{err}");
    golden("report.txt", &normalize(&without_kernel(&text), dir.path()));
}

/// The default text report, the short one: it holds nothing of the kernel's
/// view, which `--full` adds.
#[test]
fn text_report_short() {
    let (dir, log) = run_gate(ARGS);
    let (code, text, err) = stdout_of(memtrace().arg("report").arg(&log));
    assert_eq!(code, Some(0), "{err}");
    assert!(!text.contains("KERNEL'S VIEW"), "{text}");
    golden("report-short.txt", &normalize(&text, dir.path()));
}

#[test]
fn json_report() {
    let (dir, log) = run_gate(ARGS);
    let (code, text, err) = stdout_of(memtrace().args(["report", "--format", "json"]).arg(&log));
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let pretty = serde_json::to_string_pretty(&stable_json(v)).unwrap();
    golden("report.json", &normalize(&pretty, dir.path()));
}

#[test]
fn check_summary_json_and_junit() {
    let (dir, log) = run_gate(ARGS);
    let junit = dir.path().join("check.xml");
    let json = dir.path().join("check.json");
    let (code, out, err) = stdout_of(
        memtrace()
            .current_dir(dir.path())
            .arg("check")
            .arg("--junit")
            .arg(&junit)
            .arg("--json")
            .arg(&json)
            .arg(&log),
    );
    // 23: the gate failed (something leaked).
    assert_eq!(code, Some(23), "{out}{err}");
    golden(
        "check-summary.txt",
        &normalize(&format!("{out}{err}"), dir.path()),
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    golden("check.junit.xml", &normalize(&xml, dir.path()));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let pretty = serde_json::to_string_pretty(&stable_json(v)).unwrap();
    golden("check.json", &normalize(&pretty, dir.path()));
}

#[test]
fn check_summary_of_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = stdout_of(
        memtrace()
            .current_dir(dir.path())
            .args(["check", "--"])
            .arg(fixture("gate"))
            .arg("tree"),
    );
    assert_eq!(code, Some(23), "{out}{err}");
    // The processes are listed in the order of their pids, which the tree's processes
    // get in the order they start.
    golden(
        "check-tree-summary.txt",
        &normalize(&format!("{out}{err}"), dir.path()),
    );
}

// A tree in which 7 processes fail (crowd.c states the figures): the summary sums them
// up by program, a few stacks each, with one line of totals; every line is fixed.
#[test]
fn check_summary_of_a_crowd() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = stdout_of(
        memtrace()
            .current_dir(dir.path())
            .args(["check", "--"])
            .arg(fixture("crowd"))
            .arg(fixture("gate"))
            .arg(fixture("reach")),
    );
    assert_eq!(code, Some(23), "{out}{err}");
    let text = normalize(&format!("{out}{err}"), dir.path());
    assert!(
        text.contains(
            "  FAIL  6 processes of gate (pids <pid>, <pid>, <pid>, <pid>, <pid>, <pid>): \
             max-leaked-bytes; 600 bytes in 6 blocks leaked\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  in all: 7 processes of 2 programs failed, leaking 776 bytes in 11 blocks that count"
        ),
        "{text}"
    );
    golden("check-crowd-summary.txt", &text);
}

/// The normalizer itself: what it replaces and what it keeps.
#[test]
fn normalizer() {
    let d = Path::new("/tmp/x");
    assert_eq!(
        normalize_line("pid 4242, parent 17, log memtrace.gate.4242.mtr"),
        "pid <pid>, parent <pid>, log memtrace.gate.<pid>.mtr"
    );
    assert_eq!(
        normalize_line("6 processes of gate (pids 41, 42, 43, ...): 3, 4"),
        "6 processes of gate (pids <pid>, <pid>, <pid>, ...): 3, 4"
    );
    assert_eq!(
        normalize_line("in memtrace.gate.4242/ and /d/memtrace.gate.4242/gate.4242.mtr"),
        "in memtrace.gate.<pid>/ and /d/memtrace.gate.<pid>/gate.<pid>.mtr"
    );
    assert_eq!(
        normalize_line("ended: exit(), exit status 0, after 38.399 ms"),
        "ended: exit(), exit status 0, after <time> ms"
    );
    assert_eq!(
        normalize_line("  total heap usage: 4 allocs, 1 free, 296 bytes allocated"),
        "  total heap usage: 4 allocs, 1 free, 296 bytes allocated"
    );
    assert_eq!(normalize_line("at 0x55b97e2da244 in"), "at <addr> in");
    assert_eq!(
        normalize_line("kept in /tmp/memtrace-check.31741.0c97f9e508a1f (x)"),
        "kept in /tmp/memtrace-check.<pid>.<random> (x)"
    );
    assert_eq!(normalize_line("gate.c:43 (x2)"), "gate.c:43 (x2)");
    assert_eq!(normalize("/tmp/x/a.mtr", d), "$DIR/a.mtr\n");
}
