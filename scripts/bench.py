#!/usr/bin/env python3
"""End-to-end overhead benchmark: memtrace vs the bare program vs heaptrack.

Builds memtrace (release) and the workloads (scripts/bench/*.c; Debian's sqlite3, python3
and bash), installs what is missing (gcc, GNU time, sqlite3, heaptrack: apt-get when run
as root, else it names the packages and stops), and runs each workload in these variants,
alternating them run after run so that machine noise hits them alike:

  bare       the program alone;
  memtrace   plain LD_PRELOAD of the release libmemtrace.so, every event recorded (the
             recording alone: the raw log is packed afterwards, by `memtrace pack`, timed
             apart in "pack s");
  sampled    the same under MEMTRACE_SAMPLE (--sample, default 4k);
  run        `memtrace run -o DIR/%e.%p.mtr -- CMD`, end to end: until the command returns,
             the exit's reachability scan and the packing of the log included; "log" is
             the final log;
  heaptrack  `heaptrack -o DIR/ht CMD`, end to end too (its interpreter and zstd compress
             while the program runs); "log" is its compressed file.

It prints the median wall time, the ratios to the bare run and to heaptrack's, the peak RSS
(the largest process of the run; GNU time's %M) and the log sizes. Then:

  - analysis: `memtrace report` on the log `memtrace run` left (the run variant's: packed,
    with the kernel's samples, as users report on it; the memtrace variant's packed log
    when there is no run variant) against `heaptrack_print` on heaptrack's file of the
    same workload (churn, churn_imm, stacks1m): wall, CPU and peak RSS, medians of -n runs;
  - end to end: `memtrace run` against `heaptrack` on the churns, with each final log;
  - sampling: the sampled runs' per-site estimates against the full runs' figures;
  - snapshots (workload `snapshots`): --snapshots N,... snapshots taken one after the
    other (`memtrace snapshot PID`) of scripts/bench/snap_churn.c (10 threads churning
    1 MiB blocks over a --snapshot-mb heap) under `memtrace run --raw --no-reachability`,
    each count in a fresh process: the total time, the time per snapshot, the longest
    gap between two turns of any thread meanwhile against an idle window's, and the log
    at the end (a snapshot that fails or times out, --snapshot-timeout, ends its series,
    said in the row); side by side with as many LeakSanitizer leak checks
    (__lsan_do_recoverable_leak_check) of the same program built with -fsanitize=leak.
    scripts/bench-snapshot.py measures one snapshot of a single-threaded server in
    detail (the fork stall, copy-on-write, latency, memory; against vgdb leak_check).

Workloads (names for the command line):

  churn, churn_2t, churn_4t           scripts/bench/churn.c: 10M malloc/free pairs, a
                                      window of 1000 live blocks, on 1, 2, 4 threads
  churn_imm, churn_imm_2t, churn_imm_4t
                                      scripts/bench/churn_imm.c: 15 of 16 blocks freed
                                      right after allocation, 8M events, 1, 2, 4 threads
  deep                                scripts/bench/deep.c: 1M allocations 200 frames deep
  stacks1m                            scripts/bench/stacks.c: 1M distinct stacks (the
                                      analysis section times `memtrace report` on it)
  sqlite3                             Debian's sqlite3: scripts/bench/sqlite.sql, a 200k-row
                                      table indexed on generated names
  sqlite3_rand                        scripts/bench/sqlite_rand.sql: the same on random
                                      strings (random insertion order into the index)
  python3                             scripts/bench/json_roundtrip.py
  tree                                200 short processes: bash -c 'for i in $(seq 200);
                                      do /bin/true; done' (bare, memtrace = plain
                                      LD_PRELOAD, run = `memtrace run`, whose stderr lines
                                      are counted; heaptrack is not run: it traces the
                                      first process only, its children fail to lock its
                                      output pipe)
  snapshots                           repeated snapshots, see above

    scripts/bench.py                        # all workloads, 5 runs each
    scripts/bench.py -n 3 churn deep        # a subset
    scripts/bench.py -n 3 --snapshots 10,30 snapshots
    scripts/bench.py --print-cmd churn_imm --workdir DIR   # build it, print its command
                                                           # (NUL-separated; scripts/profile.sh)

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
LIB = os.path.join(ROOT, "target", "release", "libmemtrace.so")
MEMTRACE = os.path.join(ROOT, "target", "release", "memtrace")
TREE = "for i in $(seq 200); do /bin/true; done"
ANALYZED = ("churn", "churn_imm", "stacks1m")  # report vs heaptrack_print
NO_SAMPLING_CHECK = ("stacks1m",)  # a million one-block sites: nothing to compare per site

# Fixtures: (executable, source, extra compiler flags).
FIXTURES = [
    ("churn", "churn.c", []),
    ("churn_imm", "churn_imm.c", []),
    ("deep", "deep.c", []),
    ("stacks", "stacks.c", []),
    ("snap_churn", "snap_churn.c", []),
    ("snap_churn_lsan", "snap_churn.c", ["-fsanitize=leak", "-DLSAN"]),
]

# What the script runs, and the Debian package that has it.
TOOLS = [("gcc", "gcc"), ("/usr/bin/time", "time"), ("sqlite3", "sqlite3"), ("bash", "bash")]
HEAPTRACK_TOOLS = [("heaptrack", "heaptrack"), ("heaptrack_print", "heaptrack")]


def ensure_tools(heaptrack):
    """Installs the missing tools (apt-get, as root) or names them and stops."""
    tools = TOOLS + (HEAPTRACK_TOOLS if heaptrack else [])
    need = sorted({pkg for tool, pkg in tools if not shutil.which(tool)})
    if not need:
        return
    if os.geteuid() != 0:
        sys.exit(f"the benchmark needs these Debian packages: {' '.join(need)}\n"
                 f"install them with: sudo apt-get install {' '.join(need)}"
                 + ("\n(or pass --no-heaptrack)" if "heaptrack" in need else ""))
    print(f"installing {' '.join(need)} (apt-get)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq"] + need, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def run_timed(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time; returns (wall seconds, max RSS KiB, CPU seconds,
    the lines cmd wrote on stderr)."""
    t0 = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M %U %S", "-o", "/dev/stderr"] + cmd,
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    lines = p.stderr.strip().splitlines()
    last = lines[-1].split()
    return wall, int(last[1]), float(last[2]) + float(last[3]), lines[:-1]


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def build_fixtures(out):
    cc = os.environ.get("CC", "gcc")
    for exe, src, flags in FIXTURES:
        subprocess.run([cc, "-O2", "-g", "-pthread"] + flags + ["-o", os.path.join(out, exe),
                        os.path.join(BENCH, src)], check=True)


