"""CURVE security of cluster mode: the cluster's key files, the ZAP handler
that admits peers by public key (and logs the ones it refuses), and the socket
options of both sides. Off unless `storm.security.curve` is true; local mode
never uses it.

Key layout (`storm keys generate --dir DIR`, DIR defaults to
`storm.security.keys.dir`)::

    DIR/cluster.key, cluster.key_secret   the cluster's pair: nimbus, supervisors
                                          and workers serve and connect with it
    DIR/client.key,  client.key_secret    the CLI's pair (an admin key)
    DIR/authorized/<name>.key             client public keys nimbus and the log
                                          servers accept
    DIR/admin/<name>.key                  client public keys that may change
                                          state (submit, kill, rebalance,
                                          activate, deactivate)

Sockets between the daemons and workers (worker data and control, worker
reports) admit the cluster key only (ZAP domain "storm-cluster"); nimbus and
the supervisors' log servers admit the keys in authorized/ (domain
"storm-clients"). Nothing here reads or writes a message."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.base import Authenticator
from zmq.auth.thread import ThreadAuthenticator

from ._errors import ConfigError, StormError

log = logging.getLogger("storm.security")

CLUSTER = "cluster"
CLIENT = "client"
AUTHORIZED = "authorized"
ADMIN = "admin"
DOMAIN_CLUSTER = "storm-cluster"
DOMAIN_CLIENTS = "storm-clients"
#: Requests to nimbus that change the cluster: only admin keys may send them.
# Ops that change the cluster, and trident_states, whose reply holds the state
# backends' URLs / DSNs (with any password): only admin client keys may call them.
# trident_states answers with backend URLs/DSNs (passwords), trace with tuple values: admin only.
ADMIN_OPS = frozenset({"submit", "kill", "rebalance", "activate", "deactivate", "trident_states", "trace",
                       "set_log_level", "upgrade"})
KEYS_HINT = "run `storm keys generate` and set storm.security.keys.dir"


def enabled(conf: Mapping[str, Any]) -> bool:
    return bool(conf.get("storm.security.curve"))


def keys_dir(conf: Mapping[str, Any]) -> Path:
    return Path(str(conf.get("storm.security.keys.dir") or "~/.storm/keys")).expanduser()


def z85(key: bytes) -> str:
    return key.decode("ascii") if isinstance(key, bytes) else str(key)


def _load(path: Path, secret: bool, what: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"CURVE is on (storm.security.curve) but {what} {path} does not exist; {KEYS_HINT}")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    if secret and not secret_key:
        raise ConfigError(f"{what} {path} holds no secret key (name the .key_secret file)")
    return public, secret_key


@dataclass(frozen=True)
class CurveKeys:
    """One side's keys: its own pair and the public key of the servers it talks to."""

    public: bytes
    secret: bytes
    server_public: bytes
    dir: Path

    @classmethod
    def cluster(cls, directory: str | os.PathLike[str]) -> CurveKeys:
        """The pair of daemons and workers (they serve and connect with the same one)."""
        d = Path(directory).expanduser()
        public, secret = _load(d / f"{CLUSTER}.key_secret", True, "the cluster's secret key")
        assert secret is not None
        return cls(public, secret, public, d)

    @classmethod
    def client(cls, conf: Mapping[str, Any]) -> CurveKeys:
        """The CLI's pair (storm.security.client.key) and the cluster's public key."""
        d = keys_dir(conf)
        name = Path(str(conf.get("storm.security.client.key") or f"{CLIENT}.key_secret")).expanduser()
        path = name if name.is_absolute() else d / name
        public, secret = _load(path, True, "the client's secret key")
        server, _ = _load(d / f"{CLUSTER}.key", False, "the cluster's public key")
        assert secret is not None
        return cls(public, secret, server, d)


def cluster_keys(conf: Mapping[str, Any]) -> CurveKeys | None:
    return CurveKeys.cluster(keys_dir(conf)) if enabled(conf) else None


def client_keys(conf: Mapping[str, Any]) -> CurveKeys | None:
    return CurveKeys.client(conf) if enabled(conf) else None


def serve(sock: zmq.Socket[Any], keys: CurveKeys | None, domain: str = DOMAIN_CLUSTER) -> None:
    """Make `sock` (before it binds) a CURVE server; nothing when keys is None."""
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())


def connect_with(sock: zmq.Socket[Any], keys: CurveKeys | None) -> None:
    """Make `sock` (before it connects) a CURVE client; nothing when keys is None."""
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)


def public_keys(directory: Path) -> set[str]:
    """The z85 public keys of the *.key files in `directory` (none if it is missing)."""
    if not directory.is_dir():
        return set()
    try:
        return {z85(k) for k in zmq.auth.load_certificates(str(directory))}
    except (OSError, ValueError) as exc:
        log.error("cannot read the public keys in %s: %s", directory, exc)
        return set()


