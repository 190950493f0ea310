//! Leak hunting in a program that never exits: tests/fixtures/server.c, driven by this
//! test as its client, leaks on every request. `memtrace snapshot PID` (and the bare
//! signal) make it write snapshots of its live heap, classified by reachability, while
//! it keeps serving; `memtrace report --since` and `--older-than` narrow them. The
//! figures are the fixture header's: per request 256 bytes definitely lost
//! (handle_request), 32 indirectly lost (make_header), 64 still reachable (new_session).

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

/// Two snapshots of the running server, taken by `memtrace snapshot`, each with the
/// exact leaks so far by kind; the server answers between and after them; `--since`
/// shows what grew between the two, `--older-than` the blocks of the first batch.
#[test]
fn snapshots_of_a_running_server() {
    let mut s = Server::start(&[]);
    assert_eq!(s.ppid(), s.run.id(), "the server is memtrace run's child");
    let t0 = Instant::now();
    s.requests(10);
    let first_batch_done = Instant::now();
    let first = s.snapshot();
    assert_eq!(s.frozen_copies(), 0, "the frozen copy is killed once read");
    // The pause is what `--older-than` is tested on, not a wait for anything: the first
    // batch's blocks are at least `pause` old at the second snapshot, the second batch's
    // at most `young` (the time from its first request to the end of its snapshot). The
    // threshold is the measured pause, not a fixed second that the second batch and its
    // snapshot would have to beat; the pause is long (1.5 s, and 4 times what the first
    // batch and its snapshot took, on a slow machine), and the test says so if the
    // machine stalled longer than that.
    let first_took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(1500).max(first_took * 4));
    let second_batch_start = Instant::now();
    s.requests(5);
    let second = s.snapshot();
    let young = second_batch_start.elapsed();
    let pause = second_batch_start - first_batch_done;
    let threshold_ms = pause.as_millis() as u64;
    assert!(
        young.as_millis() < u128::from(threshold_ms),
        "the second batch and its snapshot took {young:?}, longer than the {pause:?} pause \
         before it (the first batch and its snapshot took {first_took:?}): the ages of the \
         two batches overlap, `--older-than` cannot be checked"
    );
    s.requests(1);
    let (stderr, dir) = s.quit();
    assert!(stderr.contains("snapshot written to"), "{stderr}");

    let r1 = report(&first);
    assert_eq!(r1.process("ended"), "snapshot");
    assert_requests(&r1, 10);
    let r2 = report(&second);
    assert_requests(&r2, 15);

    // What grew between the two: the 5 requests of the second batch.
    let since = report_with(&second, &["--since", first.to_str().unwrap()]);
    assert_requests(&since, 5);
    let f = &since.v["live_filter"];
    assert_eq!(f["since"]["live_bytes"], 352 * 10);
    assert_eq!(f["all_bytes"], 352 * 15);
    let growth = f["growth"].as_array().unwrap();
    let grew = |function: &str| {
        let g = growth
            .iter()
            .find(|g| stack_has(g, &fn_is(function)))
            .unwrap_or_else(|| panic!("no growth entry for {function}: {f}"));
        (
            g["bytes"].as_u64().unwrap() - g["then_bytes"].as_u64().unwrap(),
            g["count"].as_u64().unwrap() - g["then_count"].as_u64().unwrap(),
        )
    };
    assert_eq!(grew("handle_request"), (5 * 256, 5));
    assert_eq!(grew("make_header"), (5 * 32, 5));
    assert_eq!(grew("new_session"), (5 * 64, 5));
    assert_eq!(growth.len(), 3, "{f}");

    // Alive for at least the pause at the second snapshot: the first batch only.
    let old = report_with(&second, &["--older-than", &format!("{threshold_ms}ms")]);
    assert_requests(&old, 10);
    assert_eq!(old.v["live_filter"]["older_than_ms"], threshold_ms as f64);

    // The text report says what it is.
    let out = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(&first)
            .arg(&second),
        TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("in use at snapshot: 5,280 bytes in 45 blocks"),
        "{text}"
    );
    assert!(text.contains("GROWTH BY STACK"), "{text}");
    assert!(text.contains("+1,280 bytes, +5 blocks"), "{text}");

    // The HTML page too.
    let page = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--html")
            .arg("-")
            .arg("--since")
            .arg(&first)
            .arg(&second),
        TIMEOUT,
    );
    let html = String::from_utf8_lossy(&page.stdout);
    assert!(html.contains("In use at the snapshot"), "no snapshot row");
    assert!(html.contains("id=\"growth\""), "no growth table");
    assert!(
        html.contains("+1,280 bytes, +5 blocks"),
        "no handle_request growth"
    );

    // memtrace diff of the two: the same growth.
    let diff = output_with_timeout(memtrace().arg("diff").arg(&first).arg(&second), TIMEOUT);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(diff.status.success(), "{diff:?}");
    assert!(text.contains("change: +1,760 bytes"), "{text}");

    // The wrong order, and a log that is not a snapshot, are clear errors.
    let bad = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(&second)
            .arg(&first),
        TIMEOUT,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("taken after the end"));

    // The final log: every request's blocks at exit, and only one log for the run.
    let logs: Vec<PathBuf> = logs_in(dir.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains(".snap"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let end = report(&logs[0]);
    assert_eq!(end.process("ended"), "exit");
    assert_requests(&end, 16);
    let bad = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(&logs[0])
            .arg(&second),
        TIMEOUT,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a snapshot"));
}

/// A server that is not `memtrace run`'s child (a shell's) gets its snapshot too: the
/// copy is made through an intermediate child and handed to `memtrace run`.
#[test]
fn snapshot_of_a_grandchild() {
    let mut s = Server::launch(&[], &[], true);
    assert_ne!(s.ppid(), s.run.id(), "the server must be the shell's child");
    s.requests(3);
    let snap = s.snapshot();
    s.requests(1);
    assert_eq!(s.frozen_copies(), 0);
    let (_, _dir) = s.quit();
    let r = report(&snap);
    assert_requests(&r, 3);
}

/// Given `memtrace run`'s pid instead of the program's, `memtrace snapshot` takes the
/// snapshot of its traced child, and says so.
#[test]
fn snapshot_by_memtrace_runs_pid() {
    let mut s = Server::start(&[]);
    s.requests(2);
    let out = output_with_timeout(
        memtrace().arg("snapshot").arg(s.run.id().to_string()),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("runs the traced pid {}", s.pid)),
        "{err}"
    );
    let snap = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    s.requests(1);
    let (_, _dir) = s.quit();
    assert_requests(&report(&snap), 2);
}

