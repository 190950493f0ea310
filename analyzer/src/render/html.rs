//! `memtrace report --html FILE`: the whole report as one self-contained
//! HTML page, to open in a browser, attach to a CI run or mail around.
//!
//! What the page holds, top to bottom:
//! - the summary: process, command line, how it ended, the totals of the
//!   text report's HEAP SUMMARY, the peak and its moment, temporary
//!   allocations, mmap and brk, the kernel's peak RSS when `memtrace run`
//!   sampled it, and every note that makes the figures incomplete;
//! - tables of heap and mmap leaks, the stacks holding the most at the peak,
//!   the most allocated and the temporary allocations: bytes, blocks, the
//!   allocating function, the frame the site is named by (the innermost
//!   outside the C, C++ and Rust runtimes: `strdup`'s caller), its file:line,
//!   and the full stack in a `<details>` element; heap leaks classified by
//!   reachability also have their bytes and blocks by kind (definitely,
//!   indirectly, possibly lost, still reachable), as has the summary;
//! - the timeline chart ([`super::timeline`]), inline;
//! - flame graphs ([`crate::flame::render_svg`]) of the leaked bytes, the
//!   peak and the allocated bytes, and of the temporary allocations when
//!   there are any, with one search box for all of them;
//! - the kernel's mapping tables and the gap, when present.
//!
//! Self-contained: inline CSS, inline script, inline SVGs; nothing is
//! fetched, so it works offline and from a `file://` URL. Every text from the
//! log (function names hold `<`, `>` and `&`) is escaped.
//!
//! Each flame graph keeps the document and the script inferno gives it,
//! inside an `<iframe srcdoc>`: inferno's script uses fixed element ids
//! (`frames`, `details`, `search`, `matched`) and global functions
//! (`init`, `search`, `search_prompt`, `zoom`), which would clash if several
//! graphs shared one document. An `srcdoc` document has the page's origin, so
//! the page's search box calls each graph's own `search(term)` (a regular
//! expression, as inferno's Search button takes) and reads back its
//! `Matched: N%` line. Inside the frame, `history.replaceState` is made a
//! no-op: inferno keeps its zoom and search in the URL's query, which an
//! `about:srcdoc` document cannot change.
//!
//! A self-test for tools and tests: opened with the URL fragment
//! `#selftest=TERM`, the page types TERM into its search box, runs the
//! search, and writes into `<pre id="selftest">` what each flame graph
//! matched and highlighted and how many elements each chart has drawn (see
//! the script for the line format).
//!
//! Tables show the largest entries only (100 leak stacks of each kind and 20
//! of every other list, or `--top N`); the flame graphs draw every stack.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::flame::{self, Metric};
use crate::frames::{Frame, FrameKey, function_or_address, merge_key, naming_frame};
use crate::report::{KernelReport, Report, Site};
use crate::units::{plural, signed, thousands};

use crate::units::human;

/// Rows of each leak table when no limit is given.
pub const DEFAULT_LEAK_ROWS: usize = 100;
/// Rows of the other tables (peak, allocated, temporary, brk) when no limit is given.
pub const DEFAULT_ROWS: usize = 20;

pub use crate::escape::html as escape;

/// Writes the page with the default table sizes.
pub fn render(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    render_top(r, None, out)
}

/// Writes the page; `top` limits every table to that many rows (default:
/// [`DEFAULT_LEAK_ROWS`] and [`DEFAULT_ROWS`]). The report should be made
/// with [`flame::all`], so that the flame graphs have every stack.
pub fn render_top(r: &Report, top: Option<usize>, out: &mut dyn Write) -> io::Result<()> {
    let mut h = String::new();
    page(&mut h, r, top)?;
    out.write_all(h.as_bytes())
}

/// The page's style sheet (`assets/report.css`, included at build time).
const STYLE: &str = concat!("\n", include_str!("assets/report.css"));

/// The page's script: the flame graphs' shared search box and the
/// `#selftest=TERM` hook. No network, no external resource.
const SCRIPT: &str = concat!("\n", include_str!("assets/report.js"));

