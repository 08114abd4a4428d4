"""storm.multilang without worker processes: the spec() DSL and its errors, the
handshake context, and ShellProcess framing (JSON with `end` lines, msgpack)
against small child scripts, including children that write garbage or die."""

from __future__ import annotations

import os
import queue
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from storm import Grouping, Topology, TopologyError
from storm._context import TopologyContext
from storm.multilang import (
    KEY_ARGS,
    KEY_COMMAND,
    KEY_SCRIPT,
    KEY_SERIALIZER,
    KEY_TICK,
    POLL_SECS,
    ShellBolt,
    ShellError,
    ShellProcess,
    ShellSpout,
    _Gone,
    _resolve,
    handshake_context,
)

pytestmark = pytest.mark.timeout(30)

ECHO_JSON = textwrap.dedent("""
    import json, os, sys
    def read():
        lines = []
        while True:
            line = sys.stdin.readline()
            if not line:
                sys.exit(0)
            if line.rstrip("\\n") == "end":
                return json.loads("".join(lines))
            lines.append(line)
    def send(m):
        sys.stdout.write(json.dumps(m) + "\\nend\\n"); sys.stdout.flush()
    hs = read()
    open(os.path.join(hs["pidDir"], str(os.getpid())), "w").close()
    send({"pid": os.getpid()})
    sys.stderr.write("hello from stderr\\n"); sys.stderr.flush()
    while True:
        m = read()
        if isinstance(m, dict) and m.get("stream") == "__heartbeat":
            send({"command": "sync"})
        elif isinstance(m, dict) and m.get("command") == "die":
            sys.exit(5)
        else:
            send({"command": "emit", "tuple": [m], "anchors": []})
""")

ECHO_MSGPACK = textwrap.dedent("""
    import os, sys, msgpack
    unpacker = msgpack.Unpacker(raw=False)
    out = sys.stdout.buffer
    def messages():
        while True:
            chunk = os.read(0, 65536)
            if not chunk:
                sys.exit(0)
            unpacker.feed(chunk)
            yield from unpacker
    it = messages()
    hs = next(it)
    out.write(msgpack.packb({"pid": os.getpid()})); out.flush()
    for m in it:
        out.write(msgpack.packb({"command": "emit", "tuple": [m]})); out.flush()
""")


def _child(tmp_path: Path, source: str, serializer: str = "json") -> ShellProcess:
    script = tmp_path / "child.py"
    script.write_text(source)
    import logging

    return ShellProcess([sys.executable, str(script)], str(tmp_path), serializer,
                        logging.getLogger("test.multilang"))


def _next(proc: ShellProcess, timeout: float = 10.0) -> Any:
    return proc.messages.get(timeout=timeout)


class Numbers(Topology):
    nums = ShellSpout.spec(command=["python3"], script="nums.py", outputs=["n"])
    sq = ShellBolt.spec(command=["node"], script="sq.js", args=["--x"], outputs=["n", "sq"],
                        inputs={nums: Grouping.fields("n")}, par=2, serializer="msgpack")


def test_spec_carries_the_command_in_the_component_config() -> None:
    spec = Numbers.build()
    sq = spec.components["sq"]
    assert sq.cls is ShellBolt
    assert sq.config[KEY_COMMAND] == ["node"]
    assert sq.config[KEY_SCRIPT] == "sq.js"
    assert sq.config[KEY_ARGS] == ["--x"]
    assert sq.config[KEY_SERIALIZER] == "msgpack"
    # the runtime's tick timer drives the bolt's reads; no user tick to forward
    assert sq.config["topology.tick.tuple.freq.secs"] == POLL_SECS
    assert KEY_TICK not in sq.config
    cmd, cwd = _resolve(sq.config)
    here = str(Path(__file__).resolve().parent)
    assert cmd == ["node", f"{here}/sq.js", "--x"], "a relative script is relative to the declaring file"
    assert cwd == here


def test_user_tick_frequency_is_kept_and_forwarded() -> None:
    spec = ShellBolt.spec(command=["x"], config={"topology.tick.tuple.freq.secs": 5})
    assert spec.config[KEY_TICK] == 5.0
    assert spec.config["topology.tick.tuple.freq.secs"] == POLL_SECS


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs command"),
    ({"command": []}, "non-empty list"),
    ({"command": ["a", 3]}, "non-empty list"),
    ({"command": ["a"], "serializer": "xml"}, "'json' or 'msgpack'"),
    ({"command": ["a"], "args": "x"}, "args must be a list"),
])
def test_spec_errors_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        ShellBolt.spec(**kwargs)
    with pytest.raises(TopologyError, match=message):
        ShellSpout.spec(**kwargs)


def test_resolve_without_a_command_is_a_clear_error() -> None:
    with pytest.raises(ShellError, match="multilang.command"):
        _resolve({})


