"""The cluster configuration a daemon or the CLI runs with: conf/defaults.yaml,
then storm.yaml, then `-c key=value`. storm.yaml is the file named by
--conf-file, else $STORM_CONF_FILE, else ~/.storm/storm.yaml when it exists."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .. import _config
from .._errors import ConfigError

# Keys that configure the cluster (where nimbus is, the state store), not a
# topology: `storm submit -c` uses them to reach nimbus and does not pass them on.
CLUSTER_PREFIXES = ("nimbus.", "supervisor.", "storm.zookeeper.", "storm.cluster.", "storm.local.hostname",
                    "storm.security.")


def conf_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file '{explicit}' does not exist")
        return path
    env = os.environ.get("STORM_CONF_FILE")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"STORM_CONF_FILE names '{env}', which does not exist")
        return path
    home = Path.home() / ".storm" / "storm.yaml"
    return home if home.is_file() else None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must be a mapping of key: value")
    _config.validate(loaded, where=str(path))
    return loaded


def load_conf(explicit_file: str | os.PathLike[str] | None = None,
              overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    path = conf_file(explicit_file)
    layers: list[Mapping[str, Any]] = [read_yaml(path)] if path else []
    if overrides:
        layers.append(overrides)
    return _config.merge(*layers)


def topology_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The `-c` items that configure the topology, not the cluster."""
    return {k: v for k, v in overrides.items() if not k.startswith(CLUSTER_PREFIXES)}
