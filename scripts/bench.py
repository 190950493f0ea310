#!/usr/bin/env python3
"""End-to-end overhead benchmark: memtrace vs the bare program vs heaptrack.

Builds the workloads (scripts/bench/*.c, Debian's sqlite3 and python3), runs each one
bare, under memtrace (LD_PRELOAD of the release libmemtrace.so) and under heaptrack (when
installed), alternating the three so that machine noise hits them alike, and prints the
median wall time, the ratio to the bare run, the target's peak RSS and the log size.
Then it times `memtrace report` on the churn log against `heaptrack_print` on heaptrack's.

    scripts/bench.py                 # all workloads, 5 runs each
    scripts/bench.py -n 3 churn deep # a subset

Ratios measured side by side in one run are the figures that count; absolute times
depend on the machine.
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


def run_timed(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time; returns (wall seconds, max RSS KiB)."""
    fmt = "%e %M"
    t0 = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", fmt, "-o", "/dev/stderr"] + cmd,
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    last = p.stderr.strip().splitlines()[-1].split()
    return wall, int(last[1])


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def build(tmp):
    subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT, check=True)
    cc = os.environ.get("CC", "gcc")
    for name in ("churn", "deep"):
        subprocess.run([cc, "-O2", "-g", "-pthread", "-o", os.path.join(tmp, name),
                        os.path.join(BENCH, name + ".c")], check=True)


def workloads(tmp):
    sqlite = shutil.which("sqlite3")
    python = shutil.which("python3")
    w = {
        "churn": [os.path.join(tmp, "churn"), "1"],
        "churn_2t": [os.path.join(tmp, "churn"), "2"],
        "churn_4t": [os.path.join(tmp, "churn"), "4"],
        "deep": [os.path.join(tmp, "deep")],
    }
    if sqlite:
        w["sqlite3"] = ["sh", "-c", f"{sqlite} :memory: < {os.path.join(BENCH, 'sqlite.sql')}"]
    if python:
        w["python3"] = [python, os.path.join(BENCH, "json_roundtrip.py")]
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs of each variant (default 5)")
    ap.add_argument("--no-heaptrack", action="store_true", help="skip heaptrack even if installed")
    ap.add_argument("names", nargs="*", help="workloads to run (default: all)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="memtrace-bench-")
    build(tmp)
    lib = os.path.join(ROOT, "target", "release", "libmemtrace.so")
    memtrace = os.path.join(ROOT, "target", "release", "memtrace")
    heaptrack = None if args.no_heaptrack else shutil.which("heaptrack")
    all_w = workloads(tmp)
    names = args.names or list(all_w)

    print(f"{'workload':10} {'variant':10} {'median s':>9} {'ratio':>7} {'peak RSS':>10} {'log':>10}")
    kept = {}
    for name in names:
        cmd = all_w[name]
        res = {"bare": [], "memtrace": [], "heaptrack": []}
        logsize = {}
        for i in range(args.runs):
            res["bare"].append(run_timed(cmd))
            d = tempfile.mkdtemp(dir=tmp)
            env = dict(os.environ, LD_PRELOAD=lib, MEMTRACE_OUTPUT=os.path.join(d, "%e.%p.mtr"))
            res["memtrace"].append(run_timed(cmd, env=env))
            logsize["memtrace"] = dir_size(d)
            if i == 0:
                kept[(name, "memtrace")] = d
            else:
                shutil.rmtree(d)
            if heaptrack:
                d = tempfile.mkdtemp(dir=tmp)
                res["heaptrack"].append(run_timed([heaptrack, "-o", os.path.join(d, "ht")] + cmd))
                logsize["heaptrack"] = dir_size(d)
                if i == 0:
                    kept[(name, "heaptrack")] = d
                else:
                    shutil.rmtree(d)
        bare = statistics.median(w for w, _ in res["bare"])
        for variant, runs in res.items():
            if not runs:
                continue
            med = statistics.median(w for w, _ in runs)
            rss = max(r for _, r in runs)
            size = logsize.get(variant)
            size_s = f"{size / 2**20:.1f} MiB" if size is not None else "-"
            print(f"{name:10} {variant:10} {med:9.3f} {med / bare:6.2f}x {rss / 1024:7.1f} MiB {size_s:>10}", flush=True)

    if ("churn", "memtrace") in kept:
        d = kept[("churn", "memtrace")]
        log = os.path.join(d, sorted(os.listdir(d))[0])
        runs = [run_timed([memtrace, "report", "--format", "json", log]) for _ in range(3)]
        print(f"\nmemtrace report on the churn log: {statistics.median(w for w, _ in runs):.3f} s, "
              f"{max(r for _, r in runs) / 1024:.1f} MiB peak RSS")
        if ("churn", "heaptrack") in kept and shutil.which("heaptrack_print"):
            d = kept[("churn", "heaptrack")]
            f = os.path.join(d, sorted(os.listdir(d))[0])
            runs = [run_timed(["heaptrack_print", "-f", f]) for _ in range(3)]
            print(f"heaptrack_print on heaptrack's churn file: {statistics.median(w for w, _ in runs):.3f} s, "
                  f"{max(r for _, r in runs) / 1024:.1f} MiB peak RSS")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
