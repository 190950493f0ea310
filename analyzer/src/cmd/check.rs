//! `memtrace check [OPTIONS] (LOG... | -- CMD ARGS...)`: the CI leak gate.
//!
//! ## Steps
//! 1. Settings: the command line, else the `[check]` table of the config
//!    file (`--config`, or the first `.memtrace.toml` / `memtrace.toml` in the
//!    current directory or its ancestors; paths in it are relative to it),
//!    else the defaults.
//! 2. Suppression files and the baseline are read before anything runs, so
//!    a mistake in them fails fast (status 2).
//! 3. With a command: it runs as under `memtrace run` (forks and execs
//!    followed), its logs going to `-o`, to a run directory of its own in the
//!    current directory with `--keep-logs` (`super::rundir`), or else to a
//!    temporary directory that is removed when the check passes and kept
//!    when it fails, so that what failed can be read. Whenever the logs are
//!    kept, one line names their directory and how to read it. Otherwise the
//!    logs given are read.
//! 4. Every log is analyzed and judged ([`memtrace_analyzer::gate`]); the
//!    summary goes to stderr, `--json`, `--junit` and `--xml` files are written,
//!    `--gen-suppressions` entries go to stderr or their own file.
//! 5. Exit status, first that applies: 2 when memtrace failed (a log could
//!    not be read, no log was written); the command's own status when it
//!    failed; 2 ([`NOTHING_JUDGED`]) when no process was judged; `--error-exitcode` (default [`DEFAULT_ERROR_EXITCODE`]) when a
//!    rule failed; else 0.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use memtrace_analyzer::analysis::reach::{Heuristics, Kind};
use memtrace_analyzer::gate::suppress::{self, SuppressionFile};
use memtrace_analyzer::gate::{self as check, Baseline, Gate, Rules, Tolerance, Verdict};
use memtrace_analyzer::render::verdict::{self as render, GenFormats, JCommand};
use memtrace_analyzer::report::Report;
use serde::Deserialize;

use crate::args::CheckArgs;

/// Exit status when a rule fails, unless `--error-exitcode` says otherwise
/// (LeakSanitizer's).
pub const DEFAULT_ERROR_EXITCODE: u8 = crate::exit::LEAKED;

/// Exit status when no process was judged (every log skipped: replaced by
/// exec, killed, not selected, its malloc not interposed): memtrace could
/// not do its job, as when a log cannot be read.
pub const NOTHING_JUDGED: u8 = crate::exit::NOTHING_JUDGED;

/// Default allowed peak growth over a baseline.
const DEFAULT_PEAK_TOLERANCE: Tolerance = Tolerance::Percent(5.0);

/// Config file names looked for, in each directory from the current one up.
const CONFIG_NAMES: [&str; 2] = [".memtrace.toml", "memtrace.toml"];

/// A size in the config file: a number of bytes or a string like "4k".
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self, key: &str) -> anyhow::Result<u64> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(s) => {
                memtrace_analyzer::units::parse_size(s).map_err(|e| anyhow::anyhow!("{key}: {e}"))
            }
        }
    }

    fn tolerance(&self, key: &str) -> anyhow::Result<Tolerance> {
        match self {
            Size::Bytes(n) => Ok(Tolerance::Bytes(*n)),
            Size::Text(s) => Tolerance::parse(s).map_err(|e| anyhow::anyhow!("{key}: {e}")),
        }
    }
}

/// The config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    check: Config,
}

/// Its `[check]` table: the options' long names.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    max_leaked_bytes: Option<Size>,
    max_leaked_blocks: Option<u64>,
    max_stack_leaked_bytes: Option<Size>,
    max_stack_leaked_blocks: Option<u64>,
    mmap_leaks: Option<bool>,
    max_peak: Option<Size>,
    suppressions: Option<Vec<PathBuf>>,
    baseline: Option<PathBuf>,
    tolerance: Option<Size>,
    peak_tolerance: Option<Size>,
    exe: Option<Vec<String>>,
    error_exitcode: Option<u8>,
    default_suppressions: Option<bool>,
    leak_kinds: Option<String>,
    leak_check_heuristics: Option<String>,
}

/// Finds and reads the config file; `None` when there is none.
fn config(a: &CheckArgs) -> anyhow::Result<Option<(PathBuf, Config)>> {
    let path = if a.no_config {
        return Ok(None);
    } else if let Some(p) = &a.config {
        p.clone()
    } else {
        let cwd = std::env::current_dir().context("cannot determine the current directory")?;
        let found = cwd
            .ancestors()
            .flat_map(|d| CONFIG_NAMES.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file());
        match found {
            Some(p) => p,
            None => return Ok(None),
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))?;
    Ok(Some((path, file.check)))
}

