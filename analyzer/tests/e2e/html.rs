//! `memtrace report --html`: the page is opened in headless Chromium (Debian's `chromium`,
//! which `.ci/run` installs) and checked for what a person would see, on fixtures with
//! exact figures: `heap.c` (leaks, peak), `rss.c` under `memtrace run` (the kernel's view)
//! and `cpp.cpp` (template names full of `<`, `>` and `&`).
//!
//! - The tables are read by Python's `html.parser` from the DOM Chromium dumps after the
//!   scripts ran (`--dump-dom`), and from the file itself.
//! - The page's self-test (`#selftest=TERM`, see `render/html.rs`) types TERM into the
//!   flame graphs' search box, runs each graph's own (inferno's) search, and writes what
//!   it matched and highlighted and how many elements each chart drew into
//!   `<pre id="selftest">`.
//! - A screenshot (`--screenshot`) is decoded by a few lines of Python (zlib only): the
//!   page is not blank, the flame graphs' green frames are drawn, and the frame the
//!   search matched is painted in inferno's search color.
//!
//! Without Chromium the tests fail, naming the package (`util::require_tool`): there is
//! no opt-out that would let them pass with the page unopened.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::*;

const MIB: u64 = 1 << 20;

/// The DOM after the page's scripts ran, opened with `#selftest=TERM`.
fn selftest_dom(browser: &Path, page: &Path, term: &str) -> Page {
    let out = chromium(browser, page, &format!("#selftest={term}"), &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let p = Page::parse(&dom);
    assert!(
        p.selftest().lines().any(|l| l == "done"),
        "the self-test did not run:\n{}",
        p.selftest()
    );
    p
}

/// `memtrace report --html DIR/report.html LOG`: asserts the command's contract (nothing
/// on stdout, where the page went on stderr) and returns the page's path.
fn html_report(log: &Path, dir: &Path) -> PathBuf {
    let page = dir.join("report.html");
    let mut cmd = memtrace();
    cmd.arg("report").arg("--html").arg(&page).arg(log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(
        stderr.contains(&format!(
            "memtrace: HTML report written to {}",
            page.display()
        )),
        "{stderr}"
    );
    page
}

/// What Python's `html.parser` reads out of a page: every table with an id (head,
/// rows of cells, the frames of each row's stack, the foot), the self-test's text and
/// the search result.
struct Page {
    v: Value,
}

const PARSER: &str = r#"
import json, sys
from html.parser import HTMLParser

class P(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables = {}
        self.table = self.part = self.row = self.cell = self.li = None
        self.texts = {}
        self.capture = None
        self.iframes = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self.table = {"head": [], "rows": [], "foot": []}
            self.tables[a["id"]] = self.table
        elif tag in ("thead", "tbody", "tfoot") and self.table is not None:
            self.part = tag
        elif tag == "tr" and self.table is not None:
            self.row = {"cells": [], "frames": []}
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""
        elif tag == "li" and self.row is not None:
            self.li = ""
        elif tag in ("pre", "span") and a.get("id") in ("selftest", "search-result"):
            self.capture = [a["id"], ""]
        elif tag == "iframe":
            self.iframes.append({"metric": a.get("data-metric"), "srcdoc": len(a.get("srcdoc") or "")})
    def handle_endtag(self, tag):
        if tag == "li" and self.li is not None:
            self.row["frames"].append(" ".join(self.li.split()))
            self.li = None
        elif tag in ("td", "th") and self.cell is not None:
            self.row["cells"].append(" ".join(self.cell.split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.part == "thead":
                self.table["head"] = self.row["cells"]
            elif self.part == "tfoot":
                self.table["foot"] = self.row["cells"]
            else:
                self.table["rows"].append(self.row)
            self.row = None
        elif tag == "table" and self.table is not None:
            self.table = self.part = None
        elif tag in ("pre", "span") and self.capture is not None:
            self.texts[self.capture[0]] = self.capture[1]
            self.capture = None
    def handle_data(self, d):
        if self.li is not None:
            self.li += d
        elif self.cell is not None:
            self.cell += d
        if self.capture is not None:
            self.capture[1] += d

p = P()
p.feed(sys.stdin.read())
p.close()
print(json.dumps({"tables": p.tables, "texts": p.texts, "iframes": p.iframes}))
"#;

impl Page {
    fn parse(html: &str) -> Page {
        use std::io::Write;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PARSER)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut stdin = child.stdin.take().unwrap();
        let html = html.to_owned();
        let feeder = std::thread::spawn(move || stdin.write_all(html.as_bytes()));
        let out = collect_output(child, TIMEOUT, "python3 html.parser");
        feeder.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Page {
            v: serde_json::from_slice(&out.stdout).unwrap(),
        }
    }

    fn has_table(&self, id: &str) -> bool {
        !self.v["tables"][id].is_null()
    }

    fn table(&self, id: &str) -> Table<'_> {
        let t = &self.v["tables"][id];
        assert!(
            !t.is_null(),
            "no table {id}; tables: {:?}",
            self.v["tables"]
                .as_object()
                .map(|o| o.keys().collect::<Vec<_>>())
        );
        Table { v: t }
    }

    fn text(&self, id: &str) -> &str {
        self.v["texts"][id].as_str().unwrap_or("")
    }

    fn selftest(&self) -> &str {
        self.text("selftest")
    }

    /// The self-test's `flame METRIC ...` line, parsed: frames, rects, what inferno's
    /// "Matched" line said (`none` when hidden), the highlighted frames' tooltips.
    fn flame(&self, metric: &str) -> Option<Flame> {
        let prefix = format!("flame {metric} ");
        let line = self.selftest().lines().find(|l| l.starts_with(&prefix))?;
        let rest = &line[prefix.len()..];
        let num = |key: &str| -> u64 {
            let at = rest.find(&format!("{key} ")).unwrap() + key.len() + 1;
            rest[at..].split(' ').next().unwrap().parse().unwrap()
        };
        let matched = rest
            .split(" matched ")
            .nth(1)
            .map(|m| m.split(" highlighted ").next().unwrap().to_owned())
            .unwrap_or_default();
        let highlighted = match rest.split(" highlighted ").nth(1) {
            Some("none") | None => vec![],
            Some(h) => h.split('|').map(str::to_owned).collect(),
        };
        Some(Flame {
            frames: num("frames"),
            rects: num("rects"),
            matched,
            highlighted,
        })
    }

    /// The self-test's count of `what` (`polylines`, `circles`) in the timeline.
    fn timeline(&self, what: &str) -> u64 {
        let line = self
            .selftest()
            .lines()
            .find(|l| l.starts_with("timeline "))
            .expect("a timeline line");
        let words: Vec<&str> = line.split(' ').collect();
        let i = words.iter().position(|w| *w == what).unwrap();
        words[i + 1].parse().unwrap()
    }

    fn iframes(&self) -> Vec<&str> {
        self.v["iframes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["metric"].as_str().unwrap_or(""))
            .collect()
    }
}

#[derive(Debug)]
struct Flame {
    frames: u64,
    rects: u64,
    matched: String,
    highlighted: Vec<String>,
}

struct Table<'a> {
    v: &'a Value,
}

/// A number as the page prints it (`2,612`).
fn num(s: &str) -> u64 {
    s.replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

impl Table<'_> {
    fn col(&self, name: &str) -> usize {
        self.v["head"]
            .as_array()
            .unwrap()
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}: {}", self.v["head"]))
    }

    fn rows(&self) -> &[Value] {
        self.v["rows"].as_array().unwrap()
    }

    fn cell<'b>(&self, row: &'b Value, col: &str) -> &'b str {
        row["cells"][self.col(col)].as_str().unwrap()
    }

    /// The rows whose Function cell is `name`.
    fn named(&self, name: &str) -> Vec<&Value> {
        self.rows()
            .iter()
            .filter(|r| self.cell(r, "Function") == name)
            .collect()
    }

    /// Bytes and count summed over the rows whose stack has a frame in function `name`
    /// (frames read `name at file:line (module)`).
    fn by_stack(&self, name: &str, count_col: &str) -> (u64, u64) {
        let prefix = format!("{name} ");
        self.rows()
            .iter()
            .filter(|r| {
                r["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f.as_str().unwrap().starts_with(&prefix))
            })
            .fold((0, 0), |(b, c), r| {
                (
                    b + num(self.cell(r, "Bytes")),
                    c + num(self.cell(r, count_col)),
                )
            })
    }

    fn foot(&self) -> Vec<&str> {
        self.v["foot"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect()
    }

    /// The value of a key-value row (`<th>key</th><td>value</td>`).
    fn value(&self, key: &str) -> &str {
        self.rows()
            .iter()
            .find(|r| r["cells"][0] == key)
            .and_then(|r| r["cells"][1].as_str())
            .unwrap_or_else(|| panic!("no row {key}: {}", self.v))
    }
}

/// Pixels of a PNG screenshot: all, not white, flame-graph green (inferno's memory
/// palette), and inferno's search color (magenta), counted by Python with zlib only.
fn screenshot_pixels(png: &Path) -> Value {
    let script = r#"
import json, struct, sys, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
i, idat = 8, b""
while i < len(d):
    n, = struct.unpack(">I", d[i:i + 4]); t = d[i + 4:i + 8]; c = d[i + 8:i + 8 + n]; i += 12 + n
    if t == b"IHDR": w, h, depth, ctype, _, _, lace = struct.unpack(">IIBBBBB", c)
    elif t == b"IDAT": idat += c
assert depth == 8 and lace == 0 and ctype in (2, 6), (depth, ctype, lace)
bpp = 3 if ctype == 2 else 4
raw = zlib.decompress(idat); stride = w * bpp
prev = bytearray(stride); p = 0
counts = {"all": w * h, "nonwhite": 0, "green": 0, "magenta": 0}
for y in range(h):
    f = raw[p]; line = bytearray(raw[p + 1:p + 1 + stride]); p += 1 + stride
    if f == 1:
        for x in range(bpp, stride): line[x] = (line[x] + line[x - bpp]) & 255
    elif f == 2:
        for x in range(stride): line[x] = (line[x] + prev[x]) & 255
    elif f == 3:
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            line[x] = (line[x] + ((a + prev[x]) >> 1)) & 255
    elif f == 4:
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        r, g, b = line[x], line[x + 1], line[x + 2]
        if r < 245 or g < 245 or b < 245: counts["nonwhite"] += 1
        if g > 150 and r < 120 and b < 160: counts["green"] += 1
        if r > 200 and g < 80 and b > 200: counts["magenta"] += 1
    prev = line
print(json.dumps(counts))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(png)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The page fetches nothing: no `src`, no stylesheet link, no import, no remote URL in
/// CSS, no remote link; one inline script of the page's own, the flame graphs in
/// `srcdoc` frames.
fn assert_self_contained(html: &str) {
    for bad in [
        " src=\"",
        "<link",
        "@import",
        "url(http",
        "href=\"http",
        "data:",
    ] {
        assert!(!html.contains(bad), "the page holds {bad:?}");
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
}

/// heap.c: the leak table (leak_malloc's 300 bytes in 3 blocks, every leak of the
/// fixture, the total 2,612), the peak table (big_peak), the summary, the timeline and
/// the flame graphs as drawn by Chromium; inferno's search through the page's search
/// box (leak_malloc: 300 of 2,612 leaked bytes, 11.49%; an unknown name: nothing); a
/// screenshot that shows the graphs and the highlighted frame.
#[test]
fn heap_page_in_browser() {
    let t = trace("heap", &[] as &[&str]);
    t.assert_exit(0);
    let log = t.only_log();
    let page = html_report(&log, t.dir.path());
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);

    // The file as written, then the DOM after the scripts ran.
    check_heap_tables(&Page::parse(&html));
    let browser = browser();

    leak_malloc_search_in_the_dom(&browser, &page);
    unknown_name_matches_nothing(&browser, &page);
    screenshot_shows_the_graphs_and_the_match(&browser, &page, t.dir.path());
}

/// heap.c's tables, in the file as written or in the DOM: the leaks (leak_malloc's
/// row, every leak by stack, the total), the peak, the summary, the flame graphs' frames.
fn check_heap_tables(p: &Page) {
    let leaks = p.table("heap-leaks");
    let malloc = leaks.named("leak_malloc");
    assert_eq!(malloc.len(), 1, "leak_malloc's call sites in one row");
    assert_eq!(leaks.cell(malloc[0], "Bytes"), "300");
    assert_eq!(leaks.cell(malloc[0], "Blocks"), "3");
    assert_eq!(leaks.cell(malloc[0], "Allocated by"), "malloc");
    assert!(
        leaks.cell(malloc[0], "Location").starts_with("heap.c:"),
        "{}",
        malloc[0]
    );
    for (name, bytes, blocks) in [
        ("leak_malloc", 300, 3),
        ("leak_calloc", 120, 1),
        ("leak_realloc_chain", 200, 1),
        ("leak_aligned", 1736, 4),
        ("leak_strdup", 16, 1),
        ("leak_reallocarray", 240, 1),
    ] {
        assert_eq!(leaks.by_stack(name, "Blocks"), (bytes, blocks), "{name}");
    }
    // Named by strdup's caller, not by libc's strdup.
    let strdup = leaks.named("leak_strdup");
    assert_eq!(strdup.len(), 1, "{}", leaks.v);
    assert_eq!(leaks.cell(strdup[0], "Bytes"), "16");
    assert_eq!(leaks.foot(), vec!["", "2,612", "11", "Total"]);
    let peak = p.table("peak-table");
    let first = &peak.rows()[0];
    assert_eq!(peak.cell(first, "Function"), "big_peak");
    assert_eq!(peak.cell(first, "Bytes"), "10,485,760");
    assert_eq!(peak.cell(first, "Blocks"), "1");
    let s = p.table("summary-table");
    assert_eq!(s.value("In use at exit"), "2,612 bytes in 11 blocks");
    assert!(
        s.value("Peak heap")
            .starts_with("10,485,760 bytes (10.0 MiB) at "),
        "{}",
        s.value("Peak heap")
    );
    assert!(
        s.value("Ended").starts_with("exit(), exit status 0"),
        "{}",
        s.value("Ended")
    );
    assert!(
        s.value("Command").ends_with("heap"),
        "{}",
        s.value("Command")
    );
    assert!(
        !p.has_table("maps-at-peak"),
        "no kernel view under LD_PRELOAD"
    );
    let frames = p.iframes();
    assert_eq!(&frames[..3], &["leaked", "peak", "allocated"]);
}

/// The DOM after inferno's search for leak_malloc (300 of 2,612 leaked bytes, 11.49%):
/// the tables, the timeline, every flame graph, the search result.
fn leak_malloc_search_in_the_dom(browser: &Path, page: &Path) {
    let p = selftest_dom(browser, page, "leak_malloc");
    check_heap_tables(&p);
    assert_eq!(p.timeline("polylines"), 2, "heap and mmap lines");
    assert!(p.timeline("circles") >= 1, "the peak is marked");
    let leaked = p.flame("leaked").expect("a leaked flame graph");
    assert!(leaked.frames > 0 && leaked.rects > 0, "{leaked:?}");
    // inferno prints one decimal; the tooltip has two: 300 / 2,612 = 11.49%.
    assert_eq!(leaked.matched, "Matched: 11.5%", "{}", p.selftest());
    assert_eq!(leaked.highlighted, vec!["leak_malloc (300 bytes, 11.49%)"]);
    let peak = p.flame("peak").expect("a peak flame graph");
    assert!(peak.frames > 0, "{peak:?}");
    assert_eq!(peak.matched, "none", "only big_peak at the peak");
    assert!(peak.highlighted.is_empty());
    let allocated = p.flame("allocated").expect("an allocated flame graph");
    assert!(allocated.frames > 0, "{allocated:?}");
    if let Some(temporary) = p.flame("temporary") {
        assert!(temporary.frames > 0, "{temporary:?}");
    }
    assert!(
        p.text("search-result")
            .starts_with("leaked: Matched: 11.5%"),
        "{}",
        p.text("search-result")
    );
}

/// A search for an unknown name: no flame graph matches or highlights anything.
fn unknown_name_matches_nothing(browser: &Path, page: &Path) {
    let p = selftest_dom(browser, page, "no_such_function_anywhere");
    for metric in p.iframes() {
        let f = p.flame(metric).unwrap();
        assert_eq!(f.matched, "none", "{metric}: {f:?}");
        assert!(f.highlighted.is_empty(), "{metric}: {f:?}");
    }
    assert!(
        p.text("search-result").starts_with("leaked: no match"),
        "{}",
        p.text("search-result")
    );
}

/// The screenshot, saved into `dir`: it shows the flame graphs and the highlighted frame.
fn screenshot_shows_the_graphs_and_the_match(browser: &Path, page: &Path, dir: &Path) {
    // What a person sees: the whole page at half scale, after the search for leak_malloc.
    let png = dir.join("page.png");
    chromium(
        browser,
        page,
        "#selftest=leak_malloc",
        &[
            "--window-size=1280,4600",
            "--force-device-scale-factor=0.5",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let px = screenshot_pixels(&png);
    let share = |k: &str| px[k].as_f64().unwrap() / px["all"].as_f64().unwrap();
    assert!(share("nonwhite") > 0.05, "a blank page? {px}");
    assert!(
        px["green"].as_u64().unwrap() > 5000,
        "no flame graph drawn? {px}"
    );
    assert!(
        px["magenta"].as_u64().unwrap() > 50,
        "the matched frame is not highlighted: {px}"
    );
}

/// rss.c under `memtrace run`: the kernel's view (peak RSS in the summary, the mapping
/// tables, the program's own mappings at the peak by stack), the mmap leaks with their
/// total, RSS and PSS in the timeline, and an empty leaked flame graph that says so.
#[test]
fn kernel_page_in_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("--")
        .arg(fixture("rss"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let page = html_report(&logs[0], dir.path());
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);

    let check = |p: &Page| {
        assert!(!p.has_table("heap-leaks"), "rss.c leaks no heap");
        let mmap = p.table("mmap-leaks");
        assert_eq!(mmap.by_stack("map_site", "Regions"), (32 * MIB, 1));
        assert_eq!(mmap.by_stack("arena_site", "Regions"), (8 * MIB, 1));
        assert_eq!(mmap.foot(), vec!["", "41,943,040", "2", "Total"]);
        let peak = p.table("peak-table");
        assert_eq!(peak.cell(&peak.rows()[0], "Function"), "big_block_site");
        assert_eq!(peak.cell(&peak.rows()[0], "Bytes"), "67,108,864");
        let s = p.table("summary-table");
        assert!(
            s.value("Peak RSS (kernel)").contains(" MiB at "),
            "{}",
            s.value("Peak RSS (kernel)")
        );
        for id in ["maps-at-peak", "maps-at-end"] {
            let t = p.table(id);
            assert!(
                t.rows().iter().any(|r| r["cells"][0] == "anonymous"),
                "{id}: {}",
                t.v
            );
        }
        let then = p.table("mmap-at-maps-peak");
        assert_eq!(then.by_stack("arena_site", "Regions"), (8 * MIB, 1));
    };
    check(&Page::parse(&html));
    let browser = browser();
    let p = selftest_dom(&browser, &page, "big_block_site");
    check(&p);
    assert_eq!(p.timeline("polylines"), 4, "heap, mmap, RSS, PSS");
    assert_eq!(p.timeline("circles"), 2, "peak heap and peak RSS");
    let leaked = p.flame("leaked").unwrap();
    assert_eq!(leaked.frames, 0, "no heap leaks: nothing to draw");
    let peak = p.flame("peak").unwrap();
    assert!(peak.frames > 0);
    assert_eq!(peak.matched, "Matched: 100%", "{}", p.selftest());
    assert_eq!(
        peak.highlighted,
        vec!["big_block_site (67,108,864 bytes, 100.00%)"]
    );
}

/// cpp.cpp: template names (`std::vector<int, std::allocator<int> >`, `&`) are escaped:
/// the browser shows them as written, the tables keep their shape, and the search
/// finds them.
#[test]
fn cpp_names_escaped_in_browser() {
    let t = trace("cpp", &[] as &[&str]);
    t.assert_exit(0);
    let page = html_report(&t.only_log(), t.dir.path());
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(!html.contains("std::vector<int"), "unescaped template name");
    let check = |p: &Page| {
        let leaks = p.table("heap-leaks");
        assert_eq!(leaks.by_stack("ns::Widget::make()", "Blocks"), (40, 1));
        assert_eq!(leaks.by_stack("leak_cpp(int)", "Blocks"), (100, 1));
        assert_eq!(leaks.foot(), vec!["", "140", "2", "Total"]);
        let allocated = p.table("allocated-table");
        let frames: Vec<&str> = allocated
            .rows()
            .iter()
            .flat_map(|r| r["frames"].as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        assert!(
            frames
                .iter()
                .any(|f| f.contains("std::vector<int, std::allocator<int> >::")),
            "{frames:#?}"
        );
    };
    check(&Page::parse(&html));
    let browser = browser();
    let p = selftest_dom(&browser, &page, "Widget");
    check(&p);
    let leaked = p.flame("leaked").unwrap();
    // 40 of 140 leaked bytes.
    assert_eq!(leaked.matched, "Matched: 28.6%", "{}", p.selftest());
    assert_eq!(
        leaked.highlighted,
        vec!["ns::Widget::make() (40 bytes, 28.57%)"]
    );
}

/// The command line: `--html -` writes the page to stdout; `--html` with `--format` is
/// refused.
#[test]
fn html_cli() {
    let t = trace("heap", &[] as &[&str]);
    let log = t.only_log();
    let mut cmd = memtrace();
    cmd.args(["report", "--html", "-"]).arg(&log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success());
    let html = String::from_utf8(out.stdout).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("<table class=\"sites\" id=\"heap-leaks\">"));
    let mut cmd = memtrace();
    cmd.args(["report", "--format", "json", "--html", "x.html"])
        .arg(&log)
        .current_dir(t.dir.path());
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!t.dir.path().join("x.html").exists());
}
