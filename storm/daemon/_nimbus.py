"""Nimbus, the master daemon: accepts topologies (code archive, validated in a
subprocess), keeps them in the cluster state store, schedules their workers onto
supervisor slots, and answers the CLI (list, kill, activate, deactivate,
rebalance, info). Everything it knows is in the store, so a restarted nimbus
picks up where it stopped; workers never talk to it, so they run on untouched.

It never starts or stops a process: it writes assignments, and each supervisor
makes its host match them."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, cast

import zmq

from .. import __version__, _security
from .._errors import StormError
from .._loglevel import LogLevel, check_logger, current, expire, parse_setting
from .._metrics import MetricsHistory, TopologyStats, WorkerStats, aggregate
from ._client import pack, unpack
from ._code import unpack as unpack_code
from ._inspect import in_subprocess
from ._leader import Leadership, election
from ._records import (
    Assignment,
    ComponentRecord,
    ComponentStats,
    Description,
    ErrorRecord,
    InfoAnswer,
    KillAnswer,
    ListAnswer,
    LogLevelsAnswer,
    NimbusesAnswer,
    NimbusInfo,
    NimbusRecord,
    PingAnswer,
    RebalanceAnswer,
    StatusAnswer,
    SubmitAnswer,
    SupervisorInfo,
    SupervisorsAnswer,
    TopologyRecord,
    TopologyRow,
    UpgradeAnswer,
    WorkerBeat,
    WorkerRow,
    WorkerSlot,
    only_maps,
)
from ._scheduler import Slot, SupervisorSlots, schedule
from ._state import ClusterState, local_dir, open_state, paths
from ._upgrade import RollingUpgrade, code_shas, progress

log = logging.getLogger("storm.nimbus")

ACTIVE, INACTIVE, KILLED, REBALANCING = "ACTIVE", "INACTIVE", "KILLED", "REBALANCING"
# Requests only the leading nimbus answers; followers answer the rest from the state.
LEADER_OPS = frozenset({"submit", "kill", "activate", "deactivate", "rebalance", "set_log_level", "upgrade"})
INSPECT_TIMEOUT = 120.0
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")  # as storm._topology checks names


class RequestError(StormError):
    """A request nimbus refuses; the message goes back to the CLI as is."""


class NotLeaderError(RequestError):
    """A change asked of a follower; `leader` is where the leader answers (None
    during an election), so the client can send it there."""

    def __init__(self, message: str, leader: str | None) -> None:
        super().__init__(message)
        self.leader = leader


def component_stats(components: Mapping[str, ComponentRecord], history: MetricsHistory,
                    now: float) -> dict[str, ComponentStats]:
    """Per-component all-time figures, flat (the `components` of an info answer)."""
    stats = aggregate("", _component_tasks(components), history, now)
    out: dict[str, ComponentStats] = {}
    for c in stats.components:
        out[c.name] = {"kind": c.kind, "tasks": c.tasks, "emitted": c.emitted, "transferred": c.transferred,
                       "executed": c.executed, "acked": c.acked, "failed": c.failed, "errors": c.errors,
                       "queue": c.queue, "pending": c.pending, "reporting": c.reporting,
                       "complete_ms": c.complete_ms, "exec_ms": c.exec_ms, "capacity": c.capacity}
    return out


def _component_tasks(components: Mapping[str, ComponentRecord]) -> dict[str, tuple[str, list[int]]]:
    return {name: ("spout" if comp["spout"] else "bolt", [int(t) for t in comp["tasks"]])
            for name, comp in components.items()}


class Nimbus:
    def __init__(self, conf: Mapping[str, Any], state: ClusterState | None = None,
                 insecure: bool = False) -> None:
        self.conf = dict(conf)
        _security.check_bind(self.conf, str(self.conf["nimbus.host"]), "nimbus", "nimbus.host", insecure)
        self.curve = _security.cluster_keys(self.conf)
        self._guard: _security.Guard | None = None
        self._handshakes: _security.HandshakeLog | None = None
        self.state = state or open_state(self.conf)
        self.dir = local_dir(self.conf) / "nimbus"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = str(self.conf["nimbus.host"])
        self.port = int(self.conf["nimbus.port"])
        advertised = socket.gethostbyname(socket.gethostname()) if self.host in ("0.0.0.0", "::", "*") else self.host
        self.id = f"{advertised}:{self.port}"
        self.election: Leadership = election(self.state, self.id)
        self.was_leading = False
        self.missing_code: list[str] = []
        self.monitor_every = float(self.conf["nimbus.monitor.freq.secs"])
        self.sup_timeout = float(self.conf["nimbus.supervisor.timeout.secs"])
        # supervisor id -> (last heartbeat counter seen, monotonic time it changed):
        # liveness by nimbus's own clock, so clocks of other hosts do not matter.
        self.sup_seen: dict[str, tuple[Any, float]] = {}
        self.started = time.monotonic()
        self.stop_requested = False
        self._sock: zmq.Socket[bytes] | None = None
        # Metrics windows, kept here from the workers' cumulative counters:
        # topology name -> ((topology id, assignment version), history, beat time seen per worker).
        self.histories: dict[str, tuple[tuple[Any, Any], MetricsHistory, dict[int, Any]]] = {}
        self.exporter: Any = None
        self.upgrader = RollingUpgrade(self)
        self.exported: dict[str, TopologyStats] = {}

    # -- serving ------------------------------------------------------------------
    def bind(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        if self.curve is not None and self._guard is None:
            # Clients need a key in authorized/ to connect, one in admin/ to change anything.
            self._guard = _security.acquire_guard(self.curve, ctx, clients=True)
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        _security.serve(sock, self.curve, _security.DOMAIN_CLIENTS)
        try:
            sock.bind(f"tcp://{self.host}:{self.port}")
        except zmq.ZMQError as exc:
            sock.close(0)
            raise StormError(
                f"nimbus cannot listen on {self.host}:{self.port} ({exc}); is another nimbus "
                "running? set nimbus.host / nimbus.port"
            ) from exc
        self._sock = sock
        if self.curve is not None:
            self._handshakes = _security.HandshakeLog()
            self._handshakes.watch(sock, "nimbus", hangups=False)
            self._handshakes.start()

    def serve(self) -> None:
        """Answer requests and watch the cluster until SIGTERM/SIGINT."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop_requested = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.started_at = time.time()
        log.info("nimbus %s listening on %s:%d, state in %s, %s", self.id, self.host, self.port,
                 self.state.describe(),
                 f"CURVE on (keys in {self.curve.dir})" if self.curve is not None else "CURVE off")
        self._start_exporter()
        next_monitor = 0.0
        try:
            while not self.stop_requested:
                if self._sock.poll(100):
                    self._answer_all()
                now = time.monotonic()
                if now >= next_monitor:
                    try:
                        self.tick()
                    except StormError as exc:
                        log.error("monitor: %s", exc)
                    except Exception:
                        # A daemon outlives a bad pass (a locked or full disk, a torn record).
                        log.exception("monitor pass failed")
                    next_monitor = time.monotonic() + self.monitor_every
        finally:
            if self.exporter is not None:
                self.exporter.stop()
            self._sock.close(0)
            try:
                self.election.resign()
                self.state.delete(paths.nimbus(self.id))
            except StormError:
                pass
            self.state.close()
            if self._handshakes is not None:
                self._handshakes.stop()
            if self._guard is not None:
                _security.release_guard(self._guard)
            log.info("nimbus stopped")

    def _answer_all(self) -> None:
        assert self._sock is not None
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) < 3:
                continue
            ident, payload = frames[0], frames[-1]
            # Under CURVE the ZAP handler set the sender's User-Id: its z85 public key.
            user = _security.user_id(payload) if self.curve is not None else None
            reply = self.handle_raw(payload.bytes, user)
            self._sock.send_multipart([ident.bytes, b"", pack(reply)])

    def handle_raw(self, payload: bytes, user: str | None = None) -> dict[str, Any]:
        try:
            msg = unpack(payload)
            if not isinstance(msg, dict):
                raise RequestError("a request must be a map with an 'op'")
            self.authorize(msg.get("op"), user)
            return self.handle(msg)
        except NotLeaderError as exc:
            return {"ok": False, "error": str(exc), "leader": exc.leader, "not_leader": True}
        except StormError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("request failed")
            return {"ok": False, "error": f"nimbus failed on this request: {type(exc).__name__}: {exc}"}

    def authorize(self, op: Any, user: str | None) -> None:
        """Under CURVE, only admin keys may change the cluster (any authorized key may read)."""
        if self.curve is None or op not in _security.ADMIN_OPS:
            return
        if self._guard is None or not self._guard.is_admin(user):
            log.warning("refused %s from client key %s: not an admin key", op, user)
            raise RequestError(
                f"not allowed to {op}: this client's key ({user}) is not an admin key; "
                f"only keys in {self.curve.dir / _security.ADMIN} on the nimbus host may submit, kill, "
                "rebalance, activate, deactivate, look up state locations for `storm query NAME` "
                "or read tuple values with `storm trace` "
                "(storm keys add NAME --admin)"
            )

    def handle(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if handler is None:
            raise RequestError(f"nimbus does not know the request {op!r}")
        if op in LEADER_OPS and not self.election.leading():
            leader = self.election.leader()
            raise NotLeaderError(
                f"nimbus {self.id} is a follower and does not {op}: "
                + (f"the leader is nimbus {leader}" if leader else
                   "no nimbus leads right now (an election takes up to storm.zookeeper.session.timeout); "
                   "try again in a moment"), leader)
        result: dict[str, Any] = handler(msg)
        result["ok"] = True
        return result

    # -- helpers ------------------------------------------------------------------
    def _topology(self, name: Any) -> TopologyRecord:
        if not isinstance(name, str) or not name:
            raise RequestError("name a topology")
        topo = self.state.get_obj(paths.topology(name)) if _NAME_RE.match(name) else None
        if not isinstance(topo, dict):
            known = ", ".join(self.state.children(paths.TOPOLOGIES)) or "none"
            raise RequestError(f"no topology named '{name}' is running (running: {known})")
        return cast(TopologyRecord, topo)

    def _code_dir(self, sha: str) -> Path:
        dest = self.dir / "code" / sha
        if dest.is_dir():
            return dest
        blob = self.state.get_blob(paths.code(sha))
        if blob is None:
            raise RequestError(f"the code {sha[:12]} is missing from the cluster state")
        return unpack_code(blob, sha, dest)

    def inspect(self, code_dir: Path, target: str, overrides: Mapping[str, Any],
                parallelism: Mapping[str, int]) -> Description:
        """Build the topology in a subprocess; its description or RequestError."""
        try:
            # The JSON of _code.describe_spec.
            return cast(Description, in_subprocess("storm.daemon._inspect", code_dir, target, overrides, parallelism,
                                                   INSPECT_TIMEOUT, "invalid topology"))
        except StormError as exc:
            raise RequestError(str(exc)) from exc

    def supervisors(self) -> dict[str, SupervisorInfo]:
        """Every registered supervisor, with `alive` by nimbus's own clock."""
        now = time.monotonic()
        out: dict[str, SupervisorInfo] = {}
        records: dict[str, SupervisorInfo] = only_maps(self.state.children_objs(paths.SUPERVISORS))
        for sid, rec in records.items():
            marker = rec.get("beat")
            seen = self.sup_seen.get(sid)
            if seen is None or seen[0] != marker:
                self.sup_seen[sid] = (marker, now)
                seen = self.sup_seen[sid]
            info = rec.copy()
            info["alive"] = not rec.get("stopped") and now - seen[1] < self.sup_timeout
            out[sid] = info
        for sid in list(self.sup_seen):
            if sid not in records:
                del self.sup_seen[sid]
        return out

    def where(self, sups: Mapping[str, SupervisorInfo]) -> str:
        """Which cluster state this nimbus reads and how many supervisors beat
        there: a supervisor pointed at another state never shows up, so say
        which one is meant instead of waiting in silence."""
        alive = sum(1 for s in sups.values() if s.get("alive"))
        text = f"{alive} supervisor(s) alive in the cluster state {self.state.describe()}"
        if alive == 0:
            text += (" (a supervisor started with another storm.local.dir, storm.cluster.state.sqlite or "
                     "storm.zookeeper.root registers elsewhere: give every daemon the same settings)")
        return text

    def _assignments(self) -> dict[str, Assignment]:
        return only_maps(self.state.children_objs(paths.ASSIGNMENTS))

    def _topologies(self) -> dict[str, TopologyRecord]:
        return only_maps(self.state.children_objs(paths.TOPOLOGIES))

    def _assignment(self, name: str) -> Assignment | None:
        a = self.state.get_obj(paths.assignment(name))
        return cast(Assignment, a) if isinstance(a, dict) else None

    def _schedule(self, topo: TopologyRecord, old: Assignment | None,
                  sups: dict[str, SupervisorInfo], assignments: dict[str, Assignment]) -> bool:
        """Write a new assignment for `topo`; False when slots are short."""
        live = [SupervisorSlots(sid, str(s["host"]), tuple(int(p) for p in s.get("ports") or ()))
                for sid, s in sups.items() if s["alive"]]
        used: set[Slot] = set()
        for name, a in assignments.items():
            if name == topo["name"]:
                continue
            for w in a.get("workers") or []:
                used.add((w["supervisor"], int(w["port"])))
        keep = {}
        if old:
            keep = {int(w["index"]): (w["supervisor"], int(w["port"])) for w in old.get("workers") or []}
        slots = schedule(int(topo["workers"]), live, used, keep)
        if slots is None:
            free = sum(len(s.ports) for s in live) - len({u for u in used if u[0] in {s.id for s in live}})
            note = (f"waiting for free slots: needs {topo['workers']} worker(s), {max(free, 0)} slot(s) free; "
                    f"{self.where(sups)}")
            if topo.get("note") != note:
                topo["note"] = note
                self.state.put_obj(paths.topology(topo["name"]), topo)
                log.warning("topology %s: %s", topo["name"], note)
            return False
        topo["version"] = int(topo.get("version") or 0) + 1
        topo["note"] = ""
        hosts = {sid: sups[sid]["host"] for sid, _ in slots}
        workers: list[WorkerSlot] = [{"index": i, "supervisor": sid, "host": hosts[sid], "port": port}
                                     for i, (sid, port) in enumerate(slots)]
        assignment: Assignment = {
            "topology": topo["name"], "id": topo["id"], "version": topo["version"], "sha": topo["sha"],
            "target": topo["target"], "overrides": topo["overrides"], "parallelism": topo["parallelism"],
            "fingerprint": topo["fingerprint"], "active": topo["status"] == ACTIVE,
            "workers": workers, "endpoints": [f"tcp://{w['host']}:{w['port']}" for w in workers],
            "time": time.time(), "log_levels": current(topo.get("log_levels") or {}),
            "code_version": int(topo.get("code_version") or 1),
        }
        self.state.put_obj(paths.topology(topo["name"]), topo)
        self.state.put_obj(paths.assignment(topo["name"]), assignment)
        assignments[topo["name"]] = assignment
        log.info("topology %s: assignment v%d: %s", topo["name"], topo["version"],
                 ", ".join(f"w{w['index']}@{w['host']}:{w['port']}" for w in workers))
        return True

    def _set_active(self, name: str, active: bool) -> None:
        a = self._assignment(name)
        if a is not None and a.get("active") != active:
            a["active"] = active
            self.state.put_obj(paths.assignment(name), a)

    def _remove(self, name: str, topo: TopologyRecord) -> None:
        self.state.delete(paths.assignment(name))
        self.state.delete(paths.topology(name))
        self.state.delete(paths.beats(name))
        sha = topo.get("sha")
        if sha:
            still = [t for t in self._topologies().values() if t.get("sha") == sha]
            if not still:
                self.state.delete(paths.code(str(sha)))
        log.info("topology %s removed", name)

    # -- leadership -------------------------------------------------------------------
    def tick(self) -> None:
        """One pass: beat in the nimbus registry, fetch the code of every live
        topology, stand for leadership once all of it is here, and do the
        leader's work while leading."""
        self.state.put_obj(paths.nimbus(self.id), self._record())
        self.missing_code = self._fetch_code()
        leading = self.election.leading()
        if not leading and not self.missing_code:
            leading = self.election.stand()
        if leading != self.was_leading:
            if leading:
                log.info("nimbus %s leads now (state %s)", self.id, self.state.describe())
            else:
                log.warning("nimbus %s no longer leads; following %s", self.id, self.election.leader() or "nobody yet")
            self.was_leading = leading
        if leading:
            self.monitor()
            return
        self.supervisors()  # a follower keeps its view of supervisor liveness warm for when it leads
        if self.missing_code:
            log.info("nimbus %s does not stand for leadership yet: it lacks the code of %s", self.id,
                     ", ".join(self.missing_code))

    def _record(self) -> NimbusRecord:
        return {"id": self.id, "host": self.id.rpartition(":")[0], "port": self.port, "pid": os.getpid(),
                "hostname": socket.gethostname(), "started": getattr(self, "started_at", time.time()),
                "version": __version__, "beat": time.time(), "missing_code": self.missing_code}

    def _fetch_code(self) -> list[str]:
        """The topologies whose code this nimbus cannot get (code is replicated
        through the state: a nimbus that cannot run a topology must not lead)."""
        missing = []
        for name, topo in self._topologies().items():
            if topo.get("status") == KILLED:
                continue
            for sha in code_shas(topo):
                try:
                    self._code_dir(sha)
                except (RequestError, OSError):
                    missing.append(name)
        return sorted(set(missing))

    def op_nimbuses(self, msg: Mapping[str, Any]) -> NimbusesAnswer:
        """Every nimbus registered in the state, which leads, and whether it beats."""
        leader = self.election.leader()
        records: dict[str, NimbusRecord] = only_maps(self.state.children_objs(paths.NIMBUSES))
        out: list[NimbusInfo] = []
        for nid, rec in sorted(records.items()):
            # Wall clocks of the nimbus hosts are compared here (a few seconds of skew pass).
            age = time.time() - float(rec.get("beat") or 0)
            alive = nid == self.id or age < max(3 * self.monitor_every, 5.0)
            out.append({**rec, "id": nid, "alive": alive, "leader": nid == leader})
        return {"nimbuses": out, "leader": leader, "answered_by": self.id}

    # -- the periodic pass -----------------------------------------------------------
    def monitor(self) -> None:
        now = time.time()
        sups = self.supervisors()
        assignments = self._assignments()
        topologies = self._topologies()
        exported: dict[str, TopologyStats] = {}
        exported_topologies: dict[str, TopologyRecord] = {}
        for name, topo in topologies.items():
            status = topo.get("status")
            if status == KILLED:
                if now >= float(topo.get("kill_at") or 0):
                    self._remove(name, topo)
                    assignments.pop(name, None)
                continue
            if status == REBALANCING:
                self._rebalance_step(topo, assignments, sups, now)
                continue
            levels = topo.get("log_levels")
            if levels and expire(levels, now) != levels:
                self._put_log_levels(topo, expire(levels, now))
                assignments = self._assignments()
            a = assignments.get(name)
            if a is None or not a.get("workers"):
                self._schedule(topo, None, sups, assignments)
                continue
            beats = self._beats(name, topo, a)
            self._record_metrics(name, topo, a, beats)
            if topo.get("upgrade"):
                self.upgrader.step(topo, a, beats, now)
            if self.exporter is not None:
                exported[name] = self.topology_stats(name)
                exported_topologies[name] = topo
            lost = [w for w in a["workers"] if w["supervisor"] not in sups or not sups[w["supervisor"]]["alive"]]
            if lost and time.monotonic() - self.started > self.sup_timeout:
                log.warning("topology %s: supervisor(s) %s lost; rescheduling", name,
                            ", ".join(sorted({w["supervisor"] for w in lost})))
                self._schedule(topo, a, sups, assignments)
        # Leftovers of topologies gone while a supervisor was still writing.
        for name in self.state.children(paths.ASSIGNMENTS):
            if name not in topologies:
                self.state.delete(paths.assignment(name))
        for name in self.state.children(paths.BEATS):
            if name not in topologies:
                self.state.delete(paths.beats(name))
        for name in list(self.histories):
            if name not in topologies:
                del self.histories[name]
        # The exporter's thread reads this snapshot: it never touches the store.
        self.exported = exported
        self.exported_topologies = exported_topologies
        self.state.put_obj(paths.NIMBUS, self._record())

    def _rebalance_step(self, topo: TopologyRecord, assignments: dict[str, Assignment],
                        sups: dict[str, SupervisorInfo], now: float) -> None:
        name = topo["name"]
        rb = topo["rebalance"]
        if rb["phase"] == "checkpoint":
            # storm upgrade --rebalance: the workers go once the topology's checkpoint committed.
            running = assignments.get(name)
            self.upgrader.layout_checkpoint(topo, self._beats(name, topo, running) if running else {}, now)
            return
        if rb["phase"] == "wait":
            if now < rb["at"]:
                return
            # Stop every old worker before any new one starts: task ids and ports change.
            a = assignments.get(name)
            if a is not None:
                a = {**a, "workers": [], "endpoints": [], "active": False, "time": now}
                self.state.put_obj(paths.assignment(name), a)
                assignments[name] = a
            rb["phase"] = "stopping"
            rb["since"] = now
            self.state.put_obj(paths.topology(name), topo)
            return
        if rb["phase"] == "stopping":
            beats = self.state.children(paths.beats(name))
            limit = float(self.conf["storm.worker.shutdown.timeout.secs"]) + 2 * float(
                self.conf["supervisor.monitor.frequency.secs"]) + 5
            if beats and now - float(rb["since"]) < limit:
                return
            topo["overrides"], topo["parallelism"], topo["fingerprint"] = rb["overrides"], rb["parallelism"], \
                rb["fingerprint"]
            topo["workers"], topo["components"], topo["tasks"] = rb["workers"], rb["components"], rb["tasks"]
            topo["shape"] = rb.get("shape")
            topo["status"] = ACTIVE if rb.get("was_active") else INACTIVE
            del topo["rebalance"]
            self.upgrader.finish_layout(topo, rb)  # storm upgrade --rebalance: the new code
            log.info("topology %s: rebalanced to %d worker(s)", name, topo["workers"])
            self.state.put_obj(paths.topology(name), topo)
            self._schedule(topo, None, sups, assignments)

    # -- requests -------------------------------------------------------------------
    def op_ping(self, msg: Mapping[str, Any]) -> PingAnswer:
        return {"version": __version__, "state": self.state.describe(), "pid": os.getpid(), "id": self.id,
                "leading": self.election.leading(), "leader": self.election.leader()}

    def op_submit(self, msg: Mapping[str, Any]) -> SubmitAnswer:
        name, sha, archive, target = msg.get("name"), msg.get("sha256"), msg.get("archive"), msg.get("target")
        overrides = dict(msg.get("overrides") or {})
        if not isinstance(name, str) or not isinstance(sha, str) or not isinstance(archive, bytes) \
                or not isinstance(target, str):
            raise RequestError("submit needs name, target, archive and sha256")
        if not _NAME_RE.match(name):
            raise RequestError(f"topology name {name!r} is invalid: use letters, digits, '_', '-' or '.'")
        existing = self.state.get_obj(paths.topology(name))
        if isinstance(existing, dict):
            raise RequestError(
                f"a topology named '{name}' is already running ({existing.get('status')}); kill it "
                "first or submit under another --name"
            )
        code_dir = unpack_code(archive, sha, self.dir / "code" / sha)
        info = self.inspect(code_dir, target, overrides, {})
        if info["name"] != name:
            raise RequestError(f"the code builds a topology named '{info['name']}', not '{name}'")
        self.state.put_blob(paths.code(sha), archive)
        topo: TopologyRecord = {
            "name": name, "id": f"{name}-{time.time_ns():x}", "sha": sha, "target": target,
            "overrides": overrides, "parallelism": {}, "fingerprint": info["fingerprint"],
            "workers": info["workers"], "tasks": info["tasks"], "components": info["components"],
            "message_timeout": info["message_timeout"], "status": ACTIVE, "submitted": time.time(),
            "version": 0, "note": "", "shape": info.get("shape"), "code_version": 1,
        }
        self.state.put_obj(paths.topology(name), topo)
        scheduled = self._schedule(topo, None, self.supervisors(), self._assignments())
        log.info("topology %s submitted (%s, %d worker(s))", name, sha[:12], topo["workers"])
        return {"name": name, "id": topo["id"], "workers": topo["workers"], "tasks": topo["tasks"],
                "scheduled": scheduled, "note": topo.get("note", ""), "state": self.state.describe()}

    def op_list(self, msg: Mapping[str, Any]) -> ListAnswer:
        now = time.time()
        out: list[TopologyRow] = []
        assignments = self._assignments()
        for name, topo in self._topologies().items():
            a = assignments.get(name)
            beats = self._beats(name, topo, a) if a else {}
            running = sum(1 for b in beats.values() if b.get("status") == "running")
            errors = [b for b in beats.values() if b.get("fatal")]
            out.append({
                "name": name, "id": topo["id"], "status": topo["status"], "workers": topo["workers"],
                "assigned": len(a["workers"]) if a else 0, "running": running, "tasks": topo["tasks"],
                "executors": sum(len(c["tasks"]) for c in topo["components"].values()),
                "uptime": now - float(topo["submitted"]), "note": topo.get("note") or "",
                "code_version": int(topo.get("code_version") or 1), "upgrade": progress(topo),
                "error": errors[0]["fatal"] if errors else "",
            })
        sups = self.supervisors()
        return {"topologies": sorted(out, key=lambda t: t["name"]), "state": self.state.describe(),
                "supervisors": sum(1 for s in sups.values() if s.get("alive")), "where": self.where(sups)}

    def _beats(self, name: str, topo: TopologyRecord, a: Assignment) -> dict[int, WorkerBeat]:
        """Heartbeats of the workers of the current assignment."""
        out: dict[int, WorkerBeat] = {}
        beats: dict[str, WorkerBeat] = only_maps(self.state.children_objs(paths.beats(name)))
        for key, b in beats.items():
            if b.get("topology_id") == topo["id"] and b.get("version") == a.get("version"):
                out[int(key)] = b
        return out

    def op_kill(self, msg: Mapping[str, Any]) -> KillAnswer:
        topo = self._topology(msg.get("name"))
        wait = msg.get("wait")
        wait = float(topo.get("message_timeout") or 30) if wait is None else float(wait)
        if wait < 0:
            raise RequestError("the wait must be >= 0 seconds")
        topo["status"] = KILLED
        topo["kill_at"] = time.time() + wait
        self.state.put_obj(paths.topology(topo["name"]), topo)
        self._set_active(topo["name"], False)
        log.info("topology %s killed; workers stop in %gs", topo["name"], wait)
        return {"name": topo["name"], "wait": wait}

    def _activation(self, msg: Mapping[str, Any], active: bool) -> StatusAnswer:
        topo = self._topology(msg.get("name"))
        if topo["status"] in (KILLED, REBALANCING):
            raise RequestError(f"topology '{topo['name']}' is {topo['status']}; it cannot be "
                               f"{'activated' if active else 'deactivated'} now")
        topo["status"] = ACTIVE if active else INACTIVE
        self.state.put_obj(paths.topology(topo["name"]), topo)
        self._set_active(topo["name"], active)
        return {"name": topo["name"], "status": topo["status"]}

    def op_activate(self, msg: Mapping[str, Any]) -> StatusAnswer:
        return self._activation(msg, True)

    def op_deactivate(self, msg: Mapping[str, Any]) -> StatusAnswer:
        return self._activation(msg, False)

    def op_rebalance(self, msg: Mapping[str, Any]) -> RebalanceAnswer:
        topo = self._topology(msg.get("name"))
        if topo["status"] in (KILLED, REBALANCING):
            raise RequestError(f"topology '{topo['name']}' is {topo['status']}; it cannot be rebalanced now")
        if topo.get("upgrade"):
            raise RequestError(f"topology '{topo['name']}' is being upgraded ({progress(topo)}); rebalance it "
                               "once the upgrade is over (storm list shows it)")
        workers = msg.get("workers")
        parallelism = dict(topo.get("parallelism") or {})
        for comp, par in (msg.get("parallelism") or {}).items():
            parallelism[str(comp)] = par
        overrides = dict(topo["overrides"])
        if workers is not None:
            if not isinstance(workers, int) or workers < 1:
                raise RequestError(f"the number of workers must be an integer >= 1, got {workers!r}")
            overrides["topology.workers"] = workers
        info = self.inspect(self._code_dir(topo["sha"]), topo["target"], overrides, parallelism)
        wait = msg.get("wait")
        wait = float(topo.get("message_timeout") or 30) if wait is None else float(wait)
        topo["rebalance"] = {
            "phase": "wait", "at": time.time() + wait, "was_active": topo["status"] == ACTIVE,
            "overrides": overrides, "parallelism": parallelism, "fingerprint": info["fingerprint"],
            "workers": info["workers"], "components": info["components"], "tasks": info["tasks"],
            "shape": info.get("shape"),
        }
        topo["status"] = REBALANCING
        self.state.put_obj(paths.topology(topo["name"]), topo)
        self._set_active(topo["name"], False)
        log.info("topology %s: rebalancing to %d worker(s), parallelism %s in %gs", topo["name"],
                 info["workers"], parallelism, wait)
        return {"name": topo["name"], "wait": wait, "workers": info["workers"],
                "parallelism": {c: v["par"] for c, v in info["components"].items() if not v["system"]}}

    def op_set_log_level(self, msg: Mapping[str, Any]) -> LogLevelsAnswer:
        """Set (with an optional timeout) or reset loggers' levels in every
        worker of a topology; supervisors pass the map on, no worker restarts."""
        topo = self._topology(msg.get("name"))
        levels: dict[str, LogLevel] = dict(topo.get("log_levels") or {})
        now = time.time()
        try:
            for name in msg.get("reset") or []:
                levels.pop(check_logger(str(name)), None)
            for item in msg.get("set") or []:
                logger, level, secs = parse_setting(str(item))
                levels[logger] = {"level": level, "until": now + secs if secs else 0.0}
        except StormError as exc:
            raise RequestError(str(exc)) from None
        self._put_log_levels(topo, levels)
        log.info("topology %s: log levels %s", topo["name"], current(levels) or "reset")
        return {"name": topo["name"], "levels": levels}

    def _put_log_levels(self, topo: TopologyRecord, levels: dict[str, LogLevel]) -> None:
        topo["log_levels"] = levels
        self.state.put_obj(paths.topology(topo["name"]), topo)
        a = self._assignment(topo["name"])
        if a is not None:
            a["log_levels"] = current(levels)
            self.state.put_obj(paths.assignment(topo["name"]), a)

    def op_upgrade(self, msg: Mapping[str, Any]) -> UpgradeAnswer:
        """Start a rolling upgrade of a running topology to new code (or, with
        dry_run, only say what it would do); RollingUpgrade takes it from there."""
        return self.upgrader.start(self._topology(msg.get("name")), msg)

    def op_supervisors(self, msg: Mapping[str, Any]) -> SupervisorsAnswer:
        sups = self.supervisors()
        used: dict[str, int] = {}
        for a in self._assignments().values():
            for w in a.get("workers") or []:
                used[w["supervisor"]] = used.get(w["supervisor"], 0) + 1
        return {"supervisors": [{**s, "id": sid, "used": used.get(sid, 0)} for sid, s in sorted(sups.items())]}

    def op_info(self, msg: Mapping[str, Any]) -> InfoAnswer:
        topo = self._topology(msg.get("name"))
        a = self._assignment(topo["name"])
        beats = self._beats(topo["name"], topo, a) if a else {}
        history = self._record_metrics(topo["name"], topo, a, beats)
        sups = self.supervisors()
        errors: list[ErrorRecord] = []
        for b in beats.values():
            errors.extend(b.get("errors") or [])
        slots = a["workers"] if a else []
        n = len(slots)
        task_worker = {t: (t - 1) % n for t in range(1, int(topo["tasks"]) + 1)} if n else {}
        workers: list[WorkerRow] = []
        for w in slots:
            beat = beats.get(int(w["index"]))
            got: Any = beat if beat is not None else {}
            tasks = sorted(t for t, i in task_worker.items() if i == w["index"])
            comps = sorted({c for c, v in topo["components"].items() if set(v["tasks"]) & set(tasks)})
            sup = sups.get(w["supervisor"])
            workers.append({**w, "tasks": tasks, "components": comps, "logs": sup.get("logs") if sup else None,
                            "supervisor_alive": bool(sup and sup.get("alive")), "status": got.get("status", "unknown"),
                            "pid": got.get("pid"), "restarts": got.get("restarts", 0), "cpu": got.get("cpu"),
                            "rss": got.get("rss"), "fatal": got.get("fatal", ""), "uptime": got.get("uptime")})
        errors.sort(key=lambda e: e.get("time", 0))
        return {"topology": topo, "assignment": a or {}, "workers": workers, "errors": errors[-20:],
                "components": component_stats(topo["components"], history, time.monotonic()),
                "error_count": sum(int(b.get("error_count") or 0) for b in beats.values())}

    # -- metrics ------------------------------------------------------------------
    def _start_exporter(self) -> None:
        port = self.conf.get("storm.prometheus.port")
        if port is None:
            return
        from .._prometheus import PrometheusExporter

        host = str(self.conf.get("storm.prometheus.host") or "127.0.0.1")
        try:
            self.exporter = PrometheusExporter(lambda: list(self.exported.values()), int(port), host,
                                               extra=self._kafka_families).start()
        except OSError as exc:
            raise StormError(f"nimbus cannot serve Prometheus metrics on {host}:{port} ({exc}); "
                             "set storm.prometheus.port") from exc
        log.info("prometheus metrics on %s", self.exporter.url)

    def _record_metrics(self, name: str, topo: TopologyRecord, a: Assignment | None,
                        beats: Mapping[int, WorkerBeat]) -> MetricsHistory:
        """Add the workers' new reports to the topology's history (a new
        assignment version renumbers tasks and restarts every worker: a new history)."""
        key = (topo.get("id"), a.get("version") if a else None)
        entry = self.histories.get(name)
        if entry is None or entry[0] != key:
            entry = self.histories[name] = (key, MetricsHistory(), {})
        _, history, seen = entry
        now = time.monotonic()
        for index, b in beats.items():
            stamp = b.get("time")
            if stamp is None or seen.get(index) == stamp:
                continue
            seen[index] = stamp
            metrics = b.get("metrics") or {}
            if metrics:
                history.record(metrics, now)
        return history

    def topology_stats(self, name: str) -> TopologyStats:
        topo = self._topology(name)
        a = self._assignment(topo["name"])
        beats = self._beats(topo["name"], topo, a) if a else {}
        history = self._record_metrics(topo["name"], topo, a, beats)
        workers = []
        errors: list[ErrorRecord] = []
        error_count = 0
        for w in a["workers"] if a else []:
            b: Any = beats.get(int(w["index"]), {})
            workers.append(WorkerStats(int(w["index"]), pid=int(b.get("pid") or 0), host=str(w.get("host") or ""),
                                       port=w.get("port"), uptime=b.get("uptime"),
                                       restarts=int(b.get("restarts") or 0), cpu=b.get("cpu"), rss=b.get("rss"),
                                       backpressure=bool(b.get("backpressure")), status=str(b.get("status") or "unknown"),
                                       ready=b.get("status") == "running"))
            errors.extend(b.get("errors") or [])
            error_count += int(b.get("error_count") or 0)
        errors.sort(key=lambda e: e.get("time", 0))
        uptime = time.time() - float(topo.get("submitted") or time.time())
        return aggregate(topo["name"], _component_tasks(topo["components"]), history, time.monotonic(),
                         workers=workers, errors=errors[-20:], error_count=error_count,
                         uptime=max(uptime, 0.0), status=str(topo.get("status") or ""))

    def op_trident_states(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """Where a topology's persisted Trident states live (backend
        and location, built from its stored code in a subprocess), for
        `storm query NAME`."""
        from ._states import describe_in_subprocess

        topo = self._topology(msg.get("name"))
        try:
            states = describe_in_subprocess(self._code_dir(topo["sha"]), topo["target"], topo["overrides"],
                                            topo.get("parallelism") or {}, INSPECT_TIMEOUT)
        except StormError as exc:
            raise RequestError(str(exc)) from None
        return {"name": topo["name"], "states": states}

    def op_trace(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """The sampled tuple trees of one topology (topology.debug.sample), built
        from the events in its workers' beats, most recent first (storm trace).
        Read-only, but it answers with tuple values: an admin op under CURVE."""
        from .._trace import build_trees

        topo = self._topology(msg.get("name"))
        a = self._assignment(topo["name"])
        beats = self._beats(topo["name"], topo, a) if a else {}
        events: list[Any] = []
        sample = 0.0
        problems: set[str] = set()
        for b in beats.values():
            sample = max(sample, float(b.get("trace_sample") or 0.0))
            if b.get("trace_error"):
                problems.add(str(b["trace_error"]))
            events.extend(b.get("trace") or [])
        limit = msg.get("limit")
        trees = build_trees(events, int(limit) if isinstance(limit, int) and limit > 0 else None)
        reported = any(b.get("metrics") for b in beats.values())
        return {"name": topo["name"], "sample": sample if reported else None,
                "error": "; ".join(sorted(problems)) or None,
                "workers": len(beats), "trees": trees}

    def op_stats(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """Every figure of one topology over the metrics windows (storm stats, storm monitor),
        and the consumer-group lag of its Kafka spouts (read from the brokers)."""
        name = str(msg.get("name"))
        out = self.topology_stats(name).to_json()
        sources = _kafka_sources(self._topology(name))
        if sources:
            rows = self._lag_reader().lag(name, sources)
            out["kafka"] = {"partitions": rows} if isinstance(rows, list) else {"error": rows}
        return out

    def _lag_reader(self) -> Any:
        from ..kafka._lag import LagReader

        if getattr(self, "lag_reader", None) is None:
            self.lag_reader = LagReader()
        return self.lag_reader

    def _kafka_families(self) -> list[Any]:
        """The Kafka lag families of the exported topologies (at scrape time)."""
        sources = {n: _kafka_sources(t) for n, t in getattr(self, "exported_topologies", {}).items()}
        sources = {n: src for n, src in sources.items() if src}
        if not sources:
            return []
        from ..kafka._lag import lag_families

        reader = self._lag_reader()
        rows = [(n, got) for n, src in sources.items() if isinstance(got := reader.lag(n, src), list)]
        return lag_families(rows)


def _kafka_sources(topo: TopologyRecord) -> dict[str, Any]:
    """{component: Kafka source} of a stored topology's Kafka spouts (storm.daemon._code)."""
    return {c: v["kafka"] for c, v in (topo.get("components") or {}).items()
            if isinstance(v, dict) and v.get("kafka")}
