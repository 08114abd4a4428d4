"""Topologies of the cluster-mode tests (see daemon_topos_parts for what they
record). Numbers: a NumberSpout -> PassBolt (shuffle) -> SinkBolt (fields on n).
Task ids: relay 1, sink 2, source 3, then the ackers; with 2 workers the sink
runs in worker 1 only.

Importing this file fails where the environment has DAEMON_TOPOS_BREAK_IMPORT
set (a supervisor started with it), while nimbus, which validates the code
without it, accepts the topology: a worker that cannot import its code."""

from __future__ import annotations

import os

from daemon_topos_parts import NumberSpout, PassBolt, SinkBolt

from storm import Grouping, Topology

if os.environ.get("DAEMON_TOPOS_BREAK_IMPORT"):
    raise ImportError("daemon_topos_cluster: broken on purpose on this host (DAEMON_TOPOS_BREAK_IMPORT)")


class Numbers(Topology):
    config = {"topology.message.timeout.secs": 5.0, "topology.max.spout.pending": 200}
    source = NumberSpout.spec()
    relay = PassBolt.spec(inputs=[source])
    sink = SinkBolt.spec(inputs={relay: Grouping.fields("n")})
