//! One module per subcommand; each returns the process exit status.

pub mod check;
pub mod pack;
pub mod report;
pub mod run;
