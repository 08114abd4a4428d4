"""Which nimbus leads. With the ZooKeeper state several nimbus processes run
and one leads, elected by kazoo's lock recipe (the one its Election recipe
wraps): the lock's ephemeral node goes with the leader's session, so a leader
killed with SIGKILL is replaced within the session timeout. With the SQLite
state there is one nimbus per state file, held by a file lock: a second one
refuses to start with the reason.

It owns the election only; *when* a nimbus may stand (it must hold the code of
every active topology) is nimbus's rule, and what a leader does is nimbus's."""

from __future__ import annotations

import fcntl
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any

from .._errors import StormError
from ._state import ClusterState, SqliteState, ZkState

LEADER_LOCK = "/nimbus-leader"  # under storm.zookeeper.root, beside the state's nodes


class Leadership(ABC):
    """One nimbus's view of the election; every method is called from its main loop."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier  # "host:port", where clients reach this nimbus

    @abstractmethod
    def stand(self) -> bool:
        """Try to lead (never blocks); True while this nimbus leads."""

    @abstractmethod
    def leading(self) -> bool:
        """True while this nimbus holds the leadership."""

    @abstractmethod
    def leader(self) -> str | None:
        """The identifier of the leading nimbus, None during an election."""

    def resign(self) -> None:  # noqa: B027 - nothing to give back for a sole nimbus
        """Give the leadership up (on shutdown, or when code went missing)."""


class SoleNimbus(Leadership):
    """The SQLite state: a file lock beside the state file makes this nimbus
    the only one (and so the leader) of that state."""

    def __init__(self, identifier: str, file: Path, describe: str) -> None:
        super().__init__(identifier)
        lock_path = file.with_name(file.name + ".nimbus-lock")
        self._file: IO[str] = open(lock_path, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            other = self._file.read().strip() or "?"
            self._file.close()
            raise StormError(
                f"another nimbus ({other}) already runs on the cluster state {describe}; "
                "several nimbus processes (high availability) need the ZooKeeper state: set storm.zookeeper.servers"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{identifier}, pid {os.getpid()}\n")
        self._file.flush()

    def stand(self) -> bool:
        return True

    def leading(self) -> bool:
        return True

    def leader(self) -> str | None:
        return self.identifier

    def resign(self) -> None:
        self._file.close()


class ZkElection(Leadership):
    """kazoo's Lock under `<root>/nimbus-leader`: the contender with the lowest
    sequence number leads; identifiers are the contenders' "host:port"."""

    def __init__(self, identifier: str, state: ZkState) -> None:
        super().__init__(identifier)
        self._zk = state.client
        self._path = state.root + LEADER_LOCK
        self._lock = self._zk.Lock(self._path, identifier)
        # Set from kazoo's thread: the session (and the lock's node with it) is gone.
        self._lost = threading.Event()
        self._zk.add_listener(self._on_state)

    def _on_state(self, state: Any) -> None:
        from kazoo.client import KazooState

        if state == KazooState.LOST:
            self._lost.set()

    def _connected(self) -> bool:
        from kazoo.client import KazooState

        return bool(self._zk.state == KazooState.CONNECTED)

    def leading(self) -> bool:
        if self._lost.is_set():
            # The node went with the session: contend again with a fresh lock.
            self._lost.clear()
            self._lock = self._zk.Lock(self._path, self.identifier)
            return False
        # Suspended (connection lost, session maybe alive): stop acting until
        # ZooKeeper confirms the session, since another nimbus may lead by now.
        return bool(self._lock.is_acquired) and self._connected()

    def stand(self) -> bool:
        if self.leading():
            return True
        if not self._connected() or self._lock.is_acquired:
            return False
        from kazoo.exceptions import KazooException

        try:
            return bool(self._lock.acquire(blocking=False))
        except KazooException:
            return False

    def leader(self) -> str | None:
        from kazoo.exceptions import KazooException

        try:
            contenders = self._lock.contenders()
        except KazooException:
            return None
        return str(contenders[0]) if contenders else None

    def resign(self) -> None:
        from kazoo.exceptions import KazooException

        self._zk.remove_listener(self._on_state)
        try:
            self._lock.release()
        except KazooException:
            pass


def election(state: ClusterState, identifier: str) -> Leadership:
    if isinstance(state, ZkState):
        return ZkElection(identifier, state)
    if isinstance(state, SqliteState):
        return SoleNimbus(identifier, state.file, state.describe())
    raise StormError(f"nimbus cannot elect a leader on the cluster state {state.describe()}")
