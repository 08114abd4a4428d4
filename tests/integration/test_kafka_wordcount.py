"""At-least-once word counts from Kafka on real workers through two kill -9s
(kafka_topos.wordcount): a 100,000-record topic (4 partitions) read by a
KafkaSpout of two tasks, one per worker. Worker 1 is killed and held back
from rejoining, so the other spout task must take its partitions; then worker
0 is killed too. At the end every record's words reached the sink (nothing
lost) and the counts over distinct (partition, offset, word index) are exact;
at every check during the run no committed offset passed a record whose
words had not all reached the sink."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import kafka_support as ks
import kafka_topos as kt
import pytest
from itest_support import wait_for

from storm import LocalCluster, LocalTopology

TOPOS = str(Path(kt.__file__).resolve())
RECORDS = 100_000
PARTITIONS = 4
WORDS = ["storm", "kafka", "spout", "bolt", "tuple", "ack", "offset", "commit", "lag", "topic"]


def _sentences(n: int) -> list[bytes]:
    rng = random.Random(13)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))).encode() for _ in range(n)]


def _sink_bytes(record_dir: Path) -> int:
    return sum(p.stat().st_size for p in record_dir.glob("words-*.log"))


def _summary(record_dir: Path, task: int) -> dict[str, Any]:
    try:
        return dict(json.loads((record_dir / f"a_kafka-{task}.json").read_text()))
    except (OSError, ValueError):
        return {}


class Truth:
    """What the topic holds, read back from the broker: words per (partition, offset)."""

    def __init__(self, address: str, topic: str) -> None:
        self.words: dict[tuple[int, int], list[str]] = {}
        for m in ks.read_all(address, topic, PARTITIONS, timeout=120):
            self.words[(m.partition(), m.offset())] = m.value().decode().split()
        assert len(self.words) == RECORDS
        self.counts = Counter(w for ws in self.words.values() for w in ws)
        self.total_bytes = sum(len(f"{p} {o} {i} {w}\n") for (p, o), ws in self.words.items()
                               for i, w in enumerate(ws))
        self.ends = {p: 1 + max(o for (q, o) in self.words if q == p) for p in range(PARTITIONS)}


def _seen(record_dir: Path) -> dict[tuple[int, int], set[int]]:
    seen: dict[tuple[int, int], set[int]] = {}
    for p, o, i, _w in kt.read_lines(record_dir, "words"):
        seen.setdefault((int(p), int(o)), set()).add(int(i))
    return seen


def _check_committed(address: str, group: str, topic: str, truth: Truth, record_dir: Path) -> dict[int, int]:
    """Committed offsets first, then what the sink saw: every record below a
    committed offset must have all its words in the sink's logs."""
    committed = ks.committed(address, group, topic, PARTITIONS)
    seen = _seen(record_dir)
    for p, upto in committed.items():
        for o in range(upto):
            want = len(truth.words[(p, o)])
            got = seen.get((p, o), set())
            assert len(got) == want, (f"partition {p} committed up to {upto} but record {o} has "
                                      f"{len(got)} of its {want} words in the sink")
    return committed


@pytest.mark.timeout(300)
def test_exact_word_counts_from_kafka_through_two_kills(cluster: LocalCluster, record_dir: Path) -> None:
    with ks.broker() as broker:
        topic, group = ks.topic_name("words"), ks.topic_name("wordcount")
        ks.create_topic(broker.address, topic, PARTITIONS)
        started = time.monotonic()
        ks.produce(broker.address, topic, ((None, s) for s in _sentences(RECORDS)),
                   partition_of=lambda i: i % PARTITIONS)
        truth = Truth(broker.address, topic)
        filled = time.monotonic() - started
        conf = {kt.TOPIC: topic, "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "kafka.spout.group.id": group, "kafka.spout.offset.commit.period.ms": 500,
                "kafka.spout.consumer": ks.FAST_GROUP}
        started = time.monotonic()
        topo = cluster.submit(f"{TOPOS}:wordcount", config=conf)
        checks = []

        def progress_past(share: float) -> None:
            wait_for(topo, lambda: _sink_bytes(record_dir) >= share * truth.total_bytes,
                     f"the sink got {share:.0%} of the words", timeout=120)

        # Kill 1: worker 1 (spout task 2), held back so task 1 takes over its partitions.
        progress_past(0.15)
        killed_pid = _summary(record_dir, 2).get("pid")
        (record_dir / "hold-2").write_text("")
        topo.kill_worker(1)
        wait_for(topo, lambda: len(_summary(record_dir, 1).get("partitions") or {}) == PARTITIONS,
                 "spout task 1 took over all four partitions", timeout=60)
        before = _sink_bytes(record_dir)
        wait_for(topo, lambda: _sink_bytes(record_dir) > before + 10_000, "words flow on one spout task")
        checks.append(_check_committed(broker.address, group, topic, truth, record_dir))
        (record_dir / "hold-2").unlink()
        wait_for(topo, lambda: _summary(record_dir, 2).get("pid") not in (None, killed_pid)
                 and len(_summary(record_dir, 2).get("partitions") or {}) > 0,
                 "the restarted spout task 2 got partitions back", timeout=60)

        # Kill 2: worker 0 (spout task 1), restarted at once.
        progress_past(0.55)
        checks.append(_check_committed(broker.address, group, topic, truth, record_dir))
        topo.kill_worker(0)
        progress_past(0.8)
        checks.append(_check_committed(broker.address, group, topic, truth, record_dir))

        def all_seen() -> bool:
            if _sink_bytes(record_dir) < truth.total_bytes:
                return False
            seen = _seen(record_dir)
            return all(len(seen.get(k, ())) == len(ws) for k, ws in truth.words.items())
        wait_for(topo, all_seen, "every record's words reached the sink", timeout=180)
        elapsed = time.monotonic() - started
        wait_for(topo, lambda: ks.committed(broker.address, group, topic, PARTITIONS) == truth.ends,
                 "every offset committed", timeout=30)
        final = _check_committed(broker.address, group, topic, truth, record_dir)
        _stop(topo)
    lines = kt.read_lines(record_dir, "words")
    distinct = {(int(p), int(o), int(i)): w for p, o, i, w in lines}
    assert Counter(distinct.values()) == truth.counts
    assert final == truth.ends
    print(f"\nkafka word count: {RECORDS} records ({sum(truth.counts.values())} words) filled in {filled:.1f}s, "
          f"counted exactly in {elapsed:.1f}s through two kill -9s; {len(lines) - len(distinct)} words "
          f"delivered again after a replay; committed offsets at the checks {checks}")


def _stop(topo: LocalTopology) -> None:
    topo.stop()
