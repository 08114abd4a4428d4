"""Pieces shared by the integration-test topologies: spouts and bolts that run in
real worker processes and record what they saw into JSON files, one file per
task, in the directory named by the config key `itest.dir`; and the reader the
tests use. A record is written atomically (write + rename), at most every
RECORD_INTERVAL seconds while it changes, and a last time on shutdown with
"final": true. Nothing here starts processes or talks to the cluster."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from storm import Bolt, Spout, TopologyContext, Tuple

RECORD_DIR = "itest.dir"  # config key: where records go
COUNT = "itest.count"  # config key: how many numbers a finite spout emits in total
RECORD_INTERVAL = 0.1
# Recording bolts get tick tuples so a record is flushed even when input stops.
# Not faster than every 0.3 s: a worker counts a tick as work, and while it sees
# work more often than that a clean stop waits out its whole drain deadline.
FLUSH_TICKS = {"topology.tick.tuple.freq.secs": 0.5}


def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def read_records(directory: str | os.PathLike[str], component: str) -> dict[int, dict[str, Any]]:
    """{task id: record} of every task of `component` that has written one."""
    out: dict[int, dict[str, Any]] = {}
    for p in Path(directory).glob(f"{component}-*.json"):
        rec = json.loads(p.read_text())
        out[int(rec["task"])] = rec
    return out


class Recording:
    """Mixin for a spout or bolt: `self.record` is a dict written to
    <itest.dir>/<component>-<task>.json; call `changed()` after updating it."""

    record: dict[str, Any]

    def start_recording(self, conf: dict[str, Any], context: TopologyContext, **fields: Any) -> None:
        self._record_path = os.path.join(conf[RECORD_DIR], f"{context.component_id}-{context.task_id}.json")
        self.record = {
            "component": context.component_id,
            "task": context.task_id,
            "worker": context.worker_index,
            "worker_tasks": list(context.worker_tasks),
            "pid": os.getpid(),
            "final": False,
            **fields,
        }
        self._dirty = False
        self._next_write = 0.0
        self.write_record()

    def changed(self) -> None:
        self._dirty = True
        if time.monotonic() >= self._next_write:
            self.write_record()

    def write_record(self, final: bool = False) -> None:
        self.record["final"] = final
        write_json(self._record_path, self.record)
        self._dirty = False
        self._next_write = time.monotonic() + RECORD_INTERVAL

    def flush_record(self) -> None:
        if self._dirty:
            self.write_record()


class RecordBolt(Recording, Bolt):
    """Counts what it receives: per first value ("keys", as strings) and per
    source task ("sources"). Give it FLUSH_TICKS in its component config."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.start_recording(conf, context, count=0, keys={}, sources={})

    def execute(self, tup: Tuple) -> None:
        rec = self.record
        rec["count"] += 1
        key = str(tup.values[0])
        rec["keys"][key] = rec["keys"].get(key, 0) + 1
        src = str(tup.source_task)
        rec["sources"][src] = rec["sources"].get(src, 0) + 1
        self.ack(tup)
        self.changed()

    def process_tick(self, tup: Tuple) -> None:
        self.flush_record()

    def cleanup(self) -> None:
        self.write_record(final=True)


class NumberSpout(Recording, Spout):
    """Emits [n] for n in range(itest.count), split over its tasks (task index i
    emits the n with n % tasks == i), then nothing. Its record says how many it
    emitted and whether it is done."""

    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        ntasks = len(context.get_component_tasks(context.component_id))
        self.todo = list(range(context.this_task_index, int(conf[COUNT]), ntasks))
        self.todo.reverse()
        self.start_recording(conf, context, emitted=0, done=False)

    def next_tuple(self) -> None:
        if not self.todo:
            return
        n = self.todo.pop()
        self.emit_number(n)
        self.record["emitted"] += 1
        if not self.todo:
            self.record["done"] = True
            self.write_record()
        else:
            self.changed()

    def emit_number(self, n: int) -> None:
        self.emit(self.values_for(n))

    def values_for(self, n: int) -> list[Any]:
        return [n]

    def close(self) -> None:
        self.write_record(final=True)


class PacedSpout(Spout):
    """Emits [n] for n = 0, 1, 2, ... forever, at most `itest.rate` per second
    (default 500), so a long-running test does not eat the machine's CPU."""

    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.n = 0
        self.rate = float(conf.get("itest.rate") or 500)
        self.start = time.monotonic()

    def next_tuple(self) -> None:
        if self.n < (time.monotonic() - self.start) * self.rate:
            self.emit([self.n])
            self.n += 1
