//! What `memtrace check` prints: a short summary for people (stderr), a
//! JSON document, a JUnit XML file and memcheck's XML for CI systems, and suppression
//! entries for the leaks that failed the gate.
//!
//! The JUnit file has one test case per process of the run, named after the
//! program and its arguments (not its pid, so that CI systems can follow a
//! case from run to run); a case fails with one `<failure>` per broken rule,
//! whose text lists the offending stacks. Skipped processes are
//! `<skipped>` cases. The suite's `leak-kinds` property (and each case's
//! output) says which reachability kinds counted.
//!
//! Every output says which kinds of leaked blocks counted (`--leak-kinds`)
//! and, for each counted stack that was classified, its bytes and blocks by
//! kind; the summary also says what the process left of the kinds that do
//! not count.
//!
//! This module writes the summary and the suppression entries, and holds
//! the text helpers the outputs share; `junit` writes the JUnit file and
//! `json` the JSON document, `memcheck` valgrind memcheck's XML (all
//! re-exported here).

mod crowd;
mod json;
mod junit;
mod memcheck;

use std::collections::HashSet;
use std::io::{self, Write};

use crate::analysis::reach::Kind;
use crate::analysis::symbolize::Frame;
use crate::gate::suppress;
use crate::gate::{ProcessVerdict, Status, Verdict, above_main, program_name, where_};
use crate::report::{Report, Site, kinds_present};
use crate::units::plural;

pub use self::json::{JCommand, json};
pub use self::junit::junit;
pub use self::memcheck::memcheck_xml;

/// Frames shown per stack in the summary and the JUnit file.
const FRAMES: usize = 12;

fn frame_line(i: usize, f: &Frame) -> String {
    let mut s = format!("#{i} ");
    match &f.function {
        Some(func) => s.push_str(func),
        None => s.push_str(&crate::frames::address_text(f)),
    }
    match (&f.file, f.line) {
        (Some(file), Some(line)) => s.push_str(&format!(" at {file}:{line}")),
        (Some(file), None) => s.push_str(&format!(" at {file}")),
        _ => {
            if let Some(m) = &f.module {
                s.push_str(&format!(" ({m})"));
            }
        }
    }
    if f.inlined {
        s.push_str(" [inlined]");
    }
    s
}

/// The stack's lines, `indent` spaces in, at most [`FRAMES`] frames.
fn stack_lines(out: &mut String, indent: &str, frames: &[Frame]) {
    let frames = above_main(frames);
    if frames.is_empty() {
        out.push_str(&format!("{indent}(stack not recorded)\n"));
    }
    for (i, f) in frames.iter().enumerate().take(FRAMES) {
        out.push_str(&format!("{indent}{}\n", frame_line(i, f)));
    }
    if frames.len() > FRAMES {
        out.push_str(&format!(
            "{indent}... {} more frames\n",
            frames.len() - FRAMES
        ));
    }
}

fn leak_head(kind: &str, s: &Site, new: Option<(u64, u64)>) -> String {
    let unit = if kind == "mmap" {
        ("region", "regions")
    } else {
        ("block", "blocks")
    };
    let mut head = format!(
        "{} in {}",
        plural(s.bytes, "byte", "bytes"),
        plural(s.count, unit.0, unit.1)
    );
    if kind == "mmap" {
        head.push_str(" mapped");
    }
    if let Some((bytes, count)) = new
        && (bytes, count) != (s.bytes, s.count)
    {
        head.push_str(&format!(
            " ({} in {} beyond the baseline)",
            plural(bytes, "byte", "bytes"),
            plural(count, unit.0, unit.1)
        ));
    }
    head
}

/// How a process is named to people: the program and its arguments.
pub fn process_title(r: &Report) -> String {
    let p = &r.process;
    let mut t = match p.cmdline.split_first() {
        Some((_, args)) if !args.is_empty() => {
            format!("{} {}", program_name(&p.exe), args.join(" "))
        }
        _ => program_name(&p.exe),
    };
    if t.chars().count() > 120 {
        t = t.chars().take(117).collect::<String>() + "...";
    }
    t
}

/// Which kinds counted, for people: `counting definitely and indirectly
/// lost blocks (--leak-kinds)`.
pub fn counting(v: &Verdict) -> String {
    let kinds = v.rules.counted_kinds();
    let mut s = format!(
        "counting {} blocks (--leak-kinds {})",
        Kind::phrase(kinds, "and"),
        kinds_arg(kinds)
    );
    let unclassified = v.processes.iter().any(|p| {
        p.skipped.is_none()
            && p.leaks
                .iter()
                .any(|l| l.kind == "heap" && l.site.kinds.is_none())
    });
    if unclassified {
        s.push_str("; leaks not classified by reachability count whole");
    }
    s
}

