//! The page's answers to heaptrack_print's questions, each a section of its
//! own, only when asked for: what `--filter` kept (`#filter`), the
//! allocation-size histogram as a table with a bar per bucket
//! (`#histogram`), and the heap figures by allocating function with its
//! callers in the rows beneath (`#by-function`).
//!
//! Uses the report model, the shared frames and units, and the page's
//! escaper and location cell.

use std::fmt::Write as _;

use super::tables::location;
use super::{Fmt, escape};
use crate::frames::function_or_address;
use crate::report::Report;
use crate::report::questions::{ByFunction, Filtered, SizeBucket, Totals};
use crate::units::{plural, thousands};

/// The links of the sections the page has, for the header.
pub(super) fn nav(r: &Report) -> Vec<(&'static str, &'static str)> {
    let q = &r.questions;
    let mut v = Vec::new();
    if q.filter.is_some() {
        v.push(("filter", "Filter"));
    }
    if q.histogram.is_some() {
        v.push(("histogram", "Sizes"));
    }
    if q.by_function.is_some() {
        v.push(("by-function", "By function"));
    }
    v
}

/// The filter's section.
pub(super) fn filter(h: &mut String, r: &Report, f: &Filtered) -> Fmt {
    let how = if f.pattern.is_glob() {
        "matches the glob"
    } else {
        "contains"
    };
    write!(
        h,
        "<section id=\"filter\">\n<h2>Filter</h2>\n<p>Only the stacks through a frame whose function or \
         module file name {how} <code>{}</code>: every table and flame graph below holds only them \
         (the summary above is the whole run's).</p>\n<table class=\"kv\" id=\"filter-table\"><tbody>\n",
        escape(&f.pattern.text)
    )?;
    let rows = [
        (
            "Stacks",
            format!("{} of {}", thousands(f.stacks), thousands(f.stacks_total)),
        ),
        (
            "Allocations",
            format!(
                "{}, {}",
                thousands(f.allocations),
                plural(f.bytes_allocated, "byte", "bytes")
            ),
        ),
        ("Temporary", thousands(f.temporary_allocations)),
        (
            "In use at the end",
            format!(
                "{} in {}",
                plural(f.leaked_heap_bytes, "byte", "bytes"),
                plural(f.leaked_heap_blocks, "block", "blocks")
            ),
        ),
        (
            "Still mapped",
            format!(
                "{} in {}",
                plural(f.leaked_mmap_bytes, "byte", "bytes"),
                plural(f.leaked_mmap_regions, "region", "regions")
            ),
        ),
        (
            "At the peak",
            format!(
                "{} in {} of {}",
                plural(f.peak_heap_bytes, "byte", "bytes"),
                plural(f.peak_heap_blocks, "block", "blocks"),
                plural(r.summary.peak_heap_bytes, "byte", "bytes")
            ),
        ),
    ];
    for (k, v) in rows {
        writeln!(h, "<tr><th>{k}</th><td class=\"num\">{v}</td></tr>")?;
    }
    h.push_str("</tbody></table>\n</section>\n");
    Ok(())
}

/// The histogram's section: a row a bucket, with a bar.
pub(super) fn histogram(h: &mut String, buckets: &[SizeBucket]) -> Fmt {
    let n: u64 = buckets.iter().map(|b| b.allocations).sum();
    write!(
        h,
        "<section id=\"histogram\">\n<h2>Allocation sizes</h2>\n<p class=\"muted\">{} by requested size: \
         a bucket per size up to 64 bytes, then powers of two.</p>\n\
         <table class=\"sites\" id=\"histogram-table\"><thead><tr><th class=\"num\">Size (bytes)</th>\
         <th class=\"num\">Allocations</th><th class=\"num\">Bytes</th><th></th></tr></thead><tbody>\n",
        plural(n, "allocation", "allocations")
    )?;
    let most = buckets
        .iter()
        .map(|b| b.allocations)
        .max()
        .unwrap_or(1)
        .max(1);
    for b in buckets {
        let size = if b.min == b.max {
            thousands(b.min)
        } else {
            format!("{}\u{2013}{}", thousands(b.min), thousands(b.max))
        };
        writeln!(
            h,
            "<tr data-min=\"{}\" data-max=\"{}\"><td class=\"num\">{size}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"bar\"><span style=\"width:{:.1}%\"></span></td></tr>",
            b.min,
            b.max,
            thousands(b.allocations),
            thousands(b.bytes),
            b.allocations as f64 * 100.0 / most as f64
        )?;
    }
    h.push_str("</tbody></table>\n</section>\n");
    Ok(())
}

/// The figure cells of a function's or caller's row.
fn cells(h: &mut String, t: &Totals) -> Fmt {
    write!(
        h,
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} in {}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td>",
        thousands(t.allocations),
        thousands(t.bytes_allocated),
        plural(t.leaked_bytes, "byte", "bytes"),
        plural(t.leaked_blocks, "block", "blocks"),
        thousands(t.peak_bytes),
        thousands(t.temporary_allocations)
    )
}

/// The by-function section: a row a function, its callers' rows beneath.
pub(super) fn by_function(h: &mut String, b: &ByFunction, rows: usize) -> Fmt {
    write!(
        h,
        "<section id=\"by-function\">\n<h2>By function</h2>\n<p class=\"muted\">{}: the innermost \
         frame of the program's own code of each stack, most bytes allocated first; its callers \
         beneath.</p>\n<table class=\"sites\" id=\"by-function-table\"><thead><tr><th>Function</th>\
         <th>Location</th><th class=\"num\">Allocations</th><th class=\"num\">Bytes allocated</th>\
         <th class=\"num\">Leaked</th><th class=\"num\">At the peak</th><th class=\"num\">Temporary</th>\
         </tr></thead><tbody>\n",
        plural(b.total, "allocating function", "allocating functions")
    )?;
    for f in b.functions.iter().take(rows) {
        let name = escape(&function_or_address(&f.frame));
        write!(
            h,
            "<tr class=\"function\" data-function=\"{name}\"><td class=\"fn\">{name}</td><td>"
        )?;
        location(h, &f.frame)?;
        h.push_str("</td>");
        cells(h, &f.totals)?;
        h.push_str("</tr>\n");
        for c in f.callers.iter().take(rows) {
            let who = c
                .frame
                .as_ref()
                .map(|f| escape(&function_or_address(f)))
                .unwrap_or_else(|| "(outermost frame)".into());
            write!(
                h,
                "<tr class=\"caller\" data-function=\"{name}\" data-caller=\"{who}\"><td class=\"fn\">\u{2190} {who}</td><td>"
            )?;
            if let Some(cf) = &c.frame {
                location(h, cf)?;
            }
            h.push_str("</td>");
            cells(h, &c.totals)?;
            h.push_str("</tr>\n");
        }
    }
    if (b.functions.len().min(rows) as u64) < b.total {
        writeln!(
            h,
            "<tr><td class=\"more\" colspan=\"7\">{} more not shown</td></tr>",
            thousands(b.total - b.functions.len().min(rows) as u64)
        )?;
    }
    h.push_str("</tbody></table>\n</section>\n");
    Ok(())
}
