#!/usr/bin/env bash
# The project's test command: checks formatting and lints, builds the whole workspace
# (cargo test alone does not build the preload's libmemtrace.so, which the end-to-end
# tests in analyzer/tests/e2e need), then runs every test binary even when one fails.
# Extra arguments go to `cargo test` (e.g. `-- --nocapture`).
# Needs gcc, g++ and rustc for the fixtures, and Debian's libjemalloc-dev for the
# jemalloc fixture; valgrind, if installed, is used as an oracle.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo build --workspace
cargo test --workspace --no-fail-fast "$@"