def test_handshake_context_has_storm_keys() -> None:
    spec = Numbers.build()
    task = spec.components["sq"].tasks[0]
    ctx = handshake_context(TopologyContext(spec, task, frozenset(spec.task_component)))
    assert ctx["taskid"] == task
    assert ctx["componentid"] == "sq"
    assert ctx["task->component"][str(task)] == "sq"
    assert ctx["stream->outputfields"] == {"default": ["n", "sq"]}
    assert ctx["source->stream->fields"] == {"nums": {"default": ["n"]}}


def test_json_framing_handshake_and_round_trip(tmp_path: Path) -> None:
    proc = _child(tmp_path, ECHO_JSON)
    try:
        pid = proc.handshake({"k": 1, "obj": object()}, {"taskid": 1}, timeout=10)
        assert pid == proc.proc.pid
        assert (Path(proc.pid_dir) / str(pid)).exists(), "the child wrote its pid file"
        proc.send({"id": "1", "tuple": ["a\nend\nb", 2]})  # 'end' inside a value is safe
        msg = _next(proc)
        assert msg == {"command": "emit", "tuple": [{"id": "1", "tuple": ["a\nend\nb", 2]}], "anchors": []}
        proc.send({"stream": "__heartbeat", "task": -1, "tuple": [], "id": "hb"})
        assert _next(proc) == {"command": "sync"}
        proc.send({"command": "die"})
        gone = _next(proc)
        assert isinstance(gone, _Gone) and "closed its stdout" in gone.reason
        deadline = time.monotonic() + 10
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.proc.returncode == 5
    finally:
        proc.kill()
    assert not Path(proc.pid_dir).exists()


def test_msgpack_framing(tmp_path: Path) -> None:
    proc = _child(tmp_path, ECHO_MSGPACK, serializer="msgpack")
    try:
        proc.handshake({}, {}, timeout=10)
        proc.send({"id": "x", "tuple": [b"\x00bytes", 1.5, None]})
        assert _next(proc) == {"command": "emit", "tuple": [{"id": "x", "tuple": [b"\x00bytes", 1.5, None]}]}
    finally:
        proc.kill()


def test_garbage_from_the_child_is_reported_not_raised(tmp_path: Path) -> None:
    proc = _child(tmp_path, "import sys\nsys.stdout.write('not json\\nend\\n'); sys.stdout.flush()\n"
                            "import time; time.sleep(30)\n")
    try:
        with pytest.raises(ShellError, match="not a multi-lang message"):
            proc.handshake({}, {}, timeout=10)
    finally:
        proc.kill()
    assert not proc.alive()


def test_a_child_that_never_answers_the_handshake_times_out(tmp_path: Path) -> None:
    proc = _child(tmp_path, "import time\ntime.sleep(30)\n")
    try:
        t0 = time.monotonic()
        with pytest.raises(ShellError, match="sent no pid"):
            proc.handshake({}, {}, timeout=0.3)
        assert time.monotonic() - t0 < 5  # the 0.3 s timeout fired, not the child's 30 s sleep
    finally:
        proc.kill()


def test_a_command_that_does_not_exist(tmp_path: Path) -> None:
    import logging

    with pytest.raises(ShellError, match="cannot start"):
        ShellProcess([str(tmp_path / "nope")], None, "json", logging.getLogger("t"))


def test_messages_queue_is_fed_without_blocking_the_caller(tmp_path: Path) -> None:
    count = 5000  # ~200 KB: far more than a pipe buffer holds
    proc = _child(tmp_path, ECHO_JSON)
    try:
        proc.handshake({}, {}, timeout=10)
        # The child is stopped, so it reads nothing: a send() that wrote to the
        # pipe itself would block once the pipe is full, and never return.
        os.kill(proc.proc.pid, signal.SIGSTOP)
        sender = threading.Thread(target=lambda: [proc.send({"id": str(i), "tuple": [i]}) for i in range(count)],
                                  daemon=True)
        sender.start()
        sender.join(timeout=30)
        assert not sender.is_alive(), "send() blocked on a child that does not read"
        os.kill(proc.proc.pid, signal.SIGCONT)
        got = [_next(proc) for _ in range(count)]
        assert [m["tuple"][0]["tuple"][0] for m in got] == list(range(count))
        with pytest.raises(queue.Empty):
            proc.messages.get_nowait()
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
        proc.kill()


def test_topology_builder_passes_the_command_in_the_config() -> None:
    from storm import TopologyBuilder

    b = TopologyBuilder("built")
    b.set_spout("nums", ShellSpout, config={KEY_COMMAND: ["python3"], KEY_SCRIPT: "/abs/nums.py"},
                outputs=["n"])
    b.set_bolt("sq", ShellBolt, par=2, config={KEY_COMMAND: ["node", "/abs/sq.js"]},
               outputs=["n", "sq"]).shuffle_grouping("nums")
    spec = b.build()
    assert spec.components["sq"].config[KEY_COMMAND] == ["node", "/abs/sq.js"]
    assert spec.components["sq"].config["topology.tick.tuple.freq.secs"] == POLL_SECS
    assert _resolve(spec.components["nums"].config)[0][1] == "/abs/nums.py"