class _KeyDir:
    """The public keys of a directory, read again when its files change."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._stamp: Any = None
        self._keys: set[str] = set()

    def _signature(self) -> Any:
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in self.dir.glob("*.key")))
        except OSError:
            return None

    def current(self) -> set[str]:
        stamp = self._signature()
        if stamp != self._stamp:
            self._stamp = stamp
            self._keys = public_keys(self.dir)
        return self._keys


class _Refusals:
    """Logs refused peers: the first few of each key, then one in a hundred."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def note(self, domain: str, key: str, address: str, why: str) -> None:
        with self.lock:
            n = self.counts[(domain, key)] = self.counts.get((domain, key), 0) + 1
        if n <= 5 or n % 100 == 0:
            log.warning("refused a CURVE connection from %s (%s): %s key %s (refusal #%d of this key)",
                        address or "?", domain, why, key, n)


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread; keeps the peer's address for the refusal log."""

    address = ""

    def start(self) -> None:
        # A handler stopped just before on this context (a daemon or a test in
        # the same process) frees the ZAP endpoint only once ZeroMQ's reaper has
        # closed its socket, asynchronously: a bind in between fails with
        # EADDRINUSE. Retry it for up to 2 s.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                super().start()
                return
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                Authenticator.stop(self)  # closes the socket that failed to bind
                time.sleep(0.01)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) > 3:
            self.address = msg[3].decode("utf-8", "replace")
        await super().handle_zap_message(msg)


class Guard:
    """The ZAP handler of one process's ZeroMQ context: admits the cluster key
    in the cluster domain and the authorized/ keys in the clients domain, logs
    every refusal (logger storm.security, so in the daemon's or worker's log)."""

    def __init__(self, keys: CurveKeys, ctx: zmq.Context[Any] | None = None, clients: bool = False) -> None:
        self.keys = keys
        self.cluster_key = z85(keys.public)
        self.authorized = _KeyDir(keys.dir / AUTHORIZED) if clients else None
        self.admins = _KeyDir(keys.dir / ADMIN) if clients else None
        self.refusals = _Refusals()
        self.auth = _Authenticator(ctx or zmq.Context.instance(), log=logging.getLogger("storm.security.zap"))
        self.auth.start()
        for domain in (DOMAIN_CLUSTER, DOMAIN_CLIENTS):
            self.auth.configure_curve_callback(domain, self)
        if self.authorized is not None and not self.authorized.current():
            log.warning("no client key is authorized (%s has no *.key file): no CLI can connect",
                        self.authorized.dir)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials provider hook: may the peer with this key connect?"""
        text = z85(key)
        if domain == DOMAIN_CLUSTER:
            ok = text == self.cluster_key
            why = "not the cluster's"
        else:
            ok = self.authorized is not None and text in self.authorized.current()
            why = "unknown (not in authorized/)"
        if not ok:
            self.refusals.note(domain, text, self.auth.address, why)
        return ok

    def is_admin(self, user_id: str | None) -> bool:
        return bool(user_id) and self.admins is not None and user_id in self.admins.current()

    def stop(self) -> None:
        self.auth.stop()


# One ZAP handler per context (ZeroMQ allows one): transports, nimbus and a
# supervisor in one process (tests) share it.
_guards: dict[int, tuple[Guard, int]] = {}
_guards_lock = threading.Lock()


def acquire_guard(keys: CurveKeys, ctx: zmq.Context[Any], clients: bool = False) -> Guard:
    with _guards_lock:
        entry = _guards.get(id(ctx))
        if entry is None:
            guard = Guard(keys, ctx, clients)
            _guards[id(ctx)] = (guard, 1)
            return guard
        guard, n = entry
        if guard.keys.public != keys.public:
            raise StormError("two different cluster keys in one process")
        if clients and guard.authorized is None:
            guard.authorized = _KeyDir(keys.dir / AUTHORIZED)
            guard.admins = _KeyDir(keys.dir / ADMIN)
        _guards[id(ctx)] = (guard, n + 1)
        return guard


def release_guard(guard: Guard) -> None:
    with _guards_lock:
        for key, (g, n) in list(_guards.items()):
            if g is guard:
                if n > 1:
                    _guards[key] = (g, n - 1)
                    return
                del _guards[key]
        guard.stop()


def user_id(frame: zmq.Frame) -> str | None:
    """The ZAP User-Id of the peer that sent `frame` (its z85 public key under CURVE)."""
    try:
        value = frame.get("User-Id")
    except (zmq.ZMQError, KeyError, TypeError):
        return None
    return str(value) if value else None


# -- handshake failures that never reach ZAP (a peer without CURVE at all) ----------------
_HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_PROTOCOL_ERRORS: dict[int, str] = {
    int(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH): "the peer does not use CURVE",
    int(zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC): "the peer expects another server key (not this cluster's)",
}


class HandshakeLog:
    """Watches server sockets' monitors in a thread and logs peers whose
    handshake failed before ZAP (no CURVE, a wrong server key, garbage)."""

    def __init__(self) -> None:
        self._mons: list[tuple[zmq.Socket[Any], str, bool]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: dict[str, int] = {}

    def watch(self, sock: zmq.Socket[Any], what: str, hangups: bool = True) -> None:
        """Call from the socket's own thread, before start(). `hangups`: log
        peers that break off the handshake too (a peer without CURVE often
        does); not for sockets the CLI probes with a bare TCP connect."""
        self._mons.append((sock.get_monitor_socket(_HANDSHAKE_EVENTS), what, hangups))

    def start(self) -> HandshakeLog:
        self._thread = threading.Thread(target=self._run, name="storm-handshake-log", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        poller = zmq.Poller()
        for mon, _, _ in self._mons:
            poller.register(mon, zmq.POLLIN)
        what = {mon: (w, hangups) for mon, w, hangups in self._mons}
        try:
            while not self._stop.is_set():
                for mon, _ in poller.poll(200):
                    try:
                        ev = recv_monitor_message(mon, zmq.NOBLOCK)
                    except zmq.ZMQError:
                        continue
                    name, hangups = what[mon]
                    code = int(ev["value"])
                    if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                        if not hangups:
                            continue  # e.g. the CLI's TCP probe
                        why = "the peer broke off the handshake (no CURVE, or not this cluster's key?)"
                    else:
                        why = _PROTOCOL_ERRORS.get(code, f"protocol error 0x{code:x}")
                    n = self.counts[name] = self.counts.get(name, 0) + 1
                    if n <= 5 or n % 100 == 0:
                        log.warning("refused a connection to %s (%s): %s (refusal #%d)", name,
                                    z85(ev.get("endpoint") or b""), why, n)
        finally:
            for mon, _, _ in self._mons:
                mon.close(0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


# -- keys on disk --------------------------------------------------------------------------
def _pair(directory: Path, name: str) -> tuple[Path, Path]:
    old = os.umask(0o077)
    try:
        pub, sec = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    os.chmod(sec, 0o600)
    os.chmod(pub, 0o644)
    return Path(pub), Path(sec)


def generate(directory: str | os.PathLike[str], force: bool = False) -> list[Path]:
    """Write the cluster's pair and an admin client pair (the layout above)."""
    d = Path(directory).expanduser()
    if (d / f"{CLUSTER}.key_secret").exists() and not force:
        raise StormError(f"{d} already holds cluster keys; --force replaces them (every host and client "
                         "then needs the new ones)")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    for sub in (AUTHORIZED, ADMIN):
        (d / sub).mkdir(exist_ok=True)
        if force:
            for old in (d / sub).glob("*.key"):
                old.unlink()
    written = [*_pair(d, CLUSTER), *_pair(d, CLIENT)]
    for sub in (AUTHORIZED, ADMIN):
        shutil.copyfile(d / f"{CLIENT}.key", d / sub / f"{CLIENT}.key")
        written.append(d / sub / f"{CLIENT}.key")
    return written


