//! The page's kernel section: the mapping tables at the kernel's peak and
//! the gap between what the kernel and the allocator saw.
//!
//! Uses the report's kernel model and units.

use std::fmt::Write as _;

use super::Fmt;
use super::tables::{Table, sites};
use crate::report::KernelReport;
use crate::units::{human, thousands};

pub(super) fn kernel(h: &mut String, k: &KernelReport) -> Fmt {
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
