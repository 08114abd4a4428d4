"""User-facing component classes: Spout, Bolt, BasicBolt, Stream declarations and
the ComponentSpec the DSL builds. Emitting, acking and logging are delegated to a
collector the runtime attaches; this module never touches sockets."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import TopologyError
from ._tuple import DEFAULT_STREAM, Tuple

if TYPE_CHECKING:
    from ._context import TopologyContext
    from ._grouping import Grouping


@dataclass(frozen=True)
class Stream:
    """An output stream declaration: its fields, its name, whether it is direct.

    ``ordered=True`` is for barriers (watermarks, checkpoints, markers): a tuple
    on such a stream keeps its place among the task's tuples on its other
    streams to the same worker. Tuples to another worker travel in batches
    grouped by stream, which may reorder tuples of different streams; the
    runtime sends the pending batch before and right after an ordered tuple,
    so each one costs a batch of its own."""

    fields: Sequence[str] = ()
    name: str = DEFAULT_STREAM
    direct: bool = False
    ordered: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.fields, str):
            object.__setattr__(self, "fields", (self.fields,))
        else:
            object.__setattr__(self, "fields", tuple(self.fields))


def normalize_outputs(outputs: Any, owner: str) -> dict[str, Stream]:
    """Turn a user's `outputs` (field names, or Stream objects) into {stream: Stream}."""
    if outputs is None:
        return {}
    if isinstance(outputs, (Stream, str)):
        outputs = [outputs]
    streams: dict[str, Stream] = {}
    plain: list[str] = []
    for item in outputs:
        if isinstance(item, Stream):
            if item.name in streams:
                raise TopologyError(
                    f"component '{owner}' declares stream '{item.name}' twice; give each Stream a unique name"
                )
            streams[item.name] = item
        elif isinstance(item, str):
            plain.append(item)
        else:
            raise TopologyError(
                f"component '{owner}': outputs must be field names or Stream(...) objects, got {item!r}"
            )
    if plain:
        if DEFAULT_STREAM in streams:
            raise TopologyError(
                f"component '{owner}' declares the default stream both as field names and as a Stream"
            )
        streams[DEFAULT_STREAM] = Stream(tuple(plain))
    for s in streams.values():
        if s.name.startswith("__"):
            # The acker adds __ack_* streams to every component and would silently
            # replace a user stream of the same name.
            raise TopologyError(
                f"component '{owner}' declares stream '{s.name}': stream names starting with "
                "'__' are reserved for system streams; rename it"
            )
        if len(set(s.fields)) != len(s.fields):
            raise TopologyError(
                f"component '{owner}' stream '{s.name}' repeats a field name: {list(s.fields)}"
            )
    return streams


@dataclass(frozen=True)
class StreamRef:
    """A reference to one named stream of a component, for `inputs=`."""

    component: str | ComponentSpec
    stream: str = DEFAULT_STREAM

    @property
    def component_name(self) -> str:
        c = self.component
        if isinstance(c, ComponentSpec):
            if c.name is None:
                raise TopologyError(
                    f"a {c.cls.__name__} spec is used as an input before it has a name; "
                    "assign it to a Topology class attribute or pass name=... to spec()"
                )
            return c.name
        return c


