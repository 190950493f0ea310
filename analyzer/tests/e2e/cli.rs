//! `memtrace run` and `MEMTRACE_OUTPUT`.

use crate::util::{
    TIMEOUT, clean_command, fixture, logs_in, memtrace, memtrace_bin, output_with_timeout,
    preload_lib, report, require_root,
};
use std::os::unix::fs::PermissionsExt;

// `memtrace run -- exit3` exits 3 like its target, passes its output through, writes the
// log into a new run directory memtrace.exit3.<pid>/ as exit3.<pid>.mtr and names the
// directory in one line.
#[test]
fn run_exits_with_target_status_and_names_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(dir.path())
        .arg("run")
        .arg("--")
        .arg(fixture("exit3"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit status of memtrace run\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("exit3 says hello"),
        "target's stdout passes through: {stdout}"
    );

    let logs = logs_in(dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let pid = r.process("pid").as_u64().unwrap();
    assert_eq!(
        logs[0],
        dir.path()
            .join(format!("memtrace.exit3.{pid}"))
            .join(format!("exit3.{pid}.mtr")),
        "default log name"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memtrace:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("memtrace: 1 log of 1 process in memtrace.exit3.")
            && lines[0].ends_with(&format!(" — memtrace report memtrace.exit3.{pid}/")),
        "memtrace run names the run directory:\n{stderr}"
    );
    r.assert_ended("exit");
    assert_eq!(r.process("exit_status"), 3, "process = {}", r.v["process"]);
    r.assert_heap_leaked(0, 0);
    assert!(r.leaks("heap").is_empty(), "{}", r.describe_leaks());
}

// MEMTRACE_OUTPUT=/dir/x.%p.mtr places the log at that path with the pid filled in.
#[test]
fn run_honours_memtrace_output() {
    let cwd = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = memtrace();
    cmd.current_dir(cwd.path())
        .env("MEMTRACE_OUTPUT", out_dir.path().join("x.%p.mtr"))
        .arg("run")
        .arg("--")
        .arg(fixture("exit3"));
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        logs_in(cwd.path()).is_empty(),
        "no log in the working directory"
    );
    let logs = logs_in(out_dir.path());
    assert_eq!(logs.len(), 1, "{logs:?}");
    let r = report(&logs[0]);
    let pid = r.process("pid").as_u64().unwrap();
    assert_eq!(logs[0], out_dir.path().join(format!("x.{pid}.mtr")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shown = logs[0].to_string_lossy();
    assert!(
        stdout.contains(&*shown) || stderr.contains(&*shown),
        "memtrace run says where the log is ({shown}):\n{stdout}\n{stderr}"
    );
}

// The `%e` pattern is the executable's base name; the preload alone (no `memtrace run`) honours it.
#[test]
fn preload_output_pattern_with_exe_name() {
    let t = crate::util::trace_pattern("exit3", &[] as &[&str], "trace-%e-%p.mtr");
    t.assert_exit(3);
    let log = t.only_log();
    let r = report(&log);
    let pid = r.process("pid").as_u64().unwrap();
    assert_eq!(log, t.dir.path().join(format!("trace-exit3-{pid}.mtr")));
    r.assert_ended("exit");
}

/// Progress bars: drawn while a large log is analyzed and stderr is a terminal (a
/// pseudo-terminal from `script`), never when stderr is a pipe.
#[test]
fn progress_bar_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let churn = d.join("churn");
    let src = crate::util::root().join("scripts/bench/churn.c");
    let cc = std::process::Command::new("gcc")
        .args(["-O2", "-g", "-pthread", "-DTOTAL=1000000L", "-o"])
        .arg(&churn)
        .arg(&src)
        .status()
        .unwrap();
    assert!(cc.success());
    let mut run = memtrace();
    run.current_dir(d)
        .args(["run", "--raw", "-o", "big.%p.mtr", "--"])
        .arg(&churn)
        .arg("1");
    assert!(output_with_timeout(&mut run, TIMEOUT).status.success());
    let log = logs_in(d).pop().unwrap();
    assert!(
        std::fs::metadata(&log).unwrap().len() >= 8 << 20,
        "the log is large"
    );

    let mut piped = memtrace();
    piped.arg("report").arg(&log);
    let out = output_with_timeout(&mut piped, TIMEOUT);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("reading") && !err.contains('\r'), "{err}");

    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("`script` (util-linux) is needed to give memtrace a terminal");
    }
    let line = format!(
        "{} report {} > /dev/null",
        crate::util::memtrace_bin().display(),
        log.display()
    );
    let mut tty = crate::util::clean_command("script");
    tty.args(["-qec", &line, "/dev/null"]);
    let out = output_with_timeout(&mut tty, TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("reading") && shown.contains('%'), "{shown}");
}

