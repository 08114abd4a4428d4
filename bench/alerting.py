"""Alerting throughput and latency: events/s through match -> evaluate with 100
rules over 10,000 keys (hosts), alerts POSTed to a local webhook; alert latency
is the wall-clock time the webhook received an alert minus the event time at
which its condition became true (the end of the window), so it includes the
watermark lag (rules file `lag`), the watermark interval and the webhook batching.

    python bench/alerting.py [--seconds 20] [--workers 2] [--par 2] [--rules 100] [--keys 10000] [--rate N]

Without --rate the spout runs flat out (max.spout.pending 2000), so the latency
then includes queueing at saturation; --rate 800 shows it below saturation.

Each event carries one of 10 metrics and a random host; each metric has
rules/10 threshold rules (max, avg, p95, count, sum over 2-10 s windows), so
every event matches rules/10 rules.
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


def make_rules(n: int) -> dict[str, Any]:
    kinds = [("max", 99.5), ("avg", 80.0), ("p95", 98.0), ("count", 6), ("sum", 400.0)]
    rules = []
    for i in range(n):
        agg, value = kinds[i % len(kinds)]
        window = 2 + (i % 5) * 2
        cond: dict[str, Any] = {"kind": "threshold", "aggregate": agg, "window": window,
                                "slide": 1, "op": ">", "value": value}
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

    def next_tuple(self) -> None:
        rng = self.rng
        if self.rate and self.seq >= (time.time() - self.t0) * self.rate:
            return
        self.seq += 1
        ev = {"ts": time.time(), "host": f"h{rng.randrange(self.keys)}",
              "metric": METRICS[self.seq % len(METRICS)], "value": rng.random() * 100}
        self.emit([ev], msg_id=self.seq)


def topology(conf: dict[str, Any]) -> Any:
    par = int(conf.get("bench.par", 2))

    class AlertingBench(Topology):
        config = {"topology.max.spout.pending": 2000, "sinks.webhook.batch.size": 50,
                  "sinks.webhook.linger.secs": 0.05}
        events = EventSpout.spec(par=max(1, par // 2))
        match = RuleMatchBolt.spec(inputs=[events], par=par,
                                   config={"topology.tick.tuple.freq.secs": 0.2})
        evaluate = RuleEvalBolt.spec(
            inputs={match: Grouping.fields("rule", "key"), match[WATERMARK_STREAM]: Grouping.all()},
            par=par, config={"topology.tick.tuple.freq.secs": 0.2})
        webhook = WebhookSink.spec(inputs=[evaluate])

    return AlertingBench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--par", type=int, default=2)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=0.0, help="events/s offered (0: as fast as it goes)")
    args = ap.parse_args()

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
        yaml.safe_dump(make_rules(args.rules), f)
    conf = {"topology.workers": args.workers, "alerting.rules": rules_path, "bench.par": args.par,
            "bench.keys": args.keys, "bench.rate": args.rate, "sinks.webhook.url": f"http://127.0.0.1:{server.server_address[1]}/"}
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
    firing = [(now - r["ts"]) * 1000 for now, r in window if r["state"] == "firing"]
    lat = sorted(firing)
    print(f"alerting bench: {args.rules} rules, {args.keys} keys, {args.workers} workers, par {args.par}, "
          f"{secs:.1f}s measured, offered rate {args.rate or 'unbounded'}")
    print(f"  events/s (acked at the spout): {events / secs:,.0f}")
    print(f"  rule observations/s (evaluate): {observations / secs:,.0f}")
    print(f"  alert changes received: {len(window)} ({len(firing)} firing)")
    if lat:
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"  alert latency (webhook receipt - window end), ms: p50 {p50:.0f}  p99 {p99:.0f}")


if __name__ == "__main__":
    main()
