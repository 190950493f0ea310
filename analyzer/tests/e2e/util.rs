//! The end-to-end harness: builds the fixtures of `tests/fixtures/` once per test run,
//! runs them under `LD_PRELOAD=libmemtrace.so` with their logs in a per-test temporary
//! directory, and reads `memtrace report --format json` back as a [`Report`].
//!
//! Where things come from:
//! - `memtrace`: `CARGO_BIN_EXE_memtrace` (cargo builds it for this test binary).
//! - `libmemtrace.so`: env `MEMTRACE_PRELOAD`, else next to the `memtrace` binary
//!   (`target/debug/`). `cargo test` does not build a cdylib: run `cargo build --workspace`
//!   first (`scripts/test.sh` does).
//! - Fixtures: `tests/fixtures/NAME.{c,cpp,rs}`, compiled with `gcc -O1 -g`, `g++ -O1 -g`
//!   and `rustc -O -g` into `CARGO_TARGET_TMPDIR/e2e-fixtures/`; `libNAME.c` becomes a
//!   shared library `libNAME.so` (`-shared -fPIC`): only shared-library fixtures are
//!   named `lib*`.
//! - valgrind is the independent oracle for heap totals; like every tool the tests use,
//!   it must be installed (see [`require_tool`]).
//!
//! The policy for tools (valgrind, chromium, protoc, python3-protobuf, jemalloc, tcmalloc,
//! redis, ripgrep, the real programs...): every one is installed by `scripts/deps.sh`, and
//! a test that needs one either runs with it or fails, naming the Debian package to
//! install ([`require_tool`], [`missing_tool`]). No test returns early and passes, and no
//! environment variable turns such a test green. Tests that need root fail likewise as
//! another user ([`require_root`]).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long any one program may run before the test gives up on it.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace root (the parent of the analyzer package).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("analyzer has a parent directory")
        .to_path_buf()
}

/// The `memtrace` binary under test.
pub fn memtrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memtrace"))
}

/// The preload library under test.
pub fn preload_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = match std::env::var_os("MEMTRACE_PRELOAD") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => memtrace_bin()
                .parent()
                .expect("memtrace binary has a directory")
                .join("libmemtrace.so"),
        };
        assert!(
            lib.is_file(),
            "{} not found: build it first with `cargo build --workspace` \
             (scripts/test.sh does), or point MEMTRACE_PRELOAD at it",
            lib.display()
        );
        lib.canonicalize().expect("canonicalize the preload path")
    })
    .clone()
}

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn fixture_src_dir() -> PathBuf {
    root().join("tests").join("fixtures")
}

fn fixture_out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-fixtures");
    std::fs::create_dir_all(&d).expect("create the fixture build directory");
    d
}

/// The path of the built fixture `name` (`heap`, `cpp`, `rust_leak`, `libdlleak`, ...),
/// building it on first use in this test run.
pub fn fixture(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, Arc<OnceLock<PathBuf>>>> = Mutex::new(BTreeMap::new());
    let cell = BUILT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| build_fixture(name)).clone()
}

