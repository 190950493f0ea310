//! The page's tables of sites: rows merged by stack ([`crate::frames::merge_key`]),
//! each named by its [`crate::frames::naming_frame`], with the location and
//! the full stack; the live filter's table and the brk table.
//!
//! Uses the report model, the shared frames and units, and the page's escaper.

use std::fmt::Write as _;

use super::{Fmt, escape};
use crate::frames::{Frame, FrameKey, function_or_address, merge_key, naming_frame};
use crate::report::{Report, Site};
use crate::units::{human, plural, signed, thousands};

/// `file:line` with the file's last component; the full path in a tooltip.
pub(super) fn location(h: &mut String, f: &Frame) -> Fmt {
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
pub(super) fn stack(h: &mut String, frames: &[Frame], stacks: usize) -> Fmt {
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
pub(super) fn live_filter(
    h: &mut String,
    r: &Report,
    f: &crate::report::LiveFilter,
    rows: usize,
) -> Fmt {
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
pub(super) fn kinds_cell(k: &crate::kinds::ByKind, h: &crate::report::Heurs) -> String {
    escape(&crate::report::kinds_text_via(k, h)).replace("; ", "<br>")
}

/// Sites whose stacks read the same once symbolized (the same functions,
/// files and lines: a call unrolled by the compiler, or a library loaded
/// twice), merged into one row.
struct Row {
    bytes: u64,
    count: u64,
    /// By reachability kind, when every merged site was classified.
    kinds: Option<crate::kinds::ByKind>,
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
pub(super) struct Table<'a> {
    pub(super) id: &'a str,
    /// The heading of the count column.
    pub(super) count_label: &'a str,
    /// With an "Allocated by" column (heap leaks).
    pub(super) with_func: bool,
    /// Rows ordered by count (temporary allocations), else by bytes.
    pub(super) by_count: bool,
    /// A total row: bytes and count.
    pub(super) total: Option<(u64, u64)>,
}

/// A table of sites (merged by symbolized stack, at most `rows`): rank,
/// bytes, count, (allocating function), function, location, stack; a total
/// row when the table has one.
pub(super) fn sites(h: &mut String, t: &Table<'_>, list: &[Site], rows: usize) -> Fmt {
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

pub(super) fn brk(h: &mut String, r: &Report, rows: usize) -> Fmt {
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
