"""Multi-lang components: ShellBolt and ShellSpout run a component as a child
process that speaks Apache Storm's multi-lang protocol over stdin/stdout (JSON
messages each followed by a line ``end``, or a plain stream of msgpack maps), so
components written for Storm in any language (pystorm, storm.js, ...) run
unchanged in our topologies.

This module owns the child processes and the protocol; it reaches the runtime
only through the public component API (emit, ack, fail, report_error) and never
touches sockets. The worker runs every executor in one thread, so child I/O goes
through three daemon threads per child (stdout reader, stdin writer, stderr
logger) and queues: the run loop never blocks on a pipe, except for the bounded
waits named below (handshake, a spout's ``sync``, a bolt over its pending limit).

Example::

    from storm import Topology
    from storm.multilang import ShellBolt, ShellSpout

    class Words(Topology):
        words = ShellSpout.spec(command=["python3"], script="word_spout.py", outputs=["word"])
        counts = ShellBolt.spec(command=["node"], script="count.js", outputs=["word", "count"],
                                inputs=[words], par=2)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from ._component import Bolt, ComponentSpec, Spout, Stream
from ._context import TopologyContext
from ._errors import StormError, TopologyError
from ._tuple import DEFAULT_STREAM, Tuple

__all__ = ["ShellBolt", "ShellSpout", "ShellError", "ShellProcess"]

#: Component config keys a ShellBolt/ShellSpout spec carries to the workers.
KEY_COMMAND = "multilang.command"
KEY_SCRIPT = "multilang.script"
KEY_BASE = "multilang.base.module"
KEY_CWD = "multilang.cwd"
KEY_ARGS = "multilang.args"
KEY_SERIALIZER = "multilang.serializer"
KEY_TICK = "multilang.tick.secs"
#: Seconds between heartbeat tuples sent to a bolt's child.
KEY_HEARTBEAT = "multilang.heartbeat.secs"
#: Seconds without an answer (heartbeat ``sync`` for a bolt, ``sync`` for a
#: spout command) before the child is considered hung, killed and restarted.
KEY_TIMEOUT = "multilang.timeout.secs"
#: Tuples a bolt's child may hold un-acked before execute waits for it
#: (Storm's topology.shellbolt.max.pending).
KEY_MAX_PENDING = "multilang.max.pending"
#: Milliseconds next_tuple waits for the child's ``sync`` before returning.
KEY_SPOUT_WAIT = "multilang.spout.wait.ms"

#: How often the runtime's tick timer lets a ShellBolt read its child's output
#: when no tuples arrive (the worker's loop has no other hook for it).
POLL_SECS = 0.01
HANDSHAKE_TIMEOUT = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR,
           "trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGKILL the child when the worker dies,
    so a hung child cannot outlive a worker killed with SIGKILL (a child that
    is not hung exits on its own when its stdin closes)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

    return preexec


_PREEXEC = _die_with_parent()


class ShellError(StormError):
    """An error reported by, or about, a multi-lang child process."""


class _Gone:
    """Put on a child's queue when its stdout closes or its output is garbage."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _spec_config(cls: type, command: Sequence[str] | str | None, script: str | None,
                 args: Sequence[str], serializer: str, cwd: str | None,
                 config: Mapping[str, Any] | None, base_module: str) -> dict[str, Any]:
    if command is None and config is not None and KEY_COMMAND in config:
        # TopologyBuilder.set_bolt/set_spout pass no command: it comes in the config.
        command = config[KEY_COMMAND]
        script = script if script is not None else config.get(KEY_SCRIPT)
        serializer = str(config.get(KEY_SERIALIZER) or serializer)
        args = args or config.get(KEY_ARGS) or ()
    if command is None:
        raise TopologyError(f"{cls.__name__}.spec() needs command=[...], e.g. command=['python3']")
    cmd = [command] if isinstance(command, str) else list(command)
    if not cmd or not all(isinstance(c, str) and c for c in cmd):
        raise TopologyError(
            f"{cls.__name__}.spec(): command must be a non-empty list of strings, got {command!r}")
    if serializer not in ("json", "msgpack"):
        raise TopologyError(
            f"{cls.__name__}.spec(): serializer must be 'json' or 'msgpack', got {serializer!r}")
    cfg = dict(config or {})
    cfg[KEY_COMMAND] = cmd
    cfg[KEY_SERIALIZER] = serializer
    if script is not None:
        cfg[KEY_SCRIPT] = str(script)
        cfg[KEY_BASE] = base_module
    if cwd is not None:
        cfg[KEY_CWD] = str(cwd)
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise TopologyError(f"{cls.__name__}.spec(): args must be a list of strings, got {args!r}")
    if args:
        cfg[KEY_ARGS] = list(args)
    return cfg


