//! The unwinder against a reference, in situ: `MEMTRACE_VERIFY_UNWIND=1` makes the preload
//! take every stack a second time with libgcc's `_Unwind_Backtrace` (uncached) and count
//! the stacks where the two differ. Also: a program whose own malloc bypasses the preload
//! is flagged.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    Report, TIMEOUT, clean_command, fixture, frame_function, logs_in, memtrace,
    output_with_timeout, preload_lib, report, trace, traced_command,
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
// (short stacks, repeated: the replay path), deep (200-frame recursions), churn_imm,
// stacks and sqlite3_rand; every stack equals libgcc's.
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
    // Issue 15's workloads: churn with mostly immediate frees on 1 and 4 threads, and
    // 2^12 distinct call paths (stacks.c's bits, 14 frames each).
    for (name, define) in [("churn_imm", "-DTOTAL=100000L"), ("stacks", "-DDEPTH=12")] {
        let out = dir.path().join(name);
        let status = std::process::Command::new("gcc")
            .args(["-O2", "-g", "-pthread", define, "-o"])
            .arg(&out)
            .arg(root.join("scripts/bench").join(format!("{name}.c")))
            .status()
            .expect("run gcc");
        assert!(status.success(), "building {name}");
    }
    for threads in ["1", "4"] {
        let what = format!("churn_imm on {threads} threads");
        let counts = verified(&dir.path().join("churn_imm"), &[OsStr::new(threads)], None);
        assert_all_match(&what, &counts);
    }
    assert_all_match("stacks", &verified(&dir.path().join("stacks"), &[], None));
    // sqlite3_rand, smaller: 5,000 rows indexed on random strings.
    let sql = std::fs::read_to_string(root.join("scripts/bench/sqlite_rand.sql"))
        .unwrap()
        .replace("x < 200000", "x < 5000");
    assert!(
        sql.contains("x < 5000"),
        "sqlite_rand.sql's row count moved"
    );
    let small = dir.path().join("sqlite_rand_small.sql");
    std::fs::write(&small, sql).unwrap();
    let sqlite = crate::util::require_tool("/usr/bin/sqlite3", "sqlite3");
    assert_all_match("sqlite3_rand", &verified(&sqlite, &[], Some(&small)));
}

// Real programs built by Debian (no frame pointers): sqlite3 building an indexed table and
// python3 round-tripping JSON; every stack equals libgcc's.
#[test]
fn real_programs_match_reference_unwinder() {
    let root = crate::util::root();
    for (prog, package, args, stdin) in [
        (
            "/usr/bin/sqlite3",
            "sqlite3",
            vec![],
            Some(root.join("scripts/bench/sqlite_small.sql")),
        ),
        (
            "/usr/bin/python3",
            "python3",
            vec![root.join("scripts/bench/json_small.py").into_os_string()],
            None,
        ),
    ] {
        // Required, never skipped (see util::require_tool).
        crate::util::require_tool(prog, package);
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

/// The function names of a leak's stack, innermost first (`?` where unsymbolized).
fn functions(leak: &Value) -> Vec<&str> {
    leak["stack"]
        .as_array()
        .expect("a leak has a stack")
        .iter()
        .map(|f| frame_function(f).unwrap_or("?"))
        .collect()
}

/// The one heap leak of `bytes` bytes (panics unless there is exactly one, of one block).
fn leak_of(r: &Report, bytes: u64) -> &Value {
    let found: Vec<&Value> = r
        .leaks("heap")
        .into_iter()
        .filter(|l| l["bytes"] == bytes)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one leak of {bytes} bytes\n{}",
        r.describe_leaks()
    );
    assert_eq!(found[0]["count"], 1, "{bytes} bytes in one block");
    found[0]
}

/// `summary.truncated_stacks` and its reasons: (total, no_cfi, bad_frame, limit).
fn truncated(r: &Report) -> (u64, u64, u64, u64) {
    let by = &r.v["summary"]["truncated_stacks_by"];
    let n = |k: &str| {
        by[k]
            .as_u64()
            .unwrap_or_else(|| panic!("truncated_stacks_by.{k}: {by}"))
    };
    (
        r.summary("truncated_stacks"),
        n("no_cfi"),
        n("bad_frame"),
        n("limit"),
    )
}

// An executable and a library whose loadable segments leave gaps (2 MiB alignment, code in
// a segment of its own, as nodejs.org's node): every stack goes from the allocating
// function through main to _start, in the order gapped_segments.c states, is the same as
// libgcc's, and none is cut.
#[test]
fn gapped_segments_unwind_whole() {
    let lib = fixture("libgapped");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = traced_command("gapped_segments", dir.path(), "%e.%p.mtr");
    cmd.arg(&lib).env("MEMTRACE_VERIFY_UNWIND", "1");
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "gapped_segments: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let chains: [(u64, &[&str]); 3] = [
        (1111, &["gapped_leaf", "gapped_mid", "gapped_top", "main"]),
        (
            2222,
            &[
                "gapped_lib_leaf",
                "gapped_lib_mid",
                "gapped_lib_entry",
                "main",
            ],
        ),
        (3333, &["gapped_callback", "gapped_lib_entry", "main"]),
    ];
    for (bytes, chain) in chains {
        let f = functions(leak_of(&r, bytes));
        assert_eq!(
            &f[..chain.len().min(f.len())],
            chain,
            "{bytes} bytes: stack {f:?}"
        );
        // Then libc's start of main, down to the executable's entry point.
        assert_eq!(f.last(), Some(&"_start"), "{bytes} bytes: stack {f:?}");
    }
    assert!(r.summary("unwind_checked") > 0, "libgcc's cross-check ran");
    assert_eq!(
        r.summary("unwind_mismatched"),
        0,
        "of {} checked stacks",
        r.summary("unwind_checked")
    );
    assert_eq!(truncated(&r), (0, 0, 0, 0), "no stack is cut");
}

