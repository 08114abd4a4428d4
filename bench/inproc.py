"""The benchmark word count driven in one process, for instruction counts:
two Workers (split and count on each, ackers with --acking) joined by an
in-memory transport, stepped a fixed number of passes. Wall clock on this
2-core VM drifts by +-20% from run to run; instructions do not, so compare
changes with callgrind:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/inproc.py --acking --passes 300 [-c key=value ...]

and divide the "Collected" figure valgrind prints by the words this prints.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from storm._config import parse_overrides  # noqa: E402
from storm._runtime import MemoryTransport, Worker  # noqa: E402
from storm._target import build_target  # noqa: E402
from topologies import BenchWordCount  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acking", action="store_true", help="reliable spout, anchored split, acking count")
    ap.add_argument("--passes", type=int, default=300, help="loop passes per worker")
    ap.add_argument("-c", dest="conf", action="append", default=[], help="config override key=value")
    args = ap.parse_args()
    gc.set_threshold(50000, 20, 100)  # as in worker processes (storm._worker_main)
    conf = {"topology.workers": 2, "bench.par": 2, "bench.acking": args.acking,
            "topology.acker.executors": 2 if args.acking else 0, **parse_overrides(args.conf)}
    spec = build_target(BenchWordCount, conf)
    assignment = spec.assign(2)
    transport = MemoryTransport(2)
    workers = [Worker(spec, assignment, i, transport) for i in range(2)]
    for w in workers:
        w.setup()
        w.set_active(True)
        w.slice_secs = 1e9  # passes end by budget, not time: the same work under valgrind
    for _ in range(args.passes):
        for w in workers:
            frames = transport.take(w.index)
            if frames:
                w.receive(frames)
            w.step(0)
            w.flush_all()
    words = sum(e.stats.executed for w in workers for e in w.bolts if e.component == "count")
    print(f"words {words}")


if __name__ == "__main__":
    main()
