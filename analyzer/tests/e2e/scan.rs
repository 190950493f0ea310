//! The reachability scan at exit, started by the process itself: the same kinds under
//! `memtrace run`, `memtrace check` and plain `LD_PRELOAD` (tests/fixtures/scan_exit.c:
//! 32 bytes definitely lost, 64 still reachable, as memcheck says); a program that
//! closed every descriptor is still classified; every way the scan can fail is named in
//! the report, and neither the scanner nor anything else of memtrace's outlives the
//! program (a scanner that hangs is killed at `MEMTRACE_SCAN_TIMEOUT`, one whose
//! process is killed dies with it). The snapshot signal never kills a program: under
//! `memtrace check` as under `memtrace run` it is handled, and with plain `LD_PRELOAD`
//! no handler is installed (the program behaves as bare).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// The fixture's kinds: (definite, reachable) as (bytes, blocks).
const EXPECTED: ((u64, u64), (u64, u64)) = ((32, 1), (64, 1));

fn kinds(summary: &Value) -> ((u64, u64), (u64, u64)) {
    let k = &summary["leak_kinds"];
    assert!(k.is_object(), "not classified: {summary}");
    let t = |n: &str| {
        (
            k[n]["bytes"].as_u64().unwrap(),
            k[n]["count"].as_u64().unwrap(),
        )
    };
    for n in ["indirect", "possible"] {
        assert_eq!(t(n), (0, 0), "{summary}");
    }
    (t("definite"), t("reachable"))
}

fn only_log(dir: &Path) -> std::path::PathBuf {
    let logs = logs_in(dir);
    assert_eq!(logs.len(), 1, "{logs:?}");
    logs[0].clone()
}

