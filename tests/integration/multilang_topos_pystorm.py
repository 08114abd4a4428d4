"""Topologies of the multi-lang integration tests: unmodified pystorm components
and one plain-JavaScript bolt (multilang_components/) wired with our own Python
sink, acking on.

  numbers (pystorm Spout) -> square (pystorm Bolt, fails some numbers once)
    -> double (JavaScript bolt, JSON only) -> sink (ours: records every value)

ShellAnchoringJson/Msgpack put one of our Python bolts after the pystorm bolt:

  numbers (pystorm Spout) -> square (pystorm Bolt, emits anchored)
    -> judge (ours: fails some numbers once, withholds the ack of others once)

so the spout sees a fail or a timeout only if the shell bolt's emits carry
their anchors into the tuple tree.

The sink appends "n sq dbl" lines to <itest.dir>/sink-<task>-<pid>.log with one
os.write each, so the test reads what it saw even while the topology runs."""

from __future__ import annotations

import os
import sys
from typing import Any

from storm import Bolt, Grouping, Topology, TopologyContext, Tuple
from storm.multilang import ShellBolt, ShellSpout

RECORD_DIR = "itest.dir"
PY = [sys.executable]


class SinkBolt(Bolt):
    """Records every tuple it gets, then acks it."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        path = os.path.join(conf[RECORD_DIR], f"sink-{context.task_id}-{os.getpid()}.log")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def execute(self, tup: Tuple) -> None:
        os.write(self.fd, (" ".join(str(v) for v in tup.values) + "\n").encode())
        self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)


class JudgeBolt(Bolt):
    """The first time it sees a multiple of mltest.judge.fail.every it fails it;
    the first time it sees a multiple of mltest.judge.withhold.every it neither
    acks nor fails it (the tree must time out); it acks everything else. Appends
    each number to <itest.dir>/judge-<task>-<pid>.log before answering."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        path = os.path.join(conf[RECORD_DIR], f"judge-{context.task_id}-{os.getpid()}.log")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.fail_every = int(conf.get("mltest.judge.fail.every") or 0)
        self.withhold_every = int(conf.get("mltest.judge.withhold.every") or 0)
        self.seen: set[int] = set()

    def execute(self, tup: Tuple) -> None:
        n = int(tup.values[0])
        os.write(self.fd, f"{n}\n".encode())
        first = n not in self.seen
        self.seen.add(n)
        if first and self.fail_every and n % self.fail_every == 0:
            self.fail(tup)
        elif first and self.withhold_every and n % self.withhold_every == 0:
            pass
        else:
            self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)


def read_judged(directory: str | os.PathLike[str]) -> list[int]:
    """Every number any judge task got, once per delivery."""
    from pathlib import Path

    seen: list[int] = []
    for p in Path(directory).glob("judge-*.log"):
        seen.extend(int(x) for x in p.read_bytes().split(b"\n")[:-1])
    return seen


def read_sink(directory: str | os.PathLike[str]) -> list[list[int]]:
    """Every complete line any sink task wrote, as lists of ints."""
    from pathlib import Path

    rows: list[list[int]] = []
    for p in Path(directory).glob("sink-*.log"):
        for line in p.read_bytes().split(b"\n")[:-1]:
            rows.append([int(x) for x in line.split()])
    return rows


def read_acks(directory: str | os.PathLike[str]) -> list[int]:
    from pathlib import Path

    acks: list[int] = []
    for p in Path(directory).glob("acks-*.log"):
        acks.extend(int(x) for x in p.read_bytes().split(b"\n")[:-1])
    return acks


