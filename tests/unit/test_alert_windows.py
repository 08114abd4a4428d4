"""storm.alerting window panes: the incremental engine gives the alerts a
brute-force re-evaluation of every window gives; memory per key is bounded by
window / slide whatever the window's length; quantiles from the sketch stay
within the stated relative error, exact ones are exact; the state goes through
snapshot / restore (also msgpack, as a checkpoint stores it) without changing
any later alert, and a checkpoint of the engine before panes still restores."""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack
import pytest

from storm.alerting import RuleEngine, RuleError, aggregate, parse_rules
from storm.alerting._panes import RELATIVE_ACCURACY, Pane, pane_length, sketch_dump, sketch_load

pytestmark = pytest.mark.timeout(60)


def rule(agg: str, window: float, slide: float, op: str, value: float, **extra: Any) -> dict[str, Any]:
    cond: dict[str, Any] = {"kind": "threshold", "aggregate": agg, "window": window, "slide": slide,
                            "op": op, "value": value, **extra}
    if agg != "count":
        cond["field"] = "v"
    return {"name": f"{agg}_{window:g}_{slide:g}", "key": "host", "condition": cond}


def brute_force(agg: str, window: float, slide: float, op: str, value: float,
                events: list[tuple[float, str, float]], until: float) -> list[tuple[str, str, float]]:
    """Every window end, every key, the aggregate of the raw values: the
    fire/resolve changes (no cooldown)."""
    cmp = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__}[op]
    keys = sorted({k for _, k, _ in events})
    firing = dict.fromkeys(keys, False)
    out = []
    end = slide
    while end <= until:
        for k in keys:
            vals = [v for ts, kk, v in events if kk == k and end - window <= ts < end]
            x = aggregate(agg, vals)
            holds = x is not None and cmp(x, value)
            if holds != firing[k]:
                firing[k] = holds
                out.append((k, "firing" if holds else "resolved", end))
        end = round(end + slide, 9)
    return out


@pytest.mark.parametrize("agg, window, slide, op, value", [
    ("avg", 10, 2, ">", 60.0), ("sum", 6, 3, ">", 250.0), ("max", 4, 1, ">", 90.0),
    ("min", 5, 5, "<", 10.0), ("count", 3, 1, ">=", 4.0), ("p95", 8, 2, ">", 80.0),
    ("avg", 1.5, 0.5, ">", 70.0),
])
def test_panes_give_the_alerts_of_a_brute_force_evaluation(agg: str, window: float, slide: float,
                                                            op: str, value: float) -> None:
    rng = random.Random(f"{agg}{window}")
    events = []
    for i in range(600):
        ts = i * 0.1 + rng.random() * 0.3  # a little out of order
        events.append((ts, f"h{rng.randrange(4)}", rng.random() * 100))
    r = rule(agg, window, slide, op, value, **({"exact": True} if agg.startswith("p") else {}))
    e = RuleEngine(parse_rules({"rules": [r], "lag": 0.5}))
    got = []
    newest = 0.0
    for ts, k, v in events:
        assert e.observe(r["name"], k, ts, v)
        newest = max(newest, ts)
        got += [(a.key, a.state, a.ts) for a in e.advance(newest - 0.5)]
    until = math.floor(newest / slide) * slide + 3 * window
    got += [(a.key, a.state, a.ts) for a in e.advance(until)]
    expected = brute_force(agg, window, slide, op, value, events, until)
    assert expected, "the scripted stream crosses the threshold"
    assert sorted(got, key=lambda x: (x[2], x[0])) == sorted(expected, key=lambda x: (x[2], x[0]))