/// Everything the check is to do, merged from the command line and config.
struct Settings {
    rules: Rules,
    suppressions: Vec<PathBuf>,
    baseline: Option<PathBuf>,
    exe: Vec<String>,
    error_exitcode: u8,
    default_suppressions: bool,
    /// The leak heuristics of the reachability scan.
    heuristics: Heuristics,
}

fn settings(a: &CheckArgs) -> anyhow::Result<Settings> {
    let (base, c) = match config(a)? {
        Some((path, c)) => {
            eprintln!("memtrace check: settings from {}", path.display());
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (dir, c)
        }
        None => (PathBuf::new(), Config::default()),
    };
    let size = |cli: Option<u64>, cfg: &Option<Size>, key: &str| -> anyhow::Result<Option<u64>> {
        match (cli, cfg) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(s)) => s.bytes(key).map(Some),
            (None, None) => Ok(None),
        }
    };
    let tol = |cli: &Option<String>, cfg: &Option<Size>, key: &str, default: Tolerance| match (
        cli, cfg,
    ) {
        (Some(s), _) => Tolerance::parse(s).map_err(|e| anyhow::anyhow!("--{key}: {e}")),
        (None, Some(s)) => s.tolerance(key),
        (None, None) => Ok(default),
    };
    let rules = Rules {
        max_leaked_bytes: size(a.max_leaked_bytes, &c.max_leaked_bytes, "max-leaked-bytes")?,
        max_leaked_blocks: a.max_leaked_blocks.or(c.max_leaked_blocks),
        max_stack_leaked_bytes: size(
            a.max_stack_leaked_bytes,
            &c.max_stack_leaked_bytes,
            "max-stack-leaked-bytes",
        )?,
        max_stack_leaked_blocks: a.max_stack_leaked_blocks.or(c.max_stack_leaked_blocks),
        mmap_leaks: a.mmap_leaks.or(c.mmap_leaks).unwrap_or(false),
        max_peak: size(a.max_peak, &c.max_peak, "max-peak")?,
        tolerance: tol(&a.tolerance, &c.tolerance, "tolerance", Tolerance::Bytes(0))?,
        peak_tolerance: tol(
            &a.peak_tolerance,
            &c.peak_tolerance,
            "peak-tolerance",
            DEFAULT_PEAK_TOLERANCE,
        )?,
        leak_kinds: a
            .leak_kinds
            .as_deref()
            .or(c.leak_kinds.as_deref())
            .map(leak_kinds)
            .transpose()?,
    };
    let mut suppressions: Vec<PathBuf> = c
        .suppressions
        .unwrap_or_default()
        .into_iter()
        .map(|p| base.join(p))
        .collect();
    suppressions.extend(a.suppressions.iter().cloned());
    Ok(Settings {
        rules,
        suppressions,
        baseline: a.baseline.clone().or(c.baseline.map(|p| base.join(p))),
        exe: if a.exe.is_empty() {
            c.exe.unwrap_or_default()
        } else {
            a.exe.clone()
        },
        error_exitcode: a
            .error_exitcode
            .or(c.error_exitcode)
            .unwrap_or(DEFAULT_ERROR_EXITCODE),
        default_suppressions: !a.no_default_suppressions && c.default_suppressions.unwrap_or(true),
        heuristics: match (a.leak_check_heuristics, &c.leak_check_heuristics) {
            (Some(h), _) => h,
            (None, Some(v)) => {
                Heuristics::parse(v).map_err(|e| anyhow::anyhow!("leak-check-heuristics: {e}"))?
            }
            (None, None) => Heuristics::ALL,
        },
    })
}

/// Parses `--leak-kinds` (valgrind's `--errors-for-leak-kinds` syntax).
pub fn leak_kinds(s: &str) -> anyhow::Result<Vec<Kind>> {
    Kind::parse_list(s).map_err(|e| anyhow::anyhow!("leak-kinds: {e}"))
}

fn gen_formats(s: &str) -> anyhow::Result<GenFormats> {
    let mut f = GenFormats {
        memtrace: false,
        valgrind: false,
        lsan: false,
    };
    for part in s.split(',').map(str::trim) {
        match part {
            "memtrace" => f.memtrace = true,
            "valgrind" => f.valgrind = true,
            "lsan" => f.lsan = true,
            "all" => {
                f = GenFormats {
                    memtrace: true,
                    valgrind: true,
                    lsan: true,
                }
            }
            other => bail!(
                "--gen-suppressions: unknown format {other:?} (memtrace, valgrind, lsan or all)"
            ),
        }
    }
    Ok(f)
}

