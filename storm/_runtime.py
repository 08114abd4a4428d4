"""The run loop of one worker: its executors (one per task), the collectors user
code emits through, in-memory hand-over between local tasks, per-destination
batching for remote tasks, backpressure, tick tuples, ack tracking and metrics.

The network is behind a small Transport interface (see _transport.py); with no
transport every task lives in this process, which is what storm.testing uses.
This module never creates processes."""

from __future__ import annotations

import itertools
import logging
import random
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from . import _acking, _trace
from ._acking import ACK_ACK, ACK_FAIL, ACK_INIT, ACK_RESULT, ACKER, RotatingMap, new_id
from ._component import BasicBolt, Bolt, FailedException, Spout
from ._context import TopologyContext
from ._errors import EmitError, SerializationError, StormError
from ._grouping import make_chooser
from ._serialization import KIND_TUPLES, check_values, describe_unencodable, pack
from ._topology import ComponentDef, TopologySpec
from ._tuple import DEFAULT_STREAM, TICK_META, StreamMeta, Tuple

log = logging.getLogger("storm.worker")

_FAST_TYPES = frozenset({str, int, float, bool, type(None), bytes})
_EMPTY: tuple[int, ...] = ()
_INT_MIN = -(1 << 63)  # msgpack encodes ints in [-2**63, 2**64)
_INT_MAX = (1 << 64) - 1
MAX_ERRORS_KEPT = 20
MAX_ERRORS_PER_SEC = 10


class Transport(Protocol):
    """What the run loop needs from the network."""

    def send(self, worker: int, data: bytes) -> bool:
        """Queue `data` for `worker`; False if it would block (backpressure)."""
        ...

    def poll(self, timeout_ms: int, want_data: bool) -> tuple[list[bytes], list[Any]]:
        """Wait up to timeout_ms; return (tuple batch frames, control messages)."""
        ...

    def report(self, msg: Any) -> None:
        """Send a message (metrics, errors) to the cluster that owns this worker."""
        ...


def root_items(roots: Any) -> Any:
    """(root, edge) pairs of a tuple's roots: a dict for several tuple trees, or a
    single (root, edge) pair (a list when it came over the wire) for one."""
    if type(roots) is dict:
        return roots.items()
    return (roots,)


