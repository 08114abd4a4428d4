"""`storm trace NAME`: the sampled tuple trees of a running topology
(topology.debug.sample), read from what `storm local` writes next to its entry
in the registry of running local topologies, or else from nimbus (its `trace`
request), printed as trees (rich Tree) or as JSON. Registered in _app.py."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from .._config import parse_overrides
from .._errors import StormError
from .._registry import running_local
from .._serialization import unpack
from .._trace import build_trees, render_tree, trace_file
from ._app import app, fail
from ._cluster import ConfFileOpt, ConfigOpt, NameArg, _client, _conf

OFF_HINT = ("tracing is off for topology '{name}': set topology.debug.sample to the share of spout "
            "tuple trees to record, e.g. -c topology.debug.sample=0.01 (it needs acking on)")


def fetch_traces(name: str, config: list[str] | None, conf_file: str | None, limit: int | None
                 ) -> dict[str, Any]:
    """{"name", "sample", "error", "trees"} of topology `name`: a `storm local` run
    of this machine first, else nimbus."""
    local_dir = parse_overrides(config or []).get("storm.local.dir")
    if name in running_local(local_dir):
        path = trace_file(local_dir, name)
        try:
            snap = unpack(path.read_bytes())
        except FileNotFoundError:
            raise StormError(f"`storm local` runs topology '{name}' but wrote no traces ({path}); "
                             "is it an older version of storm?") from None
        except (OSError, ValueError) as exc:
            raise StormError(f"cannot read the traces of '{name}' from {path}: {exc}") from None
        return {"name": name, "sample": float(snap.get("sample") or 0.0), "error": snap.get("error"),
                "trees": build_trees(snap.get("events") or [], limit), "source": str(path)}
    conf, _ = _conf(conf_file, config)
    data: dict[str, Any] = _client(conf).call("trace", name=name, limit=limit or 0)
    data["source"] = "nimbus"
    return data


def _check(data: dict[str, Any], name: str) -> None:
    if data.get("error"):
        raise StormError(f"topology '{name}': {data['error']}")
    if data.get("sample") is None:
        raise StormError(f"the workers of topology '{name}' have not reported yet; try again in a moment")
    if not data.get("sample"):
        raise StormError(OFF_HINT.format(name=name))


@app.command()
def trace(
    name: NameArg,
    sample: Annotated[int, typer.Option("--sample", "-n", min=1,
                                        help="How many sampled trees to show, most recent first.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trees as JSON (for scripts).")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new trees as they complete "
                                                                "(Ctrl-C stops).")] = False,
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.1,
                                            help="Seconds between polls with --follow.")] = 1.0,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Show the tuple trees of a sampled share of spout tuples (topology.debug.sample):
    every bolt a tuple went through, with stream, values, times and ack/fail."""
    console = Console(highlight=False)
    try:
        data = fetch_traces(name, config, conf_file, sample)
        _check(data, name)
        trees = data.get("trees") or []
        if not follow:
            if as_json:
                print(json.dumps({k: data.get(k) for k in ("name", "sample", "trees")}, indent=2, sort_keys=True))
                return
            if not trees:
                console.print(f"no sampled tuple trees of '{name}' yet (topology.debug.sample="
                              f"{data.get('sample')}); try again in a moment", style="yellow")
                return
            console.print(f"{len(trees)} most recent sampled tuple tree(s) of '{name}' "
                          f"(topology.debug.sample={data.get('sample')})", style="bold")
            for t in trees:
                console.print(render_tree(t))
            return
        shown: dict[str, str] = {}
        first = True
        while True:
            # Oldest first, so a followed stream reads in time order; a tree is
            # printed again when its outcome changes (pending -> acked).
            for t in reversed(trees):
                key = t["root"]
                state = f"{t.get('outcome')}/{t.get('events')}"
                if shown.get(key) == state or (t.get("outcome") == "pending" and not first):
                    continue
                shown[key] = state
                if as_json:
                    print(json.dumps(t, sort_keys=True), flush=True)
                else:
                    console.print(render_tree(t))
            first = False
            time.sleep(interval)
            data = fetch_traces(name, config, conf_file, None)
            _check(data, name)
            trees = data.get("trees") or []
    except StormError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        pass
