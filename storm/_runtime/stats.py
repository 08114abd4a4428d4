"""The counters of one task (emitted, executed, acked, failed, latencies,
busy time) and their snapshot in a metrics report. Plain attributes: the
executors increment them on the hot path; nothing here aggregates across
tasks (storm._metrics does)."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["MAX_ERRORS_KEPT", "MAX_ERRORS_PER_SEC", "TaskStats"]

MAX_ERRORS_KEPT: Final = 20
MAX_ERRORS_PER_SEC: Final = 10


class TaskStats:
    """Counters of one task. Plain attributes: incremented on the hot path."""

    __slots__ = ("emitted", "transferred", "executed", "acked", "failed", "errors",
                 "exec_ns", "exec_samples", "complete_ns", "complete_samples", "process_ns",
                 "process_samples", "recent_complete_ns", "busy_s")

    def __init__(self) -> None:
        self.emitted: dict[str, int] = {}
        self.transferred = 0
        self.executed = 0
        self.acked = 0
        self.failed = 0
        self.errors = 0
        self.exec_ns = 0
        self.exec_samples = 0
        self.complete_ns = 0
        self.complete_samples = 0
        self.process_ns = 0  # sampled execute-to-ack times (executor.BoltExecutor.run)
        self.process_samples = 0
        # Seconds spent in execute (whole chunks, measured with the readings the
        # bolt's run loop takes anyway): the numerator of capacity.
        self.busy_s = 0.0
        # The last 2,048 to 4,096 complete latencies, for percentiles.
        self.recent_complete_ns: list[int] = []

    def snapshot(self) -> dict[str, Any]:
        recent = sorted(self.recent_complete_ns)
        p50 = recent[len(recent) // 2] / 1e6 if recent else None
        p99 = recent[min(len(recent) - 1, (len(recent) * 99) // 100)] / 1e6 if recent else None
        return {
            "complete_p50_ms": p50,
            "complete_p99_ms": p99,
            "emitted": dict(self.emitted),
            "transferred": self.transferred,
            "executed": self.executed,
            "acked": self.acked,
            "failed": self.failed,
            "errors": self.errors,
            "exec_ms": (self.exec_ns / self.exec_samples / 1e6) if self.exec_samples else None,
            "complete_ms": (self.complete_ns / self.complete_samples / 1e6) if self.complete_samples else None,
            # Raw sums, so a receiver can take latencies and capacity over a window.
            "exec_ns": self.exec_ns,
            "exec_samples": self.exec_samples,
            "complete_ns": self.complete_ns,
            "complete_samples": self.complete_samples,
            "process_ns": self.process_ns,
            "process_samples": self.process_samples,
            "busy_s": self.busy_s,
        }
