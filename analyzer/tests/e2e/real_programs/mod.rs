//! Real programs, unchanged: programs nobody here wrote (Debian's python3, perl, tclsh,
//! sqlite3, git, gcc, bash, ripgrep, redis-server) and a few ordinary programs of our own
//! (a C++ program with threads and exceptions, programs linked against jemalloc and
//! tcmalloc) run bare and under `LD_PRELOAD=libmemtrace.so`:
//! - stdout, stderr and the exit status must be byte-identical (redis: the exit status
//!   only, its output holds pids and times);
//! - every log must be readable and complete, and report sensibly;
//! - for the deterministic ones, memtrace's `allocations` and `frees` must equal memcheck's
//!   `total heap usage` line for the same command, exactly (see [`assert_matches_valgrind`]).
//!
//! How the runs are made comparable:
//! - each program runs in a scratch work directory at the same path every time (emptied
//!   and set up again before each run), with a fixed environment (`env_clear`, then PATH,
//!   HOME, LC_ALL=C and the program's own variables), stdin `/dev/null`, stdout and stderr
//!   pipes; the logs go to a directory outside the work directory;
//! - what varies run to run is pinned: PYTHONHASHSEED, PERL_HASH_SEED, git's dates and
//!   names, `rg --sort path`;
//! - for a valgrind comparison, the bare and traced runs also get the variables valgrind's
//!   launcher adds to the environment (measured once by running `env` under valgrind:
//!   on Debian 12 LD_LIBRARY_PATH, GLIBCXX_FORCE_NEW, GLIBCPP_FORCE_NEW, PWD), and the
//!   valgrind run gets MEMTRACE_OUTPUT: interpreters copy their environment into their own
//!   structures (os.environ, %ENV), so four variables more or less are tens of allocations.
//!
//! The programs are Debian's packages, installed by `scripts/deps.sh`; a missing one (or a
//! missing valgrind) fails its test with the package to install (`util::require_tool`).
//!
//! This module is the harness (the scratch directories, the runs, what every log must
//! say, the comparison with valgrind); its submodules hold the tests, by kind of program,
//! and use only it and `crate::util`:
//! - `interpreters`: python3 (pymalloc and plain malloc), perl, tclsh
//! - `tools`: sqlite3, git, gcc, a bash pipeline
//! - `compiled`: ripgrep (Rust), a C++ program, programs linked against jemalloc and tcmalloc
//! - `redis`: redis-server under redis-benchmark

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{
    Report, TIMEOUT, Valgrind, fixture, has_tls_segment, logs_in, parse_heap_summary, preload_lib,
    report, require_tool, require_valgrind, root,
};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// How a program is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bare,
    Traced,
    Valgrind,
}

/// The real-programs fixture `name` (scripts and sources under tests/fixtures/real_programs).
fn script(name: &str) -> PathBuf {
    root()
        .join("tests")
        .join("fixtures")
        .join("real_programs")
        .join(name)
}

fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

/// An argv from anything string-like.
macro_rules! argv {
    ($($a:expr),* $(,)?) => { vec![$(os($a)),*] };
}

/// A scratch directory for one program: `work/` (the program's working directory, at the
/// same path for every run), `logs/` (memtrace's logs of the traced runs) and
/// `valgrind/` (valgrind's own logs).
struct Scratch {
    dir: TempDir,
    env: Vec<(OsString, OsString)>,
    /// Give the bare and traced runs valgrind's extra variables (see the module comment).
    valgrind_shape: bool,
    setup: Box<dyn Fn(&Path)>,
}

/// A finished run: the pid it had and what it printed.
struct Run {
    pid: u32,
    output: Output,
}