// cut_stacks.c cuts three stacks on purpose, one for each reason: the report counts them
// by reason, the text report says so, each leak keeps the frames up to the cut, a fork
// child that inherits the blocks counts the same three stacks (carried over from its
// parent's log), and packing a log keeps the figures.
#[test]
fn cut_stacks_are_counted_by_reason() {
    let t = trace("cut_stacks", &["fork"]);
    t.assert_exit(0);
    let logs = t.logs();
    assert_eq!(logs.len(), 2, "parent and child\n{}", t.describe());
    for log in &logs {
        let r = report(log);
        let what = log.display();
        assert_eq!(truncated(&r), (3, 1, 1, 1), "{what}");
        assert_eq!(
            functions(leak_of(&r, 4444)),
            ["nocfi_leaf", "nocfi_call"],
            "{what}"
        );
        assert_eq!(
            functions(leak_of(&r, 5555)),
            ["badcfa_leaf", "badcfa_call"],
            "{what}"
        );
        assert_eq!(
            functions(leak_of(&r, 6666)),
            vec!["deep"; 512],
            "{what}: the 512 innermost frames"
        );
        let text = output_with_timeout(memtrace().arg("report").arg(log), TIMEOUT);
        assert!(text.status.success(), "{what}: memtrace report");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains(
                "3 stacks were cut before the thread's entry (1 at a frame without unwind \
                 information, 1 at a bad frame, 1 at the frame limit)"
            ),
            "{what}:\n{text}"
        );
        // The same figures from the packed log.
        let packed = log.with_extension("packed");
        std::fs::copy(log, &packed).expect("copy the log");
        let out = output_with_timeout(memtrace().arg("pack").arg(&packed), TIMEOUT);
        assert!(
            out.status.success(),
            "{what}: memtrace pack: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = report(&packed);
        assert_eq!(truncated(&p), (3, 1, 1, 1), "{what}, packed");
        assert_eq!(p.v["leaks"], r.v["leaks"], "{what}: leaks once packed");
    }
    let child = logs
        .iter()
        .map(|l| report(l))
        .find(|r| r.summary("inherited_blocks") > 0)
        .expect("the child's report inherits its parent's blocks");
    assert_eq!(child.summary("inherited_blocks"), 3);
}
