#!/usr/bin/env python3
"""Checks the size of the workspace's Rust files and functions.

No file of `format/`, `preload/` or `analyzer/` over FILE_LINES lines, and no
function over FN_LINES lines, unless the lines just above it (its doc comment
and attributes) hold a comment starting `// One piece:` that says why it must
stay whole. Test modules count towards their file; test functions are held
to the same limit. Prints every violation and exits 1 if there is one; with
`--list`, prints the largest files and functions too. Run by scripts/test.sh.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRATES = ["format/src", "preload/src", "analyzer/src", "analyzer/tests", "analyzer/benches", "preload/tests"]
FILE_LINES = 800
FN_LINES = 100
WHY = "// One piece:"

FN = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)")


def blank_strings(line):
    """The line with string and char literals and a trailing comment removed."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^\\'])'", "''", line)
    i = line.find("//")
    return line if i < 0 else line[:i]


def functions(lines):
    """(name, first line index, line count) of each function with a body."""
    out = []
    for i, l in enumerate(lines):
        m = FN.match(l)
        if not m:
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            s = blank_strings(lines[j])
            if not started and ";" in s and "{" not in s:
                break  # a declaration without a body
            for c in s:
                if c == "{":
                    depth += 1
                    started = True
                elif c == "}":
                    depth -= 1
            if started and depth <= 0:
                out.append((m.group(1), i, j - i + 1))
                break
            j += 1
    return out


def justified(lines, i):
    """Whether the comment block and attributes above line i say `// One piece:`."""
    j = i - 1
    while j >= 0 and re.match(r"^\s*(//|#\[)", lines[j]):
        if lines[j].strip().startswith(WHY):
            return True
        j -= 1
    return False


def main():
    bad, sizes, fns = [], [], []
    for crate in CRATES:
        for d, _, files in os.walk(os.path.join(ROOT, crate)):
            for f in sorted(files):
                if not f.endswith(".rs"):
                    continue
                p = os.path.join(d, f)
                rel = os.path.relpath(p, ROOT)
                lines = open(p).read().split("\n")
                n = len(lines) - (1 if lines and lines[-1] == "" else 0)
                sizes.append((n, rel))
                if n > FILE_LINES and not (lines and lines[0].startswith("//! ") and any(l.startswith("//" + WHY[2:]) or l.startswith(WHY) for l in lines[:40])):
                    bad.append(f"{rel}: {n} lines (limit {FILE_LINES})")
                for name, i, count in functions(lines):
                    fns.append((count, f"{rel}:{i + 1} {name}"))
                    if count > FN_LINES and not justified(lines, i):
                        bad.append(f"{rel}:{i + 1}: fn {name} is {count} lines (limit {FN_LINES}; or say `{WHY}` why above it)")
    if "--list" in sys.argv:
        for n, r in sorted(sizes, reverse=True)[:15]:
            print(f"{n:6} {r}")
        for n, r in sorted(fns, reverse=True)[:25]:
            print(f"{n:6} {r}")
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} over the limits", file=sys.stderr)
        return 1
    print(f"{len(sizes)} files, {len(fns)} functions within {FILE_LINES} and {FN_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
