"""LocalCluster: runs topologies on this machine as real worker processes wired by
ZeroMQ over ipc://, for `storm local` and for tests. It launches, watches and
restarts the workers and collects their metrics and errors; it owns every
process it starts and kills them all on shutdown."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq

from ._errors import StormError
from ._faults import FaultEvent, Faults, fault_file, read_fault_files, write_rules
from ._metrics import ComponentStats, MetricsHistory, TopologyStats, WorkerStats, aggregate
from ._serialization import pack, unpack
from ._target import build_target, fingerprint, load_target, target_of
from ._topology import TopologySpec
from ._trace import TraceStore, build_trees, sample_rate, trace_problem

log = logging.getLogger("storm.local")


@dataclass
class WorkerInfo:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0
    ready: bool = False
    restarts: int = 0
    exited: bool = False
    fatal: str | None = None
    last_report: float = 0.0
    log_path: str = ""
    backpressure: bool = False
    started_at: float = 0.0
    restart_at: float = 0.0
    quick_deaths: int = 0


@dataclass
class WorkerKill:
    """A kill -9 of one worker planned by LocalTopology.kill_worker_when, and
    once done (``done`` is set), when it happened: ``at_secs`` after the
    topology started, with ``acked_at_kill`` spout acks reported by then, and
    the pid that was killed."""

    index: int
    acked: int | None = None
    component: str | None = None
    after_secs: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    pid: int = 0
    at_secs: float | None = None
    acked_at_kill: int = 0

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until the kill happened; False if it did not within `timeout`."""
        return self.done.wait(timeout)


