"""Tuples between workers: the outgoing groups of one worker, one msgpack frame
per destination worker and flush, batches held back by the transport's
high-water mark, and the decoding of received frames into local inboxes.

A group is ``[dest task, src task, stream id, [values, ...], trees]``, so
msgpack packs each tuple's values and nothing else; ``trees`` is None for
tuples outside any tree; for tuples in one tree each, their root and edge ids
as unsigned 64-bit little-endian words, packed into one bytes object (16 bytes
per tuple: one copy for the batch, where msgpack would look at each int); or
``[[root, edge, root, edge, ...], ...]`` (one flat list per tuple) for tuples
anchored into several. While queued, a one-tree group holds its ids as a list
``[root, edge, root, edge, ...]``, the form sent when they cannot be packed. A frame is
``[KIND_TUPLES, [group, ...]]``, or ``[KIND_TUPLES, [group, ...], acks]`` when
the sending worker folded acks for ackers of the destination worker: ``acks``
is ``[[acker task, packed], ...]``, ``packed`` the (root, value) pairs of the
ack stream as 64-bit words, 16 bytes per ack (one message per tree and pass,
see acking.AckTracker). Hostile or broken frames are dropped and counted,
never raised.

This module owns the wire shape of tuples; it knows nothing of routing or
acking (a tuple that cannot be encoded is handed back to `on_unencodable`)."""

from __future__ import annotations

import logging
import sys
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .._errors import SerializationError, StormError
from .._serialization import KIND_TUPLES, check_group, describe_unencodable, pack, unpack
from .._tuple import StreamMeta, Tuple
from .transport import Transport

__all__ = ["ONE_TREE", "PLAIN", "TREES", "Outbox", "decode_frames"]

# The kinds of outgoing group: tuples outside any tree, in one tree each, in several.
PLAIN: Final = 0
ONE_TREE: Final = 1
TREES: Final = 2

log = logging.getLogger("storm.worker")
_SWAP: Final = sys.byteorder != "little"  # the wire's ids are little-endian
# An unsigned 64-bit typecode: "L" (C unsigned long) where it is 64 bits, as on
# 64-bit Linux and macOS, since CPython converts those with a loop over the
# int's digits, where "Q" goes through the general byte-array conversion.
_WORD: Final = "L" if array("L").itemsize == 8 else "Q"


def pack_ids(ids: list[Any]) -> bytes | None:
    """Tree ids as the wire's packed words (None: one is not a uint64)."""
    try:
        words = array(_WORD, ids)
    except (OverflowError, TypeError):
        return None
    if _SWAP:
        words.byteswap()
    return words.tobytes()


def unpack_ids(data: bytes) -> list[Any]:
    words = array(_WORD, data)
    if _SWAP:
        words.byteswap()
    ids: list[Any] = words.tolist()
    return ids


