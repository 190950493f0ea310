#!/usr/bin/env python3
"""What a fork costs a traced program, side by side with the bare program.

scripts/bench/forks.c (gcc -O1 -fno-omit-frame-pointer) interns 131072 distinct stacks,
then times 200 fork + waitpid of children that _exit at once. For each of -n runs the
variants alternate:

  bare      the program alone;
  memtrace  under plain LD_PRELOAD of the release libmemtrace.so, MEMTRACE_REACH=0: the
            fork itself, and each child's own log;
  scan      the same with the reachability scan at each child's exit (the default: the
            child starts the `memtrace` next to the library as its scanner, which replays
            the child's log and the parent's it inherited from).

Prints the medians of the mean fork + wait time and their ratios to bare. Builds the
release binaries first (cargo build --release).

    scripts/bench-fork.py            # 5 runs
    scripts/bench-fork.py -n 9
"""

import argparse
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(prog, env, cwd):
    out = subprocess.run([prog], env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout
    key, value = out.split()
    assert key == "fork_wait_us", out
    return float(value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs of each variant (default 5)")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace"], cwd=ROOT, check=True)
    lib = os.path.join(ROOT, "target", "release", "libmemtrace.so")
    with tempfile.TemporaryDirectory() as tmp:
        prog = os.path.join(tmp, "forks")
        subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", prog,
                        os.path.join(ROOT, "scripts", "bench", "forks.c")], check=True)
        res = {"bare": [], "memtrace": [], "scan": []}
        for _ in range(args.n):
            for variant in res:
                env = dict(os.environ)
                if variant != "bare":
                    env["LD_PRELOAD"] = lib
                    env["MEMTRACE_OUTPUT"] = os.path.join(tmp, "forks.%p.mtr")
                    env["MEMTRACE_REACH"] = "0" if variant == "memtrace" else "1"
                res[variant].append(one(prog, env, tmp))
                for f in os.listdir(tmp):
                    if f.endswith(".mtr"):
                        os.remove(os.path.join(tmp, f))
    bare = statistics.median(res["bare"])
    print(f"fork + wait, 131072 stacks interned, median of {args.n}:")
    print(f"  bare      {bare:10.1f} us")
    for v, what in (("memtrace", "a log per child"), ("scan", "and a scan at each child's exit")):
        m = statistics.median(res[v])
        print(f"  {v:9} {m:10.1f} us  {m / bare:7.2f}x bare ({what})")


if __name__ == "__main__":
    main()
