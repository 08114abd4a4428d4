"""Exactly-once on real worker processes (trident_topos_wordcount): a Trident
word count over 50,000 sentences, through a step that fails random batches and
through two kill -9s of a worker, ends with counts EXACTLY equal to the true
counts, for a transactional and for an opaque spout; commits were applied in txid
order; a topology started again on the same state continues from its committed
txid without counting anything twice.

Each test prints its figures (run with -s to see them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trident_topos_wordcount as tw
from itest_support import wait_for
from trident_topos_harness import (
    TARGET,
    base_conf,
    check_commit_order,
    check_exact,
    committed,
    run_with_failures_and_kills,
    wait_exact,
)

from storm import LocalCluster


@pytest.mark.timeout(150)
def test_transactional_exactly_once_through_failures_and_two_kills(cluster: LocalCluster,
                                                                   tmp_path: Path) -> None:
    run_with_failures_and_kills(cluster, tmp_path, "transactional")


@pytest.mark.timeout(150)
def test_opaque_exactly_once_through_failures_and_two_kills(cluster: LocalCluster,
                                                            tmp_path: Path) -> None:
    # Every read of the source takes a random share of what is asked for, so a
    # replayed batch holds other sentences than its first attempt.
    run_with_failures_and_kills(cluster, tmp_path, "opaque")


@pytest.mark.timeout(120)
def test_a_restarted_topology_continues_from_its_committed_txid(cluster: LocalCluster,
                                                                tmp_path: Path) -> None:
    conf = base_conf(tmp_path, **{tw.SENTENCES: 3000, tw.BATCH: 100})
    factory = tw.state_factory(conf)
    topo = cluster.submit(TARGET, config=conf)
    wait_exact(topo, conf, factory, tw.true_counts(3000))
    topo.stop()
    first = committed(conf)
    check_exact(factory, tw.true_counts(3000))

    # The source grew (append-only); the same state and metadata, a new run.
    conf[tw.SENTENCES] = 6000
    topo = cluster.submit(TARGET, config=conf)
    wait_for(topo, lambda: committed(conf) > first, "the new run committed")
    wait_exact(topo, conf, factory, tw.true_counts(6000))
    topo.stop()
    check_exact(factory, tw.true_counts(6000))
    ncommits, again = check_commit_order(factory)
    print(f"\nfirst run committed up to txid {first}, the second continued to {committed(conf)}; "
          f"{ncommits} commits")
