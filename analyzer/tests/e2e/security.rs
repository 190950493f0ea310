//! The log file as an attack surface: planted symlinks and existing files in a shared
//! directory, and setuid programs (AT_SECURE), which are never traced.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{clean_command, fixture, logs_in, output_with_timeout, preload_lib, report};

/// Runs fixture `heap` under the preload with `MEMTRACE_OUTPUT=pattern`.
fn run_with_output(pattern: &Path) {
    let mut cmd = clean_command(fixture("heap"));
    cmd.env("LD_PRELOAD", preload_lib())
        .env("MEMTRACE_OUTPUT", pattern);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "heap fixture under the preload");
}

// A symlink planted at the log's name is not followed: its target is untouched, the log
// goes to a fresh name beside it, with mode 0600.
#[test]
fn planted_symlink_is_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").expect("write victim");
    let log = dir.path().join("fixed.mtr");
    std::os::unix::fs::symlink(&victim, &log).expect("plant symlink");
    run_with_output(&log);
    assert_eq!(std::fs::read(&victim).expect("read victim"), b"precious");
    assert!(
        std::fs::symlink_metadata(&log)
            .expect("symlink stays")
            .file_type()
            .is_symlink()
    );
    let real = dir.path().join("fixed.mtr.1");
    let meta = std::fs::metadata(&real).expect("the log went to fixed.mtr.1");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "log mode");
    report(&real).assert_leak("heap", "leak_malloc", 300, 3);
}

// An existing file at the log's name is never overwritten.
#[test]
fn existing_file_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("taken.mtr");
    std::fs::write(&log, b"someone else's").expect("write file");
    std::fs::write(dir.path().join("taken.mtr.1"), b"and this").expect("write file");
    run_with_output(&log);
    assert_eq!(std::fs::read(&log).expect("read"), b"someone else's");
    assert_eq!(
        std::fs::read(dir.path().join("taken.mtr.1")).expect("read"),
        b"and this"
    );
    report(&dir.path().join("taken.mtr.2")).assert_leak("heap", "leak_malloc", 300, 3);
}

// A setuid program (AT_SECURE) is not traced: the preload touches no file. The dynamic
// linker only preloads setuid libraries from system directories into such programs, so
// the test installs a setuid copy of libmemtrace.so there (needs root; skipped otherwise),
// and checks the positive control first: the same setup without setuid does write a log.
#[test]
fn setuid_program_is_not_traced() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let sysdir = Path::new("/usr/lib/x86_64-linux-gnu");
    let name = format!("libmemtrace-secure-test-{}.so", std::process::id());
    let lib = sysdir.join(&name);
    std::fs::copy(preload_lib(), &lib).expect("install the test copy of the preload");
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let prog = dir.path().join("probe-setuid");
    std::fs::copy(fixture("maps_probe"), &prog).expect("copy the fixture");
    let run = |setuid: bool| {
        let mode = if setuid { 0o4755 } else { 0o755 };
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let mut cmd = clean_command("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&prog)
            .arg(&name)
            .current_dir(dir.path())
            .env("LD_PRELOAD", &name)
            .env("MEMTRACE_OUTPUT", dir.path().join("%e.%p.mtr"));
        output_with_timeout(&mut cmd, Duration::from_secs(60))
    };
    // setpriv itself (not setuid) is traced as well; count the program's own logs.
    let program_logs = || -> Vec<_> {
        logs_in(dir.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("probe-setuid"))
            })
            .collect()
    };
    let plain = run(false);
    let plain_logs = program_logs();
    let secure = run(true);
    let secure_logs = program_logs();
    let _ = std::fs::remove_file(&lib);
    assert_eq!(plain.status.code(), Some(0), "plain run");
    assert_eq!(
        plain_logs.len(),
        1,
        "positive control: the non-setuid run is traced"
    );
    let owner = std::fs::metadata(&plain_logs[0]).expect("log").uid();
    assert_eq!(
        owner, 65534,
        "the log belongs to the user who ran the program"
    );
    report(&plain_logs[0]).assert_leak("heap", "leak_probe_site", 64, 1);
    assert_eq!(secure.status.code(), Some(0), "setuid run");
    assert_eq!(
        String::from_utf8_lossy(&secure.stdout),
        "mapped\n",
        "the preload was loaded"
    );
    assert_eq!(secure.stdout, plain.stdout, "same output");
    assert_eq!(secure_logs, plain_logs, "the setuid run wrote no log");
}
