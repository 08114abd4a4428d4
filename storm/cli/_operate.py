"""Commands that operate a running cluster: `storm nimbuses` (which nimbus
leads), `storm upgrade` (a rolling code upgrade of a running topology, with a
dry run and a --wait that follows it) and `storm set-log-level` (loggers'
levels in a topology's workers). Each turns a StormError into one red line and
exit code 2, as the other cluster commands do; the work is nimbus's
(storm.daemon._upgrade, storm._loglevel, storm.daemon._leader)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._errors import ConfigError, StormError
from ._app import app
from ._cluster import (
    ConfFileOpt,
    ConfigOpt,
    NameArg,
    _client,
    _conf,
    _console,
    _duration,
    _user_errors,
)

if TYPE_CHECKING:
    from ..daemon._client import NimbusClient
    from ..daemon._records import UpgradeAnswer


@app.command()
def upgrade(
    name: NameArg,
    target: Annotated[str, typer.Argument(
        metavar="TARGET", help="The new code: a file (topologies/wordcount.py), file.py:Name, or module:Name.",
        show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the new code and print the plan; change nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the upgrade until it is over (or rolled back).")] = False,
    rebalance: Annotated[bool, typer.Option(
        "--rebalance", help="Apply a layout change (a component added, removed or renamed, fields or a grouping "
                            "changed) with a stop: checkpoint, stop every worker, start them on the new code; "
                            "components that keep their names keep their state.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds --wait waits at most.")] = 600.0,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Move a running topology to new code, one worker at a time, without a stop.

    The new code must keep the topology's layout (components, stream fields,
    groupings); stateful bolts checkpoint, then each worker is stopped, started
    on the new code (stateful bolts restore that checkpoint, unacked tuples are
    replayed) and seen healthy before the next one goes. A worker that fails on
    the new code rolls the upgrade back. With --rebalance a layout change is
    applied with a stop of every worker instead of refused."""
    from ..daemon._code import package_target
    from ..daemon._conf import topology_overrides

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    console = _console()
    with _user_errors():
        conf, overrides = _conf(conf_file, config)
        topo_conf = topology_overrides(overrides)
        topo_conf["topology.name"] = name
        client = _client(conf)
        client.endpoint()
        pkg, _spec = package_target(target, topo_conf)
        reply = client.upgrade(name, pkg.target, pkg.archive, pkg.sha256, topo_conf, dry_run=dry_run,
                               rebalance=rebalance)
    if reply.get("stop"):
        _layout_upgrade(client, name, reply, pkg.sha256, dry_run, wait, timeout, console)
        return
    if rebalance:
        console.print("no layout change: a rolling upgrade, no stop (--rebalance is not needed)", soft_wrap=True)
    save = "checkpoint (stateful bolts save their state), " if reply.get("checkpoint") else ""
    head = (f"topology '{name}': code v{reply['from']} -> v{reply['to']} ({pkg.sha256[:12]}"
            f"{', the same code' if reply['same_code'] else ''}), {len(reply['plan'])} worker(s) one at a time")
    if dry_run:
        console.print(f"plan (dry run, nothing changed): {head}", soft_wrap=True)
        for i, st in enumerate(reply["plan"], 1):
            console.print(f"  {i}. worker {st['index']} on {st['host']}:{st['port']} "
                          f"({', '.join(st['components']) or 'system tasks'}): {save}stop, start on the new code, "
                          "wait until healthy", soft_wrap=True)
        return
    console.print(f"upgrading {head}", soft_wrap=True)
    if not wait:
        console.print("follow it with: storm list", soft_wrap=True)
        return
    with _user_errors():
        _follow_upgrade(client, name, int(reply["to"]), len(reply["plan"]), timeout, console)


_LAYOUT_PHASES = {
    "checkpoint": "checkpoint: waiting until the stateful bolts' state is committed",
    "wait": "deactivating the spouts",
    "stopping": "stopping every worker of the topology",
}


def _layout_upgrade(client: NimbusClient, name: str, reply: UpgradeAnswer, sha: str, dry_run: bool, wait: bool,
                    timeout: float, console: Console) -> None:
    """storm upgrade --rebalance with a layout change: the plan, and its progress."""
    n = reply["workers"]
    head = (f"topology '{name}': code v{reply['from']} -> v{reply['to']} ({sha[:12]}) with a new layout: "
            f"{'; '.join(reply['layout'])}")
    kept = ", ".join(reply.get("state_kept") or []) or "none"
    steps = []
    if reply.get("checkpoint"):
        steps.append("checkpoint: stateful bolts save their state; wait until it commits")
    steps.append(f"deactivate the spouts and stop all {n} worker(s): the topology stops, as --rebalance asked")
    steps.append(f"start {n} worker(s) on the new code; state restored for {kept}"
                 + (f", new state for {', '.join(reply['state_new'])}" if reply.get("state_new") else "")
                 + (f", state left behind for {', '.join(reply['state_dropped'])}" if reply.get("state_dropped") else "")
                 + "; tuples not acked before the stop are replayed by the spouts")
    if dry_run:
        console.print(f"plan (dry run, nothing changed): {head}", soft_wrap=True)
        for i, text in enumerate(steps, 1):
            console.print(f"  {i}. {text}", soft_wrap=True)
        return
    console.print(Text(f"upgrading {head}; every worker of the topology stops (--rebalance)", style="yellow"),
                  soft_wrap=True)
    if not wait:
        console.print("follow it with: storm list", soft_wrap=True)
        return
    version = int(reply["to"])
    deadline = time.monotonic() + timeout
    last = None
    with _user_errors():
        while True:
            topo = client.info(name)["topology"]
            rb = topo.get("rebalance")
            if rb is not None and "upgrade" in rb:
                if rb["phase"] != last:
                    last = rb["phase"]
                    console.print(_LAYOUT_PHASES.get(last, last), soft_wrap=True)
            else:
                _check_ended(topo, name, version, "was given up")
                row = next((t for t in client.topologies()["topologies"] if t["name"] == name), None)
                if row is not None and row["code_version"] == version and row["running"] >= row["workers"]:
                    break
            if time.monotonic() > deadline:
                raise StormError(f"the upgrade of '{name}' is still under way after {timeout:g}s; see storm list")
            time.sleep(0.5)
    console.print(Text(f"topology '{name}' runs code v{version} on every worker (its workers were stopped and "
                       "started again: --rebalance)", style="green"), soft_wrap=True)


