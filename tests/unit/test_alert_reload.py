"""Hot reload, silences, whole-file checks and URL sources/sinks of
`storm alerts`, in one process (the worker-process runs are in
tests/integration/test_alerts_cli.py)."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from storm import Grouping, Spout, Topology
from storm.alerting import WATERMARK_STREAM, RuleEngine, RuleEvalBolt, RuleMatchBolt, parse_rules
from storm.alerting._reload import LAST_GOOD, RulesWatcher, load_for_task, running_rules, state_dir
from storm.alerting._rules import RuleError, check_rules_text
from storm.alerting._silences import (
    SilenceError,
    SilenceSet,
    add_silence,
    load_silences,
    parse_duration,
    silences_path,
)
from storm.alerting._topology import alerts_topology
from storm.alerting._urls import UrlError, sink_spec, source_spec
from storm.kafka import KafkaSpout
from storm.sinks import FileSink, RedisSink, StdoutSink, WebhookSink
from storm.sources import HttpSpout, RedisStreamSpout, TailSpout
from storm.testing import TestTopology

HIGH = {"name": "high", "key": "host", "filter": {"metric": "cpu"},
        "condition": {"kind": "threshold", "aggregate": "avg", "field": "v", "window": 10, "op": ">", "value": 90}}
BUSY = {"name": "busy", "key": "host",
        "condition": {"kind": "threshold", "aggregate": "count", "window": 10, "op": ">=", "value": 2}}


def engine_with(*rules: dict) -> RuleEngine:
    return RuleEngine(parse_rules({"rules": list(rules)}))


def feed(engine: RuleEngine, start: float, end: float, value: float, names: tuple[str, ...] = ("high",)) -> None:
    t = start
    while t < end:
        for name in names:
            engine.observe(name, "h1", t, value)
        t += 1.0


# -- the engine: replace_rules ---------------------------------------------------------------
def test_an_unchanged_rule_keeps_its_window_and_firing_state() -> None:
    e = engine_with(HIGH, BUSY)
    feed(e, 0, 10, 95.0, ("high", "busy"))
    assert sorted((a.rule, a.state) for a in e.advance(10.0)) == [("busy", "firing"), ("high", "firing")]
    feed(e, 10, 15, 95.0)
    # severity and cooldown of 'high' change (state kept); 'busy' goes; 'low' comes.
    low = {**HIGH, "name": "low", "condition": {**HIGH["condition"], "op": "<", "value": 50}}
    closing = e.replace_rules(parse_rules({"rules": [{**HIGH, "severity": "critical", "cooldown": 5}, low]}))
    assert [(a.rule, a.key, a.state, a.message) for a in closing] == [
        ("busy", "h1", "resolved", "busy [h1]: resolved (rule removed)")]
    assert closing[0].id == "busy|h1|10.0"  # the id of the firing it ends
    feed(e, 15, 20, 95.0)
    # 'high' still fires (no second firing), its window holds the events from before the reload.
    assert e.advance(20.0) == []
    assert e.firing() == [("high", "h1")]
    e.observe("low", "h1", 20.5, 10.0)
    changed = e.replace_rules(parse_rules({"rules": [{**HIGH, "condition": {**HIGH["condition"], "value": 99}},
                                                     low]}))
    assert [(a.rule, a.state, a.message) for a in changed] == [("high", "resolved", "high [h1]: resolved (rule changed)")]
    assert [(a.rule, a.state, a.severity) for a in e.advance(30.0)] == [("low", "firing", "warning")]


def test_an_edit_that_changes_nothing_keeps_the_state_objects() -> None:
    e = engine_with(HIGH)
    feed(e, 0, 10, 95.0)
    same = parse_rules({"rules": [dict(HIGH)]})
    assert e.replace_rules(same) == []
    assert [a.state for a in e.advance(10.0)] == ["firing"]


# -- checking a whole file ----------------------------------------------------------------------
def test_check_reports_every_wrong_rule_with_its_line() -> None:
    text = textwrap.dedent("""\
        time_field: ts
        lag: -1
        rules:
          - name: a
            condition:
              kind: threshold
              aggregate: avg
              window: 10
              value: 1
          - name: ok
            condition: {kind: absence, for: 5}
          - name: b
            cooldown: nope
            condition: {kind: absence, for: 5}
          - name: ok
            condition: {kind: absence, for: 5}
    """)
    rules, errors = check_rules_text(text, "r.yaml")
    assert rules is None
    assert errors == [
        "r.yaml:2: 'lag' must be >= 0, got -1",
        "r.yaml:5: rule 'a': condition field 'field' is missing: aggregate 'avg' needs the event field to aggregate",
        "r.yaml:13: rule 'b': field 'cooldown' must be a number, got 'nope'",
        "r.yaml:15: rule 'ok' is defined twice (first at line 10); rule names must be unique",
    ]
    assert check_rules_text("rules: [\n", "r.yaml")[1][0].startswith("r.yaml:2: not valid YAML")
    ok, none = check_rules_text("rules:\n  - name: x\n    condition: {kind: absence, for: 5}\n", "r.yaml")
    assert ok is not None and none == []


# -- the watcher -------------------------------------------------------------------------------
RULES = "rules:\n  - name: x\n    condition: {kind: absence, for: 5}\n"


_EDITS = [0]


def edit(path: Path, text: str) -> None:
    """Write the file as an editor would, with a modification time of its own
    (however fast the test), older than the watcher's settle time."""
    path.write_text(text)
    _EDITS[0] += 1
    t = time.time() - 10 + _EDITS[0] * 0.01
    os.utime(path, (t, t))


