//! The process supervisor that `memtrace run` and `memtrace check` share:
//! runs a command with `libmemtrace.so` preloaded, then finds the logs the
//! run wrote ([`super::logs`]) and stamps the command's wait status into the
//! top process's log. Keeps the snapshot watcher ([`super::snapshot`]) and
//! the kernel sampler while the command runs.
//!
//! ## Steps
//! 1. The preload library is found by [`super::preload::library`]
//!    (`$MEMTRACE_PRELOAD`, else beside this executable, else the embedded
//!    copy). It is prepended to `LD_PRELOAD` (existing
//!    entries kept); `MEMTRACE_OUTPUT` gets the pattern made absolute, so a
//!    child that changes directory still writes where the user asked.
//!    Without a pattern, the logs go into a run directory of their own,
//!    `memtrace.<exe>.<pid>/` in the current directory, which the command's
//!    child makes between fork and exec ([`super::rundir`]). A log pool
//!    ([`super::logpool`], `MEMTRACE_LOG_POOL`) beside the logs keeps
//!    empty log files ready, which the preload takes instead of creating its
//!    log; it is removed when the command has ended.
//! 2. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to memtrace by another process
//!    (`kill`) are forwarded to the command. Signals from the terminal are
//!    not: the command is in the same process group and already got them.
//! 3. After the command ends, the logs of the run are the files in the
//!    pattern's directory whose names match the pattern (`%p` digits, `%e`
//!    any name, an optional `.N` suffix added by the preload when a name is
//!    taken), whose header says they started after the command was spawned,
//!    and whose process is the command or (transitively) a child of it.
//!    The top log is the command's own (its pid, not a fork child), the
//!    earliest if exec made several; the raw wait status goes into every
//!    log of the command's pid that is not a fork child's (each exec'd
//!    image of the command), via `pwrite`: status first, then the flag.
//! 4. While the command runs, a thread samples the kernel's accounting of
//!    every process of its tree (`--kernel-interval`, see
//!    `memtrace_analyzer::analysis::kernel`); the samples of each process that has
//!    ended are appended to its log.
//! 5. Unless `--raw` is given, each log whose process has ended is replaced
//!    by its packed form (`memtrace pack`, see `memtrace_analyzer::pack`); a
//!    fork child that still runs keeps its raw log, which it is still writing.
//!    A log whose process ended while the command ran, and was never sampled,
//!    was packed then ([`super::prepack`]); it is put in place with the rest.
//!    The command's own log is packed as it is written ([`super::livepack`]),
//!    and only what was left is packed at the end.
//!    In a run of 32 logs or more, a log of one chunk stays raw
//!    (`memtrace_analyzer::pack::worth_packing`: packing would not make it
//!    smaller on disk).
//! 6. memtrace exits with the command's exit status, or 128 + the signal
//!    that killed it.

use super::livepack::LivePacker;
use super::livescan::Socket;
use super::logpool::LogPool;
use super::logs::{Found, Pattern, find_logs};
use super::prepack::Prepacker;
use anyhow::Context;
use memtrace_analyzer::analysis::kernel::{self, PidSamples, Sampler};
use memtrace_analyzer::analysis::{lineage, reach};
use memtrace_analyzer::log::live::process_alive;
use memtrace_analyzer::pack::{LivePack, Staged};
use memtrace_format::hdr::off;
use memtrace_format::{HEADER_SIZE, Header};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

/// Untraced processes listed one per line; the rest are counted.
const UNTRACED_SHOWN: usize = 20;

/// Pid of the running command, for the signal handler (0: none yet).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals forwarded to the command.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Forwards a signal sent by a process (`si_code <= 0`: kill, sigqueue,
/// tgkill) to the command; terminal-generated ones (`si_code > 0`) reached
/// the command directly.
extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let pid = CHILD.load(Ordering::Relaxed);
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t pointer.
    let code = unsafe { (*info).si_code };
    if pid > 0 && code <= 0 {
        // SAFETY: kill(2) is async-signal-safe; a stale pid only fails with ESRCH.
        unsafe { libc::kill(pid, sig) };
    }
}

fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = forward as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `sa` is fully initialized and `forward` only calls
        // async-signal-safe functions; the old action is not needed.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The monotonic times a log's process image started and ended (the end
/// unknown for an abnormal end: until any time).
fn lifetime(path: &Path) -> Option<(u64, u64)> {
    let f = File::open(path).ok()?;
    let mut page = vec![0u8; HEADER_SIZE];
    f.read_exact_at(&mut page, 0).ok()?;
    let h = Header::parse(&page).ok()?;
    let end = if h.end_mono_ns != 0 {
        h.end_mono_ns
    } else {
        u64::MAX
    };
    Some((h.start_mono_ns, end))
}

/// Stores the raw wait status: status first, then the flag that validates it.
fn stamp_wait_status(path: &Path, status: i32) -> std::io::Result<()> {
    let f = memtrace_analyzer::outfile::open_log_for_update(path)?;
    f.write_all_at(&status.to_le_bytes(), off::RUN_WAIT_STATUS as u64)?;
    let mut flags = [0u8; 4];
    f.read_exact_at(&mut flags, off::RUN_FLAGS as u64)?;
    let flags = u32::from_le_bytes(flags) | 1;
    f.write_all_at(&flags.to_le_bytes(), off::RUN_FLAGS as u64)?;
    Ok(())
}

/// What [`trace`] is asked to do.
pub struct TraceOptions<'a> {
    pub command: &'a [OsString],
    /// The `-o` pattern, relative to the current directory; `None`: a run
    /// directory of its own (`super::rundir`).
    pub output: Option<&'a str>,
    pub sample: Option<u64>,
    /// Pack the logs of the processes that have ended.
    pub pack: bool,
    /// Say nothing about the logs unless something went wrong.
    pub quiet: bool,
    /// One line per log, not one for the run.
    pub verbose: bool,
    /// Sample the kernel's accounting of every process this often
    /// (`memtrace_analyzer::analysis::kernel`); `None`: not at all.
    pub kernel_interval: Option<std::time::Duration>,
    /// Classify the blocks live at exit by reachability
    /// (`memtrace_analyzer::analysis::reach`).
    pub reach: bool,
    /// The signal that asks a process for a snapshot while it runs
    /// (`cmd::snapshot`); 0: none.
    pub snapshot_signal: i32,
    /// memcheck's leak heuristics for the reachability scans, also passed to
    /// the command (`MEMTRACE_LEAK_HEURISTICS`).
    pub heuristics: reach::Heuristics,
}

/// A traced command's outcome.
pub struct Traced {
    pub status: std::process::ExitStatus,
    /// The run's logs, the command's own first.
    pub logs: Vec<PathBuf>,
    /// Their directory as the user would name it (`.` for the current one).
    pub dir: PathBuf,
}

/// The exit status that stands for `status`: its code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> u8 {
    crate::exit::of_status(status)
}

