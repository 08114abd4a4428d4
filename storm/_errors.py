"""Exception types a user can cause. Each message names the component, stream or
key at fault and says how to fix it; the CLI prints them as one line."""

from __future__ import annotations


class StormError(Exception):
    """Base of every error this package raises for a user mistake."""


class TopologyError(StormError):
    """The topology definition is invalid (unknown component, bad grouping, ...)."""


class ConfigError(StormError):
    """A configuration key is unknown or its value has the wrong type."""


class SerializationError(StormError):
    """An emitted value cannot be encoded with msgpack."""


class EmitError(StormError):
    """An emit call is wrong: unknown stream, wrong number of values, bad direct task."""


class TargetError(StormError):
    """A topology target (file, module:Class) cannot be found or loaded."""
