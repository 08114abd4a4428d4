"""Trident word count throughput (words/s) with SQLite state, by batch size.

    python bench/trident.py [--sentences N] [--batches 100,1000,10000] [--workers 2]

For each batch size (sentences per batch, over the spout's 4 partitions) it runs
topologies/trident_wordcount.py on local worker processes until every sentence
is counted in the state, and prints words/s (from the first commit to the last,
so worker start-up is not counted), batches committed per second and the mean
batch latency the coordinator saw. A benchmark, not a test: it prints figures."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "topologies"))

import trident_wordcount as twc  # noqa: E402

from storm import LocalCluster  # noqa: E402
from storm.trident import MetaStore, SQLiteState  # noqa: E402

TARGET = str(ROOT / "topologies" / "trident_wordcount.py") + ":wordcount"


def total(factory: SQLiteState) -> int:
    try:
        return int(sum(factory.read_all().values()))
    except Exception:  # the table does not exist before the first commit
        return 0


def run(batch: int, sentences: int, workers: int, directory: Path) -> dict[str, float]:
    state = directory / f"state-{batch}.sqlite"
    meta = directory / f"meta-{batch}.sqlite"
    conf = {"wordcount.state": str(state), "wordcount.sentences": sentences,
            "wordcount.batch": max(1, batch // 4), "topology.workers": workers,
            "topology.trident.meta.path": str(meta), "topology.message.timeout.secs": 60.0}
    words = sum(len(s.split()) for (s,) in twc.sentences(sentences))
    factory = SQLiteState(state, "counts")
    with LocalCluster(local_dir=directory / "cluster") as cluster:
        topo = cluster.submit(TARGET, config=conf)
        topo.wait_until(lambda: total(factory) > 0, timeout=120, interval=0.01, message="first commit")
        t0 = time.monotonic()
        first = total(factory)
        topo.wait_until(lambda: total(factory) >= words, timeout=600, interval=0.02, message="all counted")
        elapsed = time.monotonic() - t0
        stats = {c.name: c for c in topo.component_stats()}
        latency = stats["trident-coord"].complete_ms
        topo.stop()
    m = MetaStore(str(meta))
    committed = m.committed("TridentWordCount")
    m.close()
    assert total(factory) == words, "the counts are not exact"
    return {"words": words, "words_s": (words - first) / elapsed, "elapsed": elapsed,
            "batches": committed, "batch_ms": latency or 0.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=100_000)
    p.add_argument("--batches", default="100,1000,10000")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(f"Trident word count, SQLite state, {args.sentences} sentences, {args.workers} workers")
    print(f"{'batch':>7} {'words':>9} {'words/s':>9} {'seconds':>8} {'txids':>6} {'batch ms':>9}")
    with tempfile.TemporaryDirectory(prefix="storm-bench-trident-") as d:
        for b in (int(x) for x in args.batches.split(",")):
            r = run(b, args.sentences, args.workers, Path(d))
            print(f"{b:>7} {r['words']:>9.0f} {r['words_s']:>9.0f} {r['elapsed']:>8.1f} "
                  f"{r['batches']:>6.0f} {r['batch_ms']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