/// The kinds as `--leak-kinds` takes them: `definite,indirect`, `all`, `none`.
fn kinds_arg(kinds: &[Kind]) -> String {
    if kinds.is_empty() {
        "none".into()
    } else if Kind::ALL.iter().all(|k| kinds.contains(k)) {
        "all".into()
    } else {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        names.join(",")
    }
}

/// The stacks that make a failing process fail, as text.
fn offending(p: &ProcessVerdict, top: usize, indent: &str) -> String {
    let mut s = String::new();
    let counted: Vec<_> = p
        .leaks
        .iter()
        .filter(|l| l.status == Status::Counted)
        .collect();
    for l in counted.iter().take(top) {
        s.push_str(&format!(
            "{indent}{}\n",
            leak_head(l.kind, &l.site, Some((l.new_bytes, l.new_count)))
        ));
        if let Some(k) = &l.site.kinds {
            s.push_str(&format!(
                "{indent}  ({})\n",
                crate::report::kinds_text_via(k, &l.site.heuristics)
            ));
        }
        stack_lines(&mut s, &format!("{indent}  "), &l.site.stack);
    }
    if counted.len() > top {
        s.push_str(&format!(
            "{indent}... and {} more leaking stacks (the JSON output or `memtrace report {}` lists them all)\n",
            counted.len() - top,
            p.report.path.display()
        ));
    }
    s
}