def test_watcher_applies_valid_edits_and_rejects_bad_ones_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    rules, errors = load_for_task(path)
    assert errors == [] and (state_dir(path) / LAST_GOOD).read_text() == RULES
    w = RulesWatcher(path, rules)
    assert w.poll() is None
    edit(path, "# a comment only\n" + RULES)
    assert w.poll() is None
    path.write_text(RULES + "  - name: y\n    condition: {kind: absence, for: 9}\n")
    assert w.poll() is None  # written just now: read at a later look, once it settled
    edit(path, path.read_text())
    found = w.poll()
    assert found is not None and found.rules is not None and [r.name for r in found.rules.rules] == ["x", "y"]
    edit(path, RULES.replace("for: 5", "for: -5"))
    bad = w.poll()
    assert bad is not None and bad.rules is None
    assert bad.errors == [f"{path}:3: rule 'x': condition field 'for' must be > 0, got -5"]
    edit(path, path.read_text())
    assert w.poll() is None  # the same bad content is reported once
    assert w.poll(force=True) is None
    # A task starting now runs the last good rules, with the file's errors.
    good, errs = load_for_task(path)
    assert [r.name for r in good.rules] == ["x", "y"] and errs == bad.errors
    assert [r.name for r in running_rules(path)[0].rules] == ["x", "y"]  # type: ignore[union-attr]
    (state_dir(path) / LAST_GOOD).unlink()
    with pytest.raises(RuleError, match="must be > 0"):
        load_for_task(path)


# -- silences ------------------------------------------------------------------------------------
def test_durations() -> None:
    assert [parse_duration(s) for s in ("30m", "2h", "1h30m", "45s", "1d", "90", "1.5h")] == [
        1800, 7200, 5400, 45, 86400, 90, 5400]
    for bad in ("", "30x", "m", "0", "-5", "1h 30m"):
        with pytest.raises(SilenceError, match="bad duration"):
            parse_duration(bad)


