//! One module per subcommand; each returns the process exit status.

pub mod check;
pub mod diff;
pub mod export;
pub mod flamegraph;
pub mod livepack;
pub mod livescan;
pub mod logpool;
pub mod logs;
pub mod pack;
pub mod preload;
pub mod prepack;
pub mod report;
pub mod run;
pub mod rundir;
pub mod scan;
pub mod snapshot;
pub mod timeline;
pub mod trace;
