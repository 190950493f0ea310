#!/usr/bin/env bash
# The project's test command: checks formatting and lints, builds the whole workspace
# (cargo test alone does not build the preload's libmemtrace.so, which the end-to-end
# tests in analyzer/tests/e2e need), then runs every test binary even when one fails.
# Extra arguments go to `cargo test` (e.g. `-- --nocapture`).
# First installs the Debian packages the tests use (scripts/deps.sh: as root; otherwise
# it names them and stops). Needs a Rust toolchain with rustfmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

cargo fmt --all -- --check
scripts/layers.py
scripts/sizes.py
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo build --workspace
cargo test --workspace --no-fail-fast "$@"
