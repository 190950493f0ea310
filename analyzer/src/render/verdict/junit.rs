//! The JUnit XML file of `memtrace check` (see the parent's docs): one test
//! case per process, one per untraced process, and one error case when
//! nothing was judged. Uses the parent's text helpers and
//! [`xml_escape`](super::xml_escape).

use std::collections::HashSet;
use std::io::{self, Write};

use super::{counting, kinds_arg, offending, process_title, xml_escape};
use crate::analysis::lineage::Untraced;
use crate::gate::{ProcessVerdict, Verdict, program_name};
use crate::report::kinds_text;
use crate::units::{plural, thousands};

/// The JUnit XML report (see the module docs).
pub fn junit(v: &Verdict, out: &mut dyn Write) -> io::Result<()> {
    let tests = v.processes.len();
    let failures = v.processes.iter().filter(|p| !p.passed()).count();
    let skipped = v.processes.len() - v.judged() + v.untraced.len();
    let time: f64 = v
        .processes
        .iter()
        .map(|p| p.report.process.duration_ms / 1000.0)
        .sum();
    // A gate that judged nothing is an error, in a test case of its own.
    let nothing = v.judged() == 0;
    let errors = usize::from(nothing);
    let tests = tests + errors + v.untraced.len();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let counts = format!(
        "tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\""
    );
    s.push_str(&format!("<testsuites name=\"memtrace check\" {counts}>\n"));
    s.push_str(&format!("  <testsuite name=\"memtrace check\" {counts}>\n"));
    s.push_str(&format!(
        "    <properties>\n      <property name=\"leak-kinds\" value=\"{}\"/>\n    </properties>\n",
        xml_escape(&kinds_arg(v.rules.counted_kinds()))
    ));
    if nothing {
        s.push_str(&format!(
            "    <testcase classname=\"memtrace\" name=\"processes judged\" time=\"0.000\">\n      <error type=\"nothing-judged\" message=\"no process was judged: the gate checked nothing ({} skipped)\"/>\n    </testcase>\n",
            v.processes.len()
        ));
    }
    let counting = counting(v);
    let mut seen: HashSet<String> = HashSet::new();
    for p in &v.processes {
        s.push_str(&testcase(p, &counting, &mut seen));
    }
    for u in &v.untraced {
        s.push_str(&untraced_case(u));
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    out.write_all(s.as_bytes())
}

/// A process's test case, named after its title (made unique in `seen`).
fn testcase(p: &ProcessVerdict, counting: &str, seen: &mut HashSet<String>) -> String {
    let mut s = String::new();
    let r = p.report;
    let base = process_title(r);
    let mut name = base.clone();
    let mut n = 1;
    while !seen.insert(name.clone()) {
        n += 1;
        name = format!("{base} ({n})");
    }
    s.push_str(&format!(
        "    <testcase classname=\"memtrace.{}\" name=\"{}\" time=\"{:.3}\">\n",
        xml_escape(&program_name(&r.process.exe)),
        xml_escape(&name),
        r.process.duration_ms / 1000.0
    ));
    if let Some(skip) = &p.skipped {
        s.push_str(&format!(
            "      <skipped message=\"{}\"/>\n",
            xml_escape(&skip.reason(r))
        ));
    }
    for (i, f) in p.failures.iter().enumerate() {
        let body = if i == 0 {
            offending(p, usize::MAX, "")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "      <failure type=\"{}\" message=\"{}\">{}</failure>\n",
            f.rule,
            xml_escape(&f.message),
            xml_escape(&body)
        ));
    }
    s.push_str(&format!(
        "      <system-out>{}</system-out>\n",
        xml_escape(&system_out(p, counting))
    ));
    s.push_str("    </testcase>\n");
    s
}

/// A test case's output: the process, its figures, which kinds counted,
/// its notes.
fn system_out(p: &ProcessVerdict, counting: &str) -> String {
    let r = p.report;
    let mut sys = format!(
        "pid {}, parent {}, log {}\n{} allocations, {} frees, {} allocated, peak heap {}\n{counting}\n",
        r.process.pid,
        r.process.ppid,
        r.path.display(),
        thousands(r.summary.allocations),
        thousands(r.summary.frees),
        plural(r.summary.bytes_allocated, "byte", "bytes"),
        plural(r.summary.peak_heap_bytes, "byte", "bytes"),
    );
    if let Some(k) = &r.summary.leak_kinds {
        sys.push_str(&format!("leaked by kind: {}\n", kinds_text(k)));
    }
    for n in &p.notes {
        sys.push_str(&format!("note: {n}\n"));
    }
    sys
}

/// The skipped test case of a process of the run without a log.
fn untraced_case(u: &Untraced) -> String {
    let image = u
        .image
        .as_deref()
        .map_or(String::new(), |i| format!(" {i}"));
    format!(
        "    <testcase classname=\"memtrace.untraced\" name=\"pid {}{}\" time=\"0.000\">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
        u.pid,
        xml_escape(&image),
        xml_escape(&format!("not traced: {}", u.reason.text()))
    )
}