def test_silences_file_beside_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    assert silences_path(rules) == tmp_path / "alerts.silences.yaml"
    with pytest.raises(SilenceError, match="no rule 'nope' in .*; its rules: a, b"):
        add_silence(rules, ["b", "a"], "nope", None, 60)
    add_silence(rules, ["a", "b"], "a", "h1", 60, "maintenance", now=1000.0)
    add_silence(rules, ["a", "b"], "b", None, 10, now=1000.0)
    add_silence(rules, ["a", "b"], "a", "h2", 10, now=1050.0)  # drops the expired silence of b
    got = load_silences(silences_path(rules))
    assert [(s.rule, s.key, s.until, s.comment) for s in got] == [("a", "h1", 1060.0, "maintenance"),
                                                                  ("a", "h2", 1060.0, "")]
    s = SilenceSet(got)
    assert s.mutes("a", "h1", 1059.0) and not s.mutes("a", "h1", 1060.0)
    assert not s.mutes("a", "h3", 1000.0) and not s.mutes("b", "h1", 1000.0)
    rule_wide = SilenceSet(load_silences(silences_path(rules)) + [
        load_silences(silences_path(rules))[0].__class__("b", None, 5000.0)])
    assert rule_wide.mutes("b", "any-key", 4000.0)
    silences_path(rules).write_text("silences: [{rule: a}]\n")
    with pytest.raises(SilenceError, match=r"silences\[0\] 'until' must be wall-clock seconds"):
        load_silences(silences_path(rules))


# -- URLs ------------------------------------------------------------------------------------------
def test_source_urls(tmp_path: Path) -> None:
    tail = source_spec(f"tail://{tmp_path}/app.jsonl?from=end", "s")
    assert tail.cls is TailSpout and tail.config["sources.tail.path"] == f"{tmp_path}/app.jsonl"
    assert tail.config["sources.tail.json"] is True and tail.config["sources.tail.from.end"] is True
    http = source_spec("http://127.0.0.1:8080", "s")
    assert http.cls is HttpSpout and http.config == {"sources.http.host": "127.0.0.1", "sources.http.port": 8080}
    redis = source_spec("redis://127.0.0.1:6380/events?group=g", "s")
    assert redis.cls is RedisStreamSpout and redis.config == {
        "sources.redis.url": "redis://127.0.0.1:6380/0", "sources.redis.stream": "events", "sources.redis.group": "g"}
    kafka = source_spec("kafka://127.0.0.1:9092,127.0.0.1:9093/metrics", "s")
    assert kafka.cls is KafkaSpout and kafka.config["kafka.bootstrap.servers"] == "127.0.0.1:9092,127.0.0.1:9093"
    assert kafka.config["kafka.spout.topics"] == ["metrics"]


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://h/x", "unknown scheme 'ftp'"),
    ("app.jsonl", "no scheme"),
    ("tail://var/log/x", "'var' is read as a host; write tail:///absolute/path"),
    ("tail:///x?follow=1", "unknown parameter 'follow' (allowed: from)"),
    ("http://127.0.0.1", "no port"),
    ("http://127.0.0.1:99999", "the port is not a number"),
    ("https://127.0.0.1:8080", "the HTTP source serves plain HTTP"),
    ("redis://127.0.0.1:6379/", "the path must be the stream alone"),
    ("kafka:///metrics", "no bootstrap servers"),
    ("kafka://127.0.0.1/metrics", "no port"),
])
def test_bad_source_urls_name_the_url_and_the_schemes(url: str, why: str) -> None:
    with pytest.raises(UrlError) as exc:
        source_spec(url, "s")
    assert str(exc.value).startswith(f"--source '{url}': {why}")
    assert "the sources are: tail:///path/app.jsonl" in str(exc.value) and "kafka://host:port/topic" in str(exc.value)


def test_sink_urls(tmp_path: Path) -> None:
    assert sink_spec("stdout:", "k", []).cls is StdoutSink
    f = sink_spec(f"file://{tmp_path}/a.jsonl", "k", [])
    assert f.cls is FileSink and f.config == {"sinks.file.path": f"{tmp_path}/a.jsonl"}
    w = sink_spec("webhook+https://hooks.example.com/x?y=1", "k", [])
    assert w.cls is WebhookSink and w.config["sinks.webhook.url"] == "https://hooks.example.com/x?y=1"
    r = sink_spec("redis://127.0.0.1/alerts?maxlen=100", "k", [])
    assert r.cls is RedisSink and r.config["sinks.redis.maxlen"] == 100
    for url, why in (("stdout:x", "write it as 'stdout:' alone"), ("https://h/x", "webhook+https://"),
                     ("slack://x", "unknown scheme 'slack'"), ("redis://h/a?maxlen=x", "'maxlen' must be")):
        with pytest.raises(UrlError, match="the sinks are: stdout:") as exc:
            sink_spec(url, "k", [])
        assert why in str(exc.value)


