"""The msgpack wire format (tuple batches with 64-bit root/edge ids) and
check_values, which names the component, stream and field of a value msgpack
cannot encode."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storm import SerializationError
from storm._serialization import (
    KIND_CONTROL,
    KIND_TUPLES,
    check_values,
    describe_unencodable,
    pack,
    unpack,
)

U64 = 2**64 - 1

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), U64),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.binary(max_size=30),
)
# What a tuple may carry, as it comes back from the wire: tuples become lists.
wire_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-5, 5)), inner, max_size=4),
    ),
    max_leaves=6,
)
ids = st.integers(1, U64)
roots = st.one_of(st.none(), st.dictionaries(ids, ids, min_size=1, max_size=4))
entries = st.lists(
    st.tuples(
        st.integers(1, 10_000),  # dest task
        st.integers(1, 10_000),  # src task
        st.integers(0, 500),  # stream id
        st.lists(wire_values, max_size=4),  # values
        roots,
    ).map(list),
    max_size=8,
)


@settings(max_examples=50, deadline=None)
@given(batch=entries)
def test_tuple_batches_round_trip(batch: list[list[Any]]) -> None:
    frame = pack([KIND_TUPLES, batch])
    assert isinstance(frame, bytes)
    kind, decoded = unpack(frame)
    assert kind == KIND_TUPLES
    assert decoded == batch
    for _task, _src, _sid, values, root_map in decoded:
        assert isinstance(values, list)
        assert root_map is None or all(type(k) is int for k in root_map)


def test_64_bit_root_and_edge_ids_as_map_keys() -> None:
    big = {U64: 2**63, 2**63: U64, 1: 1, 2**32 + 7: 0x9E3779B97F4A7C15}
    frame = pack([KIND_TUPLES, [[3, 1, 0, ["w", 1], big], [4, 1, 2, [], None]]])
    kind, [first, second] = unpack(frame)
    assert kind == KIND_TUPLES
    assert first == [3, 1, 0, ["w", 1], big]
    assert first[4][U64] == 2**63
    assert second == [4, 1, 2, [], None]


def test_tuples_and_bytes_decode_as_lists_and_bytes() -> None:
    [values] = unpack(pack([("a", b"\x00\xff", (1, (2, 3)), {"k": (4,)})]))
    assert values == ["a", b"\x00\xff", [1, [2, 3]], {"k": [4]}]
    assert type(values[1]) is bytes


def test_control_messages_round_trip() -> None:
    msg = [KIND_CONTROL, {"op": "kill", "topology": "wc", "workers": [0, 1]}]
    assert unpack(pack(msg)) == msg
    assert KIND_TUPLES != KIND_CONTROL


# -- check_values ---------------------------------------------------------------------


class Point:
    pass


BAD = [
    pytest.param({1, 2}, "set", id="set"),
    pytest.param(frozenset({1}), "frozenset", id="frozenset"),
    pytest.param(Point(), "Point", id="object"),
    pytest.param(2**64, "int", id="int-too-large"),
    pytest.param(-(2**63) - 1, "int", id="int-too-small"),
    pytest.param(1j, "complex", id="complex"),
    pytest.param(bytearray(b"x"), "bytearray", id="bytearray"),
    pytest.param([1, [2, {3}]], "set at [1][1]", id="nested-set-in-list"),
    pytest.param({"k": Point()}, "Point at ['k']", id="object-in-dict"),
    pytest.param({Point(): 1}, "dict key of type Point", id="object-as-dict-key"),
    pytest.param((1, 2**64), "int out of the 64-bit range at [1]", id="big-int-in-tuple"),
]


@pytest.mark.parametrize(("bad", "tname"), BAD)
def test_check_values_names_component_stream_and_field(bad: Any, tname: str) -> None:
    with pytest.raises(SerializationError) as info:
        check_values(["ok", 1, bad], "splitter", "words", ["sentence", "n", "payload"])
    message = str(info.value)
    assert "'splitter'" in message
    assert "'words'" in message
    assert "field 'payload'" in message
    assert tname in message.split("holds", 1)[1]
    index, what = describe_unencodable(["ok", 1, bad]) or (None, "")
    assert index == 2
    assert tname in what


def test_check_values_reports_the_first_bad_field() -> None:
    with pytest.raises(SerializationError, match="field 'a' holds a set"):
        check_values([{1}, object()], "c", "s", ["a", "b"])


def test_check_values_without_a_field_name_uses_the_index() -> None:
    with pytest.raises(SerializationError, match="field '#2'"):
        check_values([1, 2, {3}], "c", "s", ["x"])


def test_check_values_rejects_absurdly_deep_nesting() -> None:
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(SerializationError, match="field 'tree'"):
        check_values([deep], "c", "s", ["tree"])


GOOD = [
    None, True, False, 0, -(2**63), U64, 1.5, float("inf"), "", "ünïcode", b"\x00",
    [], (), {}, [1, "a", None, [2.5, [b"x"]]], ("t", ("u",)), {"k": [1, {"n": None}]},
    {1: "int key", b"b": "bytes key", None: 0, 2.5: 1, False: 2},
]


@pytest.mark.parametrize("good", GOOD, ids=repr)
def test_check_values_accepts_encodable_values(good: Any) -> None:
    check_values([good], "c", "s", ["f"])
    assert describe_unencodable([good]) is None
    unpack(pack([good]))  # and msgpack really encodes and decodes it


@settings(max_examples=60, deadline=None)
@given(values=st.lists(wire_values, max_size=6))
def test_every_value_check_values_accepts_round_trips(values: list[Any]) -> None:
    check_values(values, "c", "s", [f"f{i}" for i in range(len(values))])
    assert unpack(pack(values)) == values


@pytest.mark.parametrize("value", [{(1, 2): "pair key"}, [1, {"a": {(1,): 2}}]], ids=["top", "nested"])
def test_a_dict_key_the_receiver_cannot_decode_is_rejected_at_emit(value: Any) -> None:
    # msgpack encodes a tuple key, but the receiver decodes it as a list, which
    # cannot be a dict key: the frame would be dropped there, so the emit fails.
    with pytest.raises(TypeError, match="unhashable"):
        unpack(pack([KIND_TUPLES, [[1, 1, 0, [[value]], None]]]))
    with pytest.raises(SerializationError,
                       match=r"component 'c' .* on stream 's': field 'f' holds a dict key of type tuple"):
        check_values([value], "c", "s", ["f"])
    assert describe_unencodable([value]) is not None


deep: list[Any] = []
for _ in range(70):
    deep = [deep]


@pytest.mark.parametrize("value", [p.values[0] for p in BAD] + [
    "s", 1, 2**64 - 1, None, [1, "a", {"k": [2.0, b"x"]}], ({"a": (1, 2)},), {1: "x", "k": None}, deep, deep[0][0][0]])
def test_the_quick_check_agrees_with_the_description(value: Any) -> None:
    from storm._serialization import _encodable, _first_bad

    assert _encodable(value, 0) == (_first_bad(value, "", 0) is None)