def build(tmp):
    subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT, check=True)
    build_fixtures(tmp)


def python3():
    """Debian's python3 (not a pyenv shim, a shell script that would be traced too)."""
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3") or "python3"


def workloads(tmp):
    """name -> command, in the default order (snapshots is driven apart)."""
    churn = os.path.join(tmp, "churn")
    imm = os.path.join(tmp, "churn_imm")
    w = {
        "churn": [churn, "1"], "churn_2t": [churn, "2"], "churn_4t": [churn, "4"],
        "churn_imm": [imm, "1"], "churn_imm_2t": [imm, "2"], "churn_imm_4t": [imm, "4"],
        "deep": [os.path.join(tmp, "deep")],
        "stacks1m": [os.path.join(tmp, "stacks")],
        "sqlite3": [shutil.which("sqlite3") or "sqlite3", ":memory:", ".read " + os.path.join(BENCH, "sqlite.sql")],
        "sqlite3_rand": [shutil.which("sqlite3") or "sqlite3", ":memory:", ".read " + os.path.join(BENCH, "sqlite_rand.sql")],
        "python3": [python3(), os.path.join(BENCH, "json_roundtrip.py")],
        "tree": [shutil.which("bash") or "/bin/bash", "-c", TREE],
        "snapshots": [os.path.join(tmp, "snap_churn")],
    }
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
            print(f"  {name:12} {kind:9}: nothing in the full run; sampled estimate {sum(est.values())} bytes")
            continue
        big = [(k, v) for k, v in full.items() if v >= 0.05 * total]
        errs = [abs(est.get(k, 0) - v) / v for k, v in big]
        worst = max(errs) if errs else 0.0
        tot_err = abs(sum(est.values()) - total) / total
        print(f"  {name:12} {kind:9}: {len(big)} sites with >= 5% of {total / 2**20:.1f} MiB; "
              f"worst site off by {100 * worst:.2f}%, total off by {100 * tot_err:.2f}% "
              f"(interval {summary['sample_interval']} bytes)")