def test_memory_per_key_is_window_over_slide_for_any_window_length() -> None:
    """One event a second per key for 3 h of event time: a 1 h window sliding by
    1 min holds as many panes per key as a 1 min window sliding by 1 s."""
    rules = parse_rules({"rules": [rule("avg", 60, 1, ">", 1e9), rule("avg", 3600, 60, ">", 1e9),
                                   rule("p99", 3600, 60, ">", 1e9)]})
    e = RuleEngine(rules)
    peak = {r.name: 0 for r in rules.rules}
    for t in range(3 * 3600):
        for r in rules.rules:
            for k in ("a", "b"):
                e.observe(r.name, k, t + 0.5, float(t % 97))
        if t % 60 == 0:
            e.advance(float(t))
            for r in rules.rules:
                peak[r.name] = max(peak[r.name], len(e.panes_of(r.name, "a")))
    assert peak["avg_60_1"] <= 61 + 60  # the window, plus the panes ahead of the watermark
    assert peak["avg_3600_60"] <= 61 + 1
    assert peak["p99_3600_60"] <= 61 + 1
    size = e.state_size()
    assert size["keys"] == 6 and size["panes"] > 0 and size["bytes"] > 0
    # 3,600 values per 1 h window, but no pane keeps more than RAW_VALUES raw: the rest is in sketches.
    panes = e.panes_of("p99_3600_60", "a")
    assert all(p.raw is None or len(p.raw) <= 32 for p in panes)
    assert any(p.sketch is not None for p in panes)


def test_sketch_quantiles_are_within_the_stated_relative_error() -> None:
    rng = random.Random(7)
    r = rule("p99", 60, 10, ">", 1e12)
    r_exact = {**rule("p99", 60, 10, ">", 1e12, exact=True), "name": "exact"}
    e = RuleEngine(parse_rules({"rules": [r, r_exact]}))
    values = []
    for i in range(20000):
        ts = i * 0.003
        v = rng.lognormvariate(3, 1.5)  # heavy tailed, spanning orders of magnitude
        values.append(v)
        e.observe(r["name"], "k", ts, v)
        e.observe("exact", "k", ts, v)
    truth = aggregate("p99", values)
    assert truth is not None
    from storm.alerting._panes import window_quantile
    got = window_quantile(e.panes_of(r["name"], "k"), -10**9, 10**9, 0.99)
    exact = window_quantile(e.panes_of("exact", "k"), -10**9, 10**9, 0.99)
    assert got is not None and exact == truth
    assert abs(got - truth) <= RELATIVE_ACCURACY * truth
    assert got != truth, "the sketch answered, not raw values"


def test_sketch_survives_its_checkpoint_form() -> None:
    p = Pane(3)
    rng = random.Random(1)
    for _ in range(500):
        p.n += 1
        p.add_value(rng.uniform(-50, 200), exact=False)
    p.add_value(0.0, exact=False)
    back = Pane.load(msgpack.unpackb(msgpack.packb(p.dump()), raw=False))
    assert back.sketch is not None and p.sketch is not None
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert back.sketch.get_quantile_value(q) == p.sketch.get_quantile_value(q)
    def bins(d: list[Any]) -> tuple[Any, ...]:  # the non-zero bins, whatever the store's layout
        pos = {d[0] + i: c for i, c in enumerate(d[1]) if c}
        neg = {d[2] + i: c for i, c in enumerate(d[3]) if c}
        return pos, neg, d[4:]

    assert bins(sketch_dump(sketch_load(sketch_dump(p.sketch)))) == bins(sketch_dump(p.sketch))
    assert list(back.raw or []) == list(p.raw or [])


def test_a_restored_engine_gives_the_alerts_of_one_that_never_stopped() -> None:
    rules = parse_rules({"rules": [
        rule("avg", 20, 5, ">", 55.0), rule("p95", 30, 10, ">", 90.0), rule("count", 10, 2, ">", 12.0),
        {"name": "odd", "key": "host", "condition": {"kind": "anomaly", "field": "v", "window": 20,
                                                     "slide": 2, "k": 2}},
        {"name": "roc", "key": "host", "condition": {"kind": "rate_of_change", "aggregate": "max",
                                                     "field": "v", "window": 5, "op": ">", "value": 30}},
        {"name": "gone", "key": "host", "condition": {"kind": "absence", "for": 3}},
    ], "lag": 1.0})
    rng = random.Random(3)
    stream = [(i * 0.05 + rng.random() * 0.5, f"h{rng.randrange(5)}", rng.random() * 100) for i in range(4000)]

    def run(engine: RuleEngine, part: list[tuple[float, str, float]], newest: float) -> tuple[list[Any], float]:
        out = []
        for ts, k, v in part:
            for r in rules.rules:
                engine.observe(r.name, k, ts, v)
            newest = max(newest, ts)
            out += [a.to_dict() for a in engine.advance(newest - 1.0)]
        return out, newest

    whole, _ = run(RuleEngine(rules), stream, 0.0)
    first = RuleEngine(rules)
    a, newest = run(first, stream[:2100], 0.0)
    snap = msgpack.unpackb(msgpack.packb(first.snapshot()), raw=False, strict_map_key=False)
    again = RuleEngine(rules)
    again.restore(snap)
    b, _ = run(again, stream[2100:], newest)
    assert len(whole) > 20
    assert a + b == whole


