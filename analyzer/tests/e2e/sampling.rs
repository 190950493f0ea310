//! sampling.c: sampling mode (`MEMTRACE_SAMPLE`) estimates the full run's figures.

use crate::util::{Site, TIMEOUT, fixture, logs_in, memtrace, output_with_timeout, report_with};

/// (site, allocated bytes, allocated blocks, leaked bytes, leaked blocks), from sampling.c.
const SITES: &[(&str, u64, u64, u64, u64)] = &[
    ("churn_small", 105_599_263, 400_000, 0, 0),
    ("churn_mixed", 500_042_000, 100_000, 0, 0),
    ("grow", 16_800_000, 150_000, 12_800_000, 50_000),
    ("leak_small", 9_600_000, 200_000, 9_600_000, 200_000),
    ("leak_medium", 14_000_000, 20_000, 14_000_000, 20_000),
    ("leak_big", 1_310_720, 20, 1_310_720, 20),
];

/// Runs sampling.c under `memtrace run` (with `--sample=BYTES` if given) and
/// returns the JSON report and the log's size.
fn run(sample: Option<&str>) -> (crate::util::Report, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .env("MEMTRACE_SAMPLE_SEED", "7")
        .args(["run", "--raw"]);
    if let Some(s) = sample {
        cmd.arg(format!("--sample={s}"));
    }
    cmd.arg("--").arg(fixture("sampling"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "memtrace run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let size = std::fs::metadata(&logs[0]).unwrap().len();
    (report_with(&logs[0], &["--top", "100"]), size)
}

fn within(what: &str, est: u64, exact: u64, tol: f64) {
    let err = (est as f64 - exact as f64).abs() / exact as f64;
    assert!(
        err <= tol,
        "{what}: estimate {est} vs {exact} (off by {:.2}%)",
        err * 100.0
    );
}

// The full run reports sampling.c's exact figures; a run sampled every 1024 bytes on
// average estimates every site's allocated and leaked bytes (and blocks) within 5%.
#[test]
fn sampled_estimates_within_five_percent() {
    let (full, full_size) = run(None);
    assert_eq!(full.summary("sample_interval"), 0);
    assert!(!full.summary_bool("estimated"));
    for &(name, ab, ac, lb, lc) in SITES {
        let a = full.allocated_site(name);
        assert_eq!((a.bytes, a.count), (ab, ac), "{name} allocated (full run)");
        let l = full.leak_site("heap", name);
        assert_eq!((l.bytes, l.count), (lb, lc), "{name} leaked (full run)");
    }

    let (sampled, sampled_size) = run(Some("1k"));
    assert_eq!(sampled.summary("sample_interval"), 1024);
    assert!(sampled.summary_bool("estimated"));
    assert_eq!(sampled.summary("sample_overflow"), 0);
    for &(name, ab, ac, lb, lc) in SITES {
        let a: Site = sampled.allocated_site(name);
        within(&format!("{name} allocated bytes"), a.bytes, ab, 0.05);
        within(&format!("{name} allocations"), a.count, ac, 0.05);
        if lb > 0 {
            let l = sampled.leak_site("heap", name);
            within(&format!("{name} leaked bytes"), l.bytes, lb, 0.05);
            within(&format!("{name} leaked blocks"), l.count, lc, 0.05);
        } else {
            assert_eq!(
                sampled.leak_site("heap", name).bytes,
                0,
                "{name} leaks nothing"
            );
        }
    }
    // Blocks of at least the interval are always recorded, exactly.
    let big = sampled.leak_site("heap", "leak_big");
    assert_eq!((big.bytes, big.count), (1_310_720, 20));
    within(
        "total leaked",
        sampled.summary("leaked_heap_bytes"),
        full.summary("leaked_heap_bytes"),
        0.05,
    );
    // Sampling records a part of the events (all of churn_mixed's blocks but 3% are at
    // least the interval, hence recorded).
    assert!(
        sampled_size * 2 < full_size,
        "sampled log {sampled_size} bytes vs full {full_size}"
    );
}

// A sampled run's report says it holds estimates.
#[test]
fn sampled_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "--sample=64k", "--"])
        .arg(fixture("sampling"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success());
    let log = &logs_in(dir.path())[0];
    let mut cmd = memtrace();
    cmd.arg("report").arg(log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sampled run (one sample point per 65,536 bytes allocated on average)"),
        "{text}"
    );
    // A bad size is refused before anything runs.
    let mut cmd = memtrace();
    cmd.args(["run", "--sample=12q", "--", "true"]);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a size"));
}
