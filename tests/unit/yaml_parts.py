"""Components the YAML topology tests name by import path (yaml_parts.X)."""

from __future__ import annotations

from typing import Any

from storm import Bolt, CustomGrouping, Spout, Stream
from storm.stateful import StatefulBolt
from storm.windowing import Window, WindowedBolt


class Numbers(Spout):
    outputs = ["n"]


class Router(Bolt):
    """Evens and odds on named streams, and a direct stream."""

    outputs = [Stream(["n"], name="evens"), Stream(["n"], name="odds"),
               Stream(["n"], name="picked", direct=True), Stream(["n", "parity"])]

    def execute(self, tup: Any) -> None:
        n = tup[0]
        self.emit([n], stream="evens" if n % 2 == 0 else "odds", anchors=[tup])
        self.ack(tup)


class Collect(Bolt):
    def execute(self, tup: Any) -> None:
        self.ack(tup)


class ByValue(CustomGrouping):
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def choose_tasks(self, task_id: int, values: Any) -> list[int]:
        return [self.targets[(values[0] + self.offset) % len(self.targets)]]


class Sum(WindowedBolt):
    outputs = ["total"]

    def process_window(self, window: Window) -> None:
        self.emit([sum(t[0] for t in window.tuples)])


class Tally(StatefulBolt):
    def execute(self, tup: Any) -> None:
        self.state["n"] = self.state.get("n", 0) + 1
        self.ack(tup)
