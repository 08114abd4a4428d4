"""Finding a topology from what a user names on the command line or passes to
LocalCluster: `file.py`, `file.py:Name`, `package.module:Name`, a YAML topology
file (`topology.yaml`, see storm.yaml_topology), or a Topology class. Every
worker process resolves the same target the same way."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ._errors import StormError, TargetError
from ._topology import Topology, TopologyBuilder, TopologySpec


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    modname = f"storm_target_{path.stem}_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load '{path}' as Python; name a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except StormError:
        del sys.modules[modname]
        raise
    except SyntaxError as exc:
        del sys.modules[modname]
        raise TargetError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[modname]
        raise TargetError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from exc
    return module


def _candidates(module: ModuleType) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(value) and issubclass(value, Topology) and value is not Topology:
            if value.__module__ == module.__name__:
                found[name] = value
        elif isinstance(value, (TopologySpec, TopologyBuilder)):
            found[name] = value
    return found


def is_file_target(path_part: str) -> bool:
    """Whether the part of a target before ':' names a file (not a module)."""
    return path_part.endswith((".py", ".yaml", ".yml")) or "/" in path_part


def load_target(target: str) -> Any:
    """Return the object a target names (a Topology class, spec, builder or
    function, or a YamlTopology)."""
    if not isinstance(target, str) or not target:
        raise TargetError("no topology target given; name a file like topologies/wordcount.py")
    path_part, _, attr = target.partition(":")
    if path_part.endswith((".yaml", ".yml")):
        from .yaml_topology import YamlTopology

        path = Path(path_part)
        if not path.is_file():
            raise TargetError(f"topology file '{path_part}' does not exist" if not path.exists()
                              else f"topology target '{path_part}' is not a file")
        if attr:
            raise TargetError(f"'{target}': a YAML file declares one topology; name the file alone")
        return YamlTopology(path)
    if is_file_target(path_part):
        path = Path(path_part)
        if not path.exists():
            raise TargetError(f"topology file '{path_part}' does not exist")
        if not path.is_file():
            raise TargetError(f"topology target '{path_part}' is not a file")
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(path_part)
        except ModuleNotFoundError as exc:
            raise TargetError(
                f"cannot import module '{path_part}' ({exc}); name a .py file or an importable module"
            ) from exc
        except Exception as exc:
            raise TargetError(f"importing '{path_part}' raised {type(exc).__name__}: {exc}") from exc
    if attr:
        obj = getattr(module, attr, None)
        if obj is None:
            raise TargetError(f"'{path_part}' has no attribute '{attr}'")
        return obj
    found = _candidates(module)
    if "topology" in found:
        return found["topology"]
    if not found:
        raise TargetError(
            f"no topology found in '{path_part}'; define a storm.Topology subclass or a "
            "module-level TopologySpec"
        )
    if len(found) > 1:
        names = ", ".join(sorted(found))
        raise TargetError(f"'{path_part}' defines several topologies ({names}); name one as {path_part}:NAME")
    return next(iter(found.values()))


def build_target(obj: Any, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
    """Turn what a target named into a validated TopologySpec."""
    from .yaml_topology import YamlTopology

    if isinstance(obj, YamlTopology):
        return obj.build(overrides)
    if inspect.isclass(obj) and issubclass(obj, Topology):
        return obj.build(overrides)
    if isinstance(obj, TopologyBuilder):
        return obj.build(overrides)
    if isinstance(obj, TopologySpec):
        return obj.with_config(overrides or {}) if overrides else obj
    if callable(obj):
        # A function may take the config overrides, to shape the topology by them.
        try:
            takes_conf = bool(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            takes_conf = False
        made = obj(dict(overrides or {})) if takes_conf else obj()
        return build_target(made, overrides)
    raise TargetError(f"{obj!r} is not a topology; expected a Topology subclass, a TopologyBuilder or a TopologySpec")


def target_of(topology: Any) -> str:
    """The target string worker processes use to re-create `topology`."""
    if isinstance(topology, str):
        return topology
    if inspect.isclass(topology) and issubclass(topology, Topology):
        if "<locals>" in topology.__qualname__:
            raise TargetError(
                f"topology class {topology.__qualname__} is defined inside a function; worker "
                "processes must import it, so define it at module level"
            )
        module = sys.modules.get(topology.__module__)
        file = getattr(module, "__file__", None)
        if file:
            return f"{file}:{topology.__qualname__}"
        return f"{topology.__module__}:{topology.__qualname__}"
    raise TargetError(
        "worker processes need to import the topology: pass a Topology subclass defined at "
        "module level, or a target string such as 'path/to/file.py:name'"
    )


def fingerprint(spec: TopologySpec) -> str:
    """A digest of the spec's shape; workers check they built the same topology."""
    h = hashlib.sha1()
    # Sorted, so the digest does not depend on declaration order.
    for c in sorted(spec.components.values(), key=lambda c: c.name):
        h.update(f"{c.name}|{c.par}|{c.tasks}|{sorted(c.outputs)}|".encode())
        for s in sorted(c.inputs, key=lambda s: (s.source, s.stream)):
            h.update(f"{s.source}.{s.stream}>{s.grouping.describe()};".encode())
    return h.hexdigest()
