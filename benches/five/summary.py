#!/usr/bin/env python3
"""Medians of the RESULT lines of several `cargo bench` logs.

Each RESULT line is matched with the lines of the same bench and the same position in the
other runs; every number in it is replaced by the median over the runs with the range in
brackets, and every "target ...: yes/no" by how many runs met it. Lines whose shape differs
between runs (another count of numbers) are printed run by run instead.
"""

import re
import statistics
import sys
from collections import defaultdict

NUM = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d.])")
# Case-insensitive: the benches print "met" and "NOT met".
MET = re.compile(r"(target [^:]*): (not met|yes|no|true|false|met)\b", re.IGNORECASE)


def results(path):
    lines = defaultdict(list)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("RESULT "):
                name = line.split(":", 1)[0]
                lines[name].append(line.rstrip("\n"))
    return lines


def fmt(values):
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    def f(x):
        if x == int(x) or abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return f(med) if lo == hi else f"{f(med)} [{f(lo)}-{f(hi)}]"


def main(paths):
    runs = [results(p) for p in paths]
    names = []
    for r in runs:
        for n in r:
            if n not in names:
                names.append(n)
    for name in names:
        count = max(len(r.get(name, [])) for r in runs)
        for i in range(count):
            lines = [r[name][i] for r in runs if len(r.get(name, [])) > i]
            marked = [MET.sub(lambda m: f"{m.group(1)}: @MET@", l) for l in lines]
            shapes = {len(NUM.findall(l)) for l in marked}
            if len(lines) != len(runs) or len(shapes) != 1:
                for k, l in enumerate(lines):
                    print(f"[run {k + 1}] {l}")
                continue
            numbers = [[float(n.replace(",", "")) for n in NUM.findall(l)] for l in marked]
            met = [
                [m.group(2).lower() in ("yes", "true", "met") for m in MET.finditer(l)]
                for l in lines
            ]
            parts = NUM.split(marked[0])
            out = parts[0]
            for j, part in enumerate(parts[1:]):
                out += fmt([n[j] for n in numbers]) + part
            for j in range(len(met[0])):
                out = out.replace("@MET@", f"met in {sum(m[j] for m in met)} of {len(lines)}", 1)
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