/// Reads a baseline: JSON when the file starts with `{`, else a log; of
/// classified leaks, the blocks of `kinds` (those that count).
fn baseline(path: &Path, kinds: &[Kind]) -> anyhow::Result<Baseline> {
    let mut head = [0u8; 64];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("cannot read the baseline {}", path.display()))?;
    if head[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the baseline {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("the baseline {} is not valid JSON", path.display()))?;
        return Baseline::from_json(&doc, path, kinds)
            .map_err(|e| anyhow::anyhow!("the baseline {}: {e}", path.display()));
    }
    let r = memtrace_analyzer::analyze(path, &memtrace_analyzer::Options::default())
        .with_context(|| format!("cannot use {} as a baseline", path.display()))?;
    Ok(Baseline::from_reports(
        std::slice::from_ref(&r),
        path,
        kinds,
    ))
}

/// Opens `path` for writing (`-`: stdout) and runs `write` on it.
fn write_to(
    path: &Path,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    let result = if path == Path::new("-") {
        let mut out = io::stdout().lock();
        write(&mut out).and_then(|()| out.flush())
    } else {
        let file = memtrace_analyzer::outfile::create_output(path, false)
            .with_context(|| format!("cannot create the {what} file {}", path.display()))?;
        let mut out = BufWriter::new(file);
        write(&mut out).and_then(|()| out.into_inner().map_err(|e| e.into_error())?.sync_all())
    };
    result.with_context(|| format!("cannot write the {what} file {}", path.display()))
}

/// A temporary directory for the logs of a checked command: created anew
/// (never an existing one, never through a symlink: `mkdir` fails on any name
/// taken), mode 0700, under a name no one can guess ahead of the run
/// (`memtrace-check.PID.RANDOM` in `$TMPDIR`, a sticky /tmp by default).
fn temp_log_dir() -> anyhow::Result<PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for _ in 0..100u32 {
        // RandomState's keys come from the OS's randomness.
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let d = base.join(format!("memtrace-check.{}.{r:016x}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", d.display()));
            }
        }
    }
    bail!("cannot create a log directory in {}", base.display())
}

/// Whether the log's process ended through `exit` or `_exit` (else, or if
/// the header cannot be read, the analysis says why).
fn reached_exit(path: &Path) -> bool {
    use memtrace_format::ExitHow;
    memtrace_analyzer::log::Log::open(path)
        .ok()
        .and_then(|log| {
            let h = log.header().ok()?;
            Some(matches!(
                ExitHow::from_u32(h.state),
                Some(ExitHow::Exit | ExitHow::UnderscoreExit)
            ))
        })
        .unwrap_or(true)
}

/// Adds each judged program's own `__lsan_default_suppressions()`, as LSan
/// applies them (to that program's processes), and says so.
fn program_suppressions(reports: &[Report], files: &mut Vec<SuppressionFile>) {
    use memtrace_analyzer::gate::suppress::program::{self, ProgramSuppressions};
    let mut seen = std::collections::HashSet::new();
    for r in reports {
        let exe = &r.process.exe;
        if exe.is_empty() || !seen.insert(exe.clone()) {
            continue;
        }
        match program::lsan_defaults(Path::new(exe)) {
            Ok(ProgramSuppressions::None) => {}
            Ok(ProgramSuppressions::Found(f)) => {
                eprintln!(
                    "memtrace check: {exe}: {} from its {}()",
                    memtrace_analyzer::units::plural(
                        f.entries.len() as u64,
                        "suppression",
                        "suppressions"
                    ),
                    program::HOOK
                );
                files.push(f);
            }
            Ok(ProgramSuppressions::Unreadable(why)) => {
                eprintln!("memtrace check: warning: {exe}: {why}: its suppressions are not applied")
            }
            Err(e) => eprintln!(
                "memtrace check: warning: cannot read {}() of {exe}: {e}",
                program::HOOK
            ),
        }
    }
}

