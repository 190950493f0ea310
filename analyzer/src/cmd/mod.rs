//! One module per subcommand; each returns the process exit status.

pub mod pack;
pub mod report;
pub mod run;
