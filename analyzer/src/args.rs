//! The command line (clap derive).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// A memory-leak profiler: run a program under libmemtrace.so, then report
/// its leaks and peak memory use.
#[derive(Parser, Debug)]
#[command(name = "memtrace", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command with libmemtrace.so preloaded; the logs of its processes
    /// go into a new directory `memtrace.<exe>.<pid>/` (or to -o PATTERN).
    Run(RunArgs),
    /// Read a log and report leaks, peak usage and brk growth.
    Report(ReportArgs),
    /// Take a snapshot of the live heap of a process running under `memtrace
    /// run`, classified by reachability, without stopping it; prints the
    /// snapshot's path (read it with `memtrace report`).
    Snapshot(SnapshotArgs),
    /// Replace finished raw logs by their packed form (merged, compact,
    /// zstd-compressed; `memtrace run` does this unless given --raw).
    Pack(PackArgs),
    /// The CI leak gate: run a command (`-- CMD ARGS`) under memtrace, or read
    /// logs, and fail when a process leaks or its peak breaks the rules.
    ///
    /// Leaks count as valgrind's memcheck counts them by default: the blocks
    /// definitely and indirectly lost, not those still reachable or possibly
    /// lost (--leak-kinds chooses; leaks not classified count whole).
    ///
    /// Exit status: 0 when every rule holds; the --error-exitcode status
    /// (default 23) when one does not; the command's own status when the
    /// command failed (never masked); 2 when memtrace itself failed (bad
    /// arguments, config or suppressions; an unreadable log; no log written).
    /// Rules and suppressions also come from `.memtrace.toml` or
    /// `memtrace.toml` in the current directory or above (`[check]` table,
    /// same names as the options); command-line options win.
    Check(Box<CheckArgs>),
    /// Draw an interactive flame graph (SVG) of a log's stacks, weighted by a
    /// metric: leaked bytes (default), bytes at the peak, bytes allocated,
    /// allocations, temporary allocations.
    Flamegraph(FlamegraphArgs),
    /// Compare two logs stack by stack: the growth of a metric from OLD to
    /// NEW, largest first (text or JSON), and optionally a differential flame
    /// graph.
    Diff(DiffArgs),
    /// Write a log's stacks in another tool's format: pprof (gzipped
    /// profile.proto: go tool pprof, Pyroscope), folded stacks
    /// (flamegraph.pl, inferno) or speedscope's JSON.
    Export(ExportArgs),
    /// Chart memory over time (live heap, program mmaps, RSS and PSS) as an
    /// SVG, with the peaks marked.
    Timeline(TimelineArgs),
    /// Print the path of the preload library, for a plain
    /// `LD_PRELOAD=$(memtrace lib) ./app`: the one beside memtrace, or the copy
    /// embedded in memtrace, written on first use to ~/.cache/memtrace.
    Lib,
    /// The scanner a traced process starts at exit (libmemtrace.so does it;
    /// not for people).
    #[command(name = "__scan", hide = true)]
    Scan(ScanArgs),
}

/// `memtrace __scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// The exiting thread, which is not stopped.
    #[arg(long)]
    pub tid: u32,
    /// The process's descriptor of its log.
    #[arg(long)]
    pub fd: u32,
    /// The address of the log's header mapping in the process (the log's
    /// path, when the descriptor is closed).
    #[arg(long, default_value_t = 0)]
    pub header: u64,
    /// The address of the preload's mailbox in the process: the channel
    /// when the process had no descriptor left for pipes (then standard
    /// input and output are /dev/null).
    #[arg(long)]
    pub mailbox: Option<u64>,
}

