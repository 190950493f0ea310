//! fork.c, exec_first.c/exec_second.c, stdio_exit.c, underscore_exit.c, sigkill.c:
//! how processes begin and end.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::{
    TIMEOUT, Valgrind, assert_heap_totals, fixture, logs_in, memtrace, oracle, output_with_timeout,
    report, trace, trace_pattern, traced_command, wait_for_file, wait_timeout,
};

const NO_ARGS: &[&str] = &[];

fn pid_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("pid is not a number: {v}"))
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

// A fork child writes its own log (its pid in the name, forked_from = the parent) holding
// only its own events, and its report starts from the parent's blocks live at the fork
// (`shared`, which the child frees: an ordinary free); the parent's log holds only the
// parent's leaks.
#[test]
fn fork_child_gets_own_log() {
    let t = trace_pattern("fork", NO_ARGS, "log.%p.mtr");
    t.assert_exit(0);
    let child_pid: u64 = t
        .stdout()
        .trim()
        .strip_prefix("child ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("fixture did not print the child's pid\n{}", t.describe()));
    let logs = t.logs();
    assert_eq!(logs.len(), 2, "one log per process: {logs:?}");
    let child_log = t.dir.path().join(format!("log.{child_pid}.mtr"));
    assert!(
        logs.contains(&child_log),
        "child log {child_log:?} not in {logs:?}"
    );
    let parent_log = logs.iter().find(|l| **l != child_log).unwrap().clone();

    let p = report(&parent_log);
    p.assert_complete();
    let parent_pid = pid_of(p.process("pid"));
    assert_eq!(file_name(&parent_log), format!("log.{parent_pid}.mtr"));
    let ff = p.process("forked_from");
    assert!(
        ff.is_null() || *ff == 0,
        "the parent was not forked: forked_from = {ff}"
    );
    p.assert_ended("exit");
    p.assert_leak("heap", "parent_leak_site", 300, 3);
    p.assert_no_leak("heap", "child_leak_site");
    p.assert_heap_leaked(300, 3);
    assert_eq!(p.summary("allocations"), 5);
    assert_eq!(p.summary("frees"), 2);

    let c = report(&child_log);
    c.assert_complete();
    assert_eq!(pid_of(c.process("pid")), child_pid);
    assert_eq!(
        pid_of(c.process("forked_from")),
        parent_pid,
        "child's forked_from"
    );
    assert_eq!(pid_of(c.process("ppid")), parent_pid, "child's ppid");
    c.assert_ended("exit");
    c.assert_leak("heap", "child_leak_site", 400, 2);
    c.assert_no_leak("heap", "parent_leak_site");
    c.assert_heap_leaked(400, 2);
    assert_eq!(c.summary("allocations"), 2);
    assert_eq!(
        (c.summary("inherited_blocks"), c.summary("inherited_bytes")),
        (1, 64),
        "the child inherited `shared`: {}",
        c.v["summary"]
    );
    assert_eq!(
        c.summary("frees"),
        1,
        "the child frees the inherited `shared`"
    );
    // At exit the child's libc also frees what the parent's libc frees that was allocated
    // before tracing began (the parent's unknown frees); `shared` is not unknown.
    assert_eq!(
        c.summary("unknown_frees"),
        p.summary("unknown_frees"),
        "the child's free of an inherited block is not unknown"
    );
}

// exec writes a second log for the new image (same pid, ".1" put before the taken name's extension);
// the first log ends with "exec" and lists the block live then, which its text report does not
// call leaked.
#[test]
fn exec_writes_two_logs() {
    let t = trace_pattern("exec_first", &[fixture("exec_second")], "log.%p.mtr");
    t.assert_exit(0);
    let logs = t.logs();
    assert_eq!(logs.len(), 2, "one log per image: {logs:?}");
    let reports: Vec<_> = logs.iter().map(|l| report(l)).collect();
    let exe_ends = |r: &crate::util::Report, n: &str| {
        r.process("exe").as_str().is_some_and(|e| e.ends_with(n))
    };
    let first = reports
        .iter()
        .find(|r| exe_ends(r, "/exec_first"))
        .expect("a log of exec_first");
    let second = reports
        .iter()
        .find(|r| exe_ends(r, "/exec_second"))
        .expect("a log of exec_second");

    let pid = pid_of(first.process("pid"));
    assert_eq!(pid_of(second.process("pid")), pid, "exec keeps the pid");
    let mut names: Vec<String> = logs.iter().map(|l| file_name(l)).collect();
    names.sort();
    assert_eq!(
        names,
        [format!("log.{pid}.1.mtr"), format!("log.{pid}.mtr")]
    );
    assert_eq!(
        file_name(&first.log),
        format!("log.{pid}.mtr"),
        "the first image took the name"
    );

    first.assert_complete();
    first.assert_ended("exec");
    first.assert_leak("heap", "leak_before_exec", 111, 1);
    first.assert_heap_leaked(111, 1);
    assert_eq!(first.summary("allocations"), 1);
    assert_eq!(first.summary("frees"), 0);
    assert!(!first.summary_bool("ended_abnormally"));
    // As memcheck and LSan, which scan for leaks at exit and never at an exec: the
    // text report lists what was live at the exec without calling it leaked.
    let text = {
        let mut cmd = memtrace();
        cmd.arg("report").arg(&first.log);
        String::from_utf8_lossy(&output_with_timeout(&mut cmd, TIMEOUT).stdout).into_owned()
    };
    assert!(
        text.contains("  in use at exec:    111 bytes in 1 block\n"),
        "{text}"
    );
    assert!(
        text.contains("\nLIVE HEAP AT THE EXEC (gone with the image, not leaked): 111 bytes in 1 block from 1 stack\n"),
        "{text}"
    );
    assert!(!text.contains("HEAP LEAKS"), "{text}");

    second.assert_complete();
    second.assert_ended("exit");
    second.assert_leak("heap", "leak_after_exec", 444, 2);
    second.assert_no_leak("heap", "leak_before_exec");
    second.assert_heap_leaked(444, 2);
    assert_eq!(second.summary("allocations"), 2);
    assert_eq!(second.summary("frees"), 0);
}

// exit() from a nested function with stdio in use: ended "exit", one 50-byte leak, and
// libc's stdout buffer is freed (totals equal valgrind's).
#[test]
fn stdio_exit_from_nested_function() {
    let t = trace("stdio_exit", NO_ARGS);
    t.assert_exit(4);
    assert!(
        t.stdout().contains("leaving from level2 with 4"),
        "{}",
        t.describe()
    );
    let r = t.report();
    r.assert_complete();
    r.assert_ended("exit");
    assert!(!r.summary_bool("ended_abnormally"));
    r.assert_leak("heap", "leak_before_exit", 50, 1);
    let o = oracle(
        "stdio_exit",
        NO_ARGS,
        Valgrind {
            in_use_bytes: 50,
            in_use_blocks: 1,
            allocs: 2,
            frees: 1,
            bytes_allocated: 4146,
        },
    );
    assert_heap_totals(&r, &o);
}

// Under `memtrace run`, exit(4) from a nested function: memtrace exits 4, the report says 4.
#[test]
fn stdio_exit_status_via_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .env("MEMTRACE_OUTPUT", dir.path().join("log.%p.mtr"))
        .arg("run")
        .arg("--")
        .arg(fixture("stdio_exit"));
    let out = crate::util::output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(4),
        "memtrace run's exit status: {out:?}"
    );
    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    r.assert_ended("exit");
    assert_eq!(r.process("exit_status"), 4, "process = {}", r.v["process"]);
    r.assert_leak("heap", "leak_before_exit", 50, 1);
    r.assert_heap_leaked(50, 1);
}

