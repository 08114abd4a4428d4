"""A worker's ack folding (storm._runtime.acking.AckTracker) against a model:
whatever the order of acks, spout inits and flushes, what reaches the ackers
and the spouts XORs, per tree, to what was acked; a tree born and completed in
the worker finishes there; a fail drops what was folded for its tree."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from storm._runtime.acking import AckTracker, Ids
from storm._tuple import StreamMeta, Tuple

META = StreamMeta("split", "default", ("word",), 0)
ACKERS = [10, 11]
SPOUT = 1
ACK_SID, INIT_SID, FAIL_SID = 5, 6, 7
ROOTS = [(1 << 61) + 2 * i for i in range(6)]  # big ids, as drawn; each a distinct object


def make_tracker() -> tuple[AckTracker, list[tuple[Any, ...]]]:
    tr = AckTracker(list(ACKERS), Ids())
    out: list[tuple[Any, ...]] = []
    tr.deliver = lambda task, values, sid, src: out.append(("deliver", task, list(values), sid, src))
    tr.finish = lambda spout, root, ok: out.append(("finish", spout, root, ok))
    tr.ack_sid, tr.init_sids, tr.fail_sids = ACK_SID, {SPOUT: INIT_SID}, {3: FAIL_SID}
    return tr, out


def tup(root: int, edge: int, ack_val: int = 0) -> Tuple:
    t = Tuple(["w"], META, 2, int(str(root)), edge)  # a fresh int object, as decoded from the wire
    t.ack_val = ack_val
    return t


op = st.one_of(
    st.tuples(st.just("ack"), st.integers(0, 5), st.integers(1, 2**62 - 1), st.sampled_from([0, 0, 12345])),
    st.tuples(st.just("start"), st.integers(0, 5), st.integers(1, 2**62 - 1), st.just(0)),
    st.tuples(st.just("flush"), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=60))
def test_folded_acks_xor_to_what_was_acked(script: list[tuple[str, int, int, int]]) -> None:
    tr, out = make_tracker()
    model: dict[int, int] = {}
    started: set[int] = set()
    for kind, i, value, av in script:
        root = ROOTS[i]
        if kind == "ack":
            tr.ack(tup(root, value, av))
            model[root] = model.get(root, 0) ^ value ^ av
        elif kind == "start" and root not in started:
            started.add(root)
            tr.start(root, value, SPOUT)
            model[root] = model.get(root, 0) ^ value
        elif kind == "flush":
            tr.flush()
    tr.flush()
    assert not tr.has_acks
    got: dict[int, int] = {}
    for entry in out:
        if entry[0] == "deliver":
            _, task, values, sid, _src = entry
            root = values[0]
            assert task == ACKERS[root % 2]
            assert sid == (INIT_SID if len(values) == 3 else ACK_SID)
            got[root] = got.get(root, 0) ^ values[1]
        else:  # finished here: emitted and completed in this worker, its XOR 0
            assert entry[3] is True and entry[2] in started
            got.setdefault(entry[2], 0)
    assert {r: v for r, v in got.items() if v} == {r: v for r, v in model.items() if v}
    # Every started tree left the worker once (to its acker, or finished here).
    inits = [e for e in out if (e[0] == "deliver" and len(e[2]) == 3) or e[0] == "finish"]
    assert sorted(e[2][0] if e[0] == "deliver" else e[2] for e in inits) == sorted(started)


def test_a_run_of_acks_of_one_tree_is_one_message() -> None:
    tr, out = make_tracker()
    r, other = ROOTS[0], ROOTS[1]
    for e in (3, 5, 6):
        tr.ack(tup(r, e))
    tr.ack(tup(other, 9))
    tr.ack(tup(r, 1))
    tr.flush()
    assert sorted((e[2][0], e[2][1]) for e in out) == sorted([(r, 3 ^ 5 ^ 6 ^ 1), (other, 9)])


def test_a_tree_completed_in_this_worker_finishes_without_an_acker() -> None:
    tr, out = make_tracker()
    r = ROOTS[2]
    tr.start(r, 7 ^ 9, SPOUT)
    tr.ack(tup(r, 7))
    tr.ack(tup(r, 9))
    tr.flush()
    assert out == [("finish", SPOUT, r, True)]


def test_a_fail_of_a_local_tree_drops_the_acks_folded_for_it() -> None:
    tr, out = make_tracker()
    r = ROOTS[3]
    tr.start(r, 7 ^ 9, SPOUT)
    tr.ack(tup(r, 7))  # held as the last tree acked
    tr.fail(tup(r, 9), 3)
    tr.flush()
    assert out == [("finish", SPOUT, r, False)]
    assert not tr.has_acks and not tr.pending and not tr.inits


# -- the acker's intake of other workers' messages ------------------------------------

def test_intake_folds_acks_inits_and_fails_and_counts_bad_messages() -> None:
    from storm._acking import ACK_ACK, ACK_FAIL, ACK_INIT
    from storm._runtime.acking import AckerIntake, AckerTrees
    from storm._runtime.stats import TaskStats

    results: list[tuple[int, int, bool]] = []
    errors: list[str] = []
    trees = AckerTrees(lambda task, root, ok: results.append((task, root, ok)))
    stats = TaskStats()
    intake = AckerIntake(trees, stats, lambda exc, where: errors.append(f"{where}: {type(exc).__name__}"))
    a, b = ROOTS[0], ROOTS[1]
    assert intake.take(ACK_ACK, [[a, 5], "junk", [b, 3], [a]])
    assert intake.take(ACK_INIT, [[a, 5, SPOUT], [b, 7, SPOUT]])
    assert results == [(SPOUT, a, True)] and b in trees.pending
    assert intake.take(ACK_FAIL, [[b]])
    assert results == [(SPOUT, a, True), (SPOUT, b, False)] and len(trees.pending) == 0
    assert errors == ["execute: TypeError", "execute: TypeError"]
    assert stats.executed == 7
    assert not intake.take("__tick", [[1]])  # not an acker message: left to the executor
