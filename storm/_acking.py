"""The reliability part of a topology's declaration: the names of the system
`__acker` bolt and of the streams that carry acks (storm._topology.add_acker
adds them to every topology when it is built).

This is the model layer: it says which components and streams exist, not how
they behave. How a tree is tracked (edge ids, folding, the acker's XOR map,
timeouts) is the runtime's, in storm._runtime.acking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._component import Bolt
from ._errors import StormError

if TYPE_CHECKING:
    from ._tuple import Tuple

# Final: the compiled core inlines them (no module lookup per tuple).
ACKER: Final = "__acker"
ACK_INIT: Final = "__ack_init"  # spout -> acker: [root, xor of edges, spout task]
ACK_ACK: Final = "__ack_ack"  # any -> acker: [root, xor]
ACK_FAIL: Final = "__ack_fail"  # any -> acker: [root]
ACK_RESULT: Final = "__ack_result"  # acker -> spout: [root, ok]
ROTATING_BUCKETS: Final = 3


class AckerDeclaration(Bolt):
    """Stands for the `__acker` system bolt in a built topology. A worker runs
    storm._runtime.acking.AckerBolt in its place."""

    def execute(self, tup: Tuple) -> None:
        raise StormError("the __acker bolt runs only inside a worker")
