#!/usr/bin/env python3
"""Snapshot benchmark: what `memtrace snapshot PID` costs a running server, side by side
with valgrind memcheck's way of getting a leak report from a running program
(`vgdb --pid=PID leak_check full`).

The workload is scripts/bench/server_big.c (built with gcc -O2 -g; its header has the
details): it builds a heap of --mb MiB of blocks of mixed sizes, leaks one block in ten
(definitely lost; it prints their bytes and count), keeps the others in a global hash
table (still reachable), then serves "requests" (a few mallocs and frees each) at --rate
requests per second, spinning in between, and measures the gaps between the turns of
its loop over windows that this script opens ("mark") and closes ("stat"). It tells
apart the gap in which it reaped a child: when the program is not `memtrace run`'s own
child, memtrace's snapshot handler forks an intermediate child (which forks the frozen
copy and exits) and reaps it, so that gap is the handler's, its fork stall. Here the
program is `memtrace run`'s child, so the handler makes the copy with one clone
(CLONE_PARENT) and reaps nothing: the "fork" column stays empty and the snapshot's
pause is the "stall" column (the longest gap of the window), to read against the idle
"gap". For each heap size and each of -n runs, the variants alternate:

  bare      the program alone: its longest gap over a --window without anything going
            on, the cost of one plain fork of it (clone, and the child's exit), and its
            request rate flat out (--rate 0) over another window;
  memtrace  under `memtrace run --raw --no-reachability` (every event recorded; the two
            options only spare the end of the run: the log is not packed, the process
            not classified at exit): the same idle window, then a window around one
            `memtrace snapshot PID`: the fork stall, the longest gap of the window, the
            pages the program copied meanwhile (copy-on-write faults beyond the idle
            window's rate, x 4 KiB), the time until `memtrace snapshot` prints the path
            (the file exists) and until it exits (it then reads the snapshot back for
            its one-line summary), the snapshot's size, the log's size when asked, and
            the peak RSS (VmHWM) of the `memtrace run` process before and after it (the
            scan's memory); then the rate flat out;
  memcheck  under `valgrind --tool=memcheck --vgdb=yes --leak-check=no` (vgdb reaches a
            busy program by valgrind's polling, no --vgdb-error needed): the same idle
            window, then a window around one `vgdb --pid=PID leak_check full`: the time
            of that command and the longest gap (the leak search runs on the program's
            thread: the program stops meanwhile); then the rate flat out.

It checks that the classification agrees: the definitely lost bytes and blocks of
memtrace's snapshot (`memtrace report --format json`, summary.leak_kinds) and of vgdb's
LEAK SUMMARY against what the program says it leaked (first run of each size). With
two sizes or more it prints the growth of each cost per GiB of heap.

    scripts/bench-snapshot.py                      # 64 and 512 MiB, 3 runs each
    scripts/bench-snapshot.py -n 1 --mb 64,1024    # other sizes
    scripts/bench-snapshot.py --no-valgrind --rate 0

Figures are medians over the runs (memcheck: --vg-runs), the peak RSS the maximum.
The gaps are measured with the program paced (--rate), so that the log grows at a
server's pace: under memtrace the log grows with every event (some 14 bytes each),
and a snapshot copies and replays the whole log, so its latency grows with the log as
well as with the heap; flat out, this program writes some 80 MB of log a second, and the
log's size at the snapshot is shown. Ratios measured side by side in one run are the
figures that count; absolute times depend on the machine.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench")
MEMTRACE = os.path.join(ROOT, "target", "release", "memtrace")
MiB = 2**20


def build(tmp):
    """Builds memtrace (release) and the server; returns the server's path."""
    subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT, check=True)
    exe = os.path.join(tmp, "server_big")
    cc = os.environ.get("CC", "gcc")
    subprocess.run([cc, "-O2", "-g", "-o", exe, os.path.join(BENCH, "server_big.c")], check=True)
    return exe


def proc_status(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM), None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fields(line):
    """The key=value pairs of one of the server's answers, as numbers."""
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", line)}