fn page(h: &mut String, r: &Report, top: Option<usize>) -> io::Result<()> {
    let name = flame::run_name(r);
    write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"memtrace {}\">\n\
         <title>memtrace: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        escape(&name)
    )
    .map_err(fmt_err)?;
    let s = &r.summary;
    let mut nav = vec![("summary", "Summary"), ("leaks", "Leaks")];
    if !r.peak.is_empty() {
        nav.push(("peak", "Peak"));
    }
    if !r.allocated.is_empty() {
        nav.push(("allocated", "Most allocated"));
    }
    if !r.temporary.is_empty() {
        nav.push(("temporary", "Temporary"));
    }
    if !r.brk.is_empty() {
        nav.push(("brk", "brk"));
    }
    nav.push(("timeline", "Timeline"));
    nav.push(("flamegraphs", "Flame graphs"));
    if r.kernel.is_some() {
        nav.push(("kernel", "Kernel's view"));
    }
    write!(
        h,
        "<header>\n<h1>memtrace report: {}</h1>\n<nav>",
        escape(&name)
    )
    .map_err(fmt_err)?;
    for (id, label) in nav {
        write!(h, "<a href=\"#{id}\">{label}</a>").map_err(fmt_err)?;
    }
    h.push_str("</nav>\n</header>\n");

    summary(h, r).map_err(fmt_err)?;

    // Leaks.
    h.push_str("<section id=\"leaks\">\n<h2>Leaks</h2>\n");
    if s.leaked_heap_bytes == 0 && s.leaked_heap_blocks == 0 && s.leaked_mmap_bytes == 0 {
        h.push_str(
            "<p class=\"good\">No leaks: all heap blocks were freed and all mappings unmapped.</p>\n",
        );
    }
    let leak_rows = top.unwrap_or(DEFAULT_LEAK_ROWS);
    if let Some(f) = &r.live_filter {
        live_filter(h, r, f, leak_rows).map_err(fmt_err)?;
    }
    if !r.heap_leaks.is_empty() {
        writeln!(
            h,
            "<h3>Heap: {} in {} from {}</h3>",
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks"),
            plural(r.heap_leak_stacks, "stack", "stacks")
        )
        .map_err(fmt_err)?;
        sites(
            h,
            &Table {
                id: "heap-leaks",
                count_label: "Blocks",
                with_func: true,
                by_count: false,
                total: Some((s.leaked_heap_bytes, s.leaked_heap_blocks)),
            },
            &r.heap_leaks,
            leak_rows,
        )
        .map_err(fmt_err)?;
    }
    if !r.mmap_leaks.is_empty() {
        writeln!(
            h,
            "<h3>mmap: {} in {} from {}</h3>",
            plural(s.leaked_mmap_bytes, "byte", "bytes"),
            plural(s.leaked_mmap_regions, "region", "regions"),
            plural(r.mmap_leak_stacks, "stack", "stacks")
        )
        .map_err(fmt_err)?;
        sites(
            h,
            &Table {
                id: "mmap-leaks",
                count_label: "Regions",
                with_func: false,
                by_count: false,
                total: Some((s.leaked_mmap_bytes, s.leaked_mmap_regions)),
            },
            &r.mmap_leaks,
            leak_rows,
        )
        .map_err(fmt_err)?;
    }
    h.push_str("</section>\n");

    let rows = top.unwrap_or(DEFAULT_ROWS);
    if !r.peak.is_empty() {
        write!(
            h,
            "<section id=\"peak\">\n<h2>At the peak: {} live at {:.3} ms</h2>\n\
             <p class=\"muted\">The stacks holding the most heap when the live heap was largest.</p>\n",
            plural(s.peak_heap_bytes, "byte", "bytes"),
            s.peak_heap_time_ms
        )
        .map_err(fmt_err)?;
        sites(
            h,
            &Table {
                id: "peak-table",
                count_label: "Blocks",
                with_func: false,
                by_count: false,
                total: None,
            },
            &r.peak,
            rows,
        )
        .map_err(fmt_err)?;
        h.push_str("</section>\n");
    }
    if !r.allocated.is_empty() {
        write!(
            h,
            "<section id=\"allocated\">\n<h2>Most allocated</h2>\n\
             <p class=\"muted\">The stacks that allocated the most heap bytes over the run, freed or not \
             ({} in {}).</p>\n",
            plural(s.bytes_allocated, "byte", "bytes"),
            plural(s.allocations, "allocation", "allocations")
        )
        .map_err(fmt_err)?;
        sites(
            h,
            &Table {
                id: "allocated-table",
                count_label: "Allocations",
                with_func: false,
                by_count: false,
                total: None,
            },
            &r.allocated,
            rows,
        )
        .map_err(fmt_err)?;
        h.push_str("</section>\n");
    }
    if !r.temporary.is_empty() {
        write!(
            h,
            "<section id=\"temporary\">\n<h2>Temporary allocations</h2>\n\
             <p class=\"muted\">{} of {} allocations were freed before their thread's next \
             allocation ({}); the stacks that made the most.</p>\n",
            thousands(s.temporary_allocations),
            thousands(s.allocations),
            plural(s.temporary_bytes, "byte", "bytes")
        )
        .map_err(fmt_err)?;
        sites(
            h,
            &Table {
                id: "temporary-table",
                count_label: "Temporary",
                with_func: false,
                by_count: true,
                total: None,
            },
            &r.temporary,
            rows,
        )
        .map_err(fmt_err)?;
        h.push_str("</section>\n");
    }
    if !r.brk.is_empty() {
        brk(h, r, rows).map_err(fmt_err)?;
    }

    // The timeline.
    let mut svg = Vec::new();
    super::timeline::render(r, &mut svg)?;
    write!(
        h,
        "<section id=\"timeline\">\n<h2>Memory over time</h2>\n<div class=\"chart\">\n{}</div>\n</section>\n",
        String::from_utf8_lossy(&svg)
    )
    .map_err(fmt_err)?;

    flames(h, r)?;

    if let Some(k) = &r.kernel {
        kernel(h, k).map_err(fmt_err)?;
    }

    write!(
        h,
        "<pre id=\"selftest\" hidden></pre>\n<footer>memtrace {} \u{b7} log {} (format version {})</footer>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(&r.path.display().to_string()),
        r.format_version
    )
    .map_err(fmt_err)?;
    Ok(())
}