class Outbox:
    """Outgoing groups per destination worker, and the frames waiting for the
    transport. `on_unencodable(src, exc, tuple)` is told of a tuple msgpack
    refused; the rest of its batch is sent."""

    def __init__(self, nworkers: int, task_worker: dict[int, int], streams: list[StreamMeta],
                 batch_size: int, transport: Transport | None,
                 on_unencodable: Callable[[int, SerializationError, Any], None]) -> None:
        self.groups: list[list[list[Any]]] = [[] for _ in range(nworkers)]
        # Per destination worker: acker task -> flat [root, value, ...] folded acks.
        self.acks: list[dict[int, list[Any]]] = [{} for _ in range(nworkers)]
        self.index: dict[tuple[int, int, int, int], list[Any]] = {}
        self.blocked: list[deque[bytes]] = [deque() for _ in range(nworkers)]
        self.task_worker = task_worker
        self.streams = streams
        self.batch_size = batch_size
        self.transport = transport
        self.on_unencodable = on_unencodable
        self.ordered_sids = frozenset(m.sid for m in streams if m.ordered)

    def group(self, task: int, src: int, sid: int, kind: int) -> list[Any]:
        """The outgoing group for (task, src, sid, kind), created on first use;
        kind is PLAIN, ONE_TREE or TREES (the shape of its trees list)."""
        key = (task, src, sid, kind)
        g = self.index.get(key)
        if g is None:
            g = [task, src, sid, [], None if kind == PLAIN else []]
            self.index[key] = g
            self.groups[self.task_worker[task]].append(g)
        return g

    def put(self, task: int, values: Any, sid: int, src: int, root: Any, edge: Any,
            more: dict[Any, Any] | None) -> None:
        """Queue one tuple for a remote task."""
        kind = PLAIN if root is None else ONE_TREE if more is None else TREES
        g = self.index.get((task, src, sid, kind)) or self.group(task, src, sid, kind)
        vals: list[Any] = g[3]
        ordered = sid in self.ordered_sids
        if ordered:
            # A barrier: what was queued before it leaves first, it goes next,
            # alone (see Stream.ordered).
            self.flush(self.task_worker[task])
        vals.append(values)
        if kind == ONE_TREE:
            trees: list[Any] = g[4]
            trees.append(root)
            trees.append(edge)
        elif kind == TREES:
            flat = [root, edge]
            for r, e in more.items():  # type: ignore[union-attr]
                flat.append(r)
                flat.append(e)
            g[4].append(flat)
        if ordered or len(vals) >= self.batch_size:
            self.flush(self.task_worker[task])

    def put_acks(self, acker: int, flat: list[Any]) -> None:
        """Queue folded acks ([root, value, ...]) for a remote acker task."""
        pending = self.acks[self.task_worker[acker]]
        queued = pending.get(acker)
        if queued is None:
            pending[acker] = flat
        else:
            queued.extend(flat)

    def flush(self, w: int) -> None:
        """Send worker `w` one frame of everything queued for it."""
        batch = [g for g in self.groups[w] if g[3]]
        acks = self.acks[w]
        if not batch and not acks:
            return
        msg: list[Any] = [KIND_TUPLES, [_wire_group(g) for g in batch]]
        if acks:
            msg.append(_wire_acks(acks))
            self.acks[w] = {}
        try:
            data = pack(msg)
        except (TypeError, ValueError, OverflowError):
            data = self._pack_salvaging(batch, msg[2] if len(msg) == 3 else None)
        for g in batch:
            g[3].clear()
            if g[4] is not None:
                g[4].clear()
        if self.transport is None:
            raise StormError("no transport for a remote task")  # pragma: no cover
        blocked = self.blocked[w]
        if blocked or not self.transport.send(w, data):
            blocked.append(data)

    def flush_all(self) -> None:
        for w, groups in enumerate(self.groups):
            if self.acks[w]:
                self.flush(w)
                continue
            for g in groups:
                if g[3]:
                    self.flush(w)
                    break

    def retry_blocked(self) -> bool:
        """Try to send batches that hit the high-water mark; True if any remain."""
        transport = self.transport
        remaining = False
        for w, blocked in enumerate(self.blocked):
            while blocked:
                if transport is None or not transport.send(w, blocked[0]):
                    remaining = True
                    break
                blocked.popleft()
        return remaining

    def any_blocked(self) -> bool:
        return any(self.blocked)

    def _pack_salvaging(self, batch: list[list[Any]], acks: list[Any] | None) -> bytes:
        """A batch failed to encode: find the bad tuples, hand them back, send the rest."""
        good_groups = []
        for task, src, sid, values_list, trees in batch:
            good_values: list[Any] = []
            good_trees: list[Any] | None = None if trees is None else []
            one_tree = trees is not None and len(trees) == 2 * len(values_list)
            for i, values in enumerate(values_list):
                try:
                    pack(values)
                except (TypeError, ValueError, OverflowError):
                    meta = self.streams[sid]
                    bad = describe_unencodable(values) or (0, "a value msgpack rejects")
                    fname = meta.fields[bad[0]] if bad[0] < len(meta.fields) else f"#{bad[0]}"
                    exc = SerializationError(
                        f"component '{meta.component}' emitted a value msgpack cannot encode on "
                        f"stream '{meta.stream}': field '{fname}' holds {bad[1]}"
                    )
                    self.on_unencodable(src, exc, _tuple_of(values, meta, src, trees, i, one_tree))
                    continue
                good_values.append(values)
                if good_trees is not None and trees is not None:
                    if one_tree:
                        good_trees.append(trees[2 * i])
                        good_trees.append(trees[2 * i + 1])
                    else:
                        good_trees.append(trees[i])
            if good_values:
                good_groups.append(_wire_group([task, src, sid, good_values, good_trees]))
        return pack([KIND_TUPLES, good_groups] if acks is None else [KIND_TUPLES, good_groups, acks])


def _wire_acks(acks: dict[int, list[Any]]) -> list[Any]:
    """Queued acks as they go on the wire: [[acker task, packed pairs], ...]."""
    out: list[Any] = []
    for task, flat in acks.items():
        packed = pack_ids(flat)
        if packed is not None:
            out.append([task, packed])
    return out


def _wire_group(g: list[Any]) -> list[Any]:
    """A queued group as it goes on the wire: a one-tree group's ids packed."""
    trees = g[4]
    if trees is not None and len(trees) == 2 * len(g[3]):
        packed = pack_ids(trees)
        if packed is not None:
            return [g[0], g[1], g[2], g[3], packed]
    return g


def _tuple_of(values: Any, meta: StreamMeta, src: int, trees: Any, i: int,
              one_tree: bool) -> Tuple | None:
    """The Tuple of entry `i` of a group (its trees from the group's wire form)."""
    if trees is None:
        return Tuple(values, meta, src)
    if one_tree:
        return Tuple(values, meta, src, trees[2 * i], trees[2 * i + 1])
    return _several(values, meta, src, trees[i])


def _all_ints(ids: list[Any]) -> bool:
    return all(type(i) is int for i in ids)


def _several(values: Any, meta: StreamMeta, src: int, flat: Any) -> Tuple | None:
    """A tuple in several trees from its flat [root, edge, ...] (None: malformed)."""
    if type(flat) is not list or len(flat) < 4 or len(flat) % 2 or not _all_ints(flat):
        return None
    more = {}
    for j in range(2, len(flat), 2):
        more[flat[j]] = flat[j + 1]
    return Tuple(values, meta, src, flat[0], flat[1], more)