/// The bare signal (`kill -s SIGRTMAX-2`, or the one chosen with --snapshot-signal)
/// makes a snapshot too, without `memtrace snapshot`.
#[test]
fn the_signal_alone_takes_a_snapshot() {
    let mut s = Server::start(&["--snapshot-signal", "USR2"]);
    s.requests(3);
    // SAFETY: kill(2) on the server's pid, which handles SIGUSR2 (memtrace's handler).
    assert_eq!(unsafe { libc::kill(s.pid as i32, libc::SIGUSR2) }, 0);
    let want = s.dir.path().join(format!("{}.snap1.mtr", s.pid));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.exists() {
        assert!(
            Instant::now() < deadline,
            "no snapshot at {}",
            want.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.requests(2);
    let (_, _dir) = s.quit();
    let r = report(&want);
    assert_eq!(r.process("ended"), "snapshot");
    assert_requests(&r, 3);
}

/// Other threads' stacks and every thread's thread-local storage are roots in a
/// snapshot and at exit: a block kept only by a local of a thread blocked in read(2),
/// or only by a `__thread` variable (the worker's, main's), is still reachable, while
/// the requests' blocks keep their kinds.
#[test]
fn a_blocked_threads_stack_is_a_root() {
    let mut s = Server::start_with(&[], &["worker"]);
    s.requests(4);
    let snap = s.snapshot();
    let (_, dir) = s.quit();
    let end = logs_in(dir.path())
        .into_iter()
        .find(|p| !p.to_string_lossy().contains(".snap"))
        .expect("the run's log");
    for r in [report(&snap), report(&end)] {
        assert_eq!(
            kind_at(&r, "reachable", "worker_block"),
            (96, 1),
            "{}",
            r.log.display()
        );
        assert_eq!(kind_at(&r, "definite", "worker_block"), (0, 0));
        assert_eq!(kind_at(&r, "reachable", "worker_tls"), (48, 1));
        assert_eq!(kind_at(&r, "reachable", "main_tls"), (24, 1));
        assert_eq!(kind_at(&r, "definite", "handle_request"), (256 * 4, 4));
        assert_eq!(kind_at(&r, "indirect", "make_header"), (32 * 4, 4));
        assert_eq!(kind_at(&r, "reachable", "new_session"), (64 * 4, 4));
        let k = &r.v["summary"]["leak_kinds"];
        assert_eq!(k["definite"]["bytes"], 256 * 4, "{k}");
        assert_eq!(k["indirect"]["bytes"], 32 * 4, "{k}");
    }
}

/// A limit of the scan, and how the user can tell: a block whose only pointer is
/// XOR-ed looks definitely lost in a snapshot; once the program frees it, `report
/// --since` that snapshot says so.
#[test]
fn hidden_pointers_are_missed_and_then_told() {
    let mut s = Server::start(&[]);
    s.requests(2);
    s.say("hide", "hidden");
    let snap = s.snapshot();
    s.say("unhide", "unhidden");
    s.requests(1);
    let later = s.snapshot();
    let (_, _dir) = s.quit();
    let r = report(&snap);
    assert_eq!(kind_at(&r, "definite", "hide_block"), (128, 1));
    let since = report_with(&later, &["--since", snap.to_str().unwrap()]);
    let f = &since.v["live_filter"];
    assert_eq!(f["lost_then_freed"]["bytes"], 128, "{f}");
    assert_eq!(f["lost_then_freed"]["count"], 1, "{f}");
    assert_requests(&since, 1);
    let out = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(&snap)
            .arg(&later),
        TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("128 bytes in 1 block classified lost in")
            && text.contains("were freed since"),
        "{text}"
    );
}

/// `memtrace snapshot` refuses, with a clear message, a process that is not traced or
/// whose snapshots are off, and sends it nothing.
#[test]
fn snapshot_refuses_untraced_processes() {
    let fail = |pid: u32| -> String {
        let out = output_with_timeout(memtrace().arg("snapshot").arg(pid.to_string()), TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut sleeper = clean_command("sleep").arg("30").spawn().unwrap();
    let e = fail(sleeper.id());
    assert!(e.contains("is not traced by memtrace"), "{e}");
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "sleep must not be signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let mut s = Server::start(&["--snapshot-signal", "none"]);
    s.requests(1);
    let e = fail(s.pid);
    assert!(e.contains("not started with snapshots on"), "{e}");
    s.requests(1);
    let (_, dir) = s.quit();
    assert!(!Path::new(&dir.path().join("x")).exists());
    assert!(
        !logs_in(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".snap")),
        "no snapshot was taken"
    );
    let e = fail(u32::MAX / 2);
    assert!(e.contains("no process"), "{e}");
}

/// A program that takes memtrace's snapshot signal over with a handler of its own
/// (sigaction) is not sent it: `memtrace snapshot` refuses at once, with the reason, and
/// the program goes on serving.
#[test]
fn snapshot_refuses_a_program_that_took_the_signal() {
    let mut s = Server::start(&["--snapshot-signal", "USR2"]);
    s.requests(1);
    s.say("take", "taken");
    let out = output_with_timeout(memtrace().arg("snapshot").arg(s.pid.to_string()), TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "process {} installed its own handler for signal {}, memtrace's snapshot signal: memtrace's handler is gone; not sending it",
            s.pid,
            libc::SIGUSR2
        )),
        "{err}"
    );
    s.requests(1);
    let (_, dir) = s.quit();
    assert!(
        !logs_in(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".snap")),
        "no snapshot was taken"
    );
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

