"""One worker: its executors, in-memory hand-over between its tasks, and the
pass that drives them (bolts, the ack flush, spout results, spouts unless held
back by backpressure). The process around it (sockets, signals, reports) is
storm._worker_main's; the in-process harness drives a Worker directly.

Backpressure: an inbox at `topology.executor.receive.buffer.size` or a batch
held back by the transport's high-water mark stops every spout of this worker
(and, through the process loop, of the topology) until it clears."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from .._acking import ACK_ACK, ACKER
from .._errors import SerializationError
from .._topology import TopologySpec
from .._tuple import StreamMeta, Tuple
from .acking import AckerIntake, AckTracker, Ids
from .batching import FrameDrops, Outbox, decode_frames
from .executor import BoltExecutor, Executor, SpoutExecutor
from .hooks import HookFactory
from .routing import topological_order
from .transport import Transport

__all__ = ["Worker"]


class Worker:
    """All executors of one worker process and the pass that drives them.

    `hooks` is asked once per task for its TaskHooks (None: the plain path);
    `ids` is where tuple-tree ids come from (a seeded one repeats a run)."""

    def __init__(self, spec: TopologySpec, assignment: dict[int, int], index: int,
                 transport: Transport | None = None, hooks: HookFactory | None = None,
                 ids: Ids | None = None) -> None:
        self.spec = spec
        self.conf = dict(spec.config)
        self.assignment = assignment
        self.index = index
        self.transport = transport
        self.ids = ids if ids is not None else Ids()
        self.local_tasks = frozenset(t for t, w in assignment.items() if w == index)
        nworkers = max(assignment.values()) + 1 if assignment else 1
        self.batch_size = int(self.conf["topology.transfer.batch.size"])
        self.linger = float(self.conf["topology.transfer.linger.ms"]) / 1000.0
        self.capacity = int(self.conf["topology.executor.receive.buffer.size"])
        self.spout_calls = int(self.conf["topology.spout.batch.size"])
        self.idle_wait_ms = max(1, int(self.conf["topology.sleep.spout.wait.strategy.time.ms"]))
        self.task_worker = dict(assignment)
        self.streams = spec.streams
        self.outbox = Outbox(nworkers, self.task_worker, spec.streams, self.batch_size, transport,
                             self._unencodable)
        self.blocked = self.outbox.blocked
        ackers = spec.components[ACKER].tasks if ACKER in spec.components else []
        self.tracker = AckTracker(list(ackers), self.ids)
        self.inboxes: dict[int, deque[Tuple]] = {}
        self.new_errors: list[dict[str, Any]] = []
        self.executors: dict[int, Executor] = {}
        self.spouts: list[SpoutExecutor] = []
        self.bolts: list[BoltExecutor] = []
        self.active = False
        self.stopping = False
        # Backpressure: our own state, and the peers that asked every spout to pause.
        self.pressure = False
        self.pressure_changes = 0
        self.throttled_by: set[int] = set()
        # Longest a bolt runs in one loop pass before the loop gets its turn.
        self.slice_secs = 0.02
        self.drops = FrameDrops(index)
        self.max_frame_bytes = int(self.conf.get("topology.transfer.max.frame.bytes") or (64 << 20))
        self._fanouts: dict[tuple[str, str], int] = {}
        for cname in topological_order(spec):
            cdef = spec.components[cname]
            for t in cdef.tasks:
                if t not in self.local_tasks:
                    continue
                task_hooks = hooks(_TaskRef(cdef.name, t, cdef.is_spout, cdef.system)) if hooks else None
                ex: Executor
                if cdef.is_spout:
                    ex = SpoutExecutor(self, cdef, t, task_hooks)
                    self.spouts.append(ex)
                else:
                    ex = BoltExecutor(self, cdef, t, task_hooks)
                    self.bolts.append(ex)
                self.executors[t] = ex
                self.inboxes[t] = ex.inbox
        self.spout_tasks: dict[int, SpoutExecutor] = {sp.task_id: sp for sp in self.spouts}
        self.takers: dict[int, AckerIntake] = {}
        self.ack_meta: StreamMeta | None = None  # an ack stream's meta (packed acks for an acker with hooks)
        self._local_inbox_get = self.inboxes.get
        self.local_append = {t: ib.append for t, ib in self.inboxes.items()}
        self._wire_tracker()
        for ex in self.executors.values():
            ex.bind()  # type: ignore[attr-defined]
        self.has_timers = any(e.tick_secs for e in self.bolts) or bool(self.spouts)

    def _wire_tracker(self) -> None:
        tr = self.tracker
        tr.deliver = self._deliver_system
        tr.finish = self._finish
        ackers = [ex for ex in self.bolts if ex.cdef.system and ex.component == ACKER]
        tr.local_ackers = {ex.task_id: (ex.stats, ex.instance.trees) for ex in ackers}
        # Other workers' acks for a local acker fold as they are decoded (an
        # acker with hooks keeps the executor path, where hooks are told).
        self.takers = {ex.task_id: AckerIntake(ex.instance.trees, ex.stats, ex.record_error)
                       for ex in ackers if ex.hooks is None}
        for ex in self.executors.values():
            tr.fail_sids[ex.task_id] = ex.fail_sid
            if isinstance(ex, SpoutExecutor):
                tr.init_sids[ex.task_id] = ex.init_sid
        carrier = next((ex for ex in self.executors.values()
                        if (ex.component, ACK_ACK) in self.spec.stream_ids), None)
        if carrier is not None:
            tr.ack_sid = self.spec.stream_ids[(carrier.component, ACK_ACK)]
            tr.ack_src = carrier.task_id
            self.ack_meta = self.streams[tr.ack_sid]
        if self.transport is not None:
            # Acks for another worker's acker travel packed in the frame to it.
            tr.send_acks = self.outbox.put_acks

    def setup(self) -> None:
        """Call prepare/open on every executor (bolts first, as Storm does)."""
        for ex in self.bolts:
            ex.setup()
        for sp in self.spouts:
            sp.setup()

    # -- delivery ----------------------------------------------------------
    def deliver(self, task: int, values: Sequence[Any], sid: int, src: int, root: Any = None,
                edge: int = 0, more: dict[Any, Any] | None = None) -> None:
        """Hand one tuple to task `task`: its inbox here, else its worker's group."""
        inbox = self._local_inbox_get(task)
        if inbox is not None:
            inbox.append(Tuple(values, self.streams[sid], src, root, edge, more))
        else:
            self.outbox.put(task, values, sid, src, root, edge, more)

    def _deliver_system(self, task: int, values: list[Any], sid: int, src: int) -> None:
        self.deliver(task, values, sid, src)

    def _finish(self, spout_task: int, root: Any, ok: bool) -> None:
        self.spout_tasks[spout_task].finish(root, ok)

    def send_result(self, spout_task: int, root: Any, ok: bool, sid: int, src: int) -> None:
        """An acker's result: straight to a local spout, else over the result stream."""
        spout = self.spout_tasks.get(spout_task)
        if spout is not None:
            spout.finish(root, ok)
        else:
            self.deliver(spout_task, [root, ok], sid, src)

    def _unencodable(self, src: int, exc: SerializationError, tup: Any) -> None:
        ex = self.executors.get(src)
        if ex is not None and tup is not None:
            ex.record_error(exc, "emit")
            ex.fail_unencodable(tup)

    def flush(self, w: int) -> None:
        self.outbox.flush(w)

    def flush_all(self) -> None:
        self.outbox.flush_all()

    def retry_blocked(self) -> bool:
        return self.outbox.retry_blocked()

    def receive(self, frames: list[bytes]) -> int:
        """Turn tuple batch frames into tuples in the local inboxes (hostile
        input is dropped and counted, see batching.decode_frames)."""
        return decode_frames(frames, self.streams, self.local_append.get, self.max_frame_bytes,
                             self.drops, self.takers, self.ack_meta)

    @property
    def dropped_frames(self) -> int:
        return self.drops.frames

    @property
    def dropped_unknown(self) -> int:
        return self.drops.unknown_task_tuples

    # -- the pass ----------------------------------------------------------
    def overloaded(self) -> bool:
        cap = self.capacity
        return any(len(ib) >= cap for ib in self.inboxes.values())

    def step(self, now: float) -> int:
        """One pass: bolts, the ack flush, spout results, spouts. Returns how
        much work was done."""
        did = 0
        for b in self.bolts:
            if b.inbox:
                did += b.run(4096)
        if self.tracker.has_acks:
            self.tracker.flush()
        for sp in self.spouts:
            if sp.inbox or sp.immediate_acks:
                did += sp.handle_results()
        if self.active and not self.stopping and not self.throttled_by:
            backpressure = self.outbox.any_blocked() or self.overloaded()
            if not backpressure:
                calls = self.spout_calls
                for sp in self.spouts:
                    did += sp.run(calls)
        return did

    def set_throttle(self, peer: int, on: bool) -> None:
        """A peer worker asks every spout to pause (on) or allows them again."""
        if on:
            self.throttled_by.add(peer)
        else:
            self.throttled_by.discard(peer)

    def timers(self, now: float) -> None:
        for ex in self.executors.values():
            ex.tick(now)

    def set_active(self, active: bool) -> None:
        self.active = active
        for sp in self.spouts:
            sp.set_active(active)

    def close(self) -> None:
        for sp in self.spouts:
            sp.set_active(False)
            sp.close()
        for b in self.bolts:
            b.close()
        self.tracker.flush()

    # -- metrics -----------------------------------------------------------
    def _fanout(self, component: str, stream: str) -> int:
        """Tasks one emit on `stream` goes to: one per subscription, every task of
        the target for all grouping. Emit counts per stream times this is the
        transferred figure, so the emit path does not count it."""
        key = (component, stream)
        n = self._fanouts.get(key)
        if n is None:
            n = 0
            for sub in [] if stream.startswith("__") else self.spec.subscribers.get(key, []):
                n += len(self.spec.components[sub.target].tasks) if sub.grouping.kind == "all" else 1
            self._fanouts[key] = n
        return n

    def metrics(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for t, ex in self.executors.items():
            snap = ex.stats.snapshot()
            emitted = {s: r.count for s, r in ex.routes.items() if r.count}
            snap["emitted"] = emitted
            snap["transferred"] = sum(n * self._fanout(ex.component, s) for s, n in emitted.items())
            snap["component"] = ex.component
            snap["queue"] = len(ex.inbox)
            if isinstance(ex, SpoutExecutor):
                snap["pending"] = len(ex.pending)
            # A component that keeps state reports its size (e.g. the alert
            # engine: keys, panes, bytes); a failing report is left out.
            size = getattr(ex.instance, "state_size", None)
            if callable(size):
                try:
                    snap["state"] = {str(k): int(v) for k, v in dict(size()).items()}
                except Exception as exc:
                    ex.record_error(exc, "state_size")
            out[t] = snap
        return out


class _TaskRef:
    """What a hook factory is told of a task before it exists."""

    __slots__ = ("component", "task_id", "is_spout", "system")

    def __init__(self, component: str, task_id: int, is_spout: bool, system: bool) -> None:
        self.component = component
        self.task_id = task_id
        self.is_spout = is_spout
        self.system = system