def largest(d):
    """The largest file in d: the target's log (/usr/bin/time, which starts the target,
    is traced too and leaves a small log of its own)."""
    return max((os.path.join(d, f) for f in os.listdir(d)), key=os.path.getsize)


def mib(v):
    if v is None:
        return "-"
    return f"{v / 2**20:.1f} MiB" if v >= 2**20 else f"{v / 1024:.0f} KiB"


class Workload:
    """The runs of one workload: per variant the (wall, rss, cpu, stderr lines) of each
    run, the log sizes of the first run, and the directories kept for the analysis."""

    def __init__(self, name, cmd, variants):
        self.name, self.cmd, self.variants = name, cmd, variants
        self.res = {v: [] for v in variants}
        self.logsize, self.rawsize, self.packtime = {}, {}, {}
        self.kept = {}

    def run_once(self, i, tmp, sample, heaptrack):
        for variant in self.variants:
            if variant == "bare":
                self.res[variant].append(run_timed(self.cmd))
                continue
            d = tempfile.mkdtemp(dir=tmp)
            out = os.path.join(d, "%e.%p.mtr")
            if variant in ("memtrace", "sampled"):
                extra = {"MEMTRACE_SAMPLE": sample} if variant == "sampled" else {}
                env = dict(os.environ, LD_PRELOAD=LIB, MEMTRACE_OUTPUT=out, **extra)
                self.res[variant].append(run_timed(self.cmd, env=env))
                if i == 0:
                    self.rawsize[variant] = dir_size(d)
                    logs = [os.path.join(d, f) for f in sorted(os.listdir(d))]
                    t0 = time.monotonic()
                    subprocess.run([MEMTRACE, "pack"] + logs, check=True, stderr=subprocess.DEVNULL)
                    self.packtime[variant] = time.monotonic() - t0
            elif variant == "run":
                self.res[variant].append(run_timed([MEMTRACE, "run", "-o", out, "--"] + self.cmd))
            elif variant == "heaptrack":
                self.res[variant].append(run_timed([heaptrack, "-o", os.path.join(d, "ht")] + self.cmd))
            if i == 0:
                self.logsize[variant] = dir_size(d)
                self.kept[variant] = d
            else:
                shutil.rmtree(d)

    def median(self, variant):
        runs = self.res.get(variant)
        return statistics.median(r[0] for r in runs) if runs else None

    def print_rows(self):
        bare, ht = self.median("bare"), self.median("heaptrack")
        for variant, runs in self.res.items():
            med = self.median(variant)
            rss = max(r[1] for r in runs)
            pt = f"{self.packtime[variant]:.2f}" if variant in self.packtime else "-"
            vs_ht = f"{med / ht:6.2f}x" if ht and variant != "bare" else "      -"
            note = ""
            if self.name == "tree":
                if variant == "memtrace":
                    note = "plain LD_PRELOAD"
                elif variant == "run":
                    n = statistics.median(len(r[3]) for r in runs)
                    per = (med - bare) / 200 * 1000
                    note = f"{n:g} lines on stderr; {per:+.2f} ms per /bin/true"
            print(f"{self.name:12} {variant:9} {med:9.3f} {med / bare:6.2f}x {vs_ht} {rss / 1024:7.1f} MiB "
                  f"{mib(self.logsize.get(variant)):>10} {mib(self.rawsize.get(variant)):>10} {pt:>7}"
                  f"{'  ' + note if note else ''}", flush=True)