def add_client(directory: str | os.PathLike[str], name: str, admin: bool = False) -> list[Path]:
    """A new client pair `name`, authorized to connect (and to change state with admin)."""
    d = Path(directory).expanduser()
    if not name or not name.replace("-", "").replace("_", "").isalnum() or name in (CLUSTER,):
        raise StormError(f"a client key name is letters, digits, '-' or '_' (not '{CLUSTER}'), got {name!r}")
    if not (d / f"{CLUSTER}.key").exists():
        raise StormError(f"{d} holds no cluster keys; run `storm keys generate --dir {d}` first")
    if (d / f"{name}.key_secret").exists():
        raise StormError(f"{d / name}.key_secret exists already; pick another name")
    written = list(_pair(d, name))
    for sub in (AUTHORIZED, *((ADMIN,) if admin else ())):
        (d / sub).mkdir(exist_ok=True)
        shutil.copyfile(d / f"{name}.key", d / sub / f"{name}.key")
        written.append(d / sub / f"{name}.key")
    return written


# -- binding beyond loopback ---------------------------------------------------------------
def is_loopback(host: str) -> bool:
    host = str(host).strip("[]")
    if host in ("", "*"):
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            addr = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    return addr.is_loopback


def check_bind(conf: Mapping[str, Any], host: str, what: str, key: str, insecure: bool) -> None:
    """Refuse to serve `host` beyond this machine without CURVE, unless insecure."""
    if enabled(conf) or insecure or is_loopback(host):
        return
    raise StormError(
        f"{what} would listen on {host} ({key}), reachable from other hosts, with no authentication: "
        "turn CURVE on (`storm keys generate`, then -c storm.security.curve=true on every daemon and "
        "client), or start it with --insecure on a network you trust"
    )

