//! The page's summary table: the process, how it ended, the heap totals and
//! leak kinds, the peak, temporary allocations, mmap and brk, the kernel's
//! peak RSS, and every warning and note of the report.
//!
//! Uses the report model, the text renderer's notes and wording, and units.

use std::fmt::Write as _;

use super::tables::kinds_cell;
use super::{Fmt, escape};
use crate::report::Report;
use crate::units::{human, plural, signed, thousands};

/// The summary section: warnings and notes, then the summary table.
pub(super) fn summary(h: &mut String, r: &Report) -> Fmt {
    h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    for w in &r.warnings {
        writeln!(h, "<p class=\"warning\">{}</p>", escape(w))?;
    }
    for n in crate::render::text::notes(r) {
        writeln!(h, "<p class=\"note\">{}</p>", escape(&n))?;
    }
    h.push_str("<table class=\"kv\" id=\"summary-table\">\n");
    let mut rows = Vec::new();
    process_rows(r, &mut rows);
    heap_rows(r, &mut rows);
    other_rows(r, &mut rows);
    for (k, v) in rows {
        writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>")?;
    }
    h.push_str("</table>\n</section>\n");
    Ok(())
}

/// Rows of the summary table: a heading and its HTML.
type Rows = Vec<(&'static str, String)>;

/// The process: pid, parent, fork, command line, how it ended, its children.
fn process_rows(r: &Report, rows: &mut Rows) {
    let mut row = |k: &'static str, v: String| rows.push((k, v));
    let p = &r.process;
    let exe = if p.exe.is_empty() { "?" } else { &p.exe };
    let mut proc = format!("<code>{}</code> (pid {}", escape(exe), p.pid);
    if p.ppid != 0 {
        proc += &format!(", parent {}", p.ppid);
    }
    proc.push(')');
    if let Some(parent) = p.forked_from {
        let s = &r.summary;
        proc += &match &s.inherited {
            Some(i) => format!(
                "; forked from pid {parent}: inherited {} in {} live at the fork (from <code>{}</code>)",
                plural(s.inherited_bytes, "byte", "bytes"),
                plural(s.inherited_blocks, "block", "blocks"),
                escape(&i.parent_log.display().to_string())
            ),
            None => format!(
                "; forked from pid {parent} (its log was not found: only what the child did after the fork is reported)"
            ),
        };
    }
    row("Process", proc);
    if !p.cmdline.is_empty() {
        row(
            "Command",
            format!("<code>{}</code>", escape(&p.cmdline.join(" "))),
        );
    }
    row("Ended", escape(&crate::render::text::how_ended(p)));
    if !p.forks.is_empty() {
        let pids: Vec<String> = p.forks.iter().map(|c| c.to_string()).collect();
        row(
            "Forked",
            format!("{} (each has its own log)", pids.join(", ")),
        );
    }
}

/// The heap: totals, what was in use at the end and its kinds, the peak,
/// temporary allocations, other frees.
fn heap_rows(r: &Report, rows: &mut Rows) {
    let mut row = |k: &'static str, v: String| rows.push((k, v));
    let s = &r.summary;
    row(
        "Total heap usage",
        format!(
            "{}, {}, {} allocated",
            plural(s.allocations, "alloc", "allocs"),
            plural(s.frees, "free", "frees"),
            plural(s.bytes_allocated, "byte", "bytes")
        ),
    );
    let (at_end, all) = s
        .window
        .as_ref()
        .map_or((s.leaked_heap_bytes, s.leaked_heap_blocks), |w| {
            (w.end_bytes, w.end_blocks)
        });
    row(
        match r.process.ended {
            crate::report::Ended::Snapshot => "In use at the snapshot",
            crate::report::Ended::Exec => "In use at the exec",
            _ => "In use at exit",
        },
        format!(
            "{} in {}",
            plural(at_end, "byte", "bytes"),
            plural(all, "block", "blocks")
        ),
    );
    if let Some(w) = &s.window {
        window_rows(r, w, &mut row);
    }
    match &s.leak_kinds {
        None if s.window.as_ref().is_some_and(|w| w.before_end()) && s.leaked_heap_blocks > 0 => {
            row(
                "Leak kinds",
                format!(
                    "<span class=\"muted\">not classified by reachability: {}</span>",
                    escape(crate::render::text::unclassified(r))
                ),
            )
        }
        Some(k) if *k != [(0, 0); 4] => row("Leak kinds", kinds_cell(k, &s.leak_heuristics)),
        Some(_) => {}
        None if s.leaked_heap_blocks > 0 => row(
            "Leak kinds",
            "<span class=\"muted\">not classified by reachability</span>".into(),
        ),
        None => {}
    }
    row(
        "Peak heap",
        format!(
            "{} ({}) at {:.3} ms",
            plural(s.peak_heap_bytes, "byte", "bytes"),
            human(s.peak_heap_bytes),
            s.peak_heap_time_ms
        ),
    );
    let pct = if s.allocations > 0 {
        format!(
            " ({:.1}%)",
            100.0 * s.temporary_allocations as f64 / s.allocations as f64
        )
    } else {
        String::new()
    };
    row(
        "Temporary allocations",
        format!(
            "{} of {}{pct}, {} (freed before their thread's next allocation)",
            thousands(s.temporary_allocations),
            plural(s.allocations, "allocation", "allocations"),
            plural(s.temporary_bytes, "byte", "bytes")
        ),
    );
    if s.unknown_frees > 0 || s.libc_freeres_frees > 0 || s.anomalies > 0 {
        row(
            "Other frees",
            format!(
                "frees of unknown blocks: {}; frees by libc's exit clean-up: {}; allocations over live blocks: {}",
                thousands(s.unknown_frees),
                thousands(s.libc_freeres_frees),
                thousands(s.anomalies)
            ),
        );
    }
}

/// The time window (`--from`, `--to`): its bounds, what was allocated in
/// it and its peak, the heap live at its end and the blocks of the window.
fn window_rows(
    r: &Report,
    w: &crate::report::window::Window,
    row: &mut impl FnMut(&'static str, String),
) {
    let s = &r.summary;
    row("Window", escape(&crate::render::text::window_bounds(w)));
    row(
        "In the window",
        format!(
            "{}, {}, {} allocated; peak {} at {:.3} ms",
            plural(w.allocations, "alloc", "allocs"),
            plural(w.frees, "free", "frees"),
            plural(w.bytes_allocated, "byte", "bytes"),
            plural(w.peak_heap_bytes, "byte", "bytes"),
            w.peak_heap_time_ms
        ),
    );
    row(
        "Live at the window's end",
        format!(
            "{} in {}; allocated in the window: {} in {}",
            plural(w.live_bytes, "byte", "bytes"),
            plural(w.live_blocks, "block", "blocks"),
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks")
        ),
    );
}

/// mmap, brk, the kernel's peak and the log.
fn other_rows(r: &Report, rows: &mut Rows) {
    let mut row = |k: &'static str, v: String| rows.push((k, v));
    let s = &r.summary;
    row(
        "mmap",
        format!(
            "{}, {}; peak {} mapped; still mapped at exit: {} in {}",
            plural(s.mmap_calls, "mmap call", "mmap calls"),
            plural(s.munmap_calls, "munmap call", "munmap calls"),
            plural(s.peak_mmap_bytes, "byte", "bytes"),
            plural(s.leaked_mmap_bytes, "byte", "bytes"),
            plural(s.leaked_mmap_regions, "region", "regions")
        ),
    );
    row(
        "Program break growth",
        format!("{} bytes", signed(s.brk_growth_bytes)),
    );
    if let Some(k) = &r.kernel {
        let (t, c) = &k.peak;
        row(
            "Peak RSS (kernel)",
            format!(
                "{} at {t:.1} ms (PSS {}, USS {}, swap {}, anonymous {}); {} samples",
                human(c[0]),
                human(c[1]),
                human(c[2]),
                human(c[3]),
                human(c[4]),
                thousands(k.samples.len() as u64)
            ),
        );
    }
    row(
        "Log",
        format!("<code>{}</code>", escape(&r.path.display().to_string())),
    );
}