fn build_fixture(name: &str) -> PathBuf {
    let src_dir = fixture_src_dir();
    let find = |ext: &str| {
        let p = src_dir.join(format!("{name}.{ext}"));
        p.is_file().then_some(p)
    };
    let out_dir = fixture_out_dir();
    let shared = name.starts_with("lib");
    let out = out_dir.join(if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    });
    // Build under a private name and rename, so a half-written file is never run.
    let tmp = out_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut cmd;
    if let Some(src) = find("c") {
        cmd = Command::new(std::env::var_os("CC").unwrap_or_else(|| "gcc".into()));
        cmd.args(["-O1", "-g", "-Wall"]);
        if shared {
            cmd.args(["-shared", "-fPIC"]);
        }
        cmd.arg("-o").arg(&tmp).arg(&src).args(["-pthread", "-ldl"]);
    } else if let Some(src) = find("cpp") {
        cmd = Command::new(std::env::var_os("CXX").unwrap_or_else(|| "g++".into()));
        cmd.args(["-O1", "-g", "-Wall"]);
        if shared {
            cmd.args(["-shared", "-fPIC"]);
        }
        cmd.arg("-o").arg(&tmp).arg(&src);
    } else if let Some(src) = find("rs") {
        cmd = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
        cmd.args(["-O", "-g", "--edition", "2021", "--crate-name", name])
            .arg("-o")
            .arg(&tmp)
            .arg(&src);
    } else {
        panic!(
            "no fixture source {name}.{{c,cpp,rs}} in {}",
            src_dir.display()
        );
    }
    // A fixture may ask for extra linker arguments in a `link-flags:` line of
    // its header comment (`$ORIGIN` is passed through literally).
    let src_text = ["c", "cpp", "rs"]
        .iter()
        .find_map(|e| find(e))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    for line in src_text.lines().filter(|l| l.contains("link-flags:")) {
        let flags = line.split("link-flags:").nth(1).unwrap_or("");
        cmd.args(flags.split_whitespace().filter(|f| *f != "*/"));
    }
    let out_put = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out_put.status.success(),
        "building fixture {name} failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&out_put.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the built fixture into place");
    out
}

// ---------------------------------------------------------------------------------------
// Running programs
// ---------------------------------------------------------------------------------------

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
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    collect_output(child, timeout, &format!("{cmd:?}"))
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

/// All `*.mtr*` files in `dir` (a suffix `.1`, `.2`, ... follows a taken name), sorted.
pub fn logs_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".mtr"))
        })
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

// ---------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------

/// Runs `memtrace report --format json LOG`, asserting success, and parses the output.
pub fn report(log: &Path) -> Report {
    report_with(log, &[])
}

/// [`report`] with extra options.
pub fn report_with(log: &Path, opts: &[&str]) -> Report {
    let mut cmd = memtrace();
    cmd.arg("report")
        .arg("--format")
        .arg("json")
        .args(opts)
        .arg(log);
    let out = output_with_timeout(&mut cmd, TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "memtrace report {} failed: {:?}\n{stderr}",
        log.display(),
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "memtrace report panicked:\n{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Report {
        v,
        log: log.to_path_buf(),
    }
}

/// Totals over the leak (or peak or brk) entries whose stack matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Site {
    pub bytes: u64,
    pub count: u64,
    /// How many entries matched (stacks are grouped by the analyzer; not asserted).
    pub entries: u64,
}

/// A parsed JSON report.
pub struct Report {
    pub v: Value,
    pub log: PathBuf,
}

/// The function name of a frame, if symbolized.
pub fn frame_function(frame: &Value) -> Option<&str> {
    frame.get("function").and_then(Value::as_str)
}

/// Does any frame of `entry["stack"]` satisfy `pred`?
pub fn stack_has(entry: &Value, pred: &dyn Fn(&Value) -> bool) -> bool {
    entry
        .get("stack")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(pred))
}

/// A frame predicate: the function is exactly `name`.
pub fn fn_is(name: &str) -> impl Fn(&Value) -> bool + '_ {
    move |f| frame_function(f) == Some(name)
}

/// A frame predicate: the function name contains `part` (for Rust paths with a hash).
pub fn fn_contains(part: &str) -> impl Fn(&Value) -> bool + '_ {
    move |f| frame_function(f).is_some_and(|n| n.contains(part))
}

impl Report {
    /// `summary[key]` as a number.
    pub fn summary(&self, key: &str) -> u64 {
        self.v["summary"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("summary.{key} is not a number: {}", self.v["summary"]))
    }

    /// `summary[key]` as a bool.
    pub fn summary_bool(&self, key: &str) -> bool {
        self.v["summary"][key]
            .as_bool()
            .unwrap_or_else(|| panic!("summary.{key} is not a bool: {}", self.v["summary"]))
    }

