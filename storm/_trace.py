"""Tuple-tree tracing (`topology.debug.sample`, `storm trace`) and the process
latency probe. Nothing here runs unless asked for.

**Which trees are traced.** A spout that samples a tree picks a root id below
2**50 (its top 14 bits zero; below 2**51 after the acker choice); with tracing on, every other root gets its top bit
set, so any worker recognises a sampled tree from the root id alone, with no
flag carried by the tuples. (Roots drawn elsewhere, e.g. a direct-stream emit
with a msg_id, fall below the mark with a chance of 2**-13: their events are
kept by no tree, because a tree is shown only with its spout's record.) The low
bits stay free for `_rooted_spout_emit`'s choice of a local acker.

**Zero cost when off.** The run time binds the wrappers below only when
`topology.debug.sample > 0` and acking is on (`Worker.tracer`); otherwise no
emit, execute or ack path does anything new. With tracing on, each emit,
execute and ack pays one test of the tuple's root; only sampled trees pay for
records.

**Events** are small dicts a worker collects in `Tracer.events` and sends with
its metrics report (`extra["trace"]`); `TraceStore` keeps the last trees
(bounded) where reports arrive (LocalCluster, each supervisor), and
`build_trees` turns events into nested trees for `storm trace`.

Events (all times are wall-clock seconds):

- ``root``: a spout started a sampled tree: r (root id), c/t (spout, task),
  s (stream), v (values, truncated), m (msg id), ts
- ``emit``: a tuple of the tree was sent: r, e (its edge id: the node), p (the
  edge of the tuple it is anchored to, 0 for the spout's tuple), c/t (emitter),
  to/tc (target task / component), s, v, ts
- ``exec``: a bolt executed node e: r, e, c, t, t0, t1, err (an exception)
- ``ack`` / ``fail``: the bolt acked / failed node e: r, e, c, t, ts
- ``done``: the spout learnt the outcome: r, ok, why (acked, failed, timed
  out), ms (complete latency), ts
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._tuple import DEFAULT_STREAM, TICK_META, Tuple

if TYPE_CHECKING:
    from ._runtime import BoltExecutor, Executor, Route, SpoutExecutor, Worker

SAMPLED_LIMIT = 1 << 51  # roots below this are in sampled trees (drawn below 2**50)
UNSAMPLED_BIT = 1 << 63  # set on every other root a tracing spout draws
MAX_VALUE_CHARS = 80
MAX_EVENTS_PER_TREE = 200
KEEP_TREES = 100
# topology.debug.sample.max.per.sec: sampled trees a spout task starts per second
# at most, whatever the rate, so the stores keep whole trees (their events come
# from every worker, about once a second).
MAX_PER_SEC_KEY = "topology.debug.sample.max.per.sec"
MAX_PENDING_EVENTS = 5000  # per worker between two reports; more are dropped (counted)
TRACE_FILE_SUFFIX = ".trace"

__all__ = [
    "KEEP_TREES",
    "ProcessProbe",
    "TraceStore",
    "Tracer",
    "build_trees",
    "make_tracer",
    "sample_rate",
    "short",
]


def short(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """repr of a value cut to `limit` characters."""
    try:
        text = repr(list(value) if isinstance(value, (list, tuple)) else value)
    except Exception as exc:  # a user's __repr__ that raises
        text = f"<unprintable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sample_rate(conf: Mapping[str, Any]) -> float:
    try:
        rate = float(conf.get("topology.debug.sample") or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return min(max(rate, 0.0), 1.0)


def _sampled(roots: Any) -> tuple[int, int] | None:
    """(root, edge) of the first sampled tree a tuple belongs to, else None."""
    if type(roots) is dict:
        for r, e in roots.items():
            if r < SAMPLED_LIMIT:
                return r, e
        return None
    r = roots[0]
    return (r, roots[1]) if r < SAMPLED_LIMIT else None


NEEDS_ACKING = ("tracing needs acking: a tuple tree exists only when acking is on; set "
                "topology.acker.executors to null or > 0 and emit from the spouts with a msg_id")


def trace_problem(spec: Any) -> str | None:
    """Why topology.debug.sample records nothing for `spec` (None: it is off, or fine)."""
    from ._acking import ACKER

    if sample_rate(spec.config) <= 0:
        return None
    if ACKER not in spec.components or not spec.components[ACKER].tasks:
        return NEEDS_ACKING
    return None


def make_tracer(worker: Worker) -> Tracer | None:
    """The worker's tracer, or None (tracing off, or acking off: no trees)."""
    rate = sample_rate(worker.conf)
    if rate <= 0 or trace_problem(worker.spec) is not None:
        return None
    return Tracer(worker, rate)


