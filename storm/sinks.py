"""Sink bolts that write tuples out of a topology: JSON lines to a file (with
rotation), lines to stdout (rich), and HTTP POSTs to a webhook (batched, with
retries and exponential backoff on a sender thread). A sink acks a tuple only
after its write succeeded and fails it when the write failed for good, so
at-least-once holds end to end. This module owns only these bolts; it does not
touch the runtime (acks and fails are made on the executor's thread).

What is written for a tuple is ``record(tup)``: the value of its ``alert`` or
``record`` field when it is a dict, else the tuple's fields as a dict.

Configuration keys (a user namespace, per component):

``sinks.file.path``
    File of a FileSink (``{task}`` in it becomes the task id). Default: class attribute ``path``.
``sinks.file.max.bytes`` / ``sinks.file.backups``
    Rotate at this size (0: never) and keep this many old files (path.1, path.2, ...).
``sinks.webhook.url``
    URL a WebhookSink POSTs JSON arrays of records to.
``sinks.webhook.batch.size`` / ``sinks.webhook.linger.secs``
    Records per POST, and the longest a partly filled batch waits.
``sinks.webhook.retries`` / ``sinks.webhook.backoff.secs`` / ``sinks.webhook.backoff.max.secs``
    Attempts after the first, the first delay (doubling) and its cap.
``sinks.webhook.timeout.secs``
    Timeout of one HTTP request.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

from ._component import Bolt, ComponentSpec
from ._context import TopologyContext
from ._tuple import Tuple

__all__ = ["FileSink", "RedisSink", "StdoutSink", "WebhookSink", "record_of"]


def record_of(tup: Tuple) -> Any:
    """The JSON-able record a sink writes for ``tup``."""
    for name in ("alert", "record"):
        value = tup.get(name)
        if isinstance(value, Mapping):
            return value
    return tup.as_dict()


def _json_line(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True, default=str) + "\n"


class FileSink(Bolt):
    """Appends one JSON line per tuple to a file, flushed before the ack;
    rotates it by size like a log file."""

    path: ClassVar[str | None] = None
    max_bytes: ClassVar[int] = 10 * 1024 * 1024
    backups: ClassVar[int] = 5

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        raw = conf.get("sinks.file.path") or type(self).path
        if not raw:
            raise ValueError(
                f"file sink '{context.component_id}' has no file: set sinks.file.path in its config"
            )
        self.task = context.task_id
        self.file_path = Path(str(raw).replace("{task}", str(context.task_id)))
        self.file_path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes_ = int(conf.get("sinks.file.max.bytes", type(self).max_bytes))
        self.backups_ = int(conf.get("sinks.file.backups", type(self).backups))
        self.fsync = bool(conf.get("sinks.file.fsync", False))
        self.written = 0
        self._file: IO[str] | None = None
        self._size = 0

    def record(self, tup: Tuple) -> Any:
        return record_of(tup)

    def _open(self) -> IO[str]:
        if self._file is None:
            self._file = open(self.file_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups_ <= 0:
            self.file_path.unlink(missing_ok=True)
            return
        for i in range(self.backups_ - 1, 0, -1):
            src = self.file_path.with_name(f"{self.file_path.name}.{i}")
            if src.exists():
                os.replace(src, self.file_path.with_name(f"{self.file_path.name}.{i + 1}"))
        if self.file_path.exists():
            os.replace(self.file_path, self.file_path.with_name(f"{self.file_path.name}.1"))

    def execute(self, tup: Tuple) -> None:
        if tup.is_tick:
            return
        line = _json_line(self.record(tup))
        try:
            if self.max_bytes_ and self._size and self._size + len(line) > self.max_bytes_:
                self._rotate()
            f = self._open()
            f.write(line)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
            self._size += len(line.encode())
        except OSError as exc:
            self.report_error(exc)
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass
                self._file = None
            self.fail(tup)
            return
        self.written += 1
        self.ack(tup)

    def cleanup(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StdoutSink(Bolt):
    """Prints one line per tuple (coloured by ``state`` on a terminal). In a
    worker process stdout goes to the worker's log; in storm.testing, to stdout."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        from rich.console import Console

        self.console = Console(file=sys.stdout, highlight=False, soft_wrap=True)

    def execute(self, tup: Tuple) -> None:
        if tup.is_tick:
            return
        rec = record_of(tup)
        state = rec.get("state") if isinstance(rec, Mapping) else None
        text = rec.get("message") if isinstance(rec, Mapping) and rec.get("message") else json.dumps(
            rec, default=str, sort_keys=True)
        style = {"firing": "bold red", "resolved": "green"}.get(str(state), "")
        label = f"[{state.upper()}] " if isinstance(state, str) else ""
        self.console.print(f"{label}{text}", style=style or None, markup=False)
        self.ack(tup)


class _Batch:
    __slots__ = ("tuples", "records", "attempts")

    def __init__(self, tuples: list[Tuple], records: list[Any]) -> None:
        self.tuples = tuples
        self.records = records
        self.attempts = 0