/// The human summary, for stderr: one block per process (failing ones with
/// their `top` largest counted stacks), then the suppressions that matched.
pub fn summary(v: &Verdict, top: usize, out: &mut dyn Write) -> io::Result<()> {
    let failed = v.processes.iter().filter(|p| !p.passed()).count();
    let mut s = String::new();
    // In a big tree (a `make`), the images replaced by exec are one line
    // for all, not one each: they have nothing to judge.
    let quiet_exec =
        |p: &&ProcessVerdict| p.skipped == Some(crate::gate::Skip::Exec) && p.notes.is_empty();
    let execs: Vec<u32> = v
        .processes
        .iter()
        .filter(quiet_exec)
        .map(|p| p.report.process.pid)
        .collect();
    let grouped = execs.len() > EXECS_LISTED;
    // Likewise the processes that passed, when there are many.
    let quiet_ok = |p: &&ProcessVerdict| p.skipped.is_none() && p.passed() && p.notes.is_empty();
    let oks: Vec<&ProcessVerdict> = v.processes.iter().filter(quiet_ok).collect();
    let oks_grouped = oks.len() > OKS_LISTED;
    // And the failing ones, by program, when there are many (`crowd`).
    let failing = |p: &&ProcessVerdict| p.skipped.is_none() && !p.passed();
    let fails: Vec<&ProcessVerdict> = v.processes.iter().filter(failing).collect();
    let crowd = fails.len() > crowd::FAILS_LISTED;
    for p in &v.processes {
        if (grouped && quiet_exec(&p)) || (oks_grouped && quiet_ok(&p)) || (crowd && failing(&p)) {
            continue;
        }
        s.push_str(&process_block(p, top));
    }
    if oks_grouped {
        let peak = oks
            .iter()
            .map(|p| p.report.summary.peak_heap_bytes)
            .max()
            .unwrap_or(0);
        s.push_str(&format!(
            "  ok    {} leaked nothing that counts; peak heap up to {} (each: --json)\n",
            plural(oks.len() as u64, "process", "processes"),
            plural(peak, "byte", "bytes")
        ));
    }
    if grouped {
        let shown: Vec<String> = execs.iter().take(8).map(u32::to_string).collect();
        s.push_str(&format!(
            "  skip  {} replaced by exec (their heap went with them): pids {}{}\n",
            plural(execs.len() as u64, "image", "images"),
            shown.join(", "),
            if execs.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    for u in &v.untraced {
        s.push_str(&format!(
            "  skip  pid {} ({}): not traced: {}\n",
            u.pid,
            u.origin(),
            u.reason.text()
        ));
    }
    s.push_str(&suppressions_used(v));
    if crowd {
        s = crowd::failing_programs(&fails, top) + &s + &crowd::totals(&fails);
    }
    let judged = v.judged();
    let verdict = if failed == 0 { "passed" } else { "FAILED" };
    writeln!(
        out,
        "memtrace check: {verdict}: {} judged of {}, {} failed; {}",
        plural(judged as u64, "process", "processes"),
        v.processes.len(),
        failed,
        counting(v)
    )?;
    out.write_all(s.as_bytes())
}

/// Images replaced by exec listed one line each; more are one line in all.
const EXECS_LISTED: usize = 3;

/// Processes that passed listed one line each; more are one line in all.
const OKS_LISTED: usize = 10;

/// One process's block of the summary: skipped, ok, or failed with its
/// failures and offending stacks; its notes.
fn process_block(p: &ProcessVerdict, top: usize) -> String {
    let mut s = String::new();
    let r = p.report;
    let title = process_title(r);
    if let Some(skip) = &p.skipped {
        s.push_str(&format!(
            "  skip  pid {} {title}: {}\n",
            r.process.pid,
            skip.reason(r)
        ));
        return s;
    }
    let extra = uncounted(p);
    if p.passed() {
        s.push_str(&format!(
            "  ok    pid {} {title}: {} leaked{extra}, peak heap {}\n",
            r.process.pid,
            plural(p.counted_bytes, "byte", "bytes"),
            plural(r.summary.peak_heap_bytes, "byte", "bytes")
        ));
    } else {
        s.push_str(&format!("  FAIL  pid {} {title}{extra}\n", r.process.pid));
        for f in &p.failures {
            s.push_str(&format!("        {}: {}\n", f.rule, f.message));
        }
    }
    for n in &p.notes {
        s.push_str(&format!("        note: {n}\n"));
    }
    if !p.passed() {
        s.push_str(&offending(p, top, "        "));
    }
    s
}

/// What a judged process leaked that did not count, ` (...)`: suppressed,
/// in the baseline, of the kinds that do not count; empty when nothing.
fn uncounted(p: &ProcessVerdict) -> String {
    let suppressed: u64 = p
        .leaks
        .iter()
        .filter(|l| matches!(l.status, Status::Suppressed(_)))
        .map(|l| l.site.bytes)
        .sum();
    let baseline: u64 = p
        .leaks
        .iter()
        .filter(|l| l.status == Status::Baseline)
        .map(|l| l.site.bytes)
        .sum();
    let mut extra = Vec::new();
    if suppressed > 0 {
        extra.push(format!(
            "{} suppressed",
            plural(suppressed, "byte", "bytes")
        ));
    }
    if baseline > 0 {
        extra.push(format!(
            "{} in the baseline",
            plural(baseline, "byte", "bytes")
        ));
    }
    for kind in kinds_present(&p.not_counted) {
        let (b, n) = p.not_counted[kind.index()];
        extra.push(format!(
            "{} in {} {} not counted",
            plural(b, "byte", "bytes"),
            plural(n, "block", "blocks"),
            kind.words()
        ));
    }
    if extra.is_empty() {
        String::new()
    } else {
        format!(" ({})", extra.join(", "))
    }
}

/// The summary's list of the suppressions that matched (or went over their
/// limit); empty when none did.
fn suppressions_used(v: &Verdict) -> String {
    let mut s = String::new();
    let used: Vec<usize> = (0..v.suppressions.len())
        .filter(|&i| v.usage[i].stacks > 0 || v.usage[i].over_limit > 0)
        .collect();
    if !used.is_empty() {
        s.push_str("  suppressions used:\n");
        for i in used {
            let (supp, u) = (v.suppressions[i], &v.usage[i]);
            let over = if u.over_limit > 0 {
                format!(
                    ", over its max in {}",
                    plural(u.over_limit, "process", "processes")
                )
            } else {
                String::new()
            };
            s.push_str(&format!(
                "        {} in {} ({}): {} ({}:{}){over}\n",
                plural(u.bytes, "byte", "bytes"),
                plural(u.blocks, "block", "blocks"),
                plural(u.stacks, "stack", "stacks"),
                supp.name,
                supp.file.display(),
                supp.line
            ));
        }
    }
    s
}

pub use crate::escape::xml as xml_escape;

/// Suppression formats `--gen-suppressions` can print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenFormats {
    pub memtrace: bool,
    pub valgrind: bool,
    pub lsan: bool,
}

/// Entries suppressing each counted leak of the failing processes (each
/// stack once), in the chosen formats.
pub fn gen_suppressions(v: &Verdict, formats: GenFormats, out: &mut dyn Write) -> io::Result<()> {
    let entries = |name: &str, l: &crate::gate::Leak| {
        let stack = above_main(&l.site.stack);
        let mut e = String::new();
        if formats.memtrace {
            e.push_str(&suppress::gen_memtrace(name, stack));
        }
        if formats.valgrind {
            let func = if l.kind == "heap" { l.site.func } else { None };
            let kinds = l.site.kinds.as_ref().map(kinds_present);
            e.push_str(&suppress::gen_valgrind(name, stack, func, kinds.as_deref()));
        }
        if formats.lsan {
            e.push_str(&suppress::gen_lsan(stack));
        }
        e
    };
    // Stacks that differ only in lines (or the allocating function, for
    // valgrind) can give the same entries: each is printed once.
    let mut seen = HashSet::new();
    let mut n = 0;
    for p in v.processes.iter().filter(|p| !p.passed()) {
        for l in p.leaks.iter().filter(|l| l.status == Status::Counted) {
            if !seen.insert(entries("NAME", l)) {
                continue;
            }
            n += 1;
            let name: String = format!("{}-{n}", where_(&l.site))
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            writeln!(
                out,
                "# {} leaked by pid {} ({})",
                leak_head(l.kind, &l.site, None),
                p.report.process.pid,
                program_name(&p.report.process.exe)
            )?;
            out.write_all(entries(&name, l).as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every output says which kinds counted and gives each counted leak's
    /// kinds; the summary says what the kinds that do not count left.
    #[test]
    fn kinds_in_every_output() {
        use crate::gate::tests::{reach_report, supp};
        use crate::gate::{Gate, Rules, evaluate};
        let reports = [reach_report()];
        let rules = Rules::default();
        let files = [supp(
            "{\n n\n Memcheck:Leak\n match-leak-kinds: definite\n fun:malloc\n fun:plain_lost\n}\n",
        )];
        let v = evaluate(
            &reports,
            &Gate {
                rules: &rules,
                suppressions: &files,
                baseline: None,
                select: &[],
            },
        );
        let mut out = Vec::new();
        summary(&v, 5, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "memtrace check: FAILED: 1 process judged of 1, 1 failed; counting definitely and \
                 indirectly lost blocks (--leak-kinds definite,indirect)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "(48 bytes suppressed, 128 bytes in 1 block possibly lost not counted, \
                 80 bytes in 2 blocks still reachable not counted)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "        128 bytes in 4 blocks\n          (32 bytes in 1 block definitely lost; \
                 96 bytes in 3 blocks indirectly lost)\n          #0 lost_list"
            ),
            "{text}"
        );

        let mut out = Vec::new();
        junit(&v, &mut out).unwrap();
        let xml = String::from_utf8(out).unwrap();
        assert!(
            xml.contains("<property name=\"leak-kinds\" value=\"definite,indirect\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("96 bytes in 3 blocks indirectly lost"),
            "{xml}"
        );
        assert!(
            xml.contains("counting definitely and indirectly lost blocks"),
            "{xml}"
        );

        let mut out = Vec::new();
        json(&v, None, 23, &mut out).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc["rules"]["leak_kinds"],
            serde_json::json!(["definite", "indirect"])
        );
        let p = &doc["processes"][0];
        assert_eq!(p["leak_kinds"]["reachable"]["bytes"], 80);
        assert_eq!(p["not_counted"]["possible"]["count"], 1);
        assert_eq!(p["not_counted"]["definite"]["bytes"], 0);
        assert_eq!(p["leaks"][0]["bytes"], 128);
        assert_eq!(p["leaks"][0]["reachability"]["indirect"]["count"], 3);
        let plain = p["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["status"] == "suppressed");
        assert_eq!(plain.unwrap()["reachability"]["definite"]["bytes"], 48);

        let mut out = Vec::new();
        let all = GenFormats {
            memtrace: false,
            valgrind: true,
            lsan: false,
        };
        gen_suppressions(&v, all, &mut out).unwrap();
        let entries = String::from_utf8(out).unwrap();
        assert!(
            entries.contains(
                "   match-leak-kinds: definite,indirect\n   fun:malloc\n   fun:lost_list\n"
            ),
            "{entries}"
        );
        assert_eq!(entries.matches("Memcheck:Leak").count(), 1, "{entries}");
    }

    /// Everything XML cannot carry raw is escaped or replaced.
    #[test]
    fn escapes_xml() {
        assert_eq!(
            xml_escape("a<b>&\"c'\u{1}\n"),
            "a&lt;b&gt;&amp;&quot;c&apos;?\n"
        );
    }
}
