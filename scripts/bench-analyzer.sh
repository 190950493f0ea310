#!/bin/sh
# Analyzer memory benchmark: a 20M-event log (10M malloc/free pairs through a
# 3-deep call chain, a sliding window of 1000 live blocks, sizes 16..4096 B)
# is analyzed by `memtrace report`; its peak RSS must stay under 128 MiB.
# Prints the peak RSS and wall time, and heaptrack_print's on the same
# workload when heaptrack is installed.
#
#   scripts/bench-analyzer.sh            # PAIRS=10000000 by default
#   PAIRS=1000000 scripts/bench-analyzer.sh
#
# Needs gcc and GNU time (/usr/bin/time, Debian package `time`).
set -eu
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-10000000}
LIMIT_KB=$((128 * 1024))

if [ ! -x /usr/bin/time ]; then
    echo "bench-analyzer: /usr/bin/time is missing (apt-get install time)" >&2
    exit 2
fi
cargo build --release -q -p memtrace -p memtrace-preload 2>/dev/null || cargo build --release -q
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cat > "$dir/churn.c" <<'C'
#include <stdlib.h>
#define WINDOW 1000
static void *slot[WINDOW];
__attribute__((noipa)) static void *leaf(size_t n) { return malloc(n); }
__attribute__((noipa)) static void *mid(size_t n) { return leaf(n); }
__attribute__((noipa)) static void *top(size_t n) { return mid(n); }
int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 10000000;
    unsigned x = 12345;
    /* Every malloc has its free: the first WINDOW frees are of NULL, the
       last WINDOW blocks are freed after the loop. */
    for (long i = 0; i < pairs; i++) {
        x = x * 1103515245u + 12345u;
        size_t size = 16 + (x >> 8) % 4081;
        long k = i % WINDOW;
        free(slot[k]);
        slot[k] = top(size);
    }
    for (long k = 0; k < WINDOW; k++)
        free(slot[k]);
    return 0;
}
C
gcc -O2 -g -o "$dir/churn" "$dir/churn.c"

# GNU time's -f: %M peak RSS in KiB, %e wall seconds.
measure() {
    /usr/bin/time -f '%M %e' -o "$dir/time" "$@" > /dev/null
    cat "$dir/time"
}

start=$(date +%s.%N)
LD_PRELOAD="$PWD/target/release/libmemtrace.so" MEMTRACE_OUTPUT="$dir/churn.%p.mtr" \
    "$dir/churn" "$PAIRS"
traced=$(echo "$(date +%s.%N) - $start" | bc)
log=$(ls "$dir"/churn.*.mtr)
json=$(target/release/memtrace report --format json "$log")
count() { echo "$json" | grep -m 1 "\"$1\"" | tr -dc 0-9; }
events="$(count allocations) allocations, $(count frees) frees"
set -- $(measure target/release/memtrace report "$log")
rss_kb=$1 wall=$2
printf 'workload: %s malloc/free pairs, traced in %.1f s; log %s MiB; counted: %s\n' \
    "$PAIRS" "$traced" "$(($(stat -c %s "$log") / 1048576))" "$events"
printf '%-28s peak RSS %7.1f MiB   wall %6.2f s\n' "memtrace report" \
    "$(echo "$rss_kb / 1024" | bc -l)" "$wall"

if command -v heaptrack > /dev/null && command -v heaptrack_print > /dev/null; then
    heaptrack -o "$dir/ht" "$dir/churn" "$PAIRS" > /dev/null 2>&1 || true
    ht=$(ls "$dir"/ht* 2> /dev/null | head -n 1)
    if [ -n "$ht" ]; then
        set -- $(measure heaptrack_print -f "$ht")
        printf '%-28s peak RSS %7.1f MiB   wall %6.2f s\n' "heaptrack_print (same run)" \
            "$(echo "$1 / 1024" | bc -l)" "$2"
    fi
fi

if [ "$rss_kb" -ge "$LIMIT_KB" ]; then
    echo "FAIL: memtrace report used $rss_kb KiB, limit $LIMIT_KB KiB" >&2
    exit 1
fi
echo "OK: peak RSS under 128 MiB"
