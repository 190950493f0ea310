//! Leak hunting in a program that never exits: tests/fixtures/server.c, driven by this
//! test as its client, leaks on every request. `memtrace snapshot PID` (and the bare
//! signal) make it write snapshots of its live heap, classified by reachability, while
//! it keeps serving; `memtrace report --since` and `--older-than` narrow them. The
//! figures are the fixture header's: per request 256 bytes definitely lost
//! (handle_request), 32 indirectly lost (make_header), 64 still reachable (new_session).
//!
//! This module is the harness (the [`Server`] under `memtrace run`, the fixture's
//! figures, the processes that map a log); its submodules hold the tests and use only it
//! and `crate::util`:
//! - `taking`: snapshots by `memtrace snapshot` and by the bare signal, `--since`,
//!   `--older-than`
//! - `roots`: what the scan counts as roots, and what it misses
//! - `refusals`: the processes `memtrace snapshot` refuses, and why
//! - `copies`: the frozen copies' lifetimes
//! - `series`: several snapshots in a row, each exact (the incremental state)

mod copies;
mod refusals;
mod roots;
mod series;
mod taking;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// The server under `memtrace run`, and its pipes.
struct Server {
    run: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    served: u64,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, &[])
    }

    fn start_with(extra: &[&str], args: &[&str]) -> Server {
        Server::launch(extra, args, false)
    }

    /// `via_shell`: the server is a child of `sh`, not of `memtrace run`.
    fn launch(extra: &[&str], args: &[&str], via_shell: bool) -> Server {
        Server::launch_env(extra, args, via_shell, &[])
    }

    /// As [`Server::launch`], with `env` added to `memtrace run`'s environment.
    fn launch_env(extra: &[&str], args: &[&str], via_shell: bool, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = memtrace();
        cmd.envs(env.iter().copied());
        cmd.arg("run")
            .args(extra)
            .arg("-o")
            .arg(dir.path().join("%p.mtr"))
            .arg("--");
        if via_shell {
            let line = format!("{} {}; true", fixture("server").display(), args.join(" "));
            cmd.args(["sh", "-c", &line]);
        } else {
            cmd.arg(fixture("server")).args(args);
        }
        let run = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start memtrace run");
        Server::attach(run, dir)
    }

    /// The server started by `run` (`memtrace run`, or the server itself), once it
    /// says it is ready.
    fn attach(mut run: Child, dir: tempfile::TempDir) -> Server {
        let stdin = run.stdin.take().unwrap();
        let mut stdout = BufReader::new(run.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server said {line:?}"));
        Server {
            run,
            stdin,
            stdout,
            pid,
            served: 0,
            dir,
        }
    }

    /// Sends `n` requests and waits for their answers: the server is serving.
    fn requests(&mut self, n: u64) {
        for _ in 0..n {
            writeln!(self.stdin, "req").unwrap();
            self.stdin.flush().unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            self.served += 1;
            assert_eq!(line.trim(), format!("done {}", self.served));
        }
    }

    /// Sends a command and checks the answer.
    fn say(&mut self, cmd: &str, answer: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), answer);
    }

    /// `memtrace snapshot PID`: the snapshot's path.
    fn snapshot(&self) -> PathBuf {
        let out = output_with_timeout(
            memtrace().arg("snapshot").arg(self.pid.to_string()),
            TIMEOUT,
        );
        assert!(
            out.status.success(),
            "memtrace snapshot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(path.exists(), "{} does not exist", path.display());
        path
    }

    /// The server's parent pid.
    fn ppid(&self) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let (_, rest) = stat.rsplit_once(')').unwrap();
        rest.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Frozen copies still held by this server's `memtrace run`.
    fn frozen_copies(&self) -> usize {
        let run = self.run.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let p = e.path();
                std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "memtrace-snap")
                    && std::fs::read_to_string(p.join("stat")).is_ok_and(|s| {
                        s.rsplit_once(')')
                            .and_then(|(_, r)| r.split_whitespace().nth(1).map(|p| p == run))
                            .unwrap_or(false)
                    })
            })
            .count()
    }

    /// Sends `quit` and waits for `memtrace run`; its stderr.
    fn quit(mut self) -> (String, tempfile::TempDir) {
        writeln!(self.stdin, "quit").unwrap();
        drop(self.stdin);
        let mut stderr = self.run.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        let status = wait_timeout(&mut self.run, TIMEOUT).expect("memtrace run -- server ended");
        let err = reader.join().unwrap();
        assert!(status.success(), "memtrace run failed: {err}");
        (err, self.dir)
    }
}