def test_a_checkpoint_of_the_engine_before_panes_restores() -> None:
    rules = parse_rules({"rules": [{**rule("avg", 10, 5, ">", 90.0), "name": "cpu"}]})
    # Saved by the engine that kept raw values: h1 firing since 10.0 (the window [0, 10) was hot).
    old = {"watermark": 12.0, "rules": {"cpu": {"next_end": 15.0, "keys": {
        "h1": [[float(t) for t in range(5, 13)], [99.0] * 8, True, 10.0, 4.0]}}}}
    e = RuleEngine(rules)
    e.restore(old)
    assert e.firing() == [("cpu", "h1")]
    assert e.advance(15.0) == [], "[5, 15) is still hot: no second alert"
    got = [(a.state, a.ts, a.id) for a in e.advance(25.0)]
    assert got == [("resolved", 25.0, "cpu|h1|10.0")]  # [15, 25) holds no value


def test_pane_length_and_quantile_rules() -> None:
    assert pane_length(3600, 60) == 60
    assert pane_length(1.5, 0.5) == 0.5
    assert pane_length(10, 4) == 2
    parse_rules({"rules": [rule("p99.9", 60, 10, ">", 1.0), rule("p50", 60, 10, ">", 1.0, exact=True)]})
    with pytest.raises(RuleError, match="'aggregate' must be one of .* or pNN"):
        parse_rules({"rules": [rule("p100", 60, 10, ">", 1.0)]})
    with pytest.raises(RuleError, match="rule 'avg_60_10': condition field 'exact' applies to quantile"):
        parse_rules({"rules": [rule("avg", 60, 10, ">", 1.0, exact=True)]})
    with pytest.raises(RuleError, match="'exact' must be true or false"):
        parse_rules({"rules": [rule("p95", 60, 10, ">", 1.0, exact="yes")]})


def test_the_engines_flat_panes_answer_as_their_checkpoint_form() -> None:
    """The evaluation path (a key's flat array, raw / open / packed bins) gives
    the quantile the checkpoint form of the same panes gives."""
    from storm.alerting._panes import (
        flat_quantile,
        pack_bins,
        to_bins,
        unpack_bins,
        window_quantile,
    )

    rng = random.Random(11)
    r = rule("p95", 600, 60, ">", 1e12)
    e = RuleEngine(parse_rules({"rules": [r]}))
    for i in range(3000):  # 5 a second: closed panes hold packed bins, a few out of order
        ts = i * 0.2 + (rng.random() * 30 if i % 50 == 0 else 0.0)
        e.observe(r["name"], "k", ts, rng.choice([-1.0, 0.0, 1.0]) * rng.lognormvariate(2, 2))
    rs = e._states[r["name"]]
    st = rs.keys["k"]
    assert {type(x).__name__ for x in rs.stores.values()} >= {"bytes", "dict"}
    panes = e.panes_of(r["name"], "k")
    for lo, hi in ((-10**9, 10**9), (panes[2].idx, panes[8].idx), (panes[-1].idx, panes[-1].idx + 1)):
        for q in (0.01, 0.5, 0.95, 0.999):
            assert flat_quantile(st, lo, hi, q, rs.stores) == window_quantile(panes, lo, hi, q)
    bins = to_bins([rng.uniform(-1e6, 1e6) for _ in range(500)] + [0.0, 0.0, 1e-300, 5e300])
    back: dict[int, float] = {}
    unpack_bins(pack_bins(bins), back)
    assert back == bins
