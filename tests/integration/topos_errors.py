"""Topology for the error tests: bolts that raise on some tuples, a spout and a
bolt that emit a set (which msgpack cannot encode), and a bolt that sends an
integer too large for msgpack to a task in the other worker.

Layout with 2 workers (ids in component-name order, odd ids in worker 0):
far: 1 (w0); flaky: 2, 3; huge: 4 (w1); numbers: 5, 6; setter: 7, 8; acker: 9, 10."""

from __future__ import annotations

from topos_common import FLUSH_TICKS, NumberSpout, RecordBolt

from storm import Grouping, Stream, Topology, Tuple

TOO_BIG = 1 << 70  # msgpack encodes integers up to 2**64 - 1


def flaky_refuses(n: int) -> bool:
    return n % 10 == 3


def spout_emits_set(n: int) -> bool:
    return n % 100 == 50


def setter_emits_set(n: int) -> bool:
    return n % 50 == 7


def huge_emits_big_int(n: int) -> bool:
    return n % 50 == 9


class SetSpout(NumberSpout):
    """Emits [n], except for some n a set on stream "odd" instead."""

    outputs = [Stream(("n",)), Stream(("thing",), name="odd")]

    def emit_number(self, n: int) -> None:
        if spout_emits_set(n):
            self.emit([{n}], stream="odd")
        else:
            self.emit([n])


class FlakyBolt(RecordBolt):
    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        if flaky_refuses(n):
            raise ValueError(f"flaky bolt refuses {n}")
        super().execute(tup)


class SetBolt(RecordBolt):
    outputs = [Stream(("item",), name="items")]

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        if setter_emits_set(n):
            self.emit([{n}], stream="items", anchors=[tup])
        super().execute(tup)


class HugeBolt(RecordBolt):
    outputs = ["value"]

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        self.emit([TOO_BIG if huge_emits_big_int(n) else n], anchors=[tup])
        super().execute(tup)


class Errors(Topology):
    config = {"topology.workers": 2}
    numbers = SetSpout.spec(par=2)
    flaky = FlakyBolt.spec(inputs=[numbers], par=2, config=FLUSH_TICKS)
    setter = SetBolt.spec(inputs=[numbers], par=2, config=FLUSH_TICKS)
    huge = HugeBolt.spec(inputs=[numbers], config=FLUSH_TICKS)
    far = RecordBolt.spec(inputs={huge: Grouping.shuffle()}, config=FLUSH_TICKS)
