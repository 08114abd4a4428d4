"""The wire format: msgpack frames of tuple batches and control messages.

A tuple batch is ``[KIND_TUPLES, [[dest_task, src_task, stream_id, values, roots], ...]]``
where ``roots`` is None or a map root id -> edge id. Control messages are
``[kind, payload]``. Nothing here evaluates or unpickles what it reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from ._errors import SerializationError

KIND_TUPLES = 1
KIND_CONTROL = 2

_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack


def pack(obj: Any) -> bytes:
    return _pack(obj)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


_SIMPLE = frozenset({str, int, float, bool, type(None), bytes})


def describe_unencodable(values: Sequence[Any]) -> tuple[int, str] | None:
    """Index and type name of the first value msgpack cannot encode, or None."""
    for i, v in enumerate(values):
        if not _encodable(v):
            return i, type(v).__name__
    return None


def _encodable(v: Any, depth: int = 0) -> bool:
    t = type(v)
    if t in _SIMPLE:
        if t is int:
            return -(1 << 63) <= v < (1 << 64)
        return True
    if depth > 64:
        return False
    if t is list or t is tuple:
        return all(_encodable(x, depth + 1) for x in v)
    if t is dict:
        return all(_encodable(k, depth + 1) and _encodable(x, depth + 1) for k, x in v.items())
    return False


def check_values(values: Sequence[Any], component: str, stream: str, fields: Sequence[str]) -> None:
    """Raise SerializationError naming the component, stream and field of the first
    value msgpack cannot encode."""
    bad = describe_unencodable(values)
    if bad is not None:
        i, tname = bad
        fname = fields[i] if i < len(fields) else f"#{i}"
        raise SerializationError(
            f"component '{component}' emitted a value msgpack cannot encode on stream "
            f"'{stream}': field '{fname}' is a {tname}; emit only str, int, float, bool, "
            "None, bytes, and lists/dicts of those"
        )
