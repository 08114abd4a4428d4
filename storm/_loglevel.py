"""Live log levels of a running topology (`storm set-log-level`, as Storm's
set_log_level): parsing `LOGGER=LEVEL[:SECONDS]`, the record nimbus keeps per
topology (level and expiry per logger, expired by nimbus's pass), and `apply`,
which a worker calls with the whole map its supervisor sends in a
`["log-level", {logger: level}]` control message.

The map is declarative: a logger missing from it goes back to the level it had
before the first change, so a lost or repeated message never leaves a level
behind. Nothing here knows sockets or the cluster state."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TypedDict

from ._errors import ConfigError

# Storm's (log4j's) names beside Python's; OFF silences a logger.
LEVELS: dict[str, int] = {
    "ALL": logging.NOTSET + 1, "TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
    "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL, "OFF": logging.CRITICAL + 10,
}
ROOT = "ROOT"  # Storm's name for the root logger
_LOGGER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class LogLevel(TypedDict):
    """One logger's level in a topology's record; `until` is a wall-clock time, 0 for no timeout."""

    level: str
    until: float


def check_logger(name: str) -> str:
    if not _LOGGER_RE.match(name):
        raise ConfigError(f"logger name {name!r} is invalid: use a dotted name like myapp.parser, or ROOT")
    return name


def parse_setting(item: str) -> tuple[str, str, float]:
    """'LOGGER=LEVEL[:SECONDS]' -> (logger, LEVEL, seconds or 0)."""
    logger, sep, rest = item.partition("=")
    if not sep or not logger.strip() or not rest.strip():
        raise ConfigError(f"bad log level '{item}': write it as LOGGER=LEVEL[:SECONDS], e.g. ROOT=DEBUG:30")
    level, _, secs = rest.partition(":")
    level = level.strip().upper()
    if level not in LEVELS:
        raise ConfigError(f"bad log level '{item}': {level!r} is not one of {', '.join(LEVELS)}")
    timeout = 0.0
    if secs.strip():
        try:
            timeout = float(secs)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise ConfigError(f"bad log level '{item}': the timeout must be a number of seconds > 0")
    return check_logger(logger.strip()), level, timeout


def current(levels: Mapping[str, LogLevel]) -> dict[str, str]:
    """The {logger: level} map workers are told."""
    return {name: v["level"] for name, v in sorted(levels.items())}


def expire(levels: Mapping[str, LogLevel], now: float) -> dict[str, LogLevel]:
    """The settings still in force at wall-clock time `now`."""
    return {name: v for name, v in levels.items() if not v["until"] or v["until"] > now}


# -- the worker's side -------------------------------------------------------------------
# logger name -> its level before the first change: what a reset restores.
_original: dict[str, int] = {}


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == ROOT else logging.getLogger(name)


def apply(levels: object) -> None:
    """Make this process's loggers match `levels` ({logger: LEVEL}); loggers
    changed earlier and absent now get their first level back. A malformed map
    is ignored: a control message must never stop a worker."""
    if not isinstance(levels, dict):
        return
    wanted = {str(k): str(v).upper() for k, v in levels.items()
              if isinstance(k, str) and _LOGGER_RE.match(k) and str(v).upper() in LEVELS}
    for name in [n for n in _original if n not in wanted]:
        _logger(name).setLevel(_original.pop(name))
        logging.getLogger("storm.worker").info("log level of %s reset to %s", name,
                                               logging.getLevelName(_logger(name).level))
    for name, level in wanted.items():
        logger = _logger(name)
        if name not in _original:
            _original[name] = logger.level
        if logger.level != LEVELS[level]:
            logger.setLevel(LEVELS[level])
            logging.getLogger("storm.worker").info("log level of %s set to %s", name, level)
