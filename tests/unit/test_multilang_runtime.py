"""ShellBolt and ShellSpout inside a real in-process Worker (no worker
processes; the children are real): direct emits, the task-ids reply, emits on
an undeclared stream, log/error/metrics commands, fail, heartbeats, and a
spout's next/ack/fail/activate answered by sync. The loop is driven by hand
(step + timers) with deadlines."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from storm import Bolt, Grouping, Stream, Topology, Tuple
from storm._runtime import Worker
from storm.multilang import ShellBolt, ShellSpout

pytestmark = pytest.mark.timeout(60)

PROTOCOL = textwrap.dedent('''
    import json, os, sys
    pending = []
    def read():
        lines = []
        while True:
            line = sys.stdin.readline()
            if not line:
                sys.exit(0)
            if line.rstrip("\\n") == "end":
                return json.loads("".join(lines))
            lines.append(line)
    def command():
        return pending.pop(0) if pending else read()
    def task_ids():
        while True:
            m = read()
            if isinstance(m, list):
                return m
            pending.append(m)
    def send(m):
        sys.stdout.write(json.dumps(m) + "\\nend\\n"); sys.stdout.flush()
    hs = read()
    ctx = hs["context"]
    open(os.path.join(hs["pidDir"], str(os.getpid())), "w").close()
    send({"pid": os.getpid()})
''')

BOLT_CHILD = PROTOCOL + textwrap.dedent('''
    sink_tasks = sorted(int(t) for t, c in ctx["task->component"].items() if c == "sink")
    while True:
        m = command()
        if m.get("stream") == "__heartbeat":
            send({"command": "sync"}); continue
        if m.get("stream") == "__tick":
            continue
        x = m["tuple"][0]
        if x == "fail":
            send({"command": "fail", "id": m["id"]}); continue
        send({"command": "emit", "anchors": [m["id"]], "tuple": [x]})
        tasks = task_ids()
        send({"command": "emit", "stream": "ids", "tuple": [x, tasks], "need_task_ids": False})
        send({"command": "emit", "stream": "direct", "task": sink_tasks[-1], "tuple": [x]})
        assert task_ids() == [sink_tasks[-1]]
        send({"command": "emit", "stream": "undeclared", "tuple": [x]})
        assert task_ids() == []
        send({"command": "log", "msg": f"child log {x}", "level": 3})
        send({"command": "error", "msg": f"child error {x}"})
        send({"command": "metrics", "name": "seen", "params": x})
        send({"command": "ack", "id": m["id"]})
''')

SPOUT_CHILD = PROTOCOL + textwrap.dedent('''
    todo = ["a", "b", "c"]
    log = []
    while True:
        m = command()
        c = m["command"]
        log.append(c)
        if c == "next" and todo:
            x = todo.pop(0)
            send({"command": "emit", "id": x, "tuple": [x]})
            task_ids()
        elif c == "ack":
            send({"command": "log", "msg": f"acked {m['id']} after {sorted(set(log))}"})
        elif c == "fail":
            todo.append(m["id"])
        send({"command": "sync"})
''')


class Collect(Bolt):
    seen: ClassVar[list[tuple[str, list[Any]]]] = []

    def execute(self, tup: Tuple) -> None:
        Collect.seen.append((tup.stream, list(tup.values)))
        self.ack(tup)


class Words(Topology):
    words = ShellSpout.spec(command=[sys.executable, "-c", SPOUT_CHILD], outputs=["w"])
    proto = ShellBolt.spec(command=[sys.executable, "-c", BOLT_CHILD], inputs=[words],
                           outputs=["w", Stream(["w", "tasks"], name="ids"),
                                    Stream(["w"], name="direct", direct=True)],
                           config={"multilang.heartbeat.secs": 0.05})
    sink = Collect.spec(inputs={proto: Grouping.shuffle(), proto["ids"]: Grouping.shuffle(),
                                proto["direct"]: Grouping.direct()}, par=2)


def run_until(worker: Worker, cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; errors: "
                                 f"{[e['error'] for e in worker.new_errors]}")
        now = time.monotonic()
        if not worker.step(now):
            time.sleep(0.001)
        worker.timers(now)


@pytest.fixture
def worker() -> Any:
    Collect.seen.clear()
    spec = Words.build({"topology.message.timeout.secs": 5})
    w = Worker(spec, dict.fromkeys(spec.task_component, 0), 0, None)
    w.setup()
    try:
        yield w
    finally:
        w.close()


def test_bolt_and_spout_speak_the_protocol(worker: Worker) -> None:
    worker.set_active(True)
    spec = worker.spec
    sinks = spec.components["sink"].tasks
    run_until(worker, lambda: len([s for s in Collect.seen if s[0] == "direct"]) == 3, "three direct tuples")
    spout = next(ex for ex in worker.spouts if ex.component == "words")
    run_until(worker, lambda: spout.stats.acked == 3, "the spout's three acks")
    by_stream: dict[str, list[list[Any]]] = {}
    for stream, values in Collect.seen:
        by_stream.setdefault(stream, []).append(values)
    assert sorted(by_stream["default"]) == [["a"], ["b"], ["c"]]
    # the task-ids reply named the sink task each default tuple went to
    assert sorted(v[0] for v in by_stream["ids"]) == ["a", "b", "c"]
    assert all(len(v[1]) == 1 and v[1][0] in sinks for v in by_stream["ids"])
    assert sorted(by_stream["direct"]) == [["a"], ["b"], ["c"]]
    bolt = next(ex for ex in worker.bolts if ex.component == "proto")
    errors = [e["error"] for e in worker.new_errors]
    assert any("child error a" in e for e in errors)
    assert any("undeclared stream 'undeclared'" in e for e in errors)
    assert bolt.instance.metrics.get("seen") in ("a", "b", "c")
    # heartbeats are answered: no restart in a second of 50 ms heartbeats
    t_end = time.monotonic() + 1.0
    run_until(worker, lambda: time.monotonic() > t_end, "a second of heartbeats")
    assert bolt.instance.restarts == 0 and bolt.instance.child is not None
    assert spout.instance.restarts == 0


def test_a_fail_from_the_child_fails_the_input(worker: Worker) -> None:
    bolt = next(ex for ex in worker.bolts if ex.component == "proto")
    spout = next(ex for ex in worker.spouts if ex.component == "words")
    tup = Tuple(["fail"], worker.streams[worker.spec.stream_ids[("words", "default")]], spout.task_id)
    bolt.inbox.append(tup)
    run_until(worker, lambda: bolt.stats.failed == 1, "the child's fail")
    assert not bolt.instance.pending
