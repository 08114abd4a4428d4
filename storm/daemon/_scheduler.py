"""The even scheduler: which supervisor slot (host port) runs each worker of a
topology. Pure functions of plain data; nimbus owns the state they read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Slot = tuple[str, int]  # (supervisor id, port)


@dataclass(frozen=True)
class SupervisorSlots:
    id: str
    host: str
    ports: tuple[int, ...]


def free_slots(supervisors: Sequence[SupervisorSlots], used: set[Slot]) -> dict[str, list[int]]:
    return {s.id: [p for p in sorted(s.ports) if (s.id, p) not in used] for s in supervisors}


def schedule(workers: int, supervisors: Sequence[SupervisorSlots], used: set[Slot],
             keep: Mapping[int, Slot] | None = None) -> list[Slot] | None:
    """One slot per worker index 0..workers-1, or None when there are too few.

    Slots in `keep` (index -> slot of a worker that may stay where it is) are
    kept when their supervisor is still offered; every other worker goes to the
    supervisor running the fewest workers so far (ties by id), on its lowest free
    port, so a topology spreads evenly over hosts, as Storm's EvenScheduler does."""
    if workers < 1:
        raise ValueError("a topology needs at least one worker")
    offered = {s.id: s for s in supervisors}
    free = free_slots(supervisors, used)
    load = {s.id: sum(1 for sid, _ in used if sid == s.id) for s in supervisors}
    out: list[Slot | None] = [None] * workers
    for index, (sid, port) in sorted((keep or {}).items()):
        if index < workers and sid in offered and port in free.get(sid, []):
            out[index] = (sid, port)
            free[sid].remove(port)
            load[sid] += 1
    for index in range(workers):
        if out[index] is not None:
            continue
        candidates = [sid for sid in sorted(free) if free[sid]]
        if not candidates:
            return None
        sid = min(candidates, key=lambda s: (load[s], s))
        out[index] = (sid, free[sid].pop(0))
        load[sid] += 1
    return [slot for slot in out if slot is not None]
