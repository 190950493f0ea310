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
//! - the kernel's mapping tables and the gap, when present;
//! - when asked for, heaptrack_print's questions (module `questions`): what
//!   `--filter` kept, the allocation-size histogram, the figures by
//!   allocating function and caller.
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

use crate::flame;
use crate::report::Report;
use crate::units::{plural, thousands};

use self::flames::flames;
use self::kernel::kernel;
use self::summary::summary;
use self::tables::{Table, brk, live_filter, sites};

mod flames;
mod kernel;
mod questions;
mod summary;
mod tables;
#[cfg(test)]
mod tests;

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

/// The page's style sheet (`render/assets/report.css`, included at build time).
const STYLE: &str = concat!("\n", include_str!("../assets/report.css"));

/// The page's script: the flame graphs' shared search box and the
/// `#selftest=TERM` hook. No network, no external resource.
const SCRIPT: &str = concat!("\n", include_str!("../assets/report.js"));

/// The page, top to bottom (see the module docs).
fn page(h: &mut String, r: &Report, top: Option<usize>) -> io::Result<()> {
    let name = flame::run_name(r);
    header(h, r, &name).map_err(fmt_err)?;
    summary(h, r).map_err(fmt_err)?;
    if let Some(f) = &r.questions.filter {
        questions::filter(h, r, f).map_err(fmt_err)?;
    }
    leaks(h, r, top.unwrap_or(DEFAULT_LEAK_ROWS)).map_err(fmt_err)?;
    lists(h, r, top.unwrap_or(DEFAULT_ROWS)).map_err(fmt_err)?;
    if let Some(b) = &r.questions.histogram {
        questions::histogram(h, b).map_err(fmt_err)?;
    }
    if let Some(b) = &r.questions.by_function {
        questions::by_function(h, b, top.unwrap_or(DEFAULT_ROWS)).map_err(fmt_err)?;
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

/// The document's head and the page's header: title and the links to each
/// section the page has.
fn header(h: &mut String, r: &Report, name: &str) -> Fmt {
    write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"memtrace {}\">\n\
         <title>memtrace: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        escape(name)
    )?;
    let mut nav = vec![("summary", "Summary")];
    nav.extend(questions::nav(r).into_iter().filter(|n| n.0 == "filter"));
    nav.push(("leaks", "Leaks"));
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
    nav.extend(questions::nav(r).into_iter().filter(|n| n.0 != "filter"));
    nav.push(("timeline", "Timeline"));
    nav.push(("flamegraphs", "Flame graphs"));
    if r.kernel.is_some() {
        nav.push(("kernel", "Kernel's view"));
    }
    write!(
        h,
        "<header>\n<h1>memtrace report: {}</h1>\n<nav>",
        escape(name)
    )?;
    for (id, label) in nav {
        write!(h, "<a href=\"#{id}\">{label}</a>")?;
    }
    h.push_str("</nav>\n</header>\n");
    Ok(())
}

/// The leaks section: the live filter's table when one was given, then the
/// heap and the mmap leaks, each at most `rows` rows.
fn leaks(h: &mut String, r: &Report, rows: usize) -> Fmt {
    let s = &r.listed();
    h.push_str("<section id=\"leaks\">\n<h2>Leaks</h2>\n");
    if r.process.ended == crate::report::Ended::Exec
        && (s.leaked_heap_blocks > 0 || s.leaked_mmap_regions > 0)
    {
        h.push_str(
            "<p class=\"good\">Replaced by exec: what was live then went with the image; \
             none of it leaked.</p>\n",
        );
    }
    if r.questions.filter.is_some() && s.leaked_heap_blocks == 0 && s.leaked_mmap_bytes == 0 {
        h.push_str("<p class=\"good\">No leaks through the filter.</p>\n");
    } else if s.window.is_some() && s.leaked_heap_blocks == 0 {
        h.push_str(
            "<p class=\"good\">No heap block allocated in the window is live at its end.</p>\n",
        );
    } else if s.leaked_heap_bytes == 0 && s.leaked_heap_blocks == 0 && s.leaked_mmap_bytes == 0 {
        h.push_str(
            "<p class=\"good\">No leaks: all heap blocks were freed and all mappings unmapped.</p>\n",
        );
    }
    if let Some(f) = &r.live_filter {
        live_filter(h, r, f, rows)?;
    }
    if !r.heap_leaks.is_empty() {
        writeln!(
            h,
            "<h3>Heap{}: {} in {} from {}</h3>",
            match &s.window {
                Some(_) => ", allocated in the window and live at its end",
                None => "",
            },
            plural(s.leaked_heap_bytes, "byte", "bytes"),
            plural(s.leaked_heap_blocks, "block", "blocks"),
            plural(r.heap_leak_stacks, "stack", "stacks")
        )?;
        let t = table("heap-leaks", "Blocks", false);
        let t = Table {
            with_func: true,
            total: Some((s.leaked_heap_bytes, s.leaked_heap_blocks)),
            ..t
        };
        sites(h, &t, &r.heap_leaks, rows)?;
    }
    if !r.mmap_leaks.is_empty() {
        writeln!(
            h,
            "<h3>mmap: {} in {} from {}</h3>",
            plural(s.leaked_mmap_bytes, "byte", "bytes"),
            plural(s.leaked_mmap_regions, "region", "regions"),
            plural(r.mmap_leak_stacks, "stack", "stacks")
        )?;
        let t = Table {
            total: Some((s.leaked_mmap_bytes, s.leaked_mmap_regions)),
            ..table("mmap-leaks", "Regions", false)
        };
        sites(h, &t, &r.mmap_leaks, rows)?;
    }
    h.push_str("</section>\n");
    Ok(())
}

/// A table of sites without the allocating function's column and without
/// totals.
fn table(id: &'static str, count_label: &'static str, by_count: bool) -> Table<'static> {
    Table {
        id,
        count_label,
        with_func: false,
        by_count,
        total: None,
    }
}

/// The other lists, each in its own section when it has entries: the peak,
/// the most allocated, the temporary allocations and the brk growth.
fn lists(h: &mut String, r: &Report, rows: usize) -> Fmt {
    let s = &r.summary;
    if !r.peak.is_empty() {
        write!(
            h,
            "<section id=\"peak\">\n<h2>At the peak: {} live at {:.3} ms</h2>\n\
             <p class=\"muted\">The stacks holding the most heap when the live heap was largest.</p>\n",
            plural(s.peak_heap_bytes, "byte", "bytes"),
            s.peak_heap_time_ms
        )?;
        sites(h, &table("peak-table", "Blocks", false), &r.peak, rows)?;
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
        )?;
        let t = table("allocated-table", "Allocations", false);
        sites(h, &t, &r.allocated, rows)?;
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
        )?;
        let t = table("temporary-table", "Temporary", true);
        sites(h, &t, &r.temporary, rows)?;
        h.push_str("</section>\n");
    }
    if !r.brk.is_empty() {
        brk(h, r, rows)?;
    }
    Ok(())
}

fn fmt_err(_: std::fmt::Error) -> io::Error {
    io::Error::other("formatting the HTML report failed")
}

type Fmt = std::fmt::Result;
