"""CURVE in cluster mode, with real `storm nimbus` / `storm supervisor` processes
on 127.0.0.1 (daemon_topos_harness.Daemons kills everything they started):

- an admin client key submits, lists and kills;
- an authorized read-only key lists and reads logs but cannot kill or submit;
- an unknown key, or no CURVE at all, is refused at once with a clear error;
- a rogue process cannot inject tuples into a running worker's data socket
  (nothing arrives at the sink), while a process holding the cluster key can
  (so the rogue's batches were well-formed and aimed right);
- daemons refuse to listen beyond loopback without CURVE unless --insecure."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_topos_harness import NUMBERS, STORM, Daemons, free_ports, wait_until
from daemon_topos_parts import read_numbers

from storm import StormError
from storm._config import merge
from storm._security import add_client, generate
from storm.daemon import NimbusClient, NimbusError
from storm.daemon._client import request
from storm.daemon._code import build_spec, package_target

ROGUE = r"""
import sys, time, msgpack, zmq, zmq.auth
endpoint, mode, secret, server, sink, src, sid, base, count = sys.argv[1:10]
ctx = zmq.Context.instance()
s = ctx.socket(zmq.PUSH)
s.setsockopt(zmq.LINGER, 3000)
if mode != "plain":  # "curve" or "insider"
    pub, sec = zmq.auth.load_certificate(secret)
    s.curve_publickey, s.curve_secretkey = pub, sec
    s.curve_serverkey = zmq.auth.load_certificate(server)[0]
s.connect(endpoint)
frames = [msgpack.packb([1, [[int(sink), int(src), int(sid), [[int(base) + i]], None]]], use_bin_type=True)
          for i in range(int(count))]
sent, deadline = 0, time.monotonic() + 3.0
while frames and time.monotonic() < deadline:
    try:
        s.send(frames[0], zmq.NOBLOCK)
        frames.pop(0)
        sent += 1
    except zmq.Again:
        time.sleep(0.02)
print("sent", sent)
if mode != "insider":
    time.sleep(1.0)  # a persistent rogue: ZeroMQ keeps reconnecting meanwhile