#[test]
fn same_kinds_under_run_check_and_plain_preload() {
    // Plain LD_PRELOAD, plain exit, and a program that closed every descriptor.
    for args in [&[][..], &["closefds"][..]] {
        let t = trace("scan_exit", args);
        assert!(t.output.status.success(), "{:?}", t.output);
        let r = report(&only_log(t.dir.path()));
        assert_eq!(kinds(&r.v["summary"]), EXPECTED, "LD_PRELOAD {args:?}");
        assert_eq!(r.v["summary"]["scan"]["status"], "ok");
    }
    // memtrace run.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["run", "--"])
        .arg(fixture("scan_exit"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success(), "{out:?}");
    let r = report(&only_log(dir.path()));
    assert_eq!(kinds(&r.v["summary"]), EXPECTED, "memtrace run");
    // memtrace check, all kinds counted: the verdict's own kinds.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("check.json");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args(["check", "--leak-kinds", "all", "--json"])
        .arg(&json)
        .arg("--")
        .arg(fixture("scan_exit"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(23), "{out:?}");
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let p = &v["processes"][0];
    let lk = &p["leak_kinds"];
    let t = |n: &str| {
        (
            lk[n]["bytes"].as_u64().unwrap(),
            lk[n]["count"].as_u64().unwrap(),
        )
    };
    assert_eq!((t("definite"), t("reachable")), EXPECTED, "{p}");
    assert_eq!((t("indirect"), t("possible")), ((0, 0), (0, 0)), "{p}");
}

/// A copy of the preload alone in a directory: no `memtrace` beside it.
fn lonely_preload(dir: &Path) -> std::path::PathBuf {
    let lib = dir.join("libmemtrace.so");
    std::fs::copy(preload_lib(), &lib).unwrap();
    lib
}

/// A scanner that is a shell script (`body`): `/bin/sh`, which the process starts as
/// `/bin/sh __scan ...` in its working directory `dir`, where `__scan` holds `body`.
/// (Not a freshly written executable: another test thread forking while it is open for
/// writing would make its exec fail with ETXTBSY.)
fn fake_scanner(dir: &Path, body: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("__scan"), format!("{body}\n")).unwrap();
    std::path::PathBuf::from("/bin/sh")
}

/// Runs scan_exit under `lib` with `env`, in `dir`; returns its exit status and report.
fn run_with(dir: &Path, lib: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, Report) {
    let mut cmd = clean_command(fixture("scan_exit"));
    cmd.current_dir(dir)
        .env("LD_PRELOAD", lib)
        .env("MEMTRACE_OUTPUT", dir.join("%e.%p.mtr"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    (out.status, report(&only_log(dir)))
}

/// The reason the report gives for missing kinds.
fn reason(r: &Report) -> String {
    assert!(r.v["summary"]["leak_kinds"].is_null(), "{}", r.v["summary"]);
    assert_eq!(r.v["summary"]["scan"]["status"], "failed");
    r.v["summary"]["scan"]["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_failure_is_named() {
    let logs = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    // No scanner beside the library.
    let lib = lonely_preload(tools.path());
    let (st, r) = run_with(logs.path(), &lib, &[]);
    assert!(st.success());
    assert!(reason(&r).starts_with("no scanner"), "{}", reason(&r));
    let mut text = memtrace();
    text.arg("report").arg(only_log(logs.path()));
    let out = output_with_timeout(&mut text, TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not classified by reachability: no scanner"),
        "{text}"
    );
    // A scanner that ends without a result.
    let logs = tempfile::tempdir().unwrap();
    let crash = fake_scanner(logs.path(), "exit 3");
    let (st, r) = run_with(
        logs.path(),
        &preload_lib(),
        &[("MEMTRACE_SCANNER", crash.to_str().unwrap())],
    );
    assert!(st.success(), "{st:?}");
    assert_eq!(reason(&r), "the scanner ended without a result");
    // A scanner that hangs is killed when the time is up, and the program exits.
    let logs = tempfile::tempdir().unwrap();
    let hang = fake_scanner(logs.path(), "exec sleep 7771");
    let t0 = Instant::now();
    let (st, r) = run_with(
        logs.path(),
        &preload_lib(),
        &[
            ("MEMTRACE_SCANNER", hang.to_str().unwrap()),
            ("MEMTRACE_SCAN_TIMEOUT", "1"),
        ],
    );
    assert!(st.success());
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(
        reason(&r),
        "the scanner ran out of time (MEMTRACE_SCAN_TIMEOUT)"
    );
    assert!(
        processes_with_arg("7771").is_empty(),
        "the scanner outlived the scan"
    );
    // Scanning off.
    let logs = tempfile::tempdir().unwrap();
    let (st, r) = run_with(logs.path(), &preload_lib(), &[("MEMTRACE_REACH", "0")]);
    assert!(st.success());
    assert!(r.v["summary"]["leak_kinds"].is_null());
    assert!(r.v["summary"]["scan"].is_null());
}

/// The pids of processes with `arg` among their arguments.
fn processes_with_arg(arg: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

#[test]
fn the_scanner_dies_with_its_process() {
    let logs = tempfile::tempdir().unwrap();
    let hang = fake_scanner(logs.path(), "exec sleep 7772");
    let mut cmd = clean_command(fixture("scan_exit"));
    cmd.current_dir(logs.path())
        .env("LD_PRELOAD", preload_lib())
        .env("MEMTRACE_OUTPUT", logs.path().join("%e.%p.mtr"))
        .env("MEMTRACE_SCANNER", &hang);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while processes_with_arg("7772").is_empty() {
        assert!(Instant::now() < deadline, "the scanner never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with_arg("7772").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the scanner outlived its process"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_snapshot_signal_never_kills() {
    // Bare, the program's own SIGRTMAX-2 kills it; with plain LD_PRELOAD no handler is
    // installed, so it does the same, even when asked for one without memtrace run.
    let bare = output_with_timeout(clean_command(fixture("scan_exit")).arg("raise"), TIMEOUT);
    let sig = {
        use std::os::unix::process::ExitStatusExt;
        bare.status.signal()
    };
    assert!(sig.is_some(), "{bare:?}");
    for env in [&[][..], &[("MEMTRACE_SNAPSHOT_SIGNAL", "62")][..]] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = traced_command("scan_exit", dir.path(), "%e.%p.mtr");
        cmd.arg("raise").envs(env.iter().copied());
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), sig, "{env:?}: {out:?}");
    }
    // Under memtrace run and memtrace check the handler takes a snapshot and the
    // program goes on to its exit.
    for sub in ["run", "check"] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = memtrace();
        cmd.current_dir(dir.path()).arg(sub);
        if sub == "check" {
            cmd.arg("-o").arg(dir.path().join("%e.%p.mtr"));
        }
        cmd.arg("--").arg(fixture("scan_exit")).arg("raise");
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        let want = if sub == "run" { 0 } else { 23 };
        assert_eq!(out.status.code(), Some(want), "{sub}: {out:?}");
    }
}

/// A process that never allocated starts no scanner at its exit (there is
/// nothing to classify), yet its report is classified: every kind 0 bytes
/// in 0 blocks. One that allocated does start it. The scanner here is a
/// script that leaves a mark and fails.
#[test]
fn no_scanner_for_a_process_without_heap() {
    for (name, scanned) in [("no_heap", false), ("scan_exit", true)] {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("scanner-ran");
        let scanner = fake_scanner(dir.path(), &format!("touch {}; exit 3", marker.display()));
        let mut cmd = clean_command(fixture(name));
        cmd.current_dir(dir.path())
            .env("LD_PRELOAD", preload_lib())
            .env("MEMTRACE_SCANNER", &scanner)
            .env("MEMTRACE_OUTPUT", dir.path().join("%e.%p.mtr"));
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(out.status.success(), "{name}: {:?}", out.status);
        assert_eq!(marker.exists(), scanned, "{name}: was the scanner started?");
        let r = report(&only_log(dir.path()));
        if scanned {
            assert_eq!(reason(&r), "the scanner ended without a result");
        } else {
            assert_eq!(r.summary("allocations"), 0);
            assert_eq!(
                kinds(&r.v["summary"]),
                ((0, 0), (0, 0)),
                "{}",
                r.v["summary"]
            );
            assert_eq!(r.v["summary"]["scan"]["status"], "ok", "{}", r.v["summary"]);
        }
    }
}

/// The exit scan of the command's own log takes the blocks live at the end from
/// `memtrace run`'s live packer and reads only the rest of the log
/// (tests/fixtures/scan_after_churn.c: 800,000 events of churn, a pause for the packer,
/// then reach.c's blocks): the kinds are memcheck's, run here, and the totals valgrind's,
/// in every run. The packer runs at nice 19 and may get no time on a loaded machine, so
/// the answer must come in at least one of up to five runs.
#[test]
fn the_exit_scan_takes_the_live_blocks_from_the_live_packer() {
    use crate::heuristics::{from_json, memcheck_leaks};
    let memcheck = memcheck_leaks("scan_after_churn", "all");
    // The header's figures (valgrind 3.19): definitely, indirectly, possibly lost, still
    // reachable.
    assert_eq!(
        memcheck.kinds,
        [(80, 2), (96, 3), (128, 1), (80, 2)],
        "memcheck today vs the header"
    );
    let totals = oracle(
        "scan_after_churn",
        &[] as &[&str],
        Valgrind {
            in_use_bytes: 384,
            in_use_blocks: 8,
            allocs: 400_009,
            frees: 400_001,
            bytes_allocated: 51_323_972,
        },
    );
    let mut said = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = memtrace();
        cmd.current_dir(dir.path())
            .args(["run", "-v", "--"])
            .arg(fixture("scan_after_churn"));
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let r = report(&only_log(dir.path()));
        let s = &r.v["summary"];
        assert_eq!(s["scan"]["status"], "ok", "{stderr}");
        let got = from_json(&s["leak_kinds"]).kinds;
        assert_eq!(got, memcheck.kinds, "memtrace vs memcheck\n{stderr}");
        assert_heap_totals(&r, &totals);
        let answered = stderr.contains("the exit scan took the live blocks from the live packer");
        if answered {
            return;
        }
        said.push(stderr);
    }
    panic!("the live packer answered no exit scan in 5 runs:\n{said:#?}");
}