def analysis(done, runs):
    """memtrace report vs heaptrack_print on the same workload."""
    # The log `memtrace run` leaves (packed, with the kernel's samples and the
    # exit scan's kinds: what a user reports on), else the packed LD_PRELOAD log.
    todo = [w for n, w in done.items() if n in ANALYZED and ("run" in w.kept or "memtrace" in w.kept)]
    if not todo:
        return
    print(f"\nanalysis: `memtrace report --format json` on the `memtrace run` log (else the packed "
          f"LD_PRELOAD log) vs `heaptrack_print` on heaptrack's file, median of {runs}")
    print(f"{'workload':12} {'tool':15} {'wall s':>8} {'cpu s':>7} {'peak RSS':>11} {'ratio':>7}")
    hp = shutil.which("heaptrack_print")
    for w in todo:
        log = largest(w.kept.get("run") or w.kept["memtrace"])
        ht = largest(w.kept["heaptrack"]) if "heaptrack" in w.kept and hp else None
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(run_timed([MEMTRACE, "report", "--format", "json", log]))
            if ht:
                theirs.append(run_timed([hp, "-f", ht]))
        o = statistics.median(r[0] for r in ours)
        t = statistics.median(r[0] for r in theirs) if theirs else None
        for tool, rs, ratio in (("memtrace report", ours, f"{o / t:6.2f}x" if t else "      -"),
                                ("heaptrack_print", theirs, "")):
            if rs:
                print(f"{w.name:12} {tool:15} {statistics.median(r[0] for r in rs):8.3f} "
                      f"{statistics.median(r[2] for r in rs):7.2f} {max(r[1] for r in rs) / 1024:7.1f} MiB "
                      f"{ratio:>7}", flush=True)


def end_to_end(done):
    rows = [w for n, w in done.items() if n.startswith("churn") and "run" in w.res and "heaptrack" in w.res]
    if not rows:
        return
    print("\nend to end on the churns: `memtrace run` (recording, exit scan, packing) vs `heaptrack` "
          "(recording, interpreting, zstd), until the command returns")
    print(f"{'workload':12} {'run s':>7} {'heaptrack s':>11} {'ratio':>7} {'run log':>10} {'heaptrack file':>14} {'ratio':>7}")
    for w in rows:
        r, h = w.median("run"), w.median("heaptrack")
        lr, lh = w.logsize["run"], w.logsize["heaptrack"]
        print(f"{w.name:12} {r:7.3f} {h:11.3f} {r / h:6.2f}x {mib(lr):>10} {mib(lh):>14} {lr / lh:6.2f}x")