class LocalTopology:
    """One running topology of a LocalCluster."""

    def __init__(self, cluster: LocalCluster, target: str, spec: TopologySpec,
                 overrides: dict[str, Any], workers: int, faults: Faults | None = None) -> None:
        if faults is not None:
            # Refused here, before a directory or a worker exists.
            if not isinstance(faults, Faults):
                raise StormError(f"faults= takes a storm.testing.Faults, got {faults!r}")
            faults.to_wire()
            faults.bind(self, time.time, {c.name: list(c.tasks) for c in spec.components.values()
                                          if not c.is_spout and not c.system})
        self.fault_rules = faults  # the Faults given to submit (the workers apply copies)
        self.cluster = cluster
        self.target = target
        self.spec = spec
        self.name = spec.name
        self.overrides = overrides
        self.num_workers = workers
        self.dir = Path(tempfile.mkdtemp(prefix=f"{_short(self.name)}-", dir=cluster.local_dir))
        self.log_dir = self.dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sock_dir = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp"))
        self.sock_dir = sock_dir
        self.endpoints = [f"ipc://{sock_dir}/w{i}" for i in range(workers)]
        self.controls = [f"ipc://{sock_dir}/c{i}" for i in range(workers)]
        self.report_endpoint = f"ipc://{sock_dir}/r"
        self.fingerprint = fingerprint(spec)
        self.workers = [WorkerInfo(i, log_path=str(self.log_dir / f"worker-{i}.log")) for i in range(workers)]
        self.task_metrics: dict[int, dict[str, Any]] = {}
        self.history = MetricsHistory()
        # pid -> (process, last CPU %, when it was taken): CPU % is over the time
        # since the previous reading, so readings closer than a second are reused.
        self._procs: dict[int, tuple[psutil.Process, float | None, float]] = {}
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        # Tuple trees of topology.debug.sample (storm trace); trace_file: where
        # `storm local` wants them written for `storm trace NAME`.
        self.trace = TraceStore()
        self.trace_sample = sample_rate(spec.config)
        self.trace_error: str | None = trace_problem(spec)
        self.trace_file: Path | None = None
        self._trace_written = -1
        self._trace_write_at = 0.0
        self.lock = threading.Lock()
        self.commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.active = False
        self.stopping = False
        self.stopped = threading.Event()
        self.started_at = time.time()
        self.faults_file = None if faults is None else write_rules(self.dir, faults, self.started_at)
        self.restart_workers = True
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._thread = threading.Thread(target=self._run, name=f"storm-local-{self.name}", daemon=True)
        self._ready = threading.Event()
        self._fatal: str | None = None
        self._started_mono = time.monotonic()
        # Planned kills (kill_worker_when) not done yet, and every one planned.
        self._kills_due: list[WorkerKill] = []
        self.kills: list[WorkerKill] = []

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._fatal:
                self.stop()
                raise StormError(f"topology '{self.name}' failed to start: {self._fatal}")
            if time.monotonic() > deadline:
                self.stop()
                raise StormError(
                    f"topology '{self.name}': workers did not start within {timeout:.0f}s; "
                    f"see the logs in {self.log_dir}"
                )
        if self._fatal:
            self.stop()
            raise StormError(f"topology '{self.name}' failed to start: {self._fatal}")

    def _launch(self, w: WorkerInfo) -> None:
        cmd = [
            sys.executable, "-m", "storm._worker_main",
            "--target", self.target,
            "--overrides", json.dumps(self.overrides),
            "--index", str(w.index),
            "--workers", str(self.num_workers),
            "--endpoints", json.dumps(self.endpoints),
            "--control", self.controls[w.index],
            "--report", self.report_endpoint,
            "--fingerprint", self.fingerprint,
            "--parent-pid", str(os.getpid()),
            "--peer-controls", json.dumps(self.controls),
        ]
        if self.faults_file is not None:
            cmd += ["--faults", str(self.faults_file)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        w.ready = False
        w.exited = False
        w.started_at = time.monotonic()
        with open(w.log_path, "ab") as logf:
            w.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=os.getcwd(), start_new_session=True)
        w.pid = w.proc.pid

    def _run(self) -> None:
        report = self._ctx.socket(zmq.PULL)
        report.setsockopt(zmq.LINGER, 0)
        report.bind(self.report_endpoint)
        ctl = []
        for ep in self.controls:
            s = self._ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 100)
            s.connect(ep)
            ctl.append(s)

        def send(i: int, msg: list[Any]) -> None:
            try:
                ctl[i].send(pack(msg), zmq.NOBLOCK)
            except zmq.Again:
                pass

        try:
            for w in self.workers:
                self._launch(w)
            stop_deadline = 0.0
            while True:
                if report.poll(50):
                    while True:
                        try:
                            raw = report.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self._on_report(raw, send)
                        except Exception as exc:  # a malformed report must not stop the cluster
                            log.warning("ignored a malformed report from a worker: %s", exc)
                while True:
                    try:
                        cmd, arg = self.commands.get_nowait()
                    except queue.Empty:
                        break
                    if cmd in ("activate", "deactivate"):
                        self.active = cmd == "activate"
                        for w in self.workers:
                            send(w.index, [cmd])
                    elif cmd == "stop":
                        self.stopping = True
                        stop_deadline = time.monotonic() + float(arg)
                        for w in self.workers:
                            if w.ready:
                                send(w.index, ["stop"])
                            elif w.proc is not None and w.proc.poll() is None:
                                # Still starting (maybe stuck in open/prepare): it
                                # would not read the stop message.
                                w.proc.kill()
                    elif cmd == "kill_worker":
                        w = self.workers[int(arg)]
                        if w.proc is not None and w.proc.poll() is None:
                            w.proc.kill()
                self._check_workers()
                if self._kills_due:
                    self._check_kills()
                if self.trace_file is not None:
                    self._write_trace()
                if self.stopping:
                    if all(w.proc is None or w.proc.poll() is not None for w in self.workers):
                        break
                    if time.monotonic() > stop_deadline:
                        for w in self.workers:
                            if w.proc is not None and w.proc.poll() is None:
                                w.proc.kill()
                        for w in self.workers:
                            if w.proc is not None:
                                try:
                                    w.proc.wait(5)
                                except subprocess.TimeoutExpired:
                                    pass
                        break
                # drain any late reports before leaving
        finally:
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is None:
                    w.proc.kill()
                    try:
                        w.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
            # late reports (final metrics) sent just before exit
            while True:
                try:
                    self._on_report(report.recv(zmq.NOBLOCK), send)
                except zmq.Again:
                    break
                except Exception:
                    break
            report.close(0)
            for s in ctl:
                s.close(0)
            shutil.rmtree(self.sock_dir, ignore_errors=True)
            self.stopped.set()

    def _on_report(self, raw: bytes, send: Callable[[int, list[Any]], None]) -> None:
        try:
            msg = unpack(raw)
            kind, index, pid = msg[0], int(msg[1]), int(msg[2])
        except Exception:
            return
        if not 0 <= index < len(self.workers):
            return
        w = self.workers[index]
        if pid != w.pid:
            return  # a report from a previous incarnation
        w.last_report = time.time()
        if kind == "ready":
            w.ready = True
            if self.active:
                send(index, ["activate"])
            if all(x.ready for x in self.workers) and not self._ready.is_set():
                self._ready.set()
        elif kind == "metrics":
            metrics, errors, extra = msg[3], msg[4], msg[5]
            with self.lock:
                for t, snap in metrics.items():
                    snap["worker"] = index
                    self.task_metrics[int(t)] = snap
                self.history.record(metrics, time.monotonic())
                for e in errors:
                    self.errors.append(e)
                    self.error_count += 1
                del self.errors[:-50]
                w.backpressure = bool(extra.get("backpressure"))
                if extra.get("trace"):
                    self.trace.add(extra["trace"])
                if extra.get("trace_error"):
                    self.trace_error = str(extra["trace_error"])
        elif kind == "fatal":
            w.fatal = str(msg[3])
            with self.lock:
                self.errors.append({"time": time.time(), "component": f"worker-{index}", "task": 0,
                                    "where": "startup", "error": str(msg[3]), "traceback": str(msg[4])})
                self.error_count += 1
            if not w.ready and not self._ready.is_set():
                self._fatal = str(msg[3])
        elif kind == "bye":
            w.exited = True

    def _check_workers(self) -> None:
        for w in self.workers:
            if w.proc is None or self.stopping:
                continue
            code = w.proc.poll()
            if code is None:
                continue
            if w.fatal and not w.ready and not self._ready.is_set():
                self._fatal = self._fatal or w.fatal
                continue
            if not self._ready.is_set() and not w.ready:
                self._fatal = self._fatal or (
                    f"worker {w.index} exited with code {code} before it was ready; see {w.log_path}")
                continue
            if self.restart_workers:
                now = time.monotonic()
                if not w.restart_at:
                    # A worker that keeps dying soon after it starts is restarted
                    # with a growing delay (1 s doubling to 30 s), not in a tight loop.
                    w.quick_deaths = w.quick_deaths + 1 if now - w.started_at < 10 else 0
                    delay = min(30.0, 2.0 ** (w.quick_deaths - 1)) if w.quick_deaths else 0.0
                    w.restart_at = now + delay
                if now >= w.restart_at:
                    w.restart_at = 0.0
                    w.restarts += 1
                    self._launch(w)

    def spout_acked(self, component: str | None = None) -> int:
        """Acks the spouts (or spout ``component``) reported so far, every task."""
        spouts = {c.name for c in self.spec.spouts() if not c.system}
        with self.lock:
            return sum(int(m.get("acked") or 0) for m in self.task_metrics.values()
                       if m.get("component") in spouts and (component is None or m.get("component") == component))

    def _check_kills(self) -> None:
        now = time.monotonic()
        for k in list(self._kills_due):
            acked = self.spout_acked(k.component)
            due = (k.acked is not None and acked >= k.acked) or (
                k.after_secs is not None and now - self._started_mono >= k.after_secs)
            w = self.workers[k.index]
            if not due or self.stopping or w.proc is None or w.proc.poll() is not None or not w.ready:
                continue
            w.proc.kill()
            k.pid, k.at_secs, k.acked_at_kill = w.pid, now - self._started_mono, acked
            self._kills_due.remove(k)
            log.info("killed worker %d (pid %d) of '%s' as planned, after %d spout acks",
                     k.index, k.pid, self.name, acked)
            k.done.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every worker (clean shutdown, then kill after `timeout`)."""
        if self.stopped.is_set():
            return
        t = timeout if timeout is not None else float(self.spec.config.get("storm.worker.shutdown.timeout.secs") or 10)
        if not self._thread.is_alive():
            self.stopped.set()
            return
        self.commands.put(("stop", t))
        self.stopped.wait(t + 15)

    # -- control -----------------------------------------------------------
    def activate(self) -> None:
        self.commands.put(("activate", None))

    def deactivate(self) -> None:
        self.commands.put(("deactivate", None))

    def kill_worker(self, index: int) -> None:
        """Kill -9 one worker (it is restarted), for failure tests."""
        self.commands.put(("kill_worker", index))

    def kill_worker_when(self, index: int, *, acked: int | None = None, component: str | None = None,
                         after_secs: float | None = None) -> WorkerKill:
        """Plan a kill -9 of worker `index` (it is restarted, and the spouts replay
        what it held): once the spouts (or spout `component`) reported `acked`
        acks, or `after_secs` seconds after the topology started. The returned
        WorkerKill says when it happened (``wait()`` for it)."""
        if not isinstance(index, int) or not 0 <= index < len(self.workers):
            raise StormError(f"kill_worker_when(): worker index {index!r} is not one of 0..{len(self.workers) - 1} "
                             f"(topology '{self.name}' has {len(self.workers)} workers)")
        if (acked is None) == (after_secs is None):
            raise StormError("kill_worker_when(): give exactly one of acked=N (spout acks) or after_secs=S")
        if acked is not None and (not isinstance(acked, int) or acked < 0):
            raise StormError(f"kill_worker_when(): acked= must be an integer >= 0, got {acked!r}")
        if after_secs is not None and (not isinstance(after_secs, (int, float)) or after_secs < 0):
            raise StormError(f"kill_worker_when(): after_secs= must be a number >= 0, got {after_secs!r}")
        spouts = sorted(c.name for c in self.spec.spouts() if not c.system)
        if component is not None and component not in spouts:
            raise StormError(f"kill_worker_when(): '{component}' is not a spout of topology '{self.name}'; "
                             f"its spouts are: {', '.join(spouts)}")
        kill = WorkerKill(index, acked=acked, component=component,
                          after_secs=None if after_secs is None else float(after_secs))
        self.kills.append(kill)
        self._kills_due.append(kill)
        return kill

    # -- faults (LocalCluster.submit(..., faults=...)) -----------------------
    def _fault_records(self) -> tuple[list[FaultEvent], list[tuple[float, str, int, Any]]]:
        if self.fault_rules is None:
            return [], []
        return read_fault_files([fault_file(self.dir, w.index) for w in self.workers])

    def faults(self) -> list[FaultEvent]:
        """Every fault the workers applied so far, in time order (``at``: seconds
        since the topology started; ``worker``: the worker's index). Empty
        without ``faults=``. Each is recorded before the tuple is failed, so
        a spout's fail (and replay) is never seen before its fault. (The
        Faults given to submit keeps no events: the workers' copies applied it.)"""
        return self._fault_records()[0]

    def replayed(self, spout: str) -> list[Any]:
        """Msg ids spout ``spout`` emitted again after their first emit (once
        per re-emit, in time order), as workers reported them: what the faults
        (or a killed worker) made it replay. Needs ``faults=`` (an empty
        Faults() records replays alone); a spout task restarted with its
        worker forgets what it emitted before."""
        spouts = sorted(c.name for c in self.spec.spouts() if not c.system)
        if spout not in spouts:
            raise StormError(f"replayed(): '{spout}' is not a spout of topology '{self.name}'; "
                             f"its spouts are: {', '.join(spouts)}")
        if self.fault_rules is None:
            raise StormError("replayed(): replays are recorded only for a topology submitted with "
                             "faults= (pass Faults() to record replays alone)")
        return [msg_id for _, comp, _, msg_id in self._fault_records()[1] if comp == spout]

    # -- figures -----------------------------------------------------------
    def metrics(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            return {t: dict(m) for t, m in self.task_metrics.items()}

    def component_stats(self) -> list[ComponentStats]:
        """Per-component figures (all time, and per window in `.windows`)."""
        return self.stats().components

    def stats(self) -> TopologyStats:
        """Every figure of the topology: components over the windows, workers, errors."""
        comps = {c.name: ("spout" if c.is_spout else "bolt", list(c.tasks)) for c in self.spec.components.values()}
        workers = self.worker_stats()
        with self.lock:
            return aggregate(self.name, comps, self.history, time.monotonic(), workers=workers,
                             errors=list(self.errors), error_count=self.error_count,
                             uptime=time.time() - self.started_at)

    def worker_stats(self) -> list[WorkerStats]:
        """pid, uptime, restarts, CPU % (since the previous call) and RSS of each worker."""
        out = []
        now = time.monotonic()
        for w in self.workers:
            ws = WorkerStats(w.index, pid=w.pid, host="127.0.0.1", restarts=w.restarts,
                             backpressure=w.backpressure, ready=w.ready,
                             uptime=now - w.started_at if w.started_at else None,
                             status="running" if w.ready else "starting")
            if w.pid and w.proc is not None and w.proc.poll() is None:
                try:
                    entry = self._procs.get(w.pid)
                    if entry is None:
                        proc = psutil.Process(w.pid)
                        proc.cpu_percent(None)  # the first reading is always 0.0: start the interval
                        entry = self._procs[w.pid] = (proc, None, now)
                    proc, cpu, taken = entry
                    if now - taken >= 1.0:
                        cpu, taken = proc.cpu_percent(None), now
                        self._procs[w.pid] = (proc, cpu, taken)
                    ws.cpu = cpu
                    ws.rss = proc.memory_info().rss
                except psutil.Error:
                    pass
            out.append(ws)
        return out

    def traces(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The sampled tuple trees (topology.debug.sample), most recent first
        (see storm._trace.build_trees)."""
        with self.lock:
            events = self.trace.events()
        return build_trees(events, limit)

    def trace_snapshot(self) -> dict[str, Any]:
        """What `storm trace NAME` reads: the sample rate, why tracing is off, the events."""
        with self.lock:
            return {"name": self.name, "sample": self.trace_sample, "error": self.trace_error,
                    "events": self.trace.events(), "time": time.time()}

    def _write_trace(self) -> None:
        now = time.monotonic()
        if self.trace.changes == self._trace_written or now < self._trace_write_at or self.trace_file is None:
            return
        self._trace_write_at = now + 0.5
        self._trace_written = self.trace.changes
        path = self.trace_file
        try:
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(pack(self.trace_snapshot()))
            os.replace(tmp, path)  # readers see a whole file
        except OSError as exc:
            log.warning("cannot write the trace file %s: %s", path, exc)

    def recent_errors(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.errors)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05,
                   message: str = "condition") -> None:
        """Poll `condition` until true; raise TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{message} not met within {timeout}s (topology '{self.name}', logs in {self.log_dir})")
            time.sleep(interval)

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.proc is not None and w.proc.poll() is None]


class LocalCluster:
    """Run topologies as local worker processes::

        with LocalCluster() as cluster:
            topo = cluster.submit(WordCount, config={"topology.workers": 2})
            topo.wait_until(lambda: ...)
    """

    def __init__(self, local_dir: str | os.PathLike[str] | None = None) -> None:
        base = Path(local_dir) if local_dir else Path(tempfile.gettempdir()) / "storm-local"
        base.mkdir(parents=True, exist_ok=True)
        self.local_dir = str(base)
        self.topologies: dict[str, LocalTopology] = {}

    def submit(self, topology: Any, config: Mapping[str, Any] | None = None, name: str | None = None,
               activate: bool = True, faults: Faults | None = None) -> LocalTopology:
        """Start `topology` (a Topology subclass or a target string) on worker processes.

        ``faults`` (a storm.testing.Faults) is installed in every worker
        process as task hooks; its rules are checked (and a ``where`` that
        workers cannot import refused) before any worker starts. Read what
        was applied with ``faults()`` and what spouts replayed with
        ``replayed(spout)`` on the returned LocalTopology."""
        target = target_of(topology)
        overrides = dict(config or {})
        if name:
            overrides["topology.name"] = name
        obj = load_target(target) if isinstance(topology, str) else topology
        spec = build_target(obj, overrides)
        if spec.name in self.topologies and not self.topologies[spec.name].stopped.is_set():
            raise StormError(f"a topology named '{spec.name}' is already running; kill it or pass another name")
        workers = int(spec.config["topology.workers"])
        overrides["topology.workers"] = workers
        lt = LocalTopology(self, target, spec, overrides, workers, faults)
        self.topologies[spec.name] = lt
        lt.start(float(spec.config.get("storm.local.worker.start.timeout.secs") or 60))
        if activate:
            lt.activate()
        return lt

    def kill(self, name: str, timeout: float | None = None) -> None:
        lt = self.topologies.get(name)
        if lt is None:
            raise StormError(f"no topology named '{name}' is running")
        lt.stop(timeout)

    def shutdown(self) -> None:
        for lt in list(self.topologies.values()):
            lt.stop()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _short(name: str) -> str:
    return "".join(ch for ch in name if ch.isalnum() or ch in "-_")[:24] or "topology"
