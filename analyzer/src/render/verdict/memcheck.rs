//! `memtrace check --xml FILE`: the verdict as valgrind memcheck's XML
//! (protocol 4), for the tools that read memcheck's output (Jenkins' and
//! GitLab's valgrind plugins, IDEs, ValgrindCI, valgrind-codequality).
//!
//! One `<valgrindoutput>` document for the whole run, its `<pid>` and
//! `<args>` those of the first judged process. Each leak that counts
//! against the gate becomes one `<error>` per leak kind (memcheck's loss
//! records are per stack and kind): `Leak_DefinitelyLost`,
//! `Leak_IndirectlyLost`, `Leak_PossiblyLost`, `Leak_StillReachable`, with
//! `<xwhat>` holding memcheck's sentence, `<leakedbytes>` and
//! `<leakedblocks>`, and the stack innermost first, the allocating function
//! first as memcheck shows it. A leak whose blocks were not classified
//! counts as definitely lost (as the gate counts it whole); a leaked mapping
//! is a `Leak_DefinitelyLost` record whose text says it is a mapping. Leaks
//! matched by a suppression are not errors: `<suppcounts>` lists each
//! suppression that matched with the number of stacks it matched. Leaks
//! within the baseline are left out, as they do not fail the gate.
//!
//! One difference from memcheck: memcheck adds to a definitely lost record
//! the bytes of the indirectly lost blocks it alone reaches (`128 (32
//! direct, 96 indirect) bytes in 1 blocks are definitely lost`). The scan
//! does not record which lost block reaches which, so here a record's bytes
//! are its own blocks' (`32 bytes in 1 block`); the indirectly lost blocks
//! are records of their own in both.
//! Uses `crate::gate`, `crate::kinds`, `crate::frames` and
//! [`xml_escape`](super::xml_escape).

use std::io::{self, Write};

use super::xml_escape;
use crate::analysis::symbolize::Frame;
use crate::gate::{Leak, ProcessVerdict, Status, Verdict};
use crate::kinds::Kind;

/// memcheck's name of a leak kind in `<kind>`.
fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::DefinitelyLost => "Leak_DefinitelyLost",
        Kind::IndirectlyLost => "Leak_IndirectlyLost",
        Kind::PossiblyLost => "Leak_PossiblyLost",
        Kind::StillReachable => "Leak_StillReachable",
    }
}

/// One loss record: a leak's part of one kind.
struct Record<'a> {
    kind: Kind,
    bytes: u64,
    blocks: u64,
    mapping: bool,
    leak: &'a Leak,
}

/// The loss records of a process: its counted leaks split by kind.
fn records<'a>(p: &'a ProcessVerdict) -> Vec<Record<'a>> {
    let mut out = Vec::new();
    for l in p.leaks.iter().filter(|l| l.status == Status::Counted) {
        match (&l.site.kinds, l.kind == "mmap") {
            (Some(k), false) => {
                for kind in Kind::ALL {
                    let (bytes, blocks) = k[kind.index()];
                    if bytes > 0 || blocks > 0 {
                        out.push(Record {
                            kind,
                            bytes,
                            blocks,
                            mapping: false,
                            leak: l,
                        });
                    }
                }
            }
            (_, mapping) => out.push(Record {
                kind: Kind::DefinitelyLost,
                bytes: l.site.bytes,
                blocks: l.site.count,
                mapping,
                leak: l,
            }),
        }
    }
    out
}

