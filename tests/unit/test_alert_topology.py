"""The alerting bolts in one process (storm.testing): scripted events through
match -> evaluate fire and resolve exactly the expected alerts, per key, with
the watermark the minimum over the match tasks; a bad rules file fails at
prepare with the rule and field named; the demo topology builds and rejects a
bad rules file at build time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from storm.alerting import RuleError
from storm.testing import TestTopology

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import alert_topos_scripted as scripted  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def rules_file(tmp_path: Path, text: str = scripted.RULES) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return str(path)


def alerts_of(t: TestTopology) -> list[tuple[str, str, str, float]]:
    return [(v[1], v[2], v[3], v[4]["ts"]) for v in t.result.emitted("evaluate")]


def run_scripted(tmp_path: Path, chunks: int) -> TestTopology:
    events = scripted.scripted_events()
    conf = {"alerting.rules": rules_file(tmp_path), "sinks.file.path": str(tmp_path / "alerts.jsonl")}
    t = TestTopology(scripted.ScriptedAlerts, inputs={"events": []}, config=conf)
    step = max(1, len(events) // chunks)
    for i in range(0, len(events), step):
        t.feed("events", events[i:i + step])
        t.run()
        t.tick("match")  # watermarks from both match tasks
    return t


@pytest.mark.parametrize("chunks", [1, 7])
def test_scripted_events_fire_and_resolve_exactly_the_expected_alerts(tmp_path: Path, chunks: int) -> None:
    t = run_scripted(tmp_path, chunks)
    try:
        got = alerts_of(t)
        for key in ("h1", "h2"):
            assert [a for a in got if a[1] == key] == [e for e in scripted.EXPECTED if e[1] == key]
        assert sorted(got) == sorted(scripted.EXPECTED)
        assert sorted(t.result.acked("events")) == list(range(len(scripted.scripted_events())))
        ids = {v[0] for v in t.result.emitted("evaluate")}
        assert "cpu_high|h1|20.0" in ids
    finally:
        t.close()


def test_bad_rules_file_names_rule_and_field(tmp_path: Path) -> None:
    bad = scripted.RULES.replace("op: \">\"", "op: \"=>\"")
    conf = {"alerting.rules": rules_file(tmp_path, bad), "sinks.file.path": str(tmp_path / "a.jsonl")}
    with pytest.raises(RuleError, match="rule 'cpu_high': condition field 'op' must be one of"):
        TestTopology(scripted.ScriptedAlerts, inputs={"events": []}, config=conf)


def load_demo() -> Any:
    from storm._target import load_target

    return load_target(str(ROOT / "topologies" / "alerting.py"))


def test_demo_topology_builds_and_checks_rules_at_build_time(tmp_path: Path) -> None:
    demo = load_demo()
    spec = demo.build()
    assert {"metrics", "match", "evaluate", "alerts", "log"} <= set(spec.components)
    assert "webhook" in demo.build({"alerting.webhook.url": "http://127.0.0.1:9/"}).components
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    condition: {kind: threshold, window: 0, value: 1}\n")
    with pytest.raises(RuleError, match="rule 'x': condition field 'window' must be > 0"):
        demo.build({"alerting.rules": str(bad)})


def test_demo_generator_fires_and_resolves_every_rule_kind() -> None:
    """The demo's generator on 70 s of synthetic time through the example rules
    (the engine alone): each scripted incident fires its rule, and each resolves."""
    import random

    from storm.alerting import RuleEngine, load_rules

    demo_module = sys.modules[load_demo().__module__]
    spout = demo_module.MetricsSpout()
    spout.rng = random.Random(1)
    spout.started, spout.cycle = 0.0, 60.0
    spout.series = [(f"host-{i}", m) for i in range(8) for m in demo_module.METRICS]
    rules = load_rules(ROOT / "conf" / "alerts.example.yaml")
    engine = RuleEngine(rules)
    fired: set[str] = set()
    resolved: set[str] = set()
    n = 0
    for step in range(70 * 200):
        now = step / 200
        host, metric = spout.series[n % len(spout.series)]
        n += 1
        event = spout.event(now, host, metric)
        if event is None:
            continue
        for rule in rules.rules:
            if rule.matches(event):
                field = rule.condition.field
                engine.observe(rule.name, rule.key_of(event), now, event.get(field) if field else None)
        for a in engine.advance(now - rules.lag):
            (fired if a.state == "firing" else resolved).add(a.rule)
    kinds = {"cpu_high", "latency_p95_high", "errors_rising", "heartbeat_missing", "latency_anomaly"}
    assert fired == kinds
    assert resolved == kinds