// _exit(5) directly: ended "_exit", exit_status 5, the leak before it is reported.
#[test]
fn underscore_exit_status() {
    let t = trace("underscore_exit", NO_ARGS);
    t.assert_exit(5);
    let r = t.report();
    r.assert_complete();
    r.assert_ended("_exit");
    assert_eq!(r.process("exit_status"), 5, "process = {}", r.v["process"]);
    assert!(!r.summary_bool("ended_abnormally"));
    r.assert_leak("heap", "leak_before_underscore_exit", 77, 1);
    r.assert_heap_leaked(77, 1);
    assert_eq!(r.summary("allocations"), 1);
    assert_eq!(r.summary("frees"), 0);
}

// Killed by SIGKILL while sleeping: ended abnormally, every leak recorded before is there.
#[test]
fn sigkill_keeps_recorded_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    let mut cmd = traced_command("sigkill", dir.path(), "%e.%p.mtr");
    cmd.arg(&marker).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn sigkill");
    wait_for_file(&marker, &mut child);
    child.kill().expect("SIGKILL the fixture");
    let st = wait_timeout(&mut child, TIMEOUT).expect("the killed fixture is reaped");
    assert_eq!(st.signal(), Some(9), "killed by SIGKILL: {st:?}");

    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    assert!(r.summary_bool("ended_abnormally"), "{}", r.v["summary"]);
    r.assert_ended("abnormal");
    r.assert_leak("heap", "kill_leak_site", 4000, 4);
    r.assert_heap_leaked(4000, 4);
    assert_eq!(r.summary("allocations"), 4);
    assert_eq!(r.summary("frees"), 0);
    assert_eq!(r.summary("events_lost"), 0);
}

