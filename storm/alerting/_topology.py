"""The topology `storm alerts run` and `storm alerts submit` start: the sources
named by URL -> match -> a checkpointed evaluator -> the sinks named by URL.
It is a target function (``storm.alerting._topology:alerts_topology``) shaped
by its config alone, so every worker, here or on a cluster's hosts, builds the
same topology from the config it is given:

``alerting.rules``    the rules file (an absolute path: workers read and watch it)
``alerting.sources``  the --source URLs (a list)
``alerting.sinks``    the --sink URLs (a list; default ``[stdout:]``)
``alerting.par``      tasks of the match and evaluate bolts (default 1)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import Grouping, TopologySpec
from .._errors import ConfigError
from .._topology import build_spec
from ..stateful import CheckpointSpout
from ._bolts import IDLE_KEY, RULES_KEY, WATERMARK_STREAM, RuleMatchBolt, StatefulRuleEvalBolt
from ._rules import RuleError, check_rules_file
from ._urls import component_names, sink_spec, source_spec

TARGET = "storm.alerting._topology:alerts_topology"
SOURCES_KEY = "alerting.sources"
SINKS_KEY = "alerting.sinks"
PAR_KEY = "alerting.par"
DEFAULTS: dict[str, Any] = {
    "topology.message.timeout.secs": 30.0,
    # Without events for 3 s, event time follows the wall clock (absence rules fire).
    IDLE_KEY: 3.0,
    "topology.state.checkpoint.interval.ms": 1000.0,
}
TICK = {"topology.tick.tuple.freq.secs": 0.5}


def default_name(rules_path: str | Path) -> str:
    """``alerts-<rules file stem>``, in the characters a topology name allows."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(rules_path).stem) or "rules"
    return f"alerts-{stem}"


def _urls(conf: Mapping[str, Any], key: str, default: list[str] | None) -> list[str]:
    raw = conf.get(key, default)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(u, str) and u for u in raw):
        raise ConfigError(f"config key '{key}' must be a list of URLs, got {raw!r}")
    return list(raw)


def alerts_topology(conf: Mapping[str, Any]) -> TopologySpec:
    """Build the alerting topology from its config (see the module docstring)."""
    path = conf.get(RULES_KEY)
    if not path:
        raise RuleError(f"no alert rules: set '{RULES_KEY}' to a rules file")
    rules, errors = check_rules_file(str(path))
    if rules is None:
        raise RuleError("; ".join(errors))
    sources = _urls(conf, SOURCES_KEY, None) if conf.get(SOURCES_KEY) else []
    if not sources:
        raise ConfigError("no event source: give at least one --source URL (e.g. tail:///var/log/app.jsonl)")
    sinks = _urls(conf, SINKS_KEY, ["stdout:"]) or ["stdout:"]
    par = conf.get(PAR_KEY, 1)
    if isinstance(par, bool) or not isinstance(par, int) or par < 1:
        raise ConfigError(f"config key '{PAR_KEY}' must be an integer >= 1, got {par!r}")
    spouts = [source_spec(u, n) for u, n in zip(sources, component_names(sources, "source"), strict=True)]
    checkpoint = CheckpointSpout.spec(name="checkpoint")
    match = RuleMatchBolt.spec(name="match", inputs=spouts, par=par, config=TICK)
    evaluate = StatefulRuleEvalBolt.spec(
        name="evaluate", inputs={match: Grouping.fields("rule", "key"), match[WATERMARK_STREAM]: Grouping.all()},
        par=par, config=TICK, checkpoints=checkpoint)
    outs = [sink_spec(u, n, [evaluate]) for u, n in zip(sinks, component_names(sinks, "sink"), strict=True)]
    config = {**DEFAULTS, **conf}
    return build_spec(default_name(str(path)), [*spouts, checkpoint, match, evaluate, *outs], config)
