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
    /// Run a command with libmemtrace.so preloaded; its log is written to PATTERN.
    Run(RunArgs),
    /// Read a log and report leaks, peak usage and brk growth.
    Report(ReportArgs),
    /// Replace finished raw logs by their packed form (merged, compact,
    /// zstd-compressed; `memtrace run` does this unless given --raw).
    Pack(PackArgs),
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
    /// Log file name: %p is replaced by the pid, %e by the executable's name,
    /// `.N` appended if the name is taken. Relative to the current directory.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATTERN",
        env = "MEMTRACE_OUTPUT",
        default_value = "memtrace.%e.%p.mtr"
    )]
    pub output: String,
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
    /// The log file to read.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
}

/// A size in bytes with an optional binary suffix (k, m, g).
fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 32k, 1m)"))?;
    let shift = match s[digits..].to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{s:?} is not a size (e.g. 4096, 32k, 1m)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}