// Under `memtrace run`, a SIGKILLed target is reported with signal 9.
#[test]
fn sigkill_signal_via_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .env("MEMTRACE_OUTPUT", dir.path().join("log.%p.mtr"))
        .arg("run")
        .arg("--")
        .arg(fixture("sigkill"))
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = cmd.spawn().expect("spawn memtrace run");
    wait_for_file(&marker, &mut run);
    let pid = std::fs::read_to_string(&marker).unwrap().trim().to_string();
    let killed = Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -KILL {pid}");
    let st = wait_timeout(&mut run, TIMEOUT).expect("memtrace run ends after its target");
    assert!(
        !st.success(),
        "memtrace run must not succeed when its target was killed: {st:?}"
    );

    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    assert_eq!(pid_of(r.process("pid")).to_string(), pid);
    assert_eq!(r.process("signal"), 9, "process = {}", r.v["process"]);
    assert!(r.summary_bool("ended_abnormally"));
    r.assert_ended("abnormal");
    r.assert_leak("heap", "kill_leak_site", 4000, 4);
}

// The variadic execs (execl, execlp, execle, with arguments on the stack) are followed
// like the others: the first image's log ends "exec" with its own leak, the new image
// got exactly its 7 arguments (else it exits 3) and writes its own log.
#[test]
fn variadic_execs_are_followed() {
    for how in ["execl", "execlp", "execle"] {
        let t = trace_pattern("exec_list", &[how], "log.%p.mtr");
        t.assert_exit(0);
        let logs = t.logs();
        assert_eq!(logs.len(), 2, "{how}: one log per image: {logs:?}");
        let reports: Vec<_> = logs.iter().map(|l| report(l)).collect();
        let ended = |r: &crate::util::Report| r.process("ended").as_str().unwrap().to_owned();
        let first = reports
            .iter()
            .find(|r| ended(r) == "exec")
            .unwrap_or_else(|| panic!("{how}: no log ended by exec"));
        let second = reports
            .iter()
            .find(|r| ended(r) == "exit")
            .unwrap_or_else(|| panic!("{how}: no log ended by exit"));
        first.assert_complete();
        first.assert_leak("heap", "leak_before", 123, 1);
        first.assert_heap_leaked(123, 1);
        assert!(!first.summary_bool("ended_abnormally"), "{how}");
        second.assert_complete();
        second.assert_leak("heap", "leak_after", 321, 1);
        second.assert_heap_leaked(321, 1);
        assert_eq!(
            pid_of(first.process("pid")),
            pid_of(second.process("pid")),
            "{how}: exec keeps the pid"
        );
    }
}

// A program that re-execs itself takes the default name twice (same executable name,
// same pid): the second log gets ".1" before the extension, so the README's glob
// `memtrace.exec_list.*.mtr` finds both and the gate judges the new image (the first is
// skipped as replaced by exec) and fails on its leak.
#[test]
fn a_re_exec_is_found_by_the_glob() {
    let t = trace_pattern("exec_list", &["execl"], "memtrace.%e.%p.mtr");
    t.assert_exit(0);
    let globbed: Vec<std::path::PathBuf> = t
        .logs()
        .into_iter()
        .filter(|p| {
            let n = file_name(p);
            n.starts_with("memtrace.exec_list.") && n.ends_with(".mtr")
        })
        .collect();
    assert_eq!(globbed.len(), 2, "{:?}", t.logs());
    let mut cmd = crate::util::memtrace();
    cmd.args(["check", "--leak-kinds", "all"]).args(&globbed);
    let out = crate::util::output_with_timeout(&mut cmd, crate::util::TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(23), "{err}");
    assert!(err.contains("1 process judged of 2, 1 failed"), "{err}");
}

