"""Real-time alerting: rules as data (a YAML file), evaluated per key on event
time, with firing and resolving alerts deduplicated per key and a cooldown.

    >>> from storm.alerting import parse_rules, RuleEngine
    >>> rules = parse_rules({"rules": [{"name": "busy", "key": "host",
    ...     "condition": {"kind": "threshold", "aggregate": "count", "window": 10,
    ...                   "op": ">=", "value": 2}}]})
    >>> engine = RuleEngine(rules)
    >>> for ts in (1.0, 2.0):
    ...     _ = engine.observe("busy", "h1", ts, None)
    >>> [(a.state, a.key, a.value) for a in engine.advance(10.0)]
    [('firing', 'h1', 2.0)]
    >>> [(a.state, a.key) for a in engine.advance(20.0)]
    [('resolved', 'h1')]
"""

from ._bolts import (
    ALERT_FIELDS,
    IDLE_KEY,
    OBSERVATION_FIELDS,
    RULES_KEY,
    WATERMARK_STREAM,
    RuleEvalBolt,
    RuleMatchBolt,
    StatefulRuleEvalBolt,
    alerting_specs,
    rules_from_conf,
)
from ._engine import FIRING, RESOLVED, Alert, RuleEngine, StateSize, aggregate
from ._rules import (
    AGGREGATES,
    KINDS,
    Condition,
    Rule,
    RuleError,
    RuleSet,
    Step,
    load_rules,
    parse_rules,
)

__all__ = [
    "AGGREGATES",
    "ALERT_FIELDS",
    "FIRING",
    "IDLE_KEY",
    "KINDS",
    "OBSERVATION_FIELDS",
    "RESOLVED",
    "RULES_KEY",
    "WATERMARK_STREAM",
    "Alert",
    "Condition",
    "Rule",
    "RuleError",
    "RuleEngine",
    "RuleEvalBolt",
    "RuleMatchBolt",
    "RuleSet",
    "StateSize",
    "StatefulRuleEvalBolt",
    "Step",
    "aggregate",
    "alerting_specs",
    "load_rules",
    "parse_rules",
    "rules_from_conf",
]
