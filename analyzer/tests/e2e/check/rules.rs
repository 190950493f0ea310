//! The rules: total and per-stack limits, mmap leaks, the peak, and the config file.

use super::*;

/// Total limits: at the limit passes, one under fails; a blocks limit alone leaves
/// bytes unlimited. (Every kind of leak counts here.)
#[test]
fn total_limits() {
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-bytes", "300"]), &["items", "3"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-bytes", "299"]), &["items", "3"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-leaked-bytes"]);
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-blocks", "3"]), &["items", "3"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&all_kinds(&["--max-leaked-blocks", "2"]), &["items", "3"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-leaked-blocks"]);
    assert!(
        c.stderr().contains("3 blocks leaked (max 2)"),
        "{}",
        c.stderr()
    );
}

/// Per-stack limits fail on the stack over them and name it. (Every kind of leak
/// counts here.)
#[test]
fn per_stack_limits() {
    let opts = all_kinds(&["--max-stack-leaked-bytes", "100"]);
    let (_d, c) = check_gate(&opts, &["cache", "items", "1"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&opts, &["cache", "items", "2"]);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(rules_failed(p), vec!["max-stack-leaked-bytes"]);
    assert!(
        p["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("leak_item")
    );
    let opts = all_kinds(&["--max-stack-leaked-blocks", "1"]);
    let (_d, c) = check_gate(&opts, &["cache", "items", "2"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-stack-leaked-blocks"]);
    let (_d, c) = check_gate(&opts, &["cache", "items", "1"]);
    c.assert_code(0);
}

/// mmap leaks count only when asked; the peak rule is absolute.
#[test]
fn mmap_leaks_and_peak() {
    let (_d, c) = check_gate(&[], &["mmap"]);
    c.assert_code(0);
    let (_d, c) = check_gate(&["--mmap-leaks"], &["mmap"]);
    c.assert_code(FAILED);
    let p = c.judged();
    let l = &p["leaks"][0];
    assert_eq!(
        (l["kind"].as_str(), l["bytes"].as_u64()),
        (Some("mmap"), Some(8192))
    );
    assert!(stack_has(l, &fn_is("map_site")));
    assert!(
        c.stderr().contains("8,192 bytes in 1 region mapped"),
        "{}",
        c.stderr()
    );
    let (_d, c) = check_gate(&["--mmap-leaks=false"], &["mmap"]);
    c.assert_code(0);

    let (_d, c) = check_gate(&["--max-peak", "2m"], &["peak", "1048576"]);
    c.assert_code(0);
    assert_eq!(c.judged()["peak_heap_bytes"], 1048576);
    let (_d, c) = check_gate(&["--max-peak", "1023k"], &["peak", "1048576"]);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["max-peak"]);
}

/// The config file is found in the current directory or above, its paths are relative
/// to it, and the command line wins over it; a bad one is an error. Its `leak-kinds`
/// makes every kind count here (gate.c's last leak is still reachable).
#[test]
fn config_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("build/deep");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(dir.path().join("ci")).unwrap();
    std::fs::write(
        dir.path().join("ci/known.supp"),
        "# known leaks\nsuppress the-cache fun:leak_cache\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".memtrace.toml"),
        "[check]\nmax-leaked-bytes = \"200\"\nsuppressions = [\"ci/known.supp\"]\nerror-exitcode = 9\n\
         leak-kinds = \"all\"\n",
    )
    .unwrap();
    let gate = fixture("gate");
    let gate = gate.to_str().unwrap();
    let c = check_in(&sub, &["--", gate, "cache", "items", "2"]);
    c.assert_code(0);
    assert!(c.stderr().contains(".memtrace.toml"), "{}", c.stderr());
    assert_eq!(c.json()["rules"]["max_leaked_bytes"], 200);
    assert_eq!(
        c.json()["rules"]["leak_kinds"],
        serde_json::json!(["definite", "indirect", "possible", "reachable"])
    );
    assert_eq!(c.json()["suppressions"][0]["matched_bytes"], 64);
    assert_eq!(c.judged()["counted_bytes"], 200);
    let c = check_in(&sub, &["--", gate, "cache", "items", "3"]);
    c.assert_code(9);
    // The command line's kinds win: of leak_item's 300 bytes, 100 are still reachable.
    let c = check_in(
        &sub,
        &[
            "--leak-kinds",
            "reachable",
            "--",
            gate,
            "cache",
            "items",
            "3",
        ],
    );
    c.assert_code(0);
    assert_eq!(c.judged()["counted_bytes"], 100);
    let c = check_in(
        &sub,
        &[
            "--max-leaked-bytes",
            "300",
            "--",
            gate,
            "cache",
            "items",
            "3",
        ],
    );
    c.assert_code(0);
    let c = check_in(&sub, &["--no-config", "--", gate, "cache", "items", "2"]);
    c.assert_code(FAILED);
    assert_eq!(
        c.judged()["counted_bytes"],
        164,
        "the defaults: definitely lost blocks"
    );

    std::fs::write(
        dir.path().join(".memtrace.toml"),
        "[check]\nmax-leaks = 1\n",
    )
    .unwrap();
    let c = check_in(&sub, &["--", gate]);
    c.assert_code(2);
    assert!(c.stderr().contains("max-leaks"), "{}", c.stderr());
}
