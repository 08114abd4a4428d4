"""Spouts that bring events into a topology from outside: a file tail that
follows appends and rotation and remembers its committed offset, an HTTP ingest
endpoint (POST JSON lines to a local port), a ZeroMQ PULL/SUB socket, and stdin.
All are ReliableSpouts: a failed or timed-out message is re-emitted. This module
owns only these spouts; acking and timeouts are the runtime's.

Configuration keys (a user namespace, per component):

``sources.tail.path``            the file a TailSpout follows
``sources.tail.checkpoint.dir``  where it keeps its committed (inode, offset)
``sources.tail.json``            parse each line as JSON (values: ``[event]``)
``sources.tail.from.end``        with no checkpoint, start at the end of the file (default: start)
``sources.http.host`` / ``sources.http.port``  where an HttpSpout listens (127.0.0.1, 0 = any free port)
``sources.http.port.file``       a file the HttpSpout writes its port to (for tests and scripts)
``sources.http.queue.size``      events buffered before POSTs get 503 (default 10000)
``sources.zmq.endpoint``         a ZmqSpout's endpoint; ``sources.zmq.bind`` binds instead of connecting;
                                 ``sources.zmq.kind`` is ``pull`` (default) or ``sub``
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Hashable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, ClassVar

from ._context import TopologyContext
from ._errors import ConfigError
from .spouts import Message, ReliableSpout

__all__ = ["HttpSpout", "RedisStreamSpout", "StdinSpout", "TailSpout", "ZmqSpout"]


def _decode(line: str, as_json: bool, where: str) -> list[Any] | None:
    if not as_json:
        return [line]
    text = line.strip()
    if not text:
        return None
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [{"raw": line, "error": f"not JSON ({where})"}]


class TailSpout(ReliableSpout):
    """Follows a file like ``tail -F``: emits each complete line appended to it,
    keeps reading the old file to its end when it is rotated (renamed and
    recreated) and then continues with the new one, and starts again at 0 when
    it is truncated. The committed position (inode and byte offset after the
    last line that is acked together with every line before it) is saved in
    ``sources.tail.checkpoint.dir``, so a restarted task resumes there: lines
    not yet acked are read again (at-least-once). Values: ``[line]`` without
    its newline, or ``[event]`` with ``sources.tail.json``. One task per file.
    """

    outputs: ClassVar[Any] = ["line"]
    path: ClassVar[str | None] = None
    #: Lines read per next_tuple call at most.
    batch: ClassVar[int] = 100

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().open(conf, context)
        raw = conf.get("sources.tail.path") or type(self).path
        if not raw:
            raise ConfigError(f"tail spout '{context.component_id}': set sources.tail.path to the file to follow")
        self.file_path = Path(str(raw))
        self.as_json = bool(conf.get("sources.tail.json", False))
        ckdir = conf.get("sources.tail.checkpoint.dir")
        self._ckpt = (Path(str(ckdir)) / f"{context.component_id}-{context.task_id}.offset"
                      if ckdir else None)
        self._file: IO[bytes] | None = None
        self._inode = 0
        self._pos = 0
        self._partial = b""
        self._seq = 0
        self._ready: deque[Message] = deque()
        # (msg id, inode, end offset) in read order; committed when acked in order
        self._order: deque[tuple[int, int, int]] = deque()
        self._done: set[int] = set()
        self.committed: tuple[int, int] | None = None
        self.rotations = 0
        self._resume(bool(conf.get("sources.tail.from.end", False)))

    # -- position ------------------------------------------------------------------
    def _resume(self, from_end: bool) -> None:
        saved: tuple[int, int] | None = None
        if self._ckpt is not None and self._ckpt.exists():
            try:
                ino, off = json.loads(self._ckpt.read_text())
                saved = (int(ino), int(off))
            except (ValueError, TypeError, OSError):
                saved = None
        if saved is not None:
            # The file we were reading may have been rotated while we were down.
            for candidate in (self.file_path, self.file_path.with_name(self.file_path.name + ".1")):
                try:
                    if candidate.stat().st_ino == saved[0]:
                        self._open(candidate, saved[1])
                        self.committed = saved
                        return
                except OSError:
                    continue
        if self.file_path.exists():
            self._open(self.file_path, self.file_path.stat().st_size if from_end and saved is None else 0)

    def _open(self, path: Path, offset: int) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(path, "rb")  # noqa: SIM115 - kept open while following
        st = os.fstat(self._file.fileno())
        self._inode = st.st_ino
        self._pos = min(offset, st.st_size)
        self._file.seek(self._pos)
        self._partial = b""

    def _save(self) -> None:
        if self._ckpt is None or self.committed is None:
            return
        self._ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self.committed)))
        os.replace(tmp, self._ckpt)

    # -- reading ---------------------------------------------------------------------
    def parse_line(self, line: str) -> list[Any] | None:
        """Values for one line (None: skip it)."""
        return _decode(line, self.as_json, str(self.file_path))

    def _read(self) -> None:
        if self._file is None:
            if not self.file_path.exists():
                return
            self._open(self.file_path, 0)
        assert self._file is not None
        chunk = self._file.read(1 << 16)
        if chunk:
            self._split(chunk)
            return
        # At the end of our file: was it rotated or truncated?
        try:
            st = self.file_path.stat()
        except OSError:
            return  # rotated away, new file not there yet
        if st.st_ino != self._inode:
            self.rotations += 1
            self._open(self.file_path, 0)
        elif st.st_size < self._pos:
            self._open(self.file_path, 0)

    def _split(self, chunk: bytes) -> None:
        data = self._partial + chunk
        start = 0
        base = self._pos - len(self._partial)
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            line = data[start:nl].decode("utf-8", errors="replace")
            start = nl + 1
            values = self.parse_line(line.rstrip("\r"))
            self._seq += 1
            end = base + start
            self._order.append((self._seq, self._inode, end))
            if values is None:
                self._done.add(self._seq)
            else:
                self._ready.append(Message(self._seq, values))
        self._partial = data[start:]
        self._pos += len(chunk)
        self._commit()

    def next_message(self) -> Message | tuple[Hashable, Sequence[Any]] | None:
        if not self._ready:
            self._read()
        return self._ready.popleft() if self._ready else None

    # -- committing ------------------------------------------------------------------
    def _commit(self) -> None:
        order, done = self._order, self._done
        moved = False
        while order and order[0][0] in done:
            msg_id, ino, end = order.popleft()
            done.discard(msg_id)
            self.committed = (ino, end)
            moved = True
        if moved:
            self._save()

    def on_acked(self, msg_id: Hashable, message: Message) -> None:
        assert isinstance(msg_id, int)
        self._done.add(msg_id)
        self._commit()

    def on_dead_letter(self, msg_id: Hashable, values: list[Any], attempts: int) -> None:
        super().on_dead_letter(msg_id, values, attempts)
        assert isinstance(msg_id, int)
        self._done.add(msg_id)
        self._commit()

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()
            self._file = None


class _QueueSpout(ReliableSpout):
    """A ReliableSpout fed by a thread through a bounded queue."""

    outputs: ClassVar[Any] = ["event"]

    def _start_queue(self, size: int) -> None:
        self.queue: queue.Queue[list[Any]] = queue.Queue(maxsize=size)
        self._seq = 0

    def next_message(self) -> Message | tuple[Hashable, Sequence[Any]] | None:
        try:
            values = self.queue.get_nowait()
        except queue.Empty:
            return None
        self._seq += 1
        return self._seq, values


class HttpSpout(_QueueSpout):
    """Accepts ``POST`` requests on 127.0.0.1 (``sources.http.port``; 0 picks a
    free port, written to ``sources.http.port.file``) whose body is JSON lines
    (one object per line) or one JSON array; emits ``[event]`` per object and
    answers 202 with ``{"accepted": n}``. When its buffer is full it answers 503
    so the sender retries later: nothing is dropped silently. A body that is not
    JSON gets 400 and nothing of it is accepted."""

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().open(conf, context)
        self._start_queue(int(conf.get("sources.http.queue.size", 10000)))
        host = str(conf.get("sources.http.host", "127.0.0.1"))
        port = int(conf.get("sources.http.port", 0))
        spout = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                try:
                    events = spout.parse_body(body)
                except ValueError as exc:
                    self._answer(400, {"error": str(exc)})
                    return
                q = spout.queue
                if q.maxsize - q.qsize() < len(events):
                    self._answer(503, {"error": "ingest buffer full; retry later"})
                    return
                for ev in events:
                    q.put_nowait([ev])
                self._answer(202, {"accepted": len(events)})

            def _answer(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-ingest", daemon=True)
        self._thread.start()
        port_file = conf.get("sources.http.port.file")
        if port_file:
            tmp = Path(str(port_file) + ".tmp")
            tmp.write_text(str(self.port))
            os.replace(tmp, str(port_file))

    @staticmethod
    def parse_body(body: bytes) -> list[Any]:
        text = body.decode("utf-8", errors="replace").strip()
        if not text:
            return []
        if text.startswith("["):
            doc = json.loads(text)
            if not isinstance(doc, list):
                raise ValueError("body must be JSON lines or a JSON array")
            return doc
        events = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {i + 1} is not JSON: {exc}") from None
        return events

    def close(self) -> None:
        super().close()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class ZmqSpout(_QueueSpout):
    """Receives messages on a ZeroMQ PULL (or SUB, all topics) socket at
    ``sources.zmq.endpoint``; each message is JSON (``[event]``) or, if it is not,
    ``[text]``. Connects by default, binds with ``sources.zmq.bind``."""

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        import zmq

        super().open(conf, context)
        self._seq = 0
        endpoint = conf.get("sources.zmq.endpoint")
        if not endpoint:
            raise ConfigError(f"zmq spout '{context.component_id}': set sources.zmq.endpoint")
        kind = str(conf.get("sources.zmq.kind", "pull")).lower()
        if kind not in ("pull", "sub"):
            raise ConfigError(f"zmq spout '{context.component_id}': sources.zmq.kind must be pull or sub")
        self._zctx: Any = zmq.Context.instance()
        self.sock = self._zctx.socket(zmq.PULL if kind == "pull" else zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        if kind == "sub":
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        if conf.get("sources.zmq.bind"):
            self.sock.bind(str(endpoint))
        else:
            self.sock.connect(str(endpoint))
        self._zmq_again = zmq.Again

    def next_message(self) -> Message | tuple[Hashable, Sequence[Any]] | None:
        import zmq

        try:
            raw = self.sock.recv(zmq.NOBLOCK)
        except self._zmq_again:
            return None
        self._seq += 1
        try:
            return self._seq, [json.loads(raw)]
        except ValueError:
            return self._seq, [raw.decode("utf-8", errors="replace")]

    def close(self) -> None:
        super().close()
        self.sock.close()


class StdinSpout(_QueueSpout):
    """Emits each line of standard input (``[line]``, or ``[event]`` with
    ``sources.tail.json``), read on a thread. Useful in one process (storm.testing,
    a script); worker processes started by `storm local` have no stdin."""

    outputs: ClassVar[Any] = ["line"]
    stream: ClassVar[Any] = None

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().open(conf, context)
        self._start_queue(10000)
        self.as_json = bool(conf.get("sources.tail.json", False))
        src = type(self).stream or sys.stdin
        self.exhausted = False

        def pump() -> None:
            for line in src:
                values = _decode(line.rstrip("\n"), self.as_json, "stdin")
                if values is not None:
                    self.queue.put(values)
            self.exhausted = True

        self._thread = threading.Thread(target=pump, name="stdin", daemon=True)
        self._thread.start()

    def source_exhausted(self) -> bool:
        return self.exhausted and self.queue.empty()


class RedisStreamSpout(ReliableSpout):
    """Reads a Redis stream as a member of a consumer group and XACKs an entry
    when its tuple tree completes; a failed tree is re-emitted. At start it
    first re-emits the entries this consumer read but never acked (a previous
    run that died), so nothing acknowledged to Redis is lost and nothing read is
    forgotten. Values: ``[event]``, the JSON in the entry's field
    ``sources.redis.field`` (default ``event``), else the entry's fields as a dict.

    Keys: ``sources.redis.url`` (default redis://127.0.0.1:6379/0),
    ``sources.redis.stream``, ``sources.redis.group`` (default ``storm``),
    ``sources.redis.consumer`` (default ``<topology>-<component>-<task>``: stable
    across restarts), ``sources.redis.field``, ``sources.redis.batch`` (entries
    per read, default 100). Needs the ``redis`` package.
    """

    outputs: ClassVar[Any] = ["event"]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        import redis

        super().open(conf, context)
        stream = conf.get("sources.redis.stream")
        if not stream:
            raise ConfigError(f"redis spout '{context.component_id}': set sources.redis.stream")
        self.stream = str(stream)
        self.group = str(conf.get("sources.redis.group", "storm"))
        self.consumer = str(conf.get("sources.redis.consumer")
                            or f"{context.topology_name}-{context.component_id}-{context.task_id}")
        self.field = str(conf.get("sources.redis.field", "event"))
        self.batch_size = int(conf.get("sources.redis.batch", 100))
        # Typed loosely: redis-py's stubs describe every reply as a union.
        self.client: Any = redis.Redis.from_url(
            str(conf.get("sources.redis.url", "redis://127.0.0.1:6379/0")), decode_responses=True)
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._buffer: deque[tuple[str, dict[str, str]]] = deque()
        self._backlog = True  # first our own pending entries (id 0), then new ones (>)
        self.xacked = 0

    def _fill(self) -> None:
        start = "0" if self._backlog else ">"
        got = self.client.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self.batch_size)
        entries = got[0][1] if got else []
        if self._backlog:
            entries = [(i, f) for i, f in entries if f]  # deleted entries come back empty
            if len(entries) < self.batch_size:
                self._backlog = False
            # Entries still in flight from this run are pending too: skip them.
            entries = [(i, f) for i, f in entries if i not in self._messages]
        self._buffer.extend(entries)

    def next_message(self) -> Message | tuple[Hashable, Sequence[Any]] | None:
        if not self._buffer:
            self._fill()
            if not self._buffer:
                return None
        entry_id, fields = self._buffer.popleft()
        raw = fields.get(self.field)
        if raw is not None:
            try:
                event: Any = json.loads(raw)
            except json.JSONDecodeError:
                event = raw
        else:
            event = dict(fields)
        return entry_id, [event]

    def on_acked(self, msg_id: Hashable, message: Message) -> None:
        self.client.xack(self.stream, self.group, str(msg_id))
        self.xacked += 1

    def close(self) -> None:
        super().close()
        self.client.close()
