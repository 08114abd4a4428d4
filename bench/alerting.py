"""Alerting throughput and latency: events/s through match -> evaluate with 100
rules over 10,000 keys (hosts), alerts POSTed to a local webhook; alert latency
is the wall-clock time the webhook received an alert minus the event time at
which its condition became true (the end of the window), so it includes the
watermark lag (rules file `lag`), the watermark interval and the webhook batching.

    python bench/alerting.py [--seconds 20] [--workers 2] [--par 2] [--spouts N] [--rules 100] [--keys 10000] [--rate N]
                             [--profile storm|steady] [--window SECS] [--half-peak]
    python bench/alerting.py --engine [--rounds 3]     # one process: the engine's own cost

Without --rate the spout runs flat out (max.spout.pending 2000), so the latency
then includes queueing at saturation; --half-peak runs flat out first, then at
half the events/s it reached, and reports the latency of that second run.

Each event carries one of 10 metrics and a random host; each metric has
rules/10 threshold rules (max, avg, p95, count, sum over 2-10 s windows, or
--window SECS sliding by SECS/60), so every event matches rules/10 rules.
Profiles: ``storm`` draws every value from 0-100 (a large share of keys fire
and resolve all the time); ``steady`` keeps values well inside the thresholds
except for 1% of the hosts, which run hot (the hot set moves every 30 s).

``--engine`` drives RuleEngine in this process, no runtime: the steady profile
at 100 rules x 10,000 keys (observations/s, events/s, alert changes, state per
key), then the window-length sweep, 1 min windows sliding by 1 s against 1 h
windows sliding by 1 min, at the same event rate (one event per key per
second of event time, 2 h of event time): events/s and memory per key,
interleaved rounds in fresh processes, medians and the ratio. ``--cprofile``
prints where the steady run spends its time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from storm import Grouping, LocalCluster, Spout, Topology  # noqa: E402
from storm.alerting import WATERMARK_STREAM, RuleEvalBolt, RuleMatchBolt  # noqa: E402
from storm.sinks import WebhookSink  # noqa: E402

METRICS = [f"m{i}" for i in range(10)]


def make_rules(n: int, window: float | None = None) -> dict[str, Any]:
    kinds = [("max", 99.5), ("avg", 80.0), ("p95", 98.0), ("count", 6), ("sum", 400.0)]
    if window is not None:  # long windows: count and sum thresholds scale with them
        kinds = [("max", 99.5), ("avg", 80.0), ("p95", 98.0), ("count", window), ("sum", 70 * window)]
    rules = []
    for i in range(n):
        agg, value = kinds[i % len(kinds)]
        w = 2 + (i % 5) * 2 if window is None else window
        slide = 1 if window is None else window / 60
        cond: dict[str, Any] = {"kind": "threshold", "aggregate": agg, "window": w,
                                "slide": slide, "op": ">", "value": value}
        if agg != "count":
            cond["field"] = "value"
        rules.append({"name": f"r{i}", "filter": {"metric": METRICS[i % len(METRICS)]}, "key": "host",
                      "condition": cond, "cooldown": 5})
    return {"time_field": "ts", "lag": 0.5, "rules": rules}


class EventSpout(Spout):
    outputs = ["event"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.rng = random.Random(context.task_id)
        self.keys = int(conf.get("bench.keys", 10000))
        self.seq = 0
        rate = float(conf.get("bench.rate") or 0)
        ntasks = len(context.get_component_tasks(context.component_id))
        self.rate = rate / ntasks if rate else 0.0
        self.t0 = time.time()
        self.steady = conf.get("bench.profile") == "steady"
        self.hosts = [f"h{i}" for i in range(self.keys)]  # the generator's cost is not the figure

    def next_tuple(self) -> None:
        rng = self.rng
        now = time.time()
        if self.rate and self.seq >= (now - self.t0) * self.rate:
            return
        self.seq += 1
        host = rng.randrange(self.keys)
        value = steady_value(rng, host, now, self.keys) if self.steady else rng.random() * 100
        ev = {"ts": now, "host": self.hosts[host], "metric": METRICS[self.seq % len(METRICS)], "value": value}
        self.emit([ev], msg_id=self.seq)


def steady_value(rng: random.Random, host: int, now: float, keys: int) -> float:
    """Well inside every threshold, except for the 1% of hosts that run hot
    (which ones moves every 30 s)."""
    hot = keys // 100
    if (host + int(now // 30) * hot) % keys < hot:
        return 99.6 + rng.random() * 0.4
    return rng.random() * 60


def topology(conf: dict[str, Any]) -> Any:
    par = int(conf.get("bench.par", 2))

    class AlertingBench(Topology):
        config = {"topology.max.spout.pending": 2000, "sinks.webhook.batch.size": 50,
                  "sinks.webhook.linger.secs": 0.05}
        events = EventSpout.spec(par=int(conf.get("bench.spouts") or max(1, par // 2)))
        match = RuleMatchBolt.spec(inputs=[events], par=par,
                                   config={"topology.tick.tuple.freq.secs": 0.2})
        evaluate = RuleEvalBolt.spec(
            inputs={match: Grouping.fields("rule", "key"), match[WATERMARK_STREAM]: Grouping.all()},
            par=par, config={"topology.tick.tuple.freq.secs": 0.2})
        webhook = WebhookSink.spec(inputs=[evaluate])

    return AlertingBench


def run_topology(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """One end-to-end run; its figures."""
    received: list[tuple[float, dict[str, Any]]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            now = time.time()
            with lock:
                received.extend((now, r) for r in json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tmp = tempfile.mkdtemp(prefix="bench-alerting-")
    rules_path = os.path.join(tmp, "rules.yaml")
    with open(rules_path, "w") as f:
        yaml.safe_dump(make_rules(args.rules, args.window), f)
    conf = {"topology.workers": args.workers, "alerting.rules": rules_path, "bench.par": args.par,
            "bench.keys": args.keys, "bench.rate": rate, "bench.profile": args.profile, "bench.spouts": args.spouts,
            "sinks.webhook.url": f"http://127.0.0.1:{server.server_address[1]}/"}
    try:
        with LocalCluster(local_dir=os.path.join(tmp, "cluster")) as cluster:
            topo = cluster.submit(f"{os.path.abspath(__file__)}:topology", config=conf)
            warm = 3.0
            time.sleep(warm)  # a benchmark's measuring interval, not a wait for a condition
            start = {c.name: c for c in topo.component_stats()}
            t0 = time.time()
            with lock:
                skip = len(received)
            time.sleep(args.seconds)
            end = {c.name: c for c in topo.component_stats()}
            if os.environ.get("BENCH_VERBOSE"):
                for c in end.values():
                    print(f"  {c}")
            t1 = time.time()
            with lock:
                window = received[skip:]
            cluster.kill(topo.name)
    finally:
        server.shutdown()
        server.server_close()
    secs = t1 - t0
    events = end["events"].acked - start["events"].acked
    observations = end["evaluate"].executed - start["evaluate"].executed
    lat = sorted((now - r["ts"]) * 1000 for now, r in window if r["state"] == "firing")
    out: dict[str, Any] = {"secs": secs, "events_per_s": events / secs, "obs_per_s": observations / secs,
                           "changes": len(window), "firing": len(lat)}
    if lat:
        out["p50_ms"] = statistics.median(lat)
        out["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return out


def print_run(args: argparse.Namespace, rate: float, r: dict[str, Any]) -> None:
    windows = "2-10 s windows, slide 1 s" if args.window is None else f"{args.window:g} s windows, slide {args.window / 60:g} s"
    print(f"alerting bench: {args.profile} profile, {args.rules} rules, {args.keys} keys, {windows}, "
          f"{args.workers} workers, par {args.par}, {r['secs']:.1f}s measured, offered rate {rate or 'unbounded'}")
    print(f"  events/s (acked at the spout): {r['events_per_s']:,.0f}")
    print(f"  observation tuples/s into evaluate (one per event and key, each carrying the event's rules): "
          f"{r['obs_per_s']:,.0f}")
    print(f"  alert changes received: {r['changes']} ({r['firing']} firing)")
    if "p50_ms" in r:
        print(f"  alert latency (webhook receipt - window end), ms: p50 {r['p50_ms']:.0f}  p99 {r['p99_ms']:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--par", type=int, default=2)
    ap.add_argument("--spouts", type=int, default=0, help="event spout tasks (default: par / 2)")
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=0.0, help="events/s offered (0: as fast as it goes)")
    ap.add_argument("--profile", choices=("storm", "steady"), default="storm")
    ap.add_argument("--window", type=float, default=None, help="every rule's window (slide: window/60)")
    ap.add_argument("--half-peak", action="store_true", help="then rerun at half the events/s reached")
    ap.add_argument("--engine", action="store_true", help="the one-process engine benchmark")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()
    if args.engine:
        from alerting_engine import main as engine_main

        engine_main(args.rounds, args.cprofile)
        return
    r = run_topology(args, args.rate)
    print_run(args, args.rate, r)
    if args.half_peak:
        half = r["events_per_s"] / 2
        print_run(args, half, run_topology(args, half))


if __name__ == "__main__":
    main()
