"""`storm query TARGET STATE [KEY...]`: read the current values of a Trident
topology's persisted state (a pull query), straight from its backend, while the
topology runs or after. Only reads; never touches the topology's workers."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .. import StormError
from .._config import parse_overrides
from .._target import build_target, load_target
from ..trident._pipes import PersistPipe
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


@app.command()
def query(
    target: Annotated[str, typer.Argument(metavar="TARGET", show_default=False,
                                          help="The Trident topology (file.py, file.py:Name, module:Name).")],
    state: Annotated[str, typer.Argument(metavar="STATE", show_default=False,
                                         help="The state's name (persistent_aggregate(..., name=...)).")],
    keys: Annotated[list[str] | None, typer.Argument(
        metavar="KEY...", help="Group keys to read (one value, or a JSON list); none: the top --top.")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", metavar="KEY=VALUE", help="Config the topology is built with (as for storm local).")] = None,
    top: Annotated[int, typer.Option("--top", help="Without KEYs: how many keys, largest values first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Read the current values of a persisted Trident state."""
    try:
        spec = build_target(load_target(target), parse_overrides(config or []))
        states = persisted_states(spec)
        if state not in states:
            known = ", ".join(sorted(states)) or "none (not a Trident topology?)"
            raise StormError(f"topology '{spec.name}' has no state named '{state}'; its states: {known}")
        factory = states[state].factory
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
