"""The runtime core: one worker's tasks and everything a tuple passes through
on its way from one task to the next. One concept per module:

- ``routing``: each output stream's Route and the checks an emit must pass;
- ``emit``: the collectors (emit, ack, fail) bound onto user instances;
- ``acking``: the one ack path (ids, anchoring, folding, flushing, local
  completion), the acker bolt and RotatingMap;
- ``batching``: the wire shape of tuples, outgoing groups, received frames;
- ``transport``: the Transport interface and the in-memory transport;
- ``executor``: spout and bolt executors, where user code is called;
- ``worker``: a worker's executors and the pass that drives them;
- ``hooks``: TaskHooks, how tracing and the test harness observe a task;
- ``stats``: per-task counters.

The core imports only the model (storm._topology, _component, _grouping,
_tuple, _serialization, _errors, _context, _acking); see docs/ARCHITECTURE.md.
It is compiled with mypyc where a C compiler was present at install, and runs
the same source interpreted otherwise (``STORM_PURE_PYTHON=1`` forces it)."""

from __future__ import annotations

from .acking import AckerBolt, AckTracker, Ids, RotatingMap
from .executor import BoltExecutor, Executor, SpoutExecutor
from .hooks import HookChain, TaskHooks
from .routing import Route
from .stats import TaskStats
from .transport import MemoryTransport, Transport
from .worker import Worker

__all__ = [
    "AckTracker",
    "core_build",
    "AckerBolt",
    "BoltExecutor",
    "Executor",
    "HookChain",
    "Ids",
    "MemoryTransport",
    "Route",
    "RotatingMap",
    "SpoutExecutor",
    "TaskHooks",
    "TaskStats",
    "Transport",
    "Worker",
]


def core_build() -> str:
    """'compiled' when the core runs from mypyc's extension modules, else 'pure Python'."""
    from . import worker

    return "pure Python" if (worker.__file__ or "").endswith(".py") else "compiled"
