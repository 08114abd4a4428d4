"""`storm alerts run` with sources and sinks on real servers, named by URL:
events from a Kafka topic (kafka://host:port/topic) and from a Redis stream
(redis://host:port/stream) with the alerts XADDed to another Redis stream.
The servers: CI's (STORM_TEST_KAFKA, STORM_TEST_REDIS), else private ones
started here; without them the tests skip (fail under CI=true)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kafka_support as ks
import psutil
import pytest
from daemon_topos_harness import wait_until
from itest_support import stop_tree

STORM = str(Path(sys.executable).parent / "storm")
RULES = """time_field: ts
rules:
  - name: cpu_high
    filter: {metric: cpu}
    key: host
    condition: {kind: threshold, aggregate: avg, field: value, window: 2, slide: 1, op: ">", value: 90}
"""


def hot_and_cool(now: float) -> list[dict[str, Any]]:
    return [{"ts": now, "host": "h1", "metric": "cpu", "value": 95.0},
            {"ts": now, "host": "h2", "metric": "cpu", "value": 10.0}]


def run_alerts(tmp_path: Path, args: list[str], send: Callable[[list[dict[str, Any]]], None],
               fired: Callable[[], bool], what: str, settled: Callable[[], bool] | None = None) -> None:
    """`storm alerts run` with ``args`` while ``send`` is given events every
    0.1 s, until ``fired()``; then (events stopped) until ``settled()``; then
    Ctrl-C, and no process left behind."""
    (tmp_path / "rules.yaml").write_text(RULES)
    proc = subprocess.Popen([STORM, "alerts", "run", "rules.yaml", *args, "-d", "90"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(0.1):
            send(hot_and_cool(time.time()))

    threading.Thread(target=pump, daemon=True).start()
    children: list[psutil.Process] = []
    try:
        wait_until(fired, what, 60, lambda: "".join(out))
        children = psutil.Process(proc.pid).children(recursive=True)
        stop.set()
        if settled is not None:
            wait_until(settled, "settled", 30, lambda: "".join(out))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(out)
    finally:
        stop.set()
        stop_tree(proc, children)
    assert "0 error(s); all workers stopped" in "".join(out), "".join(out)


def alerts_in(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    return [(a["rule"], a["key"], a["state"]) for a in map(json.loads, path.read_text().splitlines())]


@pytest.mark.timeout(150)
def test_alerts_from_a_kafka_topic(tmp_path: Path) -> None:
    with ks.broker() as b:
        topic = ks.topic_name("alerts")
        ks.create_topic(b.address, topic, 1)
        out = tmp_path / "alerts.jsonl"

        def send(events: list[dict[str, Any]]) -> None:
            ks.produce(b.address, topic, [(None, json.dumps(e).encode()) for e in events])

        consumer = json.dumps(ks.FAST_GROUP)
        run_alerts(tmp_path, ["--source", f"kafka://{b.address}/{topic}", "--sink", "file:alerts.jsonl",
                              "-c", f"kafka.spout.consumer={consumer}"],
                   send, lambda: ("cpu_high", "h1", "firing") in alerts_in(out), "cpu_high fires from Kafka")
        assert alerts_in(out) == [("cpu_high", "h1", "firing")]


@pytest.mark.timeout(120)
def test_alerts_from_a_redis_stream_to_a_redis_stream(tmp_path: Path, redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    events, alerts = f"events-{uuid.uuid4().hex[:8]}", f"alerts-{uuid.uuid4().hex[:8]}"
    hostport = redis_url.split("//", 1)[1].split("/", 1)[0]
    db = redis_url.rsplit("/", 1)[1] or "0"

    def send(evs: list[dict[str, Any]]) -> None:
        for e in evs:
            client.xadd(events, {"event": json.dumps(e)})

    def got() -> list[tuple[str, str, str]]:
        return [(r["rule"], r["key"], r["state"])
                for r in (json.loads(f["record"]) for _, f in client.xrange(alerts))]

    def all_acked() -> bool:
        # Every event read is XACKed to the group once its tuple tree completed
        # (the evaluator's acks wait for the checkpoint that holds them).
        group = next(g for g in client.xinfo_groups(events) if g["name"] == "storm")
        return bool(group["pending"] == 0 and group["entries-read"] == client.xlen(events))

    try:
        run_alerts(tmp_path, ["--source", f"redis://{hostport}/{events}?db={db}",
                              "--sink", f"redis://{hostport}/{alerts}?db={db}"],
                   send, lambda: ("cpu_high", "h1", "firing") in got(), "cpu_high reaches the Redis stream",
                   all_acked)
        assert got() == [("cpu_high", "h1", "firing")]
    finally:
        client.delete(events, alerts)
        client.close()