/// A frozen copy dies with its `memtrace run`: the copy (left unread by the test hook
/// MEMTRACE_TEST_IGNORE_COPIES, so that `memtrace run` is killed while it holds one) is
/// gone within 3 s of `memtrace run`'s SIGKILL, whether it was made with CLONE_PARENT
/// (the server is memtrace run's child) or through an intermediate child (the server
/// is a shell's child). The server goes on serving.
#[test]
fn a_frozen_copy_dies_with_memtrace_run() {
    for via_shell in [false, true] {
        let mut s = Server::launch_env(
            &["--snapshot-signal", "USR2"],
            &[],
            via_shell,
            &[("MEMTRACE_TEST_IGNORE_COPIES", "1")],
        );
        assert_eq!(s.ppid() == s.run.id(), !via_shell);
        s.requests(2);
        let copy = bare_signal_copy(&s);
        // Held, unread, by its living memtrace run: still there a second later. This
        // sleep is the behaviour under test (the copy must not leave by itself while
        // its memtrace run lives; its idle lifetime is 10 s), not a wait for an event.
        std::thread::sleep(Duration::from_secs(1));
        assert!(running(copy), "the copy must wait to be read");
        s.run.kill().unwrap();
        let _ = s.run.wait();
        assert!(
            within(Duration::from_secs(3), || !running(copy)
                && mapping_the_log(s.dir.path(), s.pid).is_empty()),
            "via_shell {via_shell}: frozen copy {copy} outlived memtrace run: {:?}",
            mapping_the_log(s.dir.path(), s.pid)
        );
        quit_orphan(s);
    }
}