class Server:
    """server_big started by `cmd` (bare, or under a tool), driven through its pipes."""

    def __init__(self, cmd, errfile):
        self.err = open(errfile, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            sys.exit(f"server did not start ({' '.join(cmd)}): {line!r}; see {errfile}")
        self.pid = int(line.split()[1])  # the program's pid (not memtrace run's)
        self.ready = fields(line)
        self.rss_kib = proc_status(self.pid, "VmRSS")

    def ask(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def mark(self):
        assert self.ask("mark") == "marked"

    def stat(self):
        """The window since the last mark (see server_big.c)."""
        return fields(self.ask("stat"))

    def window(self, seconds):
        """A window of `seconds` with nothing else going on."""
        self.mark()
        time.sleep(seconds)
        return self.stat()

    def throughput(self, seconds):
        """Requests per second when serving as fast as it can."""
        self.ask("rate 0")
        s = self.window(seconds)
        return s["served"] / s["secs"]

    def quit(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=600)
        self.err.close()


def server_cmd(exe, mb, rate):
    return [exe, "--mb", str(mb), "--rate", str(rate)]


def run_bare(exe, mb, a, d):
    s = Server(server_cmd(exe, mb, a.rate), os.path.join(d, "bare.err"))
    idle = s.window(a.window)
    f = fields(s.ask("fork"))
    r = {"ready": s.ready, "rss": s.rss_kib, "gap": idle["maxgap_us"] / 1000,
         "clone": f["clone_us"] / 1000, "exit": f["wait_us"] / 1000,
         "fork": (f["clone_us"] + f["wait_us"]) / 1000, "rate": s.throughput(a.window)}
    s.quit()
    return r


def run_memtrace(exe, mb, a, d, classify):
    s = Server([MEMTRACE, "run", "--raw", "--no-reachability", "-o", os.path.join(d, "%p.mtr"),
                "--"] + server_cmd(exe, mb, a.rate), os.path.join(d, "memtrace.err"))
    idle = s.window(a.window)
    log = os.path.join(d, f"{s.pid}.mtr")
    hwm_before = proc_status(s.proc.pid, "VmHWM")  # memtrace run itself
    log_size = os.path.getsize(log)
    s.mark()
    t0 = time.monotonic()
    snap = subprocess.Popen([MEMTRACE, "snapshot", "--timeout", "600", str(s.pid)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = snap.stdout.readline().strip()  # printed once the file exists
    latency = time.monotonic() - t0
    _, err = snap.communicate()  # then it reads the snapshot back for its summary line
    cmd_time = time.monotonic() - t0
    w = s.stat()
    hwm_after = proc_status(s.proc.pid, "VmHWM")
    if snap.returncode != 0 or not path:
        s.quit()
        sys.exit(f"memtrace snapshot failed: {err}")
    # Copy-on-write: the page faults beyond those of the idle window's rate.
    cow = max(0.0, w["minflt"] - idle["minflt"] / idle["secs"] * w["secs"]) * 4096
    r = {"ready": s.ready, "rss": s.rss_kib, "gap": idle["maxgap_us"] / 1000,
         "fork": w["reapgap_us"] / 1000 if w["reaped"] == 1 else None,
         "stall": w["maxgap_us"] / 1000, "cow": cow, "latency": latency, "cmd": cmd_time,
         "snap_size": os.path.getsize(path), "log_size": log_size,
         "hwm_before": hwm_before, "hwm_after": hwm_after}
    if classify:
        p = subprocess.run([MEMTRACE, "report", "--format", "json", "--top", "0", path],
                           capture_output=True, text=True)
        kinds = json.loads(p.stdout)["summary"].get("leak_kinds") if p.stdout else None
        if kinds:
            r["kinds"] = {k: (v["bytes"], v["count"]) for k, v in kinds.items()}
    r["rate"] = s.throughput(a.window)
    s.quit()
    return r


LEAK_LINE = re.compile(r"(definitely lost|indirectly lost|possibly lost|still reachable): "
                       r"([0-9,]+) (?:\(\S+\) )?bytes in ([0-9,]+) (?:\(\S+\) )?blocks")
VG_KINDS = {"definitely lost": "definite", "indirectly lost": "indirect",
            "possibly lost": "possible", "still reachable": "reachable"}


def run_memcheck(exe, mb, a, d):
    s = Server(["valgrind", "--tool=memcheck", "--vgdb=yes", "--leak-check=no",
                "--log-file=" + os.path.join(d, "vg.log")] + server_cmd(exe, mb, a.rate),
               os.path.join(d, "memcheck.err"))
    idle = s.window(a.window)
    s.mark()
    t0 = time.monotonic()
    p = subprocess.run(["vgdb", f"--pid={s.pid}", "leak_check", "full"],
                       capture_output=True, text=True, timeout=600)
    latency = time.monotonic() - t0
    w = s.stat()
    kinds = {VG_KINDS[m[0]]: (int(m[1].replace(",", "")), int(m[2].replace(",", "")))
             for m in LEAK_LINE.findall(p.stdout + p.stderr)}
    if "definite" not in kinds:
        s.quit()
        sys.exit(f"no LEAK SUMMARY from vgdb:\n{p.stdout}{p.stderr}")
    r = {"ready": s.ready, "rss": s.rss_kib, "gap": idle["maxgap_us"] / 1000,
         "stall": w["maxgap_us"] / 1000, "latency": latency, "kinds": kinds,
         "rate": s.throughput(a.window)}
    s.quit()
    return r


def med(runs, key):
    """The median of a figure over the runs that have it, None if none has."""
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def lost_cell(expected, kinds):
    """Definitely lost bytes / blocks, and whether they match the program's figure."""
    if kinds is None:
        return "-", "no leak kinds"
    b, n = kinds["definite"]
    cell = f"{b:,} B / {n:,}"
    if (b, n) == expected:
        return cell, "ok"
    note = f"{b - expected[0]:+,} B / {n - expected[1]:+,}"
    pb, pn = kinds.get("possible", (0, 0))
    if (b + pb, n + pn) == expected:
        note += ": possibly lost instead"
    return cell, note


def slope(points):
    """Least-squares slope of (x, y) points, None with fewer than 2 x values."""
    pts = [(x, y) for x, y in points if y is not None]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


COLUMNS = [  # (title, unit, width)
    ("heap", "MiB", 6), ("variant", "", 8), ("RSS", "MiB", 6), ("req/s", "k", 6),
    ("slow", "", 6), ("gap", "ms", 6), ("fork", "ms", 7), ("stall", "ms", 8),
    ("COW", "MiB", 6), ("latency", "s", 7), ("cmd", "s", 6), ("snap", "MiB", 6),
    ("log", "MiB", 6), ("run HWM", "MiB", 11), ("definitely lost", "B / blocks", 23),
]


def row(cells):
    out = []
    for (title, _, w), c in zip(COLUMNS, cells):
        out.append(f"{c:<{w}}" if title == "variant" else f"{c:>{w}}")
    return " ".join(out + list(cells[len(COLUMNS):]))


def num(v, fmt, scale=1):
    return "-" if v is None else format(v / scale, fmt)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=3, help="runs of each variant (default 3)")
    ap.add_argument("--vg-runs", type=int, default=None, help="runs under valgrind (default: as -n)")
    ap.add_argument("--mb", default="64,512", help="heap sizes in MiB, comma-separated (default 64,512)")
    ap.add_argument("--rate", type=int, default=20000,
                    help="requests per second while the gaps are measured (default 20000; 0: flat out)")
    ap.add_argument("--window", type=float, default=1.0,
                    help="seconds of each window without a snapshot (default 1)")
    ap.add_argument("--no-valgrind", action="store_true", help="skip valgrind memcheck")
    args = ap.parse_args()
    sizes = [int(x) for x in args.mb.split(",")]
    vg_runs = args.runs if args.vg_runs is None else args.vg_runs
    valgrind = not args.no_valgrind and shutil.which("valgrind") and shutil.which("vgdb")
    if not args.no_valgrind and not valgrind:
        print("valgrind or vgdb not found: memcheck skipped", file=sys.stderr)

    tmp = tempfile.mkdtemp(prefix="memtrace-bench-snapshot-")
    exe = build(tmp)
    started = time.monotonic()
    print(row([c[0] for c in COLUMNS] + ["check"]))
    print(row([c[1] for c in COLUMNS]))
    medians = {}  # (variant, figure) -> [(GiB, median)]
    missed = 0
    for mb in sizes:
        res = {"bare": [], "memtrace": [], "memcheck": []}
        for i in range(args.runs):
            d = tempfile.mkdtemp(dir=tmp)
            res["bare"].append(run_bare(exe, mb, args, d))
            res["memtrace"].append(run_memtrace(exe, mb, args, d, classify=(i == 0)))
            if valgrind and i < vg_runs:
                res["memcheck"].append(run_memcheck(exe, mb, args, d))
            shutil.rmtree(d)  # the logs and snapshots: big
        missed += sum(r["fork"] is None for r in res["memtrace"])
        ready = res["bare"][0]["ready"]
        expected = (int(ready["leaked_bytes"]), int(ready["leaked_blocks"]))
        bare_rate = med(res["bare"], "rate")
        for variant, runs in res.items():
            if not runs:
                continue
            m = {k: med(runs, k) for k in runs[0] if k not in ("ready", "kinds")}
            for k, v in m.items():
                medians.setdefault((variant, k), []).append((mb / 1024, v))
            hwm = "-"
            if variant == "memtrace":
                hwm = (f"{max(r['hwm_before'] for r in runs) / 1024:.0f} -> "
                       f"{max(r['hwm_after'] for r in runs) / 1024:.0f}")
            if variant == "bare":
                lost, check = f"{expected[0]:,} B / {expected[1]:,}", "(the program's)"
            else:
                lost, check = lost_cell(expected, runs[0].get("kinds"))
            print(row([
                str(mb), variant, num(max(r["rss"] for r in runs), ".0f", 1024),
                num(m["rate"], ".0f", 1000), f"{bare_rate / m['rate']:.1f}x", num(m["gap"], ".1f"),
                num(m.get("fork"), ".1f"), num(m.get("stall"), ".1f"), num(m.get("cow"), ".0f", MiB),
                num(m.get("latency"), ".2f"), num(m.get("cmd"), ".2f"),
                num(m.get("snap_size"), ".1f", MiB), num(m.get("log_size"), ".0f", MiB),
                hwm, lost, check]), flush=True)
        b = res["bare"]
        print(f"{'':6} plain fork of the bare program: clone {med(b, 'clone'):.1f} ms, "
              f"the child's exit {med(b, 'exit'):.1f} ms; the snapshot handler does two "
              f"clones and one exit: ~{2 * med(b, 'clone') + med(b, 'exit'):.1f} ms", flush=True)

    if len(sizes) >= 2:
        print("\nper GiB of heap (least-squares slope over the sizes):")
        for variant, key, what, unit, scale in (
                ("bare", "fork", "plain fork (clone + exit)", "ms", 1),
                ("memtrace", "fork", "memtrace fork stall", "ms", 1),
                ("memtrace", "stall", "memtrace longest gap in the snapshot", "ms", 1),
                ("memtrace", "cow", "memtrace copy-on-write", "MiB", MiB),
                ("memtrace", "latency", "memtrace snapshot latency", "s", 1),
                ("memtrace", "snap_size", "memtrace snapshot size", "MiB", MiB),
                ("memtrace", "hwm_after", "memtrace run peak RSS", "MiB", 1024),
                ("memcheck", "stall", "memcheck stall (leak search)", "ms", 1),
                ("memcheck", "latency", "vgdb leak_check latency", "s", 1)):
            sl = slope(medians.get((variant, key), []))
            if sl is not None:
                print(f"  {what:38} {sl / scale:+10.2f} {unit}")
    print(f"""
RSS: the program's when ready. req/s: flat out; slow: the bare rate over it. Windows at
{args.rate} requests/s: gap: the longest gap between two turns of the program's loop in
{args.window:g} s without a snapshot; fork: the gap in which memtrace's snapshot handler
ran (bare: a plain fork, clone + the child's exit); stall: the longest gap during the
snapshot or the vgdb leak_check; COW: pages copied meanwhile (page faults beyond the
idle rate). latency: until `memtrace snapshot` prints the path (the file exists) or
vgdb returns; cmd: until `memtrace snapshot` exits. snap: the snapshot file; log: the
raw log when the snapshot was asked. run HWM: VmHWM of `memtrace run` before -> after
the snapshot (maximum over the runs). definitely lost: bytes / blocks (first run),
checked against the program's figure. Medians of {args.runs} runs (memcheck: {vg_runs}).""")
    if missed:
        print(f"(in {missed} snapshot(s) the program reaped no child: one clone, see the docstring)")
    print(f"Total time {time.monotonic() - started:.0f} s.")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