// Forks that run no atfork handler (`_Fork`, `syscall(SYS_fork)`, a raw clone): each child
// gets its own log (the token page wiped by the fork tells it), never writes into its
// parent's chunks, and every log is complete with exactly its own figures.
#[test]
fn forks_without_atfork_handlers_get_their_own_logs() {
    for how in ["_Fork", "syscall", "clone"] {
        let t = crate::util::trace("raw_forks", &[how]);
        t.assert_exit(0);
        let logs = t.logs();
        assert_eq!(logs.len(), 11, "{how}: {}", t.describe());
        let mut children = 0;
        for log in &logs {
            let r = crate::util::report(log);
            r.assert_complete();
            r.assert_leak("heap", "parent_site", 400, 10);
            if r.leak_site("heap", "after_site").count > 0 {
                r.assert_leak("heap", "after_site", 880, 10);
                r.assert_no_leak("heap", "child_site");
            } else {
                r.assert_leak("heap", "child_site", 720, 10);
                children += 1;
            }
        }
        assert_eq!(children, 10, "{how}");
    }
}

/// The untraced processes of `untraced_tree.c` as `(origin, reason)` with pids masked:
/// the lines `memtrace run` prints after "N processes of the tree were not traced:".
fn untraced_lines(stderr: &str, image: &std::path::Path) -> Vec<String> {
    let image = image.display().to_string();
    let mask = |s: &str| -> String {
        let mut o = String::new();
        let mut digits = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !digits {
                    o.push('N');
                }
                digits = true;
            } else {
                digits = false;
                o.push(c);
            }
        }
        o
    };
    let mut v: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("memtrace:   pid "))
        .map(|l| mask(&l.replace(&image, "STATIC")))
        .collect();
    v.sort();
    v
}

// Every process of the tree that leaves no log is listed, with the reason, by `memtrace
// run` (stderr), `memtrace check` (summary, JSON, JUnit); an image exec'd under a seccomp
// filter is not killed by memtrace's log creation (the old preload got it killed: status
// 31, SIGSYS), with plain LD_PRELOAD too. Figures from the header of untraced_tree.c.
#[test]
fn untraced_processes_are_listed_with_the_reason() {
    let static_child = fixture("static_child");
    let dir = tempfile::tempdir().unwrap();
    let out = memtrace()
        .current_dir(dir.path())
        .args(["run", "-o", "%e.%p.mtr", "--"])
        .arg(fixture("untraced_tree"))
        .arg(&static_child)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // The top process, A's fork log, S's fork log and the spawned /bin/true.
    assert_eq!(logs_in(dir.path()).len(), 4, "stderr:\n{stderr}");
    assert!(
        stderr.contains("memtrace: 5 processes of the tree were not traced:\n"),
        "stderr:\n{stderr}"
    );
    let seccomp =
        "under a seccomp filter: a log of its own needs system calls the filter may forbid";
    let mut want = vec![
        "N (STATIC, spawned by pid N): statically linked: LD_PRELOAD needs the dynamic loader".to_owned(),
        "N (forked by pid N): made no heap event (a child of _Fork, clone or syscall(SYS_fork) gets its log at its first)".to_owned(),
        "N (/bin/true, exec'd): its environment does not preload libmemtrace.so (LD_PRELOAD was changed or cleared)".to_owned(),
        format!("N (forked by pid N): {seccomp}"),
        format!("N (/bin/true, exec'd): {seccomp}"),
    ];
    want.sort();
    assert_eq!(
        untraced_lines(&stderr, &static_child),
        want,
        "stderr:\n{stderr}"
    );

    // The gate lists the same five, not judged, and judges the rest.
    let cdir = tempfile::tempdir().unwrap();
    let out = memtrace()
        .current_dir(cdir.path())
        .args(["check", "--json", "c.json", "--junit", "c.xml", "--"])
        .arg(fixture("untraced_tree"))
        .arg(&static_child)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(
        stderr.matches(": not traced: ").count(),
        5,
        "stderr:\n{stderr}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(cdir.path().join("c.json")).unwrap())
            .unwrap();
    let mut reasons: Vec<&str> = json["untraced"]
        .as_array()
        .expect("untraced is a list")
        .iter()
        .map(|u| u["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["no-event", "no-preload", "seccomp", "seccomp", "static"]
    );
    let junit = std::fs::read_to_string(cdir.path().join("c.xml")).unwrap();
    assert_eq!(
        junit.matches("classname=\"memtrace.untraced\"").count(),
        5,
        "{junit}"
    );

    // Plain LD_PRELOAD: the exec under the filter survives as well.
    let ldir = tempfile::tempdir().unwrap();
    let mut cmd = traced_command("untraced_tree", ldir.path(), "%e.%p.mtr");
    let out = cmd.arg(&static_child).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}
