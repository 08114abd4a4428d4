"""Errors in user code on real workers: a bolt that raises, and emits of values
msgpack cannot encode, are recorded (component, task, stream, traceback) and
counted, and the worker goes on running the same process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import topos_errors as te
from itest_support import stats, wait_for
from topos_common import COUNT, RECORD_DIR, read_records

from storm import LocalCluster, LocalTopology

pytestmark = pytest.mark.timeout(90)

N = 200  # few enough errors (< 50) that recent_errors() keeps them all
SENT = [n for n in range(N) if not te.spout_emits_set(n)]  # what the spout manages to emit


def start(cluster: LocalCluster, record_dir: Path) -> LocalTopology:
    topo = cluster.submit(te.Errors, config={RECORD_DIR: str(record_dir), COUNT: N})
    assert len(topo.pids()) == 2
    return topo


def received(record_dir: Path, component: str) -> int:
    return sum(r["count"] for r in read_records(record_dir, component).values())


def wait_error_counts(topo: LocalTopology, expected: dict[str, int]) -> None:
    def counts() -> dict[str, int]:
        s = stats(topo)
        return {c: s[c].errors for c in expected}

    wait_for(topo, lambda: counts() == expected, f"error counts {expected}")


def errors_of(topo: LocalTopology, component: str) -> list[dict[str, Any]]:
    return [e for e in topo.recent_errors() if e["component"] == component]


def assert_names(message: str, *names: str) -> None:
    """The error message names the component, the stream, the field (and the type)."""
    missing = [n for n in names if n not in message]
    assert not missing, f"{missing} not in {message!r}"


def assert_same_workers(topo: LocalTopology, pids: list[int]) -> None:
    assert topo.pids() == pids
    assert all(w.restarts == 0 and w.proc is not None and w.proc.poll() is None for w in topo.workers)


def test_raising_bolt_is_recorded_and_keeps_running(cluster: LocalCluster, record_dir: Path) -> None:
    topo = start(cluster, record_dir)
    pids = topo.pids()
    refused = [n for n in SENT if te.flaky_refuses(n)]
    wait_for(topo, lambda: received(record_dir, "flaky") == len(SENT) - len(refused),
             "the flaky bolt processed every tuple it did not refuse")
    wait_error_counts(topo, {"flaky": len(refused)})
    assert_same_workers(topo, pids)
    wait_for(topo, lambda: stats(topo)["flaky"].failed == len(refused), "each refused input failed")

    # recent_errors() may keep only some of a burst (a worker rate-limits what it
    # reports); each one it keeps is complete, and the counts above are exact.
    errors = errors_of(topo, "flaky")
    tasks = set(topo.spec.components["flaky"].tasks)
    assert errors
    assert {e["task"] for e in errors} <= tasks
    assert {int(e["error"].rsplit(" ", 1)[1]) for e in errors} <= set(refused)
    for e in errors:
        assert e["where"] == "execute"
        assert e["error"].startswith("ValueError: flaky bolt refuses ")
        tb = e["traceback"]
        assert tb.startswith("Traceback (most recent call last)")
        assert "topos_errors.py" in tb and "in execute" in tb and "raise ValueError" in tb


def test_unencodable_emits_are_errors_naming_component_and_stream(cluster: LocalCluster, record_dir: Path) -> None:
    topo = start(cluster, record_dir)
    pids = topo.pids()
    spout_sets = [n for n in range(N) if te.spout_emits_set(n)]
    bolt_sets = [n for n in SENT if te.setter_emits_set(n)]
    big = [n for n in SENT if te.huge_emits_big_int(n)]
    wait_error_counts(topo, {"numbers": len(spout_sets), "setter": len(bolt_sets), "huge": len(big)})
    # work goes on around the bad values
    wait_for(topo, lambda: received(record_dir, "setter") == len(SENT) - len(bolt_sets),
             "the setter processed every tuple it did not fail on")
    # the rest of the batch the big integer travelled in still reached the other worker
    wait_for(topo, lambda: received(record_dir, "far") == len(SENT) - len(big),
             "every encodable value of 'huge' reached 'far' in the other worker")
    assert_same_workers(topo, pids)

    spout_errors = errors_of(topo, "numbers")
    assert len(spout_errors) == len(spout_sets)
    for e in spout_errors:
        assert e["where"] == "next_tuple"
        assert e["error"].startswith("SerializationError: ")
        assert_names(e["error"], "'numbers'", "'odd'", "'thing'", "set")
        assert e["task"] in topo.spec.components["numbers"].tasks

    bolt_errors = errors_of(topo, "setter")
    assert len(bolt_errors) == len(bolt_sets)
    for e in bolt_errors:
        assert e["where"] == "execute"
        assert_names(e["error"], "'setter'", "'items'", "'item'", "set")
        assert e["task"] in topo.spec.components["setter"].tasks
        assert "Traceback" in e["traceback"]

    huge_errors = errors_of(topo, "huge")
    assert len(huge_errors) == len(big)
    for e in huge_errors:
        assert e["error"].startswith("SerializationError: ")
        assert_names(e["error"], "'huge'", "'default'", "'value'")
        assert e["task"] == topo.spec.components["huge"].tasks[0]
    far = read_records(record_dir, "far")
    assert str(te.TOO_BIG) not in next(iter(far.values()))["keys"]
