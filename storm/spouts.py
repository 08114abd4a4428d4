"""Reliable spouts we ship: a base that remembers every message it emitted until
the message's tuple tree is acked and re-emits it when the tree fails or times
out (at-least-once), with a replay limit and a dead-letter hook; and two finite
spouts built on it, over a list of value lists and over the lines of a file, for
tests and examples. This module owns only spout-side bookkeeping: tuple trees,
acker choice and timeouts are the runtime's (storm/_runtime.py, storm/_acking.py).

Configuration keys (a user namespace, read per component; all optional):

``spouts.max.replays``
    Re-emits allowed per message after its first emit (``None``: unlimited).
    Overrides the class attribute ``max_replays``.
``spouts.summary.dir``
    A directory where each task writes ``<component>-<task>.json``: its counters
    and ``"finished": true`` once a finite source is exhausted and every message
    is settled (acked or dead-lettered). Written about once a second while the
    spout runs, when it finishes and when it closes.
``spouts.list.items``
    The value lists of a ListSpout (overrides the class attribute ``items``).
``spouts.file.path``
    The file a FileSpout reads (overrides the class attribute ``path``).
``spouts.file.checkpoint.dir``
    Where a FileSpout keeps its committed offset, so that a restarted task
    resumes after the last line it fully processed instead of from the start.

Example::

    >>> from storm import Bolt, Topology
    >>> from storm.spouts import ListSpout
    >>> from storm.testing import run_topology
    >>> class Words(ListSpout):
    ...     outputs = ["word"]
    ...     items = [["a"], ["b"], ["c"]]
    >>> class FailOnce(Bolt):
    ...     def prepare(self, conf, context):
    ...         self.seen = set()
    ...     def execute(self, tup):
    ...         first = tup[0] not in self.seen
    ...         self.seen.add(tup[0])
    ...         (self.fail if first and tup[0] == "b" else self.ack)(tup)
    >>> class T(Topology):
    ...     words = Words.spec()
    ...     check = FailOnce.spec(inputs=[words])
    >>> result = run_topology(T)
    >>> sorted(result.acked("words")), result.failed("words")
    ([0, 1, 2], [1])
    >>> spout = result.instances("words")[0]
    >>> spout.replays, spout.finished
    (1, True)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from ._component import Spout
from ._context import TopologyContext
from ._errors import ConfigError, StormError
from ._tuple import DEFAULT_STREAM

__all__ = [
    "CHECKPOINT_DIR_KEY",
    "FILE_PATH_KEY",
    "LIST_ITEMS_KEY",
    "MAX_REPLAYS_KEY",
    "SUMMARY_DIR_KEY",
    "FileSpout",
    "ListSpout",
    "Message",
    "ReliableSpout",
]

MAX_REPLAYS_KEY = "spouts.max.replays"
SUMMARY_DIR_KEY = "spouts.summary.dir"
LIST_ITEMS_KEY = "spouts.list.items"
FILE_PATH_KEY = "spouts.file.path"
CHECKPOINT_DIR_KEY = "spouts.file.checkpoint.dir"

SUMMARY_INTERVAL_SECS = 1.0
CHECKPOINT_INTERVAL_SECS = 0.2

log = logging.getLogger("storm.spouts")


@dataclass(slots=True)
class Message:
    """One message of a ReliableSpout: its id, its values, the stream it goes out
    on and how many times it has been emitted so far.

    ``next_message`` may return one (to emit on another stream than the default)
    or simply ``(msg_id, values)``."""

    msg_id: Hashable
    values: list[Any]
    stream: str = DEFAULT_STREAM
    attempts: int = 0


class ReliableSpout(Spout):
    """A spout that remembers each message until its tuple tree is acked and
    re-emits it (same msg id, same values) when the tree fails or times out.

    Subclasses implement ``next_message()``, returning ``(msg_id, values)``, a
    ``Message``, or ``None`` when nothing is available now; the base emits it
    with its msg id and does the bookkeeping. Message ids must be hashable and
    unique among the messages still pending. Failed messages are re-emitted
    before any new message is asked for. A finite source also overrides
    ``source_exhausted()``; ``finished`` becomes true once it is exhausted and
    every message is settled.

    After ``max_replays`` re-emits (class attribute, or the config key
    ``spouts.max.replays``; ``None`` = unlimited) a message that fails again is
    dropped and ``on_dead_letter(msg_id, values, attempts)`` is called (by
    default it logs a warning).

    Memory: a message is remembered while in flight or waiting for its replay.
    The runtime does not call ``next_tuple`` while ``topology.max.spout.pending``
    trees are pending, and a new message is only taken when no replay is waiting,
    so at most max.spout.pending messages are remembered per task. Without that
    setting (and with acking on) the number in flight is not bounded.

    Counters (plain attributes, also in the summary file): ``emitted`` (first
    emits), ``replays``, ``acked``, ``failed`` (fail calls, timeouts included),
    ``dead_letters``, ``peak_pending``.

    Example::

        class Numbers(ReliableSpout):
            outputs = ["n"]
            max_replays = 3

            def open(self, conf, context):
                super().open(conf, context)   # needed when overriding open
                self.n = 0

            def next_message(self):
                self.n += 1
                return self.n, [self.n]

            def on_dead_letter(self, msg_id, values, attempts):
                self.log(f"gave up on {msg_id} after {attempts} attempts", "error")
    """

    #: Re-emits allowed per message after the first (None: unlimited).
    max_replays: ClassVar[int | None] = None

    def __init__(self) -> None:
        self._messages: dict[Hashable, Message] = {}
        self._replay: deque[Hashable] = deque()
        self.emitted = 0
        self.replays = 0
        self.acked = 0
        self.failed = 0
        self.dead_letters = 0
        self.unknown_results = 0
        self.peak_pending = 0
        self._finished = False
        self._max_replays: int | None = type(self).max_replays
        self._summary_path: str | None = None
        self._next_summary = 0.0
        self._component = type(self).__name__
        self._task = 0

    # -- to override -------------------------------------------------------
    def next_message(self) -> Message | tuple[Hashable, Sequence[Any]] | None:
        """The next new message, as ``(msg_id, values)`` or a ``Message``; None if
        there is none right now."""
        return None

    def source_exhausted(self) -> bool:
        """True once ``next_message`` will never return a message again."""
        return False

    def on_acked(self, msg_id: Hashable, message: Message) -> None:
        """Called when a message's tuple tree completed."""

    def on_dead_letter(self, msg_id: Hashable, values: list[Any], attempts: int) -> None:
        """Called when a message failed after ``max_replays`` re-emits; it is
        forgotten afterwards. The default logs a warning."""
        self._logger.warning("spout '%s' task %d: message %r failed %d times, dropped (dead letter): %r",
                             self._component, self._task, msg_id, attempts, values)

    def on_finished(self) -> None:
        """Called once when the source is exhausted and every message is settled."""

    def summary(self) -> dict[str, Any]:
        """The counters written to the summary file; extend it in subclasses."""
        return {
            "component": self._component,
            "task": self._task,
            "pid": os.getpid(),
            "emitted": self.emitted,
            "replays": self.replays,
            "acked": self.acked,
            "failed": self.failed,
            "dead_letters": self.dead_letters,
            "unknown_results": self.unknown_results,
            "pending": self.pending,
            "peak_pending": self.peak_pending,
            "finished": self._finished,
        }

    # -- state -------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Messages remembered: in flight or waiting to be replayed."""
        return len(self._messages)

    @property
    def waiting_replays(self) -> int:
        """Failed messages waiting to be re-emitted."""
        return len(self._replay)

    @property
    def finished(self) -> bool:
        """The source is exhausted and every message is acked or dead-lettered."""
        return self._finished

    def pending_ids(self) -> list[Hashable]:
        """Ids of the messages remembered, oldest first."""
        return list(self._messages)

    @property
    def _logger(self) -> logging.Logger:
        return getattr(self, "logger", None) or log

    # -- the Spout API -----------------------------------------------------
    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """Reads this module's config keys; call it from a subclass's open."""
        self._component = context.component_id
        self._task = context.task_id
        if MAX_REPLAYS_KEY in conf:
            self._max_replays = _max_replays(conf[MAX_REPLAYS_KEY], self._component)
        else:
            self._max_replays = _max_replays(type(self).max_replays, self._component)
        directory = conf.get(SUMMARY_DIR_KEY)
        if directory:
            self._summary_path = os.path.join(str(directory), f"{self._component}-{self._task}.json")
            self.write_summary()

    def next_tuple(self) -> None:
        """Emits one message: the oldest waiting replay, else a new one."""
        replay = self._replay
        while replay:
            msg_id = replay.popleft()
            message = self._messages.get(msg_id)
            if message is None:  # pragma: no cover - settled while waiting; cannot happen today
                continue
            message.attempts += 1
            self.replays += 1
            self._logger.debug("spout '%s' task %d replays message %r (attempt %d)",
                               self._component, self._task, msg_id, message.attempts)
            self.emit(message.values, message.stream, msg_id)
            self._tick_summary()
            return
        got = self.next_message()
        if got is None:
            self._check_finished()
            self._tick_summary()
            return
        message = self._message_of(got)
        msg_id = message.msg_id
        messages = self._messages
        if msg_id in messages:
            raise StormError(
                f"spout '{self._component}' returned message id {msg_id!r} from next_message() while a "
                "message with that id is still pending; message ids must be unique among pending messages"
            )
        message.attempts = 1
        messages[msg_id] = message
        try:
            self.emit(message.values, message.stream, msg_id)
        except BaseException:
            del messages[msg_id]
            raise
        self.emitted += 1
        if len(messages) > self.peak_pending:
            self.peak_pending = len(messages)
        self._tick_summary()

    def ack(self, msg_id: Any) -> None:
        message = self._messages.pop(msg_id, None)
        if message is None:
            self.unknown_results += 1
            self._logger.debug("spout '%s' task %d: ack for unknown message %r",
                               self._component, self._task, msg_id)
            return
        self.acked += 1
        self._settled(msg_id)
        self.on_acked(msg_id, message)
        self._check_finished()
        self._tick_summary()

    def fail(self, msg_id: Any) -> None:
        message = self._messages.get(msg_id)
        if message is None:
            self.unknown_results += 1
            self._logger.debug("spout '%s' task %d: fail for unknown message %r",
                               self._component, self._task, msg_id)
            return
        self.failed += 1
        limit = self._max_replays
        if limit is not None and message.attempts > limit:
            del self._messages[msg_id]
            self.dead_letters += 1
            self._settled(msg_id)
            try:
                self.on_dead_letter(msg_id, message.values, message.attempts)
            finally:
                self._check_finished()
                self._tick_summary()
            return
        self._replay.append(msg_id)
        self._tick_summary()

    def close(self) -> None:
        self._logger.info("spout '%s' task %d closing: %s", self._component, self._task, self._counts())
        self.write_summary()

    # -- summary file ------------------------------------------------------
    def write_summary(self) -> None:
        """Write the summary file now (when ``spouts.summary.dir`` is set)."""
        path = self._summary_path
        if path is None:
            return
        self._next_summary = time.monotonic() + SUMMARY_INTERVAL_SECS
        _write_json(path, self.summary())

    def _tick_summary(self) -> None:
        if self._summary_path is not None and time.monotonic() >= self._next_summary:
            self.write_summary()

    # -- internals ---------------------------------------------------------
    def _settled(self, msg_id: Hashable) -> None:
        """A message left for good (acked or dead-lettered): for subclasses of
        this module that track positions in their source."""

    def _message_of(self, got: Any) -> Message:
        if isinstance(got, Message):
            message = got
            message.values = list(message.values)
        else:
            try:
                msg_id, values = got
            except (TypeError, ValueError):
                raise StormError(
                    f"spout '{self._component}': next_message() returned {got!r}; return "
                    "(msg_id, values), a Message, or None"
                ) from None
            message = Message(msg_id, list(values))
        if message.msg_id is None:
            raise StormError(
                f"spout '{self._component}': next_message() returned a message with msg_id None; "
                "a reliable message needs an id"
            )
        try:
            hash(message.msg_id)
        except TypeError:
            raise StormError(
                f"spout '{self._component}': message id {message.msg_id!r} is not hashable; use an "
                "int, a str or a tuple"
            ) from None
        return message

    def _check_finished(self) -> None:
        if self._finished or self._messages or not self.source_exhausted():
            return
        self._finished = True
        self._logger.info("spout '%s' task %d finished: %s", self._component, self._task, self._counts())
        try:
            self.on_finished()
        finally:
            self.write_summary()

    def _counts(self) -> str:
        return (f"emitted {self.emitted}, replays {self.replays}, acked {self.acked}, "
                f"failed {self.failed}, dead letters {self.dead_letters}, pending {self.pending}")


