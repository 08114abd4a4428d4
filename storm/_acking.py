"""At-least-once tracking: the system `__acker` bolt and its XOR bookkeeping, the
RotatingMap used for message timeouts, and the system streams that carry acks.
The collectors in _runtime.py send to these streams; this module owns their
meaning and never touches sockets."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._component import Bolt, Stream
from ._grouping import Grouping

if TYPE_CHECKING:
    from ._context import TopologyContext
    from ._topology import ComponentDef
    from ._tuple import Tuple

ACKER = "__acker"
ACK_INIT = "__ack_init"  # spout -> acker: [root, xor of edges, spout task]
ACK_ACK = "__ack_ack"  # any -> acker: [root, xor]
ACK_FAIL = "__ack_fail"  # any -> acker: [root]
ACK_RESULT = "__ack_result"  # acker -> spout: [root, ok]
ROTATING_BUCKETS = 3

_rng = random.Random(int.from_bytes(os.urandom(16), "little"))
_getrandbits = _rng.getrandbits


def new_id() -> int:
    """A random non-zero 64-bit id (root ids and edge ids)."""
    return _getrandbits(64) or 1


def reseed() -> None:
    """Called after fork so two workers never draw the same ids."""
    _rng.seed(int.from_bytes(os.urandom(16), "little"))


class RotatingMap:
    """A map whose entries expire after `buckets - 1` to `buckets` rotations.

    Rotate it every timeout / (buckets - 1) seconds; rotate() returns what expired.
    """

    def __init__(self, buckets: int = ROTATING_BUCKETS) -> None:
        if buckets < 2:
            raise ValueError("a RotatingMap needs at least 2 buckets")
        self._buckets: list[dict[Any, Any]] = [{} for _ in range(buckets)]

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets)

    def __contains__(self, key: Any) -> bool:
        return any(key in b for b in self._buckets)

    def get(self, key: Any, default: Any = None) -> Any:
        for b in self._buckets:
            if key in b:
                return b[key]
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
            if key in b:
                return b.pop(key)
        return default

    def rotate(self) -> dict[Any, Any]:
        expired = self._buckets.pop()
        self._buckets.insert(0, {})
        return expired

    def items(self) -> Iterator[tuple[Any, Any]]:
        for b in self._buckets:
            yield from b.items()


class AckerBolt(Bolt):
    """Tracks each tuple tree as root -> [xor, spout task, failed]. The tree is
    complete when the XOR of every edge id seen (each once when created, once when
    acked) returns to 0 after the spout's init arrived; acks may arrive first."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.pending = RotatingMap()
        self.timeouts = bool(conf.get("topology.enable.message.timeouts", True))

    def execute(self, tup: Tuple) -> None:
        stream = tup.meta.stream
        values = tup.values
        if stream == ACK_ACK:
            self.fold(values[0], values[1], 0)
        elif stream == ACK_INIT:
            self.fold(values[0], values[1], values[2])
        elif stream == ACK_FAIL:
            root = values[0]
            pending = self.pending
            entry = pending.get(root)
            if entry is None:
                pending.put(root, [0, 0, True])
                return
            entry[2] = True
            if entry[1]:
                pending.pop(root)
                self.send_result(entry[1], root, False)

    def fold(self, root: int, value: int, spout_task: int) -> None:
        """XOR `value` into tree `root`; `spout_task` is non-zero for the init
        (which may come after acks). The runtime calls this directly for acks
        folded in the acker's own worker, without making a tuple of them."""
        pending = self.pending
        entry = pending.get(root)
        if entry is None:
            if not spout_task:
                pending.put(root, [value, 0, False])
                return
            entry = [value, spout_task, False]
            pending.put(root, entry)
        else:
            entry[0] ^= value
            if spout_task:
                entry[1] = spout_task
        task = entry[1]
        if task:
            if entry[2]:
                pending.pop(root)
                self.send_result(task, root, False)
            elif entry[0] == 0:
                pending.pop(root)
                self.send_result(task, root, True)

    def send_result(self, spout_task: int, root: int, ok: bool) -> None:
        """Tell the spout task how its tree ended. The runtime replaces this with
        a direct delivery that skips emit's checks (the acker is ours)."""
        self.emit([root, ok], stream=ACK_RESULT, direct_task=spout_task)

    def process_tick(self, tup: Tuple) -> None:
        if not self.timeouts:
            return
        for root, entry in self.pending.rotate().items():
            if entry[1]:
                self.send_result(entry[1], root, False)


def add_acker(defs: dict[str, ComponentDef], conf: dict[str, Any]) -> None:
    """Add the `__acker` system bolt and the ack streams to a topology being built."""
    from ._topology import ComponentDef, Subscription

    n = conf.get("topology.acker.executors")
    if n is None:
        n = int(conf.get("topology.workers", 1))
    if not isinstance(n, int) or n < 0:
        from ._errors import ConfigError

        raise ConfigError(f"topology.acker.executors must be an integer >= 0, got {n!r}")
    conf["topology.acker.executors"] = n
    if n == 0:
        return
    timeout = float(conf.get("topology.message.timeout.secs", 30))
    acker = ComponentDef(
        name=ACKER,
        cls=AckerBolt,
        par=n,
        is_spout=False,
        outputs={ACK_RESULT: Stream(("root", "ok"), ACK_RESULT, direct=True)},
        inputs=[],
        config={"topology.tick.tuple.freq.secs": max(timeout / (ROTATING_BUCKETS - 1), 0.05)},
        system=True,
    )
    direct = Grouping.direct()
    for d in sorted(defs.values(), key=lambda d: d.name):
        d.outputs[ACK_ACK] = Stream(("root", "xor"), ACK_ACK, direct=True)
        d.outputs[ACK_FAIL] = Stream(("root",), ACK_FAIL, direct=True)
        acker.inputs.append(Subscription(d.name, ACK_ACK, ACKER, direct))
        acker.inputs.append(Subscription(d.name, ACK_FAIL, ACKER, direct))
        if d.is_spout:
            d.outputs[ACK_INIT] = Stream(("root", "xor", "task"), ACK_INIT, direct=True)
            acker.inputs.append(Subscription(d.name, ACK_INIT, ACKER, direct))
            d.inputs.append(Subscription(ACKER, ACK_RESULT, d.name, direct))
    defs[ACKER] = acker
