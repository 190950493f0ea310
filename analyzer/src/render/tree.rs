//! A run's processes at once: `memtrace report DIR` (or several logs). One
//! row per log, as a tree by parent (a fork child under its parent, an exec'd
//! image under the image it replaced), with its command, how it ended, what
//! it leaked, its peak and the events it lost; then the totals. Text for
//! people, JSON for tools. Uses `crate::report`, `crate::kinds` and
//! `crate::units`.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::verdict::process_title;
use crate::gate::DEFAULT_LEAK_KINDS;
use crate::kinds::counted_part;
use crate::report::{Ended, Report};
use crate::units::{human, plural, thousands};

/// A log's place in the tree: the index of the report it hangs under.
fn parents(reports: &[Report]) -> Vec<Option<usize>> {
    // The first image of each pid (in start order) is where its fork hangs;
    // a later image of the same pid hangs under the one before it.
    let mut order: Vec<usize> = (0..reports.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&reports[a].process, &reports[b].process);
        (pa.pid, reports[a].process.lineage.start).cmp(&(pb.pid, reports[b].process.lineage.start))
    });
    let mut images: HashMap<u32, Vec<usize>> = HashMap::new();
    for &i in &order {
        images.entry(reports[i].process.pid).or_default().push(i);
    }
    (0..reports.len())
        .map(|i| {
            let p = &reports[i].process;
            let same = &images[&p.pid];
            let pos = same.iter().position(|&j| j == i).unwrap_or(0);
            if pos > 0 {
                return Some(same[pos - 1]);
            }
            let parent = p.forked_from.unwrap_or(p.ppid);
            images.get(&parent).and_then(|v| {
                v.iter().copied().rfind(|&j| {
                    reports[j].process.lineage.start <= reports[i].process.lineage.start
                })
            })
        })
        .collect()
}

/// The reports in tree order: (index, depth).
fn walk(reports: &[Report]) -> Vec<(usize, usize)> {
    let up = parents(reports);
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, p) in up.iter().enumerate() {
        children.entry(*p).or_default().push(i);
    }
    for v in children.values_mut() {
        v.sort_by_key(|&i| (reports[i].process.lineage.start, reports[i].process.pid));
    }
    let mut out = Vec::with_capacity(reports.len());
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .map_or(Vec::new(), |v| v.iter().rev().map(|&i| (i, 0)).collect());
    while let Some((i, d)) = stack.pop() {
        out.push((i, d));
        if let Some(v) = children.get(&Some(i)) {
            stack.extend(v.iter().rev().map(|&c| (c, d + 1)));
        }
    }
    out
}

fn ended(r: &Report) -> String {
    let p = &r.process;
    match p.ended {
        Ended::Exit | Ended::UnderscoreExit => match p.exit_status {
            Some(s) => format!("exit {s}"),
            None => "exit".into(),
        },
        Ended::Exec => "exec".into(),
        Ended::Abnormal => match p.signal {
            Some(s) => format!("signal {s}"),
            None => "abnormal".into(),
        },
        Ended::Snapshot => "snapshot".into(),
        Ended::Running => "running".into(),
    }
}

/// The leaks that count as memcheck counts them (definitely and
/// indirectly lost) when classified, else every unfreed block; `None` for a
/// process that did not reach its exit (replaced by exec, killed, still
/// running): its heap is not a leak, as `memtrace check` does not judge it.
fn lost(r: &Report) -> Option<(u64, u64)> {
    if !matches!(r.process.ended, Ended::Exit | Ended::UnderscoreExit) {
        return None;
    }
    let s = &r.summary;
    let kinds = s.leak_kinds.as_ref();
    Some(
        counted_part(
            s.leaked_heap_bytes,
            s.leaked_heap_blocks,
            kinds,
            &DEFAULT_LEAK_KINDS,
        )
        .unwrap_or((0, 0)),
    )
}

/// `name` cut to `width` characters.
fn fit(name: String, width: usize) -> String {
    if name.chars().count() > width {
        name.chars().take(width - 3).collect::<String>() + "..."
    } else {
        name
    }
}