    /// `process[key]`.
    pub fn process(&self, key: &str) -> &Value {
        &self.v["process"][key]
    }

    fn array(&self, key: &str) -> &[Value] {
        self.v[key]
            .as_array()
            .unwrap_or_else(|| panic!("report.{key} is not an array"))
            .as_slice()
    }

    /// The leak entries of `kind` ("heap" or "mmap").
    pub fn leaks(&self, kind: &str) -> Vec<&Value> {
        self.array("leaks")
            .iter()
            .filter(|l| l["kind"] == kind)
            .collect()
    }

    /// Totals over the `kind` leaks whose stack has a frame satisfying `pred`.
    pub fn leak_site_by(&self, kind: &str, pred: &dyn Fn(&Value) -> bool) -> Site {
        sum(self.leaks(kind).into_iter().filter(|l| stack_has(l, pred)))
    }

    /// Totals over the `kind` leaks whose stack has a frame in function `name`.
    pub fn leak_site(&self, kind: &str, name: &str) -> Site {
        self.leak_site_by(kind, &fn_is(name))
    }

    /// Totals over the `peak` entries whose stack has a frame in function `name`.
    pub fn peak_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("peak").iter().filter(|l| stack_has(l, &f)))
    }

    /// Totals over the `allocated` entries whose stack has a frame in function `name`.
    pub fn allocated_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("allocated").iter().filter(|l| stack_has(l, &f)))
    }

    /// Totals over the `temporary` entries whose stack has a frame in function `name`.
    pub fn temporary_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("temporary").iter().filter(|l| stack_has(l, &f)))
    }

    /// Totals over the `brk` entries whose stack has a frame in function `name`.
    pub fn brk_site(&self, name: &str) -> Site {
        let f = fn_is(name);
        sum(self.array("brk").iter().filter(|l| stack_has(l, &f)))
    }

    /// The first frame (innermost first) in function `name` of any `kind` leak.
    pub fn leak_frame(&self, kind: &str, name: &str) -> Option<&Value> {
        self.leaks(kind)
            .into_iter()
            .filter_map(|l| l["stack"].as_array())
            .flat_map(|s| s.iter())
            .find(|f| frame_function(f) == Some(name))
    }

    /// A short dump of the leaks for assertion messages: bytes, count, functions.
    pub fn describe_leaks(&self) -> String {
        let mut s = format!(
            "log {}\nsummary {}\n",
            self.log.display(),
            self.v["summary"]
        );
        for l in self.array("leaks") {
            let fns: Vec<&str> = l["stack"]
                .as_array()
                .map(|st| {
                    st.iter()
                        .map(|f| frame_function(f).unwrap_or("?"))
                        .collect()
                })
                .unwrap_or_default();
            s += &format!(
                "  {} {} bytes in {}: {}\n",
                l["kind"],
                l["bytes"],
                l["count"],
                fns.join(" <- ")
            );
        }
        s
    }

    /// Asserts the totals of the `kind` leaks in function `name`.
    pub fn assert_leak(&self, kind: &str, name: &str, bytes: u64, count: u64) {
        let s = self.leak_site(kind, name);
        assert_eq!(
            (s.bytes, s.count),
            (bytes, count),
            "{kind} leaks in {name}: (bytes, count)\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts no `kind` leak has function `name` on its stack.
    pub fn assert_no_leak(&self, kind: &str, name: &str) {
        let s = self.leak_site(kind, name);
        assert_eq!(
            s,
            Site::default(),
            "no {kind} leak expected in {name}\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts the heap totals `leaked_heap_bytes` and `leaked_heap_blocks`.
    pub fn assert_heap_leaked(&self, bytes: u64, blocks: u64) {
        assert_eq!(
            (
                self.summary("leaked_heap_bytes"),
                self.summary("leaked_heap_blocks")
            ),
            (bytes, blocks),
            "(leaked_heap_bytes, leaked_heap_blocks)\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts the log was complete: nothing lost, torn or truncated.
    pub fn assert_complete(&self) {
        assert_eq!(
            self.summary("events_lost"),
            0,
            "events_lost\n{}",
            self.describe_leaks()
        );
        assert_eq!(
            self.summary("torn_records"),
            0,
            "torn_records\n{}",
            self.describe_leaks()
        );
        assert!(
            !self.summary_bool("truncated"),
            "truncated\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts no hook was entered re-entrantly (`summary.nested_hooks == 0`): the hook path
    /// never allocates through the hooked allocator. Only for fixtures where no signal
    /// handler can interrupt a hook.
    pub fn assert_no_nested_hooks(&self) {
        assert_eq!(
            self.summary("nested_hooks"),
            0,
            "nested_hooks\n{}",
            self.describe_leaks()
        );
    }

    /// Asserts how the process ended (`process.ended`).
    pub fn assert_ended(&self, how: &str) {
        assert_eq!(
            self.process("ended"),
            how,
            "process.ended; process = {}",
            self.v["process"]
        );
    }
}

fn sum<'a>(entries: impl Iterator<Item = &'a Value>) -> Site {
    let mut s = Site::default();
    for e in entries {
        s.bytes += e["bytes"].as_u64().expect("entry.bytes is a number");
        // `brk` entries have no count.
        s.count += e.get("count").and_then(Value::as_u64).unwrap_or(0);
        s.entries += 1;
    }
    s
}

// ---------------------------------------------------------------------------------------
// valgrind, the independent oracle
// ---------------------------------------------------------------------------------------

/// What memcheck's HEAP SUMMARY says about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Valgrind {
    pub in_use_bytes: u64,
    pub in_use_blocks: u64,
    pub allocs: u64,
    pub frees: u64,
    pub bytes_allocated: u64,
}

/// Fails the test: `what` is missing; Debian's `package` provides it. The one message of
/// the tool policy (see the module comment).
#[track_caller]
pub fn missing_tool(what: &str, package: &str) -> ! {
    panic!(
        "{what} is not installed, and this test needs it: install Debian's {package} \
         (`apt-get install {package}`; scripts/deps.sh installs every package the tests use). \
         A missing tool fails the test, never skips it."
    )
}

/// The path of `tool`, or a failed test naming Debian's `package` ([`missing_tool`]).
/// `tool` is a command looked up in PATH, or a path (any file: a program or a library).
#[track_caller]
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| missing_tool(tool, package))
}

/// `tool` as [`require_tool`] finds it, or `None`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Fails the test unless it runs as root (CI does): `why` says what needs root.
#[track_caller]
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root ({why}) and runs as uid {euid}: run the e2e tests as root, as \
         CI does. A missing privilege fails the test, never skips it."
    );
}

/// valgrind, required ([`require_tool`]): the path of the program.
#[track_caller]
pub fn require_valgrind() -> PathBuf {
    let vg = require_tool("valgrind", "valgrind");
    static WORKS: OnceLock<bool> = OnceLock::new();
    let works = *WORKS.get_or_init(|| {
        Command::new(&vg)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        works,
        "{} --version failed: valgrind is broken",
        vg.display()
    );
    vg
}

/// Runs fixture `name` under memcheck (stdout piped, as under the preload) and parses
/// its HEAP SUMMARY. valgrind is required.
#[track_caller]
pub fn valgrind<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Valgrind {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let mut cmd = clean_command(require_valgrind());
    if has_tls_segment(&preload_lib()) {
        // Give the process the same shape as under the preload: see libtlstwin.c.
        cmd.env("LD_PRELOAD", fixture("libtlstwin"));
    }
    cmd.current_dir(dir.path())
        .arg("--leak-check=summary")
        .arg(fixture(name))
        .args(args);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(600));
    parse_heap_summary(&String::from_utf8_lossy(&out.stderr))
}

/// Parses memcheck's HEAP SUMMARY (`in use at exit`, `total heap usage`) out of its output.
pub fn parse_heap_summary(text: &str) -> Valgrind {
    let nums = |line: &str| -> Vec<u64> {
        line.split(|c: char| !c.is_ascii_digit() && c != ',')
            .map(|w| w.replace(',', ""))
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().unwrap())
            .collect()
    };
    let after = |key: &str| {
        text.lines()
            .find_map(|l| l.split_once(key).map(|(_, rest)| nums(rest)))
            .unwrap_or_else(|| panic!("valgrind printed no `{key}` line:\n{text}"))
    };
    let in_use = after("in use at exit:");
    let total = after("total heap usage:");
    Valgrind {
        in_use_bytes: in_use[0],
        in_use_blocks: in_use[1],
        allocs: total[0],
        frees: total[1],
        bytes_allocated: total[2],
    }
}

