"""Topology for the tick tuple test: a bolt configured with
topology.tick.tuple.freq.secs = 0.2 records when each tick arrives (in
execute, as tup.is_tick) and what it looked like; the same bolt without the
setting must get no ticks. Both also get ordinary tuples from a paced spout.

Layout with 2 workers: numbers: 1 (w0); ticked: 2 (w1), 3 (w0); unticked: 4 (w1), 5 (w0)."""

from __future__ import annotations

import time
from typing import Any

from topos_common import PacedSpout, Recording

from storm import Bolt, Topology, TopologyContext, Tuple

TICK_SECS = 0.2


class TickRecorder(Recording, Bolt):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.start_recording(conf, context, ticks=[], odd_ticks=[], tuples=0)

    def execute(self, tup: Tuple) -> None:
        rec = self.record
        if tup.is_tick:
            rec["ticks"].append(time.monotonic())  # CLOCK_MONOTONIC: one clock for all processes
            if (tup.stream, tup.source_component, list(tup.values)) != ("__tick", "__system", [TICK_SECS]):
                rec["odd_ticks"].append([tup.stream, tup.source_component, list(tup.values)])
            self.write_record()
            return
        rec["tuples"] += 1
        self.ack(tup)
        self.changed()

    def cleanup(self) -> None:
        self.write_record(final=True)


class Ticks(Topology):
    config = {"topology.workers": 2, "topology.acker.executors": 0}
    numbers = PacedSpout.spec()
    ticked = TickRecorder.spec(inputs=[numbers], par=2, config={"topology.tick.tuple.freq.secs": TICK_SECS})
    unticked = TickRecorder.spec(inputs=[numbers], par=2)
