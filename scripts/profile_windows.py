"""Splits a `perf record -e cpu-clock -g` profile of mpx-bench's data rows by row, category and
thread (see profile-data.sh). Reads the `window START END` lines mpx-bench prints with
MPX_BENCH_WINDOWS=1 (after each `row NAME` line)."""
import collections
import json
import re
import subprocess
import sys

perf_data, windows_file, bench_json = sys.argv[1:4]
# `row NAME` then `window START END` lines, in the order the rows ran.
windows, row = [], None
for line in open(windows_file):
    if m := re.search(r"\brow (\S+)", line):
        row = m.group(1)
    if (m := re.search(r"\bwindow ([0-9.]+) ([0-9.]+)", line)) and row:
        windows.append((row, (float(m.group(1)), float(m.group(2)))))
report = {r["name"]: r for r in json.load(open(bench_json))["rows"]}


def category(frames):
    """The category of one sample, from its call chain (leaf first): (symbol, dso) pairs."""
    leaf_sym, leaf_dso = frames[0] if frames else ("?", "?")
    syms = " ".join(s for s, _ in frames)
    if "blake3" in leaf_sym:
        return "hash"
    if "kernel" in leaf_dso:
        if "page_fault" in syms or "clear_page" in syms or "do_anonymous_page" in syms:
            return "pages"
        if any(k in syms for k in ("tcp_", "sock_", "skb", "inet_")):
            return "tcp"
        if any(k in syms for k in ("process_vm", "pipe_", "futex")):
            return "kernel-other"
        return "kernel-other"
    if any(k in leaf_dso for k in ("libmpi", "mca_", "libopen-pal", "libopen-rte")):
        return "mpi"
    if "memmove" in leaf_sym or "memcpy" in leaf_sym:
        # A copy made inside MPI (shared memory) counts as MPI.
        return "mpi" if any(any(k in d for k in ("libmpi", "mca_", "libopen-pal")) for _, d in frames) else "copy"
    if "python" in leaf_dso or "multiarray" in leaf_dso:
        return "python"
    return "other"


for row, (start, end) in windows:
    out = subprocess.run(
        ["perf", "script", "-i", perf_data, "--time", f"{start:.6f},{end:.6f}", "-F", "comm,tid,period,ip,sym,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    by_cat = collections.Counter()
    by_thread = collections.Counter()
    for block in out.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        head = lines[0].split()
        if len(head) < 3:
            continue
        comm, tid, period = head[0], head[1], int(head[2])
        frames = []
        for l in lines[1:]:
            parts = l.strip().split(None, 1)
            if len(parts) < 2:
                continue
            rest = parts[1]
            sym, _, dso = rest.rpartition(" (")
            frames.append((sym, dso.rstrip(")")))
        by_cat[category(frames)] += period
        by_thread[f"{comm}/{tid}"] += period
    r = report.get(row, {})
    n = (r.get("mpx") or {}).get("n") or 1
    median = (r.get("mpx") or {}).get("median") or 0.0
    wall = end - start
    total = sum(by_cat.values()) / 1e9
    print(f"\n{row}: median {median * 1e3:.1f} ms per transfer; {n} transfers in {wall:.2f} s;"
          f" CPU {total / n * 1e3:.1f} ms per transfer on 2 cores")
    print("  by category, ms CPU per transfer: " + ", ".join(
        f"{c} {v / 1e9 / n * 1e3:.1f}" for c, v in by_cat.most_common()))
    busiest = by_thread.most_common(6)
    print("  by thread, ms CPU per transfer (busy share of the wall time): " + ", ".join(
        f"{t} {v / 1e9 / n * 1e3:.1f} ({v / 1e9 / wall:.0%})" for t, v in busiest))
