"""The `storm` command: a typer app whose commands parse and check what the user
typed, then hand over to the module that does the work. A user's mistake (any
StormError) ends as one red line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import platform
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from .. import StormError, __version__
from .._config import parse_overrides
from ._targets import DryRunOpt, FilterOpt

EXIT_USER_ERROR = 2

app = typer.Typer(
    name="storm",
    help="Storm-style stream processing in Python: run topologies of spouts and bolts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _stdout() -> Console:
    return Console(highlight=False)


def fail(message: str) -> typer.Exit:
    """Print `error: message` as one red line on stderr; return the Exit to raise."""
    # soft_wrap keeps a long message on one line instead of folding it at the width.
    Console(stderr=True, highlight=False).print(
        f"error: {message}", style="bold red", markup=False, soft_wrap=True
    )
    return typer.Exit(EXIT_USER_ERROR)


def _config(items: list[str] | None, workers: int | None) -> dict[str, Any]:
    config = parse_overrides(items or [])
    if workers is not None:
        config["topology.workers"] = workers
    return config


@app.command()
def local(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The topology: a file (topologies/wordcount.py), file.py:Name, module:Name, "
            "or a YAML topology file (topology.yaml).",
            show_default=False,
        ),
    ],
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (sets topology.workers)."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", "-d", help="Stop after this many seconds (default: run until Ctrl-C)."
        ),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            "-c",
            metavar="KEY=VALUE",
            help="Override a config key (repeatable), e.g. -c topology.max.spout.pending=1000.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Topology name (default: the class name).")
    ] = None,
    filter_file: FilterOpt = None,
    dry_run: DryRunOpt = False,
    rules: Annotated[
        str | None,
        typer.Option("--rules", metavar="FILE",
                     help="Alert rules file of an alerting topology (sets alerting.rules; "
                          "edits apply while it runs)."),
    ] = None,
) -> None:
    """Run a topology on this machine with a live dashboard; Ctrl-C stops it."""
    from ._run import run_local  # the runtime (zmq, workers) loads only for commands that run one
    from ._targets import dry_run as check_only
    from ._targets import with_yaml_variables

    if duration is not None and duration <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint="'--duration'")
    # As `python -m` does: a module:Name target may name a module in the current
    # directory. The workers inherit this path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    console = _stdout()
    try:
        conf = with_yaml_variables(target, _config(config, workers), filter_file)
        if rules:
            # Absolute: the workers read and watch the file whatever their directory.
            conf["alerting.rules"] = os.path.abspath(rules)
        if name:
            conf["topology.name"] = name
        if dry_run:
            check_only(console, target, conf)
            return
        result = run_local(console, target, conf, name, duration)
    except StormError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(result.exit_code)


@app.command()
def version() -> None:
    """Print the version of storm, of Python, and which build of the core runs."""
    from .._runtime import core_build

    print(f"storm {__version__} (Python {platform.python_version()}, {sys.executable}; "
          f"core: {core_build()})")


def main() -> None:
    """Entry point of the `storm` console script."""
    app()


# The cluster commands (nimbus, supervisor, submit, list, kill, ...) register
# themselves on `app`; imported last because they import `app` and `fail` from here.
# `storm query` (Trident states) registers itself on `app` too.
from . import (  # noqa: E402, F401
    _alerts,
    _cluster,  # noqa: E402, F401
    _monitor,
    _operate,
    _query,  # noqa: E402, F401
    _quickstart,
    _trace,  # noqa: E402, F401
    _visualize,
)
