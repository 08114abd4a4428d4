"""Fixtures of the integration tests (real worker processes, real ZeroMQ sockets).

`cluster` gives each test its own LocalCluster and, whatever the test did,
shuts it down and then checks that none of its worker processes is left: any
leftover is killed and the test fails. `redis_url` is the Redis CI gives in
STORM_TEST_REDIS, else a private redis-server on 127.0.0.1 for the module."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from itest_support import kill_all
from preconditions import missing, require_module

from storm import LocalCluster

WORKER_MODULE = "storm._worker_main"
GONE_TIMEOUT = 10.0


def _worker_processes(markers: list[str]) -> list[psutil.Process]:
    """Live worker processes whose command line names one of `markers` (the
    cluster's socket directories and local dir)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        line = " ".join(p.info["cmdline"] or [])
        if WORKER_MODULE in line and any(m in line for m in markers):
            found.append(p)
    return found


def _check_nothing_left(cluster: LocalCluster, tmp_path: Path) -> None:
    markers = [str(tmp_path)] + [str(t.sock_dir) for t in cluster.topologies.values()]
    deadline = time.monotonic() + GONE_TIMEOUT
    left = _worker_processes(markers)
    while left and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=0.1)
        left = _worker_processes(markers)
    problems = []
    if left:
        described = [f"pid {p.pid}: {' '.join(p.info['cmdline'] or [])[:200]}" for p in left]
        kill_all(left)
        problems.append("worker processes still running after shutdown (killed now):\n  "
                        + "\n  ".join(described))
    sockets = [t.sock_dir for t in cluster.topologies.values() if t.sock_dir.exists()]
    if sockets:
        for d in sockets:
            shutil.rmtree(d, ignore_errors=True)
        problems.append(f"socket directories left after shutdown (removed now): {[str(d) for d in sockets]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(local_dir=tmp_path / "cluster")
    try:
        yield c
    finally:
        try:
            c.shutdown()
        finally:
            _check_nothing_left(c, tmp_path)


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    """Where the test topologies' tasks write their records (config `itest.dir`)."""
    d = tmp_path / "records"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    redis = require_module("redis", "pip install redis (a test extra: pip install -e .[test])")
    url = os.environ.get("STORM_TEST_REDIS")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        missing("no Redis: set STORM_TEST_REDIS=redis://127.0.0.1:PORT/0 or install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not answer PING")
            time.sleep(0.02)  # polling the server's readiness, bounded by the deadline
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=5)