fn fmt_err(_: std::fmt::Error) -> io::Error {
    io::Error::other("formatting the HTML report failed")
}

type Fmt = std::fmt::Result;

fn summary(h: &mut String, r: &Report) -> Fmt {
    let p = &r.process;
    let s = &r.summary;
    h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    for w in &r.warnings {
        writeln!(h, "<p class=\"warning\">{}</p>", escape(w))?;
    }
    for n in super::text::notes(r) {
        writeln!(h, "<p class=\"note\">{}</p>", escape(&n))?;
    }
    h.push_str("<table class=\"kv\" id=\"summary-table\">\n");
    let mut row = |k: &str, v: String| writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
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
    row("Process", proc)?;
    if !p.cmdline.is_empty() {
        row(
            "Command",
            format!("<code>{}</code>", escape(&p.cmdline.join(" "))),
        )?;
    }
    row("Ended", escape(&super::text::how_ended(p)))?;
    if !p.forks.is_empty() {
        let pids: Vec<String> = p.forks.iter().map(|c| c.to_string()).collect();
        row(
            "Forked",
            format!("{} (each has its own log)", pids.join(", ")),
        )?;
    }
    row(
        "Total heap usage",
        format!(
            "{}, {}, {} allocated",
            plural(s.allocations, "alloc", "allocs"),
            plural(s.frees, "free", "frees"),
            plural(s.bytes_allocated, "byte", "bytes")
        ),
    )?;
    row(
        if r.process.ended == crate::report::Ended::Snapshot {
            "In use at the snapshot"
        } else {
            "In use at exit"
        },
        format!(
            "{} in {}",
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks")
        ),
    )?;
    match &s.leak_kinds {
        Some(k) if *k != [(0, 0); 4] => row("Leak kinds", kinds_cell(k, &s.leak_heuristics))?,
        Some(_) => {}
        None if s.leaked_heap_blocks > 0 => row(
            "Leak kinds",
            "<span class=\"muted\">not classified by reachability</span>".into(),
        )?,
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
    )?;
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
    )?;
    if s.unknown_frees > 0 || s.libc_freeres_frees > 0 || s.anomalies > 0 {
        row(
            "Other frees",
            format!(
                "frees of unknown blocks: {}; frees by libc's exit clean-up: {}; allocations over live blocks: {}",
                thousands(s.unknown_frees),
                thousands(s.libc_freeres_frees),
                thousands(s.anomalies)
            ),
        )?;
    }
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
    )?;
    row(
        "Program break growth",
        format!("{} bytes", signed(s.brk_growth_bytes)),
    )?;
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
        )?;
    }
    row(
        "Log",
        format!("<code>{}</code>", escape(&r.path.display().to_string())),
    )?;
    h.push_str("</table>\n</section>\n");
    Ok(())
}

/// `file:line` with the file's last component; the full path in a tooltip.
fn location(h: &mut String, f: &Frame) -> Fmt {
    let Some(file) = &f.file else {
        return match &f.module {
            Some(m) => write!(
                h,
                "<span class=\"muted\" title=\"{}\">{}</span>",
                escape(m),
                escape(m.rsplit('/').next().unwrap_or(m))
            ),
            None => Ok(()),
        };
    };
    let short = file.rsplit('/').next().unwrap_or(file);
    let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
    write!(
        h,
        "<code title=\"{}{line}\">{}{line}</code>",
        escape(file),
        escape(short)
    )
}

/// The frames in a `<details>` element; `stacks` (> 1) says how many of
/// the report's stacks read the same.
fn stack(h: &mut String, frames: &[Frame], stacks: usize) -> Fmt {
    if frames.is_empty() {
        return h.write_str("<span class=\"muted\">(stack not recorded)</span>");
    }
    let merged = if stacks > 1 {
        format!(" ({stacks} call sites)")
    } else {
        String::new()
    };
    write!(
        h,
        "<details><summary>{}{merged}</summary><ol class=\"stack\" start=\"0\">",
        plural(frames.len() as u64, "frame", "frames")
    )?;
    for f in frames {
        write!(h, "<li>{}", escape(&function_or_address(f)))?;
        if let Some(file) = &f.file {
            write!(h, " at {}", escape(file))?;
            if let Some(line) = f.line {
                write!(h, ":{line}")?;
            }
        }
        match &f.module {
            Some(m) => write!(h, " <span class=\"mod\">({})</span>", escape(m))?,
            None => h.push_str(" <span class=\"mod\">(no module)</span>"),
        }
        if f.inlined {
            h.push_str(" <span class=\"mod\">[inlined]</span>");
        }
        h.push_str("</li>");
    }
    h.push_str("</ol></details>");
    Ok(())
}

