"""Entry point of a worker process (`python -m storm._worker_main ...`): rebuild the
topology from its target, bind sockets, run the loop until told to stop.

It reports to the process that launched it (the local cluster, later a
supervisor) and exits on its own when that process goes away."""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
import traceback
from typing import Any

from . import _loglevel
from ._runtime import Worker
from ._serialization import MAX_FRAME_BYTES
from ._target import build_target, fingerprint, load_target
from ._topology import with_parallelism
from ._trace import NEEDS_ACKING, Tracer, sample_rate, traced_worker
from ._transport import ZmqTransport

log = logging.getLogger("storm.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="storm-worker")
    p.add_argument("--target", required=True)
    p.add_argument("--overrides", default="{}")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--endpoints", required=True, help="JSON list of data endpoints, one per worker")
    p.add_argument("--control", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--fingerprint", default="")
    p.add_argument("--parent-pid", type=int, default=0)
    p.add_argument("--peer-controls", default="[]",
                   help="JSON list of every worker's control endpoint, for backpressure signals")
    # Cluster mode (a supervisor launches the worker); all optional, so `storm local` is unchanged.
    p.add_argument("--parallelism", default="{}",
                   help="JSON {component: parallelism} a rebalance set (changes task ids)")
    p.add_argument("--orphan-timeout", type=float, default=0.0,
                   help="seconds to keep running after the launcher is gone, waiting for a new "
                        "one to adopt us (control message ['parent', pid]); 0: stop at once")
    p.add_argument("--log-file", default="", help="log here, rotated, instead of to stderr")
    p.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024)
    p.add_argument("--log-backups", type=int, default=5)
    p.add_argument("--faults", default="",
                   help="a test's fault rules (storm.testing.Faults under LocalCluster), installed as task hooks")
    p.add_argument("--curve-keys", default="",
                   help="directory of the cluster's CURVE keys (storm.security.keys.dir): every socket "
                        "is then authenticated and encrypted, and admits the cluster's key only")
    return p.parse_args(argv)


class _LogStream(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker that logs to a rotated file: each line
    printed becomes a log record, so print() output rotates with the log."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self._logger = logger
        self._level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._logger.log(self._level, line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._logger.log(self._level, self._partial)
            self._partial = ""


def _setup_logging(args: argparse.Namespace) -> None:
    fmt = f"%(asctime)s worker-{args.index} pid={os.getpid()} %(levelname)s %(name)s: %(message)s"
    if not args.log_file:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=fmt)
        return
    handler = logging.handlers.RotatingFileHandler(
        args.log_file, maxBytes=max(args.log_max_bytes, 1024), backupCount=max(args.log_backups, 0))
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    sys.stdout = _LogStream(logging.getLogger("stdout"), logging.INFO)
    sys.stderr = _LogStream(logging.getLogger("stderr"), logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args)
    endpoints = json.loads(args.endpoints)
    overrides = json.loads(args.overrides)
    transport: ZmqTransport | None = None
    try:
        try:
            spec = build_target(load_target(args.target), overrides)
            parallelism = json.loads(args.parallelism)
            if parallelism:
                spec = with_parallelism(spec, parallelism)
        finally:
            hwm = 64
            max_frame = MAX_FRAME_BYTES
            if "spec" in locals():
                hwm = int(spec.config.get("topology.transfer.hwm") or 64)
                max_frame = int(spec.config.get("topology.transfer.max.frame.bytes") or MAX_FRAME_BYTES)
            curve = None
            if args.curve_keys:
                from ._security import CurveKeys

                curve = CurveKeys.cluster(args.curve_keys)
            transport = ZmqTransport(args.index, endpoints, args.control, args.report, hwm,
                                     peer_controls=json.loads(args.peer_controls),
                                     max_frame_bytes=max_frame, curve=curve)
        if args.fingerprint and fingerprint(spec) != args.fingerprint:
            raise RuntimeError(
                "this worker built a different topology than its launcher (is the topology "
                "built non-deterministically?)"
            )
        assignment = spec.assign(args.workers)
        # Tree ids come from a generator seeded here, after the fork.
        if args.faults:
            from ._faults import faulted_worker

            worker, tracer = faulted_worker(args.faults, spec, assignment, args.index, transport)
        else:
            worker, tracer = traced_worker(spec, assignment, args.index, transport)
        worker.setup()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        log.error("worker %d failed to start: %s\n%s", args.index, text, traceback.format_exc())
        if transport is not None:
            transport.report(["fatal", args.index, os.getpid(), text, traceback.format_exc()])
            time.sleep(0.2)
            transport.close()
        return 3
    # Fewer, cheaper collections: the loop allocates a few objects per tuple and
    # keeps almost none; startup objects are moved out of the collector's way.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    log.info("worker %d started with tasks %s", args.index, sorted(worker.local_tasks))
    # A restarted worker clears any throttle its previous incarnation left set.
    transport.broadcast(["throttle", args.index, False])
    transport.report(["ready", args.index, os.getpid()])
    run_loop(worker, tracer, transport, args.parent_pid, args.orphan_timeout)
    transport.report(["metrics", args.index, os.getpid(), worker.metrics(), worker.new_errors,
                      trace_extra(worker, tracer, {"final": True})])
    transport.report(["bye", args.index, os.getpid()])
    transport.close()
    log.info("worker %d stopped (backpressure turned on or off %d times)", args.index,
             worker.pressure_changes)
    return 0


def run_loop(worker: Worker, tracer: Tracer | None, transport: ZmqTransport, parent_pid: int,
             orphan_timeout: float = 0.0) -> None:
    stop_requested = False
    orphaned_since = 0.0

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the launcher, which stops us

    conf = worker.conf
    linger = worker.linger
    idle_ms = worker.idle_wait_ms
    report_every = float(conf.get("topology.metrics.interval.secs") or 1)
    shutdown_timeout = float(conf.get("storm.worker.shutdown.timeout.secs") or 10)
    now = time.monotonic()
    last_flush = now
    next_timer = now
    next_report = now + report_every
    drain_deadline = 0.0
    quiet_since = 0.0
    timeout = 0
    while True:
        overloaded = worker.overloaded()
        frames, controls = transport.poll(timeout, want_data=not overloaded)
        for msg in controls:
            kind = msg[0] if isinstance(msg, list) and msg else None
            if kind == "activate":
                worker.set_active(True)
            elif kind == "deactivate":
                worker.set_active(False)
            elif kind == "stop":
                stop_requested = True
            elif kind == "parent" and len(msg) > 1:
                # A restarted supervisor adopted us: watch its pid from now on.
                parent_pid = int(msg[1])
                orphaned_since = 0.0
            elif kind == "throttle" and len(msg) == 3:
                worker.set_throttle(int(msg[1]), bool(msg[2]))
            elif kind == "log-level" and len(msg) == 2:
                _loglevel.apply(msg[1])  # storm set-log-level, sent by the supervisor
            elif kind == "checkpoint" and len(msg) == 2 and isinstance(msg[1], int):
                from .stateful import request_checkpoint

                request_checkpoint(worker, msg[1])  # storm upgrade, before it stops a worker
        received = worker.receive(frames) if frames else 0
        now = time.monotonic()
        did = worker.step(now) + received
        if worker.outbox.any_blocked():
            worker.retry_blocked()
        pressure = overloaded or worker.outbox.any_blocked()
        if pressure != worker.pressure:
            # Pause (or resume) every spout of the topology, not just ours: a
            # worker between a fast spout and a slow bolt must not buffer
            # without bound.
            worker.pressure = pressure
            worker.pressure_changes += 1
            transport.broadcast(["throttle", worker.index, pressure])
        now = time.monotonic()
        if did == 0 or now - last_flush >= linger:
            worker.flush_all()
            last_flush = now
        if now >= next_timer and not worker.stopping:
            worker.timers(now)
            next_timer = now + 0.01
        if now >= next_report:
            next_report = now + report_every
            transport.report(["metrics", worker.index, os.getpid(), worker.metrics(), worker.new_errors,
                              trace_extra(worker, tracer, {"backpressure": bool(worker.outbox.any_blocked() or overloaded)})])
            worker.new_errors = []
            if parent_pid and not _alive(parent_pid):
                if not orphaned_since:
                    orphaned_since = now
                    if orphan_timeout > 0:
                        log.warning("launcher pid %d is gone; waiting %gs for a new one", parent_pid,
                                    orphan_timeout)
                if now - orphaned_since >= orphan_timeout and not stop_requested:
                    log.error("launcher pid %d is gone; stopping", parent_pid)
                    stop_requested = True
        if stop_requested and not worker.stopping:
            worker.stopping = True
            worker.set_active(False)
            drain_deadline = now + min(shutdown_timeout / 2, 5.0)
            quiet_since = now
        if worker.stopping:
            if did:
                quiet_since = now
            if now - quiet_since > 0.3 or now > drain_deadline:
                worker.flush_all()
                worker.close()
                worker.flush_all()
                return
        timeout = 0 if did else idle_ms


def trace_extra(worker: Worker, tracer: Tracer | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The tracing part of a metrics report: the sample rate, why tracing is
    off although asked for, and the events recorded since the last report."""
    rate = sample_rate(worker.conf)
    if rate <= 0:
        return extra
    extra["trace_sample"] = rate
    if tracer is None:
        extra["trace_error"] = NEEDS_ACKING
        return extra
    extra["trace"] = tracer.take()
    if tracer.dropped:
        extra["trace_dropped"] = tracer.dropped
    return extra


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


if __name__ == "__main__":
    sys.exit(main())