/// `memtrace check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Most leaked bytes allowed in each process (suffixes k, m, g). When no
    /// leak limit is given at all, any leak fails.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_leaked_bytes: Option<u64>,
    /// Most leaked blocks allowed in each process.
    #[arg(long, value_name = "N")]
    pub max_leaked_blocks: Option<u64>,
    /// Most bytes any one stack may leak.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_stack_leaked_bytes: Option<u64>,
    /// Most blocks any one stack may leak.
    #[arg(long, value_name = "N")]
    pub max_stack_leaked_blocks: Option<u64>,
    /// Count mappings left at exit (mmap without munmap) as leaks too.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub mmap_leaks: Option<bool>,
    /// Highest allowed peak of live heap bytes in each process.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_peak: Option<u64>,
    /// The leak kinds that count, by reachability: a comma-separated list of
    /// `definite`, `indirect`, `possible`, `reachable`, or `all`, or `none`
    /// (default: definite,indirect, as valgrind's --errors-for-leak-kinds).
    /// Leaks that were not classified count whole.
    #[arg(long, value_name = "KINDS")]
    pub leak_kinds: Option<String>,
    /// memcheck's leak heuristics for the reachability scan (valgrind's
    /// --leak-check-heuristics): `all` (default), `none`, or a
    /// comma-separated list of `stdstring`, `length64`, `newarray`,
    /// `multipleinheritance`. A block reached only through an interior
    /// pointer that one of them recognizes is still reachable, not possibly
    /// lost. Passed to the command as MEMTRACE_LEAK_HEURISTICS.
    /// Default `all`; also `leak-check-heuristics` in the config file.
    #[arg(
        long,
        value_name = "SET",
        env = "MEMTRACE_LEAK_HEURISTICS",
        value_parser = parse_heuristics
    )]
    pub leak_check_heuristics: Option<memtrace_analyzer::analysis::reach::Heuristics>,
    /// Suppression file (repeatable): memtrace's format, LeakSanitizer's
    /// `leak:` lines or valgrind memcheck `{ ... }` entries, detected from
    /// the content.
    #[arg(short = 's', long = "suppressions", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Do not apply memtrace's built-in suppressions (one-time allocations of
    /// the Rust runtime that live until exit by design).
    #[arg(long)]
    pub no_default_suppressions: bool,
    /// The signal that makes a traced process write a snapshot of its live
    /// heap without stopping, as for `memtrace run` (snapshots go beside the
    /// logs); `none` or 0: no snapshots.
    #[arg(
        long,
        value_name = "SIG",
        env = "MEMTRACE_SNAPSHOT_SIGNAL",
        default_value = "RTMAX-2",
        value_parser = parse_signal
    )]
    pub snapshot_signal: i32,
    /// Print, on stderr after the summary, suppression entries for the leaks
    /// that failed: `memtrace`, `valgrind`, `lsan`, a comma-separated list,
    /// or `all` (default: memtrace,valgrind).
    #[arg(long, value_name = "FORMATS", num_args = 0..=1, default_missing_value = "memtrace,valgrind")]
    pub gen_suppressions: Option<String>,
    /// Write the --gen-suppressions entries to FILE instead of stderr (ready to
    /// pass to -s; implies --gen-suppressions).
    #[arg(long, value_name = "FILE")]
    pub gen_suppressions_file: Option<PathBuf>,
    /// Fail only on growth over this earlier run: a log, or the JSON of
    /// `memtrace check --json` or `memtrace report --format json`.
    #[arg(long, value_name = "LOG_OR_JSON")]
    pub baseline: Option<PathBuf>,
    /// Leak growth over the baseline allowed per stack: bytes (`4k`) or a
    /// percentage (`10%`). Default 0.
    #[arg(long, value_name = "BYTES|PCT")]
    pub tolerance: Option<String>,
    /// Peak growth over the baseline allowed: bytes or a percentage. Default 5%.
    #[arg(long, value_name = "BYTES|PCT")]
    pub peak_tolerance: Option<String>,
    /// Judge only processes whose executable (path or file name) matches this
    /// glob (repeatable); the others are traced but skipped.
    #[arg(long = "exe", value_name = "GLOB")]
    pub exe: Vec<String>,
    /// Exit status when a rule fails (0: report only).
    #[arg(long, value_name = "N")]
    pub error_exitcode: Option<u8>,
    /// Write the verdict as JSON to FILE (`-`: stdout); it can serve as a
    /// later --baseline.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report to FILE (`-`: stdout): one test case per process.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the counted leaks as valgrind memcheck's XML (protocol 4) to
    /// FILE (`-`: stdout), for the tools that read `valgrind --xml=yes`.
    #[arg(long, value_name = "FILE")]
    pub xml: Option<PathBuf>,
    /// Leaking stacks shown per failing process in the summary.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,
    /// Config file to read instead of the one found in the current directory
    /// or above.
    #[arg(long, value_name = "FILE", conflicts_with = "no_config")]
    pub config: Option<PathBuf>,
    /// Read no config file.
    #[arg(long)]
    pub no_config: bool,
    /// Where the logs of a checked command go (as `memtrace run -o`; they are
    /// then kept and packed). Default: a temporary directory, removed when the
    /// check passes and kept (its path printed) when it fails.
    #[arg(short = 'o', long = "output", value_name = "PATTERN")]
    pub output: Option<String>,
    /// Keep the checked command's logs, packed, whether the check passes or
    /// fails, in a new directory `memtrace.<exe>.<pid>/` in the current
    /// directory, as `memtrace run` does (for a CI job's artifacts).
    #[arg(long, conflicts_with = "output")]
    pub keep_logs: bool,
    /// Logs to check (instead of a command).
    #[arg(value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// The command to run and check, after `--`.
    #[arg(value_name = "CMD", last = true)]
    pub command: Vec<OsString>,
}

