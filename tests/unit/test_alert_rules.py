"""storm.alerting: rules files (the example parses; each mistake gives one error
naming the rule and the field), and each rule kind firing and resolving exactly
when it should on a scripted event stream, with dedup per key and cooldown."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest

import storm.alerting
from storm import ConfigError
from storm.alerting import Alert, RuleEngine, RuleError, aggregate, load_rules, parse_rules

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "alerts.example.yaml"


def engine(*rules: dict[str, Any], lag: float = 0.0) -> RuleEngine:
    return RuleEngine(parse_rules({"rules": list(rules), "lag": lag}))


def states(alerts: list[Alert]) -> list[tuple[str, str, str, float]]:
    return [(a.rule, a.key, a.state, a.ts) for a in alerts]


def test_doctests() -> None:
    failures, _ = doctest.testmod(storm.alerting)
    assert failures == 0


def test_example_rules_file_parses() -> None:
    rules = load_rules(EXAMPLE)
    assert [r.condition.kind for r in rules.rules] == [
        "threshold", "threshold", "rate_of_change", "absence", "anomaly"]
    assert rules.by_name()["cpu_high"].key == ("host",)
    assert rules.lag == 1.0


THRESHOLD = {"name": "cpu", "filter": {"metric": "cpu"}, "key": "host",
             "condition": {"kind": "threshold", "aggregate": "avg", "field": "value",
                           "window": 10, "op": ">", "value": 90}}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["condition"].update(aggregate="median"), "rule 'cpu': condition field 'aggregate' must be one of"),
    (lambda r: r["condition"].pop("window"), "rule 'cpu': condition field 'window' is missing"),
    (lambda r: r["condition"].update(window=-1), "rule 'cpu': condition field 'window' must be > 0"),
    (lambda r: r["condition"].update(op="=="), "rule 'cpu': condition field 'op' must be one of"),
    (lambda r: r["condition"].pop("field"), "rule 'cpu': condition field 'field' is missing"),
    (lambda r: r["condition"].update(value="high"), "rule 'cpu': condition field 'value' must be a number"),
    (lambda r: r["condition"].update(kind="magic"), "rule 'cpu': condition field 'kind' must be one of"),
    (lambda r: r["condition"].update(windw=3), "rule 'cpu': condition has unknown field 'windw'"),
    (lambda r: r.update(cooldown=-5), "rule 'cpu': field 'cooldown' must be >= 0"),
    (lambda r: r.update(key=3), "rule 'cpu': field 'key' must be an event field name"),
    (lambda r: r.update(filtr={}), "rule 'cpu' has unknown field 'filtr'"),
    (lambda r: r.pop("condition"), "rule 'cpu': field 'condition' is missing"),
    (lambda r: r["condition"].update(slide=20), "rule 'cpu': condition field 'slide' \\(20\\) must not be longer"),
])
def test_bad_rule_names_the_rule_and_field(mutate: Any, message: str) -> None:
    import copy

    rule = copy.deepcopy(THRESHOLD)
    mutate(rule)
    with pytest.raises(RuleError, match=message):
        parse_rules({"rules": [rule]}, "rules.yaml")


def test_bad_rules_file_shapes(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="a mapping with a 'rules:' list"):
        parse_rules([1, 2])
    with pytest.raises(RuleError, match="rule #1 field 'name' is missing"):
        parse_rules({"rules": [{"condition": {}}]})
    with pytest.raises(RuleError, match="rule 'cpu' is defined twice"):
        parse_rules({"rules": [THRESHOLD, THRESHOLD]})
    with pytest.raises(RuleError, match="absence.*'for' is missing|condition field 'for' is missing"):
        parse_rules({"rules": [{"name": "a", "condition": {"kind": "absence"}}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RuleError, match="is not valid YAML"):
        load_rules(bad)
    with pytest.raises(RuleError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    assert issubclass(RuleError, ConfigError)  # the CLI prints it as one red line


def test_aggregates() -> None:
    vals = [float(v) for v in range(1, 101)]
    assert aggregate("count", vals) == 100
    assert aggregate("sum", vals) == 5050
    assert aggregate("avg", vals) == 50.5
    assert aggregate("max", vals) == 100
    assert aggregate("min", vals) == 1
    assert aggregate("p95", vals) == 95
    assert aggregate("avg", []) is None
    assert aggregate("count", []) == 0


def test_threshold_fires_once_while_it_holds_and_resolves_once() -> None:
    e = engine({**THRESHOLD, "condition": {**THRESHOLD["condition"], "slide": 5}})
    for ts in range(0, 30):
        e.observe("cpu", "h1", float(ts), 95.0 if 5 <= ts < 25 else 10.0)
        e.observe("cpu", "h2", float(ts), 10.0)
    got = states(e.advance(10.0))  # [0,10): avg = (5*10 + 5*95)/10 = 52.5
    assert got == []
    got = states(e.advance(15.0))  # [5,15): all 95
    assert got == [("cpu", "h1", "firing", 15.0)]
    assert states(e.advance(25.0)) == [], "still holds at 20 and 25: no second alert"
    got = states(e.advance(30.0))  # [20,30): 5*95 + 5*10 -> 52.5
    assert got == [("cpu", "h1", "resolved", 30.0)]
    assert e.fired == 1 and e.resolved == 1


def test_threshold_count_and_p95_and_max() -> None:
    e = engine(
        {"name": "many", "key": "host", "condition": {"kind": "threshold", "window": 10, "op": ">=", "value": 3}},
        {"name": "p95", "key": "host", "condition": {"kind": "threshold", "aggregate": "p95",
                                                     "field": "v", "window": 10, "op": ">", "value": 50}},
        {"name": "max", "condition": {"kind": "threshold", "aggregate": "max", "field": "v",
                                      "window": 10, "op": ">", "value": 99}},
    )
    for i, v in enumerate([1, 2, 3, 100]):
        e.observe("many", "a", float(i), None)
        e.observe("p95", "a", float(i), float(v))
        e.observe("max", "*", float(i), float(v))
    assert sorted(states(e.advance(10.0))) == [
        ("many", "a", "firing", 10.0), ("max", "*", "firing", 10.0), ("p95", "a", "firing", 10.0)]
    alerts = {a.rule: a for a in e.advance(20.0)}
    assert {a.state for a in alerts.values()} == {"resolved"}
    assert alerts["p95"].id == "p95|a|10.0"  # a resolve carries the id of the alert it ends


def test_rate_of_change_absolute_and_percent() -> None:
    e = engine(
        {"name": "up", "key": "svc", "condition": {"kind": "rate_of_change", "aggregate": "sum",
                                                   "field": "v", "window": 5, "op": ">", "value": 40}},
        {"name": "pct", "key": "svc", "condition": {"kind": "rate_of_change", "aggregate": "avg",
                                                    "field": "v", "window": 5, "op": ">=", "value": 100,
                                                    "percent": True}},
    )
    for ts in range(0, 20):
        v = 10.0 if 5 <= ts < 10 else 1.0  # window [5,10) sums 50 vs 5 before it
        e.observe("up", "api", float(ts), v)
        e.observe("pct", "api", float(ts), v)
    assert states(e.advance(5.0)) == [], "no previous window yet"
    got = sorted(states(e.advance(10.0)))
    assert got == [("pct", "api", "firing", 10.0), ("up", "api", "firing", 10.0)]
    alerts = e.advance(15.0)  # falls back: change is negative
    assert sorted(states(alerts)) == [("pct", "api", "resolved", 15.0), ("up", "api", "resolved", 15.0)]


def test_absence_fires_after_silence_and_resolves_on_the_next_event() -> None:
    e = engine({"name": "gone", "key": "host", "condition": {"kind": "absence", "for": 5, "slide": 1}})
    e.observe("gone", "h1", 0.0, None)
    e.observe("gone", "h2", 0.0, None)
    for ts in range(1, 12):
        e.observe("gone", "h2", float(ts), None)  # h2 keeps talking
    assert states(e.advance(4.0)) == []
    assert states(e.advance(5.0)) == [("gone", "h1", "firing", 5.0)]  # silent for 5 s
    assert e.firing() == [("gone", "h1")]
    e.observe("gone", "h1", 8.5, None)
    got = states(e.advance(9.0))
    assert got == [("gone", "h1", "resolved", 9.0)]
    assert states(e.advance(14.0)) == [("gone", "h1", "firing", 14.0)]


def test_absence_alert_is_emitted_at_the_boundary() -> None:
    e = engine({"name": "gone", "key": "host", "condition": {"kind": "absence", "for": 3, "slide": 1}})
    e.observe("gone", "h1", 0.5, None)
    assert states(e.advance(3.0)) == []  # silent 2.5 s
    assert states(e.advance(4.0)) == [("gone", "h1", "firing", 4.0)]  # silent 3.5 s
    assert states(e.advance(10.0)) == [], "one alert while the silence lasts"


def test_anomaly_outside_mean_plus_k_stddev() -> None:
    e = engine({"name": "odd", "key": "host", "condition": {"kind": "anomaly", "field": "v", "window": 20,
                                                           "slide": 2, "k": 3, "min_samples": 10}})
    for i in range(36):
        ts = i * 0.5
        e.observe("odd", "h", ts, 100.0 + (1 if i % 2 else -1))  # mean 100, stddev 1
    assert states(e.advance(18.0)) == []
    e.observe("odd", "h", 18.5, 110.0)
    e.observe("odd", "h", 19.0, 110.0)
    assert states(e.advance(20.0)) == [("odd", "h", "firing", 20.0)]
    for i in range(4):
        e.observe("odd", "h", 20.0 + i * 0.5, 100.0)
    assert states(e.advance(22.0)) == [("odd", "h", "resolved", 22.0)]


def test_anomaly_needs_min_samples() -> None:
    e = engine({"name": "odd", "condition": {"kind": "anomaly", "field": "v", "window": 20,
                                             "slide": 2, "min_samples": 10}})
    e.observe("odd", "*", 1.0, 1.0)
    e.observe("odd", "*", 19.0, 1000.0)
    assert states(e.advance(20.0)) == []


def test_cooldown_suppresses_refiring() -> None:
    rule = {"name": "hot", "key": "host", "cooldown": 20,
            "condition": {"kind": "threshold", "aggregate": "max", "field": "v", "window": 1,
                          "op": ">", "value": 5}}
    e = engine(rule)
    pattern = {0: 9, 1: 0, 2: 9, 3: 0, 25: 9}
    for ts, v in pattern.items():
        e.observe("hot", "h", ts + 0.5, float(v))
    got = states(e.advance(30.0))
    assert got == [
        ("hot", "h", "firing", 1.0),
        ("hot", "h", "resolved", 2.0),
        # at 3.0 it holds again, within the 20 s cooldown: suppressed
        ("hot", "h", "firing", 26.0),
        ("hot", "h", "resolved", 27.0),
    ]
    assert e.suppressed == 1


def test_keys_are_independent() -> None:
    e = engine({**THRESHOLD})
    for ts in range(10):
        e.observe("cpu", "a", float(ts), 99.0)
        e.observe("cpu", "b", float(ts), 1.0)
    assert states(e.advance(10.0)) == [("cpu", "a", "firing", 10.0)]


def test_late_events_are_counted_and_ignored() -> None:
    e = engine({**THRESHOLD})
    e.observe("cpu", "a", 15.0, 1.0)
    e.advance(12.0)
    assert e.observe("cpu", "a", 11.0, 99.0) is False
    assert e.late == 1


def test_snapshot_and_restore_continue_without_refiring() -> None:
    e = engine({**THRESHOLD, "condition": {**THRESHOLD["condition"], "slide": 5}})
    for ts in range(20):
        e.observe("cpu", "h1", float(ts), 99.0)
    assert len(e.advance(10.0)) == 1
    snap = e.snapshot()
    again = engine({**THRESHOLD, "condition": {**THRESHOLD["condition"], "slide": 5}})
    again.restore(snap)
    assert again.firing() == [("cpu", "h1")]
    assert states(again.advance(15.0)) == [], "restored as firing: no second alert"
    assert states(again.advance(40.0))[-1][2] == "resolved"