def test_the_alerts_topology_from_its_config(tmp_path: Path) -> None:
    rules = tmp_path / "my rules.yaml"
    rules.write_text(RULES)
    spec = alerts_topology({"alerting.rules": str(rules),
                            "alerting.sources": ["tail:///tmp/a.jsonl", "tail:///tmp/b.jsonl", "http://127.0.0.1:1"],
                            "alerting.sinks": ["stdout:", f"file://{tmp_path}/o.jsonl"]})
    assert spec.name == "alerts-my_rules"
    assert sorted(n for n, c in spec.components.items() if not c.system) == [
        "checkpoint", "evaluate", "match", "sink-file", "sink-stdout", "source-http", "source-tail-1",
        "source-tail-2"]
    assert {s.source for s in spec.components["match"].inputs} >= {"source-tail-1", "source-tail-2", "source-http"}
    with pytest.raises(Exception, match="no event source"):
        alerts_topology({"alerting.rules": str(rules)})
    (tmp_path / "bad.yaml").write_text(RULES.replace("for: 5", "for: 0"))
    with pytest.raises(RuleError, match=r"bad.yaml:3: rule 'x': condition field 'for' must be > 0"):
        alerts_topology({"alerting.rules": str(tmp_path / "bad.yaml"), "alerting.sources": ["stdout:"]})


# -- the bolts, in one process: reload at a tick, an unknown rule, silences -----------------------
class _Events(Spout):
    outputs = ["event"]


class _InProcess(Topology):
    events = _Events.spec()
    match = RuleMatchBolt.spec(inputs=[events], config={"topology.tick.tuple.freq.secs": 1})
    evaluate = RuleEvalBolt.spec(inputs={match: Grouping.fields("rule", "key"),
                                         match[WATERMARK_STREAM]: Grouping.all()},
                                 config={"topology.tick.tuple.freq.secs": 1})


THRESHOLD = """rules:
  - name: hot
    key: host
    condition: {kind: threshold, aggregate: avg, field: v, window: 10, op: ">", value: 90}
"""
COUNT = """  - name: many
    key: host
    condition: {kind: threshold, aggregate: count, window: 10, op: ">=", value: 3}
"""


def cpu(t0: int, t1: int, value: float, host: str = "h1") -> list[list[Any]]:
    return [[{"ts": float(t), "host": host, "v": value}] for t in range(t0, t1)]


def both(t0: int, t1: int, h1: float, h2: float) -> list[list[Any]]:
    """Events of h1 and h2 in event-time order (the watermark follows the newest)."""
    return [row for t in range(t0, t1) for row in cpu(t, t + 1, h1, "h1") + cpu(t, t + 1, h2, "h2")]


def changes_of(t: TestTopology) -> list[tuple[str, str, str]]:
    return [(row[1], row[2], row[3]) for row in t.result.emitted("evaluate")]


