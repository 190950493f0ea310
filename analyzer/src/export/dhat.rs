//! valgrind DHAT's JSON output (`dhat.out.PID`, file version 2, heap mode),
//! which valgrind's `dh_view.html` loads.
//!
//! - One program point (`pps`) per distinct stack that allocated, or held
//!   blocks at the peak or at the end: `tb`/`tbk` the bytes and blocks it
//!   allocated (the report's allocated list), `gb`/`gbk` those live at the
//!   global peak (the report's peak list), `eb`/`ebk` those live at the end
//!   (the heap leaks), `mb`/`mbk` the most live at once and `tl` the blocks'
//!   total lifetime ([`super::history`]). `fs` indexes the frame table,
//!   innermost first, out to `main` as valgrind shows stacks.
//! - `ftbl`: the frames as text (`0xADDRESS: function (file:line)`), `[root]`
//!   first, each once.
//! - Times are in microseconds since the start (`tu` "µs", `Mtu` "s"):
//!   `te` the end, `tg` the peak, `tuth` (the short-lived threshold)
//!   [`SHORT_LIVED_US`]. Block lifetimes are recorded (`bklt`); accesses are
//!   not (`bkacc` false: memtrace does not see reads and writes).
//! - Stacks that the frames' text cannot tell apart (they differ only
//!   outside `main`) are one program point, their figures added (dh_view
//!   refuses repeated locations). `mb` is then the sum of the maxima, and is
//!   never less than `gb` or `eb`.
//!
//! The sums of `tb`, `tbk`, `gb`, `gbk`, `eb` and `ebk` over the program
//! points equal the report's totals (bytes allocated, allocations, the peak,
//! the heap leaked).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::history::{self, History};
use super::massif::frame_label;
use super::{NO_STACK, below_main};
use crate::analysis::symbolize::Frame;
use crate::report::{Report, Site};

/// DHAT's threshold for a short-lived block, in microseconds (`tuth`).
pub const SHORT_LIVED_US: u64 = 1000;

/// One program point's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Pp {
    fs: Vec<usize>,
    tb: u64,
    tbk: u64,
    tl_ns: u64,
    mb: u64,
    mbk: u64,
    gb: u64,
    gbk: u64,
    eb: u64,
    ebk: u64,
}

#[derive(Default)]
struct Table {
    frames: Vec<String>,
    ids: HashMap<String, usize>,
    pps: Vec<Pp>,
    by_fs: HashMap<Vec<usize>, usize>,
    /// The program point of each stack (by [`history::key`]).
    by_key: HashMap<Vec<u64>, usize>,
}

impl Table {
    fn frame(&mut self, label: String) -> usize {
        if let Some(&i) = self.ids.get(&label) {
            return i;
        }
        let i = self.frames.len();
        self.frames.push(label.clone());
        self.ids.insert(label, i);
        i
    }

    /// The program point of `stack`, made on first sight (with its history).
    fn pp(&mut self, stack: &[Frame], h: &History) -> &mut Pp {
        let key = history::key(stack);
        if let Some(&i) = self.by_key.get(&key) {
            return &mut self.pps[i];
        }
        let fs: Vec<usize> = if stack.is_empty() {
            vec![self.frame(NO_STACK.to_owned())]
        } else {
            below_main(stack)
                .iter()
                .map(|f| self.frame(frame_label(f)))
                .collect()
        };
        let i = match self.by_fs.get(&fs) {
            Some(&i) => i,
            None => {
                self.pps.push(Pp {
                    fs: fs.clone(),
                    ..Pp::default()
                });
                self.by_fs.insert(fs, self.pps.len() - 1);
                self.pps.len() - 1
            }
        };
        let life = h.lives.get(&key).copied().unwrap_or_default();
        self.by_key.insert(key, i);
        let p = &mut self.pps[i];
        p.mb = p.mb.saturating_add(life.max_bytes);
        p.mbk = p.mbk.saturating_add(life.max_blocks);
        p.tl_ns = p.tl_ns.saturating_add(life.lifetime_ns);
        p
    }
}

fn us(ms: f64) -> u64 {
    (ms * 1000.0).round().max(0.0) as u64
}