/// Runs the command under the preload and finds, stamps and packs its logs
/// (see the module docs).
pub fn trace(o: &TraceOptions) -> anyhow::Result<Traced> {
    let lib = super::preload::library()?;
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let Started {
        mut child,
        spawned,
        pat,
        output,
        run_dir,
        socket,
        pool,
    } = start(o, &lib, &cwd)?;
    let prog = &o.command[0];
    let pid = child.id();
    CHILD.store(pid as i32, Ordering::Relaxed);
    let sampler = o
        .kernel_interval
        .and_then(|interval| start_sampler(pid, interval, &pat, &lib));
    // Packing the logs of processes that end while the command runs (step 5).
    let prepacker = if o.pack {
        let sampled = sampler.as_ref().map(Sampler::sampled).unwrap_or_default();
        Prepacker::start(pat.clone(), pid, spawned, sampled).ok()
    } else {
        None
    };
    // Packing the command's own log while it runs (step 5).
    let livepacker = if o.pack {
        LivePacker::start(pat.clone(), pid, spawned, socket).ok()
    } else {
        None
    };
    let watcher = (o.snapshot_signal != 0).then(|| {
        let pat = pat.clone();
        let is_log = move |p: &Path| pat.owns(p);
        super::snapshot::Watcher::start(Box::new(is_log), o.quiet, o.heuristics)
    });
    wait_without_reaping(pid);
    CHILD.store(0, Ordering::Relaxed);
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {}", prog.to_string_lossy()))?;
    if let Some(w) = watcher {
        w.finish();
    }
    let samples = sampler.map(Sampler::finish).unwrap_or_default();
    let staged = prepacker.map(Prepacker::finish).unwrap_or_default();
    let (live, answered) = livepacker.map_or((None, 0), LivePacker::finish);
    if answered > 0 && o.verbose && !o.quiet {
        eprintln!("memtrace: the exit scan took the live blocks from the live packer");
    }
    let pooled = pool.map_or(0, LogPool::finish);
    if pooled > 0 && o.verbose && !o.quiet {
        eprintln!("memtrace: {pooled} log files were made ahead by the run's log pool");
    }

    let logs = find_logs(&pat, pid, spawned);
    add_kernel_samples(&logs, pid, &samples, &staged);
    let shown_dir = run_dir.as_ref().map(|d| d.shown.as_path());
    stamp_and_pack(o, &logs, pid, status.into_raw(), shown_dir, staged, live);
    if logs.is_empty() {
        if let Some(d) = &run_dir {
            // Nothing in it (it fails otherwise): no empty directory is left.
            let _ = std::fs::remove_dir(&d.path);
        }
        let reason = lineage::command_reason(&prog.to_string_lossy());
        eprintln!(
            "memtrace: warning: no log matching {} was written: {} is not traced ({})",
            output.display(),
            prog.to_string_lossy(),
            reason.text()
        );
    }
    tell_untraced(o, &logs);
    let dir = match &pat.dir_shown {
        d if d.as_os_str().is_empty() => PathBuf::from("."),
        d => d.clone(),
    };
    Ok(Traced {
        status,
        logs: logs.into_iter().map(|f| f.path).collect(),
        dir,
    })
}

/// A command started (step 1): its child, when, the pattern of its logs (as
/// the user would write it: `output`), its run directory if it has one.
struct Started {
    child: std::process::Child,
    spawned: SystemTime,
    pat: Pattern,
    output: PathBuf,
    run_dir: Option<super::rundir::RunDir>,
    /// Where the scanner at exit asks the live packer (`super::livepack`).
    socket: Option<Socket>,
    /// Log files made ahead (`super::logpool`).
    pool: Option<LogPool>,
}