/// Runs the subcommand; returns the exit status (module docs, step 5).
pub fn run(a: &CheckArgs) -> anyhow::Result<u8> {
    match (a.logs.is_empty(), a.command.is_empty()) {
        (true, true) => bail!("nothing to check: give logs, or a command after `--`"),
        (false, false) => bail!("give logs or a command after `--`, not both"),
        _ => {}
    }
    let s = settings(a)?;
    let generate = match (&a.gen_suppressions, &a.gen_suppressions_file) {
        (Some(f), _) => Some(gen_formats(f)?),
        (None, Some(_)) => Some(gen_formats("memtrace,valgrind")?),
        (None, None) => None,
    };
    let mut files = suppression_files(&s)?;
    let base = s
        .baseline
        .as_deref()
        .map(|p| baseline(p, s.rules.counted_kinds()))
        .transpose()?;

    let Some(inputs) = inputs(a, &s)? else {
        return Ok(crate::exit::ERROR);
    };
    let (reports, failed_logs) = analyze_logs(&inputs.logs);
    program_suppressions(&reports, &mut files);
    let verdict = check::evaluate(
        &reports,
        &Gate {
            rules: &s.rules,
            suppressions: &files,
            baseline: base.as_ref(),
            select: &s.exe,
        },
    );

    let command_failed = inputs.command_status.filter(|st| !st.success());
    let status = exit_status(failed_logs, command_failed, &verdict, s.error_exitcode);
    tell(&verdict, a.top, command_failed, status)?;
    write_outputs(a, &verdict, inputs.command_status, status, generate)?;
    let passed = verdict.passed() && status == 0;
    if let Some(d) = &inputs.temp_dir
        && passed
    {
        let _ = std::fs::remove_dir_all(d);
    } else if let Some(d) = &inputs.dir {
        eprintln!("{}", kept_line(d, inputs.logs.len(), &verdict));
    }
    Ok(status)
}

/// The one line that names the directory of the checked command's logs
/// when they are kept, and how to read them: the tree, or one failing
/// process's full report.
fn kept_line(dir: &Path, logs: usize, verdict: &Verdict) -> String {
    let dir = dir.display();
    let logs = memtrace_analyzer::units::plural(logs as u64, "log", "logs");
    let failing = verdict
        .processes
        .iter()
        .find(|p| p.skipped.is_none() && !p.passed());
    match failing.map(|p| p.report.process.pid) {
        Some(pid) => format!(
            "memtrace check: {logs} kept in {dir}/ — memtrace report {dir}/ (--pid {pid}: a failing process)"
        ),
        None => format!("memtrace check: {logs} kept in {dir}/ — memtrace report {dir}/"),
    }
}