/// Does the 64-bit little-endian ELF file at `path` have a PT_TLS program header?
pub fn has_tls_segment(path: &Path) -> bool {
    const PT_TLS: u32 = 7;
    let b = std::fs::read(path).expect("read the ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    assert!(
        b.len() > 64 && b[..4] == *b"\x7fELF" && b[4] == 2,
        "{} is not ELF64",
        path.display()
    );
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_TLS)
}

/// The oracle for a fixture: valgrind's numbers (valgrind is required), which must also
/// be the ones the test records (`recorded`, from its fixture's header: valgrind 3.19 on
/// Debian 12), so that the figures written in the test are checked too.
#[track_caller]
pub fn oracle<S: AsRef<OsStr>>(name: &str, args: &[S], recorded: Valgrind) -> Valgrind {
    let v = valgrind(name, args);
    assert_eq!(
        v, recorded,
        "valgrind today (left) vs the figures the test records for {name} (right): a \
         different valgrind or libc? Check, then update the test's figures"
    );
    v
}

/// Asserts a report's heap totals equal the oracle's.
pub fn assert_heap_totals(r: &Report, o: &Valgrind) {
    let got = Valgrind {
        in_use_bytes: r.summary("leaked_heap_bytes"),
        in_use_blocks: r.summary("leaked_heap_blocks"),
        allocs: r.summary("allocations"),
        frees: r.summary("frees"),
        bytes_allocated: r.summary("bytes_allocated"),
    };
    assert_eq!(
        got,
        *o,
        "memtrace (left) vs valgrind (right)\n{}",
        r.describe_leaks()
    );
}

