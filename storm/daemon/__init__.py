"""Cluster mode: the nimbus and supervisor daemons, the cluster state store they
share (SQLite on one host, ZooKeeper across hosts), the scheduler, code
packaging, and the client the CLI talks to nimbus with.

Nothing here touches how a worker runs its tasks: a supervisor launches the same
worker entry point `storm local` uses (`python -m storm._worker_main`), with
tcp:// endpoints from the topology's assignment."""

from ._client import NimbusClient, NimbusError, NimbusUnreachable
from ._state import ClusterState, SqliteState, ZkState, open_state

__all__ = [
    "ClusterState",
    "NimbusClient",
    "NimbusError",
    "NimbusUnreachable",
    "SqliteState",
    "ZkState",
    "open_state",
]