class ListSpout(ReliableSpout):
    """A finite reliable spout over a list of value lists; message id = the
    item's index in the list. With several tasks, task i emits the items whose
    index modulo the number of tasks is i.

    The items come from the config key ``spouts.list.items``, else the class
    attribute ``items``; override ``load_items`` to compute them. The default
    output is one field, ``value``.

    Example::

        class Sentences(ListSpout):
            outputs = ["sentence"]
            items = [["the cow"], ["jumped over"], ["the moon"]]

        # or, without a subclass:
        words = ListSpout.spec(outputs=["word"], config={LIST_ITEMS_KEY: [["a"], ["b"]]})
    """

    outputs = ["value"]
    #: The value lists to emit (unless the config key spouts.list.items is set).
    items: ClassVar[Sequence[Sequence[Any]]] = ()

    def load_items(self, conf: dict[str, Any], context: TopologyContext) -> Sequence[Sequence[Any]]:
        """Every item of the list (all tasks); this task takes its share."""
        items = conf.get(LIST_ITEMS_KEY)
        if items is None:
            items = type(self).items
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise ConfigError(
                f"spout '{context.component_id}': {LIST_ITEMS_KEY} must be a list of value lists, "
                f"e.g. [['a'], ['b']], got {items!r}"
            )
        return items

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().open(conf, context)
        items = self.load_items(conf, context)
        ntasks = len(context.get_component_tasks(context.component_id))
        mine = context.this_task_index
        self._items: list[tuple[int, Sequence[Any]]] = [
            (i, item) for i, item in enumerate(items) if i % ntasks == mine]
        self._next = 0
        self._check_finished()

    def next_message(self) -> tuple[Hashable, Sequence[Any]] | None:
        if self._next >= len(self._items):
            return None
        index, values = self._items[self._next]
        self._next += 1
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise StormError(
                f"spout '{self._component}': item {index} is {values!r}; each item is a list of "
                "values, e.g. ['word']"
            )
        return index, values

    def source_exhausted(self) -> bool:
        return self._next >= len(getattr(self, "_items", ()))

    @property
    def remaining(self) -> int:
        """Items of this task not emitted yet."""
        return len(self._items) - self._next