def test_bolts_apply_an_edit_at_a_tick_and_an_unknown_rule_at_once(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(THRESHOLD)
    with TestTopology(_InProcess, inputs={"events": []}, config={"alerting.rules": str(rules)}) as t:
        t.feed("events", cpu(0, 11, 95.0))
        t.run()
        assert changes_of(t) == [("hot", "h1", "firing")]
        edit(rules, THRESHOLD + COUNT)
        t.tick("match")  # only the match task has looked: the evaluator learns 'many' from an observation
        t.feed("events", cpu(11, 21, 95.0))
        t.run()
        assert changes_of(t) == [("hot", "h1", "firing"), ("many", "h1", "firing")]
        assert t.result.errors == []
        edit(rules, THRESHOLD.replace('op: ">"', 'op: "=>"'))
        t.tick()
        assert [e.component for e in t.result.errors] == ["match", "evaluate"]
        assert "rules.yaml:4: rule 'hot': condition field 'op' must be one of" in str(t.result.errors[0])
        assert "rejected, the running rules stay as they were" in str(t.result.errors[1])
        t.feed("events", cpu(21, 31, 10.0))
        t.run()  # both rules still run: 'hot' resolves on its own, 'many' keeps firing
        assert changes_of(t)[2:] == [("hot", "h1", "resolved")]


def test_the_match_bolt_sends_one_batch_per_event_and_key(tmp_path: Path) -> None:
    """Rules keyed by host and by user: an event gives one observation tuple per
    key, carrying every rule of that key; the evaluator applies each."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(THRESHOLD + COUNT + """  - name: logins
    key: user
    condition: {kind: threshold, aggregate: count, window: 10, op: ">=", value: 2}
""")
    with TestTopology(_InProcess, inputs={"events": []}, config={"alerting.rules": str(rules)}) as t:
        t.feed("events", [[{"ts": float(ts), "host": "h1", "user": "ann", "v": 95.0}] for ts in range(11)])
        t.feed("events", [[{"ts": 11.0, "host": "h1"}]])  # no v: not 'hot'
        t.run()
        sent = t.result.emitted("match")
        assert sent[0] == ["", "h1", 0.0, [["hot", "many"], [95.0, None]]]
        assert sent[1] == ["", "ann", 0.0, [["logins"], [None]]]
        assert len(sent) == 2 * 12
        assert sent[-2:] == [["", "h1", 11.0, [["many"], [None]]], ["", "None", 11.0, [["logins"], [None]]]]
        assert sorted(changes_of(t)) == [("hot", "h1", "firing"), ("logins", "ann", "firing"),
                                         ("many", "h1", "firing")]


def test_silences_mute_notifications_not_state(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(THRESHOLD)
    with TestTopology(_InProcess, inputs={"events": []}, config={"alerting.rules": str(rules)}) as t:
        t.feed("events", cpu(0, 11, 95.0, "h1"))
        t.run()
        assert changes_of(t) == [("hot", "h1", "firing")]
        add_silence(rules, ["hot"], "hot", None, 600)  # every key of 'hot'
        t.tick()
        t.feed("events", both(11, 21, 10.0, 95.0))
        t.run()
        # h2 fires and h1 resolves in the engine; neither is sent.
        assert changes_of(t) == [("hot", "h1", "firing")]
        ev = t.result.instances("evaluate")[0]
        assert ev.status()["rules"]["hot"]["firing"] == [["h2", True]] and ev.muted == 2
        silences_path(rules).unlink()
        t.tick()
        t.feed("events", both(21, 41, 95.0, 10.0))
        t.run()
        # The silence is over: h1 fires again (sent); h2's resolve ends a muted firing (not sent).
        assert changes_of(t) == [("hot", "h1", "firing"), ("hot", "h1", "firing")]
        assert ev.status()["rules"]["hot"]["firing"] == [["h1", False]]


def test_a_restored_checkpoint_drops_the_state_of_a_rule_changed_since() -> None:
    import msgpack

    from storm.alerting import StatefulRuleEvalBolt

    bolt = StatefulRuleEvalBolt()
    bolt.ruleset = parse_rules({"rules": [HIGH, BUSY]})
    bolt._mark_tasks = [1]
    bolt.init_state({})  # type: ignore[arg-type]
    feed(bolt.engine, 0, 10, 95.0, ("high", "busy"))
    bolt.engine.advance(10.0)
    bolt.state = {}  # type: ignore[assignment]
    bolt.pre_commit(1)
    saved = msgpack.unpackb(msgpack.packb(bolt.state), strict_map_key=False)  # as a state store keeps it
    # The rules file changed 'high' (a new threshold) before the task restored this checkpoint.
    bolt.ruleset = parse_rules({"rules": [{**HIGH, "condition": {**HIGH["condition"], "value": 99}}, BUSY]})
    bolt.init_state(saved)
    assert bolt.restored and bolt.engine.firing() == [("busy", "h1")]
    assert bolt._firing == {"busy": {"h1"}}
