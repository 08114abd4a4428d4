"""The one ack path of a worker: tuple-tree ids, anchoring (the edge XOR),
folding acks per tree, flushing them to the ackers, completing trees that never
left this worker, the `__acker` system bolt and its timeouts, and the
RotatingMap of the spouts' pending trees.

Semantics (Storm's): a spout emit with a msg id starts a tree with a random
root id; every tuple of the tree carries a random edge id per tree it belongs
to (62-bit ids, see Ids). The acker XORs each edge twice (once when created, once
when acked), so a tree is complete when its value returns to 0.

A tuple's place in the trees has one form (storm._tuple.Tuple): `root` and
`edge` for its tree (root None: outside any tree), and `more`, root -> edge,
for the other trees of a tuple anchored into several (None otherwise): the
usual one-tree case allocates nothing for it and packs as two ints.

This module does not route or batch: it hands what it must send to the
worker's `deliver`, and never touches sockets."""

from __future__ import annotations

import os
import random
import sys
from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from .._acking import ACK_ACK, ACK_FAIL, ACK_INIT, ACK_RESULT, ROTATING_BUCKETS
from .._component import Bolt
from .._tuple import Tuple
from .stats import TaskStats

if TYPE_CHECKING:
    from mypy_extensions import i64  # annotations only: never imported at run time

    from .._context import TopologyContext
    from .executor import BoltExecutor

__all__ = [
    "AckTracker",
    "AckerBolt",
    "AckerIntake",
    "AckerTrees",
    "Ids",
    "TreeState",
    "RotatingMap",
    "anchor",
]

UINT64_MAX: Final = (1 << 64) - 1
_WORD_MAX: Final = (1 << 62) - 1  # the largest int a compiled int holds unboxed
_MISSING: Final[Any] = object()
# The three multiply-with-carry generators of Ids (base 2**30): for each
# multiplier a, a * 2**30 - 1 and (a * 2**30 - 2) / 2 are prime and 2**30 is a
# square modulo the first, so each generator's period is about a * 2**29 (near
# 2**59), and together (the periods are distinct primes) near 2**177. a and x
# below 2**30 keep a * x + c on a compiled int's fast path: machine words, no
# big int ever (mypyc multiplies natively only factors below 2**30).
_MWC_A1: Final = 747_794_970
_MWC_A2: Final = 983_243_952
_MWC_A3: Final = 869_719_956
_LOW30: Final = (1 << 30) - 1
_POOL: Final = 1024  # ids drawn at once by the interpreted generator
# Zeroes the top two bits of each id's most significant byte (ids below 2**62).
_TOP_MASK: Final = bytes(b & 0x3F for b in range(256))
_TOP_BYTE: Final = 7 if sys.byteorder == "little" else 0
_ZERO_ID: Final = bytes(8)
_WORD: Final = "L" if array("L").itemsize == 8 else "Q"  # 64 bits (see batching._WORD)
# Whether this module runs compiled (mypyc's extension module, not this file).
_COMPILED: Final = not (__file__ or "").endswith(".py")


class _Forks:
    """How many times this process is a fork's child (os.register_at_fork): an
    Ids seeded by the OS reseeds when this moves, so a forked worker never
    draws its parent's ids. A native attribute when compiled: a cheap read."""

    def __init__(self) -> None:
        self.count = 0

    def forked(self) -> None:
        self.count += 1


_FORKS: Final = _Forks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_FORKS.forked)