/// What a flame graph or a diff weighs stacks by (`memtrace_analyzer::flame::Metric`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricArg {
    /// Heap bytes still allocated at exit.
    Leaked,
    /// Heap bytes live at the peak of the live heap.
    Peak,
    /// Heap bytes allocated over the run, freed or not.
    Allocated,
    /// Number of heap allocations.
    Allocations,
    /// Allocations freed before their thread's next allocation.
    Temporary,
}

impl From<MetricArg> for memtrace_analyzer::flame::Metric {
    fn from(m: MetricArg) -> Self {
        use memtrace_analyzer::flame::Metric;
        match m {
            MetricArg::Leaked => Metric::Leaked,
            MetricArg::Peak => Metric::Peak,
            MetricArg::Allocated => Metric::Allocated,
            MetricArg::Allocations => Metric::Allocations,
            MetricArg::Temporary => Metric::Temporary,
        }
    }
}

/// `memtrace flamegraph`.
#[derive(clap::Args, Debug)]
pub struct FlamegraphArgs {
    /// What the frames' widths measure.
    #[arg(long, value_enum, default_value_t = MetricArg::Leaked)]
    pub metric: MetricArg,
    /// With --metric leaked: draw only the leaked blocks of these
    /// reachability kinds, as `memtrace check --leak-kinds` takes them
    /// (`definite,indirect`, `reachable`, `all`...; default: all).
    #[arg(long, value_name = "KINDS")]
    pub leak_kinds: Option<String>,
    /// The SVG file to write (`-`: stdout). Default: `memtrace-METRIC.svg`
    /// in the current directory.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The log file to read.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
}

/// `memtrace diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// What to compare.
    #[arg(long, value_enum, default_value_t = MetricArg::Leaked)]
    pub metric: MetricArg,
    /// With --metric leaked: compare only the leaked blocks of these
    /// reachability kinds (as for `memtrace flamegraph`; default: all).
    #[arg(long, value_name = "KINDS")]
    pub leak_kinds: Option<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show the N stacks that grew most (default: 20 in text, all in JSON).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Also write a differential flame graph (SVG) to FILE: the new run's
    /// stacks, red where they grew, blue where they shrank.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The earlier log.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The later log.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
}

