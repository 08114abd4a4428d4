"""The Bytewax side of bench/vs_bytewax.py: the same word count as a Bytewax
dataflow (input -> flat_map split -> key_on -> fold_final count -> output).
It runs in the bench's own Bytewax venv, so it imports only Bytewax and the
standard library, never storm.

    BENCH_SENTENCES=file BENCH_OUT=dir python -m bytewax.run bytewax_wordcount:flow

Each worker reads its share of the sentences file (every worker_count-th line),
in batches of 1,000 (the batch size of Bytewax's own FileSource), and writes
`worker-<index>.json` to BENCH_OUT at the end: its counts, when its first batch
of sentences was handed out and when its last count was written (time.monotonic,
the same clock in every process of this machine). BENCH_COUNT=count_final
counts with Bytewax's count_final instead of key_on + fold_final.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

BATCH = 1000
# Per worker of this process: when it handed out its first sentence.
_first: dict[int, float] = {}


class _Sentences(StatelessSourcePartition[str]):
    def __init__(self, sentences: list[str], worker: int) -> None:
        self.batches = [sentences[i:i + BATCH] for i in range(0, len(sentences), BATCH)]
        self.next = 0
        self.worker = worker

    def next_batch(self) -> list[str]:
        i = self.next
        if i >= len(self.batches):
            raise StopIteration
        if i == 0:
            _first[self.worker] = time.monotonic()
        self.next = i + 1
        return self.batches[i]


class SentenceFile(DynamicSource[str]):
    def __init__(self, path: str) -> None:
        self.path = path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Sentences:
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        return _Sentences(lines[worker_index::worker_count], worker_index)


class _CountsFile(StatelessSinkPartition[tuple[str, int]]):
    def __init__(self, out_dir: str, worker: int) -> None:
        self.path = os.path.join(out_dir, f"worker-{worker}.json")
        self.worker = worker
        self.counts: dict[str, int] = {}
        self.last = 0.0

    def write_batch(self, items: list[tuple[str, int]]) -> None:
        self.counts.update(items)
        self.last = time.monotonic()

    def close(self) -> None:
        record: dict[str, Any] = {"first": _first.get(self.worker), "last": self.last,
                                  "counts": self.counts}
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(record, f)


class CountsDir(DynamicSink[tuple[str, int]]):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountsFile:
        return _CountsFile(self.out_dir, worker_index)


def _one(count: int, _word: str) -> int:
    return count + 1


def build_flow(sentences_path: str, out_dir: str) -> Dataflow:
    flow = Dataflow("bench_wordcount")
    sentences = op.input("sentences", flow, SentenceFile(sentences_path))
    words = op.flat_map("split", sentences, str.split)
    if os.environ.get("BENCH_COUNT") == "count_final":
        # Bytewax's own word count operator: it pre-sums each batch per key
        # before the exchange (a combiner), which the storm side does not do.
        counts = op.count_final("count", words, lambda w: w)
    else:
        keyed = op.key_on("key", words, lambda w: w)
        counts = op.fold_final("count", keyed, int, _one)
    op.output("out", counts, CountsDir(out_dir))
    return flow


flow = build_flow(os.environ["BENCH_SENTENCES"], os.environ["BENCH_OUT"])