class Ids:
    """Where a worker draws root and edge ids: random non-zero 62-bit numbers,
    seeded by the OS (os.urandom; again in a forked child, so two workers
    never draw the same ids) or drawn from a seeded generator for repeatable
    tests. Storm draws its ids from java.util.Random: what matters is that
    they are unrelated to the ack path's XOR arithmetic (a subset of a tree's
    edges XORs to zero with a chance of about 2**-62, as against Storm's
    2**-64), not that they are secret.

    62 bits, not 64: compiled, an int below 2**62 is a machine word, so the
    XORs of the ack path allocate nothing. Two generators, one per build,
    each the cheap one there (`machine_words`):

    - compiled (and not seeded): three multiply-with-carry generators
      (Marsaglia's MWC, 30 bits each, see _MWC_A1) in 64-bit machine integers.
      An id is a machine word from its draw to the XORs: drawing one allocates
      nothing, an int object is made only where an id is stored or sent.
    - interpreted, or seeded: 1,024 ids at a time from 8 KiB of random bytes
      (os.urandom, or the seeded generator's), read as one array of 64-bit
      words: one C call per 1,024 ids, where the generators' arithmetic would
      be some 30 interpreted operations per id. A seeded Ids thus draws the
      same ids compiled and interpreted."""

    def __init__(self, rng: random.Random | None = None, machine_words: bool | None = None) -> None:
        self.rng = rng
        self.machine_words = (rng is None and _COMPILED) if machine_words is None else machine_words
        self.pool: list[int] = []
        # 64-bit machine integers when compiled (plain C arithmetic; every value
        # stays below 2**62, so nothing can overflow), plain ints interpreted.
        self.x1: i64 = 0
        self.c1: i64 = 0
        self.x2: i64 = 0
        self.c2: i64 = 0
        self.x3: i64 = 0
        self.c3: i64 = 0
        self.forks = _FORKS.count
        if self.machine_words:
            self.seed()

    def seed(self) -> None:
        """(Re)start the generators from 24 random bytes."""
        rng = self.rng
        s = int.from_bytes(os.urandom(24) if rng is None else rng.randbytes(24), "little")
        # Any x below 2**30 and carry below a but the fixed points (x = c = 0, and
        # x = 2**30 - 1 with c = a - 1): x below 2**30 - 1, carry from 1.
        self.x1 = min(s & _LOW30, _LOW30 - 1)
        self.c1 = ((s >> 30) & _LOW30) % _MWC_A1 or 1
        self.x2 = min((s >> 60) & _LOW30, _LOW30 - 1)
        self.c2 = ((s >> 90) & _LOW30) % _MWC_A2 or 1
        self.x3 = min((s >> 120) & _LOW30, _LOW30 - 1)
        self.c3 = ((s >> 150) & _LOW30) % _MWC_A3 or 1
        self.forks = _FORKS.count

    def _forked(self) -> None:
        """In a forked child: forget the parent's draws (a seeded Ids goes on)."""
        self.forks = _FORKS.count
        if self.rng is None:
            self.pool = []
            if self.machine_words:
                self.seed()

    def next(self) -> int:
        """A random non-zero 62-bit id."""
        if self.forks != _FORKS.count:
            self._forked()
        if self.machine_words:
            # 30 bits from each of the first two generators, 2 from the third.
            t: i64 = _MWC_A1 * self.x1 + self.c1
            x1 = t & _LOW30
            self.x1 = x1
            self.c1 = t >> 30
            t = _MWC_A2 * self.x2 + self.c2
            x2 = t & _LOW30
            self.x2 = x2
            self.c2 = t >> 30
            t = _MWC_A3 * self.x3 + self.c3
            x3 = t & _LOW30
            self.x3 = x3
            self.c3 = t >> 30
            i: i64 = x1 << 32 | x2 << 2 | x3 >> 28
            return int(i) if i else 1
        pool = self.pool
        if pool:
            return pool.pop()
        return self._refill()

    def _refill(self) -> int:
        rng = self.rng
        raw = bytearray(os.urandom(8 * _POOL) if rng is None else rng.randbytes(8 * _POOL))
        raw[_TOP_BYTE::8] = raw[_TOP_BYTE::8].translate(_TOP_MASK)
        pool: list[int] = array(_WORD, raw).tolist()
        if _ZERO_ID in raw:  # eight zero bytes somewhere (rarely a whole id)
            pool = [i or 1 for i in pool]
        self.pool = pool
        return pool.pop()


def anchor(anchors: Any, new_id: Callable[[], int]) -> tuple[Any, Any, dict[Any, Any] | None]:
    """Anchor a new child to each tuple of `anchors` that is in a tree: a new
    edge id per anchor, XORed into the anchor's ack value and into the child's
    trees, returned as (root, edge, more) (root None when no anchor is in a
    tree). The one place the anchor-edge XOR is done for several anchors; the
    collectors inline the one-anchor case (emit.py)."""
    trees: dict[Any, Any] | None = None
    for a in anchors:
        ar = a.root
        if ar is None:
            continue
        e = new_id()
        ei: int = e
        a.ack_val ^= ei
        if trees is None:
            trees = {}
        trees[ar] = trees.get(ar, 0) ^ e
        more = a.more
        if more is not None:
            for r in more:
                trees[r] = trees.get(r, 0) ^ e
    if trees is None:
        return None, 0, None
    it = iter(trees.items())
    root, edge = next(it)
    if len(trees) == 1:
        return root, edge, None
    return root, edge, dict(it)