/// Export formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// gzip-compressed profile.proto with Go's heap sample types
    /// (alloc_objects, alloc_space, inuse_objects, inuse_space).
    Pprof,
    /// `outermost;...;innermost WEIGHT` lines of one metric.
    Folded,
    /// speedscope's JSON: one profile per metric.
    Speedscope,
    /// Chrome's trace event JSON: memory counters over time (Perfetto's UI).
    ChromeTrace,
    /// valgrind massif's out file (ms_print, massif-visualizer): the heap
    /// over time, in bytes allocated and freed; the peak's stacks.
    Massif,
    /// valgrind DHAT's JSON (dh_view.html): per stack, allocated, most live,
    /// at the peak, at the end, lifetimes.
    Dhat,
    /// heaptrack's data file (heaptrack_print, heaptrack_gui): every
    /// allocation and free; zstd for a `.zst` name, gzip for `.gz`.
    Heaptrack,
}

/// `memtrace export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// What the folded stacks' weights measure (--format folded only).
    #[arg(long, value_enum, default_value_t = MetricArg::Leaked)]
    pub metric: MetricArg,
    /// The file to write (`-` or none: stdout; pprof is never written to a
    /// terminal).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The log file to read.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
}

/// `memtrace pack`.
#[derive(clap::Args, Debug)]
pub struct PackArgs {
    /// The logs to pack (each is replaced by its packed form).
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
}

