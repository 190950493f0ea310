//! The end-to-end harness: builds the fixtures of `tests/fixtures/` once per test run,
//! runs them under `LD_PRELOAD=libmemtrace.so` with their logs in a per-test temporary
//! directory, and reads `memtrace report --format json` back as a [`Report`].
//!
//! Where things come from:
//! - `memtrace`: `CARGO_BIN_EXE_memtrace` (cargo builds it for this test binary).
//! - `libmemtrace.so`: env `MEMTRACE_PRELOAD`, else next to the `memtrace` binary
//!   (`target/debug/`). `cargo test` does not build a cdylib: run `cargo build --workspace`
//!   first (`scripts/test.sh` does).
//! - Fixtures: `tests/fixtures/NAME.{c,cpp,rs}`, compiled with `gcc -O1 -g`, `g++ -O1 -g`
//!   and `rustc -O -g` into `CARGO_TARGET_TMPDIR/e2e-fixtures/`; `libNAME.c` becomes a
//!   shared library `libNAME.so` (`-shared -fPIC`): only shared-library fixtures are
//!   named `lib*`.
//! - valgrind is the independent oracle for heap totals; like every tool the tests use,
//!   it must be installed (see [`require_tool`]).
//!
//! The policy for tools (valgrind, chromium, protoc, python3-protobuf, jemalloc, tcmalloc,
//! redis, ripgrep, the real programs...): every one is installed by `scripts/deps.sh`, and
//! a test that needs one either runs with it or fails, naming the Debian package to
//! install ([`require_tool`], [`missing_tool`]). No test returns early and passes, and no
//! environment variable turns such a test green. Tests that need root fail likewise as
//! another user ([`require_root`]).
//!
//! This module holds where the things under test are ([`root`], [`memtrace_bin`],
//! [`preload_lib`]) and re-exports its submodules, so that a test needs only
//! `use crate::util::*`; they may use one another and nothing of the tests:
//! - `fixtures`: building the fixtures
//! - `run`: running programs (with a timeout, a clean environment, under the preload)
//! - `report`: `memtrace report --format json`, read back as a [`Report`]
//! - `memcheck`: valgrind, the independent oracle
//! - `tools`: the tool policy: required tools and root
//! - `wait`: waiting for conditions (never for a fixed time), the FIFO [`Gate`]

mod fixtures;
mod memcheck;
mod report;
mod run;
mod tools;
mod wait;

pub use fixtures::*;
pub use memcheck::*;
pub use report::*;
pub use run::*;
pub use tools::*;
pub use wait::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// How long any one program may run before the test gives up on it.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace root (the parent of the analyzer package).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("analyzer has a parent directory")
        .to_path_buf()
}

/// The `memtrace` binary under test.
pub fn memtrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memtrace"))
}

/// The preload library under test.
pub fn preload_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = match std::env::var_os("MEMTRACE_PRELOAD") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => memtrace_bin()
                .parent()
                .expect("memtrace binary has a directory")
                .join("libmemtrace.so"),
        };
        assert!(
            lib.is_file(),
            "{} not found: build it first with `cargo build --workspace` \
             (scripts/test.sh does), or point MEMTRACE_PRELOAD at it",
            lib.display()
        );
        lib.canonicalize().expect("canonicalize the preload path")
    })
    .clone()
}