/// Writes the tree of `reports` as text.
pub fn text(reports: &[Report], out: &mut dyn Write) -> io::Result<()> {
    let t = totals(reports);
    writeln!(
        out,
        "memtrace report of {} ({}; leaked: definitely and indirectly lost, or every unfreed\nblock where not classified; a process that did not reach its exit leaks nothing)\n",
        plural(t.logs as u64, "log", "logs"),
        plural(t.processes as u64, "process", "processes")
    )?;
    writeln!(
        out,
        "  {:<40} {:>8} {:<10} {:>20} {:>10} {:>6}",
        "process", "pid", "ended", "leaked (blocks)", "peak", "lost"
    )?;
    for (i, depth) in walk(reports) {
        let r = &reports[i];
        let leaked = lost(r).map_or("-".to_owned(), |(b, n)| {
            format!("{} ({})", human(b), thousands(n))
        });
        let name = fit(
            format!("{}{}", "  ".repeat(depth.min(10)), process_title(r)),
            40,
        );
        writeln!(
            out,
            "  {:<40} {:>8} {:<10} {:>20} {:>10} {:>6}",
            name,
            r.process.pid,
            ended(r),
            leaked,
            human(r.summary.peak_heap_bytes),
            thousands(r.summary.events_lost)
        )?;
    }
    writeln!(
        out,
        "\ntotal: {} in {} leaked by {} that exited ({} classified); peaks summed {}; {} events lost",
        human(t.leaked_bytes),
        plural(t.leaked_blocks, "block", "blocks"),
        plural(t.exited, "log", "logs"),
        thousands(t.classified),
        human(t.peak_sum),
        thousands(t.events_lost)
    )?;
    writeln!(out, "(each log's details: memtrace report LOG)")
}

#[derive(Serialize)]
struct Totals {
    logs: usize,
    processes: usize,
    leaked_bytes: u64,
    leaked_blocks: u64,
    /// Logs of processes that reached their exit (the ones whose leaks count).
    exited: u64,
    /// Of those, the logs whose blocks were classified by reachability.
    classified: u64,
    peak_sum: u64,
    events_lost: u64,
}

fn totals(reports: &[Report]) -> Totals {
    let pids: std::collections::HashSet<u32> = reports.iter().map(|r| r.process.pid).collect();
    let mut t = Totals {
        logs: reports.len(),
        processes: pids.len(),
        leaked_bytes: 0,
        leaked_blocks: 0,
        exited: 0,
        classified: 0,
        peak_sum: 0,
        events_lost: 0,
    };
    for r in reports {
        if let Some((b, n)) = lost(r) {
            t.leaked_bytes += b;
            t.leaked_blocks += n;
            t.exited += 1;
            t.classified += u64::from(r.summary.leak_kinds.is_some());
        }
        t.peak_sum += r.summary.peak_heap_bytes;
        t.events_lost += r.summary.events_lost;
    }
    t
}

#[derive(Serialize)]
struct Row<'a> {
    pid: u32,
    ppid: u32,
    /// Index in `processes` of the row it hangs under.
    parent: Option<usize>,
    depth: usize,
    exe: &'a str,
    cmdline: &'a [String],
    log: String,
    ended: &'static str,
    exit_status: Option<i32>,
    signal: Option<i32>,
    classified: bool,
    /// What it leaked (see `lost`); `None` when it did not reach its exit.
    leaked_bytes: Option<u64>,
    leaked_blocks: Option<u64>,
    leaked_heap_bytes: u64,
    leaked_heap_blocks: u64,
    peak_heap_bytes: u64,
    events_lost: u64,
}

/// Writes the tree of `reports` as JSON: `processes` in tree order, `totals`.
pub fn json(reports: &[Report], out: &mut dyn Write) -> io::Result<()> {
    let order = walk(reports);
    let row_of: HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(row, &(i, _))| (i, row))
        .collect();
    let up = parents(reports);
    let rows: Vec<Row> = order
        .iter()
        .map(|&(i, depth)| {
            let r = &reports[i];
            let leaked = lost(r);
            Row {
                pid: r.process.pid,
                ppid: r.process.ppid,
                parent: up[i].map(|p| row_of[&p]),
                depth,
                exe: &r.process.exe,
                cmdline: &r.process.cmdline,
                log: r.path.display().to_string(),
                ended: r.process.ended.as_str(),
                exit_status: r.process.exit_status,
                signal: r.process.signal,
                classified: r.summary.leak_kinds.is_some(),
                leaked_bytes: leaked.map(|l| l.0),
                leaked_blocks: leaked.map(|l| l.1),
                leaked_heap_bytes: r.summary.leaked_heap_bytes,
                leaked_heap_blocks: r.summary.leaked_heap_blocks,
                peak_heap_bytes: r.summary.peak_heap_bytes,
                events_lost: r.summary.events_lost,
            }
        })
        .collect();
    #[derive(Serialize)]
    struct Doc<'a> {
        memtrace_version: &'static str,
        processes: Vec<Row<'a>>,
        totals: Totals,
    }
    let doc = Doc {
        memtrace_version: env!("CARGO_PKG_VERSION"),
        processes: rows,
        totals: totals(reports),
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}