/// `memtrace run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Log file name of each process: %p is replaced by its pid, %e by its
    /// executable's name, `.N` appended if the name is taken; relative to the
    /// current directory. Default: every log of the run in a new directory
    /// `memtrace.<exe>.<pid>/` (the command's name and pid, `.N` appended if
    /// taken; mode 0700), which `memtrace report DIR` reads.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATTERN",
        env = "MEMTRACE_OUTPUT"
    )]
    pub output: Option<String>,
    /// Sampling mode, for production: record allocations by a Poisson process
    /// over bytes, one sample point per BYTES allocated on average (suffixes
    /// k, m, g; default 4k, as heapprofd); allocations of at least BYTES are always
    /// recorded. The report scales the samples to estimates. Sets
    /// `MEMTRACE_SAMPLE` for the preload.
    #[arg(long, value_name = "BYTES", num_args = 0..=1, default_missing_value = "4k", value_parser = parse_size)]
    pub sample: Option<u64>,
    /// Keep the raw logs as the preload wrote them, instead of packing the
    /// logs of processes that have ended (see `memtrace pack`).
    #[arg(long)]
    pub raw: bool,
    /// Say where each process's log went (one line per log), not one line
    /// for the whole run.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Sample the kernel's accounting of every traced process (RSS, PSS, USS,
    /// swap from /proc/PID/smaps_rollup; the cgroup's memory.current and
    /// memory.stat) every MS milliseconds, from outside the process; 0: off.
    /// A round of samples that takes long (the kernel walks the page tables of
    /// a large heap) waits fifty times the CPU time it took instead, so that
    /// sampling costs at most 2% of a core. The samples go into the logs.
    #[arg(
        long,
        value_name = "MS",
        env = "MEMTRACE_KERNEL_INTERVAL",
        default_value_t = 100
    )]
    pub kernel_interval: u64,
    /// Do not classify the blocks live at exit by reachability (definitely,
    /// indirectly, possibly lost, still reachable), which each process does at
    /// its exit by starting memtrace as its scanner.
    #[arg(long)]
    pub no_reachability: bool,
    /// memcheck's leak heuristics for the reachability scan (valgrind's
    /// --leak-check-heuristics): `all` (default), `none`, or a
    /// comma-separated list of `stdstring`, `length64`, `newarray`,
    /// `multipleinheritance`. A block reached only through an interior
    /// pointer that one of them recognizes is still reachable, not possibly
    /// lost. Passed to the command as MEMTRACE_LEAK_HEURISTICS.
    #[arg(
        long,
        value_name = "SET",
        env = "MEMTRACE_LEAK_HEURISTICS",
        default_value = "all",
        value_parser = parse_heuristics
    )]
    pub leak_check_heuristics: memtrace_analyzer::analysis::reach::Heuristics,
    /// The signal that makes a traced process write a snapshot of its live
    /// heap without stopping (`memtrace snapshot PID` sends it): a number or a
    /// name (USR2, RTMIN+3, SIGRTMAX-2); `none` or 0: no snapshots. A
    /// program that installs its own handler for it takes it over.
    #[arg(
        long,
        value_name = "SIG",
        env = "MEMTRACE_SNAPSHOT_SIGNAL",
        default_value = "RTMAX-2",
        value_parser = parse_signal
    )]
    pub snapshot_signal: i32,
    /// The command to trace and its arguments.
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// Report formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// `memtrace report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show at most N entries per list (default: all leaks, 10 stacks at the peak).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Write the report as one self-contained HTML page (summary, leak and peak
    /// tables, timeline, flame graphs) to FILE (`-`: stdout) instead of printing it.
    #[arg(long, value_name = "FILE", conflicts_with = "format")]
    pub html: Option<PathBuf>,
    /// Compare with an earlier snapshot of the same process: the leaks listed
    /// are the blocks allocated after it and still live, and the report shows
    /// the growth of the live heap by call site since then.
    #[arg(long, value_name = "SNAPSHOT")]
    pub since: Option<PathBuf>,
    /// List only the blocks alive for at least DURATION at the end of the log
    /// or at its snapshot (`30s`, `5m`, `1h`, `250ms`; plain numbers are seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<u64>,
    /// A time window, its start: list only the heap blocks allocated at or
    /// after TIME (since the process started: `1.5s`, `250ms`, `2` seconds,
    /// or `40%` of the run) and still live at the window's end (--to, else
    /// the end of the log), and count what was allocated in it. Default:
    /// the start.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["since", "older_than"])]
    pub from: Option<String>,
    /// A time window, its end (as --from; past the end of the log: the
    /// end). Ending before exit, the blocks live then are not classified
    /// by reachability: the exit scan's kinds are those of the blocks left
    /// at exit.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["since", "older_than"])]
    pub to: Option<String>,
    /// For a fork child's log: look for its parent's log (and its ancestors')
    /// among these first, before the log's own directory (repeatable).
    #[arg(long, value_name = "LOG")]
    pub parent_log: Vec<PathBuf>,
    /// Add the allocation-size histogram: allocations per requested size
    /// (a bucket per size up to 64 bytes, then powers of two: 65-128,
    /// 129-256, ...).
    #[arg(long)]
    pub histogram: bool,
    /// Keep only the stacks through a frame whose function (demangled) or
    /// module file name contains FUNCTION_OR_MODULE (case counts); with `*`
    /// or `?` in it, it is a glob over the whole name instead. Every list, the histogram and the lists by
    /// function then hold only those stacks, and a FILTER section gives
    /// their totals (the summary stays the whole run's).
    #[arg(long, value_name = "FUNCTION_OR_MODULE")]
    pub filter: Option<String>,
    /// Add the heap figures merged by the allocating function (the
    /// innermost frame of the program's own code), with its callers beneath.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub by: Option<By>,
    /// The whole text report: every list (most allocated, temporary
    /// allocations, all the stacks at the peak), each stack below `main` too,
    /// the kernel's view. Without it (and without --top), the text report is
    /// the short one: the summaries, the leaks and the top of the peak.
    #[arg(long)]
    pub full: bool,
    /// With a run's directory or several logs: the full report of this
    /// process's logs, instead of the tree of every process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// The log file to read; or the directory of a run, or several logs: then
    /// the tree of their processes (command, how each ended, leaked, peak,
    /// lost events) and the totals.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
}

/// `memtrace report --by`: what the extra lists merge by.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The allocating function, and its callers.
    Function,
}

