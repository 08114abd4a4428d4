"""Pins the public surface: what `import storm` offers and nothing more."""

from __future__ import annotations

import importlib
import inspect

import storm

EXPECTED = [
    "BasicBolt",
    "Bolt",
    "ComponentSpec",
    "ConfigError",
    "CustomGrouping",
    "EmitError",
    "FailedException",
    "Grouping",
    "LocalCluster",
    "LocalTopology",
    "SerializationError",
    "Spout",
    "StormError",
    "Stream",
    "StreamRef",
    "TargetError",
    "Topology",
    "TopologyBuilder",
    "TopologyContext",
    "TopologyError",
    "TopologySpec",
    "Tuple",
    "__version__",
    "stable_hash",
]


def test_expected_list_is_sorted_and_unique() -> None:
    assert sorted(set(EXPECTED)) == EXPECTED


def test_all_is_the_expected_surface() -> None:
    assert len(storm.__all__) == len(set(storm.__all__)), "storm.__all__ repeats a name"
    assert sorted(storm.__all__) == EXPECTED


def test_every_name_in_all_is_importable() -> None:
    module = importlib.import_module("storm")
    for name in storm.__all__:
        assert hasattr(module, name), name
    namespace: dict[str, object] = {}
    exec("from storm import *", namespace)
    assert {n for n in namespace if n != "__builtins__"} == set(storm.__all__)


def test_no_public_name_outside_all() -> None:
    public = {
        n for n, v in vars(storm).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public == set(storm.__all__) - {"__version__"}


def test_public_classes_live_in_private_modules() -> None:
    for name in storm.__all__:
        obj = getattr(storm, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("storm._"), (name, obj.__module__)


def test_version_matches_the_installed_distribution() -> None:
    from importlib.metadata import version

    assert storm.__version__ == version("storm-streams")


def test_error_hierarchy() -> None:
    for name in ("ConfigError", "EmitError", "SerializationError", "TargetError", "TopologyError"):
        assert issubclass(getattr(storm, name), storm.StormError)
    assert issubclass(storm.StormError, Exception)
