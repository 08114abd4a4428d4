"""What a worker needs from the network (`Transport`), and `MemoryTransport`,
which joins several workers of one process: the in-process harness and the
instruction-count benchmark use it where worker processes use the ZeroMQ
transport (storm._transport.ZmqTransport)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MemoryTransport", "Transport"]


class Transport(Protocol):
    """What the run loop needs from the network."""

    def send(self, worker: int, data: bytes) -> bool:
        """Queue `data` for `worker`; False if it would block (backpressure)."""
        ...

    def report(self, msg: Any) -> None:
        """Send a message (metrics, errors) to the cluster that owns this worker."""
        ...


class MemoryTransport:
    """Frames between workers of one process, held until `take(worker)`.
    `limit` frames queued for one worker make send() refuse, as a ZeroMQ
    high-water mark does (None: no limit)."""

    def __init__(self, workers: int, limit: int | None = None) -> None:
        self.frames: dict[int, list[bytes]] = {i: [] for i in range(workers)}
        self.limit = limit
        self.reports: list[Any] = []

    def send(self, worker: int, data: bytes) -> bool:
        queue = self.frames[worker]
        if self.limit is not None and len(queue) >= self.limit:
            return False
        queue.append(data)
        return True

    def report(self, msg: Any) -> None:
        self.reports.append(msg)

    def take(self, worker: int) -> list[bytes]:
        """The frames sent to `worker` since the last take."""
        frames = self.frames[worker]
        self.frames[worker] = []
        return frames