class SnapChurn:
    """scripts/bench/snap_churn.c, driven through its pipes (see its header)."""

    def __init__(self, cmd, errfile):
        self.err = open(errfile, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            sys.exit(f"snap_churn did not start ({' '.join(cmd)}): {line!r}; see {errfile}")
        self.pid = int(line.split()[1])  # the program's (not memtrace run's)

    def ask(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stat(self):
        return {k: float(v) for k, v in (f.split("=") for f in self.ask("stat").split()[1:])}

    def idle(self, seconds):
        """The longest gap (ms) of a window of `seconds` with nothing going on."""
        assert self.ask("mark") == "marked"
        time.sleep(seconds)
        return self.stat()["maxgap_us"] / 1000

    def quit(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=600)
        self.err.close()


def snapshots(tmp, counts, runs, mb, threads, timeout):
    exe = os.path.join(tmp, "snap_churn")
    args = ["--threads", str(threads), "--mb", str(mb)]
    print(f"\nsnapshots: N snapshots one after the other while {threads} threads churn 1 MiB blocks "
          f"({mb} MiB heap), each N in a fresh process, median of {runs}; vs N LeakSanitizer checks")
    print(f"{'N':>4} {'variant':9} {'total s':>8} {'per one ms':>10} {'longest gap ms':>14} "
          f"{'idle gap ms':>11} {'log at end':>11} {'ratio':>7}")
    for n in counts:
        res = {"memtrace": [], "lsan": []}
        logsize, failed, taken = None, None, 0
        for _ in range(runs):
            d = tempfile.mkdtemp(dir=tmp)
            s = SnapChurn([MEMTRACE, "run", "--raw", "--no-reachability", "-o", os.path.join(d, "%p.mtr"),
                           "--", exe] + args, os.path.join(d, "run.err"))
            idle = s.idle(2.0)
            assert s.ask("mark") == "marked"
            t0 = t_ok = time.monotonic()
            taken = 0
            for k in range(n):
                p = subprocess.run([MEMTRACE, "snapshot", "--timeout", str(timeout), str(s.pid)],
                                   capture_output=True, text=True)
                path = p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
                if p.returncode != 0 or not path:
                    # Said, and the series stops there (the next ones would pile up behind
                    # it); the figures are those of the snapshots taken.
                    failed = f"snapshot {k + 1} of {n} failed"
                    err = (p.stderr.strip().splitlines() or ["no message"])[-1]
                    print(f"  ({failed}, exit {p.returncode}: {err})", flush=True)
                    break
                taken += 1
                t_ok = time.monotonic()
            total = (t_ok if failed else time.monotonic()) - t0  # a failed one's wait left out
            with open(os.path.join(d, "run.err")) as f:
                warnings = [l.strip() for l in f if "warning" in l]
            for l in warnings[:3]:
                print(f"  (memtrace run: {l})", flush=True)
            st = s.stat()
            logsize = os.path.getsize(os.path.join(d, f"{s.pid}.mtr"))
            s.quit()
            shutil.rmtree(d)
            res["memtrace"].append((total, st["maxgap_us"] / 1000, idle))

            s = SnapChurn([exe + "_lsan"] + args, os.path.join(tmp, "lsan.err"))
            idle = s.idle(2.0)
            assert s.ask("mark") == "marked"
            ans = s.ask(f"lsan {n}")
            st = s.stat()
            s.quit()
            f = dict(x.split("=") for x in ans.split()[1:]) if ans.startswith("lsan ") else None
            if f:
                res["lsan"].append((float(f["secs"]), st["maxgap_us"] / 1000, idle))
            else:
                print(f"  (LeakSanitizer: {ans!r}; see {os.path.join(tmp, 'lsan.err')})")
        lsan_total = statistics.median(r[0] for r in res["lsan"]) if res["lsan"] else None
        for variant, rs in res.items():
            if not rs:
                continue
            total = statistics.median(r[0] for r in rs)
            ratio = f"{total / lsan_total:6.1f}x" if lsan_total and variant == "memtrace" else "      -"
            log = mib(logsize) if variant == "memtrace" else "-"
            note = f"  {failed}: figures of the {taken} before" if failed and variant == "memtrace" else ""
            per = 1000 * total / max(1, taken if variant == "memtrace" and failed else n)
            print(f"{n:4} {variant:9} {total:8.2f} {per:10.1f} "
                  f"{statistics.median(r[1] for r in rs):14.1f} {statistics.median(r[2] for r in rs):11.1f} "
                  f"{log:>11} {ratio:>7}{note}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs of each variant (default 5)")
    ap.add_argument("--no-heaptrack", action="store_true", help="skip heaptrack even if installed")
    ap.add_argument("--sample", default="4k", help="sampling interval of the sampled variant (default 4k, the default of MEMTRACE_SAMPLE)")
    ap.add_argument("--snapshots", default="10,30,100", metavar="N,...",
                    help="snapshot counts of the snapshots workload (default 10,30,100)")
    ap.add_argument("--snapshot-runs", type=int, default=1, help="runs of each snapshot count (default 1)")
    ap.add_argument("--snapshot-mb", type=int, default=512, help="snap_churn's heap in MiB (default 512)")
    ap.add_argument("--snapshot-threads", type=int, default=10, help="snap_churn's threads (default 10)")
    ap.add_argument("--snapshot-timeout", type=int, default=600,
                    help="seconds each `memtrace snapshot` may wait (default 600); a failed one ends its series")
    ap.add_argument("--print-cmd", metavar="NAME", help="build the workload NAME into --workdir and print "
                    "its command, NUL-separated (for scripts/profile.sh); no benchmark")
    ap.add_argument("--workdir", help="with --print-cmd: where to build")
    ap.add_argument("names", nargs="*", help="workloads to run (default: all)")
    args = ap.parse_args()

    if args.print_cmd:
        if not args.workdir:
            sys.exit("--print-cmd needs --workdir")
        names = workloads(args.workdir)
        if args.print_cmd not in names or args.print_cmd == "snapshots":
            sys.exit(f"no such workload to print: {args.print_cmd} (one of "
                     f"{', '.join(n for n in names if n != 'snapshots')})")
        os.makedirs(args.workdir, exist_ok=True)
        build_fixtures(args.workdir)
        sys.stdout.write("\0".join(names[args.print_cmd]) + "\0")
        return

    tmp = tempfile.mkdtemp(prefix="memtrace-bench-")
    all_w = workloads(tmp)
    names = args.names or list(all_w)
    unknown = [n for n in names if n not in all_w]
    if unknown:
        shutil.rmtree(tmp)
        sys.exit(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(all_w)}")
    ensure_tools(not args.no_heaptrack)
    build(tmp)
    heaptrack = None if args.no_heaptrack else shutil.which("heaptrack")
    sample = str(int(args.sample[:-1]) * 1024) if args.sample[-1:] in "kK" else args.sample

    if any(n != "snapshots" for n in names):
        print("variants: bare; memtrace = LD_PRELOAD, recording only; sampled = the same with "
              f"MEMTRACE_SAMPLE={sample}; run = `memtrace run` end to end; heaptrack = its command, "
              "end to end. x bare, x heaptrack: ratios of the medians")
        print(f"{'workload':12} {'variant':9} {'median s':>9} {'x bare':>7} {'x heaptr':>7} {'peak RSS':>11} "
              f"{'log':>10} {'raw log':>10} {'pack s':>7}")
    done = {}
    for name in names:
        if name == "snapshots":
            continue
        if name == "tree":
            variants = ["bare", "memtrace", "run"]
        else:
            variants = ["bare", "memtrace", "sampled", "run"] + (["heaptrack"] if heaptrack else [])
        w = Workload(name, all_w[name], variants)
        for i in range(args.runs):
            w.run_once(i, tmp, sample, heaptrack)
        w.print_rows()
        done[name] = w
    if "tree" in done:
        print("(tree: heaptrack not run: it traces the first process only; the children inherit its "
              "preload but fail to lock its output pipe)")

    analysis(done, args.runs)
    end_to_end(done)

    printed = False
    for name, w in done.items():
        if "sampled" in w.kept and "memtrace" in w.kept and name not in NO_SAMPLING_CHECK:
            if not printed:
                print("\nsampling: estimates of the sampled run against the full run")
                printed = True
            compare_sampling(MEMTRACE, name, largest(w.kept["memtrace"]), largest(w.kept["sampled"]))

    if "snapshots" in names:
        counts = [int(c) for c in args.snapshots.split(",") if c]
        snapshots(tmp, counts, args.snapshot_runs, args.snapshot_mb, args.snapshot_threads,
                  args.snapshot_timeout)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
