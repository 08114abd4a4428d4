"""A spout whose tuples reach a bolt that never acks them: every tree can only
end by the message timeout. The spout records, per message id, when it emitted
it and when it got fail() (time.monotonic, same host), to a JSON file."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from storm import Bolt, Spout, Topology


class TimedSpout(Spout):
    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.out = os.path.join(conf["itest.dir"], f"timeout-spout-{context.task_id}.json")
        self.total = int(conf.get("itest.count", 3))
        self.n = 0
        self.emitted: dict[int, float] = {}
        self.failed: dict[int, float] = {}
        self.acked: list[int] = []

    def next_tuple(self) -> None:
        if self.n < self.total:
            self.n += 1
            self.emitted[self.n] = time.monotonic()
            self.emit([self.n], msg_id=self.n)
            self._write()

    def ack(self, msg_id: Any) -> None:
        self.acked.append(msg_id)
        self._write()

    def fail(self, msg_id: Any) -> None:
        self.failed.setdefault(msg_id, time.monotonic())
        self._write()

    def _write(self) -> None:
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"emitted": self.emitted, "failed": self.failed, "acked": self.acked}, f)
        os.replace(tmp, self.out)


class NeverAcks(Bolt):
    def execute(self, tup: Any) -> None:
        pass  # holds on to nothing and never acks: only the timeout ends the tree


class Timeouts(Topology):
    config = {"topology.workers": 2, "topology.message.timeout.secs": 2}
    source = TimedSpout.spec()
    sink = NeverAcks.spec(inputs=[source], par=2)
