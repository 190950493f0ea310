//! Packed logs (`memtrace pack`, and `memtrace run` by default) report what
//! the raw logs report.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{
    Gate, TIMEOUT, fixture, logs_in, memtrace, output_with_timeout, process_running, report_with,
    wait_until,
};

/// The JSON report without what packing may change: the log's path, and
/// times (rounded down to microseconds in a packed log).
fn comparable(log: &Path) -> Value {
    let mut v = report_with(log, &["--top", "1000"]).v;
    v["process"]["duration_ms"] = Value::Null;
    v["summary"]["peak_heap_time_ms"] = Value::Null;
    v
}

fn run(dir: &Path, raw: bool, name: &str, args: &[&str]) {
    let mut cmd = memtrace();
    cmd.current_dir(dir).arg("run");
    if raw {
        cmd.arg("--raw");
    }
    cmd.arg("--").arg(fixture(name)).args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

// For fixtures with threads, reallocs, C++, mappings, brk, dlopen/dlclose and
// fork, every log of a raw run, once packed, gives the same report.
#[test]
fn packed_logs_report_what_raw_logs_report() {
    let cases: &[(&str, &[&str])] = &[
        ("heap", &[]),
        ("threads", &[]),
        ("torture_threads", &[]),
        ("mmap", &[]),
        ("brk", &[]),
        ("dlopen_main", &[]),
        ("fork", &[]),
        ("cpp_threads", &[]),
    ];
    for (name, args) in cases {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), true, name, args);
        let logs = logs_in(dir.path());
        assert!(!logs.is_empty(), "{name}: no log");
        for log in logs {
            let packed = log.with_extension("packed");
            std::fs::copy(&log, &packed).unwrap();
            let mut cmd = memtrace();
            cmd.arg("pack").arg(&packed);
            let out = output_with_timeout(&mut cmd, TIMEOUT);
            assert!(
                out.status.success(),
                "{name}: memtrace pack: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (a, b) = (comparable(&log), comparable(&packed));
            assert_eq!(
                a["summary"],
                b["summary"],
                "{name}: {} summary differs once packed",
                log.display()
            );
            assert_eq!(a, b, "{name}: {} differs once packed", log.display());
            let (raw_len, packed_len) = (
                std::fs::metadata(&log).unwrap().len(),
                std::fs::metadata(&packed).unwrap().len(),
            );
            assert!(packed_len < raw_len, "{name}: {packed_len} >= {raw_len}");
        }
    }
}

// `memtrace run` packs the logs of processes that have ended; packing twice,
// or packing something that is not a log, is an error that changes nothing.
#[test]
fn run_packs_and_pack_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), false, "heap", &[]);
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1);
    let bytes = std::fs::read(&logs[0]).unwrap();
    assert_eq!(&bytes[..8], b"MEMTRPAK", "memtrace run leaves a packed log");
    let r = report_with(&logs[0], &[]);
    r.assert_leak("heap", "leak_malloc", 300, 3);
    r.assert_heap_leaked(2612, 11);

    let mut cmd = memtrace();
    cmd.arg("pack").arg(&logs[0]);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already packed"));
    assert_eq!(std::fs::read(&logs[0]).unwrap(), bytes, "unchanged");

    let junk = dir.path().join("junk.mtr");
    std::fs::write(&junk, b"not a log at all").unwrap();
    let mut cmd = memtrace();
    cmd.arg("pack").arg(&junk);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&junk).unwrap(), b"not a log at all");
    assert!(!dir.path().join("junk.packing").exists());
}

