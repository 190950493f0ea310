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
//! - valgrind, when installed, is the independent oracle for heap totals.

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

/// Is valgrind installed? (`MEMTRACE_E2E_NO_VALGRIND=1` pretends it is not.)
pub fn have_valgrind() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        std::env::var_os("MEMTRACE_E2E_NO_VALGRIND").is_none()
            && Command::new("valgrind")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// Runs fixture `name` under memcheck (stdout piped, as under the preload) and parses
/// its HEAP SUMMARY; `None` if valgrind is not installed.
pub fn valgrind<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Option<Valgrind> {
    if !have_valgrind() {
        return None;
    }
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let mut cmd = clean_command("valgrind");
    if has_tls_segment(&preload_lib()) {
        // Give the process the same shape as under the preload: see libtlstwin.c.
        cmd.env("LD_PRELOAD", fixture("libtlstwin"));
    }
    cmd.current_dir(dir.path())
        .arg("--leak-check=summary")
        .arg(fixture(name))
        .args(args);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(600));
    Some(parse_heap_summary(&String::from_utf8_lossy(&out.stderr)))
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

/// The oracle for a fixture: valgrind's numbers if installed, else the numbers its
/// header comment states (`fallback`), which were taken from valgrind on Debian 12.
pub fn oracle<S: AsRef<OsStr>>(name: &str, args: &[S], fallback: Valgrind) -> Valgrind {
    valgrind(name, args).unwrap_or(fallback)
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