/// What `--since` / `--older-than` narrowed the leaks to, and the growth by
/// stack since the earlier snapshot.
fn live_filter(h: &mut String, r: &Report, f: &crate::report::LiveFilter, rows: usize) -> Fmt {
    let s = &r.summary;
    let delta = crate::report::delta;
    if let Some((path, t_ms, bytes, blocks)) = &f.since {
        writeln!(
            h,
            "<p>Since snapshot <code>{}</code> (taken at {t_ms:.3} ms): live heap then {} in {}, now {} in {} ({} bytes).</p>",
            escape(&path.display().to_string()),
            plural(*bytes, "byte", "bytes"),
            plural(*blocks, "block", "blocks"),
            plural(f.all_bytes, "byte", "bytes"),
            plural(f.all_blocks, "block", "blocks"),
            delta(f.all_bytes as i64 - *bytes as i64)
        )?;
    }
    writeln!(
        h,
        "<p>Listed: the blocks {} and still live, {} in {} of {} in {}.</p>",
        f.which(),
        plural(s.leaked_heap_bytes, "byte", "bytes"),
        plural(s.leaked_heap_blocks, "block", "blocks"),
        plural(f.all_bytes, "byte", "bytes"),
        plural(f.all_blocks, "block", "blocks")
    )?;
    let (bytes, n) = f.lost_then_freed;
    if n > 0 {
        writeln!(
            h,
            "<p class=\"warning\">{} in {} classified lost in the earlier snapshot were freed since: the program held pointers the scan cannot see; lost blocks from the same stacks may not be lost either.</p>",
            plural(bytes, "byte", "bytes"),
            plural(n, "block", "blocks")
        )?;
    }
    if f.growth.is_empty() {
        return Ok(());
    }
    h.push_str(
        "<h3>Growth by stack</h3>\n<table class=\"sites\" id=\"growth\"><thead><tr><th>Change</th><th>Then</th><th>Now</th><th>Function</th><th>Stack</th></tr></thead><tbody>\n",
    );
    for g in f.growth.iter().take(rows) {
        let func = naming_frame(&g.site.stack)
            .map(function_or_address)
            .unwrap_or_default();
        write!(
            h,
            "<tr><td class=\"num\">{} bytes, {} blocks</td><td class=\"num\">{} in {}</td><td class=\"num\">{} in {}</td><td class=\"fn\">{}</td><td>",
            delta(g.site.bytes as i64 - g.then_bytes as i64),
            delta(g.site.count as i64 - g.then_count as i64),
            plural(g.then_bytes, "byte", "bytes"),
            plural(g.then_count, "block", "blocks"),
            plural(g.site.bytes, "byte", "bytes"),
            plural(g.site.count, "block", "blocks"),
            escape(&func)
        )?;
        stack(h, &g.site.stack, 1)?;
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table>\n");
    Ok(())
}

/// Bytes and blocks by reachability kind, one kind a line: `32 bytes in 1
/// block definitely lost<br>96 bytes in 3 blocks indirectly lost`; the still
/// reachable line says what the leak heuristics saved of it.
fn kinds_cell(k: &crate::report::Kinds, h: &crate::report::Heurs) -> String {
    escape(&crate::report::kinds_text_via(k, h)).replace("; ", "<br>")
}

/// Sites whose stacks read the same once symbolized (the same functions,
/// files and lines: a call unrolled by the compiler, or a library loaded
/// twice), merged into one row.
struct Row {
    bytes: u64,
    count: u64,
    /// By reachability kind, when every merged site was classified.
    kinds: Option<crate::report::Kinds>,
    /// Of the still reachable blocks, those each leak heuristic saved.
    heuristics: crate::report::Heurs,
    /// The allocating functions of the merged sites, each once.
    funcs: Vec<memtrace_format::Func>,
    stack: std::sync::Arc<[Frame]>,
    /// How many of the report's stacks the row stands for.
    stacks: usize,
}

fn merge(list: &[Site], by_count: bool) -> Vec<Row> {
    let mut at: std::collections::HashMap<Vec<FrameKey<'_>>, usize> = Default::default();
    let mut rows: Vec<Row> = Vec::new();
    for s in list {
        // Unrecorded stacks are never merged: nothing says they are the same.
        let key = merge_key(&s.stack);
        let i = match key.as_ref().and_then(|k| at.get(k)) {
            Some(&i) => i,
            None => {
                if let Some(key) = key {
                    at.insert(key, rows.len());
                }
                rows.push(Row {
                    bytes: 0,
                    count: 0,
                    kinds: s.kinds.map(|_| [(0, 0); 4]),
                    heuristics: Default::default(),
                    funcs: Vec::new(),
                    stack: s.stack.clone(),
                    stacks: 0,
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.bytes = r.bytes.saturating_add(s.bytes);
        r.count = r.count.saturating_add(s.count);
        r.kinds = match (r.kinds, s.kinds) {
            (Some(mut a), Some(b)) => {
                for (x, y) in a.iter_mut().zip(b) {
                    x.0 = x.0.saturating_add(y.0);
                    x.1 = x.1.saturating_add(y.1);
                }
                Some(a)
            }
            _ => None,
        };
        crate::report::add_heurs(&mut r.heuristics, &s.heuristics);
        r.stacks += 1;
        if let Some(f) = s.func
            && !r.funcs.contains(&f)
        {
            r.funcs.push(f);
        }
    }
    // Stable: equal rows keep the report's order.
    if by_count {
        rows.sort_by_key(|r| std::cmp::Reverse((r.count, r.bytes)));
    } else {
        rows.sort_by_key(|r| std::cmp::Reverse(r.bytes));
    }
    rows
}

/// What a table of sites shows besides bytes and stacks.
struct Table<'a> {
    id: &'a str,
    /// The heading of the count column.
    count_label: &'a str,
    /// With an "Allocated by" column (heap leaks).
    with_func: bool,
    /// Rows ordered by count (temporary allocations), else by bytes.
    by_count: bool,
    /// A total row: bytes and count.
    total: Option<(u64, u64)>,
}

/// A table of sites (merged by symbolized stack, at most `rows`): rank,
/// bytes, count, (allocating function), function, location, stack; a total
/// row when the table has one.
fn sites(h: &mut String, t: &Table<'_>, list: &[Site], rows: usize) -> Fmt {
    let merged = merge(list, t.by_count);
    // Heap leaks classified by reachability: a column of their kinds.
    let with_kinds = t.with_func && list.iter().any(|s| s.kinds.is_some());
    let cols = 6 + usize::from(t.with_func) + usize::from(with_kinds);
    write!(
        h,
        "<table class=\"sites\" id=\"{}\">\n<thead><tr><th class=\"num\">#</th><th class=\"num\">Bytes</th>\
         <th class=\"num\">{}</th>{}{}<th title=\"The innermost frame outside the C, C++ and Rust runtime libraries\">Function</th><th>Location</th><th>Stack</th></tr></thead>\n<tbody>\n",
        t.id,
        t.count_label,
        if with_kinds {
            "<th title=\"By reachability at exit, as valgrind's memcheck classifies leaks\">Kinds</th>"
        } else {
            ""
        },
        if t.with_func {
            "<th>Allocated by</th>"
        } else {
            ""
        }
    )?;
    for (i, s) in merged.iter().take(rows).enumerate() {
        let f = naming_frame(&s.stack);
        let func = f.map(function_or_address).unwrap_or_default();
        write!(
            h,
            "<tr data-function=\"{}\"><td class=\"num\">{}</td><td class=\"num\" title=\"{}\">{}</td><td class=\"num\">{}</td>",
            escape(&func),
            i + 1,
            human(s.bytes),
            thousands(s.bytes),
            thousands(s.count)
        )?;
        if with_kinds {
            match &s.kinds {
                Some(k) => write!(
                    h,
                    "<td class=\"kinds\">{}</td>",
                    kinds_cell(k, &s.heuristics)
                )?,
                None => h.push_str("<td class=\"muted\">?</td>"),
            }
        }
        if t.with_func {
            let names: Vec<&str> = s.funcs.iter().map(|f| f.name()).collect();
            write!(h, "<td><code>{}</code></td>", escape(&names.join(", ")))?;
        }
        match f {
            Some(f) => {
                write!(
                    h,
                    "<td class=\"fn\"><code>{}</code></td><td>",
                    escape(&func)
                )?;
                location(h, f)?;
                h.push_str("</td>");
            }
            None => h.push_str("<td class=\"muted\">?</td><td></td>"),
        }
        h.push_str("<td>");
        stack(h, &s.stack, s.stacks)?;
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody>\n");
    if let Some((bytes, count)) = t.total {
        writeln!(
            h,
            "<tfoot><tr><th></th><td class=\"num\" title=\"{}\">{}</td><td class=\"num\">{}</td>\
             <th colspan=\"{}\">Total</th></tr></tfoot>",
            human(bytes),
            thousands(bytes),
            thousands(count),
            cols - 3
        )?;
    }
    h.push_str("</table>\n");
    if merged.len() > rows {
        let more = (merged.len() - rows) as u64;
        writeln!(
            h,
            "<p class=\"more\">{} not shown (the text and JSON reports list every stack; \
             the flame graphs draw them).</p>",
            plural(more, "more row", "more rows")
        )?;
    }
    Ok(())
}

fn brk(h: &mut String, r: &Report, rows: usize) -> Fmt {
    h.push_str(
        "<section id=\"brk\">\n<h2>brk growth by stack</h2>\n<p class=\"muted\">Explicit brk/sbrk calls.</p>\n\
         <table class=\"sites\" id=\"brk-table\">\n<thead><tr><th class=\"num\">#</th><th class=\"num\">Bytes</th>\
         <th title=\"The innermost frame outside the C, C++ and Rust runtime libraries\">Function</th><th>Location</th><th>Stack</th></tr></thead>\n<tbody>\n",
    );
    for (i, b) in r.brk.iter().take(rows).enumerate() {
        let f = naming_frame(&b.stack);
        let func = f.map(function_or_address).unwrap_or_default();
        write!(
            h,
            "<tr data-function=\"{}\"><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"fn\"><code>{}</code></td><td>",
            escape(&func),
            i + 1,
            signed(b.bytes),
            escape(&func)
        )?;
        if let Some(f) = f {
            location(h, f)?;
        }
        h.push_str("</td><td>");
        stack(h, &b.stack, 1)?;
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
    Ok(())
}

/// The `height` attribute of an SVG's root element.
fn svg_height(svg: &str) -> Option<u32> {
    let start = svg.find("<svg")?;
    let tag = &svg[start..start + svg[start..].find('>')?];
    let at = tag.find(" height=\"")? + " height=\"".len();
    let end = tag[at..].find('"')?;
    tag[at..at + end].trim().parse().ok()
}

/// The flame graph `svg` as an HTML document for an `<iframe srcdoc>`: the
/// XML declaration and doctype go (an HTML parser has no use for them), and
/// `history.replaceState` becomes a no-op (see the module docs).
fn flame_document(svg: &str) -> String {
    let body = svg.find("<svg").map_or(svg, |i| &svg[i..]);
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <style>html,body{{margin:0;padding:0;background:white;overflow:hidden}}svg{{display:block;width:100%}}</style>\
         <script>try{{history.replaceState=function(){{}};}}catch(e){{}}</script>\
         </head><body>{body}</body></html>"
    )
}

fn flames(h: &mut String, r: &Report) -> io::Result<()> {
    let mut metrics = vec![Metric::Leaked, Metric::Peak, Metric::Allocated];
    if r.summary.temporary_allocations > 0 {
        metrics.push(Metric::Temporary);
    }
    h.push_str(
        "<section id=\"flamegraphs\">\n<h2>Flame graphs</h2>\n\
         <p class=\"muted\">Each frame is as wide as its weight; callers below, callees above. \
         Click a frame to zoom in, a lower frame (or \u{201c}Reset Zoom\u{201d}) to zoom out; hover for \
         the figures. The search below highlights matching functions in every graph \
         (a regular expression, as inferno's own Search button takes) and says how much of each it covers.</p>\n\
         <form id=\"flame-search\" role=\"search\"><label for=\"search-term\">Search functions:</label>\
         <input type=\"search\" id=\"search-term\" placeholder=\"name or regular expression, e.g. ^leak_\" autocomplete=\"off\">\
         <button type=\"submit\">Search</button><button type=\"button\" id=\"search-reset\">Reset</button>\
         <span id=\"search-result\" aria-live=\"polite\"></span></form>\n",
    );
    for m in metrics {
        let mut svg = Vec::new();
        flame::render_svg(r, m, &mut svg)?;
        let svg = String::from_utf8_lossy(&svg);
        let height = svg_height(&svg).unwrap_or(400) + 2;
        let label = m.label();
        let cap = {
            let mut c = label.to_owned();
            if let Some(first) = c.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            c
        };
        write!(
            h,
            "<figure class=\"flame\" id=\"flame-{id}\"><figcaption>{cap}: {total}\
             <span class=\"matched\" data-metric=\"{id}\"></span></figcaption>\n\
             <iframe class=\"flame-frame\" data-metric=\"{id}\" title=\"Flame graph of the {label}\" \
             height=\"{height}\" loading=\"eager\" srcdoc=\"{doc}\"></iframe></figure>\n",
            id = m.as_str(),
            total = escape(&m.describe_total(r)),
            doc = escape(&flame_document(&svg)),
        )
        .map_err(fmt_err)?;
    }
    h.push_str("</section>\n");
    Ok(())
}

fn kernel(h: &mut String, k: &KernelReport) -> Fmt {
    use memtrace_format::kernel::CATEGORIES;
    let (t, c) = &k.peak;
    write!(
        h,
        "<section id=\"kernel\">\n<h2>The kernel's view</h2>\n\
         <p>{} samples of <code>/proc/PID/smaps_rollup</code> taken by <code>memtrace run</code>. \
         Peak RSS <strong>{}</strong> at {t:.1} ms (PSS {}, USS {}, swap {}, anonymous {}).",
        thousands(k.samples.len() as u64),
        human(c[0]),
        human(c[1]),
        human(c[2]),
        human(c[3]),
        human(c[4])
    )?;
    if c[5] != 0 {
        write!(
            h,
            " Its cgroup then: memory.current {} (anon {}, file {}).",
            human(c[5]),
            human(c[6]),
            human(c[7])
        )?;
    }
    h.push_str("</p>\n");
    let tables = [
        ("maps-at-peak", "near peak RSS", &k.maps_at_peak),
        ("maps-at-end", "at exit", &k.maps_at_end),
    ];
    for (id, when, table) in tables {
        let Some((t, m)) = table else { continue };
        write!(
            h,
            "<h3>Mappings by category {when} ({t:.1} ms)</h3>\n<table id=\"{id}\">\n\
             <thead><tr><th>Category</th><th class=\"num\">Size</th><th class=\"num\">RSS</th>\
             <th class=\"num\">PSS</th><th class=\"num\">Swap</th></tr></thead>\n<tbody>\n"
        )?;
        for (name, v) in CATEGORIES.iter().zip(m.iter()) {
            if v.iter().all(|&x| x == 0) {
                continue;
            }
            writeln!(
                h,
                "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                human(v[0]),
                human(v[1]),
                human(v[2]),
                human(v[3])
            )?;
        }
        h.push_str("</tbody>\n</table>\n");
    }
    if let (Some((t, m)), Some(p)) = (&k.maps_at_peak, &k.heap_at_maps_peak) {
        let held = m[0][1] + m[2][1];
        let asked = p.heap + p.mmap;
        write!(
            h,
            "<h3>The gap at {t:.1} ms</h3>\n<p id=\"gap\">The program had {} of heap blocks live \
             (requested sizes) and {} mapped by its own mmap calls; the kernel charged {} of RSS to \
             <code>[heap]</code> and anonymous mappings: {} {} that. \
             <span class=\"muted\">(More: allocator overhead, free blocks not returned, fragmentation, \
             thread stacks; less: pages never touched.)</span>",
            human(p.heap),
            human(p.mmap),
            human(held),
            human(held.abs_diff(asked)),
            if held >= asked {
                "more than"
            } else {
                "less than"
            }
        )?;
        h.push_str("</p>\n");
        if !k.mmap_at_maps_peak.is_empty() {
            h.push_str("<p>The program's own mappings then, by the stack that made them:</p>\n");
            sites(
                h,
                &Table {
                    id: "mmap-at-maps-peak",
                    count_label: "Regions",
                    with_func: false,
                    by_count: false,
                    total: None,
                },
                &k.mmap_at_maps_peak,
                usize::MAX,
            )?;
        }
    }
    h.push_str("</section>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything from the log is escaped; the SVG's height is read back.
    #[test]
    fn escaping_and_height() {
        assert_eq!(
            escape("a<b> & \"c\" 'd'\u{1}"),
            "a&lt;b&gt; &amp; &quot;c&quot; &#39;d&#39; "
        );
        assert_eq!(
            svg_height("<?xml?><svg version=\"1.1\" width=\"1200\" height=\"342\" onload=\"x\">"),
            Some(342)
        );
        assert_eq!(svg_height("<svg>"), None);
        let doc = flame_document("<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg a=\"1\"></svg>");
        assert!(doc.contains("<body><svg a=\"1\"></svg></body>"), "{doc}");
        assert!(
            !doc.contains("<?xml") && !doc.contains("DOCTYPE svg"),
            "{doc}"
        );
    }

    /// Sites are named by their innermost frame outside the runtimes.
    #[test]
    fn naming() {
        let frame = |func: &str, file: Option<&str>, module: &str| Frame {
            mangled: None,
            function: Some(func.into()),
            file: file.map(Into::into),
            line: Some(1),
            module: Some(module.into()),
            address: 0x1000,
            inlined: false,
        };
        let stack = [
            frame(
                "__GI___strdup",
                Some("strdup.c"),
                "/lib/x86_64-linux-gnu/libc.so.6",
            ),
            frame("std::vector<int>::push_back", Some("vector.h"), "/bin/a"),
            frame(
                "void std::vector<int>::_M_realloc_insert<int const&>(int const&)",
                Some("vector.tcc"),
                "/bin/a",
            ),
            frame("helper", None, "/bin/a"),
            frame("leak_strdup", Some("a.c"), "/bin/a"),
        ];
        let name = |s: &[Frame]| naming_frame(s).and_then(|f| f.function.clone());
        assert_eq!(name(&stack).as_deref(), Some("leak_strdup"));
        assert_eq!(name(&stack[..4]).as_deref(), Some("helper"));
        assert_eq!(name(&stack[..3]).as_deref(), Some("__GI___strdup"));
        assert_eq!(name(&[]), None);
    }

    /// A log's page: leak rows with escaped C++ names, the total, the
    /// timeline inline, the flame graphs in escaped srcdoc documents.
    #[test]
    fn page_from_log() {
        use crate::testlog::*;
        let b = two_stack_run();
        let mut r = crate::report::analyze_bytes(&b.bytes, &flame::all()).unwrap();
        let mut frames: Vec<Frame> = r.heap_leaks[0].stack.to_vec();
        frames[0].function = Some("std::vector<int>::push_back&".into());
        frames[0].file = Some("/src/a<b>.cpp".into());
        frames[0].line = Some(7);
        r.heap_leaks[0].stack = frames.into();
        let mut out = Vec::new();
        render(&r, &mut out).unwrap();
        let h = String::from_utf8(out).unwrap();
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(
            h.contains("<code>std::vector&lt;int&gt;::push_back&amp;</code>"),
            "{h}"
        );
        assert!(h.contains("a&lt;b&gt;.cpp:7"), "{h}");
        assert!(!h.contains("vector<int>"), "{h}");
        assert!(h.contains("<th colspan=\"4\">Total</th>"), "{h}");
        assert!(h.contains("<polyline id=\"heap\""), "{h}");
        assert_eq!(h.matches("<iframe class=\"flame-frame\"").count(), 3);
        // In the srcdoc attribute, the SVG's own escapes are escaped once more.
        assert!(h.contains("srcdoc=\"&lt;!DOCTYPE html&gt;"), "{h}");
        assert!(h.contains("vector&amp;lt;int&amp;gt;"), "{h}");
        // Nothing is fetched: no src, no link, no import, no remote url().
        for bad in [" src=\"", "<link", "@import", "url(http", "href=\"http"] {
            assert!(!h.contains(bad), "{bad} in {h}");
        }
        assert!(h.trim_end().ends_with("</html>"));
    }

    /// A classified run's page: the summary's kinds, and a Kinds column in
    /// the heap leak table with each row's bytes and blocks by kind.
    #[test]
    fn page_with_leak_kinds() {
        use crate::testlog::*;
        let mut c = LogBuilder::chunk(T0);
        c.stack(1, &[0x1234, 0x5678])
            .stack(2, &[0x9abc, 0x5678])
            .alloc(T0 + 3, 0x10, 40, 1)
            .alloc(T0 + 4, 0x60, 8, 1)
            .alloc(T0 + 5, 0x20, 60, 2);
        let mut b = LogBuilder::new();
        b.push(0, &c).ended(T0 + 10);
        let mut r = crate::report::analyze_bytes(&b.bytes, &flame::all()).unwrap();
        let plain = {
            let mut out = Vec::new();
            render(&r, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(!plain.contains(">Kinds</th>"), "no column without kinds");
        assert!(plain.contains("not classified by reachability"), "{plain}");
        for s in &mut r.heap_leaks {
            s.kinds = Some(if s.bytes == 48 {
                [(40, 1), (0, 0), (0, 0), (8, 1)]
            } else {
                [(0, 0), (60, 1), (0, 0), (0, 0)]
            });
        }
        r.summary.leak_kinds = Some([(40, 1), (60, 1), (0, 0), (8, 1)]);
        let mut out = Vec::new();
        render(&r, &mut out).unwrap();
        let h = String::from_utf8(out).unwrap();
        assert!(
            h.contains(
                "<tr><th>Leak kinds</th><td>40 bytes in 1 block definitely lost<br>\
                 60 bytes in 1 block indirectly lost<br>8 bytes in 1 block still reachable</td></tr>"
            ),
            "{h}"
        );
        assert!(h.contains(">Kinds</th><th>Allocated by</th>"), "{h}");
        assert!(
            h.contains(
                "<td class=\"kinds\">40 bytes in 1 block definitely lost<br>8 bytes in 1 block still reachable</td>"
            ),
            "{h}"
        );
        assert!(
            h.contains("<td class=\"kinds\">60 bytes in 1 block indirectly lost</td>"),
            "{h}"
        );
        assert!(h.contains("<th colspan=\"5\">Total</th>"), "{h}");
        // What a leak heuristic saved of the still reachable blocks.
        for s in &mut r.heap_leaks {
            if s.bytes == 48 {
                s.heuristics = [(0, 0), (0, 0), (8, 1), (0, 0)];
            }
        }
        r.summary.leak_heuristics = [(0, 0), (0, 0), (8, 1), (0, 0)];
        let mut out = Vec::new();
        render(&r, &mut out).unwrap();
        let h = String::from_utf8(out).unwrap();
        let via = "8 bytes in 1 block still reachable, of which via heuristic newarray: 8 bytes in 1 block";
        assert!(
            h.contains(&format!(
                "<tr><th>Leak kinds</th><td>40 bytes in 1 block definitely lost<br>\
                 60 bytes in 1 block indirectly lost<br>{via}</td></tr>"
            )),
            "{h}"
        );
        assert!(
            h.contains(&format!(
                "<td class=\"kinds\">40 bytes in 1 block definitely lost<br>{via}</td>"
            )),
            "{h}"
        );
    }
}
