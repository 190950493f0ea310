//! The failing processes of a big tree in `memtrace check`'s summary (a
//! `make` whose compilers leak fails in dozens of processes): one block per
//! program instead of one per process. A block names its processes (pids),
//! the rules they broke and what they leaked in all, then the program's
//! largest leaking stacks summed over its processes, a few frames each;
//! a line of totals closes the summary. The JSON, JUnit and memcheck XML
//! outputs and `memtrace report DIR --pid PID` keep every process and stack.

use std::collections::HashMap;

use super::frame_line;
use crate::analysis::symbolize::Frame;
use crate::gate::{ProcessVerdict, Status, above_main, program_name};
use crate::units::plural;

/// More failing processes than this are summed up by program.
pub(super) const FAILS_LISTED: usize = 5;

/// Stacks shown per program.
const STACKS: usize = 2;

/// Frames shown per stack.
const FRAMES: usize = 3;

/// Pids listed per program.
const PIDS: usize = 6;

/// One leaking stack of a program, summed over its processes.
struct Stack<'a> {
    kind: &'static str,
    frames: &'a [Frame],
    bytes: u64,
    count: u64,
    processes: usize,
    /// The last process that added to it.
    last: u32,
}

/// The failing processes `fails` (in the tree's order), one block per
/// program, at most `top` stacks each (and [`STACKS`]).
pub(super) fn failing_programs(fails: &[&ProcessVerdict], top: usize) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut by_program: HashMap<String, Vec<&ProcessVerdict>> = HashMap::new();
    for p in fails {
        let name = program_name(&p.report.process.exe);
        if !by_program.contains_key(&name) {
            order.push(name.clone());
        }
        by_program.entry(name).or_default().push(p);
    }
    let mut s = String::new();
    for name in &order {
        program_block(&mut s, name, &by_program[name], top.min(STACKS));
    }
    s
}

/// The summary's last line for the failing processes `fails`: how many, of
/// how many programs, what they leaked in all, where every stack is.
pub(super) fn totals(fails: &[&ProcessVerdict]) -> String {
    let mut programs: Vec<String> = fails
        .iter()
        .map(|p| program_name(&p.report.process.exe))
        .collect();
    programs.sort();
    programs.dedup();
    let (bytes, blocks) = fails.iter().fold((0, 0), |(b, n), p| {
        (b + p.counted_bytes, n + p.counted_blocks)
    });
    format!(
        "  in all: {} of {} failed, leaking {} in {} that count (every stack: --json, or `memtrace report` of a log)\n",
        plural(fails.len() as u64, "process", "processes"),
        plural(programs.len() as u64, "program", "programs"),
        plural(bytes, "byte", "bytes"),
        plural(blocks, "block", "blocks"),
    )
}

/// One program's block: its processes, their rules and leaks, its largest stacks.
fn program_block(s: &mut String, name: &str, procs: &[&ProcessVerdict], stacks: usize) {
    let mut rules: Vec<&str> = Vec::new();
    for f in procs.iter().flat_map(|p| &p.failures) {
        if !rules.contains(&f.rule) {
            rules.push(f.rule);
        }
    }
    let (bytes, blocks) = procs.iter().fold((0, 0), |(b, n), p| {
        (b + p.counted_bytes, n + p.counted_blocks)
    });
    let who = match procs {
        [one] => format!(
            "pid {} {}",
            one.report.process.pid,
            super::process_title(one.report)
        ),
        _ => {
            let pids: Vec<String> = procs
                .iter()
                .take(PIDS)
                .map(|p| p.report.process.pid.to_string())
                .collect();
            let more = if procs.len() > PIDS { ", ..." } else { "" };
            format!(
                "{} of {name} (pids {}{more})",
                plural(procs.len() as u64, "process", "processes"),
                pids.join(", ")
            )
        }
    };
    s.push_str(&format!(
        "  FAIL  {who}: {}; {} in {} leaked\n",
        rules.join(", "),
        plural(bytes, "byte", "bytes"),
        plural(blocks, "block", "blocks")
    ));
    let mut notes: Vec<&str> = Vec::new();
    for n in procs.iter().flat_map(|p| &p.notes) {
        if !notes.contains(&n.as_str()) {
            notes.push(n);
        }
    }
    for n in &notes {
        s.push_str(&format!("        note: {n}\n"));
    }
    let all = summed_stacks(procs);
    for st in all.iter().take(stacks) {
        let mut head = if st.kind == "mmap" {
            format!(
                "{} in {} mapped",
                plural(st.bytes, "byte", "bytes"),
                plural(st.count, "region", "regions")
            )
        } else {
            format!(
                "{} in {}",
                plural(st.bytes, "byte", "bytes"),
                plural(st.count, "block", "blocks")
            )
        };
        if procs.len() > 1 {
            head.push_str(&format!(
                ", in {}",
                plural(st.processes as u64, "process", "processes")
            ));
        }
        s.push_str(&format!("        {head}\n"));
        let frames = above_main(st.frames);
        if frames.is_empty() {
            s.push_str("          (stack not recorded)\n");
        }
        for (i, f) in frames.iter().enumerate().take(FRAMES) {
            let more = if i + 1 == FRAMES && frames.len() > FRAMES {
                format!(" (+{} frames)", frames.len() - FRAMES)
            } else {
                String::new()
            };
            s.push_str(&format!("          {}{more}\n", frame_line(i, f)));
        }
    }
    if all.len() > stacks {
        s.push_str(&format!(
            "        ... and {} more leaking stacks\n",
            all.len() - stacks
        ));
    }
}

/// The counted stacks of `procs`, the same stack (its frames as shown) of
/// several processes summed, largest first.
fn summed_stacks<'a>(procs: &[&'a ProcessVerdict]) -> Vec<Stack<'a>> {
    let mut at: HashMap<(&'static str, Vec<String>), usize> = HashMap::new();
    let mut out: Vec<Stack<'a>> = Vec::new();
    for p in procs {
        for l in p.leaks.iter().filter(|l| l.status == Status::Counted) {
            let frames: &[Frame] = &l.site.stack;
            let key: Vec<String> = above_main(frames)
                .iter()
                .enumerate()
                .map(|(i, f)| frame_line(i, f))
                .collect();
            let i = *at.entry((l.kind, key)).or_insert_with(|| {
                out.push(Stack {
                    kind: l.kind,
                    frames,
                    bytes: 0,
                    count: 0,
                    processes: 0,
                    last: 0,
                });
                out.len() - 1
            });
            out[i].bytes += l.site.bytes;
            out[i].count += l.site.count;
            let pid = p.report.process.pid;
            if out[i].processes == 0 || out[i].last != pid {
                out[i].processes += 1;
                out[i].last = pid;
            }
        }
    }
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.count.cmp(&a.count)));
    out
}
