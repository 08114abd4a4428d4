"""The collectors user code emits, acks and fails through (Storm's
OutputCollector): one per task, bound onto the user's instance once when the
task starts.

Every emit either takes a fast path or the checked one:

- **fast**: the default stream, no direct task, the right number of values, a
  stream that is neither direct nor ordered, and a grouping that gives one task
  per tuple from a per-key cache (fields grouping on one field) or a cycle
  (shuffle, local-or-shuffle, global). A bolt's emit anchored to one tuple stays
  on it (the anchor-edge XOR inline); so does a spout's emit without msg id.
- **checked**: everything else, with every check and a full error message, and
  the only path of a task with hooks (hooks.py).

Both deliver through the worker: a local task's inbox gets a Tuple, a remote
task's outgoing group (batching.py) gets the values."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._serialization import check_values
from .._tuple import DEFAULT_STREAM, Tuple, roots_of
from .acking import anchor
from .batching import ONE_TREE, PLAIN
from .routing import (
    BY_CYCLE,
    BY_KEY,
    FAST_TYPES,
    Route,
    check_emit,
    check_fast,
    choose,
    undeclared_stream,
)

if TYPE_CHECKING:
    from .executor import BoltExecutor, Executor, SpoutExecutor
    from .worker import Worker

__all__ = ["BoltCollector", "SpoutCollector"]

_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 64) - 1
_CACHE_MAX: Final = 65536  # keys cached per task before the cache starts afresh


class Delivery:
    """One target of a single-target emit, with everything its delivery needs:
    the local inbox's append, or the remote groups' lists (plain and rooted)."""

    __slots__ = ("tasks", "local", "box", "rvals", "rroots", "w")

    def __init__(self, tasks: Sequence[int], local: Any, box: list[Any], rvals: list[Any],
                 rroots: list[Any], w: int) -> None:
        self.tasks = tasks
        self.local = local
        self.box = box
        self.rvals = rvals
        self.rroots = rroots
        self.w = w


class Collector:
    """What both kinds of collector share: the task's routes, the worker's
    delivery and the default stream's prepared fast path."""

    def __init__(self, ex: Executor, hooks: Any) -> None:
        worker = ex.worker
        self.ex = ex
        self.me = ex.task_id
        self.component = ex.component
        self.routes: dict[str, Route] = ex.routes
        self.worker: Worker = worker  # its deliver: a direct call when compiled
        self.local_get = worker.local_append.get
        self.outbox = worker.outbox
        self.flush = worker.outbox.flush
        self.batch_size = worker.batch_size
        self.acking = ex.acking
        self.tracker = worker.tracker
        self.ids = worker.ids
        self.hooks = hooks
        self.cache: dict[Any, Delivery] = {}
        self.next_entry: Callable[[], Delivery] | None = None
        self.mode = 0
        self.kidx = 0
        self.d: Route | None = None
        self.nfields = 0
        self.one_field = False
        d = ex.routes.get(DEFAULT_STREAM)
        if hooks is None and d is not None and not d.slow:
            self._prepare_default(d)

    def _prepare_default(self, d: Route) -> None:
        if d.mode == BY_KEY:
            self.mode = BY_KEY
            self.kidx = d.key_index
        elif d.mode == BY_CYCLE:
            # Round robin: cycle over prepared entries when the period is short
            # and every pick is one task.
            period = []
            first = d.next()
            x = first
            while True:
                period.append(x)
                x = d.next()
                if x is first or len(period) > 4096:
                    break
            if x is not first or not all(len(p) == 1 for p in period):
                return
            self.next_entry = itertools.cycle([self._entry(d, p) for p in period]).__next__
            self.mode = BY_CYCLE
        else:
            return
        self.d = d
        self.nfields = d.nfields
        self.one_field = d.nfields == 1

    def _entry(self, d: Route, tasks: Sequence[int]) -> Delivery:
        t = tasks[0]
        local: Any = self.local_get(t)
        if local is not None:
            return Delivery(tasks, local, [], [], [], 0)
        box: list[Any] = self.outbox.group(t, self.me, d.meta.sid, PLAIN)[3]
        # Typed lists, so the appends below are direct (the unused ones stay empty).
        rvals: list[Any] = []
        rroots: list[Any] = []
        if self.acking:
            g = self.outbox.group(t, self.me, d.meta.sid, ONE_TREE)
            rvals, rroots = g[3], g[4]
        return Delivery(tasks, local, box, rvals, rroots, self.outbox.task_worker[t])

    def _lookup(self, d: Route, values: Sequence[Any]) -> Delivery:
        """The default stream's delivery for `values` (fast paths only)."""
        if self.mode == BY_KEY:
            cache = self.cache
            try:
                return cache[values[self.kidx]]
            except KeyError:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                dl = cache[values[self.kidx]] = self._entry(d, d.choose(values))
                return dl
            except TypeError:  # an unhashable key: route it without caching
                return self._entry(d, d.choose(values))
        nxt = self.next_entry
        assert nxt is not None
        return nxt()

    def _check_default(self, values: Sequence[Any], d: Route) -> None:
        if self.one_field:
            v = values[0]
            t = type(v)
            if t is not str and (t not in FAST_TYPES or (t is int and not _INT_MIN <= v <= _INT_MAX)):
                meta = d.meta
                check_values(values, meta.component, meta.stream, meta.fields)
        else:
            check_fast(values, d.meta)

    def _deliver_plain(self, dl: Delivery, values: Sequence[Any], d: Route) -> Sequence[int]:
        local = dl.local
        if local is not None:
            local(Tuple(values, d.meta, self.me))
        else:
            box = dl.box
            box.append(values)
            if len(box) >= self.batch_size:
                self.flush(dl.w)
        return dl.tasks

    def _route(self, stream: str) -> Route:
        route = self.routes.get(stream)
        if route is None:
            raise undeclared_stream(self.component, self.routes, stream)
        return route


