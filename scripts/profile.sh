#!/usr/bin/env bash
# Profile a traced workload with perf: where the time of a program under memtrace goes.
#
#   scripts/profile.sh [-n LINES] [-o DIR] WORKLOAD-OR-COMMAND [ARGS...]
#
# WORKLOAD is one of scripts/bench.py's workloads (churn, churn_imm_4t, deep, stacks1m,
# sqlite3, sqlite3_rand, python3, tree...; built by `scripts/bench.py --print-cmd`);
# anything else is run as a command. It builds the release libmemtrace.so, then runs
#
#   perf record -g -o DIR/perf.data -- env LD_PRELOAD=target/release/libmemtrace.so \
#       MEMTRACE_OUTPUT=DIR/%e.%p.mtr CMD...
#
# (every event recorded, as bench.py's memtrace variant) and prints the top LINES
# (default 40) entries of `perf report --stdio`, by self time (--no-children), with their
# command and shared object: memtrace's own functions are in libmemtrace.so; the command
# `memtrace` is the reachability scanner each process starts at exit (MEMTRACE_REACH=0
# in the environment leaves it out). perf.data and the logs
# stay in DIR (default: a new directory under /tmp) for `perf report -i DIR/perf.data`.
# PERF_RECORD_ARGS replaces `-g` (e.g. `--call-graph dwarf`: the release build keeps no
# frame pointers, so `-g` call chains through Rust code are short).
#
# perf is Debian's package linux-perf: installed here when missing and run as root,
# otherwise named, and the script stops.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
lines=40
dir=
while [ $# -gt 0 ]; do
  case "$1" in
    -n) lines=$2; shift 2 ;;
    -o) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: scripts/profile.sh [-n LINES] [-o DIR] WORKLOAD-OR-COMMAND [ARGS...]" >&2; exit 2; }

if ! command -v perf >/dev/null 2>&1 || ! perf --version >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "profile.sh needs perf: install the Debian package linux-perf (sudo apt-get install linux-perf)" >&2
    exit 1
  fi
  echo "installing linux-perf (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq linux-perf >/dev/null
fi

[ -n "$dir" ] || dir=$(mktemp -d /tmp/memtrace-profile.XXXXXX)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

(cd "$root" && cargo build --release -p memtrace-preload --quiet)
lib="$root/target/release/libmemtrace.so"

# A workload name becomes its command (built into $dir); anything else is the command.
cmd=()
if [ $# -eq 1 ] && mapfile -d '' cmd < <(python3 "$root/scripts/bench.py" --print-cmd "$1" --workdir "$dir" 2>/dev/null) && [ ${#cmd[@]} -gt 0 ]; then
  echo "workload $1: ${cmd[*]}" >&2
else
  cmd=("$@")
fi

read -r -a record_args <<<"${PERF_RECORD_ARGS:--g}"
echo "perf record ${record_args[*]} -- LD_PRELOAD=$lib ${cmd[*]}" >&2
perf record "${record_args[@]}" -o "$dir/perf.data" -- \
  env LD_PRELOAD="$lib" MEMTRACE_OUTPUT="$dir/%e.%p.mtr" "${cmd[@]}" >/dev/null

# perf's IPC columns are empty ("-") where the machine has no hardware counters.
strip() { grep -v '^#' | grep -v '^$' | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//'; }
echo
echo "samples by command (the program; memtrace: the exit's reachability scanner):"
perf report -i "$dir/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null | strip | head -n 5
echo
echo "top $lines entries by self time (perf report --stdio --no-children --sort comm,dso,symbol):"
perf report -i "$dir/perf.data" --stdio --no-children --sort comm,dso,symbol -g none 2>/dev/null |
  strip | head -n "$lines"
echo
echo "perf.data and the logs: $dir (perf report -i $dir/perf.data)"
