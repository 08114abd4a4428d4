"""Topology of the windowing integration test: a ListSpout of (ts, value)
events, locally out of order within the lag, split over two spout tasks (the
watermark is the minimum over both), and an event-time tumbling window bolt
that appends each window it sees to ``<itest.dir>/windows.jsonl``."""

from __future__ import annotations

import json
import os
import random
from typing import Any

from storm.spouts import ListSpout
from storm.windowing import Window, WindowedBolt

RECORD_DIR = "itest.dir"
LAST_TS = 60


def events() -> list[list[Any]]:
    items = [[float(ts), ts] for ts in range(LAST_TS)]
    rng = random.Random(7)
    # Local disorder only (swaps of neighbours, at most 2 s apart): within the lag.
    for i in range(0, len(items) - 1, 2):
        if rng.random() < 0.5:
            items[i], items[i + 1] = items[i + 1], items[i]
    # One per spout task (items alternate between them): moves event time past every window.
    items += [[100.0, -1], [100.0, -1]]
    return items


class Events(ListSpout):
    outputs = ["ts", "value"]

    def load_items(self, conf: dict[str, Any], context: Any) -> list[list[Any]]:
        return events()


class WindowRecorder(WindowedBolt):
    outputs = ["start", "total"]

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        super().prepare(conf, context)
        self.path = os.path.join(str(conf[RECORD_DIR]), "windows.jsonl")

    def process_window(self, window: Window) -> None:
        values = sorted(t["value"] for t in window.tuples)
        with open(self.path, "a") as f:
            f.write(json.dumps({"start": window.start, "end": window.end, "values": values,
                                "expired": len(window.expired)}) + "\n")
        self.emit([window.start, sum(values)])