def _check_ended(topo: Mapping[str, Any], name: str, version: int, undone: str) -> None:
    """An upgrade to `version` that nimbus no longer runs: StormError unless it
    ended well (`undone` says what became of a failed one)."""
    done = topo.get("last_upgrade")
    if done is None or done.get("code_version") != version:
        raise StormError(f"the upgrade of '{name}' to code v{version} is no longer known to nimbus")
    if not done.get("ok"):
        raise StormError(f"the upgrade of '{name}' to code v{version} failed and {undone}: "
                         f"{done.get('reason')}")


def _follow_upgrade(client: NimbusClient, name: str, version: int, workers: int, timeout: float, console: Console) -> None:
    """Poll nimbus until the upgrade to `version` is over: a progress bar in a
    terminal, a line per change otherwise; StormError when it was rolled back."""
    from rich.progress import BarColumn, Progress, TextColumn

    deadline = time.monotonic() + timeout
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   console=console, transient=True) if console.is_terminal else None
    task = bar.add_task(f"upgrading {name}", total=workers) if bar is not None else None
    last = None
    try:
        if bar is not None:
            bar.start()
        while True:
            topo = client.info(name)["topology"]
            up = topo.get("upgrade")
            if up is None:
                _check_ended(topo, name, version, "was rolled back")
                break
            line = (up["phase"], up["step"])
            if line != last:
                last = line
                if bar is not None and task is not None:
                    bar.update(task, completed=up["step"], description=f"upgrading {name} ({up['phase']})")
                else:
                    where = up["order"][min(up["step"], len(up["order"]) - 1)]
                    console.print(f"{up['phase']}: {up['step']}/{len(up['order'])} worker(s) moved"
                                  + (f", worker {where} next" if up["phase"] in ("next", "replacing") else
                                     f" ({up.get('reason')})"), soft_wrap=True)
            if time.monotonic() > deadline:
                raise StormError(f"the upgrade of '{name}' is still under way after {timeout:g}s; see storm list")
            time.sleep(0.5)
    finally:
        if bar is not None:
            bar.stop()
    console.print(Text(f"topology '{name}' runs code v{version} on every worker", style="green"), soft_wrap=True)


@app.command("set-log-level")
def set_log_level(
    name: NameArg,
    settings: Annotated[list[str] | None, typer.Argument(
        metavar="LOGGER=LEVEL[:SECONDS]...", help="Loggers to set (ROOT is the root logger), e.g. ROOT=DEBUG:30; "
                                                 "with SECONDS the level reverts after that long.",
        show_default=False)] = None,
    reset: Annotated[list[str] | None, typer.Option(
        "--reset", "-r", metavar="LOGGER", help="Put a logger back to its level before any change (repeatable).")] = None,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Change log levels in every worker of a running topology, without a restart."""
    from .._loglevel import check_logger, parse_setting

    with _user_errors():
        if not settings and not reset:
            raise ConfigError("nothing to change: give LOGGER=LEVEL[:SECONDS] and/or -r LOGGER")
        for item in settings or []:
            parse_setting(item)
        for logger in reset or []:
            check_logger(logger)
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).set_log_level(name, settings or [], reset or [])
    levels = reply["levels"]
    now = time.time()
    text = ", ".join(f"{k}={v['level']}" + (f" for {max(v['until'] - now, 0):.0f}s" if v["until"] else "")
                     for k, v in sorted(levels.items())) or "none (every logger at its own level)"
    _console().print(f"log levels of topology '{reply['name']}': {text}", soft_wrap=True)


@app.command()
def nimbuses(config: ConfigOpt = None, conf_file: ConfFileOpt = None) -> None:
    """List the nimbus processes of the cluster and which one leads."""
    console = _console()
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).nimbuses()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("nimbus", "host", "role", "alive", "pid", "uptime", "version"):
        table.add_column(col)
    now = time.time()
    for n in reply["nimbuses"]:
        missing = n.get("missing_code") or []
        role = Text("leader", style="bold green") if n["leader"] else Text(
            f"follower (waiting for the code of {', '.join(missing)})" if missing else "follower")
        table.add_row(n["id"], str(n.get("hostname") or ""), role,
                      Text("yes", style="green") if n["alive"] else Text("no", style="red"), str(n.get("pid") or ""),
                      _duration(max(now - float(n.get("started") or now), 0)), str(n.get("version") or ""))
    console.print(table)
    if not reply.get("leader"):
        console.print(Text("no nimbus leads right now (an election takes up to storm.zookeeper.session.timeout)",
                           style="yellow"), soft_wrap=True)
