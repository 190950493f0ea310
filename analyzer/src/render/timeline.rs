//! `memtrace timeline`: memory over time as one self-contained SVG chart.
//!
//! Lines: live heap bytes (what the program asked malloc for and had not
//! freed), bytes mapped by the program's own mmap calls, and, when `memtrace
//! run` sampled the kernel, RSS and PSS. The peak of the live heap and the
//! peak RSS are marked, each with a tooltip. Each line is a `<polyline>` with
//! the id `heap`, `mmap`, `rss` or `pss`, so that tools and tests can find
//! them; no script, no external resource.

use std::io::{self, Write};

use crate::escape::xml as xml_escape;
use crate::report::Report;
use crate::units::human;

const W: f64 = 1200.0;
const H: f64 = 520.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;

/// One series of the chart.
struct Line<'a> {
    id: &'static str,
    label: &'static str,
    color: &'static str,
    points: &'a [(f64, u64)],
}

/// A "nice" step for about `n` ticks over `0..max`.
fn step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Writes the chart: title, axes, one line per series with its legend, the
/// peaks marked.
pub fn render(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let heap: Vec<(f64, u64)> = r.timeline.iter().map(|p| (p.t_ms, p.heap)).collect();
    let mmap: Vec<(f64, u64)> = r.timeline.iter().map(|p| (p.t_ms, p.mmap)).collect();
    let counter = |i: usize| -> Vec<(f64, u64)> {
        r.kernel
            .iter()
            .flat_map(|k| k.samples.iter().map(move |(t, c)| (*t, c[i])))
            .collect()
    };
    let (rss, pss) = (counter(0), counter(1));
    let lines = [
        Line {
            id: "heap",
            label: "live heap (requested bytes)",
            color: "#d62728",
            points: &heap,
        },
        Line {
            id: "mmap",
            label: "mapped by the program (mmap)",
            color: "#ff7f0e",
            points: &mmap,
        },
        Line {
            id: "rss",
            label: "RSS (kernel)",
            color: "#1f77b4",
            points: &rss,
        },
        Line {
            id: "pss",
            label: "PSS (kernel)",
            color: "#2ca02c",
            points: &pss,
        },
    ];
    let s = &r.summary;
    let t_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(r.process.duration_ms.max(s.peak_heap_time_ms), f64::max)
        .max(1e-3);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(s.peak_heap_bytes, u64::max)
        .max(1) as f64;
    let p = Plot {
        t_max,
        y_max,
        pw: W - LEFT - RIGHT,
        ph: H - TOP - BOTTOM,
    };

    let mut o = String::new();
    o.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    ));
    let exe = r.process.exe.rsplit('/').next().unwrap_or(&r.process.exe);
    let title = format!(
        "{exe} (pid {}): memory over {:.1} ms, peak heap {} at {:.1} ms",
        r.process.pid,
        r.process.duration_ms,
        human(s.peak_heap_bytes),
        s.peak_heap_time_ms
    );
    o.push_str(&format!("<title>{}</title>\n", xml_escape(&title)));
    o.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    o.push_str(&format!(
        "<text id=\"title\" x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        W / 2.0,
        xml_escape(&title)
    ));
    axes(&mut o, &p);
    series(&mut o, &p, &lines);
    peaks(&mut o, &p, r);
    o.push_str("</svg>\n");
    out.write_all(o.as_bytes())
}

/// The plotting area: the largest time and value, its width and height.
struct Plot {
    t_max: f64,
    y_max: f64,
    pw: f64,
    ph: f64,
}

impl Plot {
    /// The x coordinate of time `t` (ms).
    fn x(&self, t: f64) -> f64 {
        LEFT + t / self.t_max * self.pw
    }

    /// The y coordinate of value `v` (bytes).
    fn y(&self, v: f64) -> f64 {
        TOP + self.ph - v / self.y_max * self.ph
    }
}

/// Axes and grid: byte ticks at round numbers of the unit the labels use,
/// time ticks, the time axis's label.
fn axes(o: &mut String, p: &Plot) {
    let unit = [1u64 << 30, 1 << 20, 1 << 10, 1]
        .into_iter()
        .find(|&u| p.y_max >= u as f64)
        .unwrap_or(1) as f64;
    let ys = step(p.y_max / unit, 5.0) * unit;
    let mut v = 0.0;
    while v <= p.y_max * 1.0001 {
        o.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            W - RIGHT,
            p.y(v),
            p.y(v),
            LEFT - 6.0,
            p.y(v) + 4.0,
            human(v as u64)
        ));
        v += ys;
    }
    let xs = step(p.t_max, 8.0);
    let mut t = 0.0;
    while t <= p.t_max * 1.0001 {
        o.push_str(&format!(
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} ms</text>\n",
            p.x(t),
            p.x(t),
            TOP + p.ph,
            p.x(t),
            TOP + p.ph + 18.0,
            format_ms(t)
        ));
        t += xs;
    }
    o.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the process started</text>\n",
        LEFT + p.pw / 2.0,
        H - 24.0
    ));
}

/// The lines, and the legend.
fn series(o: &mut String, p: &Plot, lines: &[Line<'_>]) {
    let mut legend_x = LEFT;
    for l in lines {
        if l.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", p.x(*t), p.y(*v as f64)))
            .collect();
        o.push_str(&format!(
            "<polyline id=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>\n",
            l.id,
            l.color,
            pts.join(" "),
            xml_escape(l.label)
        ));
        o.push_str(&format!(
            "<rect x=\"{legend_x:.1}\" y=\"36\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"46\">{}</text>\n",
            l.color,
            legend_x + 16.0,
            xml_escape(l.label)
        ));
        legend_x += 230.0;
    }
}

/// The peaks of the live heap and of the kernel's RSS, marked.
fn peaks(o: &mut String, p: &Plot, r: &Report) {
    let s = &r.summary;
    if s.peak_heap_bytes > 0 {
        marker(
            o,
            "peak-heap",
            p.x(s.peak_heap_time_ms),
            p.y(s.peak_heap_bytes as f64),
            "#d62728",
            &format!(
                "peak of the live heap: {} at {:.1} ms",
                human(s.peak_heap_bytes),
                s.peak_heap_time_ms
            ),
        );
    }
    if let Some(k) = &r.kernel {
        let (t, c) = &k.peak;
        marker(
            o,
            "peak-rss",
            p.x(*t),
            p.y(c[0] as f64),
            "#1f77b4",
            &format!("peak RSS: {} at {t:.1} ms", human(c[0])),
        );
    }
}

fn marker(o: &mut String, id: &str, cx: f64, cy: f64, color: &str, label: &str) {
    // Labels near the right edge go to the left of their mark.
    let (tx, anchor) = if cx > W - 320.0 {
        (cx - 8.0, "end")
    } else {
        (cx + 8.0, "start")
    };
    o.push_str(&format!(
        "<g id=\"{id}\"><circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" text-anchor=\"{anchor}\">{}</text><title>{}</title></g>\n",
        tx,
        (cy - 8.0).max(TOP + 12.0),
        xml_escape(label),
        xml_escape(label)
    ));
}

fn format_ms(t: f64) -> String {
    if t >= 100.0 || t == 0.0 {
        format!("{t:.0}")
    } else {
        format!("{t:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tick steps are 1, 2 or 5 times a power of ten.
    #[test]
    fn nice_steps() {
        assert_eq!(step(100.0, 5.0), 20.0);
        assert_eq!(step(1000.0, 8.0), 200.0);
        assert_eq!(step(7.0, 5.0), 2.0);
    }
}
