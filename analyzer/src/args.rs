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
