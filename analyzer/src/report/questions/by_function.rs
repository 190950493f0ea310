//! `--by function`: the heap figures merged by the allocating function —
//! the innermost frame of the program's own code of each stack
//! ([`crate::frames::naming_frame`]: `strdup`'s caller, not `strdup`) — and,
//! beneath each, by the frame right outside it (its caller). Two frames are
//! the same function when they have the same function name (or, unknown,
//! address), source file and module; lines do not count. Stacks that
//! were not recorded are left out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::analysis::replay::StackTotal;
use crate::frames::{Frame, function_or_address, naming_frame};

use super::super::stacks::Stacks;
use super::{ByFunction, CallerSite, FunctionSite, Totals};

/// What makes two frames the same function.
type Key = (String, Option<String>, Option<Arc<str>>);

fn key(f: &Frame) -> Key {
    (function_or_address(f), f.file.clone(), f.module.clone())
}

/// The replay's lists (after any filter) that the figures come from.
pub(in crate::report) struct Sources<'a> {
    pub allocated: &'a [StackTotal],
    pub temporary: &'a [StackTotal],
    pub heap_leaks: &'a [StackTotal],
    pub peak: &'a [StackTotal],
}

#[derive(Default)]
struct Acc {
    frame: Option<(u64, Frame)>,
    totals: Totals,
    stacks: u64,
    callers: HashMap<Option<Key>, (Option<Frame>, Totals, u64)>,
}

/// Adds a list's entry to `t` (`which`: the field it feeds).
fn add(t: &mut Totals, which: usize, e: &StackTotal) {
    let sat = |a: &mut u64, b: u64| *a = a.saturating_add(b);
    match which {
        0 => {
            sat(&mut t.allocations, e.count);
            sat(&mut t.bytes_allocated, e.bytes);
        }
        1 => sat(&mut t.temporary_allocations, e.count),
        2 => {
            sat(&mut t.leaked_bytes, e.bytes);
            sat(&mut t.leaked_blocks, e.count);
        }
        _ => {
            sat(&mut t.peak_bytes, e.bytes);
            sat(&mut t.peak_blocks, e.count);
        }
    }
}

/// The functions, most bytes allocated first (then most allocations, then
/// most leaked, then by name), at most `top`, each with at most `top`
/// callers.
pub(in crate::report) fn by_function(
    stacks: &mut Stacks<'_>,
    src: Sources<'_>,
    top: usize,
) -> ByFunction {
    let mut by: HashMap<Key, Acc> = HashMap::new();
    let mut seen: HashSet<u32> = HashSet::new();
    let lists = [src.allocated, src.temporary, src.heap_leaks, src.peak];
    for (which, list) in lists.iter().enumerate() {
        for e in list.iter() {
            let frames = stacks.resolve(e.stack);
            let Some(nf) = naming_frame(&frames) else {
                continue;
            };
            let at = frames.iter().position(|f| std::ptr::eq(f, nf)).unwrap_or(0);
            let caller = frames.get(at + 1);
            let first = seen.insert(e.stack);
            let a = by.entry(key(nf)).or_default();
            // The frame shown: the one of the stack that allocated the most.
            if which == 0 && a.frame.as_ref().is_none_or(|(b, _)| e.bytes > *b) {
                a.frame = Some((e.bytes, nf.clone()));
            } else if a.frame.is_none() {
                a.frame = Some((0, nf.clone()));
            }
            add(&mut a.totals, which, e);
            let c = a
                .callers
                .entry(caller.map(key))
                .or_insert_with(|| (caller.cloned(), Totals::default(), 0));
            add(&mut c.1, which, e);
            if first {
                c.2 += 1;
                a.stacks += 1;
            }
        }
    }
    let mut functions: Vec<FunctionSite> = by
        .into_values()
        .map(|a| {
            let mut callers: Vec<CallerSite> = a
                .callers
                .into_values()
                .map(|(frame, totals, stacks)| CallerSite {
                    frame,
                    totals,
                    stacks,
                })
                .collect();
            callers.sort_by(|x, y| {
                order(&x.totals, &y.totals).then_with(|| name(&x.frame).cmp(&name(&y.frame)))
            });
            let callers_total = callers.len() as u64;
            callers.truncate(top);
            FunctionSite {
                frame: a.frame.map(|f| f.1).unwrap_or_else(unknown),
                totals: a.totals,
                stacks: a.stacks,
                callers,
                callers_total,
            }
        })
        .collect();
    functions.sort_by(|x, y| {
        order(&x.totals, &y.totals)
            .then_with(|| function_or_address(&x.frame).cmp(&function_or_address(&y.frame)))
    });
    let total = functions.len() as u64;
    functions.truncate(top);
    ByFunction { functions, total }
}

/// Most bytes allocated first, then most allocations, then most leaked,
/// then most at the peak.
fn order(x: &Totals, y: &Totals) -> std::cmp::Ordering {
    (
        y.bytes_allocated,
        y.allocations,
        y.leaked_bytes,
        y.peak_bytes,
    )
        .cmp(&(
            x.bytes_allocated,
            x.allocations,
            x.leaked_bytes,
            x.peak_bytes,
        ))
}

fn name(f: &Option<Frame>) -> String {
    f.as_ref().map(function_or_address).unwrap_or_default()
}

fn unknown() -> Frame {
    Frame {
        function: None,
        mangled: None,
        file: None,
        line: None,
        module: None,
        address: 0,
        offset: None,
        inlined: false,
    }
}
