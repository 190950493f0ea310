//! valgrind massif's output file (`massif.out.PID`), which `ms_print` and
//! massif-visualizer read.
//!
//! - A header (`desc:`, `cmd:`, `time_unit: B`), then snapshots, each with
//!   `time`, `mem_heap_B`, `mem_heap_extra_B` and `mem_stacks_B` (both 0:
//!   memtrace sees neither the allocator's overhead nor the stacks) and
//!   `heap_tree=empty|detailed|peak`.
//! - **Time** is in bytes, as massif's `--time-unit=B`: bytes allocated plus
//!   bytes freed so far ([`super::history`]).
//! - **Snapshots**: at most [`MAX_SNAPSHOTS`], evenly spaced in time, the
//!   start, the peak and the end always among them. The peak's snapshot is
//!   detailed (`heap_tree=peak`) with the report's peak list; the end's is
//!   detailed with the heap leaks (the blocks live at exit). The others are
//!   totals only.
//! - **Trees**: the root is every byte of the snapshot; its children are the
//!   functions that called the allocator, their children those functions'
//!   callers, and so on out to `main` (the frames outside `main`, libc's
//!   start-up, are left out, as valgrind does), at most [`DEPTH`] frames
//!   deep, as massif's default `--depth`. Each node's bytes are the sum
//!   of its children's: children below [`THRESHOLD`] percent of the
//!   snapshot are lumped into one "below massif's threshold" line, as massif
//!   does, and where some stacks end while others go on, a line says so.
//!   Children are sorted by bytes, largest first. A frame reads
//!   `0xADDRESS: function (file:line)`, or `(in module)` without a line.

use std::fmt::Write;

use super::history::History;
use super::{NO_STACK, below_main};
use crate::analysis::symbolize::Frame;
use crate::report::{Report, Site};

/// Most snapshots written (massif's default `--max-snapshots`).
pub const MAX_SNAPSHOTS: usize = 100;

/// Children below this percentage of the snapshot are lumped (massif's
/// default `--threshold`).
pub const THRESHOLD: f64 = 1.0;

/// Most frames of a stack in a tree (massif's default `--depth`): deeper
/// frames are left out, their bytes staying with the deepest frame kept.
pub const DEPTH: usize = 30;

/// The root's label, as massif names its allocation functions.
pub const ROOT: &str = "(heap allocation functions) malloc/new/new[], --alloc-fns, etc.";

/// A node of a heap tree.
#[derive(Debug, Default)]
struct Node {
    label: String,
    bytes: u64,
    kids: Vec<Node>,
}

impl Node {
    fn add(&mut self, labels: &[String], bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        let Some((first, rest)) = labels.split_first() else {
            return;
        };
        let i = match self.kids.iter().position(|k| &k.label == first) {
            Some(i) => i,
            None => {
                self.kids.push(Node {
                    label: first.clone(),
                    ..Node::default()
                });
                self.kids.len() - 1
            }
        };
        self.kids[i].add(rest, bytes);
    }

    /// Writes the node and its children, `depth` spaces in.
    fn write(&mut self, out: &mut String, depth: usize, total: u64) {
        self.kids
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.label.cmp(&b.label)));
        let small = |n: &Node| (n.bytes as f64) * 100.0 < THRESHOLD * total as f64;
        let (mut small_n, mut small_bytes, mut sum) = (0u64, 0u64, 0u64);
        for k in &self.kids {
            sum = sum.saturating_add(k.bytes);
            if small(k) {
                small_n += 1;
                small_bytes = small_bytes.saturating_add(k.bytes);
            }
        }
        let ended = if self.kids.is_empty() {
            0
        } else {
            self.bytes.saturating_sub(sum)
        };
        let shown = self.kids.len() - small_n as usize;
        let lines = shown + usize::from(small_n > 0) + usize::from(ended > 0);
        let pad = " ".repeat(depth);
        let _ = writeln!(out, "{pad}n{lines}: {} {}", self.bytes, self.label);
        for k in self.kids.iter_mut().filter(|k| !small(k)) {
            k.write(out, depth + 1, total);
        }
        if small_n > 0 {
            let places = if small_n == 1 {
                "in 1 place,".to_owned()
            } else {
                format!("in {small_n} places, all")
            };
            let _ = writeln!(
                out,
                "{pad} n0: {small_bytes} {places} below massif's threshold ({THRESHOLD:.2}%)"
            );
        }
        if ended > 0 {
            let _ = writeln!(out, "{pad} n0: {ended} (stacks that end here)");
        }
    }
}

