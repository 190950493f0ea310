//! `memtrace pack LOG...`: replaces each finished raw log by its packed form.

use crate::args::PackArgs;
use memtrace_analyzer::pack;

/// "N events, RAW -> PACKED".
pub fn summary(s: &pack::Stats) -> String {
    format!(
        "{} events, {} -> {}",
        s.events,
        memtrace_analyzer::units::human(s.raw_bytes),
        memtrace_analyzer::units::human(s.packed_bytes)
    )
}

/// Runs the subcommand: every log is tried; the status is 2 if any failed.
/// The packed logs are put in place together (`pack::commit_all`).
pub fn run(a: &PackArgs) -> anyhow::Result<u8> {
    let mut failed = false;
    let mut staged = Vec::new();
    for log in &a.logs {
        match pack::stage(log, log) {
            Ok(s) => staged.push(s),
            Err(e) => {
                match live_pid(&e) {
                    Some(pid) => eprintln!(
                        "memtrace pack: {} is still being written by pid {pid}: not packed",
                        log.display()
                    ),
                    None => eprintln!("memtrace: error: cannot pack {}: {e}", log.display()),
                }
                failed = true;
            }
        }
    }
    let paths: Vec<_> = staged.iter().map(|s| s.path().to_owned()).collect();
    for (log, r) in paths.iter().zip(pack::commit_all(staged)) {
        match r {
            Ok(s) => eprintln!("memtrace: packed {}: {}", log.display(), summary(&s)),
            Err(e) => {
                eprintln!("memtrace: error: cannot pack {}: {e}", log.display());
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
fn live_pid(e: &memtrace_analyzer::error::Error) -> Option<u32> {
    match e {
        memtrace_analyzer::error::Error::Live { pid, .. } => Some(*pid),
        _ => None,
    }
}
