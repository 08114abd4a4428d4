"""Executors: one per task, each holding the user's component instance, its
routes, collector, inbox, stats and timers. A bolt executor runs queued tuples
through execute (with tick tuples and the sampled process latency); a spout
executor calls next_tuple, hears how its trees ended and times them out.

User code is called here and nowhere else in the core; whatever it raises is
recorded on the task (with its traceback) and the worker keeps running."""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from .._acking import ACK_FAIL, ACK_INIT, ACK_RESULT, ACKER, ROTATING_BUCKETS
from .._component import BasicBolt, Bolt, FailedException, Spout
from .._context import TopologyContext
from .._tuple import TICK_META, Tuple
from .acking import AckerBolt, RotatingMap
from .emit import BoltCollector, SpoutCollector
from .routing import Route, build_routes
from .stats import MAX_ERRORS_KEPT, MAX_ERRORS_PER_SEC, TaskStats

if TYPE_CHECKING:
    from .._topology import ComponentDef
    from .hooks import TaskHooks
    from .worker import Worker

__all__ = ["BoltExecutor", "Executor", "SpoutExecutor"]

log = logging.getLogger("storm.worker")

# What the runtime binds onto a user's instance, unless its class defines its
# own (a stateful or windowed bolt routes acks or anchors itself, and calls the
# task's collector for the real thing).
_BOLT_BINDINGS: Final = ("emit", "ack", "fail")
_SPOUT_BINDINGS: Final = ("emit",)


class Executor:
    """One task: the user's component instance, its routes, stats and inbox."""

    is_spout = False

    def __init__(self, worker: Worker, cdef: ComponentDef, task_id: int,
                 hooks: TaskHooks | None) -> None:
        self.worker = worker
        self.cdef = cdef
        self.component = cdef.name
        self.task_id = task_id
        self.hooks = hooks
        self.inbox: deque[Tuple] = deque()
        self.stats = TaskStats()
        self.errors: list[dict[str, Any]] = []
        self._error_sec = 0
        self._errors_this_sec = 0
        self.conf = dict(worker.conf)
        self.conf.update(cdef.config)
        self.context = TopologyContext(worker.spec, task_id, worker.local_tasks, worker.index)
        self.instance: Any = AckerBolt() if cdef.system and cdef.name == ACKER else cdef.cls()
        self.instance.logger = logging.getLogger(f"storm.{cdef.name}.{task_id}")
        self.routes: dict[str, Route] = build_routes(cdef, task_id, worker.spec, worker.local_tasks,
                                                     self.context)
        self.acker_tasks: list[int] = worker.tracker.ackers
        self.acking = bool(self.acker_tasks)
        self.fail_sid = worker.spec.stream_ids.get((cdef.name, ACK_FAIL), -1)
        rate = self.conf.get("topology.stats.sample.rate")
        rate = 0.05 if rate is None else float(rate)
        # 0 turns latency sampling off: a pass is never sampled.
        self._sample_every = max(1, round(1 / rate)) if rate > 0 else 1 << 62
        tick = self.conf.get("topology.tick.tuple.freq.secs")
        self.tick_secs: float | None = float(tick) if tick else None
        self.next_tick = time.monotonic() + self.tick_secs if self.tick_secs else float("inf")

    def _bind(self, collector: Any, names: tuple[str, ...], base: type) -> None:
        """Give the user's instance the collector's methods (once, at start)."""
        inst = self.instance
        inst.collector = collector
        inst.report_error = self.report_error
        cls = type(inst)
        for name in names:
            if getattr(cls, name) is getattr(base, name):
                setattr(inst, name, getattr(collector, name))

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

    def fail_unencodable(self, tup: Tuple) -> None:
        """A tuple this task emitted could not be encoded for the wire."""

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