s.close()
ctx.term()
"""

ROGUE_BASE = 1_000_000
STRANGER_BASE = 2_000_000
INSIDER_BASE = 3_000_000


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    """What `storm keys generate` / `storm keys add reader` write (tests/unit/test_security.py runs those)."""
    keys, other = tmp_path / "keys", tmp_path / "other-keys"
    generate(keys)
    generate(other)
    add_client(keys, "reader")
    return keys, other


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[tuple[Daemons, Path, Path]]:
    keys, other = _keys(tmp_path)
    conf = {"storm.security.curve": True, "storm.security.keys.dir": str(keys)}
    with Daemons(tmp_path / "cluster", conf) as d:
        yield d, keys, other


def _log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def _rogue(endpoint: str, mode: str, secret: Path, server: Path, sink: int, src: int, sid: int, base: int,
           count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", ROGUE, endpoint, mode, str(secret), str(server), str(sink),
                             str(src), str(sid), str(base), str(count)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    return out


def _client(d: Daemons, **conf: object) -> NimbusClient:
    return NimbusClient.from_conf({**d.conf, **conf})


def _refused(client: NimbusClient, op: str, **args: object) -> str:
    started = time.monotonic()
    try:
        client.call(op, **args)
    except NimbusError as exc:
        took = time.monotonic() - started
        # Semantic: refused by nimbus, not given up on at the client's 30 s timeout.
        assert took < 10, f"{op}: refused only after {took:.1f}s"
        return str(exc)
    raise AssertionError(f"{op} was not refused")


@pytest.mark.timeout(120)
def test_curve_cluster_keys_decide_who_may_do_what(secure: tuple[Daemons, Path, Path]) -> None:
    d, keys, other = secure
    d.start_nimbus()
    d.start_supervisor("sup", slots=1)
    reader = ["-c", f"storm.security.client.key={keys / 'reader.key_secret'}"]
    stranger = ["-c", f"storm.security.client.key={other / 'client.key_secret'}"]

    # (a) the admin key (client.key, from `storm keys generate`) submits and lists
    count = 200
    r = d.storm("submit", NUMBERS, "-c", f"itest.dir={d.record_dir}", "-c", f"itest.count={count}")
    assert r.returncode == 0, r.stderr
    w = d.wait_running("Numbers", 1)[0]
    r = d.storm("list")
    assert r.returncode == 0 and "Numbers" in r.stdout, r.stdout + r.stderr
    wait_until(lambda: set(read_numbers(d.record_dir, "sink")) >= set(range(count)), "the sink sees every number",
               30, d.diagnostics)

    # (c) an authorized, non-admin key reads but changes nothing
    r = d.storm("list", *reader)
    assert r.returncode == 0 and "Numbers" in r.stdout, r.stdout + r.stderr
    r = d.storm("kill", "Numbers", "-w", "0", *reader)
    assert r.returncode == 2 and "not allowed to kill" in r.stderr and "admin" in r.stderr, r.stdout + r.stderr
    as_reader = _client(d, **{"storm.security.client.key": str(keys / "reader.key_secret")})
    pkg, _ = package_target(NUMBERS, {"itest.dir": str(d.record_dir)})
    submit = {"name": "Other", "target": pkg.target, "archive": pkg.archive, "sha256": pkg.sha256, "overrides": {}}
    for op, args in (("deactivate", {"name": "Numbers"}), ("rebalance", {"name": "Numbers", "workers": 1}),
                     ("submit", submit)):
        assert f"not allowed to {op}" in _refused(as_reader, op, **args)
    # the supervisor's log server answers it (reading is allowed)
    log = request(w["logs"], {"op": "log", "topology": "Numbers", "index": 0, "lines": 5}, 10, "log server",
                  as_reader.curve)
    assert b"started with tasks" in log["data"]
    assert d.info("Numbers")["topology"]["status"] == "ACTIVE"
    wait_until(lambda: _log_has(d.logs["nimbus"], "refused kill from client key"), "nimbus logs the refused kill",
               10, d.diagnostics)

    # (b) an unknown key is refused at once (not after nimbus.client.timeout.secs = 20 s)
    r = d.storm("kill", "Numbers", "-w", "0", *stranger)
    assert r.returncode == 2 and "refused this client's key" in r.stderr, r.stdout + r.stderr
    as_stranger = _client(d, **{"storm.security.client.key": str(other / "client.key_secret")})
    for op, args in (("list", {}), ("submit", submit), ("activate", {"name": "Numbers"})):
        assert "refused this client's key" in _refused(as_stranger, op, **args)
    with pytest.raises(StormError, match="refused this client's key"):
        request(w["logs"], {"op": "log", "topology": "Numbers", "index": 0}, 10, "log server", as_stranger.curve)
    # ... and so is a client without CURVE, or with another cluster's keys
    where = ["-c", f"nimbus.port={d.nimbus_port}", "-c", "nimbus.seeds=[127.0.0.1]"]
    r = d.storm("list", *where, conf=False)
    assert r.returncode == 2 and "requires CURVE" in r.stderr, r.stderr
    assert "CURVE handshake with nimbus" in _refused(_client(d, **{"storm.security.keys.dir": str(other)}), "list")
    wait_until(lambda: _log_has(d.logs["nimbus"], "refused a CURVE connection"),
               "nimbus logs the refused key", 10, d.diagnostics)
    assert d.info("Numbers")["topology"]["status"] == "ACTIVE"

    # (d) a rogue process cannot inject tuples into the worker's data socket
    spec = build_spec(NUMBERS, {"itest.dir": str(d.record_dir)})
    sink = spec.components["sink"].tasks[0]
    relay = spec.components["relay"].tasks[0]
    sid = spec.stream_ids[("relay", "default")]
    endpoint = f"tcp://{w['host']}:{w['port']}"
    before = read_numbers(d.record_dir, "sink")
    assert sum(before.values()) >= count
    worker_log = d.supervisor_dirs["sup"] / "logs" / "Numbers" / "worker-0.log"
    # No CURVE at all: the handshake fails before any frame is read (its sends
    # only queue locally). CURVE with a key that is not the cluster's: refused by
    # ZAP, even an authorized client key.
    rogues = [_rogue(endpoint, "plain", keys / "client.key", keys / "cluster.key", sink, relay, sid, ROGUE_BASE, 50)]
    for secret in (other / "cluster.key_secret", keys / "client.key_secret"):
        rogues.append(_rogue(endpoint, "curve", secret, keys / "cluster.key", sink, relay, sid, STRANGER_BASE, 50))
    for proc in rogues:
        _finish(proc)
    wait_until(lambda: _log_has(worker_log, "refused a connection to worker 0 data socket"),
               "the worker logs the plain rogue", 10, d.diagnostics)
    wait_until(lambda: _log_has(worker_log, "refused a CURVE connection"), "the worker logs the refused keys",
               10, d.diagnostics)
    # the control: the same batches with the cluster's key do arrive
    out = _finish(_rogue(endpoint, "insider", keys / "cluster.key_secret", keys / "cluster.key", sink, relay, sid,
                         INSIDER_BASE, 50))
    assert "sent 50" in out, out
    wait_until(lambda: set(read_numbers(d.record_dir, "sink")) >= set(range(INSIDER_BASE, INSIDER_BASE + 50)),
               "the insider's tuples reach the sink", 20, d.diagnostics)
    after = read_numbers(d.record_dir, "sink")
    injected = [n for n in after if ROGUE_BASE <= n < INSIDER_BASE]
    assert not injected, f"rogue tuples reached the sink: {sorted(injected)[:10]}"
    assert sum(after.values()) - sum(before.values()) == 50
    assert {n: c for n, c in after.items() if n < count} == {n: c for n, c in before.items() if n < count}

    # (a) the admin key kills
    r = d.storm("kill", "Numbers", "-w", "0")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: not d.worker_processes(), "the worker stops", 30, d.diagnostics)


# An address of TEST-NET-1 (RFC 5737): not loopback and not on this machine, so a
# daemon that gets past the check fails to bind it; nothing ever listens beyond loopback.
ELSEWHERE = "192.0.2.1"


def _storm(tmp_path: Path, tag: str, *argv: str) -> subprocess.Popen[str]:
    local = tmp_path / tag
    return subprocess.Popen(
        [*STORM, *argv, "-c", f"storm.local.dir={local}", "-c", f"nimbus.port={free_ports(1)[0]}",
         "-c", "nimbus.seeds=[127.0.0.1]", "-c", "supervisor.logs.port=1", "-c", "supervisor.slots.ports=[1]"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


@pytest.mark.timeout(60)
def test_daemons_refuse_to_listen_beyond_loopback_without_curve(tmp_path: Path) -> None:
    # every command at once (each is a new interpreter): the test stays short
    runs = {
        "nimbus": _storm(tmp_path, "n1", "nimbus", "-c", f"nimbus.host={ELSEWHERE}"),
        "nimbus --insecure": _storm(tmp_path, "n2", "nimbus", "--insecure", "-c", f"nimbus.host={ELSEWHERE}"),
        "supervisor": _storm(tmp_path, "s1", "supervisor", "-c", f"storm.local.hostname={ELSEWHERE}"),
        "supervisor --insecure": _storm(tmp_path, "s2", "supervisor", "--insecure",
                                        "-c", f"storm.local.hostname={ELSEWHERE}"),
        "cluster up": _storm(tmp_path, "c1", "cluster", "up", "-c", f"nimbus.host={ELSEWHERE}"),
        "cluster up --insecure": _storm(tmp_path, "c2", "cluster", "up", "--insecure",
                                        "-c", f"nimbus.host={ELSEWHERE}"),
    }
    results = {}
    try:
        for name, proc in runs.items():
            out, err = proc.communicate(timeout=40)
            results[name] = (proc.returncode, out, err)
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    for name in ("nimbus", "supervisor"):
        code, out, err = results[name]
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1, f"{name}: {code} {out}{err}"
        assert "with no authentication" in lines[0] and "--insecure" in lines[0], err
        # --insecure lets it go on, as far as binding (which fails: not this machine's address)
        code, out, err = results[f"{name} --insecure"]
        assert code == 2 and "cannot listen" in err and "with no authentication" not in err, f"{name}: {out}{err}"
    # `storm cluster up` fails with the daemon's reason, and passes --insecure on to it
    code, out, err = results["cluster up"]
    assert code == 2 and "with no authentication" in err, out + err
    code, out, err = results["cluster up --insecure"]
    assert code == 2 and "cannot listen" in err, out + err
    # the supervisor that got as far as binding left its socket directory (named by its id)
    id_file = tmp_path / "s2" / "supervisor" / "id"
    if id_file.exists():
        shutil.rmtree(Path("/tmp") / f"storm-sup-{id_file.read_text().strip()[:12]}", ignore_errors=True)


def test_curve_on_without_keys_is_one_clear_error(tmp_path: Path) -> None:
    from storm.daemon._nimbus import Nimbus
    from storm.daemon._supervisor import Supervisor

    conf = merge({"storm.security.curve": True, "storm.security.keys.dir": str(tmp_path / "nokeys"),
                  "storm.local.dir": str(tmp_path / "local"), "nimbus.host": ELSEWHERE,
                  "storm.local.hostname": ELSEWHERE})
    for make in (Nimbus, Supervisor):
        with pytest.raises(StormError, match="storm keys generate"):
            make(conf)