/// Waits until `path` exists (a fixture's ready marker).
pub fn wait_for_file(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        if let Some(st) = child.try_wait().expect("wait for child") {
            panic!("fixture ended ({st:?}) before writing {}", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// Waiting for conditions (never for a fixed time)
// ---------------------------------------------------------------------------------------

/// Polls `cond` until it holds; fails the test, saying `what` was awaited, if it has not
/// within `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} for {what}, in vain"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` still runs: it exists and is not a zombie (as memtrace judges
/// a log's writer, analyzer/src/live.rs). An orphan's zombie may never be reaped in a
/// container whose init does not reap, so a zombie counts as ended.
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
    })
}

/// A FIFO a program waits on (`read x < FIFO` in a shell: a builtin, no child process)
/// until the test opens it: the test decides when the program goes on, instead of the
/// program sleeping for a time the test hopes is long enough.
pub struct Gate {
    path: PathBuf,
    held: Option<std::fs::File>,
}

impl Gate {
    /// A new FIFO `dir/name`.
    pub fn new(dir: &Path, name: &str) -> Gate {
        use std::os::unix::ffi::OsStrExt;
        let path = dir.join(name);
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Gate { path, held: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets the waiting program go: writes a line into the FIFO. The FIFO is opened
    /// read-write, which never blocks on Linux, and held open until the gate is
    /// dropped, so the line is there for a reader that opens it later.
    pub fn open(&mut self) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("open the FIFO {}: {e}", self.path.display()));
        f.write_all(b"go\n").expect("write to the FIFO");
        self.held = Some(f);
    }
}
