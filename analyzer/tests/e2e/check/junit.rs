//! The JUnit file, parsed by Python's XML parser: escaping, and a process tree where only
//! a grandchild leaks.

use std::path::Path;
use std::process::Command;

use super::*;

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
