"""A Storm-style stream processing framework in pure Python.

Write spouts and bolts, wire them into a topology, run it on worker processes::

    from storm import Bolt, Grouping, Spout, Topology

    class WordCount(Topology):
        sentences = SentenceSpout.spec()
        split = SplitBolt.spec(inputs=[sentences], par=2)
        count = CountBolt.spec(inputs={split: Grouping.fields("word")}, par=2)

Run it with ``storm local wordcount.py``.
"""

from . import _purepython

if _purepython.pure_python_requested():  # before the core is first imported
    _purepython.prefer_source()

from ._component import BasicBolt, Bolt, ComponentSpec, FailedException, Spout, Stream, StreamRef
from ._context import TopologyContext
from ._errors import (
    ConfigError,
    EmitError,
    SerializationError,
    StormError,
    TargetError,
    TopologyError,
)
from ._grouping import CustomGrouping, Grouping, stable_hash
from ._local import LocalCluster, LocalTopology
from ._topology import Topology, TopologyBuilder, TopologySpec
from ._tuple import Tuple

__version__ = "0.1.0"

__all__ = [
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
