"""The even scheduler: workers spread over supervisors, kept slots stay, too
few slots is None."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storm.daemon._scheduler import SupervisorSlots, schedule


def sups(*ports: int) -> list[SupervisorSlots]:
    return [SupervisorSlots(f"s{i}", f"h{i}", tuple(range(6700, 6700 + n))) for i, n in enumerate(ports)]


def test_spreads_evenly_over_supervisors() -> None:
    slots = schedule(4, sups(4, 4), set())
    assert slots is not None
    assert Counter(sid for sid, _ in slots) == {"s0": 2, "s1": 2}
    assert len(set(slots)) == 4


def test_counts_what_other_topologies_use() -> None:
    used = {("s0", 6700), ("s0", 6701)}
    slots = schedule(2, sups(4, 4), used)
    assert slots == [("s1", 6700), ("s1", 6701)]


def test_too_few_slots() -> None:
    assert schedule(3, sups(1, 1), set()) is None
    assert schedule(1, [], set()) is None


def test_keeps_slots_of_live_supervisors() -> None:
    keep = {0: ("s0", 6701), 1: ("gone", 6700)}
    slots = schedule(2, sups(2, 2), set(), keep)
    assert slots is not None
    assert slots[0] == ("s0", 6701)
    assert slots[1][0] == "s1"


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError):
        schedule(0, sups(1), set())


@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.integers(1, 12))
def test_property_distinct_slots_and_balanced(ports: list[int], workers: int) -> None:
    slots = schedule(workers, sups(*ports), set())
    if workers > sum(ports):
        assert slots is None
        return
    assert slots is not None and len(slots) == workers and len(set(slots)) == workers
    load = Counter(sid for sid, _ in slots)
    # a supervisor gets more than one worker above another only when the other is full
    for i in range(len(ports)):
        for j, m in enumerate(ports):
            if load[f"s{i}"] > load[f"s{j}"] + 1:
                assert load[f"s{j}"] == m
