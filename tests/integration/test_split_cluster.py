"""A supervisor started on another cluster state than nimbus (another SQLite
file here; another storm.local.dir or ZooKeeper root is the same case) is no
silent wait: `submit` and `list` name the state nimbus reads and how many
supervisors beat there, and the stray supervisor logs which state it reads and
that no nimbus beats in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_topos_harness import NUMBERS, Daemons, wait_until


@pytest.mark.timeout(90)
def test_supervisor_on_another_state_is_named_not_waited_for(tmp_path: Path) -> None:
    with Daemons(tmp_path) as d:
        d.start_nimbus()
        other = tmp_path / "other-state.sqlite"
        d.start_supervisor("stray", wait=False, extra={"storm.cluster.state.sqlite": str(other),
                                                       "supervisor.nimbus.timeout.secs": 1.0})
        r = d.storm("submit", NUMBERS, "-c", f"itest.dir={d.record_dir}")
        assert r.returncode == 0, r.stderr
        ours = f"sqlite:{tmp_path / 'state.sqlite'}"
        flat = " ".join(r.stdout.split())
        assert "waiting for free slots" in flat and f"0 supervisor(s) alive in the cluster state {ours}" in flat, \
            r.stdout
        r = d.storm("list")
        flat = " ".join(r.stdout.split())
        assert r.returncode == 0 and f"0 supervisor(s) alive in the cluster state {ours}" in flat, r.stdout
        wait_until(lambda: f"no nimbus has beaten in the cluster state sqlite:{other}" in d.logs["stray"].read_text(),
                   "the stray supervisor names the state it reads", 30, d.diagnostics)
        # the right state: the supervisor registers, the note goes, list counts it
        d.start_supervisor("good")
        wait_until(lambda: "1 supervisor(s) alive" in " ".join(d.storm("list").stdout.split()),
                   "list counts the supervisor of nimbus's state", 30, d.diagnostics)
        assert "nimbus has beaten" not in d.logs["good"].read_text()