impl Scratch {
    fn new(env: &[(&str, &str)], setup: impl Fn(&Path) + 'static) -> Scratch {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        for d in ["logs", "valgrind"] {
            std::fs::create_dir(dir.path().join(d)).expect("create a scratch subdirectory");
        }
        Scratch {
            dir,
            env: env.iter().map(|(k, v)| (os(k), os(v))).collect(),
            valgrind_shape: false,
            setup: Box::new(setup),
        }
    }

    /// Makes the environments of the bare and traced runs the shape of valgrind's
    /// (valgrind is required: the comparison is never skipped).
    fn compared_with_valgrind(mut self) -> Scratch {
        require_valgrind();
        self.valgrind_shape = true;
        self
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn valgrind_dir(&self) -> PathBuf {
        self.dir.path().join("valgrind")
    }

    /// The MEMTRACE_OUTPUT of the traced runs (also set, unused, in the valgrind runs).
    fn log_pattern(&self) -> PathBuf {
        self.logs_dir().join("%e.%p.mtr")
    }

    /// Empties the work directory and sets it up again.
    fn reset(&self) {
        let w = self.work();
        if w.exists() {
            std::fs::remove_dir_all(&w).expect("empty the work directory");
        }
        std::fs::create_dir(&w).expect("create the work directory");
        (self.setup)(&w);
    }

    /// The command running `argv` in `mode`, in the work directory, with the fixed
    /// environment.
    fn command(&self, mode: Mode, argv: &[OsString]) -> Command {
        let work = self.work();
        let mut cmd = match mode {
            Mode::Valgrind => {
                let mut c = Command::new(require_valgrind());
                c.arg("--trace-children=no")
                    .arg("--leak-check=no")
                    .arg(format!(
                        "--log-file={}",
                        self.valgrind_dir().join("vg.%p.log").display()
                    ));
                c.args(argv);
                c
            }
            _ => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.env_clear()
            .current_dir(&work)
            .stdin(Stdio::null())
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &work)
            .env("LC_ALL", "C");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if self.valgrind_shape && mode != Mode::Valgrind {
            for (k, v) in valgrind_added_env() {
                if k == "PWD" {
                    cmd.env(k, &work);
                } else {
                    cmd.env(k, v);
                }
            }
        }
        match mode {
            Mode::Bare => {}
            Mode::Traced => {
                cmd.env("LD_PRELOAD", preload_lib())
                    .env("MEMTRACE_OUTPUT", self.log_pattern());
            }
            Mode::Valgrind => {
                cmd.env("MEMTRACE_OUTPUT", self.log_pattern());
                if has_tls_segment(&preload_lib()) {
                    // One TLS module more, like the traced process (see libtlstwin.c).
                    cmd.env("LD_PRELOAD", fixture("libtlstwin"));
                }
            }
        }
        cmd
    }

    /// Runs `argv` in `mode` (in the work directory as it is) to completion.
    fn run(&self, mode: Mode, argv: &[OsString]) -> Run {
        let mut cmd = self.command(mode, argv);
        let timeout = if mode == Mode::Valgrind {
            Duration::from_secs(600)
        } else {
            TIMEOUT
        };
        let child = spawn_piped(&mut cmd);
        collect(child, timeout, &format!("{cmd:?}"))
    }

    /// Runs `steps` one after another bare, then again (in a fresh work directory) under
    /// the preload, and asserts each step printed the same stdout and stderr and exited
    /// the same way both times. Returns the traced runs.
    fn bare_then_traced(&self, steps: &[Vec<OsString>]) -> Vec<Run> {
        self.reset();
        let bare: Vec<Run> = steps.iter().map(|s| self.run(Mode::Bare, s)).collect();
        self.reset();
        let traced: Vec<Run> = steps.iter().map(|s| self.run(Mode::Traced, s)).collect();
        for ((step, b), t) in steps.iter().zip(&bare).zip(&traced) {
            assert_same_output(step, &b.output, &t.output);
        }
        traced
    }

    /// All logs of the traced runs with their reports, each checked with [`assert_sane`].
    fn reports(&self) -> Vec<Report> {
        let logs = logs_in(&self.logs_dir());
        assert!(!logs.is_empty(), "no log in {}", self.logs_dir().display());
        logs.iter()
            .map(|l| {
                let r = report(l);
                assert_sane(&r);
                r
            })
            .collect()
    }

    /// The one log of the traced runs, that of `pid` (a program that does not fork).
    fn only_report(&self, pid: u32, what: &str) -> Report {
        let mut reports = self.reports();
        assert_eq!(reports.len(), 1, "{what} does not fork: one log expected");
        let r = reports.pop().unwrap();
        assert_eq!(
            r.process("pid").as_u64(),
            Some(u64::from(pid)),
            "{what}: the log is the program's"
        );
        r
    }

    /// Runs `argv` under memcheck in a freshly set-up work directory (`reset`: pass false
    /// for a read-only command on the state the traced run left) and parses its HEAP
    /// SUMMARY. valgrind is required.
    fn valgrind(&self, argv: &[OsString], reset: bool) -> Valgrind {
        if reset {
            self.reset();
        }
        let run = self.run(Mode::Valgrind, argv);
        assert_success(&format!("valgrind {argv:?}"), &run);
        let log = self.valgrind_dir().join(format!("vg.{}.log", run.pid));
        let text = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("valgrind wrote no {}: {e}", log.display()));
        parse_heap_summary(&text)
    }
}