/// Starts the command of `o` under the preload `lib`, its logs going to `-o`
/// or to a run directory of its own in `cwd` (`super::rundir`).
fn start(o: &TraceOptions, lib: &Path, cwd: &Path) -> anyhow::Result<Started> {
    // A bad `-o` pattern is said before anything runs.
    let asked = o.output.map(|out| Pattern::parse(out, cwd)).transpose()?;
    let (prog, args) = o.command.split_first().context("no command given")?;
    let mut env = environment(o, lib);
    let socket = o.pack.then(Socket::bind).and_then(Result::ok);
    if let Some(s) = &socket {
        env.push((super::livescan::SOCKET_ENV, s.path().into()));
    }
    let pool_name = super::logpool::fresh_name();
    env.push((super::logpool::POOL_ENV, pool_name.clone().into()));
    let mut pool = None;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    let pending = match (&asked, o.output) {
        (Some(pat), Some(out)) => {
            // The preload creates the log but not its directory.
            std::fs::create_dir_all(&pat.dir).with_context(|| {
                format!("cannot create the log directory {}", pat.dir.display())
            })?;
            pool = LogPool::start(&pat.dir, &pool_name).ok();
            cmd.envs(env.iter().map(|(k, v)| (k, v)))
                .env("MEMTRACE_OUTPUT", cwd.join(out));
            None
        }
        _ => Some(super::rundir::arm(&mut cmd, prog, cwd, &env)?),
    };
    if o.snapshot_signal != 0 {
        // Snapshots while it runs: frozen copies handed to us (`cmd::snapshot`),
        // which outlive the process that made them: memtrace is their subreaper.
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes how orphans are reparented.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }

    install_forwarding();
    let spawned = SystemTime::now();
    let started = cmd.spawn();
    drop(cmd); // closes the run directory's pipe here
    let run_dir = pending.and_then(super::rundir::Pending::made);
    if let Some(d) = &run_dir {
        pool = LogPool::start(&d.path, &pool_name).ok();
    }
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            if let Some(p) = pool.take() {
                p.finish();
            }
            if let Some(d) = &run_dir {
                let _ = std::fs::remove_dir(&d.path);
            }
            if run_dir.is_none() && o.output.is_none() {
                return Err(e).with_context(|| {
                    format!(
                        "cannot run {} or make its run directory in the current directory \
                         (-o DIR/%e.%p.mtr writes the logs elsewhere)",
                        prog.to_string_lossy()
                    )
                });
            }
            return Err(e).with_context(|| format!("cannot run {}", prog.to_string_lossy()));
        }
    };
    let pat = match (asked, &run_dir) {
        (Some(p), _) => p,
        (None, Some(d)) => Pattern::parse(&d.pattern(), cwd)?,
        (None, None) => anyhow::bail!("the run directory was not made"),
    };
    let output = match (o.output, &run_dir) {
        (Some(out), _) => cwd.join(out),
        (None, Some(d)) => cwd.join(d.pattern()),
        (None, None) => cwd.to_path_buf(),
    };
    Ok(Started {
        child,
        spawned,
        pat,
        output,
        run_dir,
        socket,
        pool,
    })
}

/// The environment the command gets besides the current one (steps 1 and 4:
/// the preload `lib`, sampling, the kernel's accounting, the scan at exit,
/// snapshots); `MEMTRACE_OUTPUT` is set by the caller.
fn environment(o: &TraceOptions, lib: &Path) -> Vec<(&'static str, OsString)> {
    let mut preload = OsString::from(lib.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let mut env: Vec<(&'static str, OsString)> = vec![("LD_PRELOAD", preload)];
    if let Some(bytes) = o.sample {
        env.push(("MEMTRACE_SAMPLE", bytes.to_string().into()));
    }
    // The preload records the kernel's accounting once more at exit when asked.
    let interval_ms = o.kernel_interval.map_or(0, |i| i.as_millis().max(1));
    env.push(("MEMTRACE_KERNEL_INTERVAL", interval_ms.to_string().into()));
    // ... and classifies its live blocks at exit with this very binary as the
    // scanner (`memtrace __scan`, see `cmd::scan`), so that the scanner is
    // always of the same version as the analyzer reading its records.
    env.push(("MEMTRACE_REACH", if o.reach { "1" } else { "0" }.into()));
    if let Ok(me) = std::env::current_exe() {
        env.push(("MEMTRACE_SCANNER", me.into_os_string()));
    }
    // The scan's heuristics, for the scanner the process starts at exit.
    env.push((reach::Heuristics::ENV, o.heuristics.to_string().into()));
    // Snapshots while it runs (`cmd::snapshot`).
    env.push((
        "MEMTRACE_SNAPSHOT_SIGNAL",
        o.snapshot_signal.to_string().into(),
    ));
    env.push(("MEMTRACE_RUN_PID", std::process::id().to_string().into()));
    env
}

/// The kernel sampler of the tree of `pid`, every `interval` (step 4), which
/// leaves out the mappings of memtrace's own files (the preload `lib`, the logs
/// of `pat`); `None`, with a warning, if it cannot start.
fn start_sampler(pid: u32, interval: Duration, pat: &Pattern, lib: &Path) -> Option<Sampler> {
    let (pat, lib) = (pat.clone(), lib.to_path_buf());
    let is_memtrace = move |p: &str| {
        let p = Path::new(p);
        p == lib || pat.owns(p)
    };
    match Sampler::start(pid, interval, Box::new(is_memtrace)) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("memtrace: warning: cannot sample the kernel's accounting: {e}");
            None
        }
    }
}

