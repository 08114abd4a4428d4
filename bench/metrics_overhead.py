"""Metrics overhead: word count throughput (2 workers, acking on, split anchors
every word) with the metrics pipeline as is, with latency sampling off
(topology.stats.sample.rate 0: no execute / process latency samples), and
with tracing on (topology.debug.sample 0.01 and 0.0001). Runs are interleaved
and each row reports the median words/s, and its ratio to "stats off".

    python bench/metrics_overhead.py [--seconds 8] [--rounds 3] [--workers 2]

Target: the default pipeline (sampling at 0.05, tracing off) within 5% of
sampling off; tracing off costs nothing (no wrapper is bound).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from acking import run  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "stats off (sample.rate 0)": {"topology.stats.sample.rate": 0},
    "as is (sample.rate 0.05, trace off)": {},
    "trace 0.0001": {"topology.debug.sample": 0.0001},
    "trace 0.01": {"topology.debug.sample": 0.01},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cases", default="", help="comma-separated case numbers (1-based) to run; default all")
    args = ap.parse_args()
    names = list(CASES)
    if args.cases:
        names = [names[int(i) - 1] for i in args.cases.split(",")]
    results: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        # Interleaved, and each round starts with another case: a run right after
        # another one was measured slower in every round (a first-position effect).
        for name in names[r % len(names):] + names[:r % len(names)]:
            conf = {"bench.acking": True, **CASES[name]}
            got = run(args.workers, args.seconds, conf)
            results[name].append(got["words_per_s"])
            print(f"  round {r + 1} {name:38s} {got['words_per_s']:>10,.0f} words/s", flush=True)
    base = statistics.median(results[names[0]])
    print(f"\nword count, {args.workers} workers, acking on, median of {args.rounds} x {args.seconds:g}s")
    for name in names:
        med = statistics.median(results[name])
        print(f"  {name:38s} {med:>10,.0f} words/s  {med / base:6.1%}")


if __name__ == "__main__":
    main()
