//! Progress bars (indicatif) for long analyses: shown on stderr when it is a
//! terminal and the log is large enough for the wait to be noticed; nothing
//! otherwise, so that CI logs and pipes stay clean.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memtrace_analyzer::{Options, Progress, Stage};

/// Logs smaller than this are analyzed without a bar.
const MIN_BYTES: u64 = 8 << 20;

/// A bar that is cleared when dropped.
pub struct Bar(Option<ProgressBar>);

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// `opts` with a progress bar for analyzing `log`, when one is worth showing.
pub fn attach(log: &Path, mut opts: Options) -> (Options, Bar) {
    let big = std::fs::metadata(log).is_ok_and(|m| m.len() >= MIN_BYTES);
    if !big || !std::io::stderr().is_terminal() {
        return (opts, Bar(None));
    }
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let style =
        ProgressStyle::with_template("{prefix:>12} {msg} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix("reading")
        .with_message(name);
    bar.enable_steady_tick(Duration::from_millis(200));
    let b = bar.clone();
    opts.progress = Some(Progress(Arc::new(move |stage, done| {
        b.set_prefix(match stage {
            Stage::Reading => "reading",
            Stage::Symbolizing => "symbolizing",
        });
        if let Some(f) = done {
            b.set_position((f * 1000.0) as u64);
        }
    })));
    (opts, Bar(Some(bar)))
}
