#!/usr/bin/env python3
"""End-to-end overhead benchmark: memtrace vs the bare program vs heaptrack.

Builds the workloads (scripts/bench/*.c, Debian's sqlite3 and python3), runs each one
bare, under memtrace (LD_PRELOAD of the release libmemtrace.so, every event recorded),
under memtrace's sampling mode (MEMTRACE_SAMPLE at its default interval) and under
heaptrack (when installed), alternating the variants so that machine noise hits them
alike, and prints the median wall time, the ratio to the bare run, the target's peak RSS
and the log size (memtrace's after `memtrace pack`, which `memtrace run` does when the
program ends; the raw log's size and the packing time are shown too).
Then it times `memtrace report` on the churn log against `heaptrack_print` on heaptrack's,
and compares the sampled runs' per-site estimates with the full runs' figures.

    scripts/bench.py                 # all workloads, 5 runs each
    scripts/bench.py -n 3 churn deep # a subset

Ratios measured side by side in one run are the figures that count; absolute times
depend on the machine.
"""

import argparse
import json
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
        w["sqlite3"] = [sqlite, ":memory:", ".read " + os.path.join(BENCH, "sqlite.sql")]
    if python:
        w["python3"] = [python, os.path.join(BENCH, "json_roundtrip.py")]
    return w


def sites(memtrace, log, kind):
    """Per-site bytes of a report list ("allocated" or heap "leaks"), keyed by the
    symbolized stack (stack ids differ between runs)."""
    p = subprocess.run([memtrace, "report", "--format", "json", "--top", "100000", log],
                       capture_output=True, text=True, check=True)
    doc = json.loads(p.stdout)
    out = {}
    entries = doc["allocated"] if kind == "allocated" else [l for l in doc["leaks"] if l["kind"] == "heap"]
    for e in entries:
        key = tuple((f["function"], f["file"], f["line"]) for f in e["stack"])
        out[key] = out.get(key, 0) + e["bytes"]
    return out, doc["summary"]


def compare_sampling(memtrace, name, full_log, sampled_log):
    """Prints, for the sites holding at least 5% of the total, the sampled estimate's
    error against the full run."""
    for kind in ("allocated", "leaked"):
        full, _ = sites(memtrace, full_log, kind)
        est, summary = sites(memtrace, sampled_log, kind)
        total = sum(full.values())
        if total == 0:
            print(f"  {name:10} {kind:9}: nothing in the full run; sampled estimate {sum(est.values())} bytes")
            continue
        big = [(k, v) for k, v in full.items() if v >= 0.05 * total]
        errs = [abs(est.get(k, 0) - v) / v for k, v in big]
        worst = max(errs) if errs else 0.0
        tot_err = abs(sum(est.values()) - total) / total
        print(f"  {name:10} {kind:9}: {len(big)} sites with >= 5% of {total / 2**20:.1f} MiB; "
              f"worst site off by {100 * worst:.2f}%, total off by {100 * tot_err:.2f}% "
              f"(interval {summary['sample_interval']} bytes)")


def largest(d):
    """The largest file in d: the target's log (/usr/bin/time, which starts the target,
    is traced too and leaves a small log of its own)."""
    return max((os.path.join(d, f) for f in os.listdir(d)), key=os.path.getsize)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs of each variant (default 5)")
    ap.add_argument("--no-heaptrack", action="store_true", help="skip heaptrack even if installed")
    ap.add_argument("--sample", default="4k", help="sampling interval of the sampled variant (default 4k, the default of MEMTRACE_SAMPLE)")
    ap.add_argument("names", nargs="*", help="workloads to run (default: all)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="memtrace-bench-")
    build(tmp)
    lib = os.path.join(ROOT, "target", "release", "libmemtrace.so")
    memtrace = os.path.join(ROOT, "target", "release", "memtrace")
    heaptrack = None if args.no_heaptrack else shutil.which("heaptrack")
    all_w = workloads(tmp)
    names = args.names or list(all_w)
    sample = str(int(args.sample[:-1]) * 1024) if args.sample[-1:] in "kK" else args.sample

    print(f"{'workload':10} {'variant':10} {'median s':>9} {'ratio':>7} {'peak RSS':>10} {'log':>10} "
          f"{'raw log':>10} {'pack s':>7}")
    kept = {}
    for name in names:
        cmd = all_w[name]
        res = {"bare": [], "memtrace": [], "sampled": [], "heaptrack": []}
        logsize, rawsize, packtime = {}, {}, {}
        for i in range(args.runs):
            res["bare"].append(run_timed(cmd))
            for variant, extra in (("memtrace", {}), ("sampled", {"MEMTRACE_SAMPLE": sample})):
                d = tempfile.mkdtemp(dir=tmp)
                env = dict(os.environ, LD_PRELOAD=lib, MEMTRACE_OUTPUT=os.path.join(d, "%e.%p.mtr"), **extra)
                res[variant].append(run_timed(cmd, env=env))
                if i == 0:
                    rawsize[variant] = dir_size(d)
                    logs = [os.path.join(d, f) for f in sorted(os.listdir(d))]
                    t0 = time.monotonic()
                    subprocess.run([memtrace, "pack"] + logs, check=True, stderr=subprocess.DEVNULL)
                    packtime[variant] = time.monotonic() - t0
                    logsize[variant] = dir_size(d)
                    kept[(name, variant)] = d
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
            mib = lambda v: f"{v / 2**20:.1f} MiB" if v is not None else "-"
            pt = f"{packtime[variant]:.2f}" if variant in packtime else "-"
            print(f"{name:10} {variant:10} {med:9.3f} {med / bare:6.2f}x {rss / 1024:7.1f} MiB "
                  f"{mib(logsize.get(variant)):>10} {mib(rawsize.get(variant)):>10} {pt:>7}", flush=True)

    if ("churn", "memtrace") in kept:
        log = largest(kept[("churn", "memtrace")])
        runs = [run_timed([memtrace, "report", "--format", "json", log]) for _ in range(3)]
        ours = statistics.median(w for w, _ in runs)
        print(f"\nmemtrace report on the churn log: {ours:.3f} s, "
              f"{max(r for _, r in runs) / 1024:.1f} MiB peak RSS")
        if ("churn", "heaptrack") in kept and shutil.which("heaptrack_print"):
            f = largest(kept[("churn", "heaptrack")])
            runs = [run_timed(["heaptrack_print", "-f", f]) for _ in range(3)]
            theirs = statistics.median(w for w, _ in runs)
            print(f"heaptrack_print on heaptrack's churn file: {theirs:.3f} s, "
                  f"{max(r for _, r in runs) / 1024:.1f} MiB peak RSS (memtrace: {ours / theirs:.2f} of it)")

    printed = False
    for name in names:
        if (name, "sampled") in kept and (name, "memtrace") in kept:
            if not printed:
                print("\nsampling: estimates of the sampled run against the full run")
                printed = True
            compare_sampling(memtrace, name, largest(kept[(name, "memtrace")]), largest(kept[(name, "sampled")]))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
