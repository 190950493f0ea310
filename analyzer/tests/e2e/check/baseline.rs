//! The baseline: known leaks pass, growth fails, per stack, with tolerances.

use super::*;

/// gate.c's arguments of the baseline run: the cache, 2 items, a 100,000-byte peak.
const BASE_RUN: [&str; 5] = ["cache", "items", "2", "peak", "100000"];

/// [`BASE_RUN`] with one more item: 100 bytes more at leak_item.
const ONE_MORE_ITEM: [&str; 5] = ["cache", "items", "3", "peak", "100000"];

/// [`BASE_RUN`] with twice the peak.
const TWICE_THE_PEAK: [&str; 5] = ["cache", "items", "2", "peak", "200000"];

/// A baseline (the JSON of an earlier check, or its log) lets known leaks pass and
/// fails on growth, per stack, with a tolerance; the peak is compared too. (Every kind
/// of leak counts here: the baseline's own kinds are in `baseline_of_counted_kinds`.)
#[test]
fn baseline_pass_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = fixture("gate");
    let gate = gate.to_str().unwrap();
    let base_log = make_baseline(d, gate);
    for base in ["base.json", base_log.as_str()] {
        known_leaks_pass_growth_fails(d, gate, base);
    }
    tolerances_absorb_growth(d, gate);
    default_kinds_against_the_base_log(d, gate, &base_log);
}

/// `memtrace check --leak-kinds all OPTS -- GATE GATE_ARGS` in `d`.
fn check_all_kinds(d: &Path, opts: &[&str], gate: &str, gate_args: &[&str]) -> Checked {
    let mut args: Vec<&str> = opts.to_vec();
    args.push("--");
    args.push(gate);
    args.extend_from_slice(gate_args);
    check_in(d, &all_kinds(&args))
}

/// The baseline run: known leaks, kept logs. Its JSON is copied to `d/base.json`;
/// returns its log.
fn make_baseline(d: &Path, gate: &str) -> String {
    let c = check_all_kinds(d, &["-o", "base/%e.%p.mtr"], gate, &BASE_RUN);
    c.assert_code(FAILED);
    std::fs::copy(d.join("check.json"), d.join("base.json")).unwrap();
    c.judged()["log"].as_str().unwrap().to_owned()
}

/// Against `base` (a JSON or a log): the same run passes, its leaks all known; one
/// more item fails on the new bytes only.
fn known_leaks_pass_growth_fails(d: &Path, gate: &str, base: &str) {
    let c = check_all_kinds(d, &["--baseline", base], gate, &BASE_RUN);
    c.assert_code(0);
    let p = c.judged();
    assert_eq!(leaks_at(p, "leak_item"), vec![(200, 2, "baseline".into())]);
    assert_eq!(p["baseline_peak_heap_bytes"], 100000);

    // One more item: 100 new bytes at leak_item fail; the cache is still known.
    let c = check_all_kinds(d, &["--baseline", base], gate, &ONE_MORE_ITEM);
    c.assert_code(FAILED);
    let p = c.judged();
    assert_eq!(p["counted_bytes"], 100);
    assert_eq!(p["counted_blocks"], 1);
    let item = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| stack_has(l, &fn_is("leak_item")))
        .unwrap();
    assert_eq!(
        (item["new_bytes"].as_u64(), item["new_count"].as_u64()),
        (Some(100), Some(1))
    );
    assert!(c.stderr().contains("beyond the baseline"), "{}", c.stderr());
}

/// Against `base.json`: the tolerances, of the leaks and of the peak; fewer leaks pass.
fn tolerances_absorb_growth(d: &Path, gate: &str) {
    // A tolerance absorbs the growth.
    let c = check_all_kinds(
        d,
        &["--baseline", "base.json", "--tolerance", "50%"],
        gate,
        &ONE_MORE_ITEM,
    );
    c.assert_code(0);
    // Peak growth beyond the tolerance (default 5%) fails; a wider one passes.
    let c = check_all_kinds(d, &["--baseline", "base.json"], gate, &TWICE_THE_PEAK);
    c.assert_code(FAILED);
    assert_eq!(rules_failed(c.judged()), vec!["peak-tolerance"]);
    let c = check_all_kinds(
        d,
        &["--baseline", "base.json", "--peak-tolerance", "150%"],
        gate,
        &TWICE_THE_PEAK,
    );
    c.assert_code(0);
    // Fewer leaks than the baseline pass.
    let c = check_all_kinds(d, &["--baseline", "base.json"], gate, &["cache"]);
    c.assert_code(0);
}

/// With the default kinds, the base log allows only its definitely lost blocks:
/// leak_item's still reachable one allows nothing.
fn default_kinds_against_the_base_log(d: &Path, gate: &str, base_log: &str) {
    let mut args = vec!["--baseline", base_log, "--", gate];
    args.extend_from_slice(&ONE_MORE_ITEM);
    let c = check_in(d, &args);
    c.assert_code(FAILED);
    assert_eq!(c.judged()["counted_bytes"], 100);
}
