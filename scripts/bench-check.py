#!/usr/bin/env python3
"""The CI leak gate's cost: `memtrace check` against the other gates on the same programs.

For each workload it times, alternating the variants so that machine noise hits them
alike:
  bare       the program alone
  memtrace   `memtrace check --error-exitcode 0 -- PROG` (trace, analyze every log,
             judge; the whole gate, start to verdict)
  lsan       the program rebuilt with `-fsanitize=leak` (C workloads only: LeakSanitizer
             needs a rebuild), leak check at exit
  memcheck   `valgrind --leak-check=full --error-exitcode=1` (when valgrind is installed)
and prints the median wall time and the ratio to the bare run.

Workloads: churn (2M malloc/free pairs of random sizes, 1 thread: scripts/bench/churn.c
with TOTAL=2000000, so that memcheck finishes in reasonable time), deep (200k allocations
under a 200-frame recursion), and Debian's sqlite3 building a 200k-row indexed table
(scripts/bench/sqlite.sql, as in scripts/bench.py).

    scripts/bench-check.py          # 3 runs of each
    scripts/bench-check.py -n 5
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench")


def timed(cmd, cwd):
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=3)
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT, check=True)
    memtrace = os.path.join(ROOT, "target", "release", "memtrace")
    tmp = tempfile.mkdtemp(prefix="memtrace-bench-check.")
    cc = os.environ.get("CC", "gcc")
    w = {}
    for name, define in (("churn", "-DTOTAL=2000000L"), ("deep", "-DCOUNT=200000")):
        src = os.path.join(BENCH, name + ".c")
        bare = os.path.join(tmp, name)
        lsan = os.path.join(tmp, name + "-lsan")
        subprocess.run([cc, "-O2", "-g", "-pthread", define, "-o", bare, src], check=True)
        subprocess.run([cc, "-O2", "-g", "-pthread", "-fsanitize=leak", define, "-o", lsan, src], check=True)
        w[name] = ([bare] + (["1"] if name == "churn" else []), [lsan] + (["1"] if name == "churn" else []))
    sqlite = shutil.which("sqlite3")
    if sqlite:
        sql = os.path.join(BENCH, "sqlite.sql")
        w["sqlite3"] = ([sqlite, ":memory:", ".read " + sql], None)

    variants = ["bare", "memtrace", "lsan"] + (["memcheck"] if shutil.which("valgrind") else [])
    print(f"{'workload':10} {'variant':9} {'median s':>9} {'ratio':>8}")
    for name, (cmd, lsan_cmd) in w.items():
        times = {v: [] for v in variants}
        for _ in range(args.runs):
            for v in variants:
                if v == "bare":
                    c = cmd
                elif v == "memtrace":
                    c = [memtrace, "check", "--error-exitcode", "0", "--"] + cmd
                elif v == "lsan":
                    if lsan_cmd is None:
                        continue
                    c = lsan_cmd
                else:
                    c = ["valgrind", "-q", "--leak-check=full", "--error-exitcode=0"] + cmd
                times[v].append(timed(c, tmp))
        base = statistics.median(times["bare"])
        for v in variants:
            if not times[v]:
                print(f"{name:10} {v:9} {'-':>9} {'-':>8}")
                continue
            m = statistics.median(times[v])
            print(f"{name:10} {v:9} {m:9.3f} {m / base:7.2f}x")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
