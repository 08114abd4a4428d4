"""Entry point of a worker process (`python -m storm._worker_main ...`): rebuild the
topology from its target, bind sockets, run the loop until told to stop.

It reports to the process that launched it (the local cluster, later a
supervisor) and exits on its own when that process goes away."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any

from . import _acking
from ._runtime import Worker
from ._target import build_target, fingerprint, load_target
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s worker-{args.index} pid={os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    _acking.reseed()
    endpoints = json.loads(args.endpoints)
    overrides = json.loads(args.overrides)
    transport: ZmqTransport | None = None
    try:
        transport = ZmqTransport(args.index, endpoints, args.control, args.report,
                                 int(overrides.get("topology.transfer.hwm", 64)))
        spec = build_target(load_target(args.target), overrides)
        if args.fingerprint and fingerprint(spec) != args.fingerprint:
            raise RuntimeError(
                "this worker built a different topology than its launcher (is the topology "
                "built non-deterministically?)"
            )
        assignment = spec.assign(args.workers)
        worker = Worker(spec, assignment, args.index, transport)
        worker.setup()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        log.error("worker %d failed to start: %s\n%s", args.index, text, traceback.format_exc())
        if transport is not None:
            transport.report(["fatal", args.index, os.getpid(), text, traceback.format_exc()])
            time.sleep(0.2)
            transport.close()
        return 3
    log.info("worker %d started with tasks %s", args.index, sorted(worker.local_tasks))
    transport.report(["ready", args.index, os.getpid()])
    run_loop(worker, transport, args.parent_pid)
    transport.report(["metrics", args.index, os.getpid(), worker.metrics(), worker.new_errors, {"final": True}])
    transport.report(["bye", args.index, os.getpid()])
    transport.close()
    log.info("worker %d stopped", args.index)
    return 0


def run_loop(worker: Worker, transport: ZmqTransport, parent_pid: int) -> None:
    stop_requested = False

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
        received = worker.receive(frames) if frames else 0
        now = time.monotonic()
        did = worker.step(now) + received
        if any(worker.blocked):
            worker.retry_blocked()
        now = time.monotonic()
        if did == 0 or now - last_flush >= linger:
            worker.flush_all()
            last_flush = now
        if now >= next_timer:
            worker.timers(now)
            next_timer = now + 0.01
        if now >= next_report:
            next_report = now + report_every
            transport.report(["metrics", worker.index, os.getpid(), worker.metrics(), worker.new_errors,
                              {"backpressure": bool(any(worker.blocked) or overloaded)}])
            worker.new_errors = []
            if parent_pid and not _alive(parent_pid):
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
