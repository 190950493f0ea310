#!/usr/bin/env python3
"""Checks the analyzer's module graph: no upward arrows between layers, no cycles.

Reads every `analyzer/src/**/*.rs`, takes the paths it uses (`crate::a::b`,
`memtrace_analyzer::a::b`, `super::x`, `use crate::{a, b::c}`; comments and
string literals are ignored, and so are `#[cfg(test)] mod tests` blocks and
`tests.rs` files: a test may build what it tests from anywhere), and resolves each to the module
it names. Then:

1. Layers: every module belongs to the first entry of LAYERS that is a prefix
   of its path; a module may use its own layer and the layers listed before it,
   never one listed after it (an upward arrow).
2. Cycles: no two modules of the library, and no two files of the binary
   (`cmd/`, `args`, `progress`), may reach each other through their imports.

Prints every violation with the file and the path that makes it, and exits 1
if there is one. Run by scripts/test.sh; `scripts/layers.py --graph` prints the
module graph.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analyzer", "src")

# Lowest first. The library (memtrace_analyzer), then the binary's modules.
LAYERS = [
    # Shared vocabulary: used by every layer, uses none.
    ["error", "hash", "outfile", "units", "kinds", "frames", "escape"],
    ["log"],
    ["pack"],
    ["analysis"],
    ["live"],
    ["report"],
    ["gate"],
    ["flame"],
    ["render", "export"],
    ["testlog"],
    # The binary: main.rs, args, progress, cmd/.
    ["exit", "progress", "args"],
    ["cmd::logs", "cmd::logpool", "cmd::pack", "cmd::preload", "cmd::rundir"],
    ["cmd::livescan"],
    ["cmd::snapshot", "cmd::prepack", "cmd::livepack"],
    ["cmd::trace"],
    ["cmd"],
]

BINARY = ("cmd", "args", "progress", "exit")


def strip(src):
    """The source without comments, string and char literals, and test modules."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and not src[i - 1 : i].isalnum() and src[i - 1 : i] != "_":
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = '"' + hashes
            j = src.find(end, i + 2 + len(hashes))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]) or c == "'" and src.startswith("'\\", i):
            j = src.find("'", i + 2)
            i = j + 1
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    if m:
        text = text[: m.start()]
    return text


def modules():
    mods = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            p = os.path.join(d, f)
            parts = os.path.relpath(p, ROOT)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                continue
            # A test module in its own file (`foo/tests.rs`), like an inline one.
            if parts[-1] == "tests":
                continue
            mods["::".join(parts)] = p
    return mods


def resolve(parts, names):
    for k in range(len(parts), 0, -1):
        c = "::".join(parts[:k])
        if c in names:
            return c
    return None


def edges(mods):
    names = set(mods)
    out = {}
    for m, p in mods.items():
        src = strip(open(p).read())
        refs = {}

        def add(parts, why):
            c = resolve(parts, names)
            if c and c != m and not m.startswith(c + "::"):
                refs.setdefault(c, why)

        for mm in re.finditer(r"\b(?:crate|memtrace_analyzer)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", src):
            add(mm.group(1).split("::")[1:], mm.group(0))
        for mm in re.finditer(r"\buse\s+(crate|memtrace_analyzer)::\{([^;]*)\};", src, re.S):
            for item in re.split(r"[,{}]\s*", mm.group(2)):
                item = item.strip()
                if item:
                    add(item.split("::"), f"use {mm.group(1)}::{{{item}}}")
        base = m.split("::")[:-1]
        for mm in re.finditer(r"\bsuper((?:::[A-Za-z_][A-Za-z0-9_]*)+)", src):
            add(base + mm.group(1).split("::")[1:], mm.group(0))
        for mm in re.finditer(r"\buse\s+super::\{([^;]*)\};", src, re.S):
            for item in re.split(r"[,{}]\s*", mm.group(1)):
                item = item.strip()
                if item:
                    add(base + item.split("::"), f"use super::{{{item}}}")
        out[m] = refs
    return out


def layer(m):
    best = None
    for i, group in enumerate(LAYERS):
        for g in group:
            if (m == g or m.startswith(g + "::")) and (best is None or len(g) > len(best[1])):
                best = (i, g)
    return best


def cycles(graph, nodes):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in nodes:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return comps


def main():
    mods = modules()
    graph = edges(mods)
    if "--graph" in sys.argv:
        for m in sorted(graph):
            print(m, "->", " ".join(sorted(graph[m])))
        return 0
    bad = []
    for m in sorted(graph):
        lm = layer(m)
        if lm is None:
            bad.append(f"{m}: in no layer of scripts/layers.py (add it to LAYERS)")
            continue
        for r, why in sorted(graph[m].items()):
            lr = layer(r)
            if lr is not None and lr[0] > lm[0]:
                bad.append(
                    f"{m} ({lm[1]}) uses {r} ({lr[1]}), a layer above it: `{why}` in {os.path.relpath(mods[m])}"
                )
    lib = {m for m in graph if not m.startswith(BINARY)}
    binary = set(graph) - lib
    for part in (lib, binary):
        for comp in cycles({m: set(graph[m]) for m in part}, part):
            arrows = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
            bad.append("import cycle: " + ", ".join(arrows))
    for b in bad:
        print("layers:", b)
    if bad:
        print(f"layers: {len(bad)} problem(s) in the analyzer's module graph")
        return 1
    print(f"layers: {len(graph)} modules, no upward arrow, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
