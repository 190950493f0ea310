//! The text report's answers to heaptrack_print's questions: the FILTER
//! section (what `--filter` kept, and its totals), the ALLOCATION SIZES
//! histogram with a bar per bucket, and the lists BY FUNCTION with each
//! function's callers beneath. Printed only when asked for.

use std::io::{self, Write};

use crate::frames::{Frame, file_name, function_or_address};
use crate::report::Report;
use crate::report::questions::{ByFunction, Filtered, SizeBucket, Totals};
use crate::units::{plural, thousands};

/// Widest bar of the histogram, in characters.
const BAR: u64 = 40;

/// What `--filter` kept: the pattern, the stacks and their totals.
pub(super) fn filter(out: &mut dyn Write, r: &Report, f: &Filtered) -> io::Result<()> {
    let how = if f.pattern.is_glob() {
        "matches the glob"
    } else {
        "contains"
    };
    writeln!(out)?;
    writeln!(
        out,
        "FILTER: only the stacks through a frame whose function or module file name {how} \"{}\"",
        f.pattern.text
    )?;
    writeln!(
        out,
        "  stacks:          {} of {}",
        thousands(f.stacks),
        thousands(f.stacks_total)
    )?;
    writeln!(
        out,
        "  heap usage:      {}, {} allocated, {}",
        plural(f.allocations, "alloc", "allocs"),
        plural(f.bytes_allocated, "byte", "bytes"),
        plural(f.temporary_allocations, "temporary", "temporary")
    )?;
    writeln!(
        out,
        "  in use at end:   {} in {}; mapped: {} in {}",
        plural(f.leaked_heap_bytes, "byte", "bytes"),
        plural(f.leaked_heap_blocks, "block", "blocks"),
        plural(f.leaked_mmap_bytes, "byte", "bytes"),
        plural(f.leaked_mmap_regions, "region", "regions")
    )?;
    writeln!(
        out,
        "  at the peak:     {} in {} of the {} live at {:.3} ms",
        plural(f.peak_heap_bytes, "byte", "bytes"),
        plural(f.peak_heap_blocks, "block", "blocks"),
        plural(r.summary.peak_heap_bytes, "byte", "bytes"),
        r.summary.peak_heap_time_ms
    )
}

/// The allocation-size histogram, one line a bucket.
pub(super) fn histogram(out: &mut dyn Write, h: &[SizeBucket]) -> io::Result<()> {
    let n: u64 = h.iter().map(|b| b.allocations).sum();
    writeln!(out)?;
    writeln!(
        out,
        "ALLOCATION SIZES: {} by requested size (a bucket per size up to 64 bytes, then powers of two)",
        plural(n, "allocation", "allocations")
    )?;
    if h.is_empty() {
        return writeln!(out, "  (no allocations)");
    }
    writeln!(
        out,
        "  {:>23} {:>12} {:>16}",
        "size", "allocations", "bytes"
    )?;
    let most = h.iter().map(|b| b.allocations).max().unwrap_or(1).max(1);
    for b in h {
        let size = if b.min == b.max {
            thousands(b.min)
        } else {
            format!("{}-{}", thousands(b.min), thousands(b.max))
        };
        let bar = (b.allocations * BAR).div_ceil(most) as usize;
        writeln!(
            out,
            "  {size:>23} {:>12} {:>16}  {}",
            thousands(b.allocations),
            thousands(b.bytes),
            "#".repeat(bar)
        )?;
    }
    Ok(())
}

/// `f at file.c:12 (module)`.
fn place(f: &Frame) -> String {
    let mut s = function_or_address(f);
    if let Some(file) = &f.file {
        s += &format!(" at {}", file_name(file));
        if let Some(l) = f.line {
            s += &format!(":{l}");
        }
    }
    if let Some(m) = &f.module {
        s += &format!(" ({m})");
    }
    s
}

/// A function's or caller's figures in one line.
fn figures(t: &Totals) -> String {
    format!(
        "{}, {} allocated; leaked {} in {}; {} at the peak; {}",
        plural(t.allocations, "allocation", "allocations"),
        plural(t.bytes_allocated, "byte", "bytes"),
        plural(t.leaked_bytes, "byte", "bytes"),
        plural(t.leaked_blocks, "block", "blocks"),
        plural(t.peak_bytes, "byte", "bytes"),
        plural(t.temporary_allocations, "temporary", "temporary")
    )
}

/// The heap figures merged by the allocating function, callers beneath.
pub(super) fn by_function(out: &mut dyn Write, b: &ByFunction) -> io::Result<()> {
    writeln!(out)?;
    let shown = if (b.functions.len() as u64) < b.total {
        format!(", the {} that allocated the most shown", b.functions.len())
    } else {
        String::new()
    };
    writeln!(
        out,
        "BY FUNCTION: {} (the innermost frame of the program's own code), most bytes allocated first{shown}",
        plural(b.total, "allocating function", "allocating functions")
    )?;
    for f in &b.functions {
        writeln!(out)?;
        writeln!(out, "  {}", place(&f.frame))?;
        writeln!(
            out,
            "    {} from {}",
            figures(&f.totals),
            plural(f.stacks, "stack", "stacks")
        )?;
        let more = if (f.callers.len() as u64) < f.callers_total {
            format!(
                " (the {} of {} that allocated the most)",
                f.callers.len(),
                f.callers_total
            )
        } else {
            String::new()
        };
        writeln!(out, "    called from{more}:")?;
        for c in &f.callers {
            let who = c
                .frame
                .as_ref()
                .map(place)
                .unwrap_or_else(|| "(no caller: the stack's outermost frame)".into());
            writeln!(out, "      {who}")?;
            writeln!(out, "        {}", figures(&c.totals))?;
        }
    }
    Ok(())
}