/// A frame as massif writes it.
pub fn frame_label(f: &Frame) -> String {
    let name = f.function.as_deref().unwrap_or("???");
    let at = format!("0x{:X}: {name}", f.address);
    match (&f.file, f.line, &f.module) {
        (Some(file), Some(line), _) => {
            format!("{at} ({}:{line})", crate::frames::file_name(file))
        }
        (_, _, Some(m)) => format!("{at} (in {m})"),
        _ => at,
    }
}

/// The tree of `sites`, its total the sum of their bytes.
fn tree(sites: &[Site]) -> Node {
    let mut root = Node {
        label: ROOT.to_owned(),
        ..Node::default()
    };
    for s in sites.iter().filter(|s| s.bytes > 0) {
        let labels: Vec<String> = if s.stack.is_empty() {
            vec![NO_STACK.to_owned()]
        } else {
            below_main(&s.stack)
                .iter()
                .take(DEPTH)
                .map(frame_label)
                .collect()
        };
        root.add(&labels, s.bytes);
    }
    root
}

/// What one snapshot shows.
enum Shown<'a> {
    Empty,
    Peak(&'a [Site]),
    Detailed(&'a [Site]),
}

/// The snapshots' clocks and heaps: at most [`MAX_SNAPSHOTS`], evenly
/// spaced, with the start, the peak and the end; the index of the peak's and
/// of the end's.
fn pick(h: &History) -> (Vec<(u64, u64)>, Option<usize>, usize) {
    let end = h.end.clock;
    let step = end.div_ceil(MAX_SNAPSHOTS as u64 - 3).max(1);
    let mut picked: Vec<(u64, u64)> = Vec::new();
    let mut next = 0;
    for p in &h.points {
        if p.clock >= next || p.clock == end {
            picked.push((p.clock, p.heap));
            next = p.clock.saturating_add(step);
        }
    }
    if h.peak.heap > 0 {
        picked.push((h.peak.clock, h.peak.heap));
    }
    picked.push((h.end.clock, h.end.heap));
    picked.sort_unstable();
    picked.dedup_by_key(|p| p.0);
    let peak = (h.peak.heap > 0)
        .then(|| picked.iter().position(|p| p.0 == h.peak.clock))
        .flatten();
    let last = picked.len() - 1;
    (picked, peak, last)
}

/// The massif file of a report and its history.
pub fn document(r: &Report, h: &History) -> String {
    let mut out = String::new();
    let cmd = if r.process.cmdline.is_empty() {
        r.process.exe.clone()
    } else {
        r.process.cmdline.join(" ")
    };
    let _ = writeln!(
        out,
        "desc: {} (time unit B: bytes allocated plus bytes freed)",
        super::exporter()
    );
    let _ = writeln!(out, "cmd: {}", cmd.replace('\n', " "));
    out.push_str("time_unit: B\n");
    let (picked, peak, last) = pick(h);
    let peak_sum: u64 = r.peak.iter().map(|s| s.bytes).sum();
    let leak_sum: u64 = r.heap_leaks.iter().map(|s| s.bytes).sum();
    for (i, &(clock, mut heap)) in picked.iter().enumerate() {
        let shown = if Some(i) == peak && peak_sum > 0 {
            heap = peak_sum;
            Shown::Peak(&r.peak)
        } else if i == last && leak_sum == heap && heap > 0 {
            Shown::Detailed(&r.heap_leaks)
        } else {
            Shown::Empty
        };
        let _ = write!(
            out,
            "#-----------\nsnapshot={i}\n#-----------\ntime={clock}\nmem_heap_B={heap}\n\
             mem_heap_extra_B=0\nmem_stacks_B=0\n"
        );
        match shown {
            Shown::Empty => out.push_str("heap_tree=empty\n"),
            Shown::Peak(sites) | Shown::Detailed(sites) => {
                let kind = if matches!(shown, Shown::Peak(_)) {
                    "peak"
                } else {
                    "detailed"
                };
                let _ = writeln!(out, "heap_tree={kind}");
                tree(sites).write(&mut out, 0, heap);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::history::Point;
    use crate::export::tests::frame;
    use std::sync::Arc;

    fn site(bytes: u64, stack: Vec<Frame>) -> Site {
        Site {
            bytes,
            count: 1,
            func: None,
            kinds: None,
            heuristics: Default::default(),
            stack: Arc::from(stack),
        }
    }

    fn f(name: &str, address: u64) -> Frame {
        frame(Some(name), address, false)
    }

    /// Children sorted, sums exact, small ones lumped, ended stacks said.
    #[test]
    fn writes_trees() {
        let sites = vec![
            site(30, vec![f("cache", 0x30), f("main", 0x90)]),
            site(
                100,
                vec![f("leaf", 0x10), f("table", 0x20), f("main", 0x91)],
            ),
            site(40, vec![f("leaf", 0x10), f("index", 0x21), f("main", 0x92)]),
            site(5, vec![f("leaf", 0x10)]),
            site(1, vec![f("tiny", 0x40), f("main", 0x93)]),
            site(1, vec![]),
        ];
        let mut out = String::new();
        let mut t = tree(&sites);
        assert_eq!(t.bytes, 177);
        t.write(&mut out, 0, 177);
        let want = format!(
            "n3: 177 {ROOT}\n\
             \x20n3: 145 0x10: leaf (x.c:7)\n\
             \x20\x20n1: 100 0x20: table (x.c:7)\n\
             \x20\x20\x20n0: 100 0x91: main (x.c:7)\n\
             \x20\x20n1: 40 0x21: index (x.c:7)\n\
             \x20\x20\x20n0: 40 0x92: main (x.c:7)\n\
             \x20\x20n0: 5 (stacks that end here)\n\
             \x20n1: 30 0x30: cache (x.c:7)\n\
             \x20\x20n0: 30 0x90: main (x.c:7)\n\
             \x20n0: 2 in 2 places, all below massif's threshold (1.00%)\n"
        );
        assert_eq!(out, want);
    }

    /// Never more than massif's snapshots, however the clock runs.
    #[test]
    fn at_most_max_snapshots() {
        for end in [5u64, 150, 194, 1000, 1 << 40] {
            let p = |clock| Point {
                clock,
                heap: clock % 7,
                ns: 0,
            };
            let n = 5000u64;
            let points: Vec<Point> = (0..=n).map(|i| p(i * end / n)).collect();
            let h = History {
                peak: p(end / 3),
                end: p(end),
                points,
                lives: Default::default(),
            };
            let (picked, peak, last) = pick(&h);
            assert!(picked.len() <= MAX_SNAPSHOTS, "{end}: {}", picked.len());
            assert!(picked.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(picked[last].0, end);
            assert_eq!(
                peak.map(|i| picked[i].0),
                (h.peak.heap > 0).then_some(end / 3)
            );
        }
    }

    /// Trees stop at massif's depth; the bytes stay with the deepest frame.
    #[test]
    fn depth_is_capped() {
        let deep: Vec<Frame> = (0..50).map(|i| f("rec", 0x100 + i)).collect();
        let t = tree(&[site(8, deep)]);
        let (mut n, mut depth) = (&t, 0);
        while let Some(k) = n.kids.first() {
            assert_eq!(k.bytes, 8);
            n = k;
            depth += 1;
        }
        assert_eq!(depth, DEPTH);
    }

    /// Frames outside main are left out; unknown functions name their module.
    #[test]
    fn labels_and_main() {
        let s = vec![
            frame(None, 0xab, false),
            f("main", 0x90),
            f("__libc_start_main", 0x99),
        ];
        let labels: Vec<String> = below_main(&s).iter().map(frame_label).collect();
        assert_eq!(
            labels,
            ["0xAB: ??? (in /usr/bin/prog)", "0x90: main (x.c:7)"]
        );
    }

    /// The peak's snapshot is detailed with the peak list; the end's with the leaks.
    #[test]
    fn snapshots() {
        use crate::testlog::*;
        let mut b = LogBuilder::new();
        b.push(0, &LogBuilder::chunk(T0)).ended(T0 + 10);
        let mut r = crate::report::analyze_bytes(&b.bytes, &crate::flame::all()).unwrap();
        r.peak = vec![site(100, vec![f("leaf", 0x10)])];
        r.heap_leaks = vec![site(10, vec![f("leak", 0x11)])];
        let p = |clock, heap| Point { clock, heap, ns: 0 };
        let h = History {
            points: vec![p(0, 0), p(100, 100), p(190, 10)],
            peak: p(100, 100),
            end: p(190, 10),
            lives: Default::default(),
        };
        let d = document(&r, &h);
        assert!(d.contains("time_unit: B\n"));
        assert!(d.contains("snapshot=1\n#-----------\ntime=100\nmem_heap_B=100\n"));
        assert!(d.contains("heap_tree=peak\nn1: 100 "));
        assert!(d.contains("snapshot=2\n#-----------\ntime=190\nmem_heap_B=10\n"));
        assert!(d.contains("heap_tree=detailed\nn1: 10 "));
        assert_eq!(d.matches("snapshot=").count(), 3);
    }
}
