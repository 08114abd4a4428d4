"""`storm query NAME STATE KEY...` by the name of a running topology: one that
`storm local` runs (found through its registry entry under storm.local.dir,
which it removes on exit) and one running on a cluster (nimbus describes its
states from the stored code: op trident_states). Both read the exact counts of
topologies/trident_wordcount.py once it has counted every sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_topos_harness import Daemons, free_ports, wait_until

from storm._registry import running_local
from storm.trident import SQLiteState

ROOT = Path(__file__).resolve().parents[2]
STORM = Path(sys.executable).parent / "storm"
TARGET = str(ROOT / "topologies" / "trident_wordcount.py") + ":wordcount"
NAME = "TridentWordCount"
SENTENCES = 3000


def true_counts() -> Counter[str]:
    sys.path.insert(0, str(ROOT / "topologies"))
    try:
        import trident_wordcount as twc
    finally:
        sys.path.pop(0)
    c: Counter[str] = Counter()
    for (s,) in twc.sentences(SENTENCES):
        c.update(s.split())
    return c


def total(path: Path) -> int:
    try:
        return sum(SQLiteState(path, "counts").read_all().values())
    except Exception:  # the table may not exist yet
        return 0


def env(home: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.pop("STORM_CONF_FILE", None)
    e["HOME"] = str(home)  # no ~/.storm/storm.yaml of the machine leaks in
    return e


@pytest.fixture
def storm_local(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[str]]]:
    conf = ["-c", f"wordcount.state={tmp_path / 'counts.sqlite'}",
            "-c", f"topology.trident.meta.path={tmp_path / 'meta.sqlite'}",
            "-c", f"wordcount.sentences={SENTENCES}", "-c", f"storm.local.dir={tmp_path / 'local'}"]
    log = open(tmp_path / "storm-local.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(STORM), "local", TARGET, "-d", "90", *conf], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=tmp_path, env=env(tmp_path))
    try:
        yield proc, conf
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


@pytest.mark.timeout(120)
def test_query_a_storm_local_topology_by_name(storm_local: tuple[subprocess.Popen[bytes], list[str]],
                                              tmp_path: Path) -> None:
    proc, conf = storm_local
    expected = true_counts()

    def done() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"storm local exited with {proc.returncode}: "
                                 f"{(tmp_path / 'storm-local.log').read_text()[-2000:]}")
        return NAME in running_local(tmp_path / "local") and total(tmp_path / "counts.sqlite") >= sum(expected.values())

    wait_until(done, "storm local registered and counted every sentence", 90)
    nimbus = ["-c", "nimbus.seeds=[127.0.0.1]", "-c", f"nimbus.port={free_ports(1)[0]}"]
    words = sorted(expected)[:4]
    # From another directory: the state's relative paths were resolved where storm local ran.
    q = subprocess.run([str(STORM), "query", NAME, "counts", *words, "zebra", "--json",
                        "-c", f"storm.local.dir={tmp_path / 'local'}", *nimbus],
                       capture_output=True, text=True, timeout=60, cwd="/", env=env(tmp_path))
    assert q.returncode == 0, q.stdout + q.stderr
    assert json.loads(q.stdout) == {**{w: expected[w] for w in words}, "zebra": None}
    q = subprocess.run([str(STORM), "query", NAME, "nope", "-c", f"storm.local.dir={tmp_path / 'local'}"],
                       capture_output=True, text=True, timeout=60, env=env(tmp_path))
    assert q.returncode == 2 and f"local topology '{NAME}' has no state named 'nope'" in q.stdout + q.stderr

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert NAME not in running_local(tmp_path / "local")
    assert not list((tmp_path / "local" / "running").glob("*.json")), "storm local left its registry entry"
    q = subprocess.run([str(STORM), "query", NAME, "counts", "the", "-c", f"storm.local.dir={tmp_path / 'local'}",
                        *nimbus], capture_output=True, text=True, timeout=60, env=env(tmp_path))
    assert q.returncode == 2
    assert f"no topology named '{NAME}' runs under storm local here" in q.stdout + q.stderr
    assert "nimbus is unreachable" in q.stdout + q.stderr


@pytest.mark.timeout(150)
def test_query_a_cluster_topology_by_name(tmp_path: Path) -> None:
    expected = true_counts()
    state = tmp_path / "cluster-counts.sqlite"
    with Daemons(tmp_path / "cluster") as d:
        d.start_nimbus()
        d.start_supervisor("sup-a")
        r = d.storm("submit", TARGET, "-c", f"wordcount.state={state}", "-c", f"wordcount.sentences={SENTENCES}",
                    "-c", f"topology.trident.meta.path={tmp_path / 'cluster-meta.sqlite'}")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: total(state) >= sum(expected.values()), "the cluster topology counted every sentence",
                   90, d.diagnostics)
        words = sorted(expected)[-3:]
        q = d.storm("query", NAME, "counts", *words, "zebra", "--json")
        assert q.returncode == 0, q.stdout + q.stderr
        assert json.loads(q.stdout) == {**{w: expected[w] for w in words}, "zebra": None}
        top = d.storm("query", NAME, "counts", "--top", "2")
        assert top.returncode == 0, top.stderr
        assert top.stdout.splitlines() == [f"{w}\t{n}" for w, n in expected.most_common(2)]
        q = d.storm("query", "NoSuchTopology", "counts")
        assert q.returncode == 2 and "no topology named 'NoSuchTopology' is running" in q.stdout + q.stderr
        r = d.storm("kill", NAME, "--wait", "0")
        assert r.returncode == 0, r.stderr