class RotatingMap:
    """A map whose entries expire after `buckets - 1` to `buckets` rotations.

    Rotate it every timeout / (buckets - 1) seconds; rotate() returns what expired.
    """

    def __init__(self, buckets: int = ROTATING_BUCKETS) -> None:
        if buckets < 2:
            raise ValueError("a RotatingMap needs at least 2 buckets")
        self._buckets: list[dict[Any, Any]] = [{} for _ in range(buckets)]

    def __len__(self) -> int:
        n = 0
        for b in self._buckets:
            n += len(b)
        return n

    def __contains__(self, key: Any) -> bool:
        return any(key in b for b in self._buckets)

    def get(self, key: Any, default: Any = None) -> Any:
        for b in self._buckets:
            v = b.get(key, _MISSING)
            if v is not _MISSING:
                return v
        return default

    def put(self, key: Any, value: Any) -> None:
        buckets = self._buckets
        head = buckets[0]
        if key not in head:
            for b in buckets[1:]:
                b.pop(key, None)
        head[key] = value

    def put_new(self, key: Any, value: Any) -> None:
        """put() for a key known to be absent (a fresh random root id)."""
        self._buckets[0][key] = value

    def pop(self, key: Any, default: Any = None) -> Any:
        for b in self._buckets:
            # get + del, not dict.pop: compiled, both are direct dict calls, while
            # pop with a default is a method looked up by name.
            v = b.get(key, _MISSING)
            if v is not _MISSING:
                del b[key]
                return v
        return default

    def rotate(self) -> dict[Any, Any]:
        expired = self._buckets.pop()
        self._buckets.insert(0, {})
        return expired

    def items(self) -> Iterator[tuple[Any, Any]]:
        for b in self._buckets:
            yield from b.items()


class TreeState:
    """One tree an acker tracks: the XOR of the edge ids seen (a machine word
    when compiled), the spout task (0 until the init arrives), whether a bolt
    failed a tuple of it, and the expiry round it arrived in (AckerTrees)."""

    __slots__ = ("xor", "task", "failed", "round")

    def __init__(self, xor: int, task: int, failed: bool, round: int = 0) -> None:
        self.xor = xor
        self.task = task
        self.failed = failed
        self.round = round

    def __repr__(self) -> str:
        return f"TreeState(xor={self.xor}, task={self.task}, failed={self.failed})"


