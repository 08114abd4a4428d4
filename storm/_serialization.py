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
    """Index of the first value msgpack cannot encode (so that it decodes to an
    equal value) and a description of what is wrong with it, or None."""
    for i, v in enumerate(values):
        bad = _first_bad(v, "", 0)
        if bad is not None:
            return i, bad
    return None


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
