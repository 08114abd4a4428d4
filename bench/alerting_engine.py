"""The alert engine's own cost per event, in one process (no runtime, no
transport): run by ``python bench/alerting.py --engine``.

Steady profile: 100 rules (10 metrics x max/avg/p95/count/sum over 2-10 s
windows sliding by 1 s) over 10,000 hosts, 20,000 events per second of event
time for 20 s of event time, each event matching the 10 rules of its metric,
1% of the hosts hot (the set moves every 30 s); the watermark advances every
1,000 events. Reports observations and events per CPU-second of observe + advance, alert
changes, and the state per (rule, key).

Window sweep: 5 rules (max/avg/p95/count/sum) over 200 keys, one event per key
per second of event time for 2 h of event time; 1 min windows sliding by 1 s
against 1 h windows sliding by 1 min (60 panes each). Each variant runs in a
fresh process, interleaved over the rounds: events/s, the engine's state bytes
per key and the process's RSS growth per key, medians, and the 1 h / 1 min ratio.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import pstats
import random
import statistics
import sys
import time
from typing import Any

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from storm.alerting import RuleEngine, parse_rules  # noqa: E402

METRICS = [f"m{i}" for i in range(10)]


def steady_rules() -> Any:
    from alerting import make_rules

    return parse_rules(make_rules(100))


def steady(cprofile: bool = False) -> dict[str, Any]:
    rules = steady_rules()
    by_metric: dict[str, list[str]] = {}
    for r in rules.rules:
        by_metric.setdefault(r.filter["metric"][0], []).append((r.name, r.condition.field))  # type: ignore[arg-type]
    e = RuleEngine(rules)
    rng = random.Random(1)
    keys, rate, span = 10000, 20000, 20
    n = rate * span
    hosts = [f"h{i}" for i in range(keys)]
    hot = keys // 100
    # Draw the stream first: the figure is the engine's, not random()'s.
    stream = []
    for i in range(n):
        ts = i / rate
        h = rng.randrange(keys)
        v = 99.6 + rng.random() * 0.4 if (h + int(ts // 30) * hot) % keys < hot else rng.random() * 60
        stream.append((ts, hosts[h], METRICS[i % 10], v))
    changes = firing_peak = 0
    sampling = 0.0
    prof = cProfile.Profile() if cprofile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    observe, advance = e.observe, e.advance
    for i, (ts, host, metric, v) in enumerate(stream):
        for name, field in by_metric[metric]:
            observe(name, host, ts, v if field else None)
        if i % 1000 == 999:
            changes += len(advance(ts - 0.5))
            if i % 20000 == 19999:
                if prof:
                    prof.disable()
                c = time.process_time()
                firing_peak = max(firing_peak, len(e.firing()))
                sampling += time.process_time() - c  # not the engine's work: left out
                if prof:
                    prof.enable()
    changes += len(advance(span + 20.0))
    if prof:
        prof.disable()
    secs = time.process_time() - t0 - sampling
    size = RuleEngine.state_size(e)  # after the final advance: what is left
    out = {"events_per_s": n / secs, "obs_per_s": n * 10 / secs, "changes": changes,
           "firing_peak": firing_peak, "pairs": 100 * keys, "bytes_left": size["bytes"]}
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return out


def sweep_variant(window: float, slide: float, q: Any) -> None:
    rules = parse_rules({"rules": [
        {"name": agg, "key": "k", "condition": {"kind": "threshold", "aggregate": agg, "window": window,
                                                "slide": slide, "op": ">", "value": 1e12,
                                                **({} if agg == "count" else {"field": "v"})}}
        for agg in ("max", "avg", "p95", "count", "sum")]})
    e = RuleEngine(rules)
    keys, span = 200, 7200
    rng = random.Random(2)
    names = [(r.name, r.condition.field) for r in rules.rules]
    ks = [f"k{i}" for i in range(keys)]
    stream = [(t + rng.random() * 0.9, ks[k], rng.random() * 100) for t in range(span) for k in range(keys)]
    rss0 = psutil.Process().memory_info().rss
    observe = e.observe
    t0 = time.process_time()
    for i, (ts, k, v) in enumerate(stream):
        for name, field in names:
            observe(name, k, ts, v if field else None)
        if i % keys == keys - 1:
            e.advance(ts - 1.0)
    secs = time.process_time() - t0
    size = e.state_size()
    rss = psutil.Process().memory_info().rss - rss0
    q.put({"events_per_s": len(stream) / secs, "state_bytes_per_key": size["bytes"] / size["keys"],
           "panes_per_key": size["panes"] / size["keys"], "rss_per_key": rss / size["keys"]})


def run_variant(window: float, slide: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=sweep_variant, args=(window, slide, q))
    p.start()
    got: dict[str, Any] = q.get()
    p.join()
    return got


def calibration() -> float:
    """Microseconds for 1,000 dict stores: this machine's speed right now (a
    desktop CPU takes about 40), to read the figures below against."""
    import timeit

    t = timeit.Timer("for i in range(1000): d[i] = i", setup="d = {}")
    return min(t.repeat(5, 200)) / 200 * 1e6


def main(rounds: int, cprofile: bool) -> None:
    print(f"calibration: 1,000 dict stores take {calibration():.0f} µs here (about 40 on an idle desktop CPU)")
    s = steady(cprofile)
    print("engine, steady profile: 100 rules x 10,000 keys, 20,000 events per event-second, 20 s of event time")
    print(f"  events/CPU-s {s['events_per_s']:,.0f}  observations/CPU-s {s['obs_per_s']:,.0f}  "
          f"alert changes {s['changes']:,}  firing at most {s['firing_peak']:,} of {s['pairs']:,} (rule, key) pairs")
    variants = {"1 min / 1 s": (60.0, 1.0), "1 h / 1 min": (3600.0, 60.0)}
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for v in order:
            results[v].append(run_variant(*variants[v]))
    print(f"engine, window sweep: 5 rules x 200 keys, 1 event/s per key, 2 h of event time, {rounds} rounds (medians)")
    med = {v: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for v, rs in results.items()}
    for v, m in med.items():
        print(f"  {v:12s} events/CPU-s {m['events_per_s']:,.0f}  panes/key {m['panes_per_key']:.1f}  "
              f"state bytes/key {m['state_bytes_per_key']:,.0f}  RSS growth/key {m['rss_per_key']:,.0f}")
    a, b = med["1 min / 1 s"], med["1 h / 1 min"]
    print(f"  1 h / 1 min: events/CPU-s x{b['events_per_s'] / a['events_per_s']:.2f}, "
          f"state bytes/key x{b['state_bytes_per_key'] / a['state_bytes_per_key']:.2f}, "
          f"RSS/key x{b['rss_per_key'] / max(1, a['rss_per_key']):.2f}")
