//! The `memtrace` command: parses the command line, runs one subcommand,
//! prints any error as one line and maps the outcome to an exit status.
//!
//! Exit statuses: see the `exit` module, which names them all.

mod args;
mod cmd;
mod exit;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Args::parse();
    let result = match args.command {
        args::Command::Run(a) => cmd::run::run(&a),
        args::Command::Report(a) => cmd::report::run(&a),
        args::Command::Snapshot(a) => cmd::snapshot::run(&a),
        args::Command::Pack(a) => cmd::pack::run(&a),
        args::Command::Check(a) => cmd::check::run(&a),
        args::Command::Flamegraph(a) => cmd::flamegraph::run(&a),
        args::Command::Diff(a) => cmd::diff::run(&a),
        args::Command::Export(a) => cmd::export::run(&a),
        args::Command::Timeline(a) => cmd::timeline::run(&a),
        args::Command::Lib => cmd::preload::run(),
        args::Command::Scan(a) => cmd::scan::run(&a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("memtrace: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}
