"""Exactly-once into real Redis and PostgreSQL servers: the Trident word count
of test_trident_exactly_once (50,000 sentences, failing batches, two kill -9s),
with its state in Redis (transactional spout) and in PostgreSQL (opaque spout).
The servers are CI's (STORM_TEST_REDIS, STORM_TEST_POSTGRES, started by
.ci/run through scripts/services) or private ones on free ports; the tests skip
only when neither is there."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trident_topos_wordcount as tw
from trident_topos_harness import run_with_failures_and_kills, server

from storm import LocalCluster


@pytest.mark.timeout(180)
def test_redis_transactional_exactly_once_through_failures_and_two_kills(
        cluster: LocalCluster, tmp_path: Path) -> None:
    with server("redis", "STORM_TEST_REDIS", tmp_path) as url:
        run_with_failures_and_kills(cluster, tmp_path, "transactional", **{
            tw.BACKEND: "redis", tw.STATE: url, tw.TABLE: f"wc_{uuid.uuid4().hex[:12]}"})


@pytest.mark.timeout(180)
def test_postgres_opaque_exactly_once_through_failures_and_two_kills(
        cluster: LocalCluster, tmp_path: Path) -> None:
    with server("postgres", "STORM_TEST_POSTGRES", tmp_path) as url:
        run_with_failures_and_kills(cluster, tmp_path, "opaque", **{
            tw.BACKEND: "postgres", tw.STATE: url, tw.TABLE: f"wc_{uuid.uuid4().hex[:12]}"})
