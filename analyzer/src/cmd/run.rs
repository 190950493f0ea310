//! `memtrace run [-o PATTERN] -- CMD [ARGS...]`: runs CMD under the
//! supervisor ([`super::trace`], whose docs give the steps) and exits with
//! its status. Without `-o`, the run's logs go into a directory of its own
//! ([`super::rundir`]).

use crate::args::RunArgs;

use super::trace::{TraceOptions, exit_code, trace};

/// Runs the subcommand; returns the command's exit status.
pub fn run(a: &RunArgs) -> anyhow::Result<u8> {
    let traced = trace(&TraceOptions {
        command: &a.command,
        output: a.output.as_deref(),
        sample: a.sample,
        pack: !a.raw,
        quiet: false,
        verbose: a.verbose,
        kernel_interval: (a.kernel_interval > 0)
            .then(|| std::time::Duration::from_millis(a.kernel_interval)),
        reach: !a.no_reachability,
        snapshot_signal: a.snapshot_signal,
        heuristics: a.leak_check_heuristics,
    })?;
    Ok(exit_code(traced.status))
}