/// Waits for the end of our child `pid` without reaping it, so that the
/// forwarding handler never signals a reused pid: CHILD is cleared before the
/// pid is freed.
fn wait_without_reaping(pid: u32) {
    loop {
        // SAFETY: a zeroed siginfo_t is valid; waitid fills it for our child.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child, WNOWAIT: it stays a zombie.
        let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

/// Appends to each log whose process has ended (the command `pid`'s whatever
/// its state) its kernel samples (step 4); not to the logs `staged` while the
/// command ran, whose processes were never sampled.
fn add_kernel_samples(
    logs: &[Found],
    pid: u32,
    samples: &HashMap<u32, PidSamples>,
    staged: &HashMap<PathBuf, Staged>,
) {
    for f in logs {
        if (f.pid != pid && process_alive(f.pid)) || staged.contains_key(&f.path) {
            continue; // still writing its log, or packed already
        }
        let Some((from, to)) = lifetime(&f.path) else {
            continue;
        };
        let events = samples
            .get(&f.pid)
            .map(|s| kernel::kernel_events(s, from, to))
            .unwrap_or_default();
        if let Err(e) = kernel::append_records(&f.path, events) {
            eprintln!(
                "memtrace: warning: cannot add the kernel's samples to {}: {e}",
                f.shown.display()
            );
        }
    }
}

/// Stamps the wait status `raw` into the logs of the command `pid` (step 3),
/// packs each log whose process has ended (step 5), and says where they went:
/// one line for the whole run (the top log, and how many others in which
/// directory), or one line per log with `verbose` or a single log.
fn stamp_and_pack(
    o: &TraceOptions,
    logs: &[Found],
    pid: u32,
    raw: i32,
    dir: Option<&Path>,
    staged: HashMap<PathBuf, Staged>,
    live: Option<LivePack>,
) {
    let each = o.verbose || (logs.len() == 1 && dir.is_none());
    for f in logs {
        if f.pid == pid
            && f.forked_from == 0
            && let Err(e) = stamp_wait_status(&f.path, raw)
        {
            eprintln!(
                "memtrace: warning: cannot record the exit status in {}: {e}",
                f.shown.display()
            );
        }
    }
    let done = pack_all(o, logs, pid, staged, live);
    let (mut raw_bytes, mut packed_bytes) = (0u64, 0u64);
    for (i, (f, d)) in logs.iter().zip(&done).enumerate() {
        raw_bytes += d.before;
        packed_bytes += d.after;
        if o.quiet || !(each || d.running) {
            continue;
        }
        let packed = &d.line;
        if i == 0 {
            eprintln!("memtrace: log written to {}{packed}", f.shown.display());
        } else {
            let after_exec = if f.pid == pid { " after exec" } else { "" };
            eprintln!(
                "memtrace: log of pid {}{after_exec} written to {}{packed}",
                f.pid,
                f.shown.display()
            );
        }
    }
    let kept_raw = done.iter().filter(|d| d.small).count();
    let sizes = sizes(o.pack, raw_bytes, packed_bytes, kept_raw);
    if o.quiet || logs.is_empty() {
    } else if let Some(dir) = dir {
        eprintln!("{}", run_dir_line(dir, logs, &sizes));
    } else if !each {
        eprintln!("{}", tree_line(logs, &sizes));
    }
}

/// The logs' sizes for the line that names them: before and after packing,
/// and how many of one chunk stayed raw (`pack::worth_packing`).
fn sizes(packed: bool, raw_bytes: u64, packed_bytes: u64, kept_raw: usize) -> String {
    use memtrace_analyzer::units::human;
    if !packed {
        return human(raw_bytes);
    }
    let kept = match kept_raw {
        0 => String::new(),
        n => format!(", {n} of one chunk kept raw"),
    };
    format!(
        "{} packed to {}{kept}",
        human(raw_bytes),
        human(packed_bytes)
    )
}

/// What became of one log after the run.
struct Packed {
    /// Its size before and after packing.
    before: u64,
    after: u64,
    /// Its process still runs (it stays raw).
    running: bool,
    /// It stayed raw, being of one chunk in a large run
    /// (`pack::worth_packing`).
    small: bool,
    /// What to add to the line that names it.
    line: String,
}

/// Packs every log whose process has ended (step 5), on as many threads as
/// there are cores, but for those `staged` while the command ran
/// (`super::prepack`): a process tree leaves hundreds of small logs, which
/// are then put in place together (`pack::commit_all`: one sync of the
/// filesystem rather than one per log). The results are in the order of
/// `logs`.
fn pack_all(
    o: &TraceOptions,
    logs: &[Found],
    pid: u32,
    staged: HashMap<PathBuf, Staged>,
    live: Option<LivePack>,
) -> Vec<Packed> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ahead = std::sync::Mutex::new(staged);
    let live = std::sync::Mutex::new(live);
    let one = |f: &Found| {
        let before = std::fs::metadata(&f.path).map_or(0, |m| m.len());
        let staged_ahead = ahead.lock().ok().and_then(|mut s| s.remove(&f.path));
        if let Some(s) = staged_ahead {
            return (before, false, false, Some(Some(s)));
        }
        let running = f.pid != pid && process_alive(f.pid);
        if let Some(s) = finish_live(o, f, &live, running) {
            return (before, false, false, Some(Some(s)));
        }
        let small =
            o.pack && !running && !memtrace_analyzer::pack::worth_packing(before, logs.len());
        let staged = (o.pack && !running && !small).then(|| stage(f));
        (before, running, small, staged)
    };
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(logs.len())
        .max(1);
    let mut done: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = logs.get(i) else { break };
                        mine.push((i, one(f)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a packing worker does not panic"))
            .collect()
    });
    done.sort_by_key(|d| d.0);
    let staged: Vec<_> = done
        .iter_mut()
        .filter_map(|(i, d)| match d.3.take() {
            Some(Some(s)) => Some((*i, s)),
            _ => None,
        })
        .collect();
    let (which, staged): (Vec<usize>, Vec<_>) = staged.into_iter().unzip();
    let mut committed: std::collections::HashMap<usize, _> = which
        .into_iter()
        .zip(memtrace_analyzer::pack::commit_all(staged))
        .collect();
    done.into_iter()
        .map(|(i, (before, running, small, _))| {
            let f = &logs[i];
            let line = if !o.pack {
                String::new()
            } else if running {
                " (its process still runs: `memtrace pack` it once it has ended)".to_owned()
            } else if small {
                " (kept raw: one chunk, which packing would not make smaller on disk)".to_owned()
            } else {
                match committed.remove(&i) {
                    Some(Ok(s)) => format!(" (packed: {})", super::pack::summary(&s)),
                    Some(Err(e)) => {
                        eprintln!(
                            "memtrace: warning: cannot pack {}: {e}; the raw log is kept",
                            f.path.display()
                        );
                        String::new()
                    }
                    None => String::new(), // staging failed: said by `stage`
                }
            };
            let after = std::fs::metadata(&f.path).map_or(0, |m| m.len());
            Packed {
                before,
                after,
                running,
                small,
                line,
            }
        })
        .collect()
}

/// The packed log of `f` from the packer that followed it while the
/// command ran (`super::livepack`), if that was `f`'s; what fails there is
/// packed from scratch, which says why if it fails too.
fn finish_live(
    o: &TraceOptions,
    f: &Found,
    live: &std::sync::Mutex<Option<LivePack>>,
    running: bool,
) -> Option<Staged> {
    let l = live
        .lock()
        .ok()?
        .take_if(|l| l.path() == f.path)
        .filter(|_| o.pack && !running)?;
    let ahead = l.events();
    let s = l.finish(&f.path).ok()?;
    if o.verbose && !o.quiet {
        eprintln!(
            "memtrace: {ahead} of {} events of {} packed while the command ran",
            s.events(),
            f.shown.display()
        );
    }
    Some(s)
}

/// The one line that names a run's own directory (`super::rundir`) and how
/// to read it.
fn run_dir_line(dir: &Path, logs: &[Found], sizes: &str) -> String {
    use memtrace_analyzer::units::plural;
    let pids: std::collections::HashSet<u32> = logs.iter().map(|f| f.pid).collect();
    let dir = dir.display();
    format!(
        "memtrace: {} of {} in {dir}/ ({sizes}) — memtrace report {dir}/",
        plural(logs.len() as u64, "log", "logs"),
        plural(pids.len() as u64, "process", "processes"),
    )
}

/// The one line that says where a run's logs went (more than one log).
fn tree_line(logs: &[Found], sizes: &str) -> String {
    let pids: std::collections::HashSet<u32> = logs.iter().map(|f| f.pid).collect();
    let top = &logs[0].shown;
    let dir = match top.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.display().to_string(),
        _ => ".".to_owned(),
    };
    let name = top
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!(
        "memtrace: {} logs of {} processes written to {dir} (top: {name}; {sizes}; -v lists each)",
        logs.len(),
        pids.len()
    )
}

