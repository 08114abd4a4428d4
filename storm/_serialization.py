"""The wire format: msgpack frames of tuple batches and control messages.

A tuple batch is ``[KIND_TUPLES, [[dest_task, src_task, stream_id, values, trees], ...]]``
(the shape of ``trees``: storm._runtime.batching). Control messages are
``[kind, payload]``. Nothing here evaluates or unpickles what it reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from ._errors import SerializationError

KIND_TUPLES = 1
KIND_CONTROL = 2
#: Default of topology.transfer.max.frame.bytes (conf/defaults.yaml).
MAX_FRAME_BYTES = 64 * 1024 * 1024

_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack


def pack(obj: Any) -> bytes:
    data: bytes = _pack(obj)
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


def check_group(group: Any, nstreams: int) -> str | None:
    """What is wrong with one group of a tuple batch (None: its shape is right).

    Checked once per group, not per tuple: ``[dest, src, sid, values_list,
    trees]`` with int task ids, a stream id in range, a list of tuples and
    trees None, packed ids (16 bytes per tuple), a list of two ids per tuple
    or of one list per tuple (storm._runtime.batching)."""
    if type(group) is not list or len(group) != 5:
        return "a group is not a 5-element list"
    task, src, sid, values_list, trees = group
    if type(task) is not int or type(src) is not int or type(sid) is not int:
        return "a group's task, source task or stream id is not an int"
    if not 0 <= sid < nstreams:
        return f"stream id {sid} is not one of this topology's {nstreams} streams"
    if type(values_list) is not list:
        return "a group's tuples are not a list"
    if trees is None:
        return None
    if type(trees) is bytes:
        if len(trees) != 16 * len(values_list):
            return "a group's packed trees are not 16 bytes (two ids) per tuple"
    elif type(trees) is not list or len(trees) not in (len(values_list), 2 * len(values_list)):
        return "a group's trees are not packed ids or a list of one entry or two ids per tuple"
    return None


_CONTROL_SHAPES: dict[str, tuple[tuple[type, ...], ...]] = {
    "activate": (), "deactivate": (), "stop": (),
    "parent": ((int,),),
    "throttle": ((int,), (bool,)),
    "log-level": ((dict,),),
    "checkpoint": ((int,),),  # storm upgrade: the checkpoint spout checkpoints now (its request token)
}


def check_control(msg: Any) -> str | None:
    """What is wrong with a control message (None: it is one a worker knows)."""
    if type(msg) is not list or not msg or type(msg[0]) is not str:
        return "a control message is not a list starting with its kind"
    shape = _CONTROL_SHAPES.get(msg[0])
    if shape is None:
        return f"unknown control message kind {msg[0]!r:.40}"
    if len(msg) != len(shape) + 1:
        return f"control message {msg[0]!r} has {len(msg) - 1} arguments, not {len(shape)}"
    for value, types in zip(msg[1:], shape, strict=True):
        if type(value) not in types:
            return f"control message {msg[0]!r} has an argument of type {type(value).__name__}"
    return None


_SIMPLE = frozenset({str, int, float, bool, type(None), bytes})


def describe_unencodable(values: Sequence[Any]) -> tuple[int, str] | None:
    """Index of the first value msgpack cannot encode (so that it decodes to an
    equal value) and a description of what is wrong with it, or None."""
    for i, v in enumerate(values):
        # The check first (no path strings built), the description only for a bad value.
        if not _encodable(v, 0):
            return i, _first_bad(v, "", 0) or "a value msgpack rejects"
    return None


def _encodable(v: Any, depth: int) -> bool:
    """Whether _first_bad finds nothing in `v` (the same rules, no description)."""
    t = type(v)
    if t in _SIMPLE:
        return t is not int or _int_ok(v)
    if depth > 64:
        return False
    if t is list or t is tuple:
        for x in v:  # noqa: SIM110 - a loop, not all() over a generator (this is per emitted tuple)
            if type(x) is not str and not _encodable(x, depth + 1):
                return False
        return True
    if t is dict:
        for k, x in v.items():
            tk = type(k)
            if tk not in _SIMPLE or (tk is int and not _int_ok(k)):
                return False
            if type(x) is not str and not _encodable(x, depth + 1):
                return False
        return True
    return False


def _int_ok(v: int) -> bool:
    return -(1 << 63) <= v < (1 << 64)


def _first_bad(v: Any, path: str, depth: int) -> str | None:
    t = type(v)
    if t in _SIMPLE:
        if t is int and not _int_ok(v):
            return f"an int out of the 64-bit range{' at ' + path if path else ''}"
        return None
    where = f" at {path}" if path else ""
    if depth > 64:
        return f"nested deeper than 64 levels{where}"
    if t is list or t is tuple:
        for j, x in enumerate(v):
            bad = _first_bad(x, f"{path}[{j}]", depth + 1)
            if bad is not None:
                return bad
        return None
    if t is dict:
        for k, x in v.items():
            # Keys must be scalars: a list or tuple key would decode as an
            # unhashable list on the receiving worker.
            if type(k) not in _SIMPLE or (type(k) is int and not _int_ok(k)):
                return f"a dict key of type {type(k).__name__}{where} (keys must be str, int, float, bool, bytes or None)"
            bad = _first_bad(x, f"{path}[{k!r}]", depth + 1)
            if bad is not None:
                return bad
        return None
    return f"a {t.__name__}{where}"


def check_values(values: Sequence[Any], component: str, stream: str, fields: Sequence[str]) -> None:
    """Raise SerializationError naming the component, stream and field of the first
    value msgpack cannot encode."""
    bad = describe_unencodable(values)
    if bad is not None:
        i, what = bad
        fname = fields[i] if i < len(fields) else f"#{i}"
        raise SerializationError(
            f"component '{component}' emitted a value msgpack cannot encode on stream "
            f"'{stream}': field '{fname}' holds {what}; emit only str, int, float, bool, "
            "None, bytes, and lists/dicts of those"
        )
