//! Unit tests of the HTML page.

use super::flames::{flame_document, svg_height};
use super::*;
use crate::frames::{Frame, naming_frame};

/// Everything from the log is escaped; the SVG's height is read back.
#[test]
fn escaping_and_height() {
    assert_eq!(
        escape("a<b> & \"c\" 'd'\u{1}"),
        "a&lt;b&gt; &amp; &quot;c&quot; &#39;d&#39; "
    );
    assert_eq!(
        svg_height("<?xml?><svg version=\"1.1\" width=\"1200\" height=\"342\" onload=\"x\">"),
        Some(342)
    );
    assert_eq!(svg_height("<svg>"), None);
    let doc = flame_document("<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg a=\"1\"></svg>");
    assert!(doc.contains("<body><svg a=\"1\"></svg></body>"), "{doc}");
    assert!(
        !doc.contains("<?xml") && !doc.contains("DOCTYPE svg"),
        "{doc}"
    );
}

/// Sites are named by their innermost frame outside the runtimes.
#[test]
fn naming() {
    let frame = |func: &str, file: Option<&str>, module: &str| Frame {
        mangled: None,
        function: Some(func.into()),
        file: file.map(Into::into),
        line: Some(1),
        module: Some(module.into()),
        address: 0x1000,
        offset: None,
        inlined: false,
    };
    let stack = [
        frame(
            "__GI___strdup",
            Some("strdup.c"),
            "/lib/x86_64-linux-gnu/libc.so.6",
        ),
        frame("std::vector<int>::push_back", Some("vector.h"), "/bin/a"),
        frame(
            "void std::vector<int>::_M_realloc_insert<int const&>(int const&)",
            Some("vector.tcc"),
            "/bin/a",
        ),
        frame("helper", None, "/bin/a"),
        frame("leak_strdup", Some("a.c"), "/bin/a"),
    ];
    let name = |s: &[Frame]| naming_frame(s).and_then(|f| f.function.clone());
    assert_eq!(name(&stack).as_deref(), Some("leak_strdup"));
    assert_eq!(name(&stack[..4]).as_deref(), Some("helper"));
    assert_eq!(name(&stack[..3]).as_deref(), Some("__GI___strdup"));
    assert_eq!(name(&[]), None);
}

/// A log's page: leak rows with escaped C++ names, the total, the
/// timeline inline, the flame graphs in escaped srcdoc documents.
#[test]
fn page_from_log() {
    use crate::testlog::*;
    let b = two_stack_run();
    let mut r = crate::report::analyze_bytes(&b.bytes, &flame::all()).unwrap();
    let mut frames: Vec<Frame> = r.heap_leaks[0].stack.to_vec();
    frames[0].function = Some("std::vector<int>::push_back&".into());
    frames[0].file = Some("/src/a<b>.cpp".into());
    frames[0].line = Some(7);
    r.heap_leaks[0].stack = frames.into();
    let mut out = Vec::new();
    render(&r, &mut out).unwrap();
    let h = String::from_utf8(out).unwrap();
    assert!(h.starts_with("<!DOCTYPE html>"));
    assert!(
        h.contains("<code>std::vector&lt;int&gt;::push_back&amp;</code>"),
        "{h}"
    );
    assert!(h.contains("a&lt;b&gt;.cpp:7"), "{h}");
    assert!(!h.contains("vector<int>"), "{h}");
    assert!(h.contains("<th colspan=\"4\">Total</th>"), "{h}");
    assert!(h.contains("<polyline id=\"heap\""), "{h}");
    assert_eq!(h.matches("<iframe class=\"flame-frame\"").count(), 3);
    // In the srcdoc attribute, the SVG's own escapes are escaped once more.
    assert!(h.contains("srcdoc=\"&lt;!DOCTYPE html&gt;"), "{h}");
    assert!(h.contains("vector&amp;lt;int&amp;gt;"), "{h}");
    // Nothing is fetched: no src, no link, no import, no remote url().
    for bad in [" src=\"", "<link", "@import", "url(http", "href=\"http"] {
        assert!(!h.contains(bad), "{bad} in {h}");
    }
    assert!(h.trim_end().ends_with("</html>"));
}

/// A classified run's page: the summary's kinds, and a Kinds column in
/// the heap leak table with each row's bytes and blocks by kind.
#[test]
fn page_with_leak_kinds() {
    use crate::testlog::*;
    let mut c = LogBuilder::chunk(T0);
    c.stack(1, &[0x1234, 0x5678])
        .stack(2, &[0x9abc, 0x5678])
        .alloc(T0 + 3, 0x10, 40, 1)
        .alloc(T0 + 4, 0x60, 8, 1)
        .alloc(T0 + 5, 0x20, 60, 2);
    let mut b = LogBuilder::new();
    b.push(0, &c).ended(T0 + 10);
    let mut r = crate::report::analyze_bytes(&b.bytes, &flame::all()).unwrap();
    let plain = {
        let mut out = Vec::new();
        render(&r, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(!plain.contains(">Kinds</th>"), "no column without kinds");
    assert!(plain.contains("not classified by reachability"), "{plain}");
    for s in &mut r.heap_leaks {
        s.kinds = Some(if s.bytes == 48 {
            [(40, 1), (0, 0), (0, 0), (8, 1)]
        } else {
            [(0, 0), (60, 1), (0, 0), (0, 0)]
        });
    }
    r.summary.leak_kinds = Some([(40, 1), (60, 1), (0, 0), (8, 1)]);
    let mut out = Vec::new();
    render(&r, &mut out).unwrap();
    let h = String::from_utf8(out).unwrap();
    assert!(
        h.contains(
            "<tr><th>Leak kinds</th><td>40 bytes in 1 block definitely lost<br>\
             60 bytes in 1 block indirectly lost<br>8 bytes in 1 block still reachable</td></tr>"
        ),
        "{h}"
    );
    assert!(h.contains(">Kinds</th><th>Allocated by</th>"), "{h}");
    assert!(
        h.contains(
            "<td class=\"kinds\">40 bytes in 1 block definitely lost<br>8 bytes in 1 block still reachable</td>"
        ),
        "{h}"
    );
    assert!(
        h.contains("<td class=\"kinds\">60 bytes in 1 block indirectly lost</td>"),
        "{h}"
    );
    assert!(h.contains("<th colspan=\"5\">Total</th>"), "{h}");
    // What a leak heuristic saved of the still reachable blocks.
    for s in &mut r.heap_leaks {
        if s.bytes == 48 {
            s.heuristics = [(0, 0), (0, 0), (8, 1), (0, 0)];
        }
    }
    r.summary.leak_heuristics = [(0, 0), (0, 0), (8, 1), (0, 0)];
    let mut out = Vec::new();
    render(&r, &mut out).unwrap();
    let h = String::from_utf8(out).unwrap();
    let via =
        "8 bytes in 1 block still reachable, of which via heuristic newarray: 8 bytes in 1 block";
    assert!(
        h.contains(&format!(
            "<tr><th>Leak kinds</th><td>40 bytes in 1 block definitely lost<br>\
             60 bytes in 1 block indirectly lost<br>{via}</td></tr>"
        )),
        "{h}"
    );
    assert!(
        h.contains(&format!(
            "<td class=\"kinds\">40 bytes in 1 block definitely lost<br>{via}</td>"
        )),
        "{h}"
    );
}
