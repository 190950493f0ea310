#!/usr/bin/env python3
"""What a fork costs a traced program, side by side with the bare program.

scripts/bench/forks.c (gcc -O1 -fno-omit-frame-pointer) interns 131072 distinct stacks
(--depth 17; --depth 0: one), then times 200 fork + waitpid of children that _exit at
once. For each of -n runs the variants alternate:

  bare      the program alone;
  memtrace  under plain LD_PRELOAD of the release libmemtrace.so, MEMTRACE_REACH=0: the
            fork itself, and each child's own log;
  scan      the same with the reachability scan at each child's exit (the default: the
            child starts the `memtrace` next to the library as its scanner, which replays
            the child's log and the parent's it inherited from);
  against   with --against DIR, the scan again with DIR's libmemtrace.so and the
            memtrace beside it (another build's target/release: before and after a
            change, in one run).

Prints the medians of the mean fork + wait time and their ratios to bare. Builds the
release binaries first (cargo build --release).

    scripts/bench-fork.py            # 5 runs
    scripts/bench-fork.py -n 9 --depth 0
    scripts/bench-fork.py --against /tmp/old/target/release
"""

import argparse
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(prog, depth, env, cwd):
    out = subprocess.run([prog, "200", str(depth)], env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout
    key, value = out.split()
    assert key == "fork_wait_us", out
    return float(value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs of each variant (default 5)")
    ap.add_argument("--depth", type=int, default=17, help="2^DEPTH stacks interned (default 17)")
    ap.add_argument("--against", help="another build's release directory, measured alternately")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace"], cwd=ROOT, check=True)
    lib = os.path.join(ROOT, "target", "release", "libmemtrace.so")
    with tempfile.TemporaryDirectory() as tmp:
        prog = os.path.join(tmp, "forks")
        subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", prog,
                        os.path.join(ROOT, "scripts", "bench", "forks.c")], check=True)
        res = {"bare": [], "memtrace": [], "scan": []}
        if args.against:
            res["against"] = []
        for _ in range(args.n):
            for variant in res:
                env = dict(os.environ)
                env.pop("MEMTRACE_SCANNER", None)
                if variant != "bare":
                    env["LD_PRELOAD"] = lib
                    env["MEMTRACE_OUTPUT"] = os.path.join(tmp, "forks.%p.mtr")
                    env["MEMTRACE_REACH"] = "0" if variant == "memtrace" else "1"
                if variant == "against":
                    env["LD_PRELOAD"] = os.path.join(args.against, "libmemtrace.so")
                res[variant].append(one(prog, args.depth, env, tmp))
                for f in os.listdir(tmp):
                    if f.endswith(".mtr"):
                        os.remove(os.path.join(tmp, f))
    bare = statistics.median(res["bare"])
    print(f"fork + wait, {1 << args.depth} stacks interned, median of {args.n}:")
    print(f"  bare      {bare:10.1f} us")
    rows = [("memtrace", "a log per child"), ("scan", "and a scan at each child's exit")]
    if args.against:
        rows.append(("against", f"the scan with {args.against}"))
    for v, what in rows:
        m = statistics.median(res[v])
        print(f"  {v:9} {m:10.1f} us  {m / bare:7.2f}x bare ({what})")


if __name__ == "__main__":
    main()