/// The DHAT document of a report and its history.
pub fn document(r: &Report, h: &History) -> Value {
    let mut t = Table::default();
    t.frame("[root]".to_owned());
    let each = |t: &mut Table, sites: &[Site], f: fn(&mut Pp, &Site)| {
        for s in sites {
            f(t.pp(&s.stack, h), s);
        }
    };
    each(&mut t, &r.allocated, |p, s| {
        p.tb += s.bytes;
        p.tbk += s.count;
    });
    each(&mut t, &r.peak, |p, s| {
        p.gb += s.bytes;
        p.gbk += s.count;
    });
    each(&mut t, &r.heap_leaks, |p, s| {
        p.eb += s.bytes;
        p.ebk += s.count;
    });
    let pps: Vec<Value> = t
        .pps
        .iter()
        .map(|p| {
            json!({
                "tb": p.tb, "tbk": p.tbk, "tl": p.tl_ns / 1000,
                "mb": p.mb.max(p.gb).max(p.eb), "mbk": p.mbk.max(p.gbk).max(p.ebk),
                "gb": p.gb, "gbk": p.gbk, "eb": p.eb, "ebk": p.ebk,
                "fs": p.fs,
            })
        })
        .collect();
    let cmd = if r.process.cmdline.is_empty() {
        r.process.exe.clone()
    } else {
        r.process.cmdline.join(" ")
    };
    let te = us(r.process.duration_ms).max(h.end.ns / 1000);
    json!({
        "dhatFileVersion": 2,
        "mode": "heap",
        "verb": "Allocated",
        "bklt": true,
        "bkacc": false,
        "tu": "µs",
        "Mtu": "s",
        "tuth": SHORT_LIVED_US,
        "cmd": cmd,
        "pid": r.process.pid,
        "te": te,
        "tg": us(r.summary.peak_heap_time_ms).min(te),
        "pps": pps,
        "ftbl": t.frames,
        "exporter": super::exporter(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::history::Life;
    use crate::export::tests::frame;
    use std::sync::Arc;

    fn site(bytes: u64, count: u64, stack: &Arc<[Frame]>) -> Site {
        Site {
            bytes,
            count,
            func: None,
            kinds: None,
            heuristics: Default::default(),
            stack: stack.clone(),
        }
    }

    /// Lists joined by stack; frames shared; stacks equal up to main merged.
    #[test]
    fn builds_program_points() {
        use crate::testlog::*;
        let mut b = LogBuilder::new();
        b.push(0, &LogBuilder::chunk(T0)).ended(T0 + 10);
        let mut r = crate::report::analyze_bytes(&b.bytes, &crate::flame::all()).unwrap();
        let f = |n, a| frame(Some(n), a, false);
        let a: Arc<[Frame]> = vec![f("leaf", 0x10), f("main", 0x20), f("start", 0x30)].into();
        let b2: Arc<[Frame]> = vec![f("leaf", 0x10), f("main", 0x20), f("start", 0x31)].into();
        let c: Arc<[Frame]> = vec![f("other", 0x11), f("main", 0x21)].into();
        let none: Arc<[Frame]> = Arc::from(vec![]);
        r.allocated = vec![site(100, 2, &a), site(10, 1, &b2), site(7, 1, &c)];
        r.peak = vec![site(60, 1, &a)];
        r.heap_leaks = vec![site(7, 1, &c), site(3, 1, &none)];
        let mut h = History::default();
        let life = Life {
            max_bytes: 60,
            max_blocks: 1,
            lifetime_ns: 5000,
        };
        h.lives.insert(history::key(&a), life);
        let d = document(&r, &h);
        assert_eq!(
            d["ftbl"],
            json!([
                "[root]",
                "0x10: leaf (x.c:7)",
                "0x20: main (x.c:7)",
                "0x11: other (x.c:7)",
                "0x21: main (x.c:7)",
                NO_STACK
            ])
        );
        let pps = d["pps"].as_array().unwrap();
        assert_eq!(pps.len(), 3);
        assert_eq!(pps[0]["fs"], json!([1, 2]));
        assert_eq!(
            (pps[0]["tb"].as_u64(), pps[0]["tbk"].as_u64()),
            (Some(110), Some(3))
        );
        assert_eq!(
            (pps[0]["gb"].as_u64(), pps[0]["mb"].as_u64()),
            (Some(60), Some(60))
        );
        assert_eq!(pps[0]["tl"], 5);
        assert_eq!(
            (pps[1]["eb"].as_u64(), pps[1]["mb"].as_u64()),
            (Some(7), Some(7))
        );
        assert_eq!(
            (pps[2]["tb"].as_u64(), pps[2]["eb"].as_u64()),
            (Some(0), Some(3))
        );
        assert_eq!(d["dhatFileVersion"], 2);
        assert_eq!(d["bkacc"], false);
    }
}
