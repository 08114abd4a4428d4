"""Spout-side offset bookkeeping of one Kafka partition, with no client in it:
which fetched offsets are still un-acked, the commit point (the offset after
the longest acked prefix: what AT_LEAST_ONCE may commit), the records waiting
for a retry and when they are due. Pure, so the rules are tested without a
broker; the spout (storm.kafka._spout) owns the consumer and the clock."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InFlight", "PartitionOffsets"]


@dataclass(slots=True)
class InFlight:
    """A record emitted and not yet settled: its values, stream and emit count."""

    values: list[Any]
    stream: str
    attempts: int = 1
    #: Failed and waiting for its back-off (a second fail of it is ignored).
    waiting: bool = False


@dataclass
class PartitionOffsets:
    """The offsets of one partition between its commit point and what was fetched.

    Records arrive in offset order (gaps allowed: compaction, transaction
    markers); `fetched` keeps every fetched, uncommitted offset in that order;
    `done` the ones settled (acked, skipped or given up on). The commit point
    moves over the settled prefix only, so a committed offset never passes an
    un-acked record."""

    #: Offset after the last one known committed (None: nothing fetched yet).
    committed: int | None = None
    #: The offset this task last committed for the partition (None: none yet).
    last_commit: int | None = None
    #: Bumped per assignment: an ack of an older assignment's emit is ignored.
    epoch: int = 0
    fetched: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    #: (due time, offset) of failed records waiting for their back-off.
    retries: list[tuple[float, int]] = field(default_factory=list)

    @property
    def uncommitted(self) -> int:
        """Offsets fetched and not yet behind the commit point."""
        return len(self.fetched)

    def add(self, offset: int) -> bool:
        """A newly fetched offset; False (and ignored) when it is not after every
        offset seen so far (a fetch from before a seek or a rebalance)."""
        if self.committed is None:
            self.committed = offset
        elif offset < self.committed or (self.fetched and offset <= self.fetched[-1]):
            return False
        self.fetched.append(offset)
        return True

    def settle(self, offset: int) -> None:
        """The offset needs no more work (acked, skipped, or retries exhausted)."""
        self.in_flight.pop(offset, None)
        self.done.add(offset)
        fetched, done = self.fetched, self.done
        while fetched and fetched[0] in done:
            first = fetched.popleft()
            done.discard(first)
            self.committed = first + 1

    def schedule_retry(self, offset: int, due: float) -> None:
        heapq.heappush(self.retries, (due, offset))

    def due_retry(self, now: float) -> int | None:
        """The offset of a failed record whose back-off is over, or None."""
        retries = self.retries
        while retries and retries[0][0] <= now:
            _, offset = heapq.heappop(retries)
            if offset in self.in_flight:
                return offset
        return None

    def commit_point(self) -> int | None:
        """The offset AT_LEAST_ONCE may commit now (None: nothing fetched)."""
        return self.committed