class FrameDrops:
    """Frames a worker dropped: counted always; logged for the first few and
    then once per 1000, so a flood of garbage costs little and cannot fill the disk."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.frames = 0
        self.unknown_task_tuples = 0

    def drop(self, frame: bytes, why: str) -> None:
        self.frames += 1
        if self.frames <= 10 or self.frames % 1000 == 0:
            log.error("worker %d dropped a frame (%d bytes, %d dropped so far): %s", self.index,
                      len(frame), self.frames, why)


def decode_frames(frames: list[bytes], streams: list[StreamMeta],
                  append_get: Callable[[int], Any], max_frame: int, drops: FrameDrops,
                  takers: dict[int, Any] | None = None, ack_meta: StreamMeta | None = None) -> int:
    """Turn tuple batch frames into tuples in the local inboxes; returns how many.

    `takers`: task -> an object whose `take(stream, values_list)` handles a
    whole group itself (True) or leaves it to the inbox (False), and whose
    `take_acks(ids)` folds a frame's packed acks: the ackers' intake
    (acking.AckerIntake). Packed acks for an acker without one become tuples
    of `ack_meta` in its inbox.

    Dropped (and counted in `drops`): a frame over `max_frame` bytes, one that
    is not msgpack, not a batch, a group of the wrong shape (checked per group,
    not per tuple; see check_group), or addressed to a task not in this worker."""
    n = 0
    nstreams = len(streams)
    for frame in frames:
        if len(frame) > max_frame:
            drops.drop(frame, f"larger than topology.transfer.max.frame.bytes ({max_frame})")
            continue
        try:
            msg = unpack(frame)
        except Exception as exc:
            drops.drop(frame, f"undecodable: {type(exc).__name__}: {exc}")
            continue
        if type(msg) is not list or len(msg) not in (2, 3) or type(msg[1]) is not list:
            drops.drop(frame, "not a [kind, payload] list")
            continue
        kind = msg[0]
        entries: list[Any] = msg[1]
        if kind != KIND_TUPLES:
            drops.drop(frame, f"unknown frame kind {kind!r:.40}")
            continue
        for group in entries:
            problem = check_group(group, nstreams)
            if problem is not None:
                drops.drop(frame, problem)
                continue
            task = group[0]
            src = group[1]
            values_list: list[Any] = group[3]
            trees: Any = group[4]
            if takers:
                taker = takers.get(task)
                if taker is not None and trees is None and taker.take(streams[group[2]].stream,
                                                                       values_list):
                    n += len(values_list)
                    continue
            app = append_get(task)
            if app is None:
                drops.unknown_task_tuples += len(values_list)
                drops.drop(frame, f"addressed to task {task}, which is not in this worker")
                continue
            meta = streams[group[2]]
            if trees is None:
                for values in values_list:
                    app(Tuple(values, meta, src))
            elif type(trees) is bytes or len(trees) == 2 * len(values_list):
                # One tree each: packed ids, or the list form (see _wire_group).
                ids: list[Any] = unpack_ids(trees) if type(trees) is bytes else trees
                if ids is trees and not _all_ints(ids):
                    drops.drop(frame, "a group's tree ids are not all ints")
                    continue
                i = 0
                for values in values_list:
                    app(Tuple(values, meta, src, ids[i], ids[i + 1]))
                    i += 2
            else:
                bad = 0
                for i in range(len(values_list)):
                    tup = _several(values_list[i], meta, src, trees[i])
                    if tup is None:
                        bad += 1
                    else:
                        app(tup)
                if bad:
                    drops.drop(frame, f"{bad} tuple(s) whose trees are not [root, edge, ...] lists")
                n -= bad
            n += len(values_list)
        if len(msg) == 3:
            n += _decode_acks(frame, msg[2], append_get, takers, ack_meta, drops)
    return n


def _decode_acks(frame: bytes, acks: Any, append_get: Callable[[int], Any],
                 takers: dict[int, Any] | None, ack_meta: StreamMeta | None,
                 drops: FrameDrops) -> int:
    """Fold a frame's packed acks into their ackers; returns how many."""
    if type(acks) is not list:
        drops.drop(frame, "its acks are not a list")
        return 0
    n = 0
    for entry in acks:
        if (type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int
                or type(entry[1]) is not bytes or len(entry[1]) % 16):
            drops.drop(frame, "an entry of its acks is not [acker task, 16 bytes per ack]")
            continue
        task: int = entry[0]
        ids = unpack_ids(entry[1])
        taker = takers.get(task) if takers else None
        if taker is not None:
            taker.take_acks(ids)
        else:
            app = append_get(task)
            if app is None or ack_meta is None:
                drops.unknown_task_tuples += len(ids) // 2
                drops.drop(frame, f"acks addressed to task {task}, which is not an acker in this worker")
                continue
            for i in range(0, len(ids), 2):
                app(Tuple([ids[i], ids[i + 1]], ack_meta, 0))
        n += len(ids) // 2
    return n