// A process of the run that is still running when the command ends keeps its raw log (it
// is still writing it); the logs of the processes that ended are packed.
#[test]
fn run_leaves_a_running_childs_log_raw() {
    let dir = tempfile::tempdir().unwrap();
    // The background shell waits on a FIFO (`read`, a builtin: no child process) until
    // the test lets it go, so it surely still runs when `run` ends, however slow the
    // machine: no sleep that has to outlast `run`.
    let mut gate = Gate::new(dir.path(), "gate");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path()).args([
        "run",
        "--",
        "sh",
        "-c",
        // The outer shell ends only once the background shell has surely started
        // (it has run `touch`), so that its log exists when `run` looks. The background
        // shell's output goes elsewhere, so that `run`'s pipes close when `run` ends.
        "sh -c 'touch ready; read x < \"$0\"' \"$0\" </dev/null >/dev/null 2>&1 & \
         while [ ! -e ready ]; do sleep 0.05; done",
    ]);
    cmd.arg(gate.path());
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("still runs"), "{stderr}");
    let logs = logs_in(dir.path());
    let kinds: Vec<(String, bool)> = logs
        .iter()
        .map(|l| {
            let b = std::fs::read(l).unwrap();
            (
                l.file_name().unwrap().to_string_lossy().into_owned(),
                &b[..8] == b"MEMTRPAK",
            )
        })
        .collect();
    assert!(
        kinds.iter().any(|(_, p)| *p),
        "the shell's log is packed: {kinds:?}"
    );
    assert!(
        kinds.iter().any(|(_, p)| !*p),
        "the waiting child's is not: {kinds:?}"
    );
    let raw: Vec<&PathBuf> = logs
        .iter()
        .filter(|l| !std::fs::read(l).unwrap().starts_with(b"MEMTRPAK"))
        .collect();
    // Their writers, by the pid the logs name (the background shell's: the log of its
    // fork, ended by exec, and that of the shell it exec'd, which runs).
    let writers: Vec<u32> = raw
        .iter()
        .map(|l| report_with(l, &[]).process("pid").as_u64().unwrap() as u32)
        .collect();
    // Once the child has ended, its log packs and reports.
    gate.open();
    for &pid in &writers {
        wait_until(
            &format!("the background shell (pid {pid}) to end"),
            TIMEOUT,
            || !process_running(pid),
        );
    }
    for l in raw {
        let mut cmd = memtrace();
        cmd.arg("pack").arg(l);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report_with(l, &[]);
    }
}

// The log of a process that ends while the command still runs is packed then, beside
// itself (a `.packing` file the command sees appear), and put in place at the end: packed,
// reporting threads.c's figures, with no staged copy left behind. The kernel sampler is
// off: a process it samples is packed at the end instead, with its samples. (threads.c's
// log has many chunks: one of a single chunk is left to the end, see the test below.)
#[test]
fn an_ended_childs_log_is_packed_while_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path()).args([
        "run",
        "--kernel-interval",
        "0",
        "-o",
        "logs/%e.%p.mtr",
        "--",
        "sh",
        "-c",
        // Waits (at most a minute: the test fails then) for a staged copy.
        "\"$0\"; for i in $(seq 1200); do \
         for f in logs/*.packing; do [ -e \"$f\" ] && { echo staged; exit 0; }; done; \
         sleep 0.05; done; echo never",
    ]);
    cmd.arg(fixture("threads"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "staged\n", "{stderr}");
    let names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".packing")),
        "no staged copy is left: {names:?}"
    );
    let heap: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.starts_with("threads."))
        .map(|n| logs.join(n))
        .collect();
    assert_eq!(heap.len(), 1, "{names:?}");
    assert!(std::fs::read(&heap[0]).unwrap().starts_with(b"MEMTRPAK"));
    let r = report_with(&heap[0], &[]);
    r.assert_leak("heap", "thread_leak_site", 2880, 40);
    r.assert_heap_leaked(2880, 40);
}

// A packed log whose fixed header lies about its lengths is refused with the field named,
// before anything of the claimed size is allocated: `memtrace report` runs under a 1 GiB
// address-space limit (it reads the honest log fine under the same limit), so a 6 GiB
// allocation would abort it instead of the one-line error (issue 13).
#[test]
fn lying_section_lengths_are_refused_before_allocating() {
    use memtrace_analyzer::log::packed::off;
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), false, "heap", &[]);
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1);
    let honest = std::fs::read(&logs[0]).unwrap();
    assert_eq!(&honest[..8], b"MEMTRPAK");
    let report = |log: &Path| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -v 1048576 && exec \"$0\" report --format json \"$1\"")
            .arg(env!("CARGO_BIN_EXE_memtrace"))
            .arg(log);
        output_with_timeout(&mut cmd, TIMEOUT)
    };
    let out = report(&logs[0]);
    assert!(
        out.status.success(),
        "the honest log under the limit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |o: usize| u64::from_le_bytes(honest[o..o + 8].try_into().unwrap());
    let six_gib: u64 = 6 << 30;
    let cases: [(&str, usize, u64, &str); 4] = [
        (
            "meta_raw",
            off::META_RAW_LEN,
            six_gib,
            "meta section claims 6442450944 bytes, more than its",
        ),
        (
            "events_len",
            off::EVENTS_LEN,
            six_gib,
            "section lengths (events 6442450944,",
        ),
        (
            "meta_len",
            off::META_LEN,
            get(off::META_LEN) + 1,
            "exceed the file's size",
        ),
        (
            "meta_raw_small",
            off::META_RAW_LEN,
            get(off::META_RAW_LEN) - 1,
            "meta section decompresses to more than the",
        ),
    ];
    for (name, at, value, why) in cases {
        let mut b = honest.clone();
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let log = dir.path().join(format!("{name}.mtr"));
        std::fs::write(&log, &b).unwrap();
        let out = report(&log);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(why), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
    }
    // More streams than the file has room for.
    let mut b = honest.clone();
    b[off::STREAMS..off::STREAMS + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    let log = dir.path().join("streams.mtr");
    std::fs::write(&log, &b).unwrap();
    let out = report(&log);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "streams: {err}");
    assert!(err.contains("exceed the file's size"), "streams: {err}");
}

