//! The text report's WINDOW lines (`--from`, `--to`): the window, what was
//! allocated in it, its peak, what was live at its end, and the kinds of
//! the blocks listed (or why they are not classified).

use std::io::{self, Write};

use crate::report::window::Window;
use crate::report::{Report, duration};
use crate::units::plural;

/// `1.200 s`: a time since the start, in ns.
fn at(ns: u64) -> String {
    duration(ns as f64 / 1e6)
}

/// `window: 1.200 s .. 2.500 s of 3.100 s`.
pub fn bounds(w: &Window) -> String {
    format!("{} .. {} of {}", at(w.from_ns), at(w.to_ns), at(w.end_ns))
}

/// Why the blocks listed have no kinds, when the window ends before the
/// end: the scan that found the kinds ran at the end.
pub fn unclassified(r: &Report) -> &'static str {
    if r.process.ended == crate::report::Ended::Snapshot {
        "the window ends before the snapshot (a block live at its end may be freed later)"
    } else {
        "the window ends before exit (a block live at its end may be freed later)"
    }
}

/// The WINDOW lines of the heap summary.
pub(super) fn window(out: &mut dyn Write, r: &Report, w: &Window) -> io::Result<()> {
    let s = &r.summary;
    writeln!(out, "  window:           {}", bounds(w))?;
    writeln!(
        out,
        "  in the window:    {}, {}, {} allocated; peak {} at {:.3} ms",
        plural(w.allocations, "alloc", "allocs"),
        plural(w.frees, "free", "frees"),
        plural(w.bytes_allocated, "byte", "bytes"),
        plural(w.peak_heap_bytes, "byte", "bytes"),
        w.peak_heap_time_ms
    )?;
    writeln!(
        out,
        "  live at {}: {} in {}; allocated in the window: {} in {}",
        at(w.to_ns),
        plural(w.live_bytes, "byte", "bytes"),
        plural(w.live_blocks, "block", "blocks"),
        plural(s.leaked_heap_bytes, "byte", "bytes"),
        plural(s.leaked_heap_blocks, "block", "blocks")
    )?;
    if w.before_end() {
        if s.leaked_heap_blocks > 0 {
            writeln!(
                out,
                "    not classified by reachability: {}",
                unclassified(r)
            )?;
        }
        Ok(())
    } else {
        super::leak_kinds(out, s)
    }
}