class TaskStats:
    """Counters of one task. Plain attributes: incremented on the hot path."""

    __slots__ = ("emitted", "transferred", "executed", "acked", "failed", "errors",
                 "exec_ns", "exec_samples", "complete_ns", "complete_samples", "process_ns",
                 "process_samples", "recent_complete_ns", "busy_s")

    def __init__(self) -> None:
        self.emitted: dict[str, int] = {}
        self.transferred = 0
        self.executed = 0
        self.acked = 0
        self.failed = 0
        self.errors = 0
        self.exec_ns = 0
        self.exec_samples = 0
        self.complete_ns = 0
        self.complete_samples = 0
        self.process_ns = 0  # sampled execute-to-ack times (storm._trace.ProcessProbe)
        self.process_samples = 0
        # Seconds spent in execute (whole chunks, measured with the readings the
        # bolt's run loop takes anyway): the numerator of capacity.
        self.busy_s = 0.0
        # The last 2,048 to 4,096 complete latencies, for percentiles.
        self.recent_complete_ns: list[int] = []

    def snapshot(self) -> dict[str, Any]:
        recent = sorted(self.recent_complete_ns)
        p50 = recent[len(recent) // 2] / 1e6 if recent else None
        p99 = recent[min(len(recent) - 1, (len(recent) * 99) // 100)] / 1e6 if recent else None
        return {
            "complete_p50_ms": p50,
            "complete_p99_ms": p99,
            "emitted": dict(self.emitted),
            "transferred": self.transferred,
            "executed": self.executed,
            "acked": self.acked,
            "failed": self.failed,
            "errors": self.errors,
            "exec_ms": (self.exec_ns / self.exec_samples / 1e6) if self.exec_samples else None,
            "complete_ms": (self.complete_ns / self.complete_samples / 1e6) if self.complete_samples else None,
            # Raw sums, so a receiver can take latencies and capacity over a window.
            "exec_ns": self.exec_ns,
            "exec_samples": self.exec_samples,
            "complete_ns": self.complete_ns,
            "complete_samples": self.complete_samples,
            "process_ns": self.process_ns,
            "process_samples": self.process_samples,
            "busy_s": self.busy_s,
        }


class Route:
    """Routing of one output stream of one task: the stream id, field count and a
    chooser combining every subscription's grouping.

    `mode` tells emit how to pick tasks without a Python call where it can:
    1 = look the key up in `table` (single-field fields grouping), 2 = call the
    C-level iterator `next` (shuffle, all, global), 0 = call `choose(values)`."""

    __slots__ = ("stream", "meta", "nfields", "choose", "direct_targets", "count", "direct",
                 "mode", "table", "key_index", "next", "slow", "targets", "remote", "remote_rooted")

    def __init__(self, meta: StreamMeta, choosers: list[Callable[[Sequence[Any]], Sequence[int]]],
                 direct_targets: frozenset[int]) -> None:
        self.stream = meta.stream
        self.meta = meta
        self.nfields = len(meta.fields)
        self.direct_targets = direct_targets
        self.direct = meta.direct
        self.slow = meta.direct or meta.ordered  # both take the general emit path
        self.count = 0
        self.mode = 0
        self.table: Any = None
        self.key_index = 0
        self.next: Any = None
        self.targets: set[int] = set(direct_targets)
        # remote task -> the values list of this task's outgoing group for it
        self.remote: dict[int, list[Any]] = {}
        # remote task -> this task's outgoing group of rooted tuples for it
        self.remote_rooted: dict[int, list[Any]] = {}
        if not choosers:
            self.choose: Callable[[Sequence[Any]], Sequence[int]] = lambda values: _EMPTY
            self.mode = 2
            self.next = itertools.repeat(_EMPTY).__next__
        elif len(choosers) == 1:
            c = self.choose = choosers[0]
            if getattr(c, "table", None) is not None:
                self.mode, self.table, self.key_index = 1, c.table, c.key_index  # type: ignore[attr-defined]
            elif getattr(c, "next", None) is not None:
                self.mode, self.next = 2, c.next  # type: ignore[attr-defined]
        else:
            def combined(values: Sequence[Any], _cs: list[Any] = choosers) -> Sequence[int]:
                out: list[int] = []
                for c in _cs:
                    out.extend(c(values))
                return out
            self.choose = combined


class Executor:
    """One task: the user's component instance, its routes, stats and inbox."""

    is_spout = False

    def __init__(self, worker: Worker, cdef: ComponentDef, task_id: int) -> None:
        self.worker = worker
        self.cdef = cdef
        self.component = cdef.name
        self.task_id = task_id
        self.inbox: deque[Tuple] = deque()
        self.stats = TaskStats()
        self.errors: list[dict[str, Any]] = []
        self._error_sec = 0
        self._errors_this_sec = 0
        self.conf = dict(worker.conf)
        self.conf.update(cdef.config)
        self.context = TopologyContext(worker.spec, task_id, worker.local_tasks, worker.index)
        self.instance: Any = cdef.cls()
        self.instance.logger = logging.getLogger(f"storm.{cdef.name}.{task_id}")
        self.routes: dict[str, Route] = {}
        self.acker_tasks: list[int] = worker.spec.components[ACKER].tasks if ACKER in worker.spec.components else []
        self.acking = bool(self.acker_tasks)
        self._ack_sid = worker.spec.stream_ids.get((cdef.name, ACK_ACK), -1)
        self._fail_sid = worker.spec.stream_ids.get((cdef.name, ACK_FAIL), -1)
        rate = self.conf.get("topology.stats.sample.rate")
        rate = 0.05 if rate is None else float(rate)
        # 0 turns latency sampling off: a pass is never sampled.
        self._sample_every = max(1, round(1 / rate)) if rate > 0 else 1 << 62
        tick = self.conf.get("topology.tick.tuple.freq.secs")
        self.tick_secs: float | None = float(tick) if tick else None
        self.next_tick = time.monotonic() + self.tick_secs if self.tick_secs else float("inf")
        self._build_routes()

    # -- routing -----------------------------------------------------------
    def _build_routes(self) -> None:
        spec = self.worker.spec
        for sname, decl in self.cdef.outputs.items():
            sid = spec.stream_ids[(self.component, sname)]
            meta = spec.streams[sid]
            choosers = []
            direct: set[int] = set()
            all_targets: set[int] = set()
            for sub in spec.subscribers.get((self.component, sname), []):
                targets = spec.components[sub.target].tasks
                chooser = make_chooser(
                    sub.grouping, targets, decl.fields, source_task=self.task_id, stream=sname,
                    local_tasks=self.worker.local_tasks, context=self.context,
                    rng=random.Random(self.task_id * 1_000_003 + sid),
                )
                if chooser is None:
                    direct.update(targets)
                else:
                    choosers.append(chooser)
                all_targets.update(targets)
            route = Route(meta, choosers, frozenset(direct))
            route.targets = all_targets
            self.routes[sname] = route

    def _route(self, stream: str) -> Route:
        route = self.routes.get(stream)
        if route is None:
            declared = ", ".join(sorted(s for s in self.routes if not s.startswith("__"))) or "none"
            raise EmitError(
                f"component '{self.component}' emitted on undeclared stream '{stream}'; declared "
                f"streams: {declared}. Add it to the component's outputs"
            )
        return route

    def _targets(self, route: Route, values: Sequence[Any], direct_task: int | None) -> Sequence[int]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise EmitError(
                f"component '{self.component}' emitted {values!r} on stream '{route.stream}'; "
                "emit takes a list of values, e.g. emit([word])"
            )
        if len(values) != route.nfields:
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                raise EmitError(
                    f"component '{self.component}' emitted {values!r} on stream '{route.stream}'; "
                    "emit takes a list of values, e.g. emit([word])"
                )
            raise EmitError(
                f"component '{self.component}' emitted {len(values)} values on stream "
                f"'{route.stream}', which declares {route.nfields} fields {list(route.meta.fields)}"
            )
        for v in values:
            if type(v) not in _FAST_TYPES or (type(v) is int and not _INT_MIN <= v <= _INT_MAX):
                check_values(values, self.component, route.stream, route.meta.fields)
                break
        if direct_task is not None:
            if not route.meta.direct:
                raise EmitError(
                    f"component '{self.component}' emitted with direct_task on stream "
                    f"'{route.stream}', which is not direct; declare Stream(..., direct=True)"
                )
            if direct_task not in route.direct_targets:
                raise EmitError(
                    f"component '{self.component}' emitted directly to task {direct_task} on stream "
                    f"'{route.stream}', which is not a task subscribed to it with direct grouping "
                    f"(subscribed: {sorted(route.direct_targets)})"
                )
            return (direct_task,)
        if route.direct:
            raise EmitError(
                f"component '{self.component}' emitted on direct stream '{route.stream}' without "
                "direct_task; pass direct_task=<task id>"
            )
        return route.choose(values)

    def _send_system(self, sid: int, task: int, values: list[Any]) -> None:
        self.worker.deliver(task, values, sid, self.task_id, None)

    def ack_tree(self, tup: Tuple) -> None:
        roots = tup.roots
        if roots:
            # XOR is associative: acks are folded per root in the worker and sent
            # to the ackers once per loop pass (Worker.flush_acks), not per tuple.
            acc = self.worker.pending_acks
            av = getattr(tup, "ack_val", 0)
            for root, edge in root_items(roots):
                acc[root] = acc.get(root, 0) ^ edge ^ av

    def fail_tree(self, tup: Tuple) -> None:
        roots = tup.roots
        if roots:
            ackers = self.acker_tasks
            n = len(ackers)
            worker = self.worker
            inits = worker.pending_inits
            for root, _edge in root_items(roots):
                spout_task = inits.pop(root, 0) if inits else 0
                if spout_task:
                    # The tree's init has not left this worker yet: fail it here.
                    worker.pending_acks.pop(root, None)
                    worker.executors[spout_task].finish(root, False)  # type: ignore[attr-defined]
                else:
                    worker.deliver(ackers[root % n], [root], self._fail_sid, self.task_id, None)

    # -- errors ------------------------------------------------------------
    def record_error(self, exc: BaseException, where: str) -> None:
        self.stats.errors += 1
        # Keep a flood of errors (a next_tuple that always raises) cheap: past
        # MAX_ERRORS_PER_SEC in one second, errors are only counted.
        sec = int(time.monotonic())
        if sec != self._error_sec:
            self._error_sec, self._errors_this_sec = sec, 0
        self._errors_this_sec += 1
        if self._errors_this_sec > MAX_ERRORS_PER_SEC:
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        entry = {"time": time.time(), "component": self.component, "task": self.task_id,
                 "where": where, "error": f"{type(exc).__name__}: {exc}", "traceback": tb}
        self.errors.append(entry)
        if len(self.errors) > MAX_ERRORS_KEPT:
            del self.errors[0]
        self.worker.new_errors.append(entry)
        log.error("error in %s of component '%s' task %d: %s", where, self.component, self.task_id, tb)

    def report_error(self, exc: BaseException) -> None:
        self.record_error(exc, "report_error")

    def bind_emit(self) -> None:
        """Give the user's instance the specialised emit (after all inboxes exist)."""
        for route in self.routes.values():
            remote = [t for t in route.targets if t not in self.worker.local_tasks]
            route.remote = {t: self.worker.group(t, self.task_id, route.meta.sid, False)[3] for t in remote}
            if self.acking:
                route.remote_rooted = {t: self.worker.group(t, self.task_id, route.meta.sid, True)
                                       for t in remote}
        fast = _fast_emit(self, self._emit_general, spout=self.is_spout)  # type: ignore[attr-defined]
        self.emit = fast
        self.instance.emit = fast
        if isinstance(self, BoltExecutor):
            self.ack = self.instance.ack = _bolt_ack(self)
            # Process latency: called on sampled passes of run() only.
            self._probe = _trace.ProcessProbe(self)
        if self.worker.tracer is not None:  # topology.debug.sample > 0: wrap emit/execute/ack
            self.worker.tracer.bind(self)
        if isinstance(self.instance, _acking.AckerBolt):
            route = self.routes[ACK_RESULT]
            deliver = self.worker.deliver
            sid = route.meta.sid
            me = self.task_id

            executors = self.worker.executors

            def send_result(spout_task: int, root: int, ok: bool) -> None:
                route.count += 1
                spout = executors.get(spout_task)
                if spout is not None:  # the spout task is in this worker: tell it now
                    spout.finish(root, ok)  # type: ignore[attr-defined]
                else:
                    deliver(spout_task, [root, ok], sid, me, None)

            self.instance.send_result = send_result  # type: ignore[method-assign]

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


class BoltExecutor(Executor):
    def __init__(self, worker: Worker, cdef: ComponentDef, task_id: int) -> None:
        super().__init__(worker, cdef, task_id)
        inst = self.instance
        self.basic = isinstance(inst, BasicBolt)
        self.current: Tuple | None = None
        has_tick_hook = type(inst).process_tick is not Bolt.process_tick
        self._tick_handler = inst.process_tick if has_tick_hook else None
        # Bind the hot methods onto the instance: user calls skip one layer.
        inst.ack = self.ack
        inst.fail = self.fail
        inst.report_error = self.report_error
        self._execute = inst.execute

    def setup(self) -> None:
        inst = self.instance
        if type(inst).initialize is not Bolt.initialize:
            inst.initialize(self.conf, self.context)
        inst.prepare(self.conf, self.context)

    def emit(self, values: Sequence[Any], stream: str = DEFAULT_STREAM,
             anchors: Sequence[Tuple] | None = None, direct_task: int | None = None,
             need_task_ids: bool = True) -> Sequence[int]:
        """Replaced per instance by a specialised closure (see _fast_emit)."""
        return self._emit_general(values, stream, anchors, direct_task)

    def _emit_general(self, values: Sequence[Any], stream: str = DEFAULT_STREAM,
                      anchors: Sequence[Tuple] | None = None, direct_task: int | None = None,
                      need_task_ids: bool = True) -> Sequence[int]:
        route = self.routes.get(stream) or self._route(stream)
        tasks = self._targets(route, values, direct_task)
        route.count += 1
        if self.basic and anchors is None:
            cur = self.current
            anchors = (cur,) if cur is not None else None
        deliver = self.worker.deliver
        sid = route.meta.sid
        me = self.task_id
        if anchors and self.acking:
            for t in tasks:
                roots: dict[int, int] | None = None
                for a in anchors:
                    ar = a.roots
                    if ar:
                        e = new_id()
                        a.ack_val = getattr(a, "ack_val", 0) ^ e
                        if roots is None:
                            roots = {}
                        for r, _edge in root_items(ar):
                            roots[r] = roots.get(r, 0) ^ e
                deliver(t, values, sid, me, roots)
        else:
            for t in tasks:
                deliver(t, values, sid, me, None)
        return tasks

    def ack(self, tup: Tuple) -> None:
        if tup.roots:
            self.ack_tree(tup)
        self.stats.acked += 1

    def fail(self, tup: Tuple) -> None:
        if tup.roots:
            self.fail_tree(tup)
        self.stats.failed += 1

    def run(self, budget: int) -> int:
        """Execute up to `budget` queued tuples, in chunks of 64, for at most
        about 20 ms, so one slow bolt cannot stall its worker's loop."""
        inbox = self.inbox
        n = len(inbox)
        if n > budget:
            n = budget
        stats = self.stats
        sample = (stats.executed // self._sample_every) != ((stats.executed + n) // self._sample_every)
        t0 = time.perf_counter_ns() if sample else 0
        if sample:
            self._probe(t0)  # process latency of the first tuple (storm._trace.ProcessProbe)
        start = now = time.perf_counter()
        deadline = start + self.worker.slice_secs
        done = 0
        while done < n:
            chunk = n - done if n - done < 64 else 64
            self._run_chunk(chunk)
            done += chunk
            now = time.perf_counter()
            if now > deadline:
                break
        stats.busy_s += now - start
        stats.executed += done
        if sample and done:
            stats.exec_ns += (time.perf_counter_ns() - t0) // done
            stats.exec_samples += 1
        return done

    def _run_chunk(self, n: int) -> None:
        popleft = self.inbox.popleft
        execute = self._execute
        if self.basic:
            for _ in range(n):
                tup = popleft()
                if tup.meta is TICK_META:
                    self._on_tick(tup)
                    continue
                self.current = tup
                try:
                    execute(tup)
                except FailedException:
                    self.fail(tup)
                except Exception as exc:
                    self.record_error(exc, "execute")
                    self.fail(tup)
                else:
                    self.ack(tup)
                self.current = None
        elif self.tick_secs is not None or self._tick_handler is not None:
            tick_meta = TICK_META
            for _ in range(n):
                tup = popleft()
                if tup.meta is tick_meta:
                    self._on_tick(tup)
                    continue
                try:
                    execute(tup)
                except Exception as exc:
                    self.record_error(exc, "execute")
                    self.fail(tup)
        else:
            for _ in range(n):
                tup = popleft()
                try:
                    execute(tup)
                except Exception as exc:
                    self.record_error(exc, "execute")
                    self.fail(tup)

    def _on_tick(self, tup: Tuple) -> None:
        # Ticks are not counted as executed tuples (undone by run's count).
        self.stats.executed -= 1
        handler = self._tick_handler
        try:
            if handler is not None:
                handler(tup)
            else:
                self._execute(tup)
        except Exception as exc:
            self.record_error(exc, "process_tick")

    def tick(self, now: float) -> None:
        if now >= self.next_tick:
            assert self.tick_secs is not None
            self.next_tick = now + self.tick_secs
            # Queued behind the tuples already waiting, as in Storm.
            self.inbox.append(Tuple([self.tick_secs], TICK_META, 0))

    def close(self) -> None:
        try:
            self.instance.cleanup()
        except Exception as exc:
            self.record_error(exc, "cleanup")


class SpoutExecutor(Executor):
    is_spout = True

    def __init__(self, worker: Worker, cdef: ComponentDef, task_id: int) -> None:
        super().__init__(worker, cdef, task_id)
        inst = self.instance
        inst.report_error = self.report_error
        self.pending = RotatingMap()
        msp = self.conf.get("topology.max.spout.pending")
        self.max_pending: int | None = int(msp) if msp else None
        timeout = float(self.conf.get("topology.message.timeout.secs") or 30)
        self.timeouts = bool(self.conf.get("topology.enable.message.timeouts", True))
        self.rotate_secs = max(timeout / (_acking.ROTATING_BUCKETS - 1), 0.05)
        self.next_rotate = time.monotonic() + self.rotate_secs
        self._init_sid = worker.spec.stream_ids.get((cdef.name, ACK_INIT), -1)
        self.emitted_this_call = 0
        self.immediate_acks: list[Any] = []
        self.active = False
        self.backoff = 0.0
        self.resume_at = 0.0

    def setup(self) -> None:
        inst = self.instance
        if type(inst).initialize is not Spout.initialize:
            inst.initialize(self.conf, self.context)
        inst.open(self.conf, self.context)

    def emit(self, values: Sequence[Any], stream: str = DEFAULT_STREAM, msg_id: Any = None,
             direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
        """Replaced per instance by a specialised closure (see _fast_emit)."""
        return self._emit_general(values, stream, msg_id, direct_task)

    def _emit_general(self, values: Sequence[Any], stream: str = DEFAULT_STREAM, msg_id: Any = None,
                      direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
        route = self.routes.get(stream) or self._route(stream)
        tasks = self._targets(route, values, direct_task)
        route.count += 1
        self.emitted_this_call += 1
        deliver = self.worker.deliver
        sid = route.meta.sid
        me = self.task_id
        if msg_id is not None and self.acking:
            if not tasks:
                self.immediate_acks.append(msg_id)
                return tasks
            root = new_id()
            xor = 0
            for t in tasks:
                e = new_id()
                xor ^= e
                deliver(t, values, sid, me, {root: e})
            self.pending.put(root, (msg_id, time.perf_counter_ns()))
            ackers = self.acker_tasks
            deliver(ackers[root % len(ackers)], [root, xor, me], self._init_sid, me, None)
        else:
            for t in tasks:
                deliver(t, values, sid, me, None)
            if msg_id is not None:
                self.immediate_acks.append(msg_id)
        return tasks

    def handle_results(self) -> int:
        """Process ack results from the ackers (and immediate acks)."""
        n = 0
        inst = self.instance
        stats = self.stats
        if self.immediate_acks:
            ids, self.immediate_acks = self.immediate_acks, []
            for mid in ids:
                stats.acked += 1
                try:
                    inst.ack(mid)
                except Exception as exc:
                    self.record_error(exc, "ack")
            n += len(ids)
        inbox = self.inbox
        while inbox:
            tup = inbox.popleft()
            n += 1
            if tup.meta.stream == ACK_RESULT:
                self.finish(tup.values[0], tup.values[1])
        return n

    def finish(self, root: int, ok: bool) -> None:
        """The tree `root` completed (ok) or failed: tell the user's spout."""
        entry = self.pending.pop(root)
        if entry is None:
            return  # already timed out here
        inst = self.instance
        stats = self.stats
        msg_id, t0 = entry
        if ok:
            stats.acked += 1
            dt = time.perf_counter_ns() - t0
            stats.complete_ns += dt
            stats.complete_samples += 1
            recent = stats.recent_complete_ns
            recent.append(dt)
            if len(recent) > 4096:
                del recent[:2048]
            try:
                inst.ack(msg_id)
            except Exception as exc:
                self.record_error(exc, "ack")
        else:
            stats.failed += 1
            try:
                inst.fail(msg_id)
            except Exception as exc:
                self.record_error(exc, "fail")

    def can_emit(self) -> bool:
        return self.max_pending is None or len(self.pending) < self.max_pending

    def run(self, calls: int) -> int:
        """Call next_tuple up to `calls` times; returns tuples emitted."""
        if self.resume_at and time.monotonic() < self.resume_at:
            return 0
        emitted = 0
        next_tuple = self.instance.next_tuple
        max_pending = self.max_pending
        pending = self.pending
        for _ in range(calls):
            if max_pending is not None and len(pending) >= max_pending:
                break
            self.emitted_this_call = 0
            try:
                next_tuple()
            except Exception as exc:
                self.record_error(exc, "next_tuple")
                # Back off a raising spout (10 ms doubling to 1 s) instead of spinning on it.
                self.backoff = min(max(self.backoff * 2, 0.01), 1.0)
                self.resume_at = time.monotonic() + self.backoff
                break
            self.backoff = 0.0
            if not self.emitted_this_call:
                break
            emitted += self.emitted_this_call
        return emitted

    def tick(self, now: float) -> None:
        if self.timeouts and now >= self.next_rotate:
            self.next_rotate = now + self.rotate_secs
            for _root, (msg_id, _t0) in self.pending.rotate().items():
                self.stats.failed += 1
                try:
                    self.instance.fail(msg_id)
                except Exception as exc:
                    self.record_error(exc, "fail")

    def set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        try:
            if active:
                self.instance.activate()
            else:
                self.instance.deactivate()
        except Exception as exc:
            self.record_error(exc, "activate" if active else "deactivate")

    def close(self) -> None:
        try:
            self.instance.close()
        except Exception as exc:
            self.record_error(exc, "close")


# The fast emit closures, as source compiled twice: once with `anchors` as the
# third parameter (bolts) and once with `msg_id` (spouts), so keyword calls work
# for both without an extra call layer on the hot path. Repeated pieces are
# written once below and pasted in (CHECK_VALUES, DELIVER_ONE, EMIT_GUARD):
# inlining them, not calling them, is the point.
_EMIT_GUARD = """\
if (stream is not default or direct_task is not None
        or len(values) != d_nfields or type(values) is _str):
    return generic(values, stream, THIRD, direct_task)
if THIRD is not None and rooted is not None:
    return rooted(values, d, THIRD)
"""

# The guard of the single-target paths (keyed, cycled). A bolt's emit anchored to
# one tuple of a tree (almost every anchored emit) stays inline: `a` is the
# anchor and `ar` its roots, delivered by DELIVER_ONE's rooted branch. Anything
# else anchored goes to `rooted`; a spout's msg_id always does.
_EMIT_GUARD_ONE = """\
if (stream is not default or direct_task is not None
        or len(values) != d_nfields or type(values) is _str):
    return generic(values, stream, THIRD, direct_task)
ar = None
if THIRD is not None and rooted is not None:
@ANCHOR
"""

_ANCHOR_BOLT = """\
    if type(anchors) is Tuple:
        a = anchors
    elif len(anchors) == 1:
        a = anchors[0]
    else:
        return rooted(values, d, anchors)
    ar = a.roots
    if not ar:
        return rooted(values, d, anchors)
"""

_ANCHOR_SPOUT = """\
    return rooted(values, d, msg_id)
"""

# msgpack encodes ints in [-2**63, 2**64); a str is the common case, tested first.
_CHECK_VALUES = """\
for v in values:
    t = type(v)
    if t is not _str and (t not in fast_types or (t is int and not -9223372036854775808 <= v <= 18446744073709551615)):
        check_values(values, COMPONENT, STREAM, FIELDS)
        break
"""

# The default stream's check: most streams have one field, so no loop for them.
_CHECK_DEFAULT = """\
if one_field:
    v = values[0]
    t = type(v)
    if t is not _str and (t not in fast_types or (t is int and not -9223372036854775808 <= v <= 18446744073709551615)):
        check_values(values, d_component, default, d_fields)
else:
    for v in values:
        t = type(v)
        if t is not _str and (t not in fast_types or (t is int and not -9223372036854775808 <= v <= 18446744073709551615)):
            check_values(values, d_component, default, d_fields)
            break
"""

# One target task, found with everything its delivery needs: (tasks, local
# inbox append or None, remote group values list, worker index).
_DELIVER_ONE = """\
d.count += 1
if ar is not None:
    # One new edge: XORed into the anchor's ack value and carried by the child.
    e = getrandbits(64)
    try:
        a.ack_val ^= e
    except AttributeError:
        a.ack_val = e
    roots = (ar[0], e) if type(ar) is not dict else fromkeys(ar, e)
    if app is not None:
        tup = new_tuple(Tuple)
        tup.values = values
        tup.meta = d_meta
        tup.source_task = me
        tup.roots = roots
        tup.ack_val = 0
        app(tup)
    else:
        rvals.append(values)
        rroots.append(roots)
        if len(rvals) >= batch_size:
            flush(w)
    return tasks
if count_spout_emit is not None:
    count_spout_emit.emitted_this_call += 1
if app is not None:
    tup = new_tuple(Tuple)
    tup.values = values
    tup.meta = d_meta
    tup.source_task = me
    tup.roots = None
    app(tup)
else:
    box.append(values)
    if len(box) >= batch_size:
        flush(w)
return tasks
"""

_FAST_EMIT_TEMPLATE = """
def factory(general, routes_get, local_get, task_worker, flush, batch_size, me,
            fast_types, rooted, count_spout_emit, new_tuple, Tuple, check_values,
            DEFAULT_STREAM, d, _str, itertools_cycle, getrandbits, fromkeys):
    def emit(values, stream=DEFAULT_STREAM, THIRD=None, direct_task=None, need_task_ids=True):
        route = routes_get(stream)
        if (route is None or route.slow or direct_task is not None
                or len(values) != route.nfields or type(values) is _str):
            return general(values, stream, THIRD, direct_task)
        if THIRD is not None and rooted is not None:
            return rooted(values, route, THIRD)
@CHECK_VALUES(8, route.meta.component, route.stream, route.meta.fields)
        mode = route.mode
        if mode == 1:
            try:
                tasks = route.table[values[route.key_index]]
            except (KeyError, TypeError):
                tasks = route.choose(values)
        elif mode == 2:
            tasks = route.next()
        else:
            tasks = route.choose(values)
        route.count += 1
        if count_spout_emit is not None:
            count_spout_emit.emitted_this_call += 1
        meta = route.meta
        for t in tasks:
            app = local_get(t)
            if app is not None:
                tup = new_tuple(Tuple)
                tup.values = values
                tup.meta = meta
                tup.source_task = me
                tup.roots = None
                app(tup)
            else:
                box = route.remote[t]
                box.append(values)
                if len(box) >= batch_size:
                    flush(task_worker[t])
        return tasks

    if d is None or d.slow or d.mode not in (1, 2):
        return emit
    # Most emits go to the default stream: its paths read closure cells, not attributes.
    generic = emit
    d_nfields = d.nfields
    d_mode = d.mode
    d_table = d.table
    d_kidx = d.key_index
    d_next = d.next
    d_choose = d.choose
    d_meta = d.meta
    d_remote = d.remote
    d_remote_rooted = d.remote_rooted
    d_component = d.meta.component
    d_fields = d.meta.fields
    default = DEFAULT_STREAM
    one_field = d_nfields == 1

    def entry(tasks):
        t = tasks[0]
        app = local_get(t)
        if app is not None:
            return (tasks, app, None, 0, None, None)
        g = d_remote_rooted.get(t)
        return (tasks, None, d_remote[t], task_worker[t], g and g[3], g and g[4])

    if d_mode == 1:
        # Fields grouping on one field, one subscriber: everything the delivery
        # needs, cached per key.
        cache = {}

        def emit_keyed(values, stream=DEFAULT_STREAM, THIRD=None, direct_task=None,
                       need_task_ids=True):
@EMIT_GUARD_ONE(12)
@CHECK_DEFAULT(12)
            try:
                tasks, app, box, w, rvals, rroots = cache[values[d_kidx]]
            except KeyError:
                if len(cache) >= 65536:
                    cache.clear()
                tasks, app, box, w, rvals, rroots = cache[values[d_kidx]] = entry(d_choose(values))
            except TypeError:  # an unhashable key: route it without caching
                tasks, app, box, w, rvals, rroots = entry(d_choose(values))
@DELIVER_ONE(12)

        return emit_keyed

    # Round robin (shuffle, local_or_shuffle, global): cycle over prepared entries.
    period = []
    first = d_next()
    x = first
    while True:
        period.append(x)
        x = d_next()
        if x is first or len(period) > 4096:
            break
    if x is first and all(len(p) == 1 for p in period):
        next_entry = itertools_cycle([entry(p) for p in period]).__next__

        def emit_cycled(values, stream=DEFAULT_STREAM, THIRD=None, direct_task=None,
                        need_task_ids=True):
@EMIT_GUARD_ONE(12)
@CHECK_DEFAULT(12)
            tasks, app, box, w, rvals, rroots = next_entry()
@DELIVER_ONE(12)

        return emit_cycled

    def emit_default(values, stream=DEFAULT_STREAM, THIRD=None, direct_task=None,
                     need_task_ids=True):
@EMIT_GUARD(8)
@CHECK_DEFAULT(8)
        tasks = d_next()
        d.count += 1
        if count_spout_emit is not None:
            count_spout_emit.emitted_this_call += 1
        for t in tasks:
            app = local_get(t)
            if app is not None:
                tup = new_tuple(Tuple)
                tup.values = values
                tup.meta = d_meta
                tup.source_task = me
                tup.roots = None
                app(tup)
            else:
                box = d_remote[t]
                box.append(values)
                if len(box) >= batch_size:
                    flush(task_worker[t])
        return tasks

    return emit_default
"""


def _expand_emit_template(third: str) -> str:
    """Paste the shared pieces into the template at their @MACRO(indent, ...) lines."""
    out: list[str] = []
    for line in _FAST_EMIT_TEMPLATE.splitlines():
        if not line.startswith("@"):
            out.append(line)
            continue
        name, _, args = line[1:].partition("(")
        parts = [a.strip() for a in args.rstrip(")").split(",", 1)] + [""]
        indent = " " * int(parts[0])
        body = {"EMIT_GUARD": _EMIT_GUARD, "EMIT_GUARD_ONE": _EMIT_GUARD_ONE, "CHECK_VALUES": _CHECK_VALUES,
                "CHECK_DEFAULT": _CHECK_DEFAULT, "DELIVER_ONE": _DELIVER_ONE}[name]
        body = body.replace("@ANCHOR\n", _ANCHOR_BOLT if third == "anchors" else _ANCHOR_SPOUT)
        if name == "CHECK_VALUES":
            component, stream, fields = (a.strip() for a in parts[1].split(","))
            body = (body.replace("COMPONENT", component).replace("STREAM", stream)
                    .replace("FIELDS", fields))
        out.extend(indent + b if b else b for b in body.splitlines())
    return "\n".join(out).replace("THIRD", third)


def _compile_emit_factory(third: str) -> Callable[..., Callable[..., Sequence[int]]]:
    namespace: dict[str, Any] = {}
    exec(compile(_expand_emit_template(third), f"<storm emit ({third})>", "exec"), namespace)
    factory: Callable[..., Callable[..., Sequence[int]]] = namespace["factory"]
    return factory


_BOLT_EMIT_FACTORY = _compile_emit_factory("anchors")
_SPOUT_EMIT_FACTORY = _compile_emit_factory("msg_id")


def _fast_emit(ex: Executor, general: Callable[..., Sequence[int]], spout: bool = False
               ) -> Callable[..., Sequence[int]]:
    """The emit users call, specialised for the common case: a non-direct stream,
    no anchors (or acking off), no msg_id on a spout. Everything else goes to the
    general path. Locals captured in the closure keep the per-tuple cost to a few
    dictionary lookups and one Tuple."""
    worker = ex.worker
    basic = isinstance(ex, BoltExecutor) and ex.basic and ex.acking
    if basic:
        for r in ex.routes.values():
            r.slow = True
    factory = _SPOUT_EMIT_FACTORY if spout else _BOLT_EMIT_FACTORY
    rooted: Callable[..., Sequence[int]] | None
    if spout:
        assert isinstance(ex, SpoutExecutor)
        tracer = worker.tracer  # tracing: sampled trees get marked root ids
        rooted = _rooted_spout_emit(ex, None if tracer is None else tracer.spout_trace(ex))
    else:
        assert isinstance(ex, BoltExecutor)
        rooted = _anchored_bolt_emit(ex) if ex.acking else None
    return factory(
        general, ex.routes.get, worker.local_append.get, worker.task_worker,
        worker.flush, worker.batch_size, ex.task_id, _FAST_TYPES,
        # Handles the third argument (anchors of a bolt, msg_id of a spout).
        rooted,
        ex if spout else None,
        object.__new__,  # skips Tuple.__init__: about 130 ns less per tuple
        Tuple, check_values, DEFAULT_STREAM, ex.routes.get(DEFAULT_STREAM), str,
        itertools.cycle, _acking._getrandbits, dict.fromkeys,
    )


def _choose(route: Route, values: Sequence[Any]) -> Sequence[int]:
    """Check values and pick target tasks (the rooted emit paths)."""
    for v in values:
        if type(v) not in _FAST_TYPES or (type(v) is int and not _INT_MIN <= v <= _INT_MAX):
            check_values(values, route.meta.component, route.stream, route.meta.fields)
            break
    mode = route.mode
    if mode == 1:
        try:
            return route.table[values[route.key_index]]
        except (KeyError, TypeError):
            return route.choose(values)
    if mode == 2:
        return route.next()
    return route.choose(values)


def _rooted_deliverer(ex: Executor) -> Callable[[Route, int, Sequence[Any], Any], None]:
    """Deliver one tuple that belongs to tuple trees (roots: root id -> edge id)."""
    worker = ex.worker
    local_get = worker.local_append.get
    task_worker = worker.task_worker
    flush = worker.flush
    batch_size = worker.batch_size
    me = ex.task_id
    new_tuple = object.__new__
    groups: dict[tuple[int, int], list[Any]] = {}

    def deliver(route: Route, t: int, values: Sequence[Any], roots: Any) -> None:
        app = local_get(t)
        if app is not None:
            tup = new_tuple(Tuple)
            tup.values = values
            tup.meta = route.meta
            tup.source_task = me
            tup.roots = roots
            tup.ack_val = 0
            app(tup)
            return
        sid = route.meta.sid
        g = groups.get((t, sid))
        if g is None:
            g = groups[(t, sid)] = worker.group(t, me, sid, True)
        vals = g[3]
        vals.append(values)
        g[4].append(roots)
        if len(vals) >= batch_size:
            flush(task_worker[t])

    return deliver


def _anchored_bolt_emit(ex: BoltExecutor) -> Callable[[Sequence[Any], Route, Any], Sequence[int]]:
    """A bolt's emit with anchors while acking is on: one new edge id per anchor
    and target, XORed into the anchor's ack value and the child's roots. The
    keyed and cycled emit closures deliver one-anchor emits themselves
    (_DELIVER_ONE); this serves the other routes (named streams, several
    subscribers, all grouping)."""
    deliver = _rooted_deliverer(ex)
    getrandbits = _acking._getrandbits
    fromkeys = dict.fromkeys
    worker = ex.worker
    local_get = worker.local_append.get
    task_worker = worker.task_worker
    flush = worker.flush
    batch_size = worker.batch_size
    me = ex.task_id
    new_tuple = object.__new__

    def anchored_many(values: Sequence[Any], route: Route, anchors: Any) -> Sequence[int]:
        tasks = _choose(route, values)
        route.count += 1
        for t in tasks:
            roots: dict[int, int] | None = None
            for a in anchors:
                ar = a.roots
                if ar:
                    e = getrandbits(64)
                    try:
                        a.ack_val ^= e
                    except AttributeError:
                        a.ack_val = e
                    if roots is None:
                        roots = {}
                    for r, _edge in root_items(ar):
                        roots[r] = roots.get(r, 0) ^ e
            if roots is None:
                worker.deliver(t, values, route.meta.sid, me, None)
            else:
                deliver(route, t, values, roots)
        return tasks

    def anchored(values: Sequence[Any], route: Route, anchors: Any) -> Sequence[int]:
        if type(anchors) is Tuple:
            a = anchors
        elif len(anchors) == 1:
            a = anchors[0]
        else:
            return anchored_many(values, route, anchors)
        ar = a.roots
        if not ar:
            return anchored_many(values, route, (a,))
        tasks = _choose(route, values)
        route.count += 1
        meta = route.meta
        for t in tasks:
            e = getrandbits(64)
            try:
                a.ack_val ^= e
            except AttributeError:
                a.ack_val = e
            roots = (ar[0], e) if type(ar) is not dict else fromkeys(ar, e)
            app = local_get(t)
            if app is not None:
                tup = new_tuple(Tuple)
                tup.values = values
                tup.meta = meta
                tup.source_task = me
                tup.roots = roots
                tup.ack_val = 0
                app(tup)
            else:
                g = route.remote_rooted[t]
                vals = g[3]
                vals.append(values)
                g[4].append(roots)
                if len(vals) >= batch_size:
                    flush(task_worker[t])
        return tasks

    return anchored


def _rooted_spout_emit(ex: SpoutExecutor, trace: Any = None) -> Callable[[Sequence[Any], Route, Any], Sequence[int]]:
    """A spout's emit with a msg_id: a new tuple tree (or, acking off, an
    immediate ack). With tracing on, `trace` (storm._trace.SpoutTrace) draws
    the root ids (marking sampled trees) and records a sampled tree's edges."""
    deliver = _rooted_deliverer(ex)
    getrandbits = _acking._getrandbits
    worker = ex.worker
    me = ex.task_id
    ackers = ex.acker_tasks
    nackers = len(ackers)
    acc = worker.pending_acks
    acc_get = acc.get
    inits = worker.pending_inits
    # The root picks its acker (root % ackers): one in this worker when there is
    # one, so the init and the result never cross the network.
    local_slot = next((i for i, t in enumerate(ackers) if t in worker.local_tasks), -1)
    pending_put = ex.pending.put_new
    clock = time.perf_counter_ns
    new_root = None if trace is None else trace.new_root
    begin = None if trace is None else trace.begin

    def rooted(values: Sequence[Any], route: Route, msg_id: Any) -> Sequence[int]:
        tasks = _choose(route, values)
        route.count += 1
        ex.emitted_this_call += 1
        if not nackers or not tasks:
            for t in tasks:
                worker.deliver(t, values, route.meta.sid, me, None)
            ex.immediate_acks.append(msg_id)
            return tasks
        root = getrandbits(64) if new_root is None else new_root()
        if local_slot >= 0:
            root += local_slot - root % nackers
            if root > 18446744073709551615:  # stay in msgpack's uint64 range
                root -= nackers
        record = None if begin is None else begin(root, values, route, msg_id)
        xor = 0
        for t in tasks:
            e = getrandbits(64)
            xor ^= e
            if record is not None:
                record(t, e)
            deliver(route, t, values, (root, e))
        pending_put(root, (msg_id, clock()))
        # The init is folded with this worker's acks of the same tree and sent
        # at the end of the next loop pass (Worker.flush_acks).
        acc[root] = acc_get(root, 0) ^ xor
        inits[root] = me
        return tasks

    return rooted


def _bolt_ack(ex: BoltExecutor) -> Callable[[Tuple], None]:
    """A bolt's ack: the C-level append of a list the worker folds into its
    pending acks once per loop pass (Worker.fold_acks, then flush_acks), so
    the user's ``self.ack(tup)`` costs no Python call."""
    acked: list[Tuple] = []
    ex.worker.ack_lists.append((ex, acked))
    return acked.append


class Worker:
    """All executors of one worker process and the loop that drives them."""

    def __init__(self, spec: TopologySpec, assignment: dict[int, int], index: int,
                 transport: Transport | None = None) -> None:
        self.spec = spec
        self.conf = dict(spec.config)
        self.assignment = assignment
        self.tracer = _trace.make_tracer(self)  # None unless topology.debug.sample > 0 (and acking)
        self.index = index
        self.transport = transport
        self.local_tasks = frozenset(t for t, w in assignment.items() if w == index)
        nworkers = max(assignment.values()) + 1 if assignment else 1
        self.batch_size = int(self.conf["topology.transfer.batch.size"])
        self.linger = float(self.conf["topology.transfer.linger.ms"]) / 1000.0
        self.capacity = int(self.conf["topology.executor.receive.buffer.size"])
        self.spout_calls = int(self.conf["topology.spout.batch.size"])
        self.idle_wait_ms = max(1, int(self.conf["topology.sleep.spout.wait.strategy.time.ms"]))
        # Outgoing tuples are grouped per (dest task, source task, stream[, rooted]):
        # a group is [dest, src, sid, values_list, roots_list | None], and a batch
        # for a worker is its non-empty groups, so msgpack packs each tuple's
        # values and nothing else.
        self.groups: list[list[list[Any]]] = [[] for _ in range(nworkers)]
        self._group_index: dict[tuple[int, int, int, bool], list[Any]] = {}
        self.blocked: list[deque[bytes]] = [deque() for _ in range(nworkers)]
        self.inboxes: dict[int, deque[Tuple]] = {}
        self.task_worker = dict(assignment)
        self.new_errors: list[dict[str, Any]] = []
        self.pending_acks: dict[int, int] = {}
        # (bolt executor, the tuples it acked since the last pass): see _bolt_ack
        self.ack_lists: list[tuple[Executor, list[Tuple]]] = []
        self.pending_inits: dict[int, int] = {}  # root -> spout task, not yet sent
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
        self.streams = spec.streams
        self.ordered_sids = frozenset(m.sid for m in spec.streams if m.ordered)
        self.dropped_unknown = 0
        self.dropped_frames = 0
        self.max_frame_bytes = int(self.conf.get("topology.transfer.max.frame.bytes") or (64 << 20))
        order = _topological_order(spec)
        for cname in order:
            cdef = spec.components[cname]
            for t in cdef.tasks:
                if t not in self.local_tasks:
                    continue
                ex: Executor
                if cdef.is_spout:
                    ex = SpoutExecutor(self, cdef, t)
                    self.spouts.append(ex)
                else:
                    ex = BoltExecutor(self, cdef, t)
                    self.bolts.append(ex)
                self.executors[t] = ex
                self.inboxes[t] = ex.inbox
        self._local_inbox_get = self.inboxes.get
        self.local_append = {t: ib.append for t, ib in self.inboxes.items()}
        self.local_ackers: dict[int, Any] = {
            ex.task_id: ex for ex in self.bolts if isinstance(ex.instance, _acking.AckerBolt)}
        for ex in self.executors.values():
            ex.bind_emit()
        self.has_timers = any(e.tick_secs for e in self.bolts) or bool(self.spouts)

    def setup(self) -> None:
        """Call prepare/open on every executor (bolts first, as Storm does)."""
        for ex in self.bolts:
            ex.setup()
        for sp in self.spouts:
            sp.setup()

    # -- delivery ----------------------------------------------------------
    def group(self, task: int, src: int, sid: int, rooted: bool) -> list[Any]:
        """The outgoing group for (task, src, sid, rooted), created on first use."""
        key = (task, src, sid, rooted)
        g = self._group_index.get(key)
        if g is None:
            g = [task, src, sid, [], [] if rooted else None]
            self._group_index[key] = g
            self.groups[self.task_worker[task]].append(g)
        return g

    def deliver(self, task: int, values: Sequence[Any], sid: int, src: int, roots: Any) -> None:
        inbox = self._local_inbox_get(task)
        if inbox is not None:
            inbox.append(Tuple(values, self.streams[sid], src, roots))
            return
        rooted = roots is not None
        g = self._group_index.get((task, src, sid, rooted)) or self.group(task, src, sid, rooted)
        vals = g[3]
        if sid in self.ordered_sids:
            # A barrier: what was queued before it leaves first, it goes next,
            # alone (see Stream.ordered).
            w = self.task_worker[task]
            self.flush(w)
            vals.append(values)
            if rooted:
                g[4].append(roots)
            self.flush(w)
            return
        vals.append(values)
        if rooted:
            g[4].append(roots)
        if len(vals) >= self.batch_size:
            self.flush(self.task_worker[task])

    def flush(self, w: int) -> None:
        batch = [g for g in self.groups[w] if g[3]]
        if not batch:
            return
        try:
            data = pack([KIND_TUPLES, batch])
        except (TypeError, ValueError, OverflowError):
            data = self._pack_salvaging(batch)
        for g in batch:
            g[3].clear()
            if g[4] is not None:
                g[4].clear()
        if self.transport is None:
            raise StormError("no transport for a remote task")  # pragma: no cover
        blocked = self.blocked[w]
        if blocked or not self.transport.send(w, data):
            blocked.append(data)

    def _pack_salvaging(self, batch: list[list[Any]]) -> bytes:
        """A batch failed to encode: find the bad tuples, report and fail them,
        send the rest."""
        good_groups = []
        for task, src, sid, values_list, roots_list in batch:
            good_values: list[Any] = []
            good_roots: list[Any] | None = None if roots_list is None else []
            for i, values in enumerate(values_list):
                roots = roots_list[i] if roots_list is not None else None
                try:
                    pack(values)
                except (TypeError, ValueError, OverflowError):
                    meta = self.streams[sid]
                    bad = describe_unencodable(values) or (0, "a value msgpack rejects")
                    fname = meta.fields[bad[0]] if bad[0] < len(meta.fields) else f"#{bad[0]}"
                    exc = SerializationError(
                        f"component '{meta.component}' emitted a value msgpack cannot encode on "
                        f"stream '{meta.stream}': field '{fname}' holds {bad[1]}"
                    )
                    src_ex = self.executors.get(src)
                    if src_ex is not None:
                        src_ex.record_error(exc, "emit")
                        if roots:
                            src_ex.fail_tree(Tuple(values, meta, src, roots))
                    continue
                good_values.append(values)
                if good_roots is not None:
                    good_roots.append(roots)
            if good_values:
                good_groups.append([task, src, sid, good_values, good_roots])
        return pack([KIND_TUPLES, good_groups])

    def flush_all(self) -> None:
        for w, groups in enumerate(self.groups):
            for g in groups:
                if g[3]:
                    self.flush(w)
                    break

    def retry_blocked(self) -> bool:
        """Try to send batches that hit the high-water mark; True if any remain."""
        transport = self.transport
        remaining = False
        for w, blocked in enumerate(self.blocked):
            while blocked:
                if transport is None or not transport.send(w, blocked[0]):
                    remaining = True
                    break
                blocked.popleft()
        return remaining

    def receive(self, frames: list[bytes]) -> int:
        """Turn tuple batch frames into tuples in the local inboxes.

        Hostile or broken input is dropped and counted, never raised: a frame
        over topology.transfer.max.frame.bytes, one that is not msgpack, not a
        batch, or a group of the wrong shape (checked per group, not per tuple;
        see check_group), or addressed to a task this worker does not run."""
        from ._serialization import check_group, unpack

        n = 0
        streams = self.streams
        nstreams = len(streams)
        append_get = self.local_append.get
        new_tuple = object.__new__
        max_frame = self.max_frame_bytes
        for frame in frames:
            if len(frame) > max_frame:
                self._drop_frame(frame, f"larger than topology.transfer.max.frame.bytes ({max_frame})")
                continue
            try:
                msg = unpack(frame)
            except Exception as exc:
                self._drop_frame(frame, f"undecodable: {type(exc).__name__}: {exc}")
                continue
            if type(msg) is not list or len(msg) != 2 or type(msg[1]) is not list:
                self._drop_frame(frame, "not a [kind, payload] list")
                continue
            kind, entries = msg
            if kind != KIND_TUPLES:
                self._drop_frame(frame, f"unknown frame kind {kind!r:.40}")
                continue
            for group in entries:
                problem = check_group(group, nstreams)
                if problem is not None:
                    self._drop_frame(frame, problem)
                    continue
                task, src, sid, values_list, roots_list = group
                app = append_get(task)
                if app is None:
                    self.dropped_unknown += len(values_list)
                    self._drop_frame(frame, f"addressed to task {task}, which is not in this worker")
                    continue
                meta = streams[sid]
                if roots_list is None:
                    for values in values_list:
                        tup = new_tuple(Tuple)
                        tup.values = values
                        tup.meta = meta
                        tup.source_task = src
                        tup.roots = None
                        app(tup)
                else:
                    for values, roots in zip(values_list, roots_list, strict=True):
                        tup = new_tuple(Tuple)
                        tup.values = values
                        tup.meta = meta
                        tup.source_task = src
                        tup.roots = roots
                        tup.ack_val = 0
                        app(tup)
                n += len(values_list)
        return n

    def _drop_frame(self, frame: bytes, why: str) -> None:
        # Counted always; logged for the first few and then once per 1000, so
        # a flood of garbage costs little and cannot fill the disk.
        self.dropped_frames += 1
        if self.dropped_frames <= 10 or self.dropped_frames % 1000 == 0:
            log.error("worker %d dropped a frame (%d bytes, %d dropped so far): %s", self.index,
                      len(frame), self.dropped_frames, why)

    # -- the loop ----------------------------------------------------------
    def overloaded(self) -> bool:
        cap = self.capacity
        return any(len(ib) >= cap for ib in self.inboxes.values())

    def fold_acks(self) -> None:
        """Fold the tuples bolts acked during this pass into pending_acks: each
        tuple's edge XOR its ack value (the edges of the children anchored to it)."""
        acc = self.pending_acks
        acc_get = acc.get
        for ex, acked in self.ack_lists:
            if not acked:
                continue
            tuples = acked[:]
            acked.clear()
            n = 0
            for tup in tuples:
                try:
                    roots = tup.roots
                    if roots:
                        try:
                            av = tup.ack_val
                        except AttributeError:
                            av = 0
                        if type(roots) is dict:
                            for root, edge in roots.items():
                                acc[root] = acc_get(root, 0) ^ edge ^ av
                        else:  # one root: a (root, edge) pair
                            root, edge = roots
                            if av:
                                edge ^= av
                            acc[root] = acc_get(root, 0) ^ edge
                    n += 1
                except (AttributeError, TypeError, ValueError):
                    ex.record_error(TypeError(
                        f"bolt '{ex.component}' acked {tup!r:.80}, which is not a tuple it received; "
                        "pass ack() the Tuple given to execute()"), "ack")
            ex.stats.acked += n

    def flush_acks(self) -> None:
        """Send the acks folded during this pass, one message per tuple tree.

        A tree whose spout emitted it here since the last flush (its init is
        still in pending_inits) and whose folded value is 0 was completed
        entirely in this worker: the spout is told at once, no acker involved.
        """
        acc = self.pending_acks
        if not acc:
            return
        items = list(acc.items())
        acc.clear()
        inits = self.pending_inits
        # Any local executor that declares the ack stream can carry the folded
        # acks (the acker reads only the values); system ackers do not declare it.
        any_ex = next(ex for ex in self.executors.values() if ex._ack_sid >= 0)
        ackers = any_ex.acker_tasks
        n = len(ackers)
        ack_sid = any_ex._ack_sid
        src = any_ex.task_id
        deliver = self.deliver
        executors = self.executors
        local_ackers = self.local_ackers
        for root, value in items:
            spout_task = inits.pop(root, 0) if inits else 0
            if spout_task and value == 0:
                executors[spout_task].finish(root, True)  # type: ignore[attr-defined]
                continue
            if not value and not spout_task:
                continue
            acker = ackers[root % n]
            local = local_ackers.get(acker)
            if local is not None:
                # The tree's acker lives here: fold directly, no tuple, no queue.
                local.instance.fold(root, value, spout_task)
                local.stats.executed += 1
            elif spout_task:
                deliver(acker, [root, value, spout_task], executors[spout_task]._init_sid,  # type: ignore[attr-defined]
                        spout_task, None)
            else:
                deliver(acker, [root, value], ack_sid, src, None)

    def step(self, now: float) -> int:
        """One pass: bolts, spouts, flush. Returns how much work was done."""
        did = 0
        for b in self.bolts:
            if b.inbox:
                did += b.run(4096)
        self.fold_acks()
        if self.pending_acks:
            self.flush_acks()
        for sp in self.spouts:
            if sp.inbox or sp.immediate_acks:
                did += sp.handle_results()
        if self.active and not self.stopping and not self.throttled_by:
            backpressure = any(self.blocked) or self.overloaded()
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
        self.fold_acks()
        self.flush_acks()

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
        if not hasattr(self, "_fanouts"):
            self._fanouts: dict[tuple[str, str], int] = {}
        for t, ex in self.executors.items():
            snap = ex.stats.snapshot()
            emitted = {s: r.count for s, r in ex.routes.items() if r.count}
            snap["emitted"] = emitted
            snap["transferred"] = sum(n * self._fanout(ex.component, s) for s, n in emitted.items())
            snap["component"] = ex.component
            snap["queue"] = len(ex.inbox)
            if isinstance(ex, SpoutExecutor):
                snap["pending"] = len(ex.pending)
            out[t] = snap
        return out


def _topological_order(spec: TopologySpec) -> list[str]:
    """Component names, sources first, so one loop pass carries tuples far."""
    order: list[str] = []
    seen: set[str] = set()
    frontier = [c.name for c in spec.components.values() if c.is_spout]
    while frontier:
        nxt: list[str] = []
        for name in frontier:
            if name in seen:
                continue
            seen.add(name)
            order.append(name)
            for c in spec.components.values():
                if c.name not in seen and any(s.source == name for s in c.inputs):
                    nxt.append(c.name)
        frontier = nxt
    order.extend(n for n in spec.components if n not in seen)
    return order
