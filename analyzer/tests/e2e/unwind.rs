//! The unwinder against a reference, in situ: `MEMTRACE_VERIFY_UNWIND=1` makes the preload
//! take every stack a second time with libgcc's `_Unwind_Backtrace` (uncached) and count
//! the stacks where the two differ. Also: a program whose own malloc bypasses the preload
//! is flagged.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::util::{
    clean_command, fixture, logs_in, output_with_timeout, preload_lib, report, trace,
};

/// Runs `program` with `args` under the preload in verification mode; returns each log's
/// (checked, mismatched) counts.
fn verified(program: &Path, args: &[&OsStr], stdin_file: Option<&Path>) -> Vec<(u64, u64)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = clean_command(program);
    cmd.args(args)
        .current_dir(dir.path())
        .env("LD_PRELOAD", preload_lib())
        .env("MEMTRACE_OUTPUT", dir.path().join("%e.%p.mtr"))
        .env("MEMTRACE_VERIFY_UNWIND", "1");
    if let Some(f) = stdin_file {
        cmd.stdin(std::fs::File::open(f).expect("stdin file"));
    }
    let out = output_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{program:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert!(!logs.is_empty(), "no log for {program:?}");
    logs.iter()
        .map(|l| {
            let r = report(l);
            (r.summary("unwind_checked"), r.summary("unwind_mismatched"))
        })
        .collect()
}

fn assert_all_match(what: &str, counts: &[(u64, u64)]) {
    let checked: u64 = counts.iter().map(|c| c.0).sum();
    let mismatched: u64 = counts.iter().map(|c| c.1).sum();
    assert!(checked > 0, "{what}: no stack was checked");
    assert_eq!(
        mismatched, 0,
        "{what}: {mismatched} of {checked} stacks differ from libgcc's"
    );
}

// Every stack of the C, C++ (exceptions), Rust, threads, signal-handler and dlopen fixtures
// equals libgcc's reference unwind.
#[test]
fn fixtures_match_reference_unwinder() {
    for name in ["heap", "cpp", "rust_leak", "threads", "signals"] {
        assert_all_match(name, &verified(&fixture(name), &[], None));
    }
    // The same library loaded and unloaded 200 times (cached unwind rules die with it).
    let lib = fixture("libtorture_dl");
    assert_all_match(
        "torture_dlopen",
        &verified(
            &fixture("torture_dlopen"),
            &[lib.as_os_str(), OsStr::new("200")],
            None,
        ),
    );
    let (a, b) = (fixture("libdlleak"), fixture("libdlother"));
    assert_all_match(
        "dlopen_main",
        &verified(
            &fixture("dlopen_main"),
            &[a.as_os_str(), b.as_os_str()],
            None,
        ),
    );
}

// The benchmark's own workloads (scripts/bench), smaller: churn on one and on four threads
// (short stacks, repeated: the replay path) and deep (200-frame recursions); every stack
// equals libgcc's.
#[test]
fn bench_workloads_match_reference_unwinder() {
    let root = crate::util::root();
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, define) in [("churn", "-DTOTAL=200000L"), ("deep", "-DCOUNT=3000")] {
        let out = dir.path().join(name);
        let status = std::process::Command::new("gcc")
            .args(["-O2", "-g", "-pthread", define, "-o"])
            .arg(&out)
            .arg(root.join("scripts/bench").join(format!("{name}.c")))
            .status()
            .expect("run gcc");
        assert!(status.success(), "building {name}");
    }
    assert_all_match("churn", &verified(&dir.path().join("churn"), &[], None));
    assert_all_match(
        "churn on 4 threads",
        &verified(&dir.path().join("churn"), &[OsStr::new("4")], None),
    );
    assert_all_match("deep", &verified(&dir.path().join("deep"), &[], None));
}

// Real programs built by Debian (no frame pointers): sqlite3 building an indexed table and
// python3 round-tripping JSON; every stack equals libgcc's.
#[test]
fn real_programs_match_reference_unwinder() {
    let root = crate::util::root();
    for (prog, args, stdin) in [
        (
            "/usr/bin/sqlite3",
            vec![],
            Some(root.join("scripts/bench/sqlite_small.sql")),
        ),
        (
            "/usr/bin/python3",
            vec![root.join("scripts/bench/json_small.py").into_os_string()],
            None,
        ),
    ] {
        if !Path::new(prog).exists() {
            eprintln!("skipped: {prog} is not installed");
            continue;
        }
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        assert_all_match(prog, &verified(Path::new(prog), &args, stdin.as_deref()));
    }
}

// An executable with its own (static) malloc bypasses the preload: the report says so.
#[test]
fn own_static_malloc_is_flagged() {
    let t = trace("static_malloc", &[] as &[&str]);
    t.assert_exit(0);
    let r = t.report();
    assert!(r.summary_bool("malloc_not_interposed"), "flagged");
    assert_eq!(r.summary("allocations"), 0, "its heap calls are not seen");
}
