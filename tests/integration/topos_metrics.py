"""Topologies with known counts for the metrics tests: a finite spout of
`itest.count` numbers (default 1,000) with message ids, a bolt that acks every
tuple, one that fails every 10th, and one that sleeps per tuple (capacity ~1)."""

from __future__ import annotations

import time
from typing import Any

from storm import Bolt, Spout, Topology, Tuple


class Numbers(Spout):
    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.total = int(conf.get("itest.count", 1000))
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < self.total:
            self.n += 1
            self.emit([self.n], msg_id=self.n)


class Endless(Spout):
    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        self.n += 1
        self.emit([self.n])


class AckAll(Bolt):
    outputs = ["n"]

    def execute(self, tup: Tuple) -> None:
        self.emit([tup.values[0]], anchors=[tup])
        self.ack(tup)


class FailTenth(Bolt):
    def execute(self, tup: Tuple) -> None:
        if tup.values[0] % 10 == 0:
            self.fail(tup)
        else:
            self.ack(tup)


class Sink(Bolt):
    def execute(self, tup: Tuple) -> None:
        self.ack(tup)


class Sleepy(Bolt):
    def execute(self, tup: Tuple) -> None:
        time.sleep(0.002)


class Counted(Topology):
    config = {"topology.workers": 2}
    numbers = Numbers.spec()
    relay = AckAll.spec(inputs=[numbers], par=2)
    sink = Sink.spec(inputs=[relay])


class FailingTenth(Topology):
    config = {"topology.workers": 1}
    numbers = Numbers.spec()
    failer = FailTenth.spec(inputs=[numbers])


class Busy(Topology):
    config = {"topology.workers": 1, "topology.executor.receive.buffer.size": 200}
    source = Endless.spec()
    sleepy = Sleepy.spec(inputs=[source])
