//! `memtrace pack LOG...`: replaces each finished raw log by its packed form.

use std::path::Path;

use anyhow::Context;

use crate::args::PackArgs;
use memtrace_analyzer::pack;

/// Packs one log in place and returns a one-line summary.
pub fn pack_one(path: &Path) -> anyhow::Result<String> {
    let s =
        pack::pack_file(path, path).with_context(|| format!("cannot pack {}", path.display()))?;
    Ok(format!(
        "{} events, {} -> {}",
        s.events,
        memtrace_analyzer::units::human(s.raw_bytes),
        memtrace_analyzer::units::human(s.packed_bytes)
    ))
}

/// Runs the subcommand: every log is tried; the status is 2 if any failed.
pub fn run(a: &PackArgs) -> anyhow::Result<u8> {
    let mut failed = false;
    for log in &a.logs {
        match pack_one(log) {
            Ok(line) => eprintln!("memtrace: packed {}: {line}", log.display()),
            Err(e) => {
                match live_pid(&e) {
                    Some(pid) => eprintln!(
                        "memtrace pack: {} is still being written by pid {pid}: not packed",
                        log.display()
                    ),
                    None => eprintln!("memtrace: error: {e:#}"),
                }
                failed = true;
            }
        }
    }
    Ok(if failed {
        crate::exit::ERROR
    } else {
        crate::exit::OK
    })
}

/// The writer's pid when packing failed because the log is still written.
fn live_pid(e: &anyhow::Error) -> Option<u32> {
    match e.downcast_ref::<memtrace_analyzer::error::Error>() {
        Some(memtrace_analyzer::error::Error::Live { pid, .. }) => Some(*pid),
        _ => None,
    }
}
