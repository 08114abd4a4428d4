"""Test-side helpers of the integration tests: waiting on a running topology
with a deadline, and a failure message that carries what is needed to debug a
run that is gone (worker states, recent errors, the tail of each worker log),
and stopping a command a test started together with what it started."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from storm import LocalTopology
from storm._local import ComponentStats

LOG_TAIL_LINES = 15


def wait_for(topo: LocalTopology, condition: Callable[[], bool], message: str,
             timeout: float = 60.0) -> None:
    """Poll `condition` until true; fail with diagnostics after `timeout` seconds."""
    try:
        topo.wait_until(condition, timeout=timeout, interval=0.05, message=message)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{diagnostics(topo)}") from None


def stats(topo: LocalTopology) -> dict[str, ComponentStats]:
    return {c.name: c for c in topo.component_stats()}


def diagnostics(topo: LocalTopology) -> str:
    lines = []
    for w in topo.workers:
        lines.append(f"worker {w.index}: pid={w.pid} ready={w.ready} restarts={w.restarts} "
                     f"exit={w.proc.poll() if w.proc else None}")
    for e in topo.recent_errors()[-5:]:
        lines.append(f"error in {e['component']} task {e['task']} ({e['where']}): {e['error']}")
    for w in topo.workers:
        path = Path(w.log_path)
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            lines.append(f"--- {path.name} (last {len(tail)} lines)")
            lines.extend(tail)
    return "\n".join(lines)


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each of `procs` (those already gone are skipped) and reap them."""
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


def stop_tree(proc: subprocess.Popen[Any], children: list[psutil.Process]) -> None:
    """Kill `proc` if it is still running and every process it started
    (`children`, read while it ran: they outlive it once it is gone)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    kill_all(children)