def trace_file(local_dir: Any, name: str) -> Any:
    """Where `storm local` keeps the traces of topology `name` for `storm trace NAME`:
    next to its entry in the registry of running local topologies."""
    from .trident._registry import entry_path

    return entry_path(local_dir, name).with_suffix(TRACE_FILE_SUFFIX)


class Tracer:
    """One worker's tracing: the wrappers it binds and the events they record."""

    def __init__(self, worker: Worker, rate: float) -> None:
        self.worker = worker
        self.rate = rate
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.task_component = {t: c.name for c in worker.spec.components.values() for t in c.tasks}

    def record(self, ev: dict[str, Any]) -> None:
        if len(self.events) >= MAX_PENDING_EVENTS:
            self.dropped += 1
            return
        self.events.append(ev)

    def take(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    # -- binding --------------------------------------------------------------
    def bind(self, ex: Executor) -> None:
        """Wrap the executor's emit, execute, ack and fail (after bind_emit)."""
        from ._acking import AckerBolt
        from ._runtime import BoltExecutor, SpoutExecutor

        if isinstance(ex, SpoutExecutor):
            self._bind_spout(ex)
        elif isinstance(ex, BoltExecutor) and not isinstance(ex.instance, AckerBolt):
            self._bind_bolt(ex)

    def _bind_bolt(self, ex: BoltExecutor) -> None:
        record = self.record
        comp, me = ex.component, ex.task_id
        inner_emit = ex.emit
        basic = ex.basic
        wall = time.time

        def emit(values: Sequence[Any], stream: str = DEFAULT_STREAM, anchors: Any = None,
                 direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
            if anchors is None:
                if basic:
                    cur = ex.current
                    if cur is not None and cur.roots and _sampled(cur.roots) is not None:
                        return self._traced_emit(ex, values, stream, (cur,), direct_task)
                return inner_emit(values, stream, anchors, direct_task, need_task_ids)
            group = (anchors,) if type(anchors) is Tuple else anchors
            for a in group:
                ar = getattr(a, "roots", None)
                if ar and _sampled(ar) is not None:
                    return self._traced_emit(ex, values, stream, group, direct_task)
            return inner_emit(values, stream, anchors, direct_task, need_task_ids)

        ex.emit = emit  # type: ignore[method-assign]
        ex.instance.emit = emit

        inner_execute = ex._execute

        def execute(tup: Tuple) -> Any:
            roots = tup.roots
            hit = _sampled(roots) if roots else None
            if hit is None:
                return inner_execute(tup)
            t0 = wall()
            try:
                result = inner_execute(tup)
            except BaseException as exc:
                record({"k": "exec", "r": hit[0], "e": hit[1], "c": comp, "t": me, "t0": t0, "t1": wall(),
                        "err": short(f"{type(exc).__name__}: {exc}", 200)})
                raise
            record({"k": "exec", "r": hit[0], "e": hit[1], "c": comp, "t": me, "t0": t0, "t1": wall()})
            return result

        ex._execute = execute

        def wrap(inner: Callable[[Tuple], None], kind: str) -> Callable[[Tuple], None]:
            def result(tup: Tuple) -> None:
                roots = tup.roots
                if roots:
                    if type(roots) is dict:
                        for r, e in roots.items():
                            if r < SAMPLED_LIMIT:
                                record({"k": kind, "r": r, "e": e, "c": comp, "t": me, "ts": wall()})
                    elif roots[0] < SAMPLED_LIMIT:
                        record({"k": kind, "r": roots[0], "e": roots[1], "c": comp, "t": me, "ts": wall()})
                inner(tup)

            return result

        ex.ack = ex.instance.ack = wrap(ex.ack, "ack")  # type: ignore[method-assign,assignment]
        ex.fail = ex.instance.fail = wrap(ex.fail, "fail")  # type: ignore[method-assign,assignment]

    def _traced_emit(self, ex: BoltExecutor, values: Sequence[Any], stream: str, anchors: Sequence[Any],
                     direct_task: int | None) -> Sequence[int]:
        """A bolt's anchored emit into a sampled tree: as _emit_general's, recording each child."""
        from ._acking import new_id
        from ._runtime import root_items

        route = ex.routes.get(stream) or ex._route(stream)
        tasks = ex._targets(route, values, direct_task)
        route.count += 1
        sid = route.meta.sid
        me = ex.task_id
        deliver = ex.worker.deliver
        now = time.time()
        text = None
        for t in tasks:
            roots: dict[int, int] = {}
            parents: dict[int, int] = {}
            for a in anchors:
                ar = a.roots
                if not ar:
                    continue
                e = new_id()
                a.ack_val = getattr(a, "ack_val", 0) ^ e
                for r, edge in root_items(ar):
                    roots[r] = roots.get(r, 0) ^ e
                    parents.setdefault(r, edge)
            for r, child in roots.items():
                if r < SAMPLED_LIMIT:
                    if text is None:
                        text = short(values)
                    self.record({"k": "emit", "r": r, "e": child, "p": parents[r], "c": ex.component, "t": me,
                                 "to": t, "tc": self.task_component.get(t, "?"), "s": stream, "v": text,
                                 "ts": now})
            if not roots:
                deliver(t, values, sid, me, None)
            elif len(roots) == 1:
                deliver(t, values, sid, me, next(iter(roots.items())))
            else:
                deliver(t, values, sid, me, roots)
        return tasks

    def _bind_spout(self, ex: SpoutExecutor) -> None:
        record = self.record
        tracked: dict[int, float] = {}  # sampled root -> perf_counter at emit
        inner_finish = ex.finish

        def finish(root: int, ok: bool) -> None:
            t0 = tracked.pop(root, None) if root < SAMPLED_LIMIT else None
            if t0 is not None:
                record({"k": "done", "r": root, "ok": bool(ok), "why": "acked" if ok else "failed",
                        "ms": (time.perf_counter() - t0) * 1000.0, "ts": time.time()})
            inner_finish(root, ok)

        ex.finish = finish  # type: ignore[method-assign]
        inner_tick = ex.tick
        pending = ex.pending

        def tick(now: float) -> None:
            inner_tick(now)
            if tracked:
                gone = [r for r in tracked if r not in pending]
                for r in gone:
                    t0 = tracked.pop(r)
                    record({"k": "done", "r": r, "ok": False, "why": "timed out",
                            "ms": (time.perf_counter() - t0) * 1000.0, "ts": time.time()})

        ex.tick = tick  # type: ignore[method-assign]
        ex._trace_tracked = tracked  # type: ignore[attr-defined]

    def spout_trace(self, ex: SpoutExecutor) -> SpoutTrace:
        """What a tracing spout's rooted emit (storm._runtime._rooted_spout_emit) asks."""
        return SpoutTrace(self, ex)


class SpoutTrace:
    """One spout task's part of tracing: a sampled share of new trees (at most
    topology.debug.sample.max.per.sec a second) gets a root below
    SAMPLED_LIMIT, every other one the top bit; a sampled tree's root and
    first edges are recorded."""

    def __init__(self, tracer: Tracer, ex: SpoutExecutor) -> None:
        from . import _acking

        self.ex = ex
        self.getrandbits = _acking._getrandbits
        self.rate = tracer.rate
        self.rand = random.Random(self.getrandbits(64)).random
        self.record = tracer.record
        self.task_component = tracer.task_component
        cap = ex.worker.conf.get(MAX_PER_SEC_KEY)
        self.max_per_sec = float(cap) if cap else float("inf")  # 0: no limit
        self.window_start = 0.0
        self.in_window = 0  # trees sampled since window_start

    def new_root(self) -> int:
        if self.rand() < self.rate:
            now = time.monotonic()
            if now - self.window_start >= 1.0:
                self.window_start, self.in_window = now, 0
            if self.in_window < self.max_per_sec:
                self.in_window += 1
                return self.getrandbits(50) | 1
        return self.getrandbits(64) | UNSAMPLED_BIT

    def begin(self, root: int, values: Sequence[Any], route: Route, msg_id: Any
              ) -> Callable[[int, int], None] | None:
        """Record a sampled tree's root; return what records its edges (None when
        the tree is not sampled)."""
        if root >= SAMPLED_LIMIT:
            return None
        ex = self.ex
        record = self.record
        comp, me, stream = ex.component, ex.task_id, route.stream
        now = time.time()
        text = short(values)
        record({"k": "root", "r": root, "c": comp, "t": me, "s": stream, "v": text,
                "m": short(msg_id, 40), "ts": now})
        ex._trace_tracked[root] = time.perf_counter()  # type: ignore[attr-defined]
        task_component = self.task_component

        def edge(t: int, e: int) -> None:
            record({"k": "emit", "r": root, "e": e, "p": 0, "c": comp, "t": me, "to": t,
                    "tc": task_component.get(t, "?"), "s": stream, "v": text, "ts": now})

        return edge


# -- process latency ------------------------------------------------------------------

class ProcessProbe:
    """Process latency of one bolt (execute start to ack, Storm's figure),
    sampled: on a sampled pass of BoltExecutor.run the first queued tuple is
    watched by swapping the executor's ack/fail for a checking one, which puts
    the fast ack back as soon as that tuple is acked or failed. Unsampled acks
    run the plain fast path."""

    __slots__ = ("ex", "stats", "target", "t0", "saved_ack", "saved_fail")

    def __init__(self, ex: BoltExecutor) -> None:
        self.ex = ex
        self.stats = ex.stats
        self.target: Any = None
        self.t0 = 0
        self.saved_ack: Any = None
        self.saved_fail: Any = None

    def __call__(self, t0: int) -> None:
        """Watch the tuple at the head of the inbox; `t0` is the pass's perf_counter_ns."""
        ex = self.ex
        try:
            tup = ex.inbox[0]
        except IndexError:
            return
        if tup.meta is TICK_META:
            return
        self.target = tup
        self.t0 = t0
        if self.saved_ack is None:
            inst = ex.instance
            if inst.ack != ex.ack or inst.fail != ex.fail:  # != : bound methods are made anew
                # The bolt routes its acks itself (a stateful bolt holds them
                # until a checkpoint commits): not probed.
                return
            self.saved_ack, self.saved_fail = ex.ack, ex.fail
            ex.ack = inst.ack = self.ack  # type: ignore[method-assign]
            ex.fail = inst.fail = self.fail  # type: ignore[method-assign]

    def _restore(self) -> None:
        ex = self.ex
        ex.ack = ex.instance.ack = self.saved_ack  # type: ignore[method-assign]
        ex.fail = ex.instance.fail = self.saved_fail  # type: ignore[method-assign]
        self.saved_ack = self.saved_fail = self.target = None

    # Code may keep a reference to these (a windowed bolt keeps `self.ack`), so
    # they work unarmed too: then the executor's own ack / fail is back in place.
    def ack(self, tup: Tuple) -> None:
        inner = self.saved_ack
        if inner is None:
            self.ex.ack(tup)
            return
        if tup is self.target:
            stats = self.stats
            stats.process_ns += time.perf_counter_ns() - self.t0
            stats.process_samples += 1
            self._restore()
        inner(tup)

    def fail(self, tup: Tuple) -> None:
        inner = self.saved_fail
        if inner is None:
            self.ex.fail(tup)
            return
        if tup is self.target:
            self._restore()
        inner(tup)


# -- where reports arrive ------------------------------------------------------------

class TraceStore:
    """The events of the last `keep` sampled trees (by first event), at most
    `max_events` each. Fed with the events of workers' reports."""

    def __init__(self, keep: int = KEEP_TREES, max_events: int = MAX_EVENTS_PER_TREE) -> None:
        self.keep = keep
        self.max_events = max_events
        self.trees: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.truncated: set[int] = set()
        self.changes = 0

    def add(self, events: Iterable[Any]) -> None:
        for ev in events:
            if not isinstance(ev, dict):
                continue
            try:
                r = int(ev["r"])
            except (KeyError, TypeError, ValueError):
                continue
            evs = self.trees.get(r)
            if evs is None:
                evs = self.trees[r] = []
                while len(self.trees) > self.keep:
                    old, _ = self.trees.popitem(last=False)
                    self.truncated.discard(old)
            if len(evs) >= self.max_events:
                self.truncated.add(r)
                continue
            evs.append(ev)
            self.changes += 1

    def events(self) -> list[dict[str, Any]]:
        return [ev for evs in self.trees.values() for ev in evs]

    def __len__(self) -> int:
        return len(self.trees)


def build_trees(events: Iterable[Mapping[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """Nested trees from events (any order, any number of workers), most recent
    first; trees without their spout's record are left out."""
    by_root: dict[int, list[Mapping[str, Any]]] = {}
    for ev in events:
        try:
            by_root.setdefault(int(ev["r"]), []).append(ev)
        except (KeyError, TypeError, ValueError):
            continue
    trees = []
    for root, evs in by_root.items():
        head = next((e for e in evs if e.get("k") == "root"), None)
        if head is None:
            continue
        nodes: dict[int, dict[str, Any]] = {}
        order: list[int] = []

        def node(edge: int, nodes: dict[int, dict[str, Any]] = nodes, order: list[int] = order
                 ) -> dict[str, Any]:
            n = nodes.get(edge)
            if n is None:
                n = nodes[edge] = {"edge": f"{edge:016x}", "component": None, "task": None, "stream": None,
                                   "values": None, "from": None, "parent": None, "emitted": None,
                                   "exec_start": None, "exec_end": None, "result": None, "error": None,
                                   "children": []}
                order.append(edge)
            return n

        done = None
        for ev in evs:
            k = ev.get("k")
            if k == "emit":
                n = node(int(ev["e"]))
                n.update(component=ev.get("tc"), task=ev.get("to"), stream=ev.get("s"), values=ev.get("v"),
                         emitted=ev.get("ts"), parent=int(ev.get("p") or 0),
                         **{"from": f"{ev.get('c')}[{ev.get('t')}]"})
            elif k == "exec":
                n = node(int(ev["e"]))
                n.update(exec_start=ev.get("t0"), exec_end=ev.get("t1"))
                n["component"] = n["component"] or ev.get("c")
                n["task"] = n["task"] if n["task"] is not None else ev.get("t")
                if ev.get("err"):
                    n["error"] = ev.get("err")
            elif k in ("ack", "fail"):
                n = node(int(ev["e"]))
                n["result"] = "acked" if k == "ack" else "failed"
                n["acked_at"] = ev.get("ts")
                n["component"] = n["component"] or ev.get("c")
                n["task"] = n["task"] if n["task"] is not None else ev.get("t")
            elif k == "done":
                done = ev
        top: list[dict[str, Any]] = []
        for edge in order:
            n = nodes[edge]
            parent = n.pop("parent", None)
            holder = nodes.get(parent) if parent else None
            (holder["children"] if holder is not None else top).append(n)
        for n in nodes.values():
            n["children"].sort(key=lambda c: (c["emitted"] or 0))
        top.sort(key=lambda c: (c["emitted"] or 0))
        outcome = "pending"
        complete_ms = None
        if done is not None:
            outcome = str(done.get("why") or ("acked" if done.get("ok") else "failed"))
            complete_ms = done.get("ms")
        trees.append({"root": f"{root:016x}", "spout": head.get("c"), "task": head.get("t"),
                      "stream": head.get("s"), "values": head.get("v"), "msg_id": head.get("m"),
                      "started": head.get("ts"), "outcome": outcome, "complete_ms": complete_ms,
                      "events": len(evs), "nodes": top})
    trees.sort(key=lambda t: -float(t["started"] or 0))  # type: ignore[arg-type]
    return trees[:limit] if limit is not None else trees


def render_tree(tree: Mapping[str, Any]) -> Any:
    """A rich Tree of one built tree: spout, then each tuple with its bolt."""
    from rich.text import Text
    from rich.tree import Tree

    t0 = tree.get("started") or 0.0

    def rel(ts: Any) -> str:
        return "-" if ts is None else f"+{(float(ts) - t0) * 1000:.1f}ms"

    outcome = tree.get("outcome")
    style = {"acked": "green", "failed": "red", "timed out": "red", "pending": "yellow"}.get(str(outcome), "")
    head = Text()
    head.append(f"{tree.get('spout')}[{tree.get('task')}]", style="bold cyan")
    head.append(f" {tree.get('stream')} {tree.get('values')}  msg {tree.get('msg_id')}  ")
    head.append(str(outcome), style=style)
    if tree.get("complete_ms") is not None and outcome == "acked":
        head.append(f" in {float(tree['complete_ms']):.1f} ms", style=style)
    started = tree.get("started")
    if isinstance(started, (int, float)):
        head.append(time.strftime("  %H:%M:%S", time.localtime(started)), style="dim")
    head.append(f"  root {tree.get('root')}", style="dim")
    out = Tree(head)

    def add(parent: Any, n: Mapping[str, Any]) -> None:
        label = Text()
        label.append(f"{n.get('component')}[{n.get('task')}]", style="bold")
        label.append(f" {n.get('stream')} {n.get('values')}")
        label.append(f"  emitted {rel(n.get('emitted'))}", style="dim")
        if n.get("exec_start") is not None:
            label.append(f" exec {rel(n.get('exec_start'))}..{rel(n.get('exec_end'))}", style="dim")
        result = n.get("result")
        label.append("  ")
        label.append(str(result or "not acked"),
                     style={"acked": "green", "failed": "bold red"}.get(str(result), "yellow"))
        if n.get("error"):
            label.append(f"  {n['error']}", style="red")
        branch = parent.add(label)
        for c in n.get("children") or []:
            add(branch, c)

    for n in tree.get("nodes") or []:
        add(out, n)
    return out
