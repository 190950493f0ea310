//! The questions on logs built in memory (frames unsymbolized: functions
//! are their addresses).

use crate::report::questions::{Asked, Pattern};
use crate::report::{Options, analyze_bytes};
use crate::testlog::*;

/// Stacks 1 and 2 share their innermost frame (0x1234), stack 3 does not.
fn run() -> Vec<u8> {
    let mut c = LogBuilder::chunk(T0);
    c.stack(1, &[0x1234, 0x5678])
        .stack(2, &[0x1234, 0x9abc])
        .stack(3, &[0x4444, 0x5678])
        .alloc(T0 + 1, 0x10, 16, 1)
        .alloc(T0 + 2, 0x20, 16, 2)
        .free(T0 + 3, 0x20)
        .alloc(T0 + 4, 0x30, 100, 3)
        .realloc(T0 + 5, T0 + 6, 0x30, 0x40, 129, 3)
        .alloc(T0 + 7, 0x50, 0, 1);
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(T0 + 10);
    b.bytes
}

fn asked(histogram: bool, filter: Option<&str>, by_function: bool) -> Options {
    Options {
        questions: Asked {
            histogram,
            filter: filter.map(Pattern::new),
            by_function,
        },
        ..Default::default()
    }
}

#[test]
fn histogram_counts_reallocs_and_zero_sizes() {
    let r = analyze_bytes(&run(), &asked(true, None, false)).unwrap();
    let h: Vec<_> = r
        .questions
        .histogram
        .unwrap()
        .iter()
        .map(|b| (b.min, b.max, b.allocations, b.bytes))
        .collect();
    assert_eq!(
        h,
        [
            (0, 0, 1, 0),
            (16, 16, 2, 32),
            (65, 128, 1, 100),
            (129, 256, 1, 129)
        ]
    );
    assert_eq!(r.summary.allocations, 5);
    assert!(r.questions.filter.is_none() && r.questions.by_function.is_none());
}

#[test]
fn by_function_merges_the_innermost_frame_and_splits_callers() {
    let r = analyze_bytes(&run(), &asked(false, None, true)).unwrap();
    let b = r.questions.by_function.unwrap();
    assert_eq!(b.total, 2);
    let f = &b.functions[0];
    assert_eq!(f.frame.address, 0x4444, "most bytes allocated first");
    assert_eq!((f.totals.allocations, f.totals.bytes_allocated), (2, 229));
    assert_eq!((f.totals.leaked_bytes, f.totals.leaked_blocks), (129, 1));
    let f = &b.functions[1];
    assert_eq!(f.frame.address, 0x1234);
    assert_eq!(
        (f.totals.allocations, f.totals.bytes_allocated, f.stacks),
        (3, 32, 2)
    );
    assert_eq!((f.totals.leaked_bytes, f.totals.leaked_blocks), (16, 2));
    let callers: Vec<_> = f
        .callers
        .iter()
        .map(|c| {
            (
                c.frame.as_ref().unwrap().address,
                c.totals.allocations,
                c.totals.bytes_allocated,
            )
        })
        .collect();
    assert_eq!(callers, [(0x5678, 2, 16), (0x9abc, 1, 16)]);
    // --top limits the functions and the callers.
    let mut o = asked(false, None, true);
    o.top = Some(1);
    let b = analyze_bytes(&run(), &o)
        .unwrap()
        .questions
        .by_function
        .unwrap();
    assert_eq!((b.functions.len(), b.total), (1, 2));
}

#[test]
fn a_filter_that_matches_nothing_empties_every_list() {
    let r = analyze_bytes(&run(), &asked(true, Some("main"), true)).unwrap();
    let f = r.questions.filter.as_ref().unwrap();
    assert_eq!((f.stacks, f.stacks_total), (0, 3));
    assert_eq!(
        (f.allocations, f.bytes_allocated, f.leaked_heap_bytes),
        (0, 0, 0)
    );
    assert!(r.heap_leaks.is_empty() && r.allocated.is_empty() && r.peak.is_empty());
    assert_eq!(r.heap_leak_stacks, 0);
    assert_eq!(r.questions.histogram.as_deref(), Some(&[][..]));
    assert_eq!(r.questions.by_function.as_ref().unwrap().total, 0);
    // The summary stays the whole run's.
    assert_eq!(r.summary.allocations, 5);
    assert_eq!(r.listed().leaked_heap_bytes, 0);
    assert_eq!(r.summary.leaked_heap_bytes, 145);
}
