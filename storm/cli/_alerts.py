"""`storm alerts`: alert rules run without writing Python. `check` validates a
rules file (every error, with its line); `run` starts the alerting topology on
this machine with sources and sinks given as URLs (as `storm local` does, with
the dashboard); `submit` sends the same topology to a cluster; `silence` mutes
a rule or one of its keys for a while; `list` shows a running topology's
rules with their firing and resolved keys. The rules file is watched while the
topology runs: an edit applies without a restart (storm.alerting._reload).

Registered on the app in _app.py; the topology is storm.alerting._topology."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._config import parse_overrides
from .._errors import StormError
from .._registry import running_local
from ..alerting import RULES_KEY
from ..alerting._reload import read_status, running_rules
from ..alerting._rules import check_rules_file
from ..alerting._silences import add_silence, load_silences, parse_duration, silences_path
from ..alerting._topology import SINKS_KEY, SOURCES_KEY, TARGET, default_name
from ..alerting._urls import SINK_SCHEMES, SOURCE_SCHEMES, check_urls
from ._app import EXIT_USER_ERROR, app, fail

alerts_app = typer.Typer(help="Run alert rules from a YAML file, without writing Python.",
                         no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

RulesArg = Annotated[str, typer.Argument(metavar="RULES.yaml", help="The rules file.", show_default=False)]
SourceOpt = Annotated[list[str] | None, typer.Option(
    "--source", "-s", metavar="URL",
    help="Where events come from (repeatable): " + ", ".join(SOURCE_SCHEMES.values()) + ".")]
SinkOpt = Annotated[list[str] | None, typer.Option(
    "--sink", metavar="URL",
    help="Where alert changes go (repeatable; default stdout:): " + ", ".join(SINK_SCHEMES.values()) + ".")]
ConfigOpt = Annotated[list[str] | None, typer.Option(
    "--config", "-c", metavar="KEY=VALUE", help="Override a config key (repeatable).")]
NameOpt = Annotated[str | None, typer.Option(
    "--name", "-n", help="Topology name (default: alerts-<rules file stem>).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", "-w", min=1, help="Worker processes.")]
FindRulesOpt = Annotated[str | None, typer.Option(
    "--rules", metavar="FILE", help="The rules file (default: the one of the alerting topology running here).")]


def _console() -> Console:
    return Console(highlight=False)


def _checked_rules(rules: str) -> Path:
    """The rules file as an absolute path (workers read it), after a check that
    prints every error and exits 2 when there is one."""
    path = Path(rules).resolve()
    ruleset, errors = check_rules_file(path)
    if ruleset is None:
        err = Console(stderr=True, highlight=False)
        for e in errors:
            err.print(f"error: {e}", style="bold red", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR)
    return path


def _topology_conf(rules: Path, sources: list[str] | None, sinks: list[str] | None) -> dict[str, Any]:
    if not sources:
        raise StormError("no event source: give at least one --source URL, e.g. "
                         "--source tail:///var/log/app.jsonl")
    sink_urls = list(sinks or ["stdout:"])
    check_urls(list(sources), sink_urls)
    return {RULES_KEY: str(rules), SOURCES_KEY: list(sources), SINKS_KEY: sink_urls}


@alerts_app.command()
def check(rules: RulesArg) -> None:
    """Validate a rules file: every error with its line, the rule and the field (exit 2)."""
    path = _checked_rules(rules)
    ruleset, _ = check_rules_file(path)
    assert ruleset is not None
    names = ", ".join(r.name for r in ruleset.rules)
    _console().print(f"ok: {rules}: {len(ruleset.rules)} rule(s) valid: {names}", soft_wrap=True)


@alerts_app.command()
def run(
    rules: RulesArg,
    source: SourceOpt = None,
    sink: SinkOpt = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", "-d", help="Stop after this many seconds (default: run until Ctrl-C).")] = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    name: NameOpt = None,
) -> None:
    """Run the alerting topology on this machine with the dashboard; Ctrl-C stops it.

    Edits of the rules file apply while it runs."""
    from ._run import run_local

    if duration is not None and duration <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint="'--duration'")
    path = _checked_rules(rules)
    console = _console()
    try:
        conf = parse_overrides(config or [])
        conf.update(_topology_conf(path, source, sink))
        if workers is not None:
            conf["topology.workers"] = workers
        conf["topology.name"] = name or default_name(path)
        console.print(f"rules: {path} (edits apply while it runs); silences: {silences_path(path)}",
                      soft_wrap=True)
        result = run_local(console, TARGET, conf, conf["topology.name"], duration)
    except StormError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(result.exit_code)


@alerts_app.command()
def submit(
    rules: RulesArg,
    source: SourceOpt = None,
    sink: SinkOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    name: NameOpt = None,
    conf_file: Annotated[str | None, typer.Option(
        "--conf-file", metavar="FILE", help="storm.yaml to read (default: $STORM_CONF_FILE, else "
                                            "~/.storm/storm.yaml).")] = None,
) -> None:
    """Submit the alerting topology to a cluster (as `storm submit`).

    Its workers
    read the rules file at the same absolute path: on a cluster of several
    hosts, a path every host shares."""
    from ._cluster import submit as submit_topology

    path = _checked_rules(rules)
    try:
        conf = _topology_conf(path, source, sink)
    except StormError as exc:
        raise fail(str(exc)) from None
    items = list(config or []) + [f"{k}={json.dumps(v)}" for k, v in conf.items()]
    submit_topology(target=TARGET, name=name or default_name(path), workers=workers, config=items,
                    conf_file=conf_file, filter_file=None)


def _find_rules(rules: str | None, name: str | None) -> tuple[Path, str]:
    """(rules file, topology name) from --rules/NAME, else from the alerting
    topology `storm local`/`storm alerts run` runs on this machine."""
    if rules is not None:
        path = Path(rules).resolve()
        return path, name or default_name(path)
    running = {n: e for n, e in running_local().items() if (e.get("overrides") or {}).get(RULES_KEY)}
    if name is not None:
        entry = running.get(name)
        if entry is None:
            shown = ", ".join(sorted(running)) or "none"
            raise StormError(f"no alerting topology '{name}' runs on this machine (running: {shown}); "
                             "for one on a cluster give its rules file with --rules FILE")
    elif len(running) == 1:
        name, entry = next(iter(running.items()))
    else:
        shown = ", ".join(sorted(running)) or "none"
        raise StormError(f"which alerting topology? running here: {shown}; name one, or give --rules FILE")
    raw = Path(str(entry["overrides"][RULES_KEY]))
    return (raw if raw.is_absolute() else Path(str(entry.get("cwd") or ".")) / raw), name


@alerts_app.command()
def silence(
    target: Annotated[str, typer.Argument(metavar="RULE[/KEY]", help="A rule, or one key of it.",
                                          show_default=False)],
    for_: Annotated[str, typer.Option("--for", metavar="DURATION", help="How long: 30m, 2h, 1h30m, 45s, 1d.")],
    rules: FindRulesOpt = None,
    name: NameOpt = None,
    comment: Annotated[str, typer.Option("--comment", help="Why (kept in the silences file).")] = "",
) -> None:
    """Mute a rule, or one key of it, for a while.

    Its firing state is kept, its notifications are not sent. The running evaluators see it within a second."""
    console = _console()
    try:
        seconds = parse_duration(for_)
        path, _ = _find_rules(rules, name)
        ruleset, errors = running_rules(path)
        if ruleset is None:
            raise StormError("; ".join(errors))
        rule, sep, key = target.partition("/")
        made = add_silence(path, [r.name for r in ruleset.rules], rule, key if sep else None, seconds, comment)
    except StormError as exc:
        raise fail(str(exc)) from None
    what = f"rule '{made.rule}'" + (f" key '{made.key}'" if made.key is not None else " (every key)")
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(made.until))
    console.print(f"silenced {what} until {until} ({_left(made.until - time.time())}); "
                  f"in {silences_path(path)}", soft_wrap=True)


def _left(secs: float) -> str:
    s = max(0, int(secs))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


@alerts_app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="The alerting topology (default: the one "
                                               "running here).", show_default=False)] = None,
    rules: FindRulesOpt = None,
) -> None:
    """Show a running alerting topology's rules with their firing and resolved keys."""
    console = _console()
    try:
        path, topo = _find_rules(rules, name)
        ruleset, errors = running_rules(path)
        silences = [s for s in load_silences(silences_path(path)) if s.until > time.time()]
    except StormError as exc:
        raise fail(str(exc)) from None
    status = read_status(path, topo)
    now = time.time()
    ages = [now - float(d.get("updated", 0)) for d in status]
    head = f"topology '{topo}' · rules {path}"
    if status:
        head += f" · {len(status)} evaluator task(s), updated {max(ages):.1f}s ago"
    console.print(Text(head, style="bold"), soft_wrap=True)
    if not status:
        console.print(Text(f"no evaluator status yet in {path.parent} (is '{topo}' running?)", style="yellow"),
                      soft_wrap=True)
    if errors:
        console.print(Text("the rules file does not check (the topology runs its last good rules): "
                           + "; ".join(errors), style="red"), soft_wrap=True)
    firing: dict[str, list[tuple[str, bool]]] = {}
    unlisted: dict[str, int] = {}  # firing keys a task counted but did not list
    resolved: dict[str, dict[str, float]] = {}
    for doc in status:
        for rule, st in (doc.get("rules") or {}).items():
            listed = [(str(k), bool(m)) for k, m in st.get("firing") or []]
            firing.setdefault(rule, []).extend(listed)
            unlisted[rule] = unlisted.get(rule, 0) + int(st.get("firing_count", len(listed))) - len(listed)
            resolved.setdefault(rule, {}).update(st.get("resolved") or {})
    names = [r.name for r in ruleset.rules] if ruleset is not None else sorted(firing)
    severity = {r.name: r.severity for r in ruleset.rules} if ruleset is not None else {}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("rule", "severity", "firing", "resolved (latest first)"):
        table.add_column(col)
    for rule in names + sorted(set(firing) - set(names)):
        keys = sorted(firing.get(rule, []))
        more = f" (+{unlisted[rule]} more)" if unlisted.get(rule) else ""
        fired = Text((", ".join(k + (" (silenced)" if muted else "") for k, muted in keys) or "-") + more,
                     style="bold red" if keys else "")
        now_firing = {k for k, _ in keys}
        res = [k for k, _ in sorted(resolved.get(rule, {}).items(), key=lambda kv: -kv[1])
               if k not in now_firing]
        table.add_row(rule, severity.get(rule, "?"), fired, Text(", ".join(res[:10]) or "-", style="green"))
    console.print(table)
    for s in silences:
        what = s.rule + (f"/{s.key}" if s.key is not None else "")
        note = f" ({s.comment})" if s.comment else ""
        console.print(f"silenced: {what} for {_left(s.until - now)} more{note}", soft_wrap=True)
    sys.stdout.flush()