class AckerTrees:
    """The trees one acker task tracks, root -> TreeState. A tree is complete
    when the XOR of every edge id seen (each once when created, once when
    acked) returns to 0 after the spout's init arrived; acks may arrive first.

    Timeouts as a RotatingMap of ROTATING_BUCKETS buckets would time them: a
    tree fails at the ROTATING_BUCKETS-th call of expire() after it arrived.
    One dict, each tree stamped with the round it arrived in, and expire()
    scans it, where a RotatingMap looks a new tree up in every bucket and a
    finished one up again to remove it: per tree, four dict operations instead
    of seven, and the scan is once per rotation period (seconds), not per tuple.

    A plain class of the core (compiled, so the worker's folds into it are
    direct calls); `AckerBolt` is the bolt around it. Results go to
    `on_result(spout_task, root, ok)`, or, in a worker, to the acker task's
    executor (`executor`: a direct call when compiled, not one through a
    callable attribute)."""

    def __init__(self, on_result: Callable[[int, Any, bool], None]) -> None:
        self.pending: dict[Any, TreeState] = {}
        self.round = 0
        self.on_result = on_result
        self.executor: BoltExecutor | None = None

    def _result(self, spout_task: int, root: Any, ok: bool) -> None:
        ex = self.executor
        if ex is not None:
            ex.acker_result(spout_task, root, ok)
        else:
            self.on_result(spout_task, root, ok)

    def fold(self, root: Any, value: Any, spout_task: int) -> None:
        """XOR `value` into tree `root`; `spout_task` is non-zero for the init
        (which may come after acks). The worker calls this directly for acks
        folded in the acker's own worker, without making a tuple of them."""
        pending = self.pending
        v: int = value
        entry = pending.get(root)
        if entry is None:
            if not spout_task:
                pending[root] = TreeState(v, 0, False, self.round)
                return
            entry = TreeState(v, spout_task, False, self.round)
            pending[root] = entry
        else:
            entry.xor ^= v
            if spout_task:
                entry.task = spout_task
        task = entry.task
        if task:
            if entry.failed:
                del pending[root]
                self._result(task, root, False)
            elif entry.xor == 0:
                del pending[root]
                self._result(task, root, True)

    def fail(self, root: Any) -> None:
        """A bolt failed a tuple of tree `root`: the tree fails (now, or when
        its init arrives)."""
        pending = self.pending
        entry = pending.get(root)
        if entry is None:
            pending[root] = TreeState(0, 0, True, self.round)
            return
        entry.failed = True
        if entry.task:
            del pending[root]
            self._result(entry.task, root, False)

    def expire(self) -> None:
        """One rotation of the timeouts: the trees that arrived ROTATING_BUCKETS
        rotations ago fail (those whose init never came are dropped)."""
        self.round += 1
        oldest = self.round - ROTATING_BUCKETS
        pending = self.pending
        expired = [(root, entry) for root, entry in pending.items() if entry.round <= oldest]
        for root, _entry in expired:
            del pending[root]
        for root, entry in expired:
            if entry.task:
                self._result(entry.task, root, False)


class AckerIntake:
    """What other workers send a local acker task (acks, inits, fails), folded
    into its trees as the batch is decoded: no Tuple, no queue, no execute.

    `take(stream, values_list)` is called once per received group; a group of
    another stream returns False (it then goes to the acker's inbox). A value
    that is not an acker message is counted as the executor would count an
    error in execute, and the rest of the group is still folded.
    `take_acks(ids)` folds the packed acks a frame carries (batching.py)."""

    def __init__(self, trees: AckerTrees, stats: Any,
                 on_error: Callable[[BaseException, str], None]) -> None:
        self.trees = trees
        self.stats = stats
        self.on_error = on_error

    def take(self, stream: str, values_list: list[Any]) -> bool:
        trees = self.trees
        if stream == ACK_ACK:
            for values in values_list:
                if _ids(values, 2):
                    trees.fold(values[0], values[1], 0)
                else:
                    self._bad(stream, values)
        elif stream == ACK_INIT:
            for values in values_list:
                if _ids(values, 3):
                    trees.fold(values[0], values[1], values[2])
                else:
                    self._bad(stream, values)
        elif stream == ACK_FAIL:
            for values in values_list:
                if _ids(values, 1):
                    trees.fail(values[0])
                else:
                    self._bad(stream, values)
        else:
            return False
        self.stats.executed += len(values_list)
        return True

    def take_acks(self, ids: list[Any]) -> None:
        """Fold another worker's packed acks: [root, value, root, value, ...]."""
        fold = self.trees.fold
        for i in range(0, len(ids) - 1, 2):
            fold(ids[i], ids[i + 1], 0)
        self.stats.executed += len(ids) // 2

    def _bad(self, stream: str, values: Any) -> None:
        self.on_error(TypeError(f"the acker got {values!r:.80} on stream '{stream}', which is not "
                                "a list of tuple-tree ids (sent by something other than a worker?)"),
                      "execute")


def _ids(values: Any, n: int) -> bool:
    """Whether `values` is a list of `n` ints (an acker message's shape)."""
    if type(values) is not list or len(values) != n:
        return False
    return all(type(v) is int for v in values)


