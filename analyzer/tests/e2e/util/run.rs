//! Running programs: with a timeout, with a clean environment, under the preload.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;

/// A command with the memtrace-related environment of the test run removed, so that
/// neither the developer's `LD_PRELOAD` nor `MEMTRACE_*` leak into the programs.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k == "LD_PRELOAD" || k.starts_with("MEMTRACE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` with stdout and stderr piped, and panics if it runs longer than `timeout`.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn(cmd);
    collect_output(child, timeout, &format!("{cmd:?}"))
}

/// Starts `cmd`, panicking with its name if it cannot be started. A program a
/// test has just written (a copy of `memtrace`, of a fixture) may be busy for
/// a moment: a child another test thread forked while the copy was open for
/// writing holds that descriptor until it execs, and exec then fails with
/// ETXTBSY. That is retried for up to 10 s; every other error is not.
pub fn spawn(cmd: &mut Command) -> Child {
    const ETXTBSY: i32 = 26;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot run {cmd:?}: {e}"),
        }
    }
}

/// Waits for `child` (stdout and stderr piped) at most `timeout`, collecting its output;
/// panics, naming it `what`, if it runs longer.
pub fn collect_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_timeout(&mut child, timeout)
        .unwrap_or_else(|| panic!("{what} ran longer than {timeout:?}; killed it"));
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Waits for `child` at most `timeout`; on timeout kills it and returns `None`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fixture run under the preload: its output and the directory holding its log(s).
pub struct Traced {
    pub dir: TempDir,
    pub output: Output,
}

impl Traced {
    /// The logs written into the run's directory, sorted by name.
    pub fn logs(&self) -> Vec<PathBuf> {
        logs_in(self.dir.path())
    }

    /// The one log of the run (panics unless there is exactly one).
    pub fn only_log(&self) -> PathBuf {
        let logs = self.logs();
        assert_eq!(
            logs.len(),
            1,
            "expected exactly one log, found {logs:?}\n{}",
            self.describe()
        );
        logs.into_iter().next().unwrap()
    }

    /// The report of the one log of the run.
    pub fn report(&self) -> Report {
        report(&self.only_log())
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The exit status, stdout and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    /// Asserts the fixture exited normally with `code`.
    pub fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "fixture exit status\n{}",
            self.describe()
        );
        self
    }
}

/// All `*.mtr*` files in `dir` (a suffix `.1`, `.2`, ... follows a taken name)
/// and in the run directories `memtrace.<exe>.<pid>/` that `memtrace run`
/// without `-o` makes there, sorted.
pub fn logs_in(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for p in run_dirs_in(dir).iter().map(PathBuf::as_path).chain([dir]) {
        v.extend(
            std::fs::read_dir(p)
                .expect("read the log directory")
                .map(|e| e.expect("directory entry").path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains(".mtr"))
                }),
        );
    }
    v.sort();
    v
}

/// The run directories (`memtrace.*`, real directories, not links) in `dir`, sorted.
pub fn run_dirs_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("directory entry"))
        .filter(|e| {
            e.file_type().unwrap().is_dir()
                && e.file_name().to_string_lossy().starts_with("memtrace.")
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// A command that runs fixture `name` under the preload, logging into `dir` with the
/// `MEMTRACE_OUTPUT` pattern `pattern` (relative to `dir`).
pub fn traced_command(name: &str, dir: &Path, pattern: &str) -> Command {
    let mut cmd = clean_command(fixture(name));
    cmd.current_dir(dir)
        .env("LD_PRELOAD", preload_lib())
        .env("MEMTRACE_OUTPUT", dir.join(pattern));
    cmd
}

/// Runs fixture `name` with `args` under the preload, logs named `%e.%p.mtr`.
pub fn trace<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Traced {
    trace_pattern(name, args, "%e.%p.mtr")
}

/// Runs fixture `name` with `args` under the preload with the log name pattern `pattern`.
pub fn trace_pattern<S: AsRef<OsStr>>(name: &str, args: &[S], pattern: &str) -> Traced {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let mut cmd = traced_command(name, dir.path(), pattern);
    cmd.args(args);
    let output = output_with_timeout(&mut cmd, TIMEOUT);
    Traced { dir, output }
}

/// A `memtrace` command with a clean environment; `MEMTRACE_PRELOAD` points at the
/// preload under test so `memtrace run` uses it.
pub fn memtrace() -> Command {
    let mut cmd = clean_command(memtrace_bin());
    cmd.env("MEMTRACE_PRELOAD", preload_lib());
    cmd
}

/// `memtrace run ARGS -- FIXTURE wait` in `dir`, on a fixture that then prints
/// "ready PID" and waits for the end of its standard input: takes `memtrace snapshot
/// PID` meanwhile, then lets the fixture end (`memtrace run` must succeed). The
/// snapshot's path.
pub fn snapshot_while_waiting(dir: &Path, args: &[&str], name: &str) -> PathBuf {
    use std::io::{BufRead, BufReader};
    let mut run = memtrace()
        .current_dir(dir)
        .arg("run")
        .args(args)
        .arg("--")
        .arg(fixture(name))
        .arg("wait")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start memtrace run");
    let stdin = run.stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{name} said {line:?}"));
    let out = output_with_timeout(memtrace().arg("snapshot").arg(pid), TIMEOUT);
    assert!(out.status.success(), "{out:?}");
    let snap = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    drop(stdin);
    let status = wait_timeout(&mut run, TIMEOUT).expect("memtrace run ends");
    assert!(status.success(), "{status:?}");
    snap
}
