"""Live log levels: parsing LOGGER=LEVEL[:SECONDS], nimbus's record of them
(kept in the topology and its assignment, expired by nimbus's pass, no new
assignment version so no worker restarts), and the worker's side, which makes
its loggers match the whole map it is sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_nimbus import add_supervisor, assignment, call, submit

from storm import _config, _loglevel
from storm._errors import ConfigError
from storm.daemon._nimbus import Nimbus
from storm.daemon._state import SqliteState, paths


@pytest.fixture
def nimbus(tmp_path: Path) -> Iterator[Nimbus]:
    n = Nimbus(_config.merge({"storm.local.dir": str(tmp_path / "local")}), SqliteState(tmp_path / "state.sqlite"))
    yield n
    n.state.close()


def test_parse_setting() -> None:
    assert _loglevel.parse_setting("ROOT=debug:30") == ("ROOT", "DEBUG", 30.0)
    assert _loglevel.parse_setting("myapp.parser=WARN") == ("myapp.parser", "WARN", 0.0)
    for bad, needle in (("ROOT", "LOGGER=LEVEL"), ("ROOT=LOUD", "'LOUD' is not one of"),
                        ("ROOT=DEBUG:-1", "timeout must be"), ("ROOT=DEBUG:x", "timeout must be"),
                        ("bad name=INFO", "logger name")):
        with pytest.raises(ConfigError, match=needle):
            _loglevel.parse_setting(bad)


@pytest.fixture
def loggers() -> Iterator[None]:
    root, app = logging.getLogger(), logging.getLogger("itest.app")
    saved = root.level, app.level
    yield
    _loglevel._original.clear()
    root.setLevel(saved[0])
    app.setLevel(saved[1])


def test_apply_sets_and_a_missing_logger_gets_its_first_level_back(loggers: None) -> None:
    root, app = logging.getLogger(), logging.getLogger("itest.app")
    root.setLevel(logging.INFO)
    app.setLevel(logging.NOTSET)
    _loglevel.apply({"ROOT": "DEBUG", "itest.app": "ERROR"})
    assert root.level == logging.DEBUG and app.level == logging.ERROR
    _loglevel.apply({"ROOT": "WARN", "itest.app": "ERROR"})  # a second change keeps the first level to restore
    assert root.level == logging.WARNING
    _loglevel.apply({"itest.app": "ERROR"})
    assert root.level == logging.INFO and app.level == logging.ERROR
    _loglevel.apply({})
    assert app.level == logging.NOTSET
    for junk in (None, [1], {"ROOT": "LOUD"}, {3: "DEBUG"}):  # a bad message changes nothing, raises nothing
        _loglevel.apply(junk)
    assert root.level == logging.INFO


def test_nimbus_keeps_levels_in_the_assignment_and_expires_them(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700])
    assert submit(nimbus, tmp_path)["ok"]
    version = assignment(nimbus)["version"]
    reply = call(nimbus, "set_log_level", name="Pipe", set=["ROOT=DEBUG:30", "myapp=ERROR"])
    assert reply["ok"], reply
    assert assignment(nimbus)["log_levels"] == {"ROOT": "DEBUG", "myapp": "ERROR"}
    assert assignment(nimbus)["version"] == version  # no restart
    assert "is not one of" in call(nimbus, "set_log_level", name="Pipe", set=["ROOT=LOUD"])["error"]
    assert "no topology named" in call(nimbus, "set_log_level", name="Nope", set=["ROOT=INFO"])["error"]
    # the timeout passes: nimbus's pass drops ROOT and keeps myapp
    topo = nimbus.state.get_obj(paths.topology("Pipe"))
    topo["log_levels"]["ROOT"]["until"] = 1.0
    nimbus.state.put_obj(paths.topology("Pipe"), topo)
    nimbus.monitor()
    assert assignment(nimbus)["log_levels"] == {"myapp": "ERROR"}
    assert call(nimbus, "set_log_level", name="Pipe", reset=["myapp"])["levels"] == {}
    assert assignment(nimbus)["log_levels"] == {}
