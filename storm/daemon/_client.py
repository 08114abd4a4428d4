"""Talking to nimbus: one msgpack request, one msgpack answer over ZeroMQ
(REQ to nimbus's ROUTER). Owns finding nimbus (`nimbus.seeds`, `nimbus.port`)
and turning silence or a refusal into one clear error; knows nothing of what
the requests mean."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import msgpack
import zmq

from .._errors import StormError

# Supervisor log servers and nimbus answer the same framing.
DEFAULT_TIMEOUT = 30.0


class NimbusError(StormError):
    """Nimbus (or a supervisor's log server) refused a request; the message says why."""


class NimbusUnreachable(NimbusError):
    """No nimbus answers at any seed."""


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


def request(endpoint: str, msg: Mapping[str, Any], timeout: float, what: str) -> dict[str, Any]:
    """Send `msg` to a ROUTER at `endpoint` and return its answer; raise
    NimbusUnreachable on silence and NimbusError when it answers ok=false."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(pack(dict(msg)))
        if not sock.poll(int(timeout * 1000)):
            raise NimbusUnreachable(f"{what} at {endpoint} did not answer within {timeout:g}s")
        reply = unpack(sock.recv())
    finally:
        sock.close(0)
    if not isinstance(reply, dict):
        raise NimbusError(f"{what} at {endpoint} sent an answer that is not a map")
    if not reply.get("ok"):
        raise NimbusError(str(reply.get("error") or f"{what} refused the request"))
    return reply


class NimbusClient:
    """Requests to the first nimbus that accepts a connection among the seeds::

        client = NimbusClient.from_conf(conf)
        for topo in client.call("list")["topologies"]: ...
    """

    def __init__(self, seeds: list[str], port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not seeds:
            raise NimbusUnreachable("nimbus.seeds is empty; name the host nimbus runs on, e.g. -c nimbus.seeds=[127.0.0.1]")
        self.addresses = [split_address(s, port) for s in seeds]
        self.timeout = timeout
        self._endpoint: str | None = None

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> NimbusClient:
        seeds = conf.get("nimbus.seeds") or []
        if isinstance(seeds, str):
            seeds = [seeds]
        return cls([str(s) for s in seeds], int(conf["nimbus.port"]),
                   float(conf.get("nimbus.client.timeout.secs") or DEFAULT_TIMEOUT))

    def endpoint(self) -> str:
        if self._endpoint:
            return self._endpoint
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
        return request(self.endpoint(), {"op": op, **args}, self.timeout, "nimbus")