class FileSpout(ReliableSpout):
    """A finite reliable spout over the lines of a file: message id = line
    number (1-based), values = ``parse_line(line)`` (default ``[line]`` without
    its line ending). With several tasks, task i emits the lines whose number
    minus one modulo the number of tasks is i. The file is read lazily.

    It keeps a committed position: ``committed_line`` / ``committed_offset`` are
    the last of its lines such that it and every earlier one of its lines is
    acked or dead-lettered, and the byte offset just after it. With
    ``spouts.file.checkpoint.dir`` set, the position is saved there (at most
    every 0.2 s, when finished and on close) and a restarted task resumes from
    it: lines after it may be emitted again (at-least-once), lines before it
    never. A checkpoint belongs to one task index of one parallelism.

    The path comes from ``spouts.file.path``, else the class attribute ``path``.

    Example::

        class Events(FileSpout):
            outputs = ["user", "action"]
            path = "events.csv"

            def parse_line(self, line):
                if not line:
                    return None        # skip empty lines
                return line.split(",", 1)
    """

    outputs = ["line"]
    #: The file to read (unless the config key spouts.file.path is set).
    path: ClassVar[str | None] = None
    encoding: ClassVar[str] = "utf-8"

    def parse_line(self, line: str) -> list[Any] | None:
        """The values of one line (without its line ending); None to skip it."""
        return [line]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().open(conf, context)
        path = conf.get(FILE_PATH_KEY) or type(self).path
        if not path:
            raise ConfigError(
                f"spout '{context.component_id}' needs a file: set the config key {FILE_PATH_KEY} "
                "or the class attribute path"
            )
        self.file_path = str(path)
        self._ntasks = len(context.get_component_tasks(context.component_id))
        self._mine = context.this_task_index
        #: Last line (of this task) such that all of its lines up to it are settled.
        self.committed_line = 0
        #: Byte offset just after committed_line.
        self.committed_offset = 0
        self._checkpoint_path: str | None = None
        self._next_checkpoint = 0.0
        checkpoint_dir = conf.get(CHECKPOINT_DIR_KEY)
        if checkpoint_dir:
            self._checkpoint_path = os.path.join(
                str(checkpoint_dir), f"{context.component_id}-{self._mine}-of-{self._ntasks}.offset.json")
        try:
            self._file: BinaryIO | None = open(self.file_path, "rb")  # noqa: SIM115 - kept open while running
        except OSError as exc:
            raise ConfigError(f"spout '{context.component_id}' cannot read {self.file_path}: {exc}") from None
        if self._checkpoint_path is not None:
            self._resume(self._checkpoint_path, os.fstat(self._file.fileno()).st_size)
        self._file.seek(self.committed_offset)
        self._line_no = self.committed_line  # last line read (any task's)
        self._offset = self.committed_offset  # byte offset after it
        self._eof = False
        # This task's lines read and not committed yet, in order, with the
        # offset after each; and those of them already settled.
        self._uncommitted: deque[tuple[int, int]] = deque()
        self._settled_lines: set[int] = set()
        self._check_finished()

    def _resume(self, checkpoint: str, size: int) -> None:
        saved = _read_json(checkpoint)
        if saved is None:
            return
        try:
            line, offset, path = int(saved["line"]), int(saved["offset"]), saved.get("path")
        except (TypeError, KeyError, ValueError):
            line, offset, path = -1, -1, None
        if line < 0 or offset < 0 or offset > size or path != self.file_path:
            # Starting over can only duplicate lines; trusting a foreign checkpoint could skip some.
            self._logger.warning(
                "spout '%s' task %d: ignoring checkpoint %s (%r) that does not fit %s (%d bytes); "
                "reading from the start", self._component, self._task, checkpoint, saved,
                self.file_path, size)
            return
        self.committed_line, self.committed_offset = line, offset
        self._logger.info("spout '%s' task %d resumes %s after line %d (byte %d)",
                          self._component, self._task, self.file_path, line, offset)

    def next_message(self) -> tuple[Hashable, Sequence[Any]] | None:
        f = self._file
        while f is not None and not self._eof:
            raw = f.readline()
            if not raw:
                self._eof = True
                break
            self._line_no += 1
            self._offset += len(raw)
            if (self._line_no - 1) % self._ntasks != self._mine:
                continue
            line_no = self._line_no
            self._uncommitted.append((line_no, self._offset))
            line = raw.decode(self.encoding, errors="replace").rstrip("\r\n")
            values = self.parse_line(line)
            if values is None:
                self._settled(line_no)
                continue
            return line_no, values
        return None

    def source_exhausted(self) -> bool:
        return getattr(self, "_eof", False)

    def _settled(self, msg_id: Hashable) -> None:
        self._settled_lines.add(msg_id)  # type: ignore[arg-type]
        queue = self._uncommitted
        moved = False
        while queue and queue[0][0] in self._settled_lines:
            line_no, offset = queue.popleft()
            self._settled_lines.discard(line_no)
            self.committed_line, self.committed_offset = line_no, offset
            moved = True
        if moved and self._checkpoint_path is not None and time.monotonic() >= self._next_checkpoint:
            self.write_checkpoint()

    def write_checkpoint(self) -> None:
        """Save the committed position now (when a checkpoint dir is set)."""
        if self._checkpoint_path is None:
            return
        self._next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL_SECS
        _write_json(self._checkpoint_path, {"line": self.committed_line, "offset": self.committed_offset,
                                            "path": self.file_path})

    def on_finished(self) -> None:
        self.write_checkpoint()

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update(path=getattr(self, "file_path", None), committed_line=getattr(self, "committed_line", 0),
                   committed_offset=getattr(self, "committed_offset", 0))
        return out

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self.write_checkpoint()
            assert self._file is not None
            self._file.close()
            self._file = None
        super().close()


def _max_replays(value: Any, component: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"spout '{component}': {MAX_REPLAYS_KEY} (or max_replays) must be an integer >= 0 or "
            f"null for unlimited, got {value!r}"
        )
    return value


def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