/// `memtrace run` of a process tree says where the logs went in one line:
/// how many logs of how many processes, the directory and the top log; `-v`
/// gives one line per log instead.
#[test]
fn run_of_a_tree_says_where_in_one_line() {
    let script = "for i in 1 2 3 4 5; do /bin/true; done";
    for verbose in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = memtrace();
        cmd.current_dir(dir.path()).arg("run");
        if verbose {
            cmd.arg("-v");
        }
        cmd.args(["-o", "%e.%p.mtr", "--", "/bin/bash", "-c", script]);
        let out = output_with_timeout(&mut cmd, TIMEOUT);
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Not the -v lines of the live packer (how much of the top log it packed while
        // it ran, and whether the top's exit scan took the live blocks from it) nor the
        // log pool's (how many log files it made ahead).
        let live = |l: &str| {
            l.contains("packed while the command ran")
                || l.contains("live packer")
                || l.contains("log pool")
        };
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("memtrace:") && !live(l))
            .collect();
        let logs = logs_in(dir.path());
        let pids: std::collections::HashSet<String> = logs
            .iter()
            .map(|l| {
                l.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .split('.')
                    .nth(1)
                    .unwrap()
                    .to_owned()
            })
            .collect();
        // bash and five children, each of which exec'd /bin/true: 11 logs of 6 processes.
        assert_eq!((logs.len(), pids.len()), (11, 6), "{logs:?}");
        if verbose {
            assert_eq!(lines.len(), 11, "{stderr}");
            assert!(
                lines[0].starts_with("memtrace: log written to bash."),
                "{stderr}"
            );
        } else {
            assert_eq!(lines.len(), 1, "{stderr}");
            let top = logs
                .iter()
                .map(|l| l.file_name().unwrap().to_string_lossy().into_owned())
                .find(|n| lines[0].contains(&format!("(top: {n};")))
                .unwrap_or_else(|| panic!("no top log named: {stderr}"));
            assert!(top.starts_with("bash."), "{top}");
            assert!(
                lines[0].starts_with("memtrace: 11 logs of 6 processes written to ."),
                "{stderr}"
            );
            assert!(lines[0].ends_with("; -v lists each)"), "{stderr}");
        }
    }
}

// Where the run directory cannot be made (the current directory is not writable), `memtrace
// run` says so in one line, with how to write the logs elsewhere, exits 2 and runs nothing.
// memtrace runs as nobody, from a copy (with its library) that nobody may execute.
#[test]
fn run_where_it_cannot_make_its_directory_says_to_use_o() {
    use std::os::unix::process::CommandExt;
    require_root("it runs memtrace as nobody in a directory only root may write");
    let top = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(top.path(), 0o755);
    let bin = top.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    mode(&bin, 0o755);
    std::fs::copy(memtrace_bin(), bin.join("memtrace")).unwrap();
    std::fs::copy(preload_lib(), bin.join("libmemtrace.so")).unwrap();
    let work = top.path().join("work");
    std::fs::create_dir(&work).unwrap();
    mode(&work, 0o555);
    let mut cmd = clean_command(bin.join("memtrace"));
    cmd.args(["run", "--", "/bin/echo", "ran"])
        .current_dir(&work)
        .uid(65534)
        .gid(65534);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "nothing ran");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "memtrace: error: cannot run /bin/echo or make its run directory in the current \
         directory (-o DIR/%e.%p.mtr writes the logs elsewhere): Permission denied (os error 13)\n"
    );
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}