/// The suppression files of the settings, then the built-in ones unless turned off;
/// says how many entries of each were of other kinds than leaks (step 2).
fn suppression_files(s: &Settings) -> anyhow::Result<Vec<SuppressionFile>> {
    let mut files: Vec<SuppressionFile> = s
        .suppressions
        .iter()
        .map(|p| suppress::load(p).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<_>>()?;
    if s.default_suppressions {
        let builtin = suppress::parse(check::DEFAULT_SUPPRESSIONS, Path::new("<built-in>"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        files.push(builtin);
    }
    for f in &files {
        if f.ignored > 0 {
            eprintln!(
                "memtrace check: {}: {} entries of other kinds than leaks ignored",
                f.path.display(),
                f.ignored
            );
        }
    }
    Ok(files)
}

/// The logs to judge, and the command's outcome when there is one (step 3).
struct Inputs {
    logs: Vec<PathBuf>,
    /// The temporary directory of the command's logs (no `-o`, no `--keep-logs`).
    temp_dir: Option<PathBuf>,
    /// The directory of the command's logs, as the user would name it.
    dir: Option<PathBuf>,
    /// The command's exit status; `None` for logs given.
    command_status: Option<std::process::ExitStatus>,
}

/// The logs given, or those of the command, run as under `memtrace run` (step 3).
/// `None` when the command wrote no log: it has been said, nothing can be judged.
fn inputs(a: &CheckArgs, s: &Settings) -> anyhow::Result<Option<Inputs>> {
    if a.command.is_empty() {
        return Ok(Some(Inputs {
            logs: a.logs.clone(),
            temp_dir: None,
            dir: None,
            command_status: None,
        }));
    }
    let mut temp_dir = None;
    let output = match &a.output {
        Some(o) => Some(o.clone()),
        None if a.keep_logs => None, // a run directory, as `memtrace run`'s
        None => {
            let d = temp_log_dir()?;
            let o = d.join("%e.%p.mtr").to_string_lossy().into_owned();
            temp_dir = Some(d);
            Some(o)
        }
    };
    let traced = super::trace::trace(&super::trace::TraceOptions {
        command: &a.command,
        output: output.as_deref(),
        sample: None,
        pack: temp_dir.is_none(),
        quiet: true,
        verbose: false,
        kernel_interval: None,
        snapshot_signal: a.snapshot_signal,
        reach: true,
        heuristics: s.heuristics,
    })?;
    if traced.logs.is_empty() {
        if let Some(d) = &temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        eprintln!(
            "memtrace check: error: nothing was traced, so nothing can be judged (is the program static or setuid?)"
        );
        return Ok(None);
    }
    Ok(Some(Inputs {
        logs: traced.logs,
        temp_dir,
        dir: Some(traced.dir),
        command_status: Some(traced.status),
    }))
}

/// Analyzes every log (step 4): the reports, and how many logs could not be read
/// (memtrace's failure; each is said).
fn analyze_logs(logs: &[PathBuf]) -> (Vec<Report>, usize) {
    let mut reports: Vec<Report> = Vec::with_capacity(logs.len());
    let mut failed_logs = 0;
    for l in logs {
        // A fork child's parent's log is looked for among the others first;
        // not for a process that is not judged (replaced by exec, killed):
        // it costs a pass over the parent's log.
        let given = memtrace_analyzer::Options {
            peers: logs.to_vec(),
            no_inherit: !reached_exit(l),
            ..Default::default()
        };
        let (opts, _bar) = crate::progress::attach(l, given);
        match memtrace_analyzer::analyze(l, &opts) {
            Ok(r) => {
                for w in &r.warnings {
                    eprintln!("memtrace check: warning: {w}");
                }
                reports.push(r);
            }
            Err(e) => {
                eprintln!("memtrace check: error: {e}");
                failed_logs += 1;
            }
        }
    }
    (reports, failed_logs)
}

/// The exit status, the first that applies (step 5).
fn exit_status(
    failed_logs: usize,
    command_failed: Option<std::process::ExitStatus>,
    verdict: &Verdict,
    error_exitcode: u8,
) -> u8 {
    if failed_logs > 0 {
        crate::exit::ERROR
    } else if let Some(st) = command_failed {
        super::trace::exit_code(st)
    } else if verdict.judged() == 0 {
        // A gate that judged nothing never passes.
        NOTHING_JUDGED
    } else if !verdict.passed() {
        error_exitcode
    } else {
        0
    }
}

/// The summary on stderr, then why the status is not the gate's own: the command
/// failed, or nothing was judged.
fn tell(
    verdict: &Verdict,
    top: usize,
    command_failed: Option<std::process::ExitStatus>,
    status: u8,
) -> anyhow::Result<()> {
    render::summary(verdict, top, &mut io::stderr().lock())?;
    if let Some(st) = command_failed {
        eprintln!(
            "memtrace check: the command failed ({st}): memtrace exits with its status, {}",
            super::trace::exit_code(st)
        );
    }
    if verdict.judged() == 0 {
        eprintln!(
            "memtrace check: error: no process was judged (see the reasons above): the gate checked nothing, exit status {status}"
        );
    }
    Ok(())
}

/// The `--json`, `--junit` and `--xml` files, and the `--gen-suppressions` entries
/// (to their file, or stderr).
fn write_outputs(
    a: &CheckArgs,
    verdict: &Verdict,
    command_status: Option<std::process::ExitStatus>,
    status: u8,
    generate: Option<GenFormats>,
) -> anyhow::Result<()> {
    let argv: Vec<String> = a
        .command
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if let Some(path) = &a.json {
        let cmd = command_status.map(|st| JCommand {
            argv: &argv,
            exit_status: st.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&st),
        });
        write_to(path, "JSON", |out| render::json(verdict, cmd, status, out))?;
    }
    if let Some(path) = &a.junit {
        write_to(path, "JUnit", |out| render::junit(verdict, out))?;
    }
    if let Some(path) = &a.xml {
        write_to(path, "memcheck XML", |out| {
            render::memcheck_xml(verdict, out)
        })?;
    }
    if let Some(formats) = generate {
        match &a.gen_suppressions_file {
            Some(path) => write_to(path, "suppressions", |out| {
                render::gen_suppressions(verdict, formats, out)
            })?,
            None => {
                let mut out = io::stderr().lock();
                writeln!(
                    out,
                    "memtrace check: suppressions for the leaks that failed:"
                )?;
                render::gen_suppressions(verdict, formats, &mut out)?;
            }
        }
    }
    Ok(())
}
