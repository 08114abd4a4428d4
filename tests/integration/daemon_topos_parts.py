"""Spouts and bolts of the cluster-mode tests (daemon_topos_cluster imports them,
so submitting that file also packs this one: the code archive must carry the
modules a topology imports from beside it).

Everything a test checks is appended to files in the directory named by the
config key `itest.dir`, one os.write per event, so SIGKILL loses nothing:
  acks-<task>-<pid>.log   every msg id the spout got ack() for
  sink-<task>-<pid>.log   every number the sink received
The sink also print()s a line every itest.print.every numbers, and logs one at
DEBUG on the logger itest.sink, for the log tests."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from storm import Bolt, Spout, TopologyContext, Tuple

RECORD_DIR = "itest.dir"
COUNT = "itest.count"  # numbers 0 .. count-1; 0 or unset: emit forever (unreliable)
RATE = "itest.rate"  # new numbers per second per spout task at most
PRINT_EVERY = "itest.print.every"  # the sink prints every n-th number it sees (0: never)


def read_numbers(directory: str | os.PathLike[str], name: str) -> Counter[int]:
    """How often each number appears in the `name`-*.log files."""
    counts: Counter[int] = Counter()
    for p in Path(directory).glob(f"{name}-*.log"):
        lines = p.read_bytes().split(b"\n")
        counts.update(int(x) for x in lines[:-1])
    return counts


def _open_log(conf: dict[str, Any], name: str, task: int) -> int:
    path = os.path.join(conf[RECORD_DIR], f"{name}-{task}-{os.getpid()}.log")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class NumberSpout(Spout):
    """With itest.count: emits each number not yet acked (by any incarnation:
    the ack logs are read at open) with msg id n, and replays it on fail, so a
    restarted or rebalanced spout carries on where the acks stopped. Without:
    emits 0, 1, 2, ... forever, no msg ids."""

    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.count = int(conf.get(COUNT) or 0)
        self.rate = float(conf.get(RATE) or 500)
        self.started = time.monotonic()
        self.sent = 0
        self.replay: list[int] = []
        self.ack_fd = _open_log(conf, "acks", context.task_id)
        ntasks = len(context.get_component_tasks(context.component_id))
        if self.count:
            done = set(read_numbers(conf[RECORD_DIR], "acks"))
            self.todo = [n for n in range(context.this_task_index, self.count, ntasks) if n not in done]
            self.todo.reverse()
        else:
            self.n = context.this_task_index
            self.step = ntasks

    def next_tuple(self) -> None:
        if self.sent >= (time.monotonic() - self.started) * self.rate:
            return
        if not self.count:
            self.emit([self.n])
            self.n += self.step
            self.sent += 1
            return
        if self.replay:
            n = self.replay.pop()
        elif self.todo:
            n = self.todo.pop()
        else:
            return
        self.sent += 1
        self.emit([n], msg_id=n)

    def ack(self, msg_id: Any) -> None:
        os.write(self.ack_fd, b"%d\n" % msg_id)

    def fail(self, msg_id: Any) -> None:
        self.replay.append(int(msg_id))

    def close(self) -> None:
        os.close(self.ack_fd)


class PassBolt(Bolt):
    """Passes [n] on, anchored, and acks."""

    outputs = ["n"]

    def execute(self, tup: Tuple) -> None:
        self.emit([tup.values[0]], anchors=[tup])
        self.ack(tup)


class SinkBolt(Bolt):
    """Logs every number it receives (with itest.dir set), and acks."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.fd = _open_log(conf, "sink", context.task_id) if conf.get(RECORD_DIR) else -1
        self.print_every = int(conf.get(PRINT_EVERY) or 0)
        self.seen = 0

    def execute(self, tup: Tuple) -> None:
        if self.fd >= 0:
            os.write(self.fd, b"%d\n" % tup.values[0])
        self.seen += 1
        if self.print_every and self.seen % self.print_every == 0:
            print(f"sink saw {self.seen} numbers, the last {tup.values[0]}")
            logging.getLogger("itest.sink").debug("sink debug line at %d", self.seen)
        self.ack(tup)

    def cleanup(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