/// `memtrace snapshot`.
#[derive(clap::Args, Debug)]
pub struct SnapshotArgs {
    /// Give up after this many seconds without a snapshot (it takes about
    /// 10 s per GiB of heap, and longer with a long log).
    #[arg(long, value_name = "S", default_value_t = 600)]
    pub timeout: u64,
    /// The process: its pid (it must run under `memtrace run`).
    #[arg(value_name = "PID")]
    pub pid: u32,
}

/// A duration in nanoseconds: a number with an optional unit (ns, us, ms, s,
/// m, h; default s).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m, 1h, 250ms)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1e9,
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (ns, us, ms, s, m, h, d)"
            ));
        }
    };
    Ok((n * scale) as u64)
}

/// A signal by number or name (`USR2`, `SIGUSR2`, `RTMIN+3`, `RTMAX-2`);
/// `none` is 0.
/// `--leak-check-heuristics`: see [`memtrace_analyzer::analysis::reach::Heuristics::parse`]; empty
/// (an empty MEMTRACE_LEAK_HEURISTICS) is the default, all, as for
/// `Heuristics::from_env`.
pub fn parse_heuristics(s: &str) -> Result<memtrace_analyzer::analysis::reach::Heuristics, String> {
    if s.trim().is_empty() {
        return Ok(memtrace_analyzer::analysis::reach::Heuristics::ALL);
    }
    memtrace_analyzer::analysis::reach::Heuristics::parse(s)
}

pub fn parse_signal(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    if let Ok(n) = t.parse::<i32>() {
        return if n == 0 || (1..=libc::SIGRTMAX()).contains(&n) && n != 9 && n != 19 {
            Ok(n)
        } else {
            Err(format!("{n} is not a signal that can be caught"))
        };
    }
    let u = t.to_ascii_uppercase();
    let name = u.strip_prefix("SIG").unwrap_or(&u);
    let rt = |base: i32, rest: &str| -> Option<i32> {
        if rest.is_empty() {
            return Some(base);
        }
        let (sign, num) = rest.split_at(1);
        let k: i32 = num.parse().ok()?;
        match sign {
            "+" => Some(base + k),
            "-" => Some(base - k),
            _ => None,
        }
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        rt(libc::SIGRTMIN(), rest)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rt(libc::SIGRTMAX(), rest)
    } else {
        match name {
            "HUP" => Some(libc::SIGHUP),
            "INT" => Some(libc::SIGINT),
            "QUIT" => Some(libc::SIGQUIT),
            "USR1" => Some(libc::SIGUSR1),
            "USR2" => Some(libc::SIGUSR2),
            "PIPE" => Some(libc::SIGPIPE),
            "ALRM" => Some(libc::SIGALRM),
            "TERM" => Some(libc::SIGTERM),
            "PROF" => Some(libc::SIGPROF),
            "URG" => Some(libc::SIGURG),
            "WINCH" => Some(libc::SIGWINCH),
            "TTIN" => Some(libc::SIGTTIN),
            "TTOU" => Some(libc::SIGTTOU),
            "VTALRM" => Some(libc::SIGVTALRM),
            "XCPU" => Some(libc::SIGXCPU),
            "XFSZ" => Some(libc::SIGXFSZ),
            "PWR" => Some(libc::SIGPWR),
            "SYS" => Some(libc::SIGSYS),
            _ => None,
        }
    };
    match n {
        Some(n) if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) || n < 32 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a signal memtrace can use (a name such as USR2 or RTMAX-2, or a number)"
        )),
    }
}

/// A size in bytes with an optional binary suffix (k, m, g).
pub fn parse_size(s: &str) -> Result<u64, String> {
    memtrace_analyzer::units::parse_size(s)
}

/// `memtrace timeline`.
#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    /// Where to write the SVG (`-`: stdout).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "memtrace-timeline.svg"
    )]
    pub output: PathBuf,
    /// The log file to read.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
}
