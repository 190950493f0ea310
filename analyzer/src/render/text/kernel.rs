//! The text report's KERNEL'S VIEW: the peak RSS and the samples over time,
//! the mappings by category, and the gap between what the program held and
//! what the kernel charged.
//!
//! Uses the report's kernel model and units.

use std::io::{self, Write};

use crate::units::{human, plural, thousands};

/// KERNEL'S VIEW: the peak RSS, samples over time, the mappings by
/// category and the gap between the kernel's and the program's figures.
pub(super) fn kernel(out: &mut dyn Write, k: &crate::report::KernelReport) -> io::Result<()> {
    let (t, c) = &k.peak;
    writeln!(out)?;
    writeln!(
        out,
        "KERNEL'S VIEW ({} samples of /proc/PID/smaps_rollup: by memtrace run while the process ran, and by the process itself at exit)",
        thousands(k.samples.len() as u64)
    )?;
    writeln!(
        out,
        "  peak RSS {} at {t:.1} ms (PSS {}, USS {}, swap {}, anonymous {})",
        human(c[0]),
        human(c[1]),
        human(c[2]),
        human(c[3]),
        human(c[4])
    )?;
    if c[5] != 0 {
        writeln!(
            out,
            "  its cgroup then: memory.current {} (anon {}, file {})",
            human(c[5]),
            human(c[6]),
            human(c[7])
        )?;
    }
    kernel_samples(out, k)?;
    kernel_maps(out, k)?;
    kernel_gap(out, k)
}

/// The kernel's samples over time: at most 12, evenly spread, and the peak.
fn kernel_samples(out: &mut dyn Write, k: &crate::report::KernelReport) -> io::Result<()> {
    if k.samples.len() > 1 {
        writeln!(out)?;
        writeln!(
            out,
            "    {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}",
            "time", "rss", "pss", "uss", "swap", "cgroup"
        )?;
        let n = k.samples.len();
        let mut picks: Vec<usize> = (0..12).map(|i| i * (n - 1) / 11).collect();
        if let Some(p) = k.samples.iter().position(|s| *s == k.peak) {
            picks.push(p);
        }
        picks.sort_unstable();
        picks.dedup();
        for i in picks {
            let (t, c) = &k.samples[i];
            let cg = if c[5] == 0 {
                "-".to_owned()
            } else {
                human(c[5])
            };
            let mark = if (*t, *c) == k.peak {
                "  <- peak RSS"
            } else {
                ""
            };
            writeln!(
                out,
                "    {:>8.1}ms {:>11} {:>11} {:>11} {:>11} {:>11}{mark}",
                t,
                human(c[0]),
                human(c[1]),
                human(c[2]),
                human(c[3]),
                cg,
            )?;
        }
    }
    Ok(())
}

/// The mappings by category near the peak RSS and at exit.
fn kernel_maps(out: &mut dyn Write, k: &crate::report::KernelReport) -> io::Result<()> {
    use memtrace_format::kernel::CATEGORIES;
    let tables = [
        ("near peak RSS", &k.maps_at_peak),
        ("at exit", &k.maps_at_end),
    ];
    for (when, table) in tables {
        let Some((t, m)) = table else { continue };
        writeln!(out)?;
        writeln!(out, "  mappings by category {when} ({t:.1} ms):")?;
        writeln!(
            out,
            "    {:<10} {:>11} {:>11} {:>11} {:>11}",
            "category", "size", "rss", "pss", "swap"
        )?;
        for (name, v) in CATEGORIES.iter().zip(m.iter()) {
            if v.iter().all(|&x| x == 0) {
                continue;
            }
            writeln!(
                out,
                "    {:<10} {:>11} {:>11} {:>11} {:>11}",
                name,
                human(v[0]),
                human(v[1]),
                human(v[2]),
                human(v[3])
            )?;
        }
    }
    Ok(())
}

/// The gap at the peak RSS: what the program held against what the kernel
/// charged, and the program's own mappings then.
fn kernel_gap(out: &mut dyn Write, k: &crate::report::KernelReport) -> io::Result<()> {
    if let (Some((t, m)), Some(p)) = (&k.maps_at_peak, &k.heap_at_maps_peak) {
        let held = m[0][1] + m[2][1];
        let asked = p.heap + p.mmap;
        writeln!(out)?;
        writeln!(out, "  the gap at {t:.1} ms:")?;
        writeln!(
            out,
            "    the program had {} of heap blocks live (requested sizes) and {} mapped by its own mmap calls",
            human(p.heap),
            human(p.mmap)
        )?;
        writeln!(
            out,
            "    the kernel charged {} of RSS to [heap] and anonymous mappings: {} {} that",
            human(held),
            human(held.abs_diff(asked)),
            if held >= asked {
                "more than"
            } else {
                "less than"
            }
        )?;
        writeln!(
            out,
            "    (more: allocator overhead, free blocks not returned, fragmentation, thread stacks; less: pages never touched)"
        )?;
        if !k.mmap_at_maps_peak.is_empty() {
            writeln!(
                out,
                "    the program's own mappings then, by the stack that made them:"
            )?;
            for site in &k.mmap_at_maps_peak {
                let names: Vec<&str> = site
                    .stack
                    .iter()
                    .filter_map(|f| f.function.as_deref())
                    .take(4)
                    .collect();
                let at = if names.is_empty() {
                    "(no symbol)".to_owned()
                } else {
                    names.join(" <- ")
                };
                writeln!(
                    out,
                    "      {:>11} in {} at {at}",
                    human(site.bytes),
                    plural(site.count, "region", "regions")
                )?;
            }
        }
    }
    Ok(())
}
