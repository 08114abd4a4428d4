"""Exactly-once Trident counts from Kafka on real workers (kafka_trident_topos):
a topic of 12,000 sentences in 4 partitions, read by an opaque Kafka spout
(and, on SQLite, a transactional one) whose batches are offset ranges kept in
the batch metadata, through random failed batches and a kill -9 of each
worker, counted into SQLite, Redis and PostgreSQL: the final counts are
exactly the true counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import kafka_support as ks
import kafka_trident_topos as kto
import pytest
import trident_topos_wordcount as tw
from itest_support import stats, wait_for
from trident_topos_harness import (
    base_conf,
    check_commit_order,
    check_exact,
    committed,
    counts,
    server,
    wait_exact,
)

from storm import LocalCluster

TARGET = str(Path(kto.__file__).resolve()) + ":wordcount"
SENTENCES = 12_000
ENV = {"redis": "STORM_TEST_REDIS", "postgres": "STORM_TEST_POSTGRES"}


@pytest.fixture(params=[("sqlite", "opaque"), ("sqlite", "transactional"), ("redis", "opaque"),
                        ("postgres", "opaque")], ids=lambda p: "-".join(p))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    kind, spout = request.param
    if kind == "sqlite":
        yield kind, str(tmp_path / "state.sqlite"), spout
        return
    with server(kind, ENV[kind], tmp_path) as url:
        yield kind, url, spout


@pytest.mark.timeout(200)
def test_kafka_exactly_once_through_failures_and_kills(cluster: LocalCluster, tmp_path: Path,
                                                       backend: tuple[str, str, str]) -> None:
    kind, location, spout = backend
    with ks.broker() as broker:
        topic = ks.topic_name("sentences")
        ks.create_topic(broker.address, topic, 4)
        ks.produce(broker.address, topic, ((None, s.encode()) for (s,) in tw.sentences(SENTENCES)),
                   partition_of=lambda i: i % 4)
        conf = base_conf(tmp_path, **{tw.BACKEND: kind, tw.STATE: location, tw.KIND: spout,
                                      tw.BATCH: 100, tw.FAIL_RATE: 0.0002, tw.TABLE: ks.topic_name("wc").replace("-", "_"),
                                      kto.TOPIC: topic, "kafka.bootstrap.servers": broker.address})
        factory = tw.state_factory(conf)
        expected = tw.true_counts(SENTENCES)
        started = time.monotonic()
        topo = cluster.submit(TARGET, config=conf)
        kills = []
        for index in (1, 0):  # worker 0 holds the master coordinator
            mark = committed(conf) + 4
            wait_for(topo, lambda m=mark: committed(conf) >= m, f"four more batches committed (txid {mark})",
                     timeout=90)
            w = topo.workers[index]
            restarts = w.restarts
            kills.append((index, committed(conf), sum(counts(factory).values())))
            topo.kill_worker(index)
            wait_for(topo, lambda w=w, r=restarts: w.restarts == r + 1 and w.ready, f"worker {index} restarted")
        last = wait_exact(topo, conf, factory, expected)
        elapsed = time.monotonic() - started
        failed = stats(topo)["trident-coord"].failed
        topo.stop()
    check_exact(factory, expected)
    ncommits, again = check_commit_order(factory)
    print(f"\nkafka ({spout}) -> {kind}: {SENTENCES} sentences, {sum(expected.values())} words exactly counted in "
          f"{elapsed:.1f}s; kills (worker, committed txid, words then) {kills}; last txid {last}; "
          f"coordinator trees failed {failed}; commits {ncommits}, re-applied {again}")
    assert failed > 0, "no batch failed: the test proved little"
    assert kills[-1][2] < sum(expected.values()), "the last kill came after everything was counted"