class AckerBolt(Bolt):
    """The `__acker` system bolt: acks, inits and fails arrive as tuples and
    fold into its `AckerTrees`; ticks rotate the timeouts.

    Results go to the acker task's executor (`trees.executor`, set when the
    task is made in a worker: a direct delivery); without one, they are
    emitted on the result stream (what a test of this bolt alone sees)."""

    def __init__(self) -> None:
        self.trees = AckerTrees(self.send_result)
        self.timeouts = True

    @property
    def pending(self) -> dict[Any, TreeState]:
        return self.trees.pending

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.timeouts = bool(conf.get("topology.enable.message.timeouts", True))

    def execute(self, tup: Tuple) -> None:
        stream = tup.meta.stream
        values = tup.values
        if stream == ACK_ACK:
            self.trees.fold(values[0], values[1], 0)
        elif stream == ACK_INIT:
            self.trees.fold(values[0], values[1], values[2])
        elif stream == ACK_FAIL:
            self.trees.fail(values[0])

    def fold(self, root: Any, value: Any, spout_task: int) -> None:
        """AckerTrees.fold (what a test of this bolt alone calls)."""
        self.trees.fold(root, value, spout_task)

    def send_result(self, spout_task: int, root: Any, ok: bool) -> None:
        """Tell the spout task how its tree ended (unbound: on the result stream)."""
        self.emit([root, ok], stream=ACK_RESULT, direct_task=spout_task)

    def process_tick(self, tup: Tuple) -> None:
        if self.timeouts:
            self.trees.expire()


