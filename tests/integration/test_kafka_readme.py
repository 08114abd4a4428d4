"""The README's Kafka example, run as a user would (on a private broker, ports
substituted): fill the topic with topologies/kafka_wordcount.py, run it under
`storm local` with the Prometheus endpoint on, and watch the spout group's lag
reach 0 on `storm_kafka_partition_lag{topic,partition}` while the counts
written back to Kafka reach the true counts. Also the lag reader against a
group with a known committed offset."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import kafka_support as ks
import pytest
from daemon_topos_harness import free_ports, wait_until
from prometheus_client.parser import text_string_to_metric_families

from storm.kafka._lag import query_lag

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "topologies" / "kafka_wordcount.py"
STORM = Path(sys.executable).parent / "storm"
README_BROKER, README_PROM = "127.0.0.1:9092", "9464"


def _readme_kafka_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Kafka", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _lags(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.labels["topic"], s.labels["partition"]): s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "storm_kafka_partition_lag"}


def _true_counts(n: int, seed: int = 1) -> Counter[str]:
    spec = importlib.util.spec_from_file_location("kafka_wordcount_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    rng = random.Random(seed)
    c: Counter[str] = Counter()
    for _ in range(n):
        c.update(rng.choice(ex.WORDS) for _ in range(rng.randint(3, 8)))
    return c


@pytest.mark.timeout(150)
def test_readme_kafka_example(tmp_path: Path) -> None:
    commands = _readme_kafka_commands()
    produce = next(c for c in commands if " produce " in c)
    local = next(c for c in commands if c.startswith("storm local"))
    n = int(produce.split()[-1])
    with ks.private_broker() as broker:
        prom = free_ports(1)[0]
        env = dict(os.environ, HOME=str(tmp_path), COLUMNS="120")
        args = produce.replace(README_BROKER, broker.address).split()
        done = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        args = local.replace(README_BROKER, broker.address).replace(README_PROM, str(prom)).split()
        log = tmp_path / "out.txt"
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(STORM), *args[1:], "-c", f"storm.local.dir={tmp_path}"], cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            def caught_up() -> bool:
                try:
                    lags = _lags(prom)
                except (OSError, urllib.error.URLError):
                    return False
                parts = {k for k in lags if k[0] == "sentences"}
                return len(parts) == 4 and all(lags[k] == 0 for k in parts)
            wait_until(caught_up, "the spout group's lag on 'sentences' is 0 on all 4 partitions", 120,
                       lambda: log.read_text(errors="replace"))
            got: dict[str, int] = {}
            for m in ks.read_all(broker.address, "word-counts", 4):
                word = m.key().decode()
                got[word] = max(got.get(word, 0), int(m.value()))
            # At-least-once: a replay may count a sentence twice, never zero times.
            want = _true_counts(n)
            assert set(got) == set(want) and all(got[w] >= want[w] for w in want), (got, want)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.mark.timeout(60)
def test_lag_is_end_minus_committed() -> None:
    with ks.broker() as broker:
        topic, group = ks.topic_name("lag"), ks.topic_name("g")
        ks.create_topic(broker.address, topic, 2)
        ks.produce(broker.address, topic, ((None, b"x") for _ in range(100)), partition_of=lambda i: i % 2)
        ck = ks.client()
        c = ck.Consumer({"bootstrap.servers": broker.address, "group.id": group, "enable.auto.commit": False})
        c.commit(offsets=[ck.TopicPartition(topic, 0, 20)], asynchronous=False)
        c.close()
        rows = query_lag({"words": {"bootstrap_servers": broker.address, "group_id": group, "topics": [topic],
                                    "pattern": None}})
    got = {r["partition"]: (r["committed"], r["end"], r["lag"]) for r in rows}
    assert got == {0: (20, 50, 30), 1: (None, 50, 50)}


def _readme_alerting_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Real-time alerting", 1)[1].split("\n## ", 1)[0]
    return next(line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if "alerting.source=kafka" in line)


@pytest.mark.timeout(120)
def test_alerting_reads_its_events_from_kafka(tmp_path: Path) -> None:
    """The README's command: the alerting topology, by config only, reads JSON
    events from a topic; host-2's hot CPU in them fires cpu_high."""
    import json
    import time

    command = _readme_alerting_command()
    with ks.broker() as broker:
        topic = ks.topic_name("metrics")
        ks.create_topic(broker.address, topic, 2)
        now = time.time()
        events = [{"ts": now - 40 + i * 0.25, "host": f"host-{h}", "metric": "cpu",
                   "value": 97.0 if h == 2 else 30.0} for i in range(160) for h in range(4)]
        ks.produce(broker.address, topic, ((None, json.dumps(e).encode()) for e in events))
        args = (command.replace(README_BROKER, broker.address).replace("[metrics]", f"[{topic}]")
                .replace("topologies/", f"{ROOT}/topologies/").split())
        rules = (ROOT / "conf" / "alerts.example.yaml").read_text()
        (tmp_path / "rules.yaml").write_text(rules)
        env = dict(os.environ, HOME=str(tmp_path), COLUMNS="120")
        log = tmp_path / "out.txt"
        alerts = tmp_path / "alerts.jsonl"
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(STORM), *args[1:], "-c", "alerting.rules=rules.yaml",
                                     "-c", f"storm.local.dir={tmp_path}"], cwd=tmp_path, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            def fired() -> bool:
                return alerts.exists() and any(
                    json.loads(x)["rule"] == "cpu_high" and json.loads(x)["state"] == "firing"
                    for x in alerts.read_text().splitlines())
            wait_until(fired, "cpu_high fired from the Kafka events", 90, lambda: log.read_text(errors="replace"))
            lines = [json.loads(x) for x in alerts.read_text().splitlines()]
            assert all(r["key"] == "host-2" for r in lines if r["rule"] == "cpu_high"), lines
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
