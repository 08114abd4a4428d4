"""Tuple-tree tracing (`topology.debug.sample`, `storm trace`) and the process
latency probe. Nothing here runs unless asked for.

**Which trees are traced.** A spout that samples a tree picks a root id below
2**50 (its top 14 bits zero; below 2**51 after the acker choice); with tracing on, every other root gets its top bit
set, so any worker recognises a sampled tree from the root id alone, with no
flag carried by the tuples. (Roots drawn elsewhere, e.g. a direct-stream emit
with a msg_id, fall below the mark with a chance of 2**-13: their events are
kept by no tree, because a tree is shown only with its spout's record.) The low
bits stay free for `_rooted_spout_emit`'s choice of a local acker.

**Zero cost when off.** Tracing is a set of task hooks (storm._runtime.hooks)
given to a worker only when `topology.debug.sample > 0` and acking is on
(`traced_worker`); otherwise every task runs the plain path. With tracing on,
every task runs the hooked path and each emit, execute and ack pays one test
of the tuple's root; only sampled trees pay for records.

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

import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._runtime.hooks import TaskHooks

if TYPE_CHECKING:
    from ._runtime import Worker

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
    "TraceStore",
    "Tracer",
    "build_trees",
    "make_tracer",
    "traced_worker",
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


def make_tracer(spec: Any) -> Tracer | None:
    """The tracer of a worker of `spec`, or None (tracing off, or acking off: no trees)."""
    rate = sample_rate(spec.config)
    if rate <= 0 or trace_problem(spec) is not None:
        return None
    return Tracer(spec, rate)


def traced_worker(spec: Any, assignment: dict[int, int], index: int, transport: Any = None
                  ) -> tuple[Worker, Tracer | None]:
    """A Worker of `spec` with its tracer bound (None when tracing is off)."""
    from ._runtime import Worker

    tracer = make_tracer(spec)
    worker = Worker(spec, assignment, index, transport,
                    hooks=None if tracer is None else tracer.hooks_for)
    return worker, tracer


def trace_file(local_dir: Any, name: str) -> Any:
    """Where `storm local` keeps the traces of topology `name` for `storm trace NAME`:
    next to its entry in the registry of running local topologies."""
    from ._registry import entry_path

    return entry_path(local_dir, name).with_suffix(TRACE_FILE_SUFFIX)


class Tracer:
    """One worker's tracing: the task hooks it gives each spout and bolt task,
    and the events they record."""

    def __init__(self, spec: Any, rate: float) -> None:
        self.spec = spec
        self.rate = rate
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.task_component = {t: c.name for c in spec.components.values() for t in c.tasks}
        cap = spec.config.get(MAX_PER_SEC_KEY)
        self.max_per_sec = float(cap) if cap else float("inf")  # 0: no limit

    def record(self, ev: dict[str, Any]) -> None:
        if len(self.events) >= MAX_PENDING_EVENTS:
            self.dropped += 1
            return
        self.events.append(ev)

    def take(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    def hooks_for(self, task: Any) -> TaskHooks | None:
        """The hook factory a Worker asks once per task (the acker is not traced)."""
        if task.system:
            return None
        if task.is_spout:
            return SpoutTrace(self, task.component, task.task_id)
        return BoltTrace(self, task.component, task.task_id)


def _record_sampled(record: Callable[[dict[str, Any]], None], kind: str, roots: Any, comp: str,
                    me: int) -> None:
    if type(roots) is dict:
        for r, e in roots.items():
            if r < SAMPLED_LIMIT:
                record({"k": kind, "r": r, "e": e, "c": comp, "t": me, "ts": time.time()})
    elif roots[0] < SAMPLED_LIMIT:
        record({"k": kind, "r": roots[0], "e": roots[1], "c": comp, "t": me, "ts": time.time()})


class BoltTrace(TaskHooks):
    """A bolt task's part of tracing: the executes, children and acks of sampled trees."""

    def __init__(self, tracer: Tracer, component: str, task_id: int) -> None:
        self.record = tracer.record
        self.task_component = tracer.task_component
        self.comp = component
        self.me = task_id

    def edge(self, task: Any, stream: str, values: Sequence[Any], target: int, roots: Any,
             anchors: Sequence[Any]) -> None:
        items = roots.items() if type(roots) is dict else (roots,)
        text = None
        now = time.time()
        for r, child in items:
            if r >= SAMPLED_LIMIT:
                continue
            parent = 0
            for a in anchors:
                ar = a.roots
                if not ar:
                    continue
                if type(ar) is dict:
                    if r in ar:
                        parent = ar[r]
                        break
                elif ar[0] == r:
                    parent = ar[1]
                    break
            if text is None:
                text = short(values)
            self.record({"k": "emit", "r": r, "e": child, "p": parent, "c": self.comp, "t": self.me,
                         "to": target, "tc": self.task_component.get(target, "?"), "s": stream,
                         "v": text, "ts": now})

    def before_execute(self, task: Any, tup: Any) -> Any:
        roots = tup.roots
        hit = _sampled(roots) if roots else None
        return None if hit is None else (hit, time.time())

    def after_execute(self, task: Any, tup: Any, token: Any, error: BaseException | None) -> None:
        if token is None:
            return
        (r, e), t0 = token
        ev = {"k": "exec", "r": r, "e": e, "c": self.comp, "t": self.me, "t0": t0, "t1": time.time()}
        if error is not None:
            ev["err"] = short(f"{type(error).__name__}: {error}", 200)
        self.record(ev)

    def acked(self, task: Any, tup: Any) -> None:
        if tup.roots:
            _record_sampled(self.record, "ack", tup.roots, self.comp, self.me)

    def failed(self, task: Any, tup: Any) -> None:
        if tup.roots:
            _record_sampled(self.record, "fail", tup.roots, self.comp, self.me)


