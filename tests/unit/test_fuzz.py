"""Hypothesis fuzzing, on a bounded budget (max_examples per test), of what
reads untrusted input: the worker's frame decoder (Worker.receive) with random
bytes, random msgpack structures, mutated valid frames and random batches; the
control-message check; config validation; and topology validation with random
parallelism, fields and config. Each must either accept the input or reject it
with our own error, never crash with anything else; for config and topologies
the tests also know which inputs are bad, and check that exactly those are
rejected (with a message naming what is wrong) and the rest are applied."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storm import Bolt, ConfigError, Grouping, Spout, StormError, Topology, TopologyError, Tuple
from storm import _config as config
from storm._runtime import Worker
from storm._serialization import KIND_TUPLES, check_control, pack
from storm._topology import MAX_PARALLELISM

pytestmark = pytest.mark.timeout(120)
BUDGET = settings(max_examples=120, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Src(Spout):
    outputs = ["n"]


class Sink(Bolt):
    def execute(self, tup: Tuple) -> None:
        pass


class Pair(Topology):
    src = Src.spec()
    sink = Sink.spec(inputs=[src], par=2)


_SPEC = Pair.build({"topology.workers": 2})
_ASSIGN = _SPEC.assign(2)


_WORKER = Worker(_SPEC, _ASSIGN, 0, None)


def fresh_worker() -> Worker:
    """The one in-process worker, its inboxes emptied (building one per example
    would spend the budget on setup)."""
    for inbox in _WORKER.inboxes.values():
        inbox.clear()
    return _WORKER


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=5),
                                                    st.dictionaries(st.text(max_size=5), c, max_size=5)),
                      max_leaves=20)
small_ints = st.one_of(st.integers(-3, 12), st.integers(-(2**63), 2**63 - 1))


def _total_in_inboxes(w: Worker) -> int:
    return sum(len(ib) for ib in w.inboxes.values())


@BUDGET
@given(st.lists(st.binary(max_size=300), max_size=5))
def test_random_bytes_never_crash_the_decoder(frames: list[bytes]) -> None:
    w = fresh_worker()
    n = w.receive(frames)
    assert n == _total_in_inboxes(w)


@BUDGET
@given(st.lists(values, max_size=4))
def test_random_msgpack_structures_never_crash_the_decoder(objs: list[Any]) -> None:
    w = fresh_worker()
    n = w.receive([pack(o) for o in objs])
    assert n == _total_in_inboxes(w)


group = st.lists(st.one_of(small_ints, st.lists(st.lists(values, max_size=3), max_size=4), st.none(),
                           values), min_size=0, max_size=6)
valid_group = st.tuples(small_ints, small_ints, st.integers(-2, len(_SPEC.streams) + 2),
                        st.lists(st.lists(values, max_size=3), max_size=4)).map(
    lambda t: [t[0], t[1], t[2], t[3], None])


@settings(BUDGET, max_examples=80)
@given(st.lists(st.one_of(group, valid_group), max_size=6))
def test_random_batches_never_crash_the_decoder(groups: list[Any]) -> None:
    w = fresh_worker()
    n = w.receive([pack([KIND_TUPLES, groups])])
    assert n == _total_in_inboxes(w)
    for t, inbox in w.inboxes.items():
        assert _ASSIGN[t] == 0
        for tup in inbox:
            assert tup.meta in _SPEC.streams


@BUDGET
@given(st.data())
def test_mutated_valid_frames_never_crash_the_decoder(data: st.DataObject) -> None:
    task = next(t for t in _SPEC.components["sink"].tasks if _ASSIGN[t] == 0)
    sid = _SPEC.stream_ids[("src", "default")]
    frame = bytearray(pack([KIND_TUPLES, [[task, 1, sid, data.draw(st.lists(st.lists(values, max_size=2),
                                                                             max_size=5)),
                                            None]]]))
    for _ in range(data.draw(st.integers(0, 4))):
        if not frame:
            break
        i = data.draw(st.integers(0, len(frame) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            frame[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del frame[i:]
        else:
            frame[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    w = fresh_worker()
    assert w.receive([bytes(frame)]) == _total_in_inboxes(w)


@BUDGET
@given(values)
def test_control_check_never_raises(msg: Any) -> None:
    assert check_control(msg) is None or isinstance(check_control(msg), str)


_KNOWN = sorted(config.defaults())
keys = st.one_of(st.sampled_from(_KNOWN), st.text(max_size=30),
                 st.sampled_from(_KNOWN).map(lambda k: k[:-1]), st.integers(), st.none())


_DEFAULTS = config.defaults()
# The types a key's value may have, from the type of its default (int and float
# keys take either number; bool never passes for a number).
_TYPES_OF_DEFAULT: dict[type, tuple[type, ...]] = {
    bool: (bool,), int: (int,), float: (int, float), str: (str,), list: (list,), dict: (dict,)}


# Keys whose value must be above 0 (a timeout, a tick rate, a pending limit).
POSITIVE = {"topology.message.timeout.secs", "topology.max.spout.pending", "topology.tick.tuple.freq.secs"}


def config_problem(key: Any, value: Any) -> bool:
    """Whether validate must reject this entry: the rules conf/defaults.yaml and
    the README state, written out independently of storm._config."""
    if not isinstance(key, str):
        return True
    if key not in _DEFAULTS:
        return key.startswith(config.RESERVED_PREFIXES)  # user keys pass through
    nullable = config._NULLABLE_TYPES.get(key)
    if value is None:
        return nullable is None
    allowed = nullable or _TYPES_OF_DEFAULT[type(_DEFAULTS[key])]
    if isinstance(value, bool) and bool not in allowed:
        return True
    if not isinstance(value, allowed):
        return True
    if key in POSITIVE and not value > 0:
        return True
    choices = config._CHOICES.get(key)
    return choices is not None and value not in choices


@settings(BUDGET, max_examples=60)
@given(st.dictionaries(keys, values, max_size=6))
def test_config_validation_rejects_exactly_the_bad_entries(conf: dict[Any, Any]) -> None:
    bad = [k for k, v in conf.items() if config_problem(k, v)]
    if not bad:
        config.validate(conf)
        merged = config.merge(conf)
        assert all(merged[k] == v for k, v in conf.items())
        return
    with pytest.raises(ConfigError) as caught:
        config.validate(conf)
    # Entries are checked in order: the message names the first bad one.
    assert str(bad[0]) in str(caught.value), (bad, str(caught.value))


def parallelism_problem(par: Any) -> bool:
    return not isinstance(par, int) or isinstance(par, bool) or not 1 <= par <= MAX_PARALLELISM


@BUDGET
@given(par=st.one_of(st.sampled_from([-1, 0, 1, 2, MAX_PARALLELISM, MAX_PARALLELISM + 1]),
                     st.integers(-5, 300), st.integers(MAX_PARALLELISM - 2, MAX_PARALLELISM + 2),
                     st.floats(), st.text(max_size=3), st.none(), st.booleans()),
       fields=st.lists(st.text(max_size=4), max_size=3))
def test_topology_validation_rejects_bad_parallelism_and_fields(par: Any, fields: list[str]) -> None:
    check_topology(par, fields)


@pytest.mark.parametrize("par", [-1, 0, 1, MAX_PARALLELISM, MAX_PARALLELISM + 1, True, 2.0, "2"])
def test_parallelism_bounds(par: Any) -> None:
    check_topology(par, ["a", "b"])


def check_topology(par: Any, fields: list[str]) -> None:
    """Build src(par, fields) -> sink and check the outcome: built with `par`
    tasks, or rejected with the message for one of the things wrong."""
    expected = []  # what the error must say, one of these when several are wrong
    if parallelism_problem(par):
        expected.append(f"component 'src': parallelism must be an integer >= 1, got {par!r}"
                        if not isinstance(par, int) or isinstance(par, bool) or par < 1
                        else f"component 'src': parallelism {par} is above the limit")
    if len(set(fields)) != len(fields):
        expected.append(f"component 'src' stream 'default' repeats a field name: {fields}")
    if not fields:
        expected.append("bolt 'sink' subscribes to stream 'default' of 'src', which does not declare it")

    def build() -> Any:
        class Fuzzed(Topology):
            src = Src.spec(par=par, outputs=fields)
            sink = Sink.spec(inputs={src: Grouping.fields(*fields[:1])} if fields else [src], par=2)
        return Fuzzed.build({})

    if not expected:
        spec = build()
        assert len(spec.components["src"].tasks) == par and len(spec.components["sink"].tasks) == 2
        return
    with pytest.raises(TopologyError) as caught:
        build()
    assert any(e in str(caught.value) for e in expected), (expected, str(caught.value))


@BUDGET
@given(conf=st.dictionaries(st.sampled_from(_KNOWN), values, max_size=3))
def test_topology_config_is_applied_or_rejected_naming_the_key(conf: dict[str, Any]) -> None:
    bad = [k for k, v in conf.items() if config_problem(k, v)]
    if bad:
        with pytest.raises(ConfigError) as caught:
            Pair.build(conf)
        assert str(bad[0]) in str(caught.value), (bad, str(caught.value))
        return
    try:
        spec = Pair.build(conf)
    except StormError as exc:
        # A well-typed value out of range (topology.workers 0, a negative acker
        # count): our own error, naming the key.
        assert any(k in str(exc) for k in conf), (conf, str(exc))
        return
    for key, value in conf.items():
        if key not in ("topology.acker.executors", "topology.name"):  # derived at build
            assert spec.config[key] == value, key