/// The report of the process `pid` that the test started: the log with that pid that is
/// not a fork child's (its first image's, were it to exec).
fn of_pid(reports: &[Report], pid: u32) -> &Report {
    reports
        .iter()
        .find(|r| {
            r.process("pid").as_u64() == Some(u64::from(pid)) && no_fork(r.process("forked_from"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no log of pid {pid} among {:?}",
                reports.iter().map(|r| &r.log).collect::<Vec<_>>()
            )
        })
}

fn no_fork(v: &Value) -> bool {
    v.is_null() || *v == 0
}

fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Waits for `child` (stdout and stderr piped) at most `timeout`, collecting its output.
fn collect(child: Child, timeout: Duration, what: &str) -> Run {
    let pid = child.id();
    let output = crate::util::collect_output(child, timeout, what);
    Run { pid, output }
}

/// Asserts a bare and a traced run printed the same bytes and ended the same way.
fn assert_same_output(step: &[OsString], bare: &Output, traced: &Output) {
    let show = |o: &Output| {
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let same = bare.status == traced.status
        && bare.stdout == traced.stdout
        && bare.stderr == traced.stderr;
    assert!(
        same,
        "{step:?}: the traced run differs from the bare run\n=== bare ===\n{}\n=== traced ===\n{}",
        show(bare),
        show(traced)
    );
}

/// Asserts a run exited with status 0.
fn assert_success(what: &str, run: &Run) {
    assert!(
        run.output.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        run.output.status,
        String::from_utf8_lossy(&run.output.stdout),
        String::from_utf8_lossy(&run.output.stderr)
    );
}

/// What every log of a real program must say: complete (nothing lost, torn or truncated),
/// no re-entered hook, no inconsistency found by the replay, and a normal end.
fn assert_sane(r: &Report) {
    r.assert_complete();
    r.assert_no_nested_hooks();
    assert_eq!(
        r.summary("anomalies"),
        0,
        "anomalies\n{}",
        r.describe_leaks()
    );
    assert!(
        !r.summary_bool("ended_abnormally"),
        "ended abnormally: {}",
        r.v["process"]
    );
    let ended = r.process("ended").as_str().unwrap_or("");
    assert!(
        ["exit", "_exit", "exec"].contains(&ended),
        "process.ended = {ended:?}: {}",
        r.v["process"]
    );
}

/// Asserts the log ended by `exit` with status 0 and has at least `min_allocations`.
fn assert_exited_with_allocations(r: &Report, min_allocations: u64) {
    r.assert_ended("exit");
    assert_eq!(
        r.process("exit_status").as_u64(),
        Some(0),
        "exit_status: {}",
        r.v["process"]
    );
    let a = r.summary("allocations");
    assert!(
        a >= min_allocations,
        "allocations {a} < {min_allocations}\n{}",
        r.describe_leaks()
    );
    assert!(
        r.summary("frees") <= a,
        "more frees than allocations\n{}",
        r.describe_leaks()
    );
}

/// The file name of a log's executable (`process.exe`).
fn exe_name(r: &Report) -> String {
    let exe = r.process("exe").as_str().unwrap_or("");
    Path::new(exe)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// valgrind
// ---------------------------------------------------------------------------------------

/// The variables valgrind's launcher adds to a program's environment (other than
/// LD_PRELOAD), with their values: measured by running `env` under valgrind.
fn valgrind_added_env() -> &'static [(String, String)] {
    static ADDED: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ADDED.get_or_init(|| {
        let out = Command::new(require_valgrind())
            .args(["-q", "/usr/bin/env"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("MEMTRACE_PROBE", "1")
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .expect("run env under valgrind");
        assert!(out.status.success(), "valgrind env: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| !["PATH", "MEMTRACE_PROBE", "LD_PRELOAD"].contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// memtrace against memcheck for the same command.
///
/// Tolerance: `allocations`, `frees` and the blocks still live at exit are compared
/// exactly: both count every successful call of the malloc family the program makes
/// through the `malloc` symbols (memtrace from its constructor on, but every program here
/// makes its first call after it), and the environments have the same variables.
/// Bytes may differ slightly, for two measured reasons: the value of LD_PRELOAD differs
/// (libmemtrace.so vs valgrind's two vgpreload libraries), and interpreters copy it
/// (python's os.environ: a 71-byte vs a 162-byte bytes object); and python allocates 32
/// bytes for an int object holding an address at or above 2^30 but 28 below it, and
/// valgrind puts the heap at low addresses. So the byte counts must agree within 0.1%.
fn assert_matches_valgrind(what: &str, r: &Report, v: &Valgrind) {
    let got = (
        r.summary("allocations"),
        r.summary("frees"),
        r.summary("leaked_heap_blocks"),
    );
    eprintln!(
        "{what}: memtrace allocations {} frees {} bytes {} live blocks {}; \
         valgrind allocs {} frees {} bytes {} live blocks {}",
        got.0,
        got.1,
        r.summary("bytes_allocated"),
        got.2,
        v.allocs,
        v.frees,
        v.bytes_allocated,
        v.in_use_blocks
    );
    assert_eq!(
        got,
        (v.allocs, v.frees, v.in_use_blocks),
        "{what}: (allocations, frees, live blocks at exit): memtrace (left) vs valgrind (right)\n{}",
        r.describe_leaks()
    );
    let (a, b) = (r.summary("bytes_allocated"), v.bytes_allocated);
    assert!(
        a.abs_diff(b) <= b / 1000,
        "{what}: bytes_allocated memtrace {a} vs valgrind {b}: more than 0.1% apart"
    );
}

// The tests, after the harness: they use its `argv!` macro.
mod compiled;
mod interpreters;
mod redis;
mod tools;
