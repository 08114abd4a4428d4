"""`storm visualize TARGET|NAME`: the topology graph (components, parallelism,
streams and their groupings) as a tree in the terminal, or Graphviz DOT with
`--dot`. A TARGET is built locally as `storm local` would; a NAME is asked of
nimbus, which knows components and parallelism but not the edges. Pure
rendering functions (`graph_of`, `render_tree`, `render_dot`) plus the command."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from .._errors import StormError
from .._topology import TopologySpec
from ._app import app, fail
from ._cluster import ConfFileOpt, ConfigOpt, _client, _conf
from ._targets import FilterOpt


@dataclass
class Edge:
    source: str
    stream: str
    target: str
    grouping: str


@dataclass
class Graph:
    name: str
    components: dict[str, tuple[str, int]]  # name -> (kind, parallelism), data-flow order
    edges: list[Edge] = field(default_factory=list)
    workers: int = 0
    edges_known: bool = True


def graph_of(spec: TopologySpec, system: bool = False) -> Graph:
    """The graph of a built topology (system components and streams only with `system`)."""
    from ._run import flow_order

    order = flow_order(spec)
    comps = {}
    for cname in sorted(spec.components, key=lambda n: order.get(n, len(order))):
        c = spec.components[cname]
        if c.system and not system:
            continue
        comps[cname] = ("spout" if c.is_spout else "bolt", c.par)
    edges = []
    for cname, c in spec.components.items():
        for sub in c.inputs:
            if sub.source not in comps or cname not in comps:
                continue
            if sub.stream.startswith("__") and not system:
                continue
            edges.append(Edge(sub.source, sub.stream, cname, sub.grouping.describe()))
    edges.sort(key=lambda e: (list(comps).index(e.source), list(comps).index(e.target), e.stream))
    return Graph(spec.name, comps, edges, int(spec.config.get("topology.workers") or 1))


def render_tree(g: Graph) -> Tree:
    tree = Tree(Text.assemble((g.name, "bold"), f"  {g.workers} worker(s), "
                              f"{sum(p for _, p in g.components.values())} executor(s)"))
    for cname, (kind, par) in g.components.items():
        node = tree.add(Text.assemble((cname, "bold cyan" if kind == "spout" else "bold"), f"  {kind} ×{par}"))
        for e in g.edges:
            if e.source == cname:
                node.add(Text.assemble(f"{e.stream} ", (f"─{e.grouping}→ ", "dim"), e.target,
                                       f" ×{g.components[e.target][1]}"))
    if not g.edges_known:
        tree.add(Text("(streams are not known to nimbus: visualize the TARGET for them)", style="dim"))
    return tree


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(g: Graph) -> str:
    lines = [f"digraph {_q(g.name)} {{", "  rankdir=LR;", "  node [fontname=\"Helvetica\"];"]
    for cname, (kind, par) in g.components.items():
        shape = "ellipse" if kind == "spout" else "box"
        lines.append(f"  {_q(cname)} [shape={shape}, label={_q(f'{cname} ({kind} x{par})')}];")
    for e in g.edges:
        lines.append(f"  {_q(e.source)} -> {_q(e.target)} [label={_q(f'{e.stream}: {e.grouping}')}];")
    lines.append("}")
    return "\n".join(lines)


def _is_target(arg: str) -> bool:
    return arg.endswith((".py", ".yaml", ".yml")) or ":" in arg or os.sep in arg or os.path.exists(arg)


@app.command()
def visualize(
    target: Annotated[str, typer.Argument(metavar="TARGET|NAME", show_default=False,
                                          help="A topology file / file.py:Name / module:Name / topology.yaml, or the name "
                                               "of a topology running on the cluster.")],
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT instead of a tree.")] = False,
    system: Annotated[bool, typer.Option("--system", help="Include system components (ackers).")] = False,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
    filter_file: FilterOpt = None,
) -> None:
    """Show a topology's graph: components, parallelism, streams and groupings."""
    try:
        if _is_target(target):
            import sys

            from .._config import parse_overrides
            from .._target import build_target, load_target
            from ._targets import with_yaml_variables

            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            overrides = with_yaml_variables(target, parse_overrides(config or []), filter_file)
            g = graph_of(build_target(load_target(target), overrides), system)
        else:
            conf, _ = _conf(conf_file, config)
            topo = _client(conf).call("info", name=target)["topology"]
            comps = {n: ("spout" if c["spout"] else "bolt", int(c["par"]))
                     for n, c in topo["components"].items() if system or not c.get("system")}
            g = Graph(topo["name"], dict(sorted(comps.items(), key=lambda kv: (kv[1][0] != "spout", kv[0]))),
                      [], int(topo.get("workers") or 0), edges_known=False)
    except StormError as exc:
        raise fail(str(exc)) from None
    if dot:
        print(render_dot(g))
    else:
        Console(highlight=False).print(render_tree(g))
