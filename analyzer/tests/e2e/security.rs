//! The log file as an attack surface: planted symlinks and existing files in a shared
//! directory, and setuid programs (AT_SECURE), which are never traced.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{
    clean_command, fixture, logs_in, output_with_timeout, preload_lib, report, require_root,
    require_tool,
};

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
    let real = dir.path().join("fixed.1.mtr");
    let meta = std::fs::metadata(&real).expect("the log went to fixed.1.mtr");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "log mode");
    report(&real).assert_leak("heap", "leak_malloc", 300, 3);
}

// An existing file at the log's name is never overwritten.
#[test]
fn existing_file_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("taken.mtr");
    std::fs::write(&log, b"someone else's").expect("write file");
    std::fs::write(dir.path().join("taken.1.mtr"), b"and this").expect("write file");
    run_with_output(&log);
    assert_eq!(std::fs::read(&log).expect("read"), b"someone else's");
    assert_eq!(
        std::fs::read(dir.path().join("taken.1.mtr")).expect("read"),
        b"and this"
    );
    report(&dir.path().join("taken.2.mtr")).assert_leak("heap", "leak_malloc", 300, 3);
}

// A setuid program (AT_SECURE) is not traced: the preload touches no file. The dynamic
// linker only preloads setuid libraries from system directories into such programs, so
// the test installs a setuid copy of libmemtrace.so there (needs root: fails otherwise),
// and checks the positive control first: the same setup without setuid does write a log.
#[test]
fn setuid_program_is_not_traced() {
    // Required, never skipped (see util::require_tool).
    require_root("it installs a setuid library in /usr/lib/x86_64-linux-gnu");
    require_tool("setpriv", "util-linux");
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

/// The user the planted-file test plants as (made when missing; needs root).
const OTHER_USER: &str = "memtrace-e2e-other";

/// The uid of OTHER_USER, made first when missing.
fn other_uid() -> u32 {
    require_root("it plants a file as another user");
    let id = |()| {
        Command::new("id")
            .args(["-u", OTHER_USER])
            .output()
            .unwrap()
    };
    let mut out = id(());
    if !out.status.success() {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(OTHER_USER)
            .status()
            .expect("run useradd");
        assert!(made.success(), "useradd {OTHER_USER}");
        out = id(());
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

// A log planted in a shared (sticky, world-writable) log directory by another user,
// naming the run's own process as its parent, is not taken for one of the run's logs:
// `memtrace run` says so and leaves the file alone (it would otherwise pack it, as root).
#[test]
fn planted_log_of_another_user_is_not_trusted() {
    let uid = other_uid();
    // A real log to plant: the heap fixture's, made elsewhere.
    let src = tempfile::tempdir().unwrap();
    run_with_output(&src.path().join("template.mtr"));
    let mut planted = std::fs::read(src.path().join("template.mtr")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let pattern = dir.path().join("memtrace.%e.%p.mtr");
    // The run's child (sh) waits on a FIFO until the log is planted, then execs the heap
    // fixture: `run` cannot end before the test has planted it, however slow the machine.
    let mut gate = crate::util::Gate::new(src.path(), "gate");
    let child = crate::util::memtrace()
        .arg("run")
        .arg("-o")
        .arg(&pattern)
        .args(["--", "sh", "-c", "read x < \"$1\"; exec \"$0\""])
        .arg(fixture("heap"))
        .arg(gate.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run's child: the process the planted log names as its parent.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let target = loop {
        let task = format!("/proc/{}/task/{}/children", child.id(), child.id());
        if let Some(pid) = std::fs::read_to_string(&task).ok().and_then(|t| {
            t.split_whitespace()
                .next()
                .map(|p| p.parse::<u32>().unwrap())
        }) {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no child of memtrace run"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    use memtrace_format::hdr::off;
    planted[off::PID..off::PID + 4].copy_from_slice(&4_000_000u32.to_le_bytes());
    planted[off::PPID..off::PPID + 4].copy_from_slice(&target.to_le_bytes());
    planted[off::START_REALTIME..off::START_REALTIME + 8].copy_from_slice(&now.to_le_bytes());
    let path = dir.path().join("memtrace.sh.4000000.mtr");
    std::fs::write(&path, &planted).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
    gate.open();
    let out = crate::util::collect_output(child, Duration::from_secs(120), "memtrace run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{} is not taken for a log of this run: it belongs to uid {uid}",
            path.display()
        )),
        "memtrace run does not name the planted file:\n{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        planted,
        "the planted file was changed"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), uid);
    // The run's own logs are there (sh's, and the heap fixture's after sh's exec), and
    // the heap fixture's is whole.
    let own: Vec<_> = logs_in(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/memtrace.heap."))
        .collect();
    assert_eq!(own.len(), 1, "{own:?}\n{err}");
    report(&own[0]).assert_leak("heap", "leak_malloc", 300, 3);
}

// Every file memtrace writes beside a log, or where the user points it, refuses a symlink
// planted at its name (in a plain directory, where the kernel's protected_symlinks does
// not apply): pack's temporary file is made anew beside the planted link, and the packed
// log is 0600 like the raw one; a report, flame graph, export, check JSON and JUnit file
// named by a symlink are refused with the reason, the link's target untouched. The
// scratch directory of `memtrace check -- CMD` is new, 0700, under a name no one could
// have planted ahead (memtrace-check.PID.RANDOM), and gone afterwards.
#[test]
fn files_memtrace_writes_never_follow_planted_symlinks() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let victim = d.join("victim");
    std::fs::write(&victim, b"victim\n").unwrap();
    let memtrace = || {
        let mut c = crate::util::memtrace();
        c.current_dir(d);
        c
    };
    let out = output_with_timeout(
        memtrace().args(["run", "--raw", "--"]).arg(fixture("heap")),
        crate::util::TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let logs = logs_in(d);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(log), 0o600, "raw log");

    let tmp = log.with_extension("packing");
    symlink(&victim, &tmp).unwrap();
    let out = output_with_timeout(memtrace().arg("pack").arg(log), crate::util::TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"victim\n",
        "pack wrote through"
    );
    assert_eq!(&std::fs::read(log).unwrap()[..8], b"MEMTRPAK", "packed");
    assert_eq!(mode(log), 0o600, "packed log");
    assert!(!tmp.exists() && tmp.symlink_metadata().is_err(), "leftover");

    let cases: [(&str, &[&str]); 5] = [
        ("out.html", &["report", "--html"]),
        ("out.svg", &["flamegraph", "-o"]),
        ("out.folded", &["export", "--format", "folded", "-o"]),
        ("out.json", &["check", "--json"]),
        ("out.xml", &["check", "--junit"]),
    ];
    for (name, args) in cases {
        let planted = d.join(name);
        symlink(&victim, &planted).unwrap();
        let out = output_with_timeout(
            memtrace().args(args).arg(&planted).arg(log),
            crate::util::TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {name}: {out:?}");
        assert!(
            err.contains("is a symbolic link: not written through"),
            "{args:?} {name}: {err}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n", "{args:?}");
    }

    let scratch = tempfile::tempdir().unwrap();
    let out = output_with_timeout(
        memtrace()
            .env("TMPDIR", scratch.path())
            .args(["check", "--", "sh", "-c"])
            .arg(r#"d=${MEMTRACE_OUTPUT%/*}; echo "$d $(stat -c %a "$d")""#),
        crate::util::TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (path, mode) = stdout
        .trim()
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(mode, "700", "{stdout}");
    let name = Path::new(path).file_name().unwrap().to_string_lossy();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert_eq!(parts[0], "memtrace-check", "{name}");
    assert!(parts[1].parse::<u32>().is_ok(), "{name}");
    assert!(
        parts[2].len() == 16 && parts[2].chars().all(|c| c.is_ascii_hexdigit()),
        "{name}: a random part"
    );
    assert_eq!(Path::new(path).parent(), Some(scratch.path()));
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "the scratch directory is gone"
    );
}

// The run directory of `memtrace run` without `-o` is made anew, never through a symlink
// planted at its name: in a fresh pid namespace (root), memtrace is pid 1 and the command
// it runs pid 2, so its directory's name, memtrace.heap.2, is known ahead and planted (a
// symlink to another directory), as is memtrace.heap.2.1 (a file). The run takes
// memtrace.heap.2.2, mode 0700, with the log in it; the link's target stays empty, the
// link and the file are untouched, and the one line names the directory taken.
#[test]
fn run_directory_refuses_a_planted_symlink() {
    require_root("a pid namespace, in which the traced command's pid is known ahead");
    let unshare = require_tool("unshare", "util-linux");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let victim = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(victim.path(), d.join("memtrace.heap.2")).unwrap();
    std::fs::write(d.join("memtrace.heap.2.1"), b"taken\n").unwrap();
    let mut cmd = clean_command(unshare);
    cmd.current_dir(d)
        .env("MEMTRACE_PRELOAD", preload_lib())
        .args(["--pid", "--fork"])
        .arg(crate::util::memtrace_bin())
        .args(["run", "--"])
        .arg(fixture("heap"));
    let out = output_with_timeout(&mut cmd, crate::util::TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        std::fs::read_dir(victim.path()).unwrap().count(),
        0,
        "{err}"
    );
    let link = std::fs::symlink_metadata(d.join("memtrace.heap.2")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read(d.join("memtrace.heap.2.1")).unwrap(),
        b"taken\n"
    );
    let taken = d.join("memtrace.heap.2.2");
    let meta = std::fs::symlink_metadata(&taken).unwrap();
    assert!(meta.is_dir(), "{err}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    // SAFETY: geteuid(2) cannot fail.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    let logs = logs_in(&taken);
    assert_eq!(logs, vec![taken.join("heap.2.mtr")], "{err}");
    report(&logs[0]).assert_leak("heap", "leak_malloc", 300, 3);
    assert!(
        err.contains("memtrace: 1 log of 1 process in memtrace.heap.2.2/ (")
            && err.contains(" — memtrace report memtrace.heap.2.2/"),
        "{err}"
    );
}