def _caller_module(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return str(frame.f_globals.get("__name__", "__main__"))


def _resolve(conf: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The command line and working directory of a child, from its component
    config. A relative script is relative to the directory of the module that
    declared the spec, so every worker (and every cluster host that unpacked the
    same code) resolves it alike."""
    cmd = list(conf.get(KEY_COMMAND) or [])
    if not cmd:
        raise ShellError(f"no '{KEY_COMMAND}' in the component config; declare it with "
                         "ShellBolt.spec(command=[...]) or ShellSpout.spec(command=[...])")
    base_dir: str | None = None
    mod = sys.modules.get(str(conf.get(KEY_BASE) or ""))
    mod_file = getattr(mod, "__file__", None)
    if mod_file:
        base_dir = os.path.dirname(os.path.abspath(mod_file))
    script = conf.get(KEY_SCRIPT)
    if script:
        path = str(script)
        if not os.path.isabs(path) and base_dir is not None:
            path = os.path.join(base_dir, path)
        cmd.append(path)
    cmd.extend(str(a) for a in conf.get(KEY_ARGS) or [])
    if cmd[0] in ("python", "python3") and shutil.which(cmd[0]) is None:
        cmd[0] = sys.executable
    cwd = conf.get(KEY_CWD)
    if cwd and not os.path.isabs(str(cwd)) and base_dir is not None:
        cwd = os.path.join(base_dir, str(cwd))
    return cmd, (str(cwd) if cwd else base_dir)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def handshake_context(context: TopologyContext) -> dict[str, Any]:
    """The ``context`` map of the handshake, as Apache Storm sends it."""
    spec = context._spec
    me = spec.components[context.component_id]
    stream_fields: dict[str, list[str]] = {s: list(d.fields) for s, d in me.outputs.items()
                                           if not s.startswith("__")}
    sources: dict[str, dict[str, list[str]]] = {}
    for sub in me.inputs:
        src = spec.components.get(sub.source)
        if src is None or sub.stream not in src.outputs:
            continue
        sources.setdefault(sub.source, {})[sub.stream] = list(src.outputs[sub.stream].fields)
    return {
        "task->component": {str(t): c for t, c in spec.task_component.items()},
        "taskid": context.task_id,
        "componentid": context.component_id,
        "stream->outputfields": stream_fields,
        "source->stream->fields": sources,
        "streams": sorted(stream_fields),
    }


class ShellProcess:
    """One multi-lang child: its pipes, reader/writer/stderr threads, framing.

    ``messages`` receives every decoded message (a dict, or a list of task ids)
    and, when the child's stdout closes or turns to garbage, one `_Gone`.
    """

    def __init__(self, command: list[str], cwd: str | None, serializer: str,
                 logger: logging.Logger) -> None:
        self.command = command
        self.serializer = serializer
        self.logger = logger
        self.messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.pid_dir = tempfile.mkdtemp(prefix="storm-multilang-")
        try:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=cwd, bufsize=65536, close_fds=True, start_new_session=True,
                preexec_fn=_PREEXEC)
        except OSError as exc:
            shutil.rmtree(self.pid_dir, ignore_errors=True)
            raise ShellError(f"cannot start multi-lang command {command}: {exc}") from exc
        self.child_pid = 0
        self._threads = [
            threading.Thread(target=self._read_stdout, name=f"multilang-out-{self.proc.pid}", daemon=True),
            threading.Thread(target=self._write_stdin, name=f"multilang-in-{self.proc.pid}", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"multilang-err-{self.proc.pid}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- framing -----------------------------------------------------------
    def encode(self, msg: Any) -> bytes:
        if self.serializer == "msgpack":
            return msgpack.packb(msg, use_bin_type=True)
        return json.dumps(msg, separators=(",", ":"), default=str).encode() + b"\nend\n"

    def send(self, msg: Any) -> None:
        """Queue a message for the child's stdin (never blocks)."""
        self._out.put(self.encode(msg))

    def _write_stdin(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while True:
                data = self._out.get()
                if data is None:
                    break
                stdin.write(data)
                if self._out.empty():
                    stdin.flush()
        except (OSError, ValueError):
            pass  # the child went away; the reader reports it
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    def _read_stdout(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        put = self.messages.put
        try:
            if self.serializer == "msgpack":
                unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                            max_buffer_size=MAX_MESSAGE_BYTES)
                while True:
                    chunk = os.read(stdout.fileno(), 65536)
                    if not chunk:
                        break
                    unpacker.feed(chunk)
                    for msg in unpacker:
                        put(msg)
            else:
                lines: list[bytes] = []
                size = 0
                for line in iter(stdout.readline, b""):
                    if line.rstrip(b"\r\n") == b"end":
                        text = b"".join(lines)
                        lines, size = [], 0
                        if text.strip():
                            put(json.loads(text))
                        continue
                    size += len(line)
                    if size > MAX_MESSAGE_BYTES:
                        raise ValueError(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
                    lines.append(line)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            put(_Gone(f"the child wrote something that is not a multi-lang message: {exc}"))
            return
        except OSError as exc:
            put(_Gone(f"reading the child's stdout failed: {exc}"))
            return
        put(_Gone("the child closed its stdout (exited?)"))

    def _read_stderr(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for line in iter(stderr.readline, b""):
                self.logger.warning("child stderr: %s", line.decode("utf-8", "replace").rstrip())

    # -- life cycle --------------------------------------------------------
    def handshake(self, conf: Mapping[str, Any], context: dict[str, Any], timeout: float) -> int:
        """Send conf, context and pidDir; wait for the child's pid."""
        self.send({"conf": _jsonable(dict(conf)), "context": context, "pidDir": self.pid_dir})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShellError(f"multi-lang child {self.command} sent no pid within {timeout:g}s")
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(msg, _Gone):
                raise ShellError(f"multi-lang child {self.command} failed its handshake: {msg.reason}")
            if isinstance(msg, dict) and isinstance(msg.get("pid"), int):
                self.child_pid = int(msg["pid"])
                return self.child_pid
            self.logger.warning("ignored a message before the handshake's pid: %r", msg)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, grace: float = 1.0) -> None:
        """Close stdin, give the child `grace` seconds, then kill it."""
        self._out.put(None)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        shutil.rmtree(self.pid_dir, ignore_errors=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.close(grace=2.0)


class _ShellCommon:
    """What ShellBolt and ShellSpout share: starting, restarting and talking to
    the child; the log/error/metrics commands."""

    conf: dict[str, Any]
    context: TopologyContext
    logger: logging.Logger
    child: ShellProcess | None
    metrics: dict[str, Any]
    restarts: int

    def _start_child(self) -> None:
        cmd, cwd = _resolve(self.conf)
        child = ShellProcess(cmd, cwd, str(self.conf.get(KEY_SERIALIZER) or "json"),
                             logging.getLogger(f"{self.logger.name}.child"))
        try:
            pid = child.handshake(self.conf, handshake_context(self.context), HANDSHAKE_TIMEOUT)
        except BaseException:
            child.kill()
            raise
        self.child = child
        self.logger.info("multi-lang child %s started, pid %d", cmd, pid)

    def _stop_child(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.close()

    def _common_command(self, msg: dict[str, Any], cmd: Any) -> bool:
        """Handle log, error and metrics; False for anything else."""
        if cmd == "log":
            level = _LEVELS.get(msg.get("level", 2), logging.INFO)
            self.logger.log(level, "%s", msg.get("msg"))
        elif cmd == "error":
            self.report_error(ShellError(f"multi-lang child reported: {msg.get('msg')}"))
        elif cmd == "metrics":
            name = msg.get("name")
            if isinstance(name, str):
                self.metrics[name] = msg.get("params")
        else:
            return False
        return True

    def report_error(self, exc: BaseException) -> None:  # replaced by the runtime
        raise NotImplementedError

    def _protocol_error(self, msg: Any) -> None:
        self.report_error(ShellError(f"multi-lang child sent an unknown message: {msg!r:.300}"))


class ShellBolt(_ShellCommon, Bolt):
    """A bolt whose ``execute`` runs in a child process speaking Storm's
    multi-lang protocol. Declare it with :meth:`spec`; do not subclass."""

    @classmethod
    def spec(  # type: ignore[override]
        cls,
        command: Sequence[str] | str | None = None,
        script: str | None = None,
        name: str | None = None,
        inputs: Mapping[Any, Any] | Sequence[Any] | None = None,
        par: int = 1,
        config: Mapping[str, Any] | None = None,
        outputs: Sequence[str | Stream] | None = None,
        serializer: str = "json",
        cwd: str | None = None,
        args: Sequence[str] = (),
    ) -> ComponentSpec:
        """Declare a multi-lang bolt: ``command + [script] + args`` runs in each task.

        A relative ``script`` (or ``cwd``) is relative to the directory of the
        file that calls spec(). ``serializer`` is ``"json"`` (Storm's default)
        or ``"msgpack"`` (pystorm's MsgpackSerializer).
        """
        cfg = _spec_config(cls, command, script, args, serializer, cwd, config, _caller_module())
        user_tick = cfg.get("topology.tick.tuple.freq.secs")
        if user_tick:
            cfg[KEY_TICK] = float(user_tick)
        # The runtime's tick timer is the hook that lets the bolt read its child's
        # output while no tuples arrive; real ticks are forwarded at KEY_TICK.
        cfg["topology.tick.tuple.freq.secs"] = min(float(user_tick or POLL_SECS), POLL_SECS)
        return super().spec(name=name, inputs=inputs, par=par, config=cfg, outputs=outputs)

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.conf = conf
        self.context = context
        self.child = None
        self.metrics = {}
        self.restarts = 0
        self.pending: dict[str, Tuple] = {}
        self._ids = itertools.count(1)
        self.max_pending = int(conf.get(KEY_MAX_PENDING) or 1000)
        self.hb_secs = float(conf.get(KEY_HEARTBEAT) or 1.0)
        self.timeout = float(conf.get(KEY_TIMEOUT) or 30.0)
        tick = conf.get(KEY_TICK)
        self.tick_secs: float | None = float(tick) if tick else None
        now = time.monotonic()
        self.next_tick = now + self.tick_secs if self.tick_secs else float("inf")
        self.next_hb = now + self.hb_secs
        self.last_answer = now
        self.restart_at = 0.0
        self.backoff = 0.0
        self._start_child()

    # -- input -------------------------------------------------------------
    def execute(self, tup: Tuple) -> None:
        self._drain()
        child = self.child
        if child is None:
            self.fail(tup)  # the child is down and waiting for its restart
            return
        tid = str(next(self._ids))
        self.pending[tid] = tup
        meta = tup.meta
        child.send({"id": tid, "comp": meta.component, "stream": meta.stream,
                    "task": tup.source_task, "tuple": list(tup.values)})
        if len(self.pending) >= self.max_pending:
            self._wait_below_limit()

    def process_tick(self, tup: Tuple) -> None:
        now = time.monotonic()
        self._drain()
        if self.child is None:
            if now >= self.restart_at:
                self._restart("restart")
            return
        if now >= self.next_tick and self.tick_secs:
            self.next_tick = now + self.tick_secs
            self.child.send({"id": f"tick-{next(self._ids)}", "comp": "__system",
                             "stream": "__tick", "task": -1, "tuple": [self.tick_secs]})
        if now >= self.next_hb:
            self.next_hb = now + self.hb_secs
            self.child.send({"id": f"hb-{next(self._ids)}", "comp": None, "stream": "__heartbeat",
                             "task": -1, "tuple": []})
        if now - self.last_answer > self.timeout:
            self._child_failed(f"no heartbeat answer for {self.timeout:g}s")

    def _wait_below_limit(self) -> None:
        # The child holds max_pending tuples: wait for it (bounded by the
        # timeout) rather than buffer without limit.
        deadline = time.monotonic() + self.timeout
        while self.child is not None and len(self.pending) >= self.max_pending:
            left = deadline - time.monotonic()
            if left <= 0:
                self._child_failed(f"{len(self.pending)} tuples un-acked for {self.timeout:g}s")
                return
            try:
                msg = self.child.messages.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            self._handle(msg)
            self._drain()

    # -- output ------------------------------------------------------------
    def _drain(self) -> None:
        child = self.child
        if child is None:
            return
        get = child.messages.get_nowait
        while self.child is child:
            try:
                msg = get()
            except queue.Empty:
                return
            self._handle(msg)

    def _handle(self, msg: Any) -> None:
        child = self.child
        if child is None:
            return
        if isinstance(msg, _Gone):
            self._child_failed(msg.reason)
            return
        if not isinstance(msg, dict):
            self._protocol_error(msg)
            return
        self.last_answer = time.monotonic()
        cmd = msg.get("command")
        if cmd == "emit":
            self._emit(msg, child)
        elif cmd == "ack":
            tup = self.pending.pop(str(msg.get("id")), None)
            if tup is not None:
                self.ack(tup)
        elif cmd == "fail":
            tup = self.pending.pop(str(msg.get("id")), None)
            if tup is not None:
                self.fail(tup)
        elif cmd == "sync":
            pass  # a heartbeat answer: last_answer is set above
        elif not self._common_command(msg, cmd):
            self._protocol_error(msg)

    def _emit(self, msg: dict[str, Any], child: ShellProcess) -> None:
        need_ids = msg.get("need_task_ids", True) is not False
        values = msg.get("tuple")
        stream = msg.get("stream") or DEFAULT_STREAM
        anchor_ids = msg.get("anchors") or []
        anchors = [self.pending[str(a)] for a in anchor_ids if str(a) in self.pending]
        task = msg.get("task")
        tasks: Sequence[int] = []
        try:
            if not isinstance(values, list):
                raise ShellError(f"emit without a 'tuple' list: {msg!r:.200}")
            tasks = self.emit(values, stream=stream, anchors=anchors or None,
                              direct_task=int(task) if task is not None else None)
        except Exception as exc:
            self.report_error(exc)
            tasks = []
        if need_ids:
            child.send(list(tasks))

    # -- failure and restart -------------------------------------------------
    def _child_failed(self, reason: str) -> None:
        child, self.child = self.child, None
        pending, self.pending = self.pending, {}
        self.report_error(ShellError(
            f"multi-lang child of '{self.context.component_id}' task {self.context.task_id} "
            f"failed: {reason}; failing its {len(pending)} pending tuple(s) and restarting it"))
        for tup in pending.values():
            self.fail(tup)
        if child is not None:
            child.kill()
        self.backoff = min(max(self.backoff * 2, 0.5), 10.0) if self.restarts else 0.0
        self.restart_at = time.monotonic() + self.backoff
        if not self.backoff:
            self._restart("restart")

    def _restart(self, why: str) -> None:
        try:
            self._start_child()
        except ShellError as exc:
            self.report_error(exc)
            self.backoff = min(max(self.backoff * 2, 0.5), 10.0)
            self.restart_at = time.monotonic() + self.backoff
            return
        self.restarts += 1
        now = time.monotonic()
        self.last_answer = now
        self.next_hb = now + self.hb_secs

    def cleanup(self) -> None:
        self._drain()
        self._stop_child()


class ShellSpout(_ShellCommon, Spout):
    """A spout whose ``next_tuple``, ``ack`` and ``fail`` run in a child process
    speaking Storm's multi-lang protocol. Declare it with :meth:`spec`."""

    @classmethod
    def spec(  # type: ignore[override]
        cls,
        command: Sequence[str] | str | None = None,
        script: str | None = None,
        name: str | None = None,
        inputs: Mapping[Any, Any] | Sequence[Any] | None = None,
        par: int = 1,
        config: Mapping[str, Any] | None = None,
        outputs: Sequence[str | Stream] | None = None,
        serializer: str = "json",
        cwd: str | None = None,
        args: Sequence[str] = (),
    ) -> ComponentSpec:
        """Declare a multi-lang spout: ``command + [script] + args`` runs in each task."""
        cfg = _spec_config(cls, command, script, args, serializer, cwd, config, _caller_module())
        return super().spec(name=name, inputs=inputs, par=par, config=cfg, outputs=outputs)

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.conf = conf
        self.context = context
        self.child = None
        self.metrics = {}
        self.restarts = 0
        self.timeout = float(conf.get(KEY_TIMEOUT) or 30.0)
        self.wait_secs = float(conf.get(KEY_SPOUT_WAIT) or 5.0) / 1000.0
        # Commands sent and not yet answered by a sync: (kind, time sent).
        self.awaiting: deque[tuple[str, float]] = deque()
        self.restart_at = 0.0
        self.backoff = 0.0
        self.active_wanted = False
        self._start_child()

    def _send_command(self, kind: str, **fields: Any) -> None:
        if self.child is None:
            return
        self.awaiting.append((kind, time.monotonic()))
        self.child.send({"command": kind, **fields})

    def next_tuple(self) -> None:
        if not self._ensure_child():
            return
        if not any(kind == "next" for kind, _ in self.awaiting):
            self._send_command("next")
        self._drain(self.wait_secs)

    def ack(self, msg_id: Any) -> None:
        if self._ensure_child():
            self._send_command("ack", id=msg_id)
            self._drain(0.0)

    def fail(self, msg_id: Any) -> None:
        if self._ensure_child():
            self._send_command("fail", id=msg_id)
            self._drain(0.0)

    def activate(self) -> None:
        self.active_wanted = True
        if self._ensure_child():
            self._send_command("activate")

    def deactivate(self) -> None:
        self.active_wanted = False
        if self._ensure_child():
            self._send_command("deactivate")
            self._drain(0.0)

    def close(self) -> None:
        self._stop_child()

    def _ensure_child(self) -> bool:
        if self.child is not None:
            if self.awaiting and time.monotonic() - self.awaiting[0][1] > self.timeout:
                self._child_failed(f"no sync for '{self.awaiting[0][0]}' within {self.timeout:g}s")
            return self.child is not None
        if time.monotonic() < self.restart_at:
            return False
        try:
            self._start_child()
        except ShellError as exc:
            self.report_error(exc)
            self.backoff = min(max(self.backoff * 2, 0.5), 10.0)
            self.restart_at = time.monotonic() + self.backoff
            return False
        self.restarts += 1
        if self.active_wanted:
            self._send_command("activate")
        return True

    def _drain(self, wait: float) -> None:
        """Handle the child's output; wait up to `wait` seconds for the sync of
        an outstanding ``next``."""
        child = self.child
        deadline = time.monotonic() + wait
        while self.child is child and child is not None:
            try:
                msg = child.messages.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not any(k == "next" for k, _ in self.awaiting):
                    return
                try:
                    msg = child.messages.get(timeout=left)
                except queue.Empty:
                    return
            self._handle(msg, child)

    def _handle(self, msg: Any, child: ShellProcess) -> None:
        if isinstance(msg, _Gone):
            self._child_failed(msg.reason)
            return
        if not isinstance(msg, dict):
            self._protocol_error(msg)
            return
        cmd = msg.get("command")
        if cmd == "sync":
            if self.awaiting:
                self.awaiting.popleft()
        elif cmd == "emit":
            need_ids = msg.get("need_task_ids", True) is not False
            values = msg.get("tuple")
            task = msg.get("task")
            tasks: Sequence[int] = []
            try:
                if not isinstance(values, list):
                    raise ShellError(f"emit without a 'tuple' list: {msg!r:.200}")
                tasks = self.emit(values, stream=msg.get("stream") or DEFAULT_STREAM,
                                  msg_id=msg.get("id"),
                                  direct_task=int(task) if task is not None else None)
            except Exception as exc:
                self.report_error(exc)
            if need_ids:
                child.send(list(tasks))
        elif not self._common_command(msg, cmd):
            self._protocol_error(msg)

    def _child_failed(self, reason: str) -> None:
        child, self.child = self.child, None
        self.awaiting.clear()
        self.report_error(ShellError(
            f"multi-lang child of '{self.context.component_id}' task {self.context.task_id} "
            f"failed: {reason}; restarting it (its pending tuples time out and are failed)"))
        if child is not None:
            child.kill()
        self.restart_at = time.monotonic() + self.backoff
        self.backoff = min(max(self.backoff * 2, 0.5), 10.0)
