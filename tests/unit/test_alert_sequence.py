"""storm.alerting sequence rules on scripted event streams: "A then B within T"
and "A not followed by B within T" on event time, out-of-order events within
the lag, late events counted and never matched, one alert per match naming the
matched events, and a replay after a crash giving the same alert ids (so the
sink's dedup drops the repeats)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from storm.alerting import Alert, RuleEngine, RuleError, parse_rules

pytestmark = pytest.mark.timeout(30)

LOGIN = {"name": "brute_force", "key": "user", "severity": "critical", "condition": {
    "kind": "sequence", "within": 300,
    "steps": [{"filter": {"outcome": "failure"}}, {"filter": {"outcome": "success"}}]}}
UNPAID = {"name": "unpaid", "key": "order", "condition": {
    "kind": "sequence", "steps": [{"filter": {"type": "created"}}],
    "absent_within": {"for": 600, "filter": {"type": "paid"}}}}


def feed(e: RuleEngine, events: list[dict[str, Any]], lag: float) -> list[Alert]:
    """What the match and evaluate bolts do: match the steps, observe, advance
    the watermark to the newest time minus the lag."""
    out: list[Alert] = []
    newest = float("-inf")
    for ev in events:
        for r in e.rules.rules:
            steps = r.condition.step_matches(ev)
            if steps:
                e.observe(r.name, r.key_of(ev), ev["ts"], [steps, ev.get("id")])
        newest = max(newest, ev["ts"])
        out += e.advance(newest - lag)
    return out


def test_a_then_b_within_t() -> None:
    e = RuleEngine(parse_rules({"rules": [LOGIN]}))
    alerts = feed(e, [
        {"id": "e1", "ts": 10.0, "user": "ann", "outcome": "failure"},
        {"id": "e2", "ts": 11.0, "user": "bob", "outcome": "failure"},
        {"id": "e3", "ts": 100.0, "user": "ann", "outcome": "success"},
        {"id": "e4", "ts": 400.0, "user": "bob", "outcome": "success"},  # 389 s after: too late
        {"id": "e5", "ts": 500.0, "user": "cid", "outcome": "success"},  # no failure first
        {"id": "e6", "ts": 900.0, "user": "x", "outcome": "other"},
    ], lag=0.0)
    assert [(a.rule, a.key, a.state, a.ts, a.events) for a in alerts] == [
        ("brute_force", "ann", "firing", 100.0, ("e1", "e3"))]
    assert alerts[0].severity == "critical" and "e1 -> e3" in alerts[0].message
    assert alerts[0].to_dict()["events"] == ["e1", "e3"]
    assert e.state_size()["matches"] == 0, "expired matches are dropped"


def test_one_alert_per_match_and_the_newest_start_is_kept() -> None:
    e = RuleEngine(parse_rules({"rules": [LOGIN]}))
    alerts = feed(e, [
        {"id": "f1", "ts": 0.0, "user": "ann", "outcome": "failure"},
        {"id": "f2", "ts": 250.0, "user": "ann", "outcome": "failure"},
        {"id": "s1", "ts": 320.0, "user": "ann", "outcome": "success"},  # f1 expired, f2 in time
        {"id": "s2", "ts": 330.0, "user": "ann", "outcome": "success"},  # f2 was used: no match
        {"id": "end", "ts": 1000.0, "user": "ann", "outcome": "noop"},
    ], lag=0.0)
    assert [a.events for a in alerts] == [("f2", "s1")]


def test_a_not_followed_by_b() -> None:
    e = RuleEngine(parse_rules({"rules": [UNPAID]}))
    alerts = feed(e, [
        {"id": "c1", "ts": 0.0, "order": "o1", "type": "created"},
        {"id": "c2", "ts": 5.0, "order": "o2", "type": "created"},
        {"id": "p1", "ts": 300.0, "order": "o1", "type": "paid"},
        {"id": "p2", "ts": 700.0, "order": "o2", "type": "paid"},  # after the 600 s
        {"id": "tick", "ts": 2000.0, "order": "-", "type": "noop"},
    ], lag=0.0)
    assert [(a.key, a.ts, a.events) for a in alerts] == [("o2", 605.0, ("c2",))]
    assert "not followed within 600s" in alerts[0].message


def test_out_of_order_within_the_lag_matches_and_late_events_are_counted() -> None:
    e = RuleEngine(parse_rules({"rules": [LOGIN, UNPAID], "lag": 10}))
    alerts = feed(e, [
        {"id": "s1", "ts": 105.0, "user": "ann", "outcome": "success"},
        {"id": "f1", "ts": 100.0, "user": "ann", "outcome": "failure"},  # 5 s behind: within the lag
        {"id": "c1", "ts": 200.0, "order": "o1", "type": "created"},
        {"id": "p1", "ts": 801.0, "order": "o1", "type": "paid"},      # 601 s later: does not count
        {"id": "p0", "ts": 795.0, "order": "o1", "type": "paid"},      # behind the newest, within the lag: cancels
        {"id": "t", "ts": 1000.0, "user": "x", "outcome": "noop"},
        {"id": "f9", "ts": 900.0, "user": "bob", "outcome": "failure"},  # behind the watermark (990): late
        {"id": "s9", "ts": 1001.0, "user": "bob", "outcome": "success"},
        {"id": "t2", "ts": 2000.0, "user": "x", "outcome": "noop"},
    ], lag=10.0)
    assert [(a.rule, a.key, a.events) for a in alerts] == [("brute_force", "ann", ("f1", "s1"))]
    assert e.late == 1


def test_step_thresholds_and_three_steps() -> None:
    rule = {"name": "escalation", "key": "svc", "condition": {"kind": "sequence", "within": 60, "steps": [
        {"filter": {"kind": "latency"}, "field": "ms", "op": ">", "value": 500},
        {"filter": {"kind": "error"}},
        {"filter": {"kind": "restart"}}]}}
    e = RuleEngine(parse_rules({"rules": [rule]}))
    alerts = feed(e, [
        {"id": "a", "ts": 1.0, "svc": "api", "kind": "latency", "ms": 200},   # below the threshold
        {"id": "b", "ts": 2.0, "svc": "api", "kind": "error"},
        {"id": "c", "ts": 3.0, "svc": "api", "kind": "latency", "ms": 900},
        {"id": "d", "ts": 4.0, "svc": "api", "kind": "restart"},              # no error between
        {"id": "e", "ts": 5.0, "svc": "api", "kind": "error"},
        {"id": "f", "ts": 6.0, "svc": "api", "kind": "restart"},
        {"id": "z", "ts": 100.0, "svc": "api", "kind": "noop"},
    ], lag=0.0)
    assert [a.events for a in alerts] == [("c", "e", "f")]


def test_replay_after_a_crash_repeats_only_alert_ids_already_sent() -> None:
    rules = parse_rules({"rules": [LOGIN, UNPAID], "lag": 5})
    events: list[dict[str, Any]] = []
    for i in range(200):
        t = i * 10.0
        events.append({"id": f"f{i}", "ts": t, "user": f"u{i % 7}", "outcome": "failure"})
        if i % 3 == 0:
            events.append({"id": f"s{i}", "ts": t + 7, "user": f"u{i % 7}", "outcome": "success"})
        events.append({"id": f"c{i}", "ts": t + 1, "order": f"o{i}", "type": "created"})
        if i % 4:
            events.append({"id": f"p{i}", "ts": t + 400, "order": f"o{i}", "type": "paid"})
    events.sort(key=lambda ev: ev["ts"])
    events.append({"id": "end", "ts": 10000.0, "user": "-", "outcome": "noop"})
    whole = [a.to_dict() for a in feed(RuleEngine(rules), events, lag=5)]

    first = RuleEngine(rules)
    sent = [a.to_dict() for a in feed(first, events[:250], lag=5)]
    snap = msgpack.unpackb(msgpack.packb(first.snapshot()), raw=False, strict_map_key=False)
    sent += [a.to_dict() for a in feed(first, events[250:300], lag=5)]  # then the crash
    again = RuleEngine(rules)
    again.restore(snap)
    replayed = [a.to_dict() for a in feed(again, events[250:], lag=5)]  # from the checkpoint on
    seen: set[str] = set()
    deduped = []
    for a in sent + replayed:  # the sink's dedup by alert id
        if a["id"] not in seen:
            seen.add(a["id"])
            deduped.append(a)
    assert len(whole) > 50 and {a["rule"] for a in whole} == {"brute_force", "unpaid"}
    assert deduped == whole


@pytest.mark.parametrize("cond, message", [
    ({"kind": "sequence"}, "'steps' must be a non-empty list"),
    ({"kind": "sequence", "steps": [{"filter": {"a": 1}}, {"filter": {"b": 1}}]}, "'within' is missing"),
    ({"kind": "sequence", "steps": [{}]}, "'steps' #1 needs a 'filter'"),
    ({"kind": "sequence", "steps": [{"filter": {"a": 1}, "field": "x"}]}, "'steps' #1 'value' is missing"),
    ({"kind": "sequence", "steps": [{"filter": {"a": 1}, "fliter": 2}]}, "'steps' #1 has unknown field 'fliter'"),
    ({"kind": "sequence", "steps": [{"filter": {"a": 1}}], "absent_within": 5}, "'absent_within' must be a mapping"),
    ({"kind": "sequence", "steps": [{"filter": {"a": 1}}], "within": -1}, "'within' must be > 0"),
])
def test_bad_sequence_rules_name_the_rule_and_field(cond: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=f"rule 'seq': condition field {message}"):
        parse_rules({"rules": [{"name": "seq", "condition": cond}]}, "rules.yaml")


def test_the_example_sequence_rules_file() -> None:
    """The two worked examples of the README, on conf/alerts.sequence.example.yaml."""
    from pathlib import Path

    from storm.alerting import load_rules

    rules = load_rules(Path(__file__).resolve().parents[2] / "conf" / "alerts.sequence.example.yaml")
    e = RuleEngine(rules)
    alerts = feed(e, [
        {"id": "ev1", "ts": 1000.0, "type": "login", "user": "ann", "outcome": "failure"},
        {"id": "ev2", "ts": 1001.0, "type": "order_created", "order": "o-7"},
        {"id": "ev3", "ts": 1003.0, "type": "order_created", "order": "o-8"},
        {"id": "ev4", "ts": 1120.0, "type": "login", "user": "ann", "outcome": "success"},
        {"id": "ev5", "ts": 1300.0, "type": "order_paid", "order": "o-8"},
        {"id": "ev6", "ts": 1700.0, "type": "heartbeat"},
    ], lag=rules.lag)
    assert [(a.rule, a.key, a.ts, a.events) for a in alerts] == [
        ("login_after_failure", "ann", 1120.0, ("ev1", "ev4")),
        ("order_not_paid", "o-7", 1601.0, ("ev2",)),
    ]