class BoltExecutor(Executor):
    def __init__(self, worker: Worker, cdef: ComponentDef, task_id: int,
                 hooks: TaskHooks | None) -> None:
        super().__init__(worker, cdef, task_id, hooks)
        inst = self.instance
        self.basic = isinstance(inst, BasicBolt)
        self.current: Tuple | None = None
        has_tick_hook = type(inst).process_tick is not Bolt.process_tick
        self._tick_handler = inst.process_tick if has_tick_hook else None
        # Process latency (execute start to ack), sampled: the tuple watched and its start.
        self.probe_target: Tuple | None = None
        self.probe_t0 = 0
        # A bolt that routes its own acks (holds them until a checkpoint) is not probed.
        self.probed = type(inst).ack is Bolt.ack
        self.collector: BoltCollector | None = None
        if isinstance(inst, AckerBolt):
            inst.trees.executor = self

    def acker_result(self, spout_task: int, root: Any, ok: bool) -> None:
        """The acker's result goes straight to a local spout, else over its stream
        (a direct delivery: the acker is ours, emit's checks are not needed)."""
        route = self.routes[ACK_RESULT]
        route.count += 1
        self.worker.send_result(spout_task, root, ok, route.meta.sid, self.task_id)

    def bind(self) -> None:
        """Make the collector (after every inbox of the worker exists) and bind it."""
        self.collector = BoltCollector(self, self.hooks)
        self._bind(self.collector, _BOLT_BINDINGS, Bolt)

    def setup(self) -> None:
        inst = self.instance
        if type(inst).initialize is not Bolt.initialize:
            inst.initialize(self.conf, self.context)
        inst.prepare(self.conf, self.context)

    def fail_unencodable(self, tup: Tuple) -> None:
        if tup.root is not None:
            self.worker.tracker.fail(tup, self.task_id)

    def end_probe(self) -> None:
        stats = self.stats
        stats.process_ns += perf_counter_ns() - self.probe_t0
        stats.process_samples += 1
        self.probe_target = None

    def run(self, budget: int) -> int:
        """Execute up to `budget` queued tuples, in chunks of 64, for at most
        about 20 ms, so one slow bolt cannot stall its worker's loop."""
        inbox = self.inbox
        n = len(inbox)
        if n > budget:
            n = budget
        stats = self.stats
        sample = (stats.executed // self._sample_every) != ((stats.executed + n) // self._sample_every)
        t0 = perf_counter_ns() if sample else 0
        if sample and self.probed and self.probe_target is None and inbox[0].meta is not TICK_META:
            self.probe_target = inbox[0]
            self.probe_t0 = t0
        start = now = time.perf_counter()
        deadline = start + self.worker.slice_secs
        done = 0
        while done < n:
            chunk = n - done if n - done < 64 else 64
            if self.hooks is not None:
                self._run_hooked(chunk)
            else:
                self._run_chunk(chunk)
            done += chunk
            now = time.perf_counter()
            if now > deadline:
                break
        stats.busy_s += now - start
        stats.executed += done
        if sample and done:
            stats.exec_ns += (perf_counter_ns() - t0) // done
            stats.exec_samples += 1
        return done

    def _run_chunk(self, n: int) -> None:
        popleft = self.inbox.popleft
        execute = self.instance.execute
        collector = self.collector
        assert collector is not None
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
                    collector.fail(tup)
                except Exception as exc:
                    self.record_error(exc, "execute")
                    collector.fail(tup)
                else:
                    collector.ack(tup)
                self.current = None
        elif self.tick_secs is not None or self._tick_handler is not None:
            for _ in range(n):
                tup = popleft()
                if tup.meta is TICK_META:
                    self._on_tick(tup)
                    continue
                try:
                    execute(tup)
                except Exception as exc:
                    self.record_error(exc, "execute")
                    collector.fail(tup)
        else:
            for _ in range(n):
                tup = popleft()
                try:
                    execute(tup)
                except Exception as exc:
                    self.record_error(exc, "execute")
                    collector.fail(tup)

    def _run_hooked(self, n: int) -> None:
        """_run_chunk with the hooks told around each execute."""
        popleft = self.inbox.popleft
        execute = self.instance.execute
        collector = self.collector
        hooks = self.hooks
        assert collector is not None and hooks is not None
        for _ in range(n):
            tup = popleft()
            if tup.meta is TICK_META:
                self._on_tick(tup)
                continue
            if not hooks.admit(self, tup):
                continue
            if self.basic:
                self.current = tup
            token = hooks.before_execute(self, tup)
            error: BaseException | None = None
            try:
                execute(tup)
            except Exception as exc:
                error = exc
            hooks.after_execute(self, tup, token, error)
            if error is None:
                if self.basic:
                    collector.ack(tup)
            elif self.basic and isinstance(error, FailedException):
                collector.fail(tup)
            else:
                self.record_error(error, "execute")
                collector.fail(tup)
            self.current = None

    def _on_tick(self, tup: Tuple) -> None:
        # Ticks are not counted as executed tuples (undone by run's count).
        self.stats.executed -= 1
        handler = self._tick_handler
        try:
            if handler is not None:
                handler(tup)
            else:
                self.instance.execute(tup)
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

    def __init__(self, worker: Worker, cdef: ComponentDef, task_id: int,
                 hooks: TaskHooks | None) -> None:
        super().__init__(worker, cdef, task_id, hooks)
        self.pending = RotatingMap()
        msp = self.conf.get("topology.max.spout.pending")
        self.max_pending: int | None = int(msp) if msp else None
        timeout = float(self.conf.get("topology.message.timeout.secs") or 30)
        self.timeouts = bool(self.conf.get("topology.enable.message.timeouts", True))
        self.rotate_secs = max(timeout / (ROTATING_BUCKETS - 1), 0.05)
        self.next_rotate = time.monotonic() + self.rotate_secs
        self.init_sid = worker.spec.stream_ids.get((cdef.name, ACK_INIT), -1)
        self.emitted_this_call = 0
        self.immediate_acks: list[Any] = []
        self.active = False
        self.backoff = 0.0
        self.resume_at = 0.0
        self.collector: SpoutCollector | None = None
        # The spout's ack and fail, looked up once (again after open, which
        # may set them): not by name per tree.
        # None: the spout's is Spout's own, which does nothing (nothing to call).
        self.user_ack: Callable[[Any], Any] | None = _own(self.instance.ack, Spout.ack)
        self.user_fail: Callable[[Any], Any] | None = _own(self.instance.fail, Spout.fail)

    def bind(self) -> None:
        self.collector = SpoutCollector(self, self.hooks)
        self._bind(self.collector, _SPOUT_BINDINGS, Spout)

    def setup(self) -> None:
        inst = self.instance
        if type(inst).initialize is not Spout.initialize:
            inst.initialize(self.conf, self.context)
        inst.open(self.conf, self.context)
        self.user_ack = _own(inst.ack, Spout.ack)
        self.user_fail = _own(inst.fail, Spout.fail)

    def fail_unencodable(self, tup: Tuple) -> None:
        if tup.root is not None:
            self.worker.tracker.fail(tup, self.task_id)

    def handle_results(self) -> int:
        """Process ack results from the ackers (and immediate acks)."""
        n = 0
        if self.immediate_acks:
            ids, self.immediate_acks = self.immediate_acks, []
            for mid in ids:
                self._ack(mid)
            n += len(ids)
        inbox = self.inbox
        while inbox:
            tup = inbox.popleft()
            n += 1
            if tup.meta.stream == ACK_RESULT:
                self.finish(tup.values[0], tup.values[1])
        return n

    def _ack(self, msg_id: Any) -> None:
        self.stats.acked += 1
        if self.hooks is not None:
            self.hooks.spout_acked(self, msg_id)
        if self.user_ack is not None:
            self._tell(self.user_ack, msg_id, "ack")

    def _fail(self, msg_id: Any) -> None:
        self.stats.failed += 1
        if self.hooks is not None:
            self.hooks.spout_failed(self, msg_id)
        if self.user_fail is not None:
            self._tell(self.user_fail, msg_id, "fail")

    def _tell(self, method: Callable[[Any], Any], msg_id: Any, where: str) -> None:
        """Call the spout's ack or fail; what it raises is recorded on the task."""
        try:
            method(msg_id)
        except Exception as exc:
            self.record_error(exc, where)

    def finish(self, root: Any, ok: bool) -> None:
        """The tree `root` completed (ok) or failed: tell the user's spout."""
        entry: tuple[Any, int] | None = self.pending.pop(root)
        if entry is None:
            return  # already timed out here
        msg_id = entry[0]
        t0 = entry[1]
        if self.hooks is not None:
            self.hooks.tree_done(self, root, bool(ok), "acked" if ok else "failed")
        if ok:
            stats = self.stats
            dt = perf_counter_ns() - t0
            stats.complete_ns += dt
            stats.complete_samples += 1
            recent = stats.recent_complete_ns
            recent.append(dt)
            if len(recent) > 4096:
                del recent[:2048]
            self._ack(msg_id)
        else:
            self._fail(msg_id)

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
        hooks = self.hooks
        for _ in range(calls):
            if max_pending is not None and len(pending) >= max_pending:
                break
            if hooks is not None and not hooks.next_tuple_allowed(self):
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
            for root, (msg_id, _t0) in self.pending.rotate().items():
                if self.hooks is not None:
                    self.hooks.tree_done(self, root, False, "timed out")
                self._fail(msg_id)

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


def _own(method: Callable[[Any], Any], base: Callable[..., Any]) -> Callable[[Any], Any] | None:
    """A spout's ack or fail, or None when it is `base`, the Spout method that
    does nothing (a spout that does not define it pays no call per tree)."""
    return None if getattr(method, "__func__", None) is base else method