/// A frozen copy nobody reads (MEMTRACE_TEST_IGNORE_COPIES: memtrace run finds it but
/// leaves it alone, as a wedged one would) exits by itself after its idle lifetime
/// (10 s), not 600 s, while memtrace run lives on; `memtrace snapshot` meanwhile gives
/// up after its --timeout with the reason.
#[test]
fn an_unread_frozen_copy_exits_by_itself() {
    let mut s = Server::launch_env(
        &["--snapshot-signal", "USR2"],
        &[],
        false,
        &[("MEMTRACE_TEST_IGNORE_COPIES", "1")],
    );
    s.requests(2);
    let started = Instant::now();
    let out = output_with_timeout(
        memtrace()
            .args(["snapshot", "--timeout", "2"])
            .arg(s.pid.to_string()),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "no snapshot after 2 s: `memtrace run` (pid {}) still runs but wrote none",
            s.run.id()
        )),
        "{err}"
    );
    let run = s.run.id();
    let copies: Vec<u32> = mapping_the_log(s.dir.path(), s.pid)
        .into_iter()
        .filter(|(_, ppid, comm)| *ppid == run && comm == "memtrace-snap")
        .map(|c| c.0)
        .collect();
    assert_eq!(copies.len(), 1, "one unread copy");
    let copy = copies[0];
    assert!(
        within(Duration::from_secs(20), || !running(copy)),
        "the unread copy {copy} still runs {:?} after the snapshot was asked",
        started.elapsed()
    );
    let lived = started.elapsed();
    assert!(lived >= Duration::from_secs(5), "gone too soon: {lived:?}");
    assert!(
        s.run.try_wait().unwrap().is_none(),
        "memtrace run still runs: the copy left by itself"
    );
    s.requests(1);
    let (stderr, _dir) = s.quit();
    assert!(!stderr.contains("snapshot written"), "{stderr}");
}

/// A server that outlived its `memtrace run` (killed; the server was a shell's child, or
/// memtrace run's own): `memtrace snapshot` refuses at once, naming the reason, and
/// sends nothing; the bare signal makes a copy that finds no memtrace run and exits at
/// once instead of waiting to be read. The server goes on serving.
#[test]
fn snapshot_refuses_when_memtrace_run_is_gone() {
    for via_shell in [false, true] {
        let mut s = Server::launch(&["--snapshot-signal", "USR2"], &[], via_shell);
        s.requests(1);
        let run = s.run.id();
        s.run.kill().unwrap();
        let _ = s.run.wait();
        let t = Instant::now();
        let out = output_with_timeout(memtrace().arg("snapshot").arg(s.pid.to_string()), TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "`memtrace run` (pid {run}), which writes the snapshots of process {}, is gone: the process outlived it",
                s.pid
            )),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        s.requests(1);
        // The bare signal: a copy is made, finds its memtrace run gone, and exits.
        // SAFETY: kill(2) on the server's pid, which handles SIGUSR2 (memtrace's handler).
        assert_eq!(unsafe { libc::kill(s.pid as i32, libc::SIGUSR2) }, 0);
        // The server answers only after its handler ran, and the handler makes the copy
        // before it returns: the copy exists (or has exited) once this request is
        // answered. It must then be gone "at once": well before its 10 s idle
        // lifetime, so the wait is bounded by 5 s (and ends as soon as it is gone).
        s.requests(1);
        assert!(
            within(Duration::from_secs(5), || mapping_the_log(
                s.dir.path(),
                s.pid
            )
            .is_empty()),
            "via_shell {via_shell}: a frozen copy was left: {:?}",
            mapping_the_log(s.dir.path(), s.pid)
        );
        assert!(
            !logs_in(s.dir.path())
                .iter()
                .any(|p| p.to_string_lossy().contains(".snap")),
            "no snapshot was taken"
        );
        quit_orphan(s);
    }
}

/// Under a plain LD_PRELOAD (no memtrace run) that still names a snapshot signal,
/// `memtrace snapshot` refuses at once with the reason, and sends nothing.
#[test]
fn snapshot_refuses_a_plain_ld_preload() {
    let dir = tempfile::tempdir().unwrap();
    let child = traced_command("server", dir.path(), "%p.mtr")
        .env("MEMTRACE_SNAPSHOT_SIGNAL", libc::SIGUSR2.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = Server::attach(child, dir);
    s.requests(1);
    let out = output_with_timeout(memtrace().arg("snapshot").arg(s.pid.to_string()), TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "process {} was not started by `memtrace run` (no MEMTRACE_RUN_PID: a plain LD_PRELOAD?)",
            s.pid
        )),
        "{err}"
    );
    s.requests(1);
    let (_, dir) = s.quit();
    assert!(
        !logs_in(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".snap")),
        "no snapshot was taken"
    );
}
