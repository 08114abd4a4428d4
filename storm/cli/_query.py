"""`storm query TARGET STATE [KEY...]`: read the current values of a Trident
topology's persisted state (a pull query), straight from its backend, while the
topology runs or after. Only reads; never touches the topology's workers.

TARGET is a topology file or module (file.py, file.py:Name, module:Name: the
state is found by building it) or the NAME of a running topology: one that
`storm local` runs on this machine (its registry under storm.local.dir), else
one nimbus runs (nimbus describes the states from the stored code)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from .. import StormError
from .._config import parse_overrides
from .._registry import running_local
from .._target import build_target, load_target
from ..trident._pipes import PersistPipe
from ..trident._registry import factory_from_description
from ..trident._state import StateFactory
from ._app import app, fail


def persisted_states(spec: Any) -> dict[str, PersistPipe]:
    """{state name: its persist step} of a compiled Trident topology."""
    found: dict[str, PersistPipe] = {}
    for c in spec.components.values():
        for pipe in getattr(c.cls, "pipes", None) or ():
            if isinstance(pipe, PersistPipe):
                found[pipe.state_name] = pipe
    return found


def _key(text: str) -> list[Any]:
    """A KEY argument: a JSON list for a multi-field group key, else one value."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StormError(f"key {text!r} is not a JSON list: {exc}") from exc
        if isinstance(value, list):
            return value
    return [text]


def is_target(text: str) -> bool:
    """A topology file or module target rather than a running topology's name."""
    return ":" in text or text.endswith(".py") or "/" in text or os.path.exists(text)


def _states_by_name(name: str, config: list[str], conf_file: str | None) -> tuple[str, dict[str, Any]]:
    """(where, {state: description}) of the running topology `name`: a local
    one first, else nimbus's."""
    local = running_local(parse_overrides(config).get("storm.local.dir"))
    if name in local:
        return f"local topology '{name}'", local[name].get("states") or {}
    from ..daemon._client import NimbusUnreachable
    from ._cluster import _client, _conf

    conf, _ = _conf(conf_file, config)
    try:
        reply = _client(conf).call("trident_states", name=name)
    except NimbusUnreachable as exc:
        running = ", ".join(sorted(local)) or "none"
        raise StormError(f"no topology named '{name}' runs under storm local here (running: {running}), "
                         f"and {exc}") from None
    return f"cluster topology '{name}'", reply.get("states") or {}


def resolve_states(target: str, config: list[str], conf_file: str | None) -> tuple[str, dict[str, Any]]:
    """(the topology, {state name: factory or description})."""
    if is_target(target):
        spec = build_target(load_target(target), parse_overrides(config))
        return f"topology '{spec.name}'", {n: p.factory for n, p in persisted_states(spec).items()}
    return _states_by_name(target, config, conf_file)


@app.command()
def query(
    target: Annotated[str, typer.Argument(metavar="TARGET", show_default=False,
                                          help="The Trident topology (file.py, file.py:Name, module:Name) "
                                               "or the NAME of a running one (storm local or cluster).")],
    state: Annotated[str, typer.Argument(metavar="STATE", show_default=False,
                                         help="The state's name (persistent_aggregate(..., name=...)).")],
    keys: Annotated[list[str] | None, typer.Argument(
        metavar="KEY...", help="Group keys to read (one value, or a JSON list); none: the top --top.")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", metavar="KEY=VALUE",
        help="Config the topology is built with (as for storm local); with a NAME, the cluster's config "
             "(nimbus.seeds, storm.local.dir, ...).")] = None,
    conf_file: Annotated[str | None, typer.Option(
        "--conf-file", metavar="FILE", help="With a NAME: storm.yaml to read for reaching nimbus.")] = None,
    top: Annotated[int, typer.Option("--top", help="Without KEYs: how many keys, largest values first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Read the current values of a persisted Trident state."""
    try:
        where, states = resolve_states(target, config or [], conf_file)
        if state not in states:
            known = ", ".join(sorted(states)) or "none (not a Trident topology?)"
            raise StormError(f"{where} has no state named '{state}'; its states: {known}")
        found = states[state]
        factory = found if isinstance(found, StateFactory) else factory_from_description(state, found, where)
        rows: list[tuple[Any, Any]]
        if keys:
            wanted = [_key(k) for k in keys]
            values = factory.read(wanted)
            rows = [(w[0] if len(w) == 1 else w, v) for w, v in zip(wanted, values, strict=True)]
        else:
            everything = factory.read_all()
            ordered = sorted(everything.items(), key=lambda kv: (-kv[1], kv[0])
                             if isinstance(kv[1], (int, float)) else (0, kv[0]))[:top]
            rows = []
            for k, v in ordered:
                decoded = json.loads(k)
                rows.append((decoded[0] if len(decoded) == 1 else decoded, v))
    except StormError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # a backend that cannot be reached, a missing table
        raise fail(f"reading state '{state}': {type(exc).__name__}: {exc}") from None
    if as_json:
        print(json.dumps({json.dumps(k) if isinstance(k, list) else str(k): v for k, v in rows}))
        return
    # Plain tab-separated lines (not rich, which would expand the tabs): easy to pipe.
    for key, v in rows:
        print(f"{json.dumps(key) if isinstance(key, list) else key}\t{json.dumps(v)}")
