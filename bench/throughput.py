"""Word count throughput: words/s through split and count (acking off, the plain
per-tuple execute API) with 1 and 2 workers, next to the transport ceiling on this
machine (two processes moving msgpack batches of the same word tuples over pyzmq
PUSH/PULL). Prints a table and the ratio ours/ceiling.

    python bench/throughput.py [--seconds 10] [--workers 1,2] [--batch 200]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from storm import LocalCluster  # noqa: E402
from topologies import VOCABULARY  # noqa: E402


def _ceiling_sender(endpoint: str, batch: int, seconds: float) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, 64)
    s.connect(endpoint)
    pack = msgpack.Packer(use_bin_type=True).pack
    words = VOCABULARY
    # Prebuilt batches of word tuples, packed on every send: the cost of moving
    # tuples between two processes, with nothing else around it.
    batches = [[(2, 1, 0, [words[(b * batch + i) % len(words)]], None) for i in range(batch)]
               for b in range(16)]
    i = 0
    deadline = time.monotonic() + seconds + 2
    while time.monotonic() < deadline:
        try:
            s.send(pack([1, batches[i & 15]]), copy=True)
        except zmq.ZMQError:
            break
        i += 1
    s.close(0)
    ctx.term()


def transport_ceiling(seconds: float, batch: int) -> float:
    """Tuples/s received by one process from another over PUSH/PULL on ipc://."""
    d = tempfile.mkdtemp(prefix="stb-", dir="/tmp")
    endpoint = f"ipc://{d}/ceiling"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 64)
    pull.bind(endpoint)
    proc = mp.get_context("spawn").Process(target=_ceiling_sender, args=(endpoint, batch, seconds))
    proc.start()
    unpackb = msgpack.unpackb
    n = 0
    warm = time.monotonic() + 1.0
    while time.monotonic() < warm:
        pull.recv()
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        msg = unpackb(pull.recv(), raw=False, strict_map_key=False)
        n += len(msg[1])
        if time.monotonic() >= end:
            break
    dt = time.monotonic() - t0
    proc.terminate()
    proc.join(5)
    pull.close(0)
    ctx.term()
    return n / dt


def ours(workers: int, seconds: float, batch: int, warmup: float = 3.0) -> tuple[float, float]:
    """Words/s counted by the count bolt and its figure per worker."""
    target = os.path.join(HERE, "topologies.py") + ":BenchWordCount"
    conf = {
        "topology.workers": workers,
        "topology.acker.executors": 0,
        "topology.transfer.batch.size": batch,
        "topology.metrics.interval.secs": 0.25,
        "bench.par": workers,
    }
    with LocalCluster() as cluster:
        topo = cluster.submit(target, config=conf, name=f"bench-w{workers}")

        def counted() -> tuple[int, float]:
            m = topo.metrics()
            return sum(v["executed"] for v in m.values() if v["component"] == "count"), time.monotonic()

        time.sleep(warmup)  # a benchmark's warm-up, not a wait for a condition
        c0, t0 = counted()
        time.sleep(seconds)
        c1, t1 = counted()
        errors = topo.recent_errors()
        topo.stop()
    if errors:
        print(f"  warning: {len(errors)} errors, first: {errors[0]['error']}", file=sys.stderr)
    rate = (c1 - c0) / (t1 - t0)
    return rate, rate / workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window of each run")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rounds", type=int, default=3, help="runs per row; the median is reported")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--ceiling-batch", type=int, default=100)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, pyzmq {zmq.__version__}, "
          f"msgpack {'.'.join(map(str, msgpack.version))}; {args.rounds} round(s) of {args.seconds:g}s per row")
    # A shared machine's speed drifts from run to run: rounds interleave the rows.
    ceilings: list[float] = []
    rates: dict[int, list[float]] = {int(x): [] for x in args.workers.split(",")}
    for r in range(args.rounds):
        ceilings.append(transport_ceiling(args.seconds, args.ceiling_batch))
        for w in rates:
            rates[w].append(ours(w, args.seconds, args.batch)[0])
        print(f"  round {r + 1}: ceiling {ceilings[-1]:,.0f}; "
              + "; ".join(f"{w} worker(s) {v[-1]:,.0f}" for w, v in rates.items()), flush=True)
    ceiling = statistics.median(ceilings)
    print()
    print(f"{'median of ' + str(args.rounds) + ' rounds':<34}{'words/s':>12}{'min':>12}{'max':>12}"
          f"{'per worker':>12}{'ours/ceiling':>14}")
    print(f"{'transport ceiling (batch ' + str(args.ceiling_batch) + ')':<34}{ceiling:>12,.0f}"
          f"{min(ceilings):>12,.0f}{max(ceilings):>12,.0f}")
    for w, v in rates.items():
        med = statistics.median(v)
        print(f"{'word count, ' + str(w) + ' worker(s)':<34}{med:>12,.0f}{min(v):>12,.0f}{max(v):>12,.0f}"
              f"{med / w:>12,.0f}{med / ceiling:>14.2f}")
    print()
    print("target: >= 1,000,000 words/s with 2 workers")


if __name__ == "__main__":
    main()