class PystormJson(Topology):
    """JSON serializer; the JavaScript bolt in the middle; 2 workers."""

    config = {"topology.workers": 2, "topology.max.spout.pending": 64,
              "mltest.fail.every": 7}
    numbers = ShellSpout.spec(command=PY, script="multilang_components/ml_number_spout.py",
                              outputs=["n"])
    square = ShellBolt.spec(command=PY, script="multilang_components/ml_square_bolt.py",
                            inputs={numbers: Grouping.fields("n")}, outputs=["n", "sq"], par=2)
    double = ShellBolt.spec(command=["node"], script="multilang_components/double.js",
                            inputs=[square], outputs=["n", "sq", "dbl"],
                            config={"topology.tick.tuple.freq.secs": 0.5})
    sink = SinkBolt.spec(inputs=[double], par=2)


class PystormMsgpack(Topology):
    """pystorm's MsgpackSerializer on both components; 1 worker."""

    config = {"topology.workers": 1, "topology.max.spout.pending": 64,
              "mltest.fail.every": 5}
    numbers = ShellSpout.spec(command=PY, script="multilang_components/ml_number_spout.py",
                              args=["msgpack"], serializer="msgpack", outputs=["n"])
    square = ShellBolt.spec(command=PY, script="multilang_components/ml_square_bolt.py",
                            args=["msgpack"], serializer="msgpack",
                            inputs={numbers: Grouping.fields("n")}, outputs=["n", "sq"])
    sink = SinkBolt.spec(inputs=[square])


class PystormCrashy(Topology):
    """The square bolt's child exits on one number and hangs on another (once
    each): its pending tuples are failed, it is restarted, the spout replays."""

    config = {"topology.workers": 1, "topology.max.spout.pending": 32,
              "mltest.crash.on": [40], "mltest.hang.on": [90],
              "multilang.timeout.secs": 2.0, "multilang.heartbeat.secs": 0.5}
    numbers = ShellSpout.spec(command=PY, script="multilang_components/ml_number_spout.py",
                              outputs=["n"])
    square = ShellBolt.spec(command=PY, script="multilang_components/ml_square_bolt.py",
                            inputs=[numbers], outputs=["n", "sq"])
    sink = SinkBolt.spec(inputs=[square])


class PystormSpoutRestart(Topology):
    """The pystorm spout's child exits once; it is restarted and carries on."""

    config = {"topology.workers": 1, "topology.max.spout.pending": 16, "mltest.spout.crash.on": 60,
              "topology.message.timeout.secs": 3.0}
    numbers = ShellSpout.spec(command=PY, script="multilang_components/ml_crashy_spout.py",
                              outputs=["n"])
    square = ShellBolt.spec(command=PY, script="multilang_components/ml_square_bolt.py",
                            inputs=[numbers], outputs=["n", "sq"])
    sink = SinkBolt.spec(inputs=[square])


ANCHORING_CONFIG = {"topology.max.spout.pending": 16, "topology.message.timeout.secs": 3.0,
                    "mltest.judge.fail.every": 7, "mltest.judge.withhold.every": 11}


class ShellAnchoringJson(Topology):
    """JSON serializer; 2 workers, so the judge's fail and the pystorm spout's
    tree cross processes for half the numbers."""

    config = {"topology.workers": 2, **ANCHORING_CONFIG}
    numbers = ShellSpout.spec(command=PY, script="multilang_components/ml_number_spout.py",
                              outputs=["n"])
    square = ShellBolt.spec(command=PY, script="multilang_components/ml_square_bolt.py",
                            inputs=[numbers], outputs=["n", "sq"], par=2)
    judge = JudgeBolt.spec(inputs={square: Grouping.fields("n")}, par=2)


class ShellAnchoringMsgpack(Topology):
    """pystorm's MsgpackSerializer on both components; 1 worker."""

    config = {"topology.workers": 1, **ANCHORING_CONFIG}
    numbers = ShellSpout.spec(command=PY, script="multilang_components/ml_number_spout.py",
                              args=["msgpack"], serializer="msgpack", outputs=["n"])
    square = ShellBolt.spec(command=PY, script="multilang_components/ml_square_bolt.py",
                            args=["msgpack"], serializer="msgpack", inputs=[numbers],
                            outputs=["n", "sq"])
    judge = JudgeBolt.spec(inputs={square: Grouping.fields("n")})
