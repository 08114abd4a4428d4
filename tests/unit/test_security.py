"""CURVE keys and checks (storm._security), in one process: `storm keys
generate` / `storm keys add` and their layout, the security config keys, the
bind check, and real CURVE sockets on 127.0.0.1 (a worker transport that admits
the cluster key only, a request that fails at once with a refused key)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from typer.testing import CliRunner

from storm import ConfigError, StormError
from storm._config import defaults, merge, parse_overrides, validate
from storm._security import (
    ADMIN,
    AUTHORIZED,
    DOMAIN_CLIENTS,
    CurveKeys,
    acquire_guard,
    add_client,
    check_bind,
    client_keys,
    cluster_keys,
    generate,
    is_loopback,
    public_keys,
    release_guard,
    serve,
    z85,
)
from storm._transport import ZmqTransport
from storm.cli._app import app
from storm.daemon._client import NimbusError, request
from storm.daemon._conf import topology_overrides

pytestmark = pytest.mark.timeout(30)


def test_generate_writes_the_documented_layout(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    generate(d)
    for name in ("cluster.key", "cluster.key_secret", "client.key", "client.key_secret",
                 f"{AUTHORIZED}/client.key", f"{ADMIN}/client.key"):
        assert (d / name).is_file(), name
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for secret in ("cluster.key_secret", "client.key_secret"):
        assert stat.S_IMODE(os.stat(d / secret).st_mode) == 0o600
    client = zmq.auth.load_certificate(str(d / "client.key"))[0]
    assert public_keys(d / AUTHORIZED) == public_keys(d / ADMIN) == {z85(client)}
    # the cluster key is not a client key: it may not talk to nimbus
    assert z85(zmq.auth.load_certificate(str(d / "cluster.key"))[0]) not in public_keys(d / AUTHORIZED)
    with pytest.raises(StormError, match="--force"):
        generate(d)
    generate(d, force=True)
    assert public_keys(d / ADMIN) == {z85(zmq.auth.load_certificate(str(d / "client.key"))[0])} != {z85(client)}


def test_add_client_read_only_or_admin(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    with pytest.raises(StormError, match="storm keys generate"):
        add_client(d, "reader")
    generate(d)
    add_client(d, "reader")
    add_client(d, "ops", admin=True)
    assert (d / AUTHORIZED / "reader.key").exists() and not (d / ADMIN / "reader.key").exists()
    assert (d / ADMIN / "ops.key").exists()
    assert len(public_keys(d / AUTHORIZED)) == 3 and len(public_keys(d / ADMIN)) == 2
    for bad in ("", "../x", "cluster", "a b"):
        with pytest.raises(StormError):
            add_client(d, bad)
    with pytest.raises(StormError, match="exists"):
        add_client(d, "reader")


def test_keys_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"HOME": str(tmp_path), "STORM_CONF_FILE": ""}
    r = runner.invoke(app, ["keys", "generate", "--dir", str(tmp_path / "k")], env=env)
    assert r.exit_code == 0, r.output
    assert "cluster.key_secret" in r.output and "storm.security.curve=true" in r.output
    r = runner.invoke(app, ["keys", "generate", "--dir", str(tmp_path / "k")], env=env)
    assert r.exit_code == 2 and "--force" in r.output
    r = runner.invoke(app, ["keys", "add", "reader", "--dir", str(tmp_path / "k")], env=env)
    assert r.exit_code == 0 and "read only" in r.output, r.output
    # without --dir: storm.security.keys.dir (default ~/.storm/keys)
    r = runner.invoke(app, ["keys", "generate"], env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / ".storm" / "keys" / "cluster.key_secret").exists()
    r = runner.invoke(app, ["keys", "add", "ops", "--admin", "-c", f"storm.security.keys.dir={tmp_path / 'k'}"],
                      env=env)
    assert r.exit_code == 0 and (tmp_path / "k" / ADMIN / "ops.key").exists(), r.output


def test_security_config_keys_are_known_and_typed() -> None:
    known = defaults()
    assert known["storm.security.curve"] is False
    assert known["storm.security.keys.dir"] == "~/.storm/keys"
    assert known["storm.security.client.key"] == "client.key_secret"
    assert parse_overrides(["storm.security.curve=true"]) == {"storm.security.curve": True}
    with pytest.raises(ConfigError, match="did you mean 'storm.security.curve'"):
        validate({"storm.security.curv": True})
    with pytest.raises(ConfigError, match="must be bool"):
        validate({"storm.security.curve": "yes"})
    with pytest.raises(ConfigError, match="must be str"):
        validate({"storm.security.keys.dir": 3})
    # they configure the cluster: `storm submit -c` does not hand them to the topology
    assert topology_overrides({"storm.security.curve": True, "topology.workers": 2}) == {"topology.workers": 2}


def test_keys_from_the_config(tmp_path: Path) -> None:
    conf = merge({"storm.security.keys.dir": str(tmp_path)})
    assert cluster_keys(conf) is None and client_keys(conf) is None  # CURVE off: no keys read
    on = merge({"storm.security.curve": True, "storm.security.keys.dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="storm keys generate"):
        cluster_keys(on)
    with pytest.raises(ConfigError, match="client's secret key"):
        client_keys(on)
    generate(tmp_path)
    add_client(tmp_path, "reader")
    cluster, client = cluster_keys(on), client_keys(on)
    assert cluster is not None and client is not None
    assert client.server_public == cluster.public == cluster.server_public
    reader = client_keys({**on, "storm.security.client.key": "reader.key_secret"})
    assert reader is not None and reader.public != client.public
    with pytest.raises(ConfigError, match="no secret key"):
        client_keys({**on, "storm.security.client.key": str(tmp_path / "reader.key")})


def test_bind_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("*") and not is_loopback("192.0.2.1")
    off = merge({})
    check_bind(off, "127.0.0.1", "nimbus", "nimbus.host", insecure=False)
    check_bind(off, "0.0.0.0", "nimbus", "nimbus.host", insecure=True)
    check_bind(merge({"storm.security.curve": True}), "0.0.0.0", "nimbus", "nimbus.host", insecure=False)
    with pytest.raises(StormError, match=r"nimbus would listen on 0\.0\.0\.0 \(nimbus\.host\).*--insecure"):
        check_bind(off, "0.0.0.0", "nimbus", "nimbus.host", insecure=False)


def _wait(cond: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _batch(n: int) -> bytes:
    return msgpack.packb([1, [[1, 2, 0, [[n]], None]]], use_bin_type=True)


def test_transport_admits_the_cluster_key_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two CURVE worker transports talk; a peer without CURVE, or with any other key, gets nothing in."""
    keys_dir = tmp_path / "keys"
    generate(keys_dir)
    other = tmp_path / "other"
    generate(other)
    keys = CurveKeys.cluster(keys_dir)
    port_a, port_b = _ports(2)
    eps = [f"tcp://127.0.0.1:{port_a}", f"tcp://127.0.0.1:{port_b}"]
    sock_dir = tmp_path / "s"
    sock_dir.mkdir()
    ctx = zmq.Context()
    reports = ctx.socket(zmq.PULL)
    reports.bind(f"ipc://{sock_dir}/r")  # not CURVE: only this test reads it
    a = b = None
    rogues: list[zmq.Socket[bytes]] = []
    caplog.set_level("WARNING", logger="storm.security")
    try:
        a = ZmqTransport(0, eps, f"ipc://{sock_dir}/c0", f"ipc://{sock_dir}/r", 64, curve=keys)
        b = ZmqTransport(1, eps, f"ipc://{sock_dir}/c1", f"ipc://{sock_dir}/r", 64, curve=keys)
        # rogues: no CURVE; another cluster's key; a client key of this cluster
        plain = ctx.socket(zmq.PUSH)
        rogues.append(plain)
        for secret in (other / "cluster.key_secret", keys_dir / "client.key_secret"):
            s = ctx.socket(zmq.PUSH)
            pub, sec = zmq.auth.load_certificate(str(secret))
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, keys.public
            rogues.append(s)
        for i, s in enumerate(rogues):
            s.linger = 0
            s.connect(eps[1])
            try:
                s.send(_batch(1000 + i), zmq.NOBLOCK)
            except zmq.Again:
                pass  # the handshake was refused already: nothing was even queued
        got: list[bytes] = []

        def received(n: int) -> bool:
            frames, _ = b.poll(20, True)  # type: ignore[union-attr]
            got.extend(frames)
            return len(got) >= n

        for n in range(3):
            _wait(lambda n=n: a.send(1, _batch(n)), "a can send to b")  # type: ignore[misc, union-attr]
        _wait(lambda: received(3), "b gets a's batches")
        _wait(lambda: sum("refused a CURVE connection" in r.message for r in caplog.records) >= 2,
              "both wrong keys are refused and logged")
        _wait(lambda: any("worker 1 data socket" in r.message for r in caplog.records), "the plain peer is logged")
        received(99)
        assert sorted(msgpack.unpackb(f)[1][0][3][0][0] for f in got) == [0, 1, 2]
    finally:
        for s in rogues:
            s.close(0)
        for t in (a, b):
            if t is not None:
                t.close()
        reports.close(0)
        ctx.term()