class AckTracker:
    """A worker's acks between loop passes: the value folded per tree since the
    last flush (XOR is associative: one message per tree and pass, not one per
    tuple), and the trees whose spout init has not left this worker yet.

    `deliver(task, values, sid, src)` sends a system tuple; `finish(spout_task,
    root, ok)` tells a local spout task how its tree ended; `local_ackers` maps
    an acker task of this worker to its bolt (folded into directly)."""

    def __init__(self, ackers: list[int], ids: Ids) -> None:
        self.ackers = ackers
        self.n = len(ackers)
        self.ids = ids
        self.pending: dict[Any, Any] = {}  # root -> folded value since the last flush
        self.spare: dict[Any, Any] = {}  # the other one: flush() swaps them
        self.inits: dict[Any, int] = {}  # root -> spout task, init not sent yet
        # acker task of this worker -> (its executor's stats, its trees)
        self.local_ackers: dict[int, tuple[TaskStats, AckerTrees]] = {}
        self.deliver: Callable[[int, list[Any], int, int], None] | None = None
        # Folded acks for an acker of another worker, [root, value, ...] per
        # acker task: sent packed with the next frame to that worker.
        self.send_acks: Callable[[int, list[Any]], None] | None = None
        self.finish: Callable[[int, Any, bool], None] | None = None
        # Any local task that declares the ack stream carries folded acks (the
        # acker reads only the values): (stream id, task), set by the worker.
        self.ack_sid = -1
        self.ack_src = 0
        self.init_sids: dict[int, int] = {}  # spout task -> its init stream id
        self.fail_sids: dict[int, int] = {}  # task -> its fail stream id
        # The tree acked last and its value since it was folded into `pending`:
        # a bolt acks the children of one tuple one after the other (they were
        # emitted together), so a run of acks of one tree costs one dict update.
        # last_int: the same root as a machine word, so a tuple of it decoded from
        # a frame (an equal int, not the same object) compares natively.
        self.last_root: Any = None
        self.last_int = 0
        self.last_value = 0

    @property
    def has_acks(self) -> bool:
        """Whether anything waits for flush()."""
        return self.last_root is not None or bool(self.pending)

    def _fold(self, root: Any, value: int) -> None:
        pending = self.pending
        folded = pending.get(root)
        if folded is None:
            pending[root] = value
        else:
            fv: int = folded
            pending[root] = fv ^ value

    def _fold_last(self) -> None:
        """Move the run of acks of the last tree into `pending`."""
        last = self.last_root
        if last is not None:
            self._fold(last, self.last_value)
            self.last_root = None

    # -- spouts ------------------------------------------------------------------
    def local_slot(self, local_tasks: frozenset[int]) -> int:
        """The index of an acker in this worker (-1: none), so a root can pick it."""
        for i, t in enumerate(self.ackers):
            if t in local_tasks:
                return i
        return -1

    def place_root(self, root: Any, slot: int) -> Any:
        """Move a random root to the acker `slot` (root % ackers picks the
        acker), staying in msgpack's uint64 range: the init and the result of a
        tree that stays here then never cross the network."""
        if slot < 0:
            return root
        n = self.n
        r: int = root  # machine words when compiled (ids are below 2**62)
        r += slot - r % n
        # Compared with a machine word first: only a root from a hook can be this large.
        if r > _WORD_MAX and r > UINT64_MAX:
            r -= n
        return r

    def start(self, root: Any, xor: Any, spout_task: int) -> None:
        """A spout started tree `root` with edges XORing to `xor`. The init is
        folded with this worker's acks of the same tree and sent by flush()."""
        pending = self.pending
        folded = pending.get(root)
        pending[root] = xor if folded is None else folded ^ xor
        self.inits[root] = spout_task

    # -- bolts -------------------------------------------------------------------
    def ack(self, tup: Tuple) -> None:
        """A bolt acked `tup`: fold its edge XOR its ack value (the edges of the
        children anchored to it) into each of its trees."""
        root = tup.root
        if root is None:
            return
        # Machine words when compiled (ids are below 2**62): the XORs allocate nothing.
        value: int = tup.edge
        av = tup.ack_val
        if av:
            value ^= av
        last = self.last_root
        r = 0
        same = root is last
        if not same:
            ri: int = root  # declared here: an int (assigning Any to `r` would make it Any)
            r = ri
            same = last is not None and ri == self.last_int
        if same:
            self.last_value ^= value
        else:
            if last is not None:
                self._fold(last, self.last_value)
            self.last_root = root
            self.last_int = r
            self.last_value = value
        more = tup.more
        if more is not None:
            pending = self.pending
            for mr, edge in more.items():
                pending[mr] = pending.get(mr, 0) ^ edge ^ av

    def fail(self, tup: Tuple, src: int) -> None:
        """A bolt (task `src`) failed `tup`: fail each of its trees now."""
        if tup.root is None:
            return
        self._fold_last()
        inits = self.inits
        for root, _edge in tup.trees():
            spout_task = inits.pop(root, 0) if inits else 0
            if spout_task:
                # The tree's init has not left this worker yet: fail it here.
                self.pending.pop(root, None)
                assert self.finish is not None
                self.finish(spout_task, root, False)
            else:
                assert self.deliver is not None
                self.deliver(self.ackers[root % self.n], [root], self.fail_sids.get(src, -1), src)

    # -- the end of a loop pass --------------------------------------------------
    def flush(self) -> None:
        """Send what was folded since the last flush, one message per tree.

        A tree whose init is still here and whose folded value is 0 was
        emitted and completed entirely in this worker: its spout is told at
        once, no acker involved."""
        self._fold_last()
        pending = self.pending
        if not pending:
            return
        # Swapped, not copied: what this flush sets off (a spout's ack that emits)
        # folds into the other dict, and this one is read in place.
        self.pending = self.spare
        inits = self.inits
        ackers = self.ackers
        n = self.n
        finish = self.finish
        deliver = self.deliver
        assert finish is not None and deliver is not None
        local_ackers = self.local_ackers
        remote: dict[int, list[Any]] = {}
        try:
            for root, value in pending.items():
                spout_task = 0
                if inits:
                    # get + del, not pop with a default (a method found by name, compiled)
                    st = inits.get(root)
                    if st is not None:
                        del inits[root]
                        spout_task = st
                v: int = value  # a machine word when compiled: native tests against 0
                if spout_task and v == 0:
                    finish(spout_task, root, True)
                    continue
                if v == 0 and not spout_task:
                    continue
                r: int = root  # a machine word when compiled: a native modulo and index
                acker = ackers[r % n]
                local = local_ackers.get(acker)
                if local is not None:
                    # The tree's acker lives here: fold directly, no tuple, no queue.
                    stats, trees = local
                    trees.fold(root, value, spout_task)
                    stats.executed += 1
                elif spout_task:
                    deliver(acker, [root, value, spout_task], self.init_sids[spout_task], spout_task)
                elif self.send_acks is None:
                    deliver(acker, [root, value], self.ack_sid, self.ack_src)
                else:
                    flat = remote.get(acker)
                    if flat is None:
                        remote[acker] = [root, value]
                    else:
                        flat.append(root)
                        flat.append(value)
        finally:
            pending.clear()
            self.spare = pending
        if remote:
            send = self.send_acks
            assert send is not None
            for acker, flat in remote.items():
                send(acker, flat)
