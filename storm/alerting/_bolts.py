"""The bolts of an alerting topology: `RuleMatchBolt` turns events into
(rule, key, ts, value) observations and broadcasts its watermark;
`RuleEvalBolt` keeps the rule state of its keys (a RuleEngine) and emits alert
changes. Rules come from the config key ``alerting.rules`` (a YAML file) or the
class attribute ``rules``. A rules file is watched: an edit is applied at the
next tick (_reload.py), and the evaluators apply the silences kept beside it
(_silences.py). This module owns only these bolts."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .. import Bolt, Grouping, Stream
from .._component import ComponentSpec
from .._context import TopologyContext
from .._tuple import Tuple
from ..stateful import KeyValueState, StatefulBolt
from ..windowing import Watermarks
from ._engine import FIRING, Alert, RuleEngine, StateSize, same_definition
from ._reload import FileWatch, RulesWatcher, load_for_task, remove_status, write_status
from ._rules import RuleError, RuleSet, load_rules
from ._silences import SilenceError, SilenceSet, load_silences, silences_path

RULES_KEY = "alerting.rules"
#: Wall-clock seconds without events after which the evaluator lets event time
#: follow the wall clock (so absence rules fire when everything stops); null: never.
IDLE_KEY = "alerting.idle.secs"
#: false: read the rules file once at start (default true: apply its edits while running).
RELOAD_KEY = "alerting.rules.reload"
WATERMARK_STREAM = "watermark"
#: Seconds between two writes of an evaluator's status for `storm alerts list`.
STATUS_SECS = 1.0
#: Firing keys per rule an evaluator's status lists (all are counted).
STATUS_KEYS = 100
#: state_size(): the engine's state is counted again after this many times as
#: long as the last count took (a count walks every (rule, key) pair).
SIZE_REFRESH = 50
#: An observation tuple: one rule's (``rule`` its name) or, from RuleMatchBolt,
#: every rule an event matched for one key (``rule`` is BATCH and ``value`` is
#: ``[names, values]``). A batch keeps the tuples per event at one per key, not
#: one per rule; grouping on ("rule", "key") then routes by key, so each
#: (rule, key) still has one evaluator.
OBSERVATION_FIELDS = ("rule", "key", "ts", "value")
#: The ``rule`` field of a batch of observations (no rule is named "").
BATCH = ""
ALERT_FIELDS = ("id", "rule", "key", "state", "alert")


def rules_from_conf(conf: Mapping[str, Any], default: RuleSet | None = None) -> RuleSet:
    """The rules named by ``alerting.rules`` (a path), else ``default``."""
    path = conf.get(RULES_KEY)
    if path:
        return load_rules(str(path))
    if default is None:
        raise RuleError(
            f"no alert rules: set the config key '{RULES_KEY}' to a rules file, "
            f"e.g. -c {RULES_KEY}=conf/alerts.example.yaml"
        )
    return default


def rules_changes(old: RuleSet, new: RuleSet) -> str:
    """``added: a; changed: b; removed: c`` between two rule sets (for the log);
    a rule whose filter, key and condition stayed is "updated (state kept)"."""
    before, after = old.by_name(), new.by_name()
    parts = []
    edited = [n for n in after if n in before and before[n] != after[n]]
    for label, names in (("added", [n for n in after if n not in before]),
                         ("changed", [n for n in edited if not same_definition(before[n], after[n])]),
                         ("updated (state kept)", [n for n in edited if same_definition(before[n], after[n])]),
                         ("removed", [n for n in before if n not in after])):
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    if (old.time_field, old.lag) != (new.time_field, new.lag):
        parts.append(f"time_field {new.time_field}, lag {new.lag:g}")
    return "; ".join(parts) or "no rule changed"


class _RulesFile:
    """The rules file a task runs and watches (both bolts have one)."""

    def __init__(self, bolt: Bolt, conf: Mapping[str, Any], default: RuleSet | None) -> None:
        self.bolt = bolt
        path = conf.get(RULES_KEY)
        self.path = Path(str(path)) if path else None
        self.watcher: RulesWatcher | None = None
        if self.path is None:
            self.rules = rules_from_conf(conf, default)
            return
        self.rules, errors = load_for_task(self.path)
        if errors:
            self.reject(errors, "running the last good rules instead")
        if conf.get(RELOAD_KEY, True):
            self.watcher = RulesWatcher(self.path, self.rules)

    def poll(self, force: bool = False) -> RuleSet | None:
        """New rules to apply now, if the file changed to a valid one."""
        if self.watcher is None:
            return None
        found = self.watcher.poll(force)
        if found is None:
            return None
        if found.rules is None:
            self.reject(found.errors, "the running rules stay as they were")
            return None
        old, self.rules = self.rules, found.rules
        self.bolt.log(f"rules file '{self.path}' reloaded: {rules_changes(old, found.rules)}")
        return found.rules

    def reject(self, errors: list[str], outcome: str) -> None:
        # The errors first, naming the file by its name: the dashboard shows
        # the start of the line; the log has the whole of it.
        assert self.path is not None
        shown = [e.replace(str(self.path), self.path.name) for e in errors]
        self.bolt.report_error(RuleError(
            "; ".join(shown) + f" -- edit of {self.path} rejected, {outcome}"))


class RuleMatchBolt(Bolt):
    """Matches each event (a dict in field ``event`` or in the first field, else
    the tuple's fields as a dict) against every rule's filter; emits one
    observation tuple per key of the matching rules (a batch of them, see
    OBSERVATION_FIELDS), anchored to the event. Every tick it sends its newest event time to every
    evaluator task on the ``watermark`` stream."""

    # The watermark stream is ordered (Stream.ordered): a watermark must never reach
    # an evaluator in another worker ahead of the observations emitted before it
    # (they would then be late: an alert resolved on an empty window).
    outputs: ClassVar[Any] = [Stream(OBSERVATION_FIELDS), Stream(("task", "ts"), name=WATERMARK_STREAM, ordered=True)]
    rules: ClassVar[RuleSet | None] = None

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.rules_file = _RulesFile(self, conf, type(self).rules)
        self.task = context.task_id
        self.newest = -math.inf
        self.matched = 0
        self.unmatched = 0
        self._use(self.rules_file.rules)

    def _use(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.time_field = ruleset.time_field
        # Index rules by the value of one filter field, so 100 rules cost a dict
        # lookup and the few rules that can match, not 100 filter checks.
        self._by_field: str | None = None
        self._index: dict[Any, list[Any]] = {}
        self._always: list[Any] = []
        self._build_index()

    def _build_index(self) -> None:
        counts: dict[str, int] = {}
        for r in self.ruleset.rules:
            for f in r.filter:
                counts[f] = counts.get(f, 0) + 1
        if counts:
            self._by_field = max(sorted(counts), key=lambda f: counts[f])
        for r in self.ruleset.rules:
            cond = r.condition
            entry = (r, r.name, cond.field, {k: v for k, v in r.filter.items() if k != self._by_field},
                     cond if cond.kind == "sequence" else None)
            if self._by_field is not None and self._by_field in r.filter:
                for v in r.filter[self._by_field]:
                    self._index.setdefault(v, []).append(entry)
            else:
                self._always.append(entry)

    def execute(self, tup: Tuple) -> None:
        if tup.is_tick:
            reloaded = self.rules_file.poll()
            if reloaded is not None:
                self._use(reloaded)
            if math.isfinite(self.newest):
                self.emit([self.task, self.newest], stream=WATERMARK_STREAM)
            return
        event = tup.get("event")
        if not isinstance(event, Mapping):
            first = tup.values[0] if tup.values else None
            event = first if isinstance(first, Mapping) else tup.as_dict()
        ts_raw = event.get(self.time_field)
        ts = float(ts_raw) if isinstance(ts_raw, (int, float)) and not isinstance(ts_raw, bool) else time.time()
        if ts > self.newest:
            self.newest = ts
        candidates = self._always
        if self._by_field is not None:
            candidates = self._index.get(event.get(self._by_field), []) + self._always
        # One tuple per key the event's rules are keyed by (usually one), carrying
        # every matched rule's name and value: see OBSERVATION_FIELDS.
        names: list[str] = []
        values: list[Any] = []
        key0: str | None = None
        others: dict[str, tuple[list[str], list[Any]]] | None = None
        n = 0
        fields0: tuple[str, ...] | None = None  # the key fields key0 was made of
        for rule, name, field, rest, sequence in candidates:
            if rest and not all(event.get(f) in allowed for f, allowed in rest.items()):
                continue
            if sequence is not None:
                steps = sequence.step_matches(event)
                if not steps:
                    continue
                value: Any = [steps, event.get(sequence.id_field)]
            elif field:
                value = event.get(field)
                if not isinstance(value, (int, float)):
                    continue  # the rule aggregates a field this event lacks
            else:
                value = None
            # Rules keyed by the same fields (most) share the event's key string.
            if key0 is not None and rule.key == fields0:
                key = key0
            else:
                key = rule.key_of(event)
                if key0 is None:
                    fields0 = rule.key
            n += 1
            if key0 is None or key == key0:
                key0 = key
                names.append(name)
                values.append(value)
            else:
                if others is None:
                    others = {}
                batch = others.get(key)
                if batch is None:
                    batch = others[key] = ([], [])
                batch[0].append(name)
                batch[1].append(value)
        if key0 is not None:
            emit = self.emit
            emit([BATCH, key0, ts, [names, values]], anchors=[tup])
            if others:
                for key, (ns, vs) in others.items():
                    emit([BATCH, key, ts, [ns, vs]], anchors=[tup])
        if n:
            self.matched += 1
        else:
            self.unmatched += 1
        self.ack(tup)


class RuleEvalBolt(Bolt):
    """Keeps the rule state of the (rule, key) pairs routed to it. Event time is
    the minimum over the match tasks of the newest time each reported (minus the
    rules file's ``lag``); when it passes a window end the rules are evaluated and
    alert changes are emitted, anchored to the tuple that moved the watermark.
    Inputs are acked at once: rule state lives in memory and is lost with the
    worker; StatefulRuleEvalBolt checkpoints it."""

    outputs: ClassVar[Any] = list(ALERT_FIELDS)
    rules: ClassVar[RuleSet | None] = None

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.rules_file = _RulesFile(self, conf, type(self).rules)
        self.ruleset = self.rules_file.rules
        self._names = frozenset(r.name for r in self.ruleset.rules)  # the rules this task runs
        self.engine = RuleEngine(self.ruleset)
        self._size: StateSize | None = None  # the last count of the engine's state (state_size)
        self._size_next = 0.0
        self.topology = context.topology_name
        self.task = context.task_id
        self.unknown_rule = 0  # observations of a rule this task does not have (an edit on its way)
        self._forced_at = -math.inf
        self.muted = 0  # alert changes a silence kept from the sinks
        self._muted_ids: set[str] = set()
        self._resolved: dict[str, dict[str, float]] = {}  # rule -> key -> when (the newest few)
        # rule -> keys firing now, kept from the alert changes (a status costs
        # what changed, not a scan of every key)
        self._firing: dict[str, set[str]] = {}
        self.silences = SilenceSet()
        self._silence_watch: FileWatch | None = None
        self._status_at = 0.0
        if self.rules_file.path is not None:
            self._silence_watch = FileWatch(silences_path(self.rules_file.path))
            self._read_silences()
        # Event time comes from the match tasks (observations and their watermarks),
        # not from other inputs such as a checkpoint spout.
        sources = [c for (c, s) in context.get_this_sources()
                   if s in ("default", WATERMARK_STREAM) and not c.startswith("__")]
        self._mark_tasks = [t for c in sorted(set(sources)) for t in context.get_component_tasks(c)]
        self.watermarks = Watermarks(self._mark_tasks, self.ruleset.lag)
        idle = conf.get(IDLE_KEY)
        self.idle_secs: float | None = float(idle) if idle else None
        self._last_input = time.monotonic()
        self._last_wall = time.time()

    def execute(self, tup: Tuple) -> None:
        if tup.is_tick:
            self._on_tick()
            return
        marks = self.watermarks
        self._last_input = time.monotonic()
        if tup.stream == WATERMARK_STREAM:
            marks.observe(tup.values[0], float(tup.values[1]))
        else:
            rule, key, ts, value = tup.values
            marks.observe(tup.source_task, ts)
            if rule == BATCH:
                names = self._names
                observe = self.engine.observe
                for rule, v in zip(value[0], value[1], strict=True):
                    if rule in names:
                        observe(rule, key, ts, v)
                    else:
                        self._unknown_rule(rule, key, ts, v)
                        names = self._names  # a reload may have changed them
            elif rule in self._names:
                self.engine.observe(rule, key, ts, value)
            else:
                self._unknown_rule(rule, key, ts, value)
        wm = marks.update()
        if wm >= self.engine.next_due():
            self._emit_alerts(self.engine.advance(wm), tup)
        self.ack(tup)

    def state_size(self) -> StateSize:
        """The alert state this task holds: (rule, key) pairs, panes, open
        sequence matches, approximate bytes.

        The worker asks every metrics interval, and the count walks every
        (rule, key) pair (about a quarter of a second at 580,000 pairs), so
        it is taken again only once SIZE_REFRESH times as long as the last
        count took has passed (at least a second): a few percent of the
        task's time at most, a figure up to that many seconds old."""
        now = time.monotonic()
        if self._size is None or now >= self._size_next:
            t0 = time.perf_counter()
            self._size = self.engine.state_size()
            self._size_next = now + max(1.0, SIZE_REFRESH * (time.perf_counter() - t0))
        return self._size

    def _unknown_rule(self, rule: str, key: str, ts: float, value: Any) -> None:
        """A match task applied an edit of the rules file before this task did
        (or still runs a rule this task dropped): look at the file now, at
        most every 0.1 s (until the match tasks follow a removal, every
        observation of the removed rule comes here)."""
        now = time.monotonic()
        if now - self._forced_at >= 0.1:
            self._forced_at = now
            self._reload(force=True)
        if rule in self._names:
            self.engine.observe(rule, key, ts, value)
        else:
            self.unknown_rule += 1

    def _reload(self, force: bool = False) -> None:
        new = self.rules_file.poll(force)
        if new is None:
            return
        self.ruleset = new
        self._names = frozenset(r.name for r in new.rules)
        self.watermarks.lag = new.lag
        self._emit_alerts(self.engine.replace_rules(new), None)

    def _read_silences(self) -> None:
        assert self.rules_file.path is not None
        try:
            self.silences = SilenceSet(load_silences(silences_path(self.rules_file.path)))
        except SilenceError as exc:
            self.report_error(SilenceError(f"{exc}; the silences stay as they were"))

    def _on_tick(self) -> None:
        self._reload()
        if self._silence_watch is not None and self._silence_watch.changed():
            self._read_silences()
        now = time.time()
        if self.rules_file.path is not None and now - self._status_at >= STATUS_SECS:
            self._status_at = now
            write_status(self.rules_file.path, self.topology, self.task, self.status(now))
        if self.idle_secs is None:
            return
        idle = time.monotonic() - self._last_input
        if idle >= self.idle_secs:
            # No input for a while: let event time follow the wall clock from the
            # last known watermark, so silences are noticed.
            wm = max(self.watermarks.current, self.engine.watermark) + idle
            self._last_input = time.monotonic()
            self.watermarks.current = wm
            self._emit_alerts(self.engine.advance(wm), None)

    def _emit_alerts(self, alerts: list[Alert], anchor: Tuple | None) -> None:
        anchors = [anchor] if anchor is not None else None
        silences = self.silences
        for a in alerts:
            if a.state == FIRING:
                if not a.events:  # a sequence match fires once and never resolves: not "firing"
                    self._firing.setdefault(a.rule, set()).add(a.key)
            else:
                self._firing.get(a.rule, set()).discard(a.key)
                resolved = self._resolved.setdefault(a.rule, {})
                resolved.pop(a.key, None)
                resolved[a.key] = a.ts
                if len(resolved) > 50:
                    del resolved[next(iter(resolved))]
                if a.id in self._muted_ids:  # its firing was never sent: neither is its end
                    self._muted_ids.discard(a.id)
                    self.muted += 1
                    continue
            if silences.items and silences.mutes(a.rule, a.key):
                if a.state == FIRING:
                    self._muted_ids.add(a.id)
                self.muted += 1
                continue
            self.emit([a.id, a.rule, a.key, a.state, a.to_dict()], anchors=anchors)

    def status(self, now: float | None = None) -> dict[str, Any]:
        """What `storm alerts list` shows of this task: per rule its firing keys
        (and whether a silence mutes them) and the keys resolved lately."""
        now = time.time() if now is None else now
        rules: dict[str, dict[str, Any]] = {r.name: {"firing": [], "resolved": {}} for r in self.ruleset.rules}
        for rule, keys in self._firing.items():
            if rule in rules:
                # At most STATUS_KEYS keys per rule (an alert storm must not make every tick slow).
                shown = sorted(keys)[:STATUS_KEYS] if len(keys) > STATUS_KEYS else sorted(keys)
                rules[rule]["firing"] = [[k, self.silences.mutes(rule, k, now)] for k in shown]
                rules[rule]["firing_count"] = len(keys)
        for rule, when in self._resolved.items():
            if rule in rules:
                rules[rule]["resolved"] = dict(when)
        wm = self.engine.watermark
        return {"topology": self.topology, "task": self.task, "updated": now,
                "watermark": wm if math.isfinite(wm) else None, "rules": rules,
                "silences": [s.to_dict() for s in self.silences.active(now)],
                "muted": self.muted, "reloads": self.rules_file.watcher.reloads if self.rules_file.watcher else 0}

    def cleanup(self) -> None:
        if self.rules_file.path is not None:
            remove_status(self.rules_file.path, self.topology, self.task)


def alerting_specs(source: ComponentSpec, par: int = 1, rules: RuleSet | None = None,
                   tick_secs: float = 1.0) -> tuple[ComponentSpec, ComponentSpec]:
    """The match and evaluate specs wired behind ``source`` (fields grouping on
    rule and key; watermarks to every evaluator)."""
    match_cls: type[RuleMatchBolt] = RuleMatchBolt
    eval_cls: type[RuleEvalBolt] = RuleEvalBolt
    if rules is not None:
        match_cls = type("RuleMatchBolt", (RuleMatchBolt,), {"rules": rules})
        eval_cls = type("RuleEvalBolt", (RuleEvalBolt,), {"rules": rules})
    match = match_cls.spec(inputs=[source], par=par,
                           config={"topology.tick.tuple.freq.secs": tick_secs})
    evaluate = eval_cls.spec(inputs={match: Grouping.fields("rule", "key"),
                                     match[WATERMARK_STREAM]: Grouping.all()},
                             par=par, config={"topology.tick.tuple.freq.secs": tick_secs})
    return match, evaluate


class StatefulRuleEvalBolt(StatefulBolt, RuleEvalBolt):
    """RuleEvalBolt whose rule state (values in the windows, which alerts are
    firing, cooldowns, the watermark) is saved at every checkpoint and restored
    after a restart, so an alert that was firing does not fire again. Inputs are
    acked once the checkpoint holding them is saved (storm.stateful)."""

    STATE_KEY: ClassVar[str] = "engine"

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        RuleEvalBolt.prepare(self, conf, context)
        StatefulBolt.prepare(self, conf, context)

    def init_state(self, state: KeyValueState) -> None:
        # Called at start and after every rollback: rebuild from the committed
        # snapshot alone, event time included (the watermark of the snapshot).
        self.engine = RuleEngine(self.ruleset)
        self._size = None  # a new engine: counted at the next ask
        self.watermarks = Watermarks(self._mark_tasks, self.ruleset.lag)
        self._firing, self._muted_ids = {}, set()
        snap = state.get(self.STATE_KEY)
        if snap:
            # A rule whose definition changed since the snapshot (an edit of the
            # rules file) starts empty: its panes meant other windows.
            saved_defs = snap.get("defs")
            if isinstance(saved_defs, dict):
                now_defs = _definitions(self.ruleset)
                snap = {**snap, "rules": {n: d for n, d in (snap.get("rules") or {}).items()
                                          if saved_defs.get(n) == now_defs.get(n)}}
            self._muted_ids = set(snap.get("muted") or [])
            self.engine.restore(snap)
            for rule, key in self.engine.firing():
                self._firing.setdefault(rule, set()).add(key)
            self.watermarks.current = self.engine.watermark
            self.restored = True
        else:
            self.restored = False

    def pre_commit(self, txid: int) -> None:
        snap = self.engine.snapshot()
        snap["defs"] = _definitions(self.ruleset)
        snap["muted"] = sorted(self._muted_ids)
        self.state[self.STATE_KEY] = snap

    def execute(self, tup: Tuple) -> None:
        RuleEvalBolt.execute(self, tup)

    def cleanup(self) -> None:
        RuleEvalBolt.cleanup(self)
        StatefulBolt.cleanup(self)


def _definitions(rules: RuleSet) -> dict[str, str]:
    """Per rule, what its saved state depends on (filter, key, condition)."""
    return {r.name: repr((sorted(r.filter.items()), r.key, r.condition)) for r in rules.rules}
