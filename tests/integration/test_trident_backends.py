"""Exactly-once into real Redis and PostgreSQL servers: the Trident word count
of test_trident_exactly_once (50,000 sentences, failing batches, two kill -9s),
with its state in Redis and in PostgreSQL, each with a transactional and with
an opaque spout (SQLite runs both in test_trident_exactly_once). The servers
are CI's (STORM_TEST_REDIS, STORM_TEST_POSTGRES, started by .ci/run through
scripts/services) or private ones on free ports, one per module; the tests
skip only when neither is there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trident_topos_wordcount as tw
from trident_topos_harness import run_with_failures_and_kills, server

from storm import LocalCluster

ENV = {"redis": "STORM_TEST_REDIS", "postgres": "STORM_TEST_POSTGRES"}


@pytest.fixture(scope="module", params=["redis", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    kind = str(request.param)
    with server(kind, ENV[kind], tmp_path_factory.mktemp(kind)) as url:
        yield kind, url


@pytest.mark.timeout(180)
@pytest.mark.parametrize("spout", ["transactional", "opaque"])
def test_exactly_once_through_failures_and_two_kills(backend: tuple[str, str], spout: str,
                                                     cluster: LocalCluster, tmp_path: Path) -> None:
    kind, url = backend
    run_with_failures_and_kills(cluster, tmp_path, spout, **{
        tw.BACKEND: kind, tw.STATE: url, tw.TABLE: f"wc_{uuid.uuid4().hex[:12]}"})
