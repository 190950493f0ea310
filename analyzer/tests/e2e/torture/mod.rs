//! torture_*.c/cpp: heavy threading, fork/vfork/posix_spawn, signals during malloc, longjmp,
//! exceptions, repeated dlopen/dlclose, abrupt ends and a full tmpfs. Each test checks the
//! program's own result and what the report says; the random workloads use fixed-seed PRNGs
//! and print their own totals, which the report must equal.
//!
//! Tests named `regression_*` reproduce a hang or wrong result found on the way.
//!
//! This module is the harness (runs with a time limit, the programs' `key=value` totals,
//! a quick decoding of a log); its submodules hold the tests and use only it and
//! `crate::util`:
//! - `threads`: 8x1M mixed ops, 10,000 short-lived threads, no pthread key
//! - `fork`: fork while other threads malloc (and dlopen), vfork, posix_spawn
//! - `signals`: signal handlers that allocate, longjmp, exceptions, siglongjmp out of hooks
//! - `dlopen`: dlopen/dlclose of one library 1,000 times
//! - `abrupt`: _exit, abort and SIGKILL while threads allocate
//! - `tmpfs`: a full tmpfs under the log

mod abrupt;
mod dlopen;
mod fork;
mod signals;
mod threads;
mod tmpfs;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util::{
    Report, Traced, fixture, fn_is, logs_in, memtrace, output_with_timeout, report, stack_has,
    traced_command, wait_for_file, wait_timeout,
};

/// Runs fixture `name` under the preload (logs `log.%p.mtr` in a fresh directory) and
/// fails the test if it runs longer than `secs` seconds.
fn run<S: AsRef<OsStr>>(name: &str, args: &[S], secs: u64) -> Traced {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let mut cmd = traced_command(name, dir.path(), "log.%p.mtr");
    cmd.args(args);
    let output = output_with_timeout(&mut cmd, Duration::from_secs(secs));
    Traced { dir, output }
}

/// The `key=value` pairs of a program's output line, values as numbers.
fn kv(out: &str) -> BTreeMap<String, u64> {
    out.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| {
            let n = v
                .parse()
                .unwrap_or_else(|_| panic!("{k}={v} is not a number in {out:?}"));
            (k.to_string(), n)
        })
        .collect()
}

/// `kv(out)[key]`, panicking with the whole output if missing.
fn val(m: &BTreeMap<String, u64>, key: &str) -> u64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("the program printed no {key}=: {m:?}"))
}

fn pid_of(r: &Report) -> u64 {
    r.process("pid").as_u64().expect("process.pid")
}

/// The reports of all logs in `dir`.
fn all_reports(dir: &Path) -> Vec<Report> {
    logs_in(dir).iter().map(|l| report(l)).collect()
}

/// The report of the one log in `dir`.
fn only_report(dir: &Path) -> Report {
    let logs = logs_in(dir);
    assert_eq!(logs.len(), 1, "{logs:?}");
    report(&logs[0])
}

/// What a log says without symbolizing (cheap enough for hundreds of child logs; the
/// test still runs the full `memtrace report` on a sample).
#[derive(Debug)]
struct QuickLog {
    pid: u32,
    forked_from: u32,
    /// `memtrace_format::ExitHow` as a number: 1 running/abnormal, 2 exit, 3 _exit, 4 exec.
    state: u32,
    exit_status: i32,
    cmdline: Vec<String>,
    allocs: u64,
    /// Frees of blocks allocated in this log.
    frees: u64,
    /// Sizes of the blocks still live at the end, sorted.
    live: Vec<u64>,
    modules: u64,
    lost: u64,
}

/// Decodes `log` with memtrace-format: every chunk and record must decode (no torn or
/// damaged record); counts allocations and frees as the analyzer does.
fn quick_decode(log: &Path) -> QuickLog {
    use memtrace_format::{ChunkIter, Header, Record};
    let data = std::fs::read(log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
    let h = Header::parse(&data).unwrap_or_else(|e| panic!("{}: bad header: {e:?}", log.display()));
    let mut q = QuickLog {
        pid: h.pid,
        forked_from: h.forked_from,
        state: h.state,
        exit_status: h.exit_status,
        cmdline: h
            .cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        allocs: 0,
        frees: 0,
        live: Vec::new(),
        modules: 0,
        lost: h.events_lost,
    };
    let mut live = BTreeMap::<u64, u64>::new();
    for c in ChunkIter::new(&data, h.reserved_end) {
        let c = c.unwrap_or_else(|e| panic!("{}: bad chunk: {e:?}", log.display()));
        for r in c.records() {
            match r.unwrap_or_else(|e| panic!("{}: bad record: {e:?}", log.display())) {
                Record::Alloc { addr, size, .. } if addr != 0 => {
                    q.allocs += 1;
                    live.insert(addr, size);
                }
                Record::Free { addr, .. } if live.remove(&addr).is_some() => q.frees += 1,
                Record::Realloc { old, new, size, .. } => {
                    if old != 0 && (new != 0 || size == 0) && live.remove(&old).is_some() {
                        q.frees += 1;
                    }
                    if new != 0 {
                        q.allocs += 1;
                        live.insert(new, size);
                    }
                }
                Record::Module { .. } => q.modules += 1,
                Record::Torn => panic!("{}: torn record", log.display()),
                _ => {}
            }
        }
    }
    q.live = live.into_values().collect();
    q.live.sort_unstable();
    q
}

fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