class WebhookSink(Bolt):
    """POSTs batches of records (a JSON array) to ``sinks.webhook.url``.

    HTTP runs on a sender thread so a slow or failing endpoint never blocks the
    worker's loop; acks and fails are applied on the executor's thread (on the
    next tuple or tick). A batch is retried on a connection error, a timeout, a
    5xx or a 429, with exponential backoff; after the last retry (or on another
    4xx) its tuples are failed, so the spout replays them. Needs tick tuples:
    ``spec()`` sets ``topology.tick.tuple.freq.secs`` to 0.1 unless given.
    """

    url: ClassVar[str | None] = None

    @classmethod
    def spec(cls, name: str | None = None, inputs: Any = None, par: int = 1,
             config: Mapping[str, Any] | None = None, outputs: Any = None) -> ComponentSpec:
        conf = dict(config or {})
        conf.setdefault("topology.tick.tuple.freq.secs", 0.1)
        return super().spec(name=name, inputs=inputs, par=par, config=conf, outputs=outputs)

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        url = conf.get("sinks.webhook.url") or type(self).url
        if not url:
            raise ValueError(
                f"webhook sink '{context.component_id}' has no URL: set sinks.webhook.url in its config"
            )
        self.endpoint = str(url)
        self.batch_size = max(1, int(conf.get("sinks.webhook.batch.size", 50)))
        self.linger = float(conf.get("sinks.webhook.linger.secs", 0.2))
        self.retries = max(0, int(conf.get("sinks.webhook.retries", 5)))
        self.backoff = float(conf.get("sinks.webhook.backoff.secs", 0.1))
        self.backoff_max = float(conf.get("sinks.webhook.backoff.max.secs", 5.0))
        self.timeout = float(conf.get("sinks.webhook.timeout.secs", 5.0))
        self.sent = 0
        self.attempts = 0
        self.failed_batches = 0
        self._pending: list[Tuple] = []
        self._records: list[Any] = []
        self._first_at = 0.0
        self._outbox: queue.Queue[_Batch | None] = queue.Queue()
        self._done: deque[tuple[_Batch, bool, str]] = deque()
        self._stop = threading.Event()
        self._in_flight = 0
        self._thread = threading.Thread(target=self._sender, name=f"webhook-{context.task_id}", daemon=True)
        self._thread.start()

    def record(self, tup: Tuple) -> Any:
        return record_of(tup)

    def execute(self, tup: Tuple) -> None:
        if not tup.is_tick:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append(tup)
            self._records.append(self.record(tup))
            if len(self._pending) >= self.batch_size:
                self._flush()
        elif self._pending and time.monotonic() - self._first_at >= self.linger:
            self._flush()
        self._settle()

    def _flush(self) -> None:
        batch = _Batch(self._pending, self._records)
        self._pending, self._records = [], []
        self._in_flight += 1
        self._outbox.put(batch)

    def _settle(self) -> None:
        done = self._done
        while done:
            batch, ok, error = done.popleft()
            self._in_flight -= 1
            if ok:
                self.sent += len(batch.tuples)
                for t in batch.tuples:
                    self.ack(t)
            else:
                self.failed_batches += 1
                self.report_error(RuntimeError(
                    f"webhook {self.endpoint}: batch of {len(batch.tuples)} failed after "
                    f"{batch.attempts} attempts: {error}; failing its tuples"))
                for t in batch.tuples:
                    self.fail(t)

    # -- sender thread -------------------------------------------------------------
    def _post(self, body: bytes) -> tuple[bool, bool, str]:
        """One attempt: (ok, retryable, error)."""
        req = urllib.request.Request(self.endpoint, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
                return True, False, ""
        except urllib.error.HTTPError as exc:
            retry = exc.code >= 500 or exc.code == 429
            return False, retry, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return False, True, str(getattr(exc, "reason", exc))

    def _sender(self) -> None:
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            body = json.dumps(batch.records, default=str).encode()
            delay = self.backoff
            ok, error = False, ""
            while True:
                batch.attempts += 1
                self.attempts += 1
                ok, retry, error = self._post(body)
                if ok or not retry or batch.attempts > self.retries or self._stop.is_set():
                    break
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.backoff_max)
            self._done.append((batch, ok, error))

    def cleanup(self) -> None:
        if self._pending:
            self._flush()
        deadline = time.monotonic() + self.timeout
        while self._in_flight and time.monotonic() < deadline:
            self._settle()
            time.sleep(0.01)  # waiting on the sender thread at shutdown, bounded by the deadline
        self._settle()
        self._stop.set()
        self._outbox.put(None)
        self._thread.join(timeout=1.0)


class RedisSink(Bolt):
    """Writes each record as JSON to a Redis stream (XADD, field ``record``,
    ``sinks.redis.stream``, capped with ``sinks.redis.maxlen``) or publishes it on
    a channel (``sinks.redis.channel``); acks after Redis answered, fails the
    tuple on an error. ``sinks.redis.url`` defaults to redis://127.0.0.1:6379/0.
    Needs the ``redis`` package."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        import redis

        self.stream = conf.get("sinks.redis.stream")
        self.channel = conf.get("sinks.redis.channel")
        if not self.stream and not self.channel:
            raise ValueError(
                f"redis sink '{context.component_id}': set sinks.redis.stream or sinks.redis.channel"
            )
        maxlen = conf.get("sinks.redis.maxlen")
        self.maxlen = int(maxlen) if maxlen else None
        self.client: Any = redis.Redis.from_url(str(conf.get("sinks.redis.url", "redis://127.0.0.1:6379/0")))
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.written = 0

    def execute(self, tup: Tuple) -> None:
        if tup.is_tick:
            return
        data = json.dumps(record_of(tup), default=str, sort_keys=True)
        try:
            if self.stream:
                self.client.xadd(str(self.stream), {"record": data}, maxlen=self.maxlen, approximate=True)
            if self.channel:
                self.client.publish(str(self.channel), data)
        except self._errors as exc:
            self.report_error(exc)
            self.fail(tup)
            return
        self.written += 1
        self.ack(tup)

    def cleanup(self) -> None:
        self.client.close()