/// (bytes, blocks) of one kind over the heap leaks whose stack has `function`.
fn kind_at(r: &Report, kind: &str, function: &str) -> (u64, u64) {
    let f = fn_is(function);
    r.leaks("heap")
        .into_iter()
        .filter(|l| stack_has(l, &f))
        .fold((0, 0), |(b, n), l| {
            let k = &l["reachability"][kind];
            (
                b + k["bytes"].as_u64().unwrap_or(0),
                n + k["count"].as_u64().unwrap_or(0),
            )
        })
}

/// The fixture's figures after `n` requests, kind by kind, in `r`'s leaks.
fn assert_requests(r: &Report, n: u64) {
    assert_eq!(kind_at(r, "definite", "handle_request"), (256 * n, n));
    assert_eq!(kind_at(r, "indirect", "make_header"), (32 * n, n));
    assert_eq!(kind_at(r, "reachable", "new_session"), (64 * n, n));
    assert_eq!(
        r.summary("leaked_heap_bytes"),
        352 * n,
        "{}",
        r.v["summary"]
    );
    assert_eq!(r.summary("leaked_heap_blocks"), 3 * n);
    let k = &r.v["summary"]["leak_kinds"];
    assert_eq!(k["definite"]["bytes"], 256 * n);
    assert_eq!(k["indirect"]["bytes"], 32 * n);
    assert_eq!(k["possible"]["count"], 0);
    assert_eq!(k["reachable"]["bytes"], 64 * n);
}

/// The processes other than the server `server` that map its log (`dir/PID.mtr`): a
/// frozen copy, whatever its name, or whether it named itself yet. (pid, ppid, comm.)
fn mapping_the_log(dir: &Path, server: u32) -> Vec<(u32, u32, String)> {
    let log = dir
        .join(format!("{server}.mtr"))
        .to_string_lossy()
        .into_owned();
    let except = server;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            continue; // a zombie holds no memory
        }
        let maps_it = std::fs::read_to_string(e.path().join("maps"))
            .is_ok_and(|m| m.lines().any(|l| l.ends_with(log.as_str())));
        if maps_it {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.push((pid, f[1].parse().unwrap(), comm.trim().to_owned()));
        }
    }
    out
}

/// Waits up to `bound` for `cond`; whether it held.
fn within(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` still runs (not ended, not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Ends a server whose `memtrace run` is gone: `quit`, then waits for it.
fn quit_orphan(mut s: Server) {
    s.requests(1);
    writeln!(s.stdin, "quit").unwrap();
    drop(s.stdin);
    assert!(
        within(TIMEOUT, || !running(s.pid)),
        "the server did not end"
    );
    let _ = wait_timeout(&mut s.run, TIMEOUT);
}

/// Asks the server for a snapshot with the bare signal, and waits for the frozen copy
/// to appear as `memtrace run`'s child with its name: its pid.
fn bare_signal_copy(s: &Server) -> u32 {
    // SAFETY: kill(2) on the server's pid, which handles SIGUSR2 (memtrace's handler).
    assert_eq!(unsafe { libc::kill(s.pid as i32, libc::SIGUSR2) }, 0);
    let run = s.run.id();
    let mut copy = 0;
    assert!(
        within(Duration::from_secs(20), || {
            copy = mapping_the_log(s.dir.path(), s.pid)
                .into_iter()
                .find(|(_, ppid, comm)| *ppid == run && comm == "memtrace-snap")
                .map_or(0, |c| c.0);
            copy != 0
        }),
        "no frozen copy appeared: {:?}",
        mapping_the_log(s.dir.path(), s.pid)
    );
    copy
}
