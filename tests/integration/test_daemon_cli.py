"""The cluster commands of the `storm` script as a user runs them: every user
error is one red line on stderr and exit code 2; `storm logs` reads worker logs
through the supervisors (rotated by size); `storm cluster up` runs nimbus and a
supervisor in the foreground and Ctrl-C stops them and every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from daemon_topos_harness import (
    NUMBERS,
    STORM,
    Daemons,
    free_ports,
    processes_mentioning,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
WORDCOUNT = REPO / "topologies" / "wordcount.py"

BAD_TOPOLOGY = """
from storm import Bolt, Spout, Topology

class S(Spout):
    outputs = ["x"]
    def next_tuple(self): pass

class B(Bolt):
    def execute(self, tup): pass

class Bad(Topology):
    s = S.spec()
    b = B.spec(inputs=["nowhere"])
"""


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with Daemons(tmp_path) as d:
        yield d


def assert_user_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.mark.timeout(120)
def test_every_user_error_is_one_line_and_exit_2(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons
    # nimbus unreachable (nothing listens on the port yet)
    assert_user_error(d.storm("list"), "nimbus is unreachable", f"127.0.0.1:{d.nimbus_port}")
    assert_user_error(d.storm("submit", NUMBERS), "nimbus is unreachable")
    d.start_nimbus()
    # unknown topology
    for argv in (["kill", "nope"], ["activate", "nope"], ["deactivate", "nope"],
                 ["rebalance", "nope", "-n", "2"], ["logs", "nope"]):
        assert_user_error(d.storm(*argv), "no topology named 'nope'")
    # invalid topology: caught before anything is sent
    bad = tmp_path / "bad_topology.py"
    bad.write_text(BAD_TOPOLOGY)
    assert_user_error(d.storm("submit", str(bad)), "unknown component 'nowhere'")
    assert_user_error(d.storm("submit", str(tmp_path / "missing.py")), "does not exist")
    # bad -c and -e
    assert_user_error(d.storm("submit", NUMBERS, "-c", "nonsense"), "bad -c option 'nonsense'")
    assert_user_error(d.storm("submit", NUMBERS, "-c", "topology.wrokers=2"), "topology.workers")
    # name taken (no supervisor needed: the first one waits for slots)
    r = d.storm("submit", NUMBERS, "-c", f"itest.dir={d.record_dir}")
    assert r.returncode == 0, r.stderr
    assert "waiting for free slots" in r.stdout
    assert_user_error(d.storm("submit", NUMBERS, "-c", f"itest.dir={d.record_dir}"),
                      "'Numbers' is already running")
    assert_user_error(d.storm("rebalance", "Numbers", "-e", "relay=many"), "bad -e option")
    assert_user_error(d.storm("rebalance", "Numbers", "-e", "nosuch=2"), "no component 'nosuch'")
    assert_user_error(d.storm("rebalance", "Numbers"), "nothing to rebalance")
    assert_user_error(d.storm("logs", "Numbers", "--component", "nosuch"), "no component 'nosuch'")


@pytest.mark.timeout(120)
def test_logs_show_follow_and_rotate(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a", extra={"worker.log.max.bytes": 4096, "worker.log.backups": 2})
    d.submit(**{"topology.workers": 2, "itest.rate": 400, "itest.print.every": 20})
    d.wait_running("Numbers", 2)
    r = d.storm("logs", "Numbers")
    assert r.returncode == 0, r.stderr
    assert "==> worker 0" in r.stdout and "==> worker 1" in r.stdout
    assert "started with tasks" in r.stdout
    # the sink (task 2) runs in worker 1 only
    r = d.storm("logs", "Numbers", "--component", "sink", "--lines", "5")
    assert r.returncode == 0, r.stderr
    assert "==> worker 1" in r.stdout and "==> worker 0" not in r.stdout

    env = dict(os.environ, HOME=str(d.base), COLUMNS="200")
    follow = subprocess.Popen([*STORM, "logs", "Numbers", "--component", "sink", "--follow", *d.args()],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follow.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(lambda: sum(1 for line in seen if line.startswith("[w1] ") and "sink saw" in line) >= 3,
                   "--follow prints new sink lines", 30)
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(5)
    # print() output goes through the rotating log: small files, at most 2 backups
    logs = d.supervisor_dirs["sup-a"] / "logs" / "Numbers"
    wait_until(lambda: (logs / "worker-1.log.1").exists(), "the sink's log rotates", 30)
    assert not (logs / "worker-1.log.3").exists()
    assert all(p.stat().st_size < 4096 + 512 for p in logs.glob("worker-1.log*"))


@pytest.mark.timeout(120)
def test_cluster_up_runs_a_topology_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    d = Daemons(tmp_path)  # only for its CLI runner and cleanup
    slots = free_ports(2)
    d.conf.update({"storm.local.dir": str(tmp_path / "local"), "supervisor.slots.ports": slots})
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS="200")
    up = subprocess.Popen([*STORM, "cluster", "up", *d.args()], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(up.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        wait_until(lambda: any("Ctrl-C stops the cluster" in line for line in out), "cluster up is ready", 60,
                   lambda: "".join(out))
        assert any("storm cluster up" in line for line in out)
        counts = tmp_path / "counts.json"
        r = d.storm("submit", str(WORDCOUNT), "-c", "wordcount.repeat=50", "-c", f"wordcount.output={counts}")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: counts.exists(), "the word count writes its counts", 40, lambda: "".join(out))
        r = d.storm("list")
        assert "WordCount" in r.stdout and "ACTIVE" in r.stdout
        workers = processes_mentioning(str(tmp_path))
        assert workers
        daemons = [p for p in psutil.Process(up.pid).children(recursive=True) if "storm.cli" in " ".join(p.cmdline())]
        assert len(daemons) == 2
        up.send_signal(signal.SIGINT)
        assert up.wait(40) == 0, "".join(out)
        assert any("cluster stopped" in line for line in out)
        gone = psutil.wait_procs([*workers, *daemons], timeout=10)[1]
        assert not gone, f"still running after Ctrl-C: {[p.pid for p in gone]}"
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(5)
        problems = d.close()
        assert not problems