class BoltCollector(Collector):
    """A bolt task's emit, ack and fail."""

    def __init__(self, ex: BoltExecutor, hooks: Any) -> None:
        super().__init__(ex, hooks)
        self.bolt = ex
        self.stats = ex.stats
        self.basic = ex.basic

    def emit(self, values: Sequence[Any], stream: str = DEFAULT_STREAM, anchors: Any = None,
             direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
        d = self.d
        if (d is None or direct_task is not None
                or (stream is not DEFAULT_STREAM and stream != DEFAULT_STREAM)
                or type(values) is str or len(values) != self.nfields):
            return self.checked_emit(values, stream, anchors, direct_task)
        if anchors is None and self.basic:
            anchors = self.bolt.current
        if anchors is not None and self.acking:
            a: Tuple
            if type(anchors) is Tuple:
                a = anchors
            else:
                # One anchor in a tuple or a list (typed, so the item is read directly).
                first: Any = None
                if type(anchors) is tuple:
                    at: tuple[Any, ...] = anchors
                    if len(at) == 1:
                        first = at[0]
                elif type(anchors) is list:
                    al: list[Any] = anchors
                    if len(al) == 1:
                        first = al[0]
                if type(first) is not Tuple:
                    return self.checked_emit(values, stream, anchors, direct_task)
                a = first
            ar = a.root
            if ar is not None:
                if a.more is not None:  # an anchor in several trees
                    return self.checked_emit(values, stream, anchors, direct_task)
                self._check_default(values, d)
                dl = self._lookup(d, values)
                d.count += 1
                # One new edge (a machine word when compiled: ids are below 2**62):
                # XORed into the anchor's ack value and carried by the child.
                e = self.ids.next()
                a.ack_val ^= e
                local = dl.local
                if local is not None:
                    local(Tuple(values, d.meta, self.me, ar, e))
                else:
                    rvals = dl.rvals
                    rvals.append(values)
                    rroots = dl.rroots
                    rroots.append(ar)
                    rroots.append(e)
                    if len(rvals) >= self.batch_size:
                        self.flush(dl.w)
                return dl.tasks
        self._check_default(values, d)
        dl = self._lookup(d, values)
        d.count += 1
        return self._deliver_plain(dl, values, d)

    def checked_emit(self, values: Any, stream: str = DEFAULT_STREAM, anchors: Any = None,
                     direct_task: int | None = None) -> Sequence[int]:
        route = self._route(stream)
        tasks = check_emit(self.component, route, values, direct_task)
        route.count += 1
        if anchors is None and self.basic:
            anchors = self.bolt.current
        group: Sequence[Any] = () if anchors is None else (anchors,) if type(anchors) is Tuple else anchors
        sid = route.meta.sid
        me = self.me
        w = self.worker
        hooks = self.hooks
        if group and self.acking:
            new_id = self.ids.next
            for t in tasks:
                root, edge, more = anchor(group, new_id)
                w.deliver(t, values, sid, me, root, edge, more)
                if hooks is not None and root is not None:
                    hooks.edge(self.ex, stream, values, t, roots_of(root, edge, more), group)
        else:
            for t in tasks:
                w.deliver(t, values, sid, me)
        if hooks is not None:
            hooks.emitted(self.ex, stream, values, tasks, tuple(group), direct_task)
        return tasks

    def ack(self, tup: Any) -> None:
        """The one ack of a bolt's input: its trees fold, the stats count, the
        process-latency sample ends, the hooks hear of it."""
        ex = self.bolt
        if type(tup) is not Tuple:
            ex.record_error(TypeError(
                f"bolt '{ex.component}' acked {tup!r:.80}, which is not a tuple it received; "
                "pass ack() the Tuple given to execute()"), "ack")
            return
        t: Tuple = tup
        if t.root is not None:
            try:
                self.tracker.ack(t)
            except (AttributeError, TypeError, ValueError, IndexError):
                ex.record_error(TypeError(
                    f"bolt '{ex.component}' acked {tup!r:.80}, whose roots are not a tuple tree's; "
                    "pass ack() the Tuple given to execute()"), "ack")
                return
        self.stats.acked += 1
        if tup is ex.probe_target:
            ex.end_probe()
        if self.hooks is not None:
            self.hooks.acked(ex, tup)

    def fail(self, tup: Any) -> None:
        ex = self.bolt
        if type(tup) is not Tuple:
            ex.record_error(TypeError(
                f"bolt '{ex.component}' failed {tup!r:.80}, which is not a tuple it received; "
                "pass fail() the Tuple given to execute()"), "fail")
            return
        t: Tuple = tup
        if t.root is not None:
            try:
                self.tracker.fail(t, self.me)
            except (AttributeError, TypeError, ValueError, IndexError):
                ex.record_error(TypeError(
                    f"bolt '{ex.component}' failed {tup!r:.80}, whose roots are not a tuple tree's; "
                    "pass fail() the Tuple given to execute()"), "fail")
                return
        self.stats.failed += 1
        if tup is ex.probe_target:
            ex.probe_target = None
        if self.hooks is not None:
            self.hooks.failed(ex, tup)


class SpoutCollector(Collector):
    """A spout task's emit: new tuple trees for emits with a msg id."""

    def __init__(self, ex: SpoutExecutor, hooks: Any) -> None:
        super().__init__(ex, hooks)
        self.spout = ex
        self.slot = self.tracker.local_slot(ex.worker.local_tasks) if self.acking else -1
        self.clock = time.perf_counter_ns

    def emit(self, values: Sequence[Any], stream: str = DEFAULT_STREAM, msg_id: Any = None,
             direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
        d = self.d
        if (d is None or direct_task is not None
                or (stream is not DEFAULT_STREAM and stream != DEFAULT_STREAM)
                or type(values) is str or len(values) != self.nfields):
            return self.checked_emit(values, stream, msg_id, direct_task)
        if msg_id is not None and self.acking:
            tasks = choose(d, values)
            d.count += 1
            return self._start_tree(values, d, tasks, msg_id)
        self._check_default(values, d)
        dl = self._lookup(d, values)
        d.count += 1
        ex = self.spout
        ex.emitted_this_call += 1
        if msg_id is not None:
            ex.immediate_acks.append(msg_id)
        return self._deliver_plain(dl, values, d)

    def checked_emit(self, values: Any, stream: str = DEFAULT_STREAM, msg_id: Any = None,
                     direct_task: int | None = None) -> Sequence[int]:
        route = self._route(stream)
        tasks = check_emit(self.component, route, values, direct_task)
        route.count += 1
        if msg_id is not None and self.acking:
            self._start_tree(values, route, tasks, msg_id)
        else:
            ex = self.spout
            ex.emitted_this_call += 1
            sid = route.meta.sid
            for t in tasks:
                self.worker.deliver(t, values, sid, self.me)
            if msg_id is not None:
                ex.immediate_acks.append(msg_id)
        if self.hooks is not None:
            self.hooks.emitted(self.ex, stream, values, tasks, msg_id, direct_task)
        return tasks

    def _start_tree(self, values: Sequence[Any], route: Route, tasks: Sequence[int],
                    msg_id: Any) -> Sequence[int]:
        """A new tuple tree: a root id (picking an acker in this worker), one
        edge per target, the spout's pending entry, the folded init."""
        ex = self.spout
        ex.emitted_this_call += 1
        if not tasks:
            ex.immediate_acks.append(msg_id)
            return tasks
        hooks = self.hooks
        ids = self.ids
        root: Any = None if hooks is None else hooks.new_root(ex)
        if root is None:
            root = ids.next()
        tracker = self.tracker
        root = tracker.place_root(root, self.slot)
        sid = route.meta.sid
        me = self.me
        w = self.worker
        xor = 0
        edges: list[tuple[int, int]] | None = None if hooks is None else []
        for t in tasks:
            e = ids.next()
            xor ^= e
            w.deliver(t, values, sid, me, root, e)
            if edges is not None:
                edges.append((t, e))
        ex.pending.put_new(root, (msg_id, self.clock()))
        tracker.start(root, xor, me)
        if hooks is not None and edges is not None:
            hooks.tree_started(ex, root, route.stream, values, msg_id, edges)
        return tasks
