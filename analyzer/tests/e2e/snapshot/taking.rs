//! Taking snapshots: by `memtrace snapshot` (of the server, a grandchild, through `memtrace
//! run`'s pid) and by the bare signal; `report --since` and `--older-than` on them.

use super::*;

/// Two snapshots of the running server, taken by `memtrace snapshot`, each with the
/// exact leaks so far by kind; the server answers between and after them; `--since`
/// shows what grew between the two, `--older-than` the blocks of the first batch.
#[test]
fn snapshots_of_a_running_server() {
    let mut s = Server::start(&[]);
    assert_eq!(s.ppid(), s.run.id(), "the server is memtrace run's child");
    let two = take_two_snapshots(&mut s);
    s.requests(1);
    let (stderr, dir) = s.quit();
    assert!(stderr.contains("snapshot written to"), "{stderr}");

    each_snapshot_has_its_requests(&two);
    since_the_first_the_growth(&two);
    older_than_the_pause_the_first_batch(&two);
    text_html_and_diff_of_the_two(&two);
    bad_orders_and_the_final_log(&two, dir.path());
}

/// Two snapshots of one server: after 10 requests, and after 5 more.
struct TwoSnapshots {
    first: PathBuf,
    second: PathBuf,
    /// The pause between the two batches, in ms: older than it, the first batch only.
    threshold_ms: u64,
}

/// Sends 10 requests, takes the first snapshot, pauses, sends 5, takes the second.
fn take_two_snapshots(s: &mut Server) -> TwoSnapshots {
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
    TwoSnapshots {
        first,
        second,
        threshold_ms,
    }
}

/// Each snapshot holds the leaks of the requests so far.
fn each_snapshot_has_its_requests(two: &TwoSnapshots) {
    let r1 = report(&two.first);
    assert_eq!(r1.process("ended"), "snapshot");
    assert_requests(&r1, 10);
    let r2 = report(&two.second);
    assert_requests(&r2, 15);
}

/// What grew between the two: the 5 requests of the second batch.
fn since_the_first_the_growth(two: &TwoSnapshots) {
    let since = report_with(&two.second, &["--since", two.first.to_str().unwrap()]);
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
}

/// Alive for at least the pause at the second snapshot: the first batch only.
fn older_than_the_pause_the_first_batch(two: &TwoSnapshots) {
    let threshold_ms = two.threshold_ms;
    let old = report_with(&two.second, &["--older-than", &format!("{threshold_ms}ms")]);
    assert_requests(&old, 10);
    assert_eq!(old.v["live_filter"]["older_than_ms"], threshold_ms as f64);
}

/// The text report and the HTML page of `--since` say what they are; `memtrace diff`
/// of the two shows the same growth.
fn text_html_and_diff_of_the_two(two: &TwoSnapshots) {
    let (first, second) = (&two.first, &two.second);
    // The text report says what it is.
    let out = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(first)
            .arg(second),
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
            .arg(first)
            .arg(second),
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
    let diff = output_with_timeout(memtrace().arg("diff").arg(first).arg(second), TIMEOUT);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(diff.status.success(), "{diff:?}");
    assert!(text.contains("change: +1,760 bytes"), "{text}");
}

/// The wrong order, and a log that is not a snapshot, are clear errors; the final log
/// in `dir` holds every request's blocks at exit.
fn bad_orders_and_the_final_log(two: &TwoSnapshots, dir: &Path) {
    let (first, second) = (&two.first, &two.second);
    // The wrong order, and a log that is not a snapshot, are clear errors.
    let bad = output_with_timeout(
        memtrace()
            .arg("report")
            .arg("--since")
            .arg(second)
            .arg(first),
        TIMEOUT,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("taken after the end"));

    // The final log: every request's blocks at exit, and only one log for the run.
    let logs: Vec<PathBuf> = logs_in(dir)
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
            .arg(second),
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
