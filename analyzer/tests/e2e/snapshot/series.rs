//! Snapshots in a row (issue 15): the watcher keeps each log's replay state from one
//! snapshot to the next and reads only what the log gained since, so every snapshot
//! of the series must hold exactly the fixture's live heap at its moment, blocks
//! freed in between included, with the kinds of the fixture header
//! (tests/fixtures/server.c).

use super::*;

/// The hidden block's figures in `r`: 128 bytes in 1 block, definitely lost while
/// hidden (tests/fixtures/server.c, "hide").
fn assert_hidden(r: &Report, hidden: bool) {
    let want = if hidden { (128, 1) } else { (0, 0) };
    assert_eq!(
        kind_at(r, "definite", "hide_block"),
        want,
        "{}",
        r.log.display()
    );
}

/// Four snapshots with requests, a hidden block and its free in between: each has
/// the requests so far (and the hidden block while it lives), nothing else; each is
/// written from the retained state, so it records only its live blocks (as many
/// allocations as live blocks, no frees), not the log's history.
#[test]
fn four_snapshots_in_a_row_each_exact() {
    let mut s = Server::start(&[]);
    // (requests before the snapshot, the hidden block then live)
    let steps: [(u64, bool); 4] = [(2, false), (3, false), (0, true), (1, false)];
    let mut taken = Vec::new();
    for (i, &(n, hidden)) in steps.iter().enumerate() {
        s.requests(n);
        if hidden {
            s.say("hide", "hidden");
        } else if i > 0 && steps[i - 1].1 {
            s.say("unhide", "unhidden");
        }
        taken.push((s.snapshot(), s.served, hidden));
    }
    let (_, _dir) = s.quit();
    for (snap, served, hidden) in &taken {
        let r = report(snap);
        assert_eq!(r.process("ended"), "snapshot");
        assert_hidden(&r, *hidden);
        let extra = u64::from(*hidden);
        assert_eq!(
            kind_at(&r, "definite", "handle_request"),
            (256 * served, *served)
        );
        assert_eq!(
            kind_at(&r, "indirect", "make_header"),
            (32 * served, *served)
        );
        assert_eq!(
            kind_at(&r, "reachable", "new_session"),
            (64 * served, *served)
        );
        assert_eq!(r.summary("leaked_heap_bytes"), 352 * served + 128 * extra);
        assert_eq!(r.summary("leaked_heap_blocks"), 3 * served + extra);
        let k = &r.v["summary"]["leak_kinds"];
        assert_eq!(k["definite"]["bytes"], 256 * served + 128 * extra, "{k}");
        assert_eq!(k["definite"]["count"], served + extra, "{k}");
        assert_eq!(k["indirect"]["bytes"], 32 * served, "{k}");
        assert_eq!(k["possible"]["count"], 0, "{k}");
        assert_eq!(k["reachable"]["bytes"], 64 * served, "{k}");
        assert_eq!(
            r.summary("allocations"),
            3 * served + extra,
            "{}",
            r.v["summary"]
        );
        assert_eq!(r.summary("frees"), 0, "{}", r.v["summary"]);
    }
    let served: Vec<u64> = taken.iter().map(|t| t.1).collect();
    assert_eq!(served, [2, 5, 5, 6]);
    // The last against the one with the hidden block: it was freed since.
    let since = report_with(&taken[3].0, &["--since", taken[2].0.to_str().unwrap()]);
    let f = &since.v["live_filter"];
    assert_eq!(f["lost_then_freed"]["bytes"], 128, "{f}");
    assert_requests(&since, 1);
}