/// memcheck's elapsed time: `days:hours:minutes:seconds.millis`.
fn elapsed(ms: f64) -> String {
    let ms = ms.max(0.0) as u64;
    let (s, ms) = (ms / 1000, ms % 1000);
    format!(
        "{:02}:{:02}:{:02}:{:02}.{ms:03} ",
        s / 86400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

fn frame(s: &mut String, f: &Frame) {
    s.push_str("    <frame>\n");
    s.push_str(&format!("      <ip>0x{:X}</ip>\n", f.address));
    if let Some(m) = &f.module {
        s.push_str(&format!("      <obj>{}</obj>\n", xml_escape(m)));
    }
    if let Some(func) = &f.function {
        s.push_str(&format!("      <fn>{}</fn>\n", xml_escape(func)));
    }
    if let (Some(file), Some(line)) = (&f.file, f.line) {
        let (dir, name) = match file.rfind('/') {
            Some(i) => (&file[..i.max(1)], &file[i + 1..]),
            None => (".", file.as_str()),
        };
        s.push_str(&format!("      <dir>{}</dir>\n", xml_escape(dir)));
        s.push_str(&format!("      <file>{}</file>\n", xml_escape(name)));
        s.push_str(&format!("      <line>{line}</line>\n"));
    }
    s.push_str("    </frame>\n");
}

fn error(s: &mut String, unique: usize, r: &Record, n: usize, of: usize) {
    let blocks = if r.blocks == 1 { "block" } else { "blocks" };
    let text = if r.mapping {
        format!(
            "{} bytes in {} mapped {} are definitely lost (never unmapped) in loss record {n} of {of}",
            r.bytes,
            r.blocks,
            if r.blocks == 1 { "region" } else { "regions" }
        )
    } else {
        format!(
            "{} bytes in {} {blocks} are {} in loss record {n} of {of}",
            r.bytes,
            r.blocks,
            r.kind.words()
        )
    };
    s.push_str(&format!(
        "<error>\n  <unique>{unique:#x}</unique>\n  <tid>1</tid>\n  <kind>{}</kind>\n",
        kind_name(r.kind)
    ));
    s.push_str(&format!(
        "  <xwhat>\n    <text>{}</text>\n    <leakedbytes>{}</leakedbytes>\n    <leakedblocks>{}</leakedblocks>\n  </xwhat>\n",
        xml_escape(&text),
        r.bytes,
        r.blocks
    ));
    s.push_str("  <stack>\n");
    if let Some(func) = r.leak.site.func {
        s.push_str(&format!(
            "    <frame>\n      <ip>0x0</ip>\n      <fn>{}</fn>\n    </frame>\n",
            func.name()
        ));
    }
    for f in r.leak.site.stack.iter() {
        frame(s, f);
    }
    s.push_str("  </stack>\n</error>\n");
}

fn args(s: &mut String, p: Option<&ProcessVerdict>) {
    s.push_str(
        "<args>\n  <vargv>\n    <exe>memtrace</exe>\n    <arg>check</arg>\n  </vargv>\n  <argv>\n",
    );
    if let Some(p) = p {
        let proc_ = &p.report.process;
        s.push_str(&format!("    <exe>{}</exe>\n", xml_escape(&proc_.exe)));
        for a in proc_.cmdline.iter().skip(1) {
            s.push_str(&format!("    <arg>{}</arg>\n", xml_escape(a)));
        }
    }
    s.push_str("  </argv>\n</args>\n");
}

/// Writes the memcheck XML document (see the module docs).
pub fn memcheck_xml(v: &Verdict, out: &mut dyn Write) -> io::Result<()> {
    let judged: Vec<&ProcessVerdict> = v.processes.iter().filter(|p| p.skipped.is_none()).collect();
    let first = judged.first().copied().or(v.processes.first());
    let mut s = String::from("<?xml version=\"1.0\"?>\n\n<valgrindoutput>\n\n");
    s.push_str("<protocolversion>4</protocolversion>\n<protocoltool>memcheck</protocoltool>\n\n");
    s.push_str(&format!(
        "<preamble>\n  <line>memtrace check, a memory-leak gate (memcheck's XML, protocol 4)</line>\n  <line>memtrace {}</line>\n  <line>{} judged of {} processes; leak kinds that count: {}</line>\n</preamble>\n\n",
        env!("CARGO_PKG_VERSION"),
        judged.len(),
        v.processes.len(),
        xml_escape(&Kind::phrase(v.rules.counted_kinds(), "and"))
    ));
    let (pid, ppid) = first.map_or((0, 0), |p| (p.report.process.pid, p.report.process.ppid));
    s.push_str(&format!(
        "<pid>{pid}</pid>\n<ppid>{ppid}</ppid>\n<tool>memcheck</tool>\n\n"
    ));
    args(&mut s, first);
    let ms = first.map_or(0.0, |p| p.report.process.duration_ms);
    s.push_str(&format!(
        "\n<status>\n  <state>RUNNING</state>\n  <time>{}</time>\n</status>\n\n",
        elapsed(0.0)
    ));
    let mut unique = 0;
    for p in &judged {
        let recs = records(p);
        for (i, r) in recs.iter().enumerate() {
            error(&mut s, unique, r, i + 1, recs.len());
            unique += 1;
        }
    }
    s.push_str(&format!(
        "\n<status>\n  <state>FINISHED</state>\n  <time>{}</time>\n</status>\n\n",
        elapsed(ms)
    ));
    s.push_str("<errorcounts>\n</errorcounts>\n\n<suppcounts>\n");
    for (sup, use_) in v.suppressions.iter().zip(&v.usage) {
        if use_.stacks > 0 {
            s.push_str(&format!(
                "  <pair>\n    <count>{}</count>\n    <name>{}</name>\n  </pair>\n",
                use_.stacks,
                xml_escape(&sup.name)
            ));
        }
    }
    s.push_str("</suppcounts>\n\n</valgrindoutput>\n\n");
    out.write_all(s.as_bytes())
}
