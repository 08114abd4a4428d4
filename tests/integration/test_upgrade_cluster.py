"""`storm upgrade` on a live cluster topology: a stateful counting topology
with acking on, under load, moved from v1 to v2 one worker at a time (at every
moment a worker of it runs), every number acked and counted exactly once in the
committed state, every worker on v2 at the end; a version whose bolt raises in
prepare is rolled back by itself with the counts intact; layout changes are
refused with each difference named; --dry-run changes nothing."""

from __future__ import annotations

import re
import shlex
import sqlite3
import threading
from pathlib import Path

import msgpack
import psutil
import pytest
from daemon_topos_harness import HERE, Daemons, wait_until
from daemon_topos_parts import read_numbers

N = 2500
TOPOS = HERE / "upgrade_topos.py"


def committed_counts(state_dir: Path) -> dict[str, int] | None:
    """The count stage's committed state summed over its tasks, when both are at one txid."""
    merged: dict[str, int] = {}
    txids = set()
    dbs = sorted((state_dir / "Counting").glob("count-*.sqlite"))
    if len(dbs) != 2:
        return None
    for db in dbs:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT k, v FROM kv").fetchall()
            txid = con.execute("SELECT value FROM meta WHERE name = 'txid'").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            con.close()
        txids.add(txid[0] if txid else 0)
        for k, v in rows:
            key = msgpack.unpackb(k, raw=False)
            merged[key] = merged.get(key, 0) + msgpack.unpackb(v, raw=False)
    return merged if len(txids) == 1 else None


def tags(record_dir: Path) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for p in record_dir.glob("record-*.log"):
        for line in p.read_text().splitlines():
            tag, _, n = line.partition(" ")
            if n:
                out.setdefault(tag, set()).add(int(n))
    return out


class ProcessWatch:
    """Samples the topology's worker processes: the fewest seen at once, and every target seen."""

    def __init__(self, d: Daemons) -> None:
        self.d = d
        self.fewest = 99
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            procs = []
            for p in self.d.worker_processes():
                try:
                    if p.status() != psutil.STATUS_ZOMBIE:
                        procs.append(p)
                except psutil.Error:
                    pass
            self.fewest = min(self.fewest, len(procs))

    def __enter__(self) -> ProcessWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def worker_targets(d: Daemons) -> list[str]:
    out = []
    for p in d.worker_processes():
        line = p.cmdline()
        out.append(line[line.index("--target") + 1].rpartition(":")[2])
    return out


@pytest.mark.timeout(240)
def test_rolling_upgrade_keeps_state_exact_and_a_failing_version_rolls_back(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with Daemons(tmp_path, {"nimbus.upgrade.healthy.secs": 1.5}) as d:
        d.start_nimbus()
        d.start_supervisor("sup", slots=3)
        d.submit(f"{TOPOS}:CountingV1", **{"topology.name": "Counting", "itest.count": N, "itest.rate": 80,
                                           "topology.state.dir": str(state_dir)})
        d.wait_running("Counting", 2)
        wait_until(lambda: len(read_numbers(d.record_dir, "acks")) > 200, "acks flow on v1", 60, d.diagnostics)

        r = d.storm("upgrade", "Counting", f"{TOPOS}:CountingRenamed")
        assert r.returncode == 2, r.stdout + r.stderr
        for needle in ("cannot upgrade 'Counting' live", "component 'sink' is new", "component 'record' is gone",
                       "bolt 'count' inputs change"):
            assert needle in r.stderr, r.stderr
        r = d.storm("upgrade", "Counting", f"{TOPOS}:CountingV2", "--dry-run")
        assert r.returncode == 0 and "plan (dry run, nothing changed)" in r.stdout and "code v1 -> v2" in r.stdout, \
            r.stdout + r.stderr
        assert "2. worker" in r.stdout and set(worker_targets(d)) == {"CountingV1"}

        acked_before = len(read_numbers(d.record_dir, "acks"))
        assert acked_before < N, "the upgrade must come under load"
        with ProcessWatch(d) as watch:
            r = d.storm("upgrade", "Counting", f"{TOPOS}:CountingV2", "--wait", timeout=180)
        acked_after = len(read_numbers(d.record_dir, "acks"))
        assert r.returncode == 0 and "runs code v2 on every worker" in r.stdout, r.stdout + r.stderr + d.diagnostics()
        assert watch.fewest >= 1, "a moment without any worker of the topology"
        assert worker_targets(d) == ["CountingV2", "CountingV2"]
        r = d.storm("list")
        assert r.returncode == 0 and " v2 " in r.stdout, r.stdout
        assert acked_after > acked_before, "numbers were acked while the workers were replaced"

        wait_until(lambda: set(read_numbers(d.record_dir, "acks")) >= set(range(N)), "every number acked", 90,
                   d.diagnostics)
        expected = {f"k{i}": N // 10 for i in range(10)}
        wait_until(lambda: committed_counts(state_dir) == expected or (
            sum((committed_counts(state_dir) or {}).values()) > N), "the counts committed", 30, d.diagnostics)
        assert committed_counts(state_dir) == expected, "each number counted exactly once"
        seen = tags(d.record_dir)
        assert seen.get("v1") and seen.get("v2"), "output of both versions"

        # a version that raises in prepare: rolled back, the state untouched
        r = d.storm("upgrade", "Counting", f"{TOPOS}:CountingBroken", "--wait", timeout=180)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "failed and was rolled back" in r.stderr and "refuses to prepare" in r.stderr, r.stderr
        wait_until(lambda: worker_targets(d) == ["CountingV2", "CountingV2"] and
                   len(d.running_workers("Counting")) == 2, "every worker back on v2", 60, d.diagnostics)
        assert committed_counts(state_dir) == expected
        r = d.storm("list")
        assert " v2 " in r.stdout and "rolled back" in r.stdout, r.stdout


README = HERE.parents[1] / "README.md"
WORDCOUNT = HERE.parents[1] / "topologies" / "wordcount.py"


def operating_commands() -> list[list[str]]:
    """The `storm` commands of the README's "Operating a cluster" section, but the daemons."""
    text = README.read_text().split("## Operating a cluster", 1)[1].split("\n## ", 1)[0]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            argv = shlex.split(line.split("#", 1)[0])
            if argv and argv[0] == "storm" and argv[1] != "nimbus":
                out.append([str(WORDCOUNT) if a == "topologies/wordcount.py" else a for a in argv[1:]])
    return out


@pytest.mark.timeout(150)
def test_the_readme_operating_commands_run(tmp_path: Path) -> None:
    commands = operating_commands()
    assert [c[0] for c in commands] == ["nimbuses", "upgrade", "upgrade", "upgrade", "set-log-level", "set-log-level"]
    with Daemons(tmp_path, {"nimbus.upgrade.healthy.secs": 1.0}) as d:
        d.start_nimbus()
        d.start_supervisor("sup", slots=3)
        r = d.storm("submit", str(WORDCOUNT), "-c", "topology.workers=2")
        assert r.returncode == 0, r.stdout + r.stderr
        d.wait_running("WordCount", 2)
        for argv in commands:
            r = d.storm(*argv, timeout=120)
            assert r.returncode == 0, f"storm {' '.join(argv)}\n{r.stdout}{r.stderr}"
            if argv[0] == "nimbuses":
                assert "leader" in r.stdout, r.stdout
        r = d.storm("list")
        assert "WordCount" in r.stdout and " v2 " in r.stdout, r.stdout