/// Packs the log `f` beside itself, to be put in place by `pack_all`;
/// `None`, with a warning, if it stays raw.
fn stage(f: &Found) -> Option<memtrace_analyzer::pack::Staged> {
    let size = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
    if size >= 64 << 20 {
        eprintln!(
            "memtrace: packing {} ({})...",
            f.shown.display(),
            memtrace_analyzer::units::human(size)
        );
    }
    match memtrace_analyzer::pack::stage(&f.path, &f.path) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!(
                "memtrace: warning: cannot pack {}: {e}; the raw log is kept",
                f.path.display()
            );
            None
        }
    }
}

/// Lists the processes of the tree that wrote no log, unless quiet: the first
/// [`UNTRACED_SHOWN`].
fn tell_untraced(o: &TraceOptions, logs: &[Found]) {
    let procs: Vec<lineage::Proc> = logs
        .iter()
        .filter_map(|f| lineage::Proc::read(&f.path).ok())
        .collect();
    let untraced = lineage::untraced(&procs);
    if !untraced.is_empty() && !o.quiet {
        eprintln!(
            "memtrace: {} of the tree {} not traced:",
            if untraced.len() == 1 {
                "1 process".to_owned()
            } else {
                format!("{} processes", untraced.len())
            },
            if untraced.len() == 1 { "was" } else { "were" }
        );
        for u in untraced.iter().take(UNTRACED_SHOWN) {
            eprintln!("memtrace:   {}", u.line());
        }
        if untraced.len() > UNTRACED_SHOWN {
            eprintln!(
                "memtrace:   ... and {} more (`memtrace check` lists them all)",
                untraced.len() - UNTRACED_SHOWN
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wait status is stamped into the header where the format crate reads it.
    #[test]
    fn stamps_wait_status() {
        let mut page = [0u8; HEADER_SIZE];
        memtrace_format::hdr::write_header(&mut page, 4096, 5, 1, 0, 0, 0, 0, b"x", b"x");
        let p = std::env::temp_dir().join(format!("memtrace-stamp-{}.mtr", std::process::id()));
        std::fs::write(&p, page).unwrap();
        stamp_wait_status(&p, 9).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(Header::parse(&bytes).unwrap().run_wait_status, Some(9));
        std::fs::remove_file(&p).unwrap();
    }
}