def _ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_request_fails_at_once_on_a_refused_key(tmp_path: Path) -> None:
    """A nimbus-like ROUTER with CURVE: an authorized key is answered with its
    User-Id (what nimbus checks against admin/), others fail with a clear error
    long before the timeout."""
    generate(tmp_path / "k")
    add_client(tmp_path / "k", "reader")
    generate(tmp_path / "other")
    cluster = CurveKeys.cluster(tmp_path / "k")
    ctx = zmq.Context.instance()
    guard = acquire_guard(cluster, ctx, clients=True)
    server = ctx.socket(zmq.ROUTER)
    server.linger = 0
    serve(server, cluster, DOMAIN_CLIENTS)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{port}"
    import threading

    stop = threading.Event()

    def answer() -> None:
        from storm._security import user_id

        while not stop.is_set():
            if server.poll(20):
                frames = server.recv_multipart(copy=False)
                user = user_id(frames[-1])
                body = msgpack.packb({"ok": True, "user": user, "admin": guard.is_admin(user)})
                server.send_multipart([frames[0].bytes, b"", body])

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        on = {"storm.security.curve": True, "storm.security.keys.dir": str(tmp_path / "k")}
        admin = CurveKeys.client(on)
        reader = CurveKeys.client({**on, "storm.security.client.key": "reader.key_secret"})
        reply = request(endpoint, {"op": "ping"}, 5, "nimbus", admin)
        assert reply["user"] == z85(admin.public) and reply["admin"] is True
        reply = request(endpoint, {"op": "ping"}, 5, "nimbus", reader)
        assert reply["user"] == z85(reader.public) and reply["admin"] is False
        cases = [
            (CurveKeys.client({**on, "storm.security.client.key": str(tmp_path / "other" / "client.key_secret")}),
             "refused this client's key"),
            (None, "requires CURVE"),
            (CurveKeys.client({**on, "storm.security.keys.dir": str(tmp_path / "other")}),
             "CURVE handshake with nimbus"),
        ]
        for keys, message in cases:
            started = time.monotonic()
            with pytest.raises(NimbusError, match=message):
                request(endpoint, {"op": "ping"}, 20, "nimbus", keys)
            assert time.monotonic() - started < 5  # refused, not the request's 20 s timeout
    finally:
        stop.set()
        thread.join(2)
        server.close(0)
        release_guard(guard)


@pytest.mark.timeout(60)
def test_a_guard_starts_right_after_another_stopped_on_the_same_context(tmp_path: Path) -> None:
    # ZeroMQ frees the ZAP endpoint of a stopped guard asynchronously; the next
    # guard on the context (a daemon restarted in one process, the next test)
    # must not fail with "Address already in use".
    generate(tmp_path / "k")
    cluster = CurveKeys.cluster(tmp_path / "k")
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        for _ in range(30):
            release_guard(acquire_guard(cluster, ctx))
    finally:
        ctx.destroy(linger=0)
