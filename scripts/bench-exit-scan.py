#!/usr/bin/env python3
"""What the reachability scan at exit adds to a program's exit, side by side.

The program is scripts/bench/exit_heap.c (gcc -O2 -g), with a heap of --mb MiB at exit
(0: a small program, a few blocks). For each size and each of -n runs the variants
alternate:

  bare      the program alone;
  noscan    under plain LD_PRELOAD of the release libmemtrace.so, MEMTRACE_REACH=0
            (recording only);
  scan      the same with the scan at exit (the default: the process starts
            `memtrace __scan`, which stops its other threads, replays the log, reads the
            memory and classifies; the process exits once the kinds are in its log).

It prints the medians of the wall times, the exit delay (scan - noscan) and the scan's
own time as the log records it (summary.scan.duration_ms), and checks that every run was
classified. Builds the release binaries first (cargo build --release).

    scripts/bench-exit-scan.py                 # --mb 0,1024, 3 runs
    scripts/bench-exit-scan.py -n 5 --mb 0,64,512
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def timed(cmd, env, cwd):
    t = time.monotonic()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.returncode} {p.stderr.decode()}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--mb", default="0,1024")
    a = ap.parse_args()
    sh("cargo", "build", "--release", "--workspace", "-q", cwd=ROOT)
    rel = os.path.join(ROOT, "target", "release")
    lib, memtrace = os.path.join(rel, "libmemtrace.so"), os.path.join(rel, "memtrace")
    tmp = tempfile.mkdtemp(prefix="bench-exit-scan.")
    prog = os.path.join(tmp, "exit_heap")
    sh("gcc", "-O2", "-g", "-o", prog, os.path.join(ROOT, "scripts", "bench", "exit_heap.c"))
    base = {k: v for k, v in os.environ.items()
            if k != "LD_PRELOAD" and not k.startswith("MEMTRACE_")}
    print(f"{'heap':>8} {'bare s':>8} {'noscan s':>9} {'scan s':>8} {'exit delay s':>13} "
          f"{'scan (log) s':>13} {'classified':>11}")
    for mb in [int(m) for m in a.mb.split(",")]:
        times = {"bare": [], "noscan": [], "scan": []}
        inner, blocks = [], []
        for _ in range(a.n):
            for v in times:
                d = tempfile.mkdtemp(dir=tmp)
                env = dict(base)
                if v != "bare":
                    env.update(LD_PRELOAD=lib, MEMTRACE_OUTPUT=os.path.join(d, "x.%p.mtr"),
                               MEMTRACE_REACH="0" if v == "noscan" else "1")
                times[v].append(timed([prog, str(mb)], env, d))
                if v == "scan":
                    log = [f for f in os.listdir(d) if f.endswith(".mtr")][0]
                    r = json.loads(subprocess.run(
                        [memtrace, "report", "--format", "json", "--top", "1",
                         os.path.join(d, log)], check=True, capture_output=True).stdout)
                    s = r["summary"]
                    if s["scan"] is None or s["scan"]["status"] != "ok":
                        raise SystemExit(f"not classified: {s['scan']}")
                    inner.append(s["scan"]["duration_ms"] / 1000)
                    blocks.append(s["scan"]["blocks"])
                sh("rm", "-rf", d)
        m = {v: statistics.median(t) for v, t in times.items()}
        print(f"{mb:>5} MiB {m['bare']:>8.3f} {m['noscan']:>9.3f} {m['scan']:>8.3f} "
              f"{m['scan'] - m['noscan']:>13.3f} {statistics.median(inner):>13.3f} "
              f"{blocks[0]:>8} blocks")
    sh("rm", "-rf", tmp)


if __name__ == "__main__":
    main()
