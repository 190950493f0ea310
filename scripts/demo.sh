#!/usr/bin/env bash
# Builds memtrace and libmemtrace.so (release) and runs memtrace on a demo program.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
out=$(mktemp -d)
cc -O1 -g examples/leaky.c -o "$out/leaky"
target/release/memtrace run -o "$out/leaky.%p.mtr" -- "$out/leaky"
log=$(ls "$out"/leaky.*.mtr | head -n 1)
target/release/memtrace report "$log"
echo
echo "JSON: target/release/memtrace report --format json $log"
