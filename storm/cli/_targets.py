"""What the commands that take a TARGET share: the `--filter FILE` and
`--dry-run` options, the `${...}` values of a YAML topology resolved on this
machine (they travel with the config, so the workers substitute the same
ones), and the dry run's report (the built graph, before any worker starts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.console import Console

from .._errors import StormError
from ..yaml_topology import YamlTopology, is_yaml_target, read_properties

FilterOpt = Annotated[
    str | None,
    typer.Option("--filter", metavar="FILE",
                 help="Properties (name=value lines, or a YAML mapping) for the ${name} "
                      "substitutions of a YAML topology file."),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Check the topology and print its graph; start no worker."),
]


def with_yaml_variables(target: str, config: Mapping[str, Any], filter_file: str | None) -> dict[str, Any]:
    """`config` plus, for a YAML target, the `${...}` values resolved here from
    the --filter file and the environment (a mistake in the file shows here)."""
    if not is_yaml_target(target):
        if filter_file is not None:
            raise StormError(f"--filter applies to YAML topology files; '{target}' is not one")
        return dict(config)
    properties = read_properties(filter_file) if filter_file is not None else {}
    return YamlTopology(target.partition(":")[0], properties).resolved_config(config)


def dry_run(console: Console, target: str, config: Mapping[str, Any]) -> None:
    """Build the topology as `storm local` would and print what it would run."""
    from .._target import build_target, load_target
    from ._visualize import graph_of, render_tree

    spec = build_target(load_target(target), dict(config))
    console.print(render_tree(graph_of(spec)))
    user = [c for c in spec.components.values() if not c.system]
    tasks = sum(c.par for c in user)
    console.print(f"ok: '{spec.name}' is valid: {len(user)} component(s) with "
                  f"{tasks} task(s) on {spec.config['topology.workers']} worker(s); no worker started",
                  highlight=False, soft_wrap=True)