@dataclass(eq=False)
class ComponentSpec:
    """A component in a topology: its class, parallelism, inputs, outputs, config."""

    cls: type
    name: str | None = None
    par: int = 1
    inputs: dict[Any, Grouping] | list[Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    outputs: Any = None

    def __getitem__(self, stream: str) -> StreamRef:
        return StreamRef(self, stream)

    def stream(self, name: str) -> StreamRef:
        """A reference to this component's stream `name`, for another spec's inputs."""
        return StreamRef(self, name)

    @property
    def is_spout(self) -> bool:
        return isinstance(self.cls, type) and issubclass(self.cls, Spout)

    def declared_outputs(self) -> dict[str, Stream]:
        outs = self.outputs if self.outputs is not None else getattr(self.cls, "outputs", None)
        return normalize_outputs(outs, self.name or self.cls.__name__)


class Component:
    """Shared base of Spout and Bolt: logging, errors, the spec() class method."""

    outputs: ClassVar[Sequence[str | Stream] | None] = None
    #: Set by the runtime: this task's logger.
    logger: logging.Logger
    #: Set by the runtime: this task's collector (emit, and for bolts ack and
    #: fail). ``self.emit`` and friends are the collector's unless the class
    #: defines its own; one that does (a stateful or windowed bolt) calls the
    #: collector for the real thing.
    collector: Any

    @classmethod
    def spec(
        cls,
        name: str | None = None,
        inputs: Mapping[Any, Grouping] | Sequence[Any] | None = None,
        par: int = 1,
        config: Mapping[str, Any] | None = None,
        outputs: Sequence[str | Stream] | None = None,
    ) -> ComponentSpec:
        """Declare this class as a component of a topology.

        ``inputs`` maps a source (a spec, a component name, or ``spec["stream"]``)
        to a Grouping; a list of sources means shuffle grouping on each.
        """
        return ComponentSpec(
            cls=cls,
            name=name,
            par=par,
            inputs=dict(inputs) if isinstance(inputs, Mapping) else (list(inputs) if inputs else None),
            config=dict(config or {}),
            outputs=outputs,
        )

    def report_error(self, exc: BaseException) -> None:
        """Record an error for this task (shown by `storm local` / `storm monitor`)."""
        raise RuntimeError("report_error() is only available while the topology runs")

    def log(self, message: str, level: str = "info") -> None:
        """Write a line to this worker's log."""
        getattr(self.logger, level)(message)


class Spout(Component):
    """A source of tuples. Override `next_tuple` and call `self.emit(...)`.

    Example::

        class Numbers(Spout):
            outputs = ["n"]
            def open(self, conf, context):
                self.n = 0
            def next_tuple(self):
                self.n += 1
                self.emit([self.n], msg_id=self.n)
    """

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """Called once in the worker before the first next_tuple."""

    def initialize(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """streamparse's name for open(); override either."""

    def next_tuple(self) -> None:
        """Emit zero or more tuples. Called in a loop; must not block for long."""

    def ack(self, msg_id: Any) -> None:
        """The tuple tree started with `msg_id` was fully processed."""

    def fail(self, msg_id: Any) -> None:
        """The tuple tree started with `msg_id` failed or timed out."""

    def activate(self) -> None:
        """The topology was activated: next_tuple will be called."""

    def deactivate(self) -> None:
        """The topology was deactivated: next_tuple will not be called."""

    def close(self) -> None:
        """Called when the worker shuts down."""

    def emit(
        self,
        values: Sequence[Any],
        stream: str = DEFAULT_STREAM,
        msg_id: Any = None,
        direct_task: int | None = None,
        need_task_ids: bool = True,
    ) -> Sequence[int]:
        """Emit a tuple; returns the task ids it was sent to.

        With a ``msg_id`` (and acking on) the tuple starts a tuple tree and this
        spout later gets ``ack(msg_id)`` or ``fail(msg_id)``.
        """
        raise RuntimeError("emit() is only available while the topology runs")


class Bolt(Component):
    """A processing step. Override `execute(tup)`; emit, then ack or fail the input.

    Example::

        class Split(Bolt):
            outputs = ["word"]
            def execute(self, tup):
                for w in tup[0].split():
                    self.emit([w], anchors=[tup])
                self.ack(tup)
    """

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """Called once in the worker before the first execute."""

    def initialize(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """streamparse's name for prepare(); override either."""

    def execute(self, tup: Tuple) -> None:
        """Process one input tuple."""

    def execute_batch(self, tuples: list[Tuple]) -> None:  # pragma: no cover - optional API
        """Optional: process a batch of input tuples at once (see docs)."""
        for t in tuples:
            self.execute(t)

    def cleanup(self) -> None:
        """Called when the worker shuts down."""

    def process_tick(self, tup: Tuple) -> None:
        """Called for tick tuples if overridden; otherwise ticks go to execute()."""

    def emit(
        self,
        values: Sequence[Any],
        stream: str = DEFAULT_STREAM,
        anchors: Sequence[Tuple] | None = None,
        direct_task: int | None = None,
        need_task_ids: bool = True,
    ) -> Sequence[int]:
        """Emit a tuple, anchored to `anchors` (input tuples) for at-least-once."""
        raise RuntimeError("emit() is only available while the topology runs")

    def ack(self, tup: Tuple) -> None:
        """Mark an input tuple as processed."""
        raise RuntimeError("ack() is only available while the topology runs")

    def fail(self, tup: Tuple) -> None:
        """Fail an input tuple: its whole tuple tree is failed at the spout."""
        raise RuntimeError("fail() is only available while the topology runs")


class BasicBolt(Bolt):
    """A bolt whose emits are anchored to the current input, which is acked when
    execute returns and failed when it raises (Storm's BaseBasicBolt)."""


class FailedException(Exception):
    """Raise from BasicBolt.execute to fail the input tuple without logging an error."""
