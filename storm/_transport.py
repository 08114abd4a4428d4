"""ZeroMQ transport of one worker: a PULL socket it binds for tuple batches, a PUSH
socket per peer worker (high-water mark = backpressure), a PULL socket for control
messages from the process that owns it, and a PUSH socket for reports back.

With CURVE keys (cluster mode with storm.security.curve) every socket is
authenticated and encrypted: the sockets it binds admit the cluster's key only
(a ZAP handler in this process logs any other peer), the sockets it connects
present that key."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import zmq

from ._serialization import MAX_FRAME_BYTES, check_control, pack, unpack

if TYPE_CHECKING:
    from ._security import CurveKeys, Guard, HandshakeLog

MAX_FRAMES_PER_POLL = 64
log = logging.getLogger("storm.worker")


def serve(sock: zmq.Socket[bytes], curve: CurveKeys | None) -> None:
    if curve is not None:
        from ._security import serve as curve_serve

        curve_serve(sock, curve)


def connect_with(sock: zmq.Socket[bytes], curve: CurveKeys | None) -> None:
    if curve is not None:
        from ._security import connect_with as curve_connect

        curve_connect(sock, curve)


def _reconnect_soon(sock: zmq.Socket[bytes]) -> None:
    """Retry a connection after 10 ms, backing off to 1 s, not ZeroMQ's 100 ms:
    workers start together, and one that connects before its peer has bound
    would otherwise fill its queue to that peer and hold every spout back
    (backpressure) for the first 100 ms of the topology."""
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)


class ZmqTransport:
    def __init__(self, index: int, data_endpoints: list[str], control_endpoint: str,
                 report_endpoint: str, hwm: int, peer_controls: list[str] | None = None,
                 max_frame_bytes: int = MAX_FRAME_BYTES, curve: CurveKeys | None = None) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.index = index
        self.dropped_controls = 0
        self.guard: Guard | None = None
        self.handshakes: HandshakeLog | None = None
        if curve is not None:
            from ._security import HandshakeLog, acquire_guard

            # The ZAP handler must run before a CURVE server socket binds.
            self.guard = acquire_guard(curve, self.ctx)
            self.handshakes = HandshakeLog()
        self.data = self.ctx.socket(zmq.PULL)
        serve(self.data, curve)
        self.data.setsockopt(zmq.RCVHWM, hwm)
        self.data.setsockopt(zmq.LINGER, 0)
        # A peer that sends a bigger frame is disconnected by ZeroMQ before the
        # frame is buffered, so a hostile sender cannot make us allocate it.
        self.data.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
        self.data.bind(data_endpoints[index])
        self.control = self.ctx.socket(zmq.PULL)
        serve(self.control, curve)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, 65536)  # control messages are a few bytes
        self.control.bind(control_endpoint)
        self.peers: dict[int, zmq.Socket[bytes]] = {}
        for w, ep in enumerate(data_endpoints):
            if w == index:
                continue
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.SNDHWM, hwm)
            s.setsockopt(zmq.LINGER, 2000)
            _reconnect_soon(s)
            connect_with(s, curve)
            s.connect(ep)
            self.peers[w] = s
        self.reports = self.ctx.socket(zmq.PUSH)
        self.reports.setsockopt(zmq.LINGER, 2000)
        self.reports.setsockopt(zmq.SNDHWM, 1000)
        connect_with(self.reports, curve)
        self.reports.connect(report_endpoint)
        # Backpressure signals go straight to every other worker's control socket.
        self.peer_controls: list[zmq.Socket[bytes]] = []
        for w, ep in enumerate(peer_controls or []):
            if w == index:
                continue
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 1000)
            _reconnect_soon(s)
            connect_with(s, curve)
            s.connect(ep)
            self.peer_controls.append(s)
        if self.handshakes is not None:
            self.handshakes.watch(self.data, f"worker {index} data socket")
            self.handshakes.watch(self.control, f"worker {index} control socket")
            self.handshakes.start()
        self.poller_all = zmq.Poller()
        self.poller_all.register(self.data, zmq.POLLIN)
        self.poller_all.register(self.control, zmq.POLLIN)
        self.poller_ctl = zmq.Poller()
        self.poller_ctl.register(self.control, zmq.POLLIN)

    def send(self, worker: int, data: bytes) -> bool:
        sock = self.peers[worker]
        # Ask first: at the high-water mark a NOBLOCK send raises zmq.Again, and
        # building that exception on every retry costs more than the question.
        if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLOUT:
            return False
        try:
            sock.send(data, zmq.NOBLOCK, copy=len(data) < 65536)
            return True
        except zmq.Again:
            return False

    def poll(self, timeout_ms: int, want_data: bool) -> tuple[list[bytes], list[Any]]:
        poller = self.poller_all if want_data else self.poller_ctl
        events = dict(poller.poll(timeout_ms))
        frames: list[bytes] = []
        controls: list[Any] = []
        if self.control in events:
            while True:
                try:
                    raw = self.control.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = unpack(raw)
                except Exception:
                    msg = None
                problem = check_control(msg)
                if problem is not None:
                    # Only well-formed messages reach the loop; count the rest,
                    # log a few (a flood must not flood the log).
                    self.dropped_controls += 1
                    if self.dropped_controls <= 10 or self.dropped_controls % 1000 == 0:
                        log.warning("worker %d dropped control message #%d (%d bytes): %s",
                                    self.index, self.dropped_controls, len(raw), problem)
                    continue
                controls.append(msg)
        if want_data and self.data in events:
            recv = self.data.recv
            for _ in range(MAX_FRAMES_PER_POLL):
                try:
                    frames.append(recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
        return frames, controls

    def report(self, msg: Any) -> None:
        try:
            self.reports.send(pack(msg), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the owner is not reading; metrics are best effort

    def broadcast(self, msg: Any) -> None:
        """Send a control message to every other worker (best effort)."""
        data = pack(msg)
        for s in self.peer_controls:
            try:
                s.send(data, zmq.NOBLOCK)
            except zmq.Again:
                pass

    def close(self) -> None:
        for s in [self.data, self.control, *self.peers.values(), *self.peer_controls]:
            s.close(linger=0)
        self.reports.close(linger=1000)
        if self.handshakes is not None:
            self.handshakes.stop()
        if self.guard is not None:
            from ._security import release_guard

            release_guard(self.guard)
