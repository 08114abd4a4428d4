"""The supervisor daemon, one per host: registers its slots (ports) in the
cluster state, makes the worker processes on this host match the assignments
nimbus writes (fetching code, launching, stopping), watches each worker's
reports (heartbeats) and restarts a worker that died or went silent, backing
off when one keeps failing to start. It publishes each worker's figures and
errors to the state and serves the worker log files to `storm logs`.

A supervisor killed with SIGKILL leaves its workers running; started again with
the same storm.local.dir it adopts them (they wait `supervisor.worker.orphan.
timeout.secs` for that). Stopped with SIGTERM or Ctrl-C it stops them, unless
asked to keep them."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import psutil
import zmq

from .. import _security
from .._errors import StormError
from .._trace import TraceStore
from ._client import pack, unpack
from ._code import resolve_target
from ._code import unpack as unpack_code
from ._records import (
    Assignment,
    ErrorRecord,
    NimbusRecord,
    SupervisorRecord,
    WorkerBeat,
    WorkerCode,
    WorkerSlot,
    only_maps,
)
from ._state import ClusterState, local_dir, open_state, paths
from ._upgrade import code_of

log = logging.getLogger("storm.supervisor")

MAX_ERRORS_KEPT = 10
# Sampled tuple trees kept per worker (topology.debug.sample); they go into the
# worker's beat, so they are bounded well under a ZooKeeper node's 1 MiB.
TRACE_KEEP_PER_WORKER = 30
TRACE_MAX_EVENTS_PER_TREE = 100
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
QUICK_DEATH_SECS = 10.0  # a worker that dies sooner than this after starting counts as failing
LOG_CHUNK = 256 * 1024


@dataclass
class LocalWorker:
    """One worker process this supervisor runs (or is starting, or stopping)."""

    topology: str
    topology_id: str
    version: int
    index: int
    port: int
    log_path: str
    out_path: str
    control: str
    pid: int = 0
    create_time: float = 0.0
    # The topology's code version it runs (storm upgrade); 0 for a worker adopted
    # from a record without it: kept as it is.
    code_version: int = 0
    # Not persisted:
    status: str = "starting"  # starting, running, backoff, stopping
    ready: bool = False
    started: float = 0.0  # monotonic
    last_report: float = 0.0  # monotonic
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    fatal: str = ""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    backpressure: bool = False
    errors: list[ErrorRecord] = field(default_factory=list)
    error_count: int = 0
    stop_deadline: float = 0.0
    active_sent: bool | None = None
    levels_sent: dict[str, str] | None = None  # the log-level map the worker was last told
    checkpoint_sent: int = 0  # the last checkpoint request (storm upgrade) passed to the worker
    exit_code: int | None = None
    # topology.debug.sample: the worker's sampled tuple-tree events (bounded), its rate and problem.
    trace: TraceStore | None = None
    trace_sample: float = 0.0
    trace_error: str = ""

    PERSISTED = ("topology", "topology_id", "version", "index", "port", "log_path", "out_path",
                 "control", "pid", "create_time", "code_version")

    @property
    def key(self) -> tuple[str, int]:
        return (self.topology, self.index)

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in self.PERSISTED}


def _advertised_host(conf: Mapping[str, Any]) -> str:
    host = conf.get("storm.local.hostname") or "127.0.0.1"
    try:
        return socket.gethostbyname(str(host))
    except OSError as exc:
        raise StormError(f"storm.local.hostname '{host}' does not resolve to an address: {exc}") from exc


class Supervisor:
    def __init__(self, conf: Mapping[str, Any], state: ClusterState | None = None,
                 keep_workers: bool = False, insecure: bool = False) -> None:
        self.conf = dict(conf)
        ports = self.conf["supervisor.slots.ports"]
        if not isinstance(ports, list) or not ports or not all(
                isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
            raise StormError(f"supervisor.slots.ports must be a list of port numbers, got {ports!r}")
        self.ports = sorted(set(ports))
        self.host = _advertised_host(self.conf)
        # Workers bind their data sockets on this address too.
        _security.check_bind(self.conf, self.host, "the supervisor (and its workers)", "storm.local.hostname",
                             insecure)
        self.curve = _security.cluster_keys(self.conf)
        self._guard: _security.Guard | None = None
        self._handshakes: _security.HandshakeLog | None = None
        self.dir = local_dir(self.conf) / "supervisor"
        self.dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.conf.get("storm.log.dir")
        self.log_dir = Path(log_dir).expanduser() if log_dir else local_dir(self.conf) / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Two supervisors on one local dir would share an id and fight over workers.
        self._lock = open(self.dir / "lock", "w")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise StormError(
                f"another supervisor runs with storm.local.dir {local_dir(self.conf)}; give each "
                "supervisor on a host its own storm.local.dir"
            ) from exc
        self.id = self._load_id()
        # ipc:// paths must stay short (about 100 bytes) and the same across restarts.
        self.sock_dir = Path("/tmp") / f"storm-sup-{self.id[:12]}"
        self.sock_dir.mkdir(mode=0o700, exist_ok=True)
        self.report_endpoint = f"ipc://{self.sock_dir}/report"
        self.state = state or open_state(self.conf)
        self.keep_workers = keep_workers
        self.monitor_every = float(self.conf["supervisor.monitor.frequency.secs"])
        self.beat_every = float(self.conf["supervisor.heartbeat.frequency.secs"])
        self.worker_timeout = float(self.conf["supervisor.worker.timeout.secs"])
        self.start_timeout = float(self.conf["supervisor.worker.start.timeout.secs"])
        self.shutdown_timeout = float(self.conf["storm.worker.shutdown.timeout.secs"])
        self.backoff_max = float(self.conf["supervisor.worker.restart.backoff.max.secs"])
        self.nimbus_timeout = float(self.conf["supervisor.nimbus.timeout.secs"])
        # (the leading nimbus's last beat seen, monotonic time it changed), and whether
        # its silence was reported: a supervisor on another state than nimbus says so.
        self.nimbus_seen: tuple[Any, float] = (None, time.monotonic())
        self.nimbus_missing = False
        self.workers: dict[tuple[str, int], LocalWorker] = {}
        self.stopping: list[LocalWorker] = []
        self.procs: dict[int, psutil.Process] = {}
        self.assignments: dict[str, Assignment] = {}
        self.beat = 0
        self.stop_requested = False
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._controls: dict[str, zmq.Socket[bytes]] = {}
        self._report: zmq.Socket[bytes] | None = None
        self._logs: zmq.Socket[bytes] | None = None
        self.logs_endpoint = ""

    def _load_id(self) -> str:
        path = self.dir / "id"
        if path.exists():
            return path.read_text().strip()
        sid = uuid.uuid4().hex
        path.write_text(sid + "\n")
        return sid

    # -- sockets ------------------------------------------------------------------
    def bind(self) -> None:
        if self.curve is not None and self._guard is None:
            # Workers report with the cluster key; `storm logs` clients need a key in authorized/.
            self._guard = _security.acquire_guard(self.curve, self._ctx, clients=True)
        self._report = self._ctx.socket(zmq.PULL)
        self._report.setsockopt(zmq.LINGER, 0)
        _security.serve(self._report, self.curve, _security.DOMAIN_CLUSTER)
        self._report.bind(self.report_endpoint)
        self._logs = self._ctx.socket(zmq.ROUTER)
        self._logs.setsockopt(zmq.LINGER, 0)
        _security.serve(self._logs, self.curve, _security.DOMAIN_CLIENTS)
        port = int(self.conf["supervisor.logs.port"])
        try:
            if port:
                self._logs.bind(f"tcp://{self.host}:{port}")
            else:
                port = self._logs.bind_to_random_port(f"tcp://{self.host}")
        except zmq.ZMQError as exc:
            raise StormError(f"supervisor cannot listen for log requests on {self.host}:{port}: {exc}") from exc
        self.logs_endpoint = f"tcp://{self.host}:{port}"
        if self.curve is not None:
            self._handshakes = _security.HandshakeLog()
            self._handshakes.watch(self._logs, "the supervisor's log server", hangups=False)
            self._handshakes.watch(self._report, "the supervisor's report socket")
            self._handshakes.start()

    def _control(self, w: LocalWorker) -> zmq.Socket[bytes]:
        s = self._controls.get(w.control)
        if s is None:
            s = self._ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 100)
            _security.connect_with(s, self.curve)
            s.connect(w.control)
            self._controls[w.control] = s
        return s

    def _send(self, w: LocalWorker, msg: list[Any]) -> None:
        try:
            self._control(w).send(pack(msg), zmq.NOBLOCK)
        except zmq.Again:
            pass

    # -- the loop -------------------------------------------------------------------
    def serve(self) -> None:
        if self._report is None:
            self.bind()
        assert self._report is not None and self._logs is not None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop_requested = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self._adopt()
        log.info("supervisor %s on %s, slots %s, state in %s, logs in %s, %s", self.id[:12], self.host,
                 self.ports, self.state.describe(), self.log_dir,
                 f"CURVE on (keys in {self.curve.dir})" if self.curve is not None else "CURVE off")
        poller = zmq.Poller()
        poller.register(self._report, zmq.POLLIN)
        poller.register(self._logs, zmq.POLLIN)
        next_sync = next_beat = 0.0
        try:
            while not self.stop_requested:
                events = dict(poller.poll(100))
                if self._report in events:
                    self._read_reports()
                if self._logs in events:
                    self._answer_logs()
                now = time.monotonic()
                if now >= next_sync:
                    try:
                        self.sync()
                    except StormError as exc:
                        log.error("reading assignments: %s", exc)
                    except Exception:
                        # A daemon outlives a bad pass (a locked or full disk, a torn record).
                        log.exception("syncing with the assignments failed")
                    next_sync = time.monotonic() + self.monitor_every
                self.check_workers()
                if now >= next_beat:
                    try:
                        self.heartbeat()
                    except StormError as exc:
                        log.error("heartbeat: %s", exc)
                    except Exception:
                        log.exception("heartbeat failed")
                    next_beat = time.monotonic() + self.beat_every
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.keep_workers:
            log.info("supervisor stopping; its workers keep running")
        else:
            log.info("supervisor stopping its workers")
            for w in list(self.workers.values()):
                self.stop_worker(w)
            deadline = time.monotonic() + self.shutdown_timeout + 2
            while self.stopping and time.monotonic() < deadline:
                if self._report is not None and self._report.poll(50):
                    self._read_reports()
                self.check_workers()
            for w in list(self.stopping):
                self._kill(w)
            self.check_workers()
            try:
                rec = self.state.get_obj(paths.supervisor(self.id))
                if isinstance(rec, dict):
                    rec["stopped"] = True
                    self.state.put_obj(paths.supervisor(self.id), rec)
            except StormError:
                pass
        self._save()
        for ctl in self._controls.values():
            ctl.close(0)
        for sock in (self._report, self._logs):
            if sock is not None:
                sock.close(0)
        self.state.close()
        if self._handshakes is not None:
            self._handshakes.stop()
        if self._guard is not None:
            _security.release_guard(self._guard)
        if not self.keep_workers:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        log.info("supervisor stopped")

    # -- assignments ------------------------------------------------------------------
    def sync(self) -> None:
        """Make the workers on this host match the assignments."""
        self.assignments = only_maps(self.state.children_objs(paths.ASSIGNMENTS))
        desired: dict[tuple[str, int], tuple[Assignment, WorkerSlot]] = {}
        for name, a in self.assignments.items():
            for slot in a.get("workers") or []:
                if slot.get("supervisor") == self.id:
                    desired[(name, int(slot["index"]))] = (a, slot)
        for key, w in list(self.workers.items()):
            want = desired.get(key)
            if want is None or want[0]["id"] != w.topology_id or want[0]["version"] != w.version \
                    or int(want[1]["port"]) != w.port \
                    or (w.code_version and code_of(want[0], want[1])["code_version"] != w.code_version):
                self.stop_worker(w)
                continue
            active = bool(want[0].get("active"))
            if w.ready and w.active_sent != active:
                self._send(w, ["activate" if active else "deactivate"])
                w.active_sent = active
            levels = dict(want[0].get("log_levels") or {})
            if w.ready and w.levels_sent != levels and (levels or w.levels_sent):
                self._send(w, ["log-level", levels])
                w.levels_sent = levels
            # storm upgrade asks the checkpoint spout (wherever it runs) for a checkpoint.
            token = int(want[0].get("checkpoint") or 0)
            if w.ready and token and w.checkpoint_sent != token:
                self._send(w, ["checkpoint", token])
                w.checkpoint_sent = token
        busy = {w.port for w in self.stopping} | {w.port for w in self.workers.values()}
        for key, (a, slot) in sorted(desired.items()):
            if key in self.workers:
                continue
            port = int(slot["port"])
            if port in busy:
                continue  # the previous worker on this port is still stopping
            code = code_of(a, slot)
            try:
                code_dir = self._code(code["sha"])
            except StormError as exc:
                log.error("topology %s: %s", a["topology"], exc)
                continue
            name, index = key
            tdir = self.log_dir / name
            tdir.mkdir(parents=True, exist_ok=True)
            w = LocalWorker(topology=name, topology_id=a["id"], version=int(a["version"]), index=index,
                            port=port, log_path=str(tdir / f"worker-{index}.log"),
                            out_path=str(tdir / f"worker-{index}.out"),
                            control=f"ipc://{self.sock_dir}/c{port}", code_version=code["code_version"])
            self.workers[key] = w
            busy.add(port)
            self.launch(w, a, code_dir, code)

    def _code(self, sha: str) -> Path:
        dest = self.dir / "code" / sha
        if dest.is_dir():
            return dest
        blob = self.state.get_blob(paths.code(sha))
        if blob is None:
            raise StormError(f"the code {sha[:12]} is not in the cluster state yet")
        return unpack_code(blob, sha, dest)

    def launch(self, w: LocalWorker, a: Assignment, code_dir: Path, code: WorkerCode) -> None:
        cwd = self.dir / "workers" / f"{w.topology}-{w.index}"
        cwd.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "storm._worker_main",
            "--target", resolve_target(code_dir, code["target"]),
            "--overrides", json.dumps(code["overrides"]),
            "--index", str(w.index),
            "--workers", str(len(a["endpoints"])),
            "--endpoints", json.dumps(a["endpoints"]),
            "--control", w.control,
            "--report", self.report_endpoint,
            "--fingerprint", code["fingerprint"],
            "--parent-pid", str(os.getpid()),
            "--parallelism", json.dumps(code.get("parallelism") or {}),
            "--orphan-timeout", str(float(self.conf["supervisor.worker.orphan.timeout.secs"])),
            "--log-file", w.log_path,
            "--log-max-bytes", str(int(self.conf["worker.log.max.bytes"])),
            "--log-backups", str(int(self.conf["worker.log.backups"])),
        ]
        if self.curve is not None:
            cmd += ["--curve-keys", str(self.curve.dir)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(code_dir), *(p for p in sys.path if p)])
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["STORM_TOPOLOGY_ID"] = w.topology_id
        with open(w.out_path, "ab") as out:
            proc = psutil.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(cwd), start_new_session=True, close_fds=True)
        w.pid = proc.pid
        try:
            w.create_time = proc.create_time()
        except psutil.Error:
            w.create_time = 0.0
        self.procs[w.pid] = proc
        w.status = "starting"
        w.ready = False
        w.fatal = ""
        w.exit_code = None
        w.active_sent = None
        w.levels_sent = None
        w.checkpoint_sent = 0
        w.started = w.last_report = time.monotonic()
        log.info("topology %s: started worker %d (v%d) on port %d, pid %d", w.topology, w.index,
                 w.version, w.port, w.pid)
        self._save()

    def stop_worker(self, w: LocalWorker) -> None:
        self.workers.pop(w.key, None)
        if w.status == "backoff" or not self._alive(w):
            self._forget(w)
            return
        w.status = "stopping"
        w.stop_deadline = time.monotonic() + self.shutdown_timeout
        if w.ready:
            self._send(w, ["stop"])
        else:
            self._kill(w)  # still starting: it would not read the stop message
        self.stopping.append(w)
        log.info("topology %s: stopping worker %d (v%d), pid %d", w.topology, w.index, w.version, w.pid)

    def _forget(self, w: LocalWorker) -> None:
        """A worker stopped for good: drop its heartbeat (if still ours) and socket."""
        try:
            beat = self.state.get_obj(paths.beat(w.topology, w.index))
            if isinstance(beat, dict) and beat.get("supervisor") == self.id and beat.get("version") == w.version \
                    and beat.get("topology_id") == w.topology_id:
                self.state.delete(paths.beat(w.topology, w.index))
        except StormError as exc:
            log.error("removing the heartbeat of worker %d of %s: %s", w.index, w.topology, exc)
        s = self._controls.pop(w.control, None)
        if s is not None:
            s.close(0)
        self.procs.pop(w.pid, None)
        self._save()

    # -- processes ---------------------------------------------------------------------
    def _alive(self, w: LocalWorker) -> bool:
        proc = self.procs.get(w.pid)
        if proc is None or not w.pid:
            return False
        try:
            if isinstance(proc, psutil.Popen):
                code = proc.poll()
                if code is not None:
                    w.exit_code = code
                    return False
                return True
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _kill(self, w: LocalWorker) -> None:
        proc = self.procs.get(w.pid)
        if proc is not None:
            try:
                proc.kill()
            except psutil.Error:
                pass

    def check_workers(self) -> None:
        now = time.monotonic()
        for w in list(self.stopping):
            if not self._alive(w):
                self.stopping.remove(w)
                self._forget(w)
                log.info("topology %s: worker %d (pid %d) stopped", w.topology, w.index, w.pid)
            elif now > w.stop_deadline:
                log.warning("topology %s: worker %d (pid %d) did not stop in %gs; killing it", w.topology,
                            w.index, w.pid, self.shutdown_timeout)
                self._kill(w)
                w.stop_deadline = now + 5
        for w in list(self.workers.values()):
            if w.status == "backoff":
                if now >= w.next_start:
                    a = self.assignments.get(w.topology)
                    if a is None or a.get("version") != w.version:
                        continue  # sync() stops it
                    slot = next((s for s in a.get("workers") or [] if int(s["index"]) == w.index), None)
                    code = code_of(a, slot)
                    if w.code_version and code["code_version"] != w.code_version:
                        continue  # sync() stops it: an upgrade (or its rollback) moved it to other code
                    try:
                        self.launch(w, a, self._code(code["sha"]), code)
                    except StormError as exc:
                        log.error("topology %s: %s", w.topology, exc)
                        w.next_start = now + self.backoff_max
                continue
            if not self._alive(w):
                self._on_exit(w, now)
            elif not w.ready and now - w.started > self.start_timeout:
                w.fatal = w.fatal or f"worker did not start within {self.start_timeout:g}s"
                log.error("topology %s: worker %d (pid %d) did not start within %gs; killing it",
                          w.topology, w.index, w.pid, self.start_timeout)
                self._kill(w)
            elif w.ready and now - w.last_report > self.worker_timeout:
                log.error("topology %s: worker %d (pid %d) sent no heartbeat for %gs; killing it",
                          w.topology, w.index, w.pid, self.worker_timeout)
                self._note_error(w, f"no heartbeat for {self.worker_timeout:g}s: killed and restarted")
                self._kill(w)
                w.last_report = now  # one kill per timeout

    def _on_exit(self, w: LocalWorker, now: float) -> None:
        self.procs.pop(w.pid, None)
        quick = not w.ready or now - w.started < QUICK_DEATH_SECS
        if quick:
            w.failures += 1
            delay = min(self.backoff_max, 2.0 ** (w.failures - 1))
            if not w.fatal:
                w.fatal = f"worker exited with code {w.exit_code} {'before it was ready' if not w.ready else 'soon after it started'}; see {w.out_path}"
            self._note_error(w, w.fatal)
            log.error("topology %s: worker %d failed (%s); next start in %gs", w.topology, w.index, w.fatal,
                      delay)
        else:
            w.failures = 0
            delay = 0.0
            log.warning("topology %s: worker %d (pid %d) died (exit code %s); restarting", w.topology,
                        w.index, w.pid, w.exit_code)
            self._note_error(w, f"worker died (exit code {w.exit_code}); restarted")
        w.restarts += 1
        w.status = "backoff"
        w.ready = False
        w.next_start = now + delay
        w.pid = 0

    def _note_error(self, w: LocalWorker, text: str) -> None:
        w.errors.append({"time": time.time(), "component": f"worker-{w.index}", "task": 0,
                         "where": "supervisor", "error": text})
        del w.errors[:-MAX_ERRORS_KEPT]
        w.error_count += 1

    # -- reports from workers -------------------------------------------------------------
    def _read_reports(self) -> None:
        assert self._report is not None
        by_pid = {w.pid: w for w in self.workers.values() if w.pid}
        by_pid.update({w.pid: w for w in self.stopping if w.pid})
        while True:
            try:
                raw = self._report.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = unpack(raw)
                kind, pid = msg[0], int(msg[2])
            except Exception:
                continue
            w = by_pid.get(pid)
            if w is None:
                continue
            w.last_report = time.monotonic()
            if kind == "ready":
                w.ready = True
                w.status = "running" if w.status != "stopping" else w.status
                a = self.assignments.get(w.topology)
                if w.status == "running" and a is not None:
                    active = bool(a.get("active"))
                    if active:
                        self._send(w, ["activate"])
                    w.active_sent = active
            elif kind == "metrics":
                if w.status == "starting" and w.ready:
                    w.status = "running"
                if not w.ready and w.status != "stopping":
                    # An adopted worker: it was ready long ago.
                    w.ready, w.status = True, "running"
                    a = self.assignments.get(w.topology)
                    w.active_sent = None if a is None else w.active_sent
                w.metrics = {str(t): m for t, m in (msg[3] or {}).items()}
                extra = msg[5] if len(msg) > 5 and isinstance(msg[5], dict) else {}
                w.backpressure = bool(extra.get("backpressure"))
                if extra.get("trace_sample"):
                    w.trace_sample = float(extra["trace_sample"])
                    w.trace_error = str(extra.get("trace_error") or "")
                    if extra.get("trace"):
                        if w.trace is None:
                            w.trace = TraceStore(TRACE_KEEP_PER_WORKER, TRACE_MAX_EVENTS_PER_TREE)
                        w.trace.add(extra["trace"])
                for e in msg[4] or []:
                    w.errors.append(e)
                    w.error_count += 1
                del w.errors[:-MAX_ERRORS_KEPT]
                if w.ready and w.failures and time.monotonic() - w.started > QUICK_DEATH_SECS:
                    w.failures = 0
                    w.fatal = ""
            elif kind == "fatal":
                w.fatal = str(msg[3])
                log.error("topology %s: worker %d failed to start: %s", w.topology, w.index, w.fatal)

    # -- heartbeats ---------------------------------------------------------------------
    def heartbeat(self) -> None:
        self.beat += 1
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        vm = psutil.virtual_memory()
        record: SupervisorRecord = {
            "id": self.id, "host": self.host, "hostname": socket.gethostname(), "ports": self.ports,
            "logs": self.logs_endpoint, "pid": os.getpid(), "beat": self.beat, "time": time.time(),
            "workers": len(self.workers), "cpus": psutil.cpu_count() or 1, "load": load,
            "mem_percent": vm.percent, "mem_total": vm.total,
        }
        self.state.put_obj(paths.supervisor(self.id), record)
        now = time.monotonic()
        self._watch_nimbus(now)
        for w in self.workers.values():
            a = self.assignments.get(w.topology)
            if a is None or a.get("version") != w.version:
                continue
            cpu = rss = None
            proc = self.procs.get(w.pid)
            if proc is not None and w.status != "backoff":
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_percent(None)
                        rss = proc.memory_info().rss
                except psutil.Error:
                    pass
            beat: WorkerBeat = {
                "topology_id": w.topology_id, "version": w.version, "index": w.index,
                "supervisor": self.id, "host": self.host, "port": w.port, "pid": w.pid,
                "status": w.status, "uptime": now - w.started if w.status == "running" else 0.0,
                "restarts": w.restarts, "failures": w.failures, "fatal": w.fatal if w.status != "running" else "",
                "metrics": w.metrics, "errors": w.errors, "error_count": w.error_count,
                "cpu": cpu, "rss": rss, "time": time.time(), "backpressure": w.backpressure,
                "code_version": w.code_version,
            }
            if w.trace_sample:
                # The trace part (nothing unless topology.debug.sample is set): nimbus's
                # `trace` request assembles the trees from every worker's events.
                beat["trace_sample"], beat["trace_error"] = w.trace_sample, w.trace_error
                beat["trace"] = w.trace.events() if w.trace is not None else []
            self.state.put_obj(paths.beat(w.topology, w.index), beat)

    def _watch_nimbus(self, now: float) -> None:
        """Warn (in the log, so on the terminal in the foreground) when no
        nimbus has beaten in this state for supervisor.nimbus.timeout.secs:
        the usual cause is a nimbus started on another cluster state."""
        got = self.state.get_obj(paths.NIMBUS)
        rec = cast(NimbusRecord, got) if isinstance(got, dict) else None
        marker = rec.get("beat") if rec is not None else None
        if marker is not None and marker != self.nimbus_seen[0]:
            self.nimbus_seen = (marker, now)
            if self.nimbus_missing:
                self.nimbus_missing = False
                log.info("nimbus %s:%s beats in the cluster state %s again", rec.get("host") if rec else None,
                         rec.get("port") if rec else None, self.state.describe())
            return
        if not self.nimbus_missing and now - self.nimbus_seen[1] > self.nimbus_timeout:
            self.nimbus_missing = True
            log.warning(
                "no nimbus has beaten in the cluster state %s for %gs: this supervisor reads its assignments "
                "there; if nimbus runs, it uses another state (each daemon names its state when it starts): "
                "give nimbus and every supervisor the same storm.zookeeper.servers/storm.zookeeper.root, "
                "or the same storm.cluster.state.sqlite (or storm.local.dir)",
                self.state.describe(), self.nimbus_timeout)

    # -- surviving our own restart ----------------------------------------------------------
    def _save(self) -> None:
        records = [w.record() for w in [*self.workers.values(), *self.stopping] if w.pid]
        tmp = self.dir / "workers.json.tmp"
        tmp.write_text(json.dumps(records))
        os.replace(tmp, self.dir / "workers.json")

    def _adopt(self) -> None:
        """Take over the workers a previous run of this supervisor left running."""
        path = self.dir / "workers.json"
        if not path.exists():
            return
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        for rec in records:
            try:
                proc = psutil.Process(int(rec["pid"]))
                if abs(proc.create_time() - float(rec["create_time"])) > 1.0 or \
                        proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except (psutil.Error, KeyError, ValueError):
                continue
            try:
                w = LocalWorker(**{k: rec[k] for k in LocalWorker.PERSISTED if k != "code_version"},
                                code_version=int(rec.get("code_version") or 0))
            except KeyError:
                continue
            w.started = w.last_report = time.monotonic()
            w.status = "starting"
            self.procs[w.pid] = proc
            if w.key in self.workers:
                self.stopping.append(w)
                self._kill(w)
                continue
            self.workers[w.key] = w
            self._send(w, ["parent", os.getpid()])
            log.info("topology %s: adopted worker %d, pid %d", w.topology, w.index, w.pid)
        self._save()

    # -- logs -----------------------------------------------------------------------------
    def _answer_logs(self) -> None:
        assert self._logs is not None
        while True:
            try:
                frames = self._logs.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 3:
                continue
            try:
                reply = self.read_log(unpack(frames[-1]))
            except StormError as exc:
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self._logs.send_multipart([frames[0], b"", pack(reply)])

    def read_log(self, req: Mapping[str, Any]) -> dict[str, Any]:
        """A piece of one worker's log: from `offset`, or its last `lines` lines."""
        name, index = req.get("topology"), req.get("index")
        if not isinstance(name, str) or not _NAME_RE.match(name) or not isinstance(index, int):
            raise StormError("a log request names a topology and a worker index")
        path = self.log_dir / name / f"worker-{index}.log"
        if not path.exists():
            return {"ok": True, "data": b"", "offset": 0, "size": 0, "file": str(path)}
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = req.get("offset")
            if offset is None:
                lines = int(req.get("lines") or 100)
                start = max(0, size - LOG_CHUNK)
                f.seek(start)
                data = f.read(size - start)
                if start:
                    data = data.split(b"\n", 1)[-1]
                data = b"\n".join(data.split(b"\n")[-lines - 1:])
                return {"ok": True, "data": data, "offset": size, "size": size, "file": str(path)}
            offset = int(offset)
            rotated = offset > size
            if rotated:
                offset = 0
            f.seek(offset)
            data = f.read(LOG_CHUNK)
        return {"ok": True, "data": data, "offset": offset + len(data), "size": size, "file": str(path),
                "rotated": rotated}
