"""Round trips from Python: a no-op ``execute`` and a no-op ``apply``, on one engine and on all,
against a fresh 4-engine cluster (``mpx.Cluster``; the binaries from MPX_BIN or PATH).

    python python/bench.py [--n 4] [--reps 200] [--json FILE]

Prints one row per operation (median and p90 over ``reps`` round trips, after a warm-up), the
same operations as ipyparallel's figures in ../shared/peer-figures.md.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import mpx


def measure(fn, reps):
    for _ in range(max(5, reps // 10)):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_ms": statistics.median(times) * 1e3, "p90_ms": times[int(0.9 * (len(times) - 1))] * 1e3}


def noop():
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = {}
    # A private MPX_HOME (connection file, daemon log), removed afterwards with the cwd.
    with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryDirectory() as home:
        os.environ["MPX_HOME"] = home
        with mpx.Cluster(n=args.n, cwd=cwd) as rc:
            one, every = rc[0], rc[:]
            rows["execute no-op, one engine"] = measure(lambda: one.execute("pass", block=True), args.reps)
            rows["execute no-op, all engines"] = measure(lambda: every.execute("pass", block=True), args.reps)
            rows["apply no-op, one engine"] = measure(lambda: one.apply_sync(noop), args.reps)
            rows["apply no-op, all engines"] = measure(lambda: every.apply_sync(noop), args.reps)
    width = max(len(k) for k in rows)
    for name, r in rows.items():
        print("%-*s  %8.3f ms  (p90 %.3f ms)" % (width, name, r["median_ms"], r["p90_ms"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "reps": args.reps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