// A tree of 41 logs (bash and 20 fork-exec'd no_heap, each fork child and each image
// with a log): from 32 logs on, the logs of one chunk (8 KiB: the header page and one
// chunk) stay raw, since packed they would take as many blocks; the larger ones are
// packed. The line naming the directory counts the raw ones, and every log reports.
// No kernel sampling: a no_heap that lives long enough on a loaded machine to be
// sampled gets its samples appended, which makes its log larger than one chunk.
#[test]
fn a_large_trees_one_chunk_logs_stay_raw() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .args([
            "run",
            "--kernel-interval",
            "0",
            "-o",
            "logs/%e.%p.mtr",
            "--",
            "bash",
            "-c",
        ])
        .arg("for i in {1..20}; do \"$0\"; done")
        .arg(fixture("no_heap"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let all = logs_in(&logs);
    assert_eq!(all.len(), 41, "{all:?}");
    let (mut raw, mut packed) = (0, 0);
    for l in &all {
        let bytes = std::fs::read(l).unwrap();
        if bytes.starts_with(b"MEMTRPAK") {
            packed += 1;
        } else {
            assert!(bytes.starts_with(b"MEMTRACE"), "{l:?}");
            assert_eq!(bytes.len(), 8 << 10, "only one-chunk logs stay raw: {l:?}");
            raw += 1;
        }
        let r = report_with(l, &[]);
        assert_eq!(r.summary("events_lost"), 0);
    }
    // The 20 fork children and the 20 images of no_heap; the shell's own log is larger.
    assert_eq!((raw, packed), (40, 1));
    assert!(
        stderr.contains(&format!(", {raw} of one chunk kept raw;")),
        "{stderr}"
    );
}

// The command's own log is packed while the command runs (cmd/livepack.rs): with two
// threads handing blocks to each other (one frees what the other allocated, and the
// freed address comes back from its own malloc), the packed log gives the fixture's
// figures, which packing the two threads' events out of order would break. That the
// packer did pack while the command ran is asserted on at least one of five runs: it
// runs at the lowest priority on the core the program leaves idle, and a loaded machine
// may leave it none.
#[test]
fn the_commands_log_is_packed_while_it_runs() {
    let mut packed_ahead = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = memtrace();
        cmd.current_dir(dir.path())
            .args(["run", "-v", "-o", "%e.%p.mtr", "--"])
            .arg(fixture("live_handoff"));
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let logs = logs_in(dir.path());
        assert_eq!(logs.len(), 1, "{stderr}");
        assert!(std::fs::read(&logs[0]).unwrap().starts_with(b"MEMTRPAK"));
        let r = report_with(&logs[0], &[]);
        let s = &r.v["summary"];
        assert_eq!(s["allocations"], 600_001, "{stderr}");
        assert_eq!(s["frees"], 600_001, "{stderr}");
        // 24 bytes each, and the DTV: 272 bytes under valgrind, 16 more under a
        // preload with a TLS segment (threads.c).
        assert_eq!(s["bytes_allocated"], 14_400_288, "{stderr}");
        assert_eq!(s["unknown_frees"], 0, "{stderr}");
        r.assert_heap_leaked(0, 0);
        let line = stderr
            .lines()
            .find(|l| l.contains("packed while the command ran"))
            .unwrap_or_else(|| panic!("no line on packing ahead: {stderr}"));
        let ahead: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        packed_ahead.push(ahead);
        if ahead > 0 {
            return;
        }
    }
    panic!("nothing was packed while the command ran, in 5 runs: {packed_ahead:?}");
}

// live_handoff's totals, from the log `memtrace run` packed while it ran, equal
// valgrind's own (run here, and checked against the figures its header records).
#[test]
fn live_handoff_totals_match_valgrind() {
    use crate::util::{Valgrind, assert_heap_totals, has_tls_segment, oracle, preload_lib};
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), false, "live_handoff", &[]);
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1);
    let r = report_with(&logs[0], &[]);
    let o = oracle(
        "live_handoff",
        &[] as &[&str],
        Valgrind {
            in_use_bytes: 0,
            in_use_blocks: 0,
            allocs: 600_001,
            frees: 600_001,
            // The worker's DTV is one 16-byte slot larger under a preload with TLS
            // (libtlstwin.c explains).
            bytes_allocated: 14_400_272
                + if has_tls_segment(&preload_lib()) {
                    16
                } else {
                    0
                },
        },
    );
    assert_heap_totals(&r, &o);
}