class SpoutTrace(TaskHooks):
    """One spout task's part of tracing: a sampled share of new trees (at most
    topology.debug.sample.max.per.sec a second) gets a root below
    SAMPLED_LIMIT, every other one the top bit; a sampled tree's root, first
    edges and outcome are recorded."""

    def __init__(self, tracer: Tracer, component: str, task_id: int) -> None:
        self.ids = random.Random(int.from_bytes(os.urandom(16), "little"))
        self.rate = tracer.rate
        self.rand = random.Random(self.ids.getrandbits(64)).random
        self.record = tracer.record
        self.task_component = tracer.task_component
        self.max_per_sec = tracer.max_per_sec
        self.comp = component
        self.me = task_id
        self.window_start = 0.0
        self.in_window = 0  # trees sampled since window_start
        self.tracked: dict[int, float] = {}  # sampled root -> perf_counter at emit

    def new_root(self, task: Any) -> int | None:
        if self.rand() < self.rate:
            now = time.monotonic()
            if now - self.window_start >= 1.0:
                self.window_start, self.in_window = now, 0
            if self.in_window < self.max_per_sec:
                self.in_window += 1
                return self.ids.getrandbits(50) | 1
        return self.ids.getrandbits(64) | UNSAMPLED_BIT

    def tree_started(self, task: Any, root: int, stream: str, values: Sequence[Any], msg_id: Any,
                     edges: Sequence[tuple[int, int]]) -> None:
        if root >= SAMPLED_LIMIT:
            return
        record = self.record
        now = time.time()
        text = short(values)
        record({"k": "root", "r": root, "c": self.comp, "t": self.me, "s": stream, "v": text,
                "m": short(msg_id, 40), "ts": now})
        self.tracked[root] = time.perf_counter()
        for t, e in edges:
            record({"k": "emit", "r": root, "e": e, "p": 0, "c": self.comp, "t": self.me, "to": t,
                    "tc": self.task_component.get(t, "?"), "s": stream, "v": text, "ts": now})

    def tree_done(self, task: Any, root: int, ok: bool, why: str) -> None:
        t0 = self.tracked.pop(root, None) if root < SAMPLED_LIMIT else None
        if t0 is not None:
            self.record({"k": "done", "r": root, "ok": bool(ok), "why": why,
                         "ms": (time.perf_counter() - t0) * 1000.0, "ts": time.time()})


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
