"""Talking to nimbus: one msgpack request, one msgpack answer over ZeroMQ
(REQ to nimbus's ROUTER). Owns finding nimbus (`nimbus.seeds`, `nimbus.port`)
and turning silence or a refusal into one clear error. `call` sends any
request; the typed methods name nimbus's requests and the answers' records
(storm.daemon._records), the same maps on the wire.

Under CURVE (storm.security.curve) the request goes out with the client's key
pair; a refused key or a failed handshake ends the request at once with one
clear error, instead of a silent wait for the timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any, cast

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from .. import _security
from .._errors import StormError
from .._security import CurveKeys
from ._records import (
    InfoAnswer,
    KillAnswer,
    ListAnswer,
    LogLevelsAnswer,
    NimbusesAnswer,
    PingAnswer,
    RebalanceAnswer,
    StatusAnswer,
    SubmitAnswer,
    SupervisorRow,
    UpgradeAnswer,
)

# Supervisor log servers and nimbus answer the same framing.
DEFAULT_TIMEOUT = 30.0


class NimbusError(StormError):
    """Nimbus (or a supervisor's log server) refused a request; the message says why."""


class NimbusUnreachable(NimbusError):
    """No nimbus answers at any seed."""


class NotLeader(NimbusError):
    """A follower nimbus refused a change; `leader` is "host:port" of the
    leader it knows (None during an election)."""

    def __init__(self, message: str, leader: str | None) -> None:
        super().__init__(message)
        self.leader = leader


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def split_address(entry: str, default_port: int) -> tuple[str, int]:
    """'host' or 'host:port' -> (host, port)."""
    host, sep, port = str(entry).rpartition(":")
    if sep and port.isdigit() and host:
        return host.strip("[]"), int(port)
    return str(entry), default_port


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port opens, else why not (fast
    'connection refused' instead of waiting out a request timeout)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _handshake_error(event: Mapping[str, Any], endpoint: str, what: str, curve: CurveKeys | None) -> str | None:
    """The error a failed handshake means, or None for one worth another try."""
    kind, value = event["event"], int(event["value"])
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        key = _security.z85(curve.public) if curve is not None else "none"
        return (f"{what} at {endpoint} refused this client's key ({key}, status {value}): it is not an "
                f"authorized key of the cluster; add it with `storm keys add NAME` where the cluster's keys "
                f"are made, copy authorized/ to the cluster's hosts, or use an authorized key "
                f"(storm.security.client.key)")
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            if curve is None:
                return (f"{what} at {endpoint} requires CURVE and this client does not use it: set "
                        "storm.security.curve=true (and storm.security.keys.dir)")
            return (f"this client uses CURVE (storm.security.curve) but {what} at {endpoint} does not; "
                    "turn it off here or on for the cluster")
        return f"the handshake with {what} at {endpoint} failed (protocol error 0x{value:x})"
    if curve is not None:
        return (f"the CURVE handshake with {what} at {endpoint} failed: the cluster uses another key than "
                f"{curve.dir}/cluster.key (storm.security.keys.dir), or it is not a storm daemon")
    return None


def request(endpoint: str, msg: Mapping[str, Any], timeout: float, what: str,
            curve: CurveKeys | None = None) -> dict[str, Any]:
    """Send `msg` to a ROUTER at `endpoint` and return its answer; raise
    NimbusUnreachable on silence and NimbusError when it answers ok=false,
    refuses our key or fails the handshake."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    _security.connect_with(sock, curve)
    mon = sock.get_monitor_socket(_HANDSHAKE_EVENTS)
    try:
        sock.connect(endpoint)
        sock.send(pack(dict(msg)))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        failures = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NimbusUnreachable(f"{what} at {endpoint} did not answer within {timeout:g}s")
            events = dict(poller.poll(max(1, int(left * 1000))))
            if sock in events:
                reply = unpack(sock.recv())
                break
            if mon in events:
                event = recv_monitor_message(mon)
                error = _handshake_error(event, endpoint, what, curve)
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    failures += 1  # twice in a row: not a passing hiccup
                    if failures < 2:
                        continue
                if error is not None:
                    raise NimbusError(error)
    finally:
        sock.disable_monitor()
        mon.close(0)
        sock.close(0)
    if not isinstance(reply, dict):
        raise NimbusError(f"{what} at {endpoint} sent an answer that is not a map")
    if not reply.get("ok"):
        error = str(reply.get("error") or f"{what} refused the request")
        if reply.get("not_leader"):
            leader = reply.get("leader")
            raise NotLeader(error, str(leader) if leader else None)
        raise NimbusError(error)
    return reply


class NimbusClient:
    """Requests to the first nimbus that accepts a connection among the seeds
    (tried in order; a cached one that stopped answering is dropped); a change
    a follower refuses goes on to the leader it names::

        client = NimbusClient.from_conf(conf)
        for topo in client.topologies()["topologies"]: ...
    """

    def __init__(self, seeds: list[str], port: int, timeout: float = DEFAULT_TIMEOUT,
                 curve: CurveKeys | None = None) -> None:
        if not seeds:
            raise NimbusUnreachable("nimbus.seeds is empty; name the host nimbus runs on, e.g. -c nimbus.seeds=[127.0.0.1]")
        self.addresses = [split_address(s, port) for s in seeds]
        self.timeout = timeout
        self.curve = curve
        self._endpoint: str | None = None

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> NimbusClient:
        seeds = conf.get("nimbus.seeds") or []
        if isinstance(seeds, str):
            seeds = [seeds]
        return cls([str(s) for s in seeds], int(conf["nimbus.port"]),
                   float(conf.get("nimbus.client.timeout.secs") or DEFAULT_TIMEOUT),
                   _security.client_keys(conf))

    def endpoint(self) -> str:
        if self._endpoint:
            host, port = split_address(self._endpoint[len("tcp://"):], 0)
            if _probe(host, port, min(self.timeout, 3.0)) is None:
                return self._endpoint
            self._endpoint = None  # that nimbus went away (a failover): look again
        reasons = []
        for host, port in self.addresses:
            why = _probe(host, port, min(self.timeout, 3.0))
            if why is None:
                self._endpoint = f"tcp://{host}:{port}"
                return self._endpoint
            reasons.append(f"{host}:{port} ({why.lower()})")
        raise NimbusUnreachable(
            f"nimbus is unreachable at {', '.join(reasons)}; start it with `storm nimbus` "
            "(or `storm cluster up`), or point nimbus.seeds / nimbus.port at it"
        )

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        endpoint = self.endpoint()
        try:
            return request(endpoint, {"op": op, **args}, self.timeout, "nimbus", self.curve)
        except NotLeader as exc:
            if not exc.leader:
                raise
            # Once only: a leader that itself says "not leader" lost an election meanwhile.
            return request(f"tcp://{exc.leader}", {"op": op, **args}, self.timeout, "the leading nimbus",
                           self.curve)

    # -- nimbus's requests, typed ----------------------------------------------------
    def ping(self) -> PingAnswer:
        return cast(PingAnswer, self.call("ping"))

    def topologies(self) -> ListAnswer:
        """`list`: every topology, and where nimbus keeps the cluster state."""
        return cast(ListAnswer, self.call("list"))

    def info(self, name: str) -> InfoAnswer:
        return cast(InfoAnswer, self.call("info", name=name))

    def stats(self, name: str) -> dict[str, Any]:
        """Every figure of one topology (storm._metrics.TopologyStats.to_json)."""
        return self.call("stats", name=name)

    def supervisors(self) -> list[SupervisorRow]:
        return cast(list[SupervisorRow], self.call("supervisors")["supervisors"])

    def nimbuses(self) -> NimbusesAnswer:
        return cast(NimbusesAnswer, self.call("nimbuses"))

    def submit(self, name: str, target: str, archive: bytes, sha256: str,
               overrides: Mapping[str, Any]) -> SubmitAnswer:
        return cast(SubmitAnswer, self.call("submit", name=name, target=target, archive=archive, sha256=sha256,
                                            overrides=dict(overrides)))

    def kill(self, name: str, wait: float | None = None) -> KillAnswer:
        return cast(KillAnswer, self.call("kill", name=name, wait=wait))

    def activate(self, name: str) -> StatusAnswer:
        return cast(StatusAnswer, self.call("activate", name=name))

    def deactivate(self, name: str) -> StatusAnswer:
        return cast(StatusAnswer, self.call("deactivate", name=name))

    def rebalance(self, name: str, wait: float | None = None, workers: int | None = None,
                  parallelism: Mapping[str, int] | None = None) -> RebalanceAnswer:
        return cast(RebalanceAnswer, self.call("rebalance", name=name, wait=wait, workers=workers,
                                               parallelism=dict(parallelism or {})))

    def upgrade(self, name: str, target: str, archive: bytes, sha256: str, overrides: Mapping[str, Any],
                dry_run: bool = False, rebalance: bool = False) -> UpgradeAnswer:
        return cast(UpgradeAnswer, self.call("upgrade", name=name, target=target, archive=archive, sha256=sha256,
                                             overrides=dict(overrides), dry_run=dry_run, rebalance=rebalance))

    def set_log_level(self, name: str, settings: list[str], reset: list[str]) -> LogLevelsAnswer:
        return cast(LogLevelsAnswer, self.call("set_log_level", name=name, set=settings, reset=reset))
