"""`storm set-log-level` on a running cluster topology: the level reaches the
worker through nimbus's assignment and the supervisor's control message, with
no restart, and reverts after its timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_topos_harness import NUMBERS, Daemons, wait_until
from test_daemon_cli import assert_user_error


@pytest.mark.timeout(90)
def test_set_log_level_reaches_the_worker_and_reverts(tmp_path: Path) -> None:
    with Daemons(tmp_path) as d:
        d.start_nimbus()
        d.start_supervisor("sup")
        d.submit(**{"itest.rate": 2000, "itest.print.every": 200})
        worker = d.wait_running("Numbers", 1)[0]
        log = tmp_path / "sup" / "logs" / "Numbers" / f"worker-{worker['index']}.log"
        wait_until(lambda: "sink saw" in log.read_text(), "the sink logs at INFO", 30, d.diagnostics)
        assert "sink debug line" not in log.read_text()
        r = d.storm("set-log-level", "Numbers", "itest.sink=DEBUG:4")
        assert r.returncode == 0 and "itest.sink=DEBUG for" in r.stdout, r.stdout + r.stderr
        wait_until(lambda: "sink debug line" in log.read_text(), "DEBUG lines of itest.sink", 30, d.diagnostics)
        wait_until(lambda: "log level of itest.sink reset" in log.read_text(), "the level reverts", 30,
                   d.diagnostics)
        def after_reset() -> str:
            return log.read_text().split("log level of itest.sink reset", 1)[1]

        wait_until(lambda: after_reset().count("sink saw") >= 3, "INFO lines after the reset", 30, d.diagnostics)
        after = after_reset()
        assert "sink debug line" not in after, after[-2000:]
        assert d.running_workers("Numbers")[0]["pid"] == worker["pid"]  # no restart
        r = d.storm("set-log-level", "Numbers", "-r", "itest.sink")
        assert r.returncode == 0 and "none" in r.stdout, r.stdout + r.stderr
        r = d.storm("set-log-level", "Numbers", "itest.sink=LOUD")
        assert r.returncode == 2 and "'LOUD' is not one of" in r.stderr, r.stderr


@pytest.mark.timeout(60)
def test_operating_commands_user_errors(tmp_path: Path) -> None:
    with Daemons(tmp_path) as d:
        assert_user_error(d.storm("nimbuses"), "nimbus is unreachable")
        d.start_nimbus()
        assert_user_error(d.storm("set-log-level", "nope", "ROOT=INFO"), "no topology named 'nope'")
        assert_user_error(d.storm("set-log-level", "nope"), "nothing to change")
        assert_user_error(d.storm("set-log-level", "nope", "ROOT=LOUD"), "'LOUD' is not one of")
        assert_user_error(d.storm("set-log-level", "nope", "-r", "bad name"), "logger name")
        assert_user_error(d.storm("upgrade", "nope", NUMBERS), "no topology named 'nope'")
        assert_user_error(d.storm("upgrade", "nope", str(tmp_path / "missing.py")), "does not exist")
        r = d.storm("nimbuses")
        assert r.returncode == 0 and "leader" in r.stdout, r.stdout + r.stderr
