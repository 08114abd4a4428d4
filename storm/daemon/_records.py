"""The records nimbus and the supervisors keep in the cluster state and send
to the CLI, as TypedDicts: they travel as msgpack (the state store, nimbus's
answers) and JSON (the inspect subprocess), so they stay plain dicts on the
wire and in memory, and these types only say what each holds. A key marked
NotRequired is absent from records written before it existed (or when it does
not apply): read it with .get().

Where each lives (storm.daemon._state.paths):
- TopologyRecord  topologies/<name>   nimbus writes; the upgrade and rebalance under way in it
- Assignment      assignments/<name>  nimbus writes, supervisors read; one WorkerSlot per worker
- WorkerBeat      beats/<name>/<i>    a supervisor writes for each of its workers, nimbus reads
- SupervisorRecord supervisors/<id>   each supervisor's heartbeat
- NimbusRecord    nimbuses/<id> (and `nimbus`, the leader's)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from .._loglevel import LogLevel


class ComponentRecord(TypedDict):
    """A component of a built topology (storm.daemon._code.describe_spec)."""

    par: int
    tasks: list[int]
    spout: bool
    system: bool
    kafka: NotRequired[dict[str, Any]]  # a KafkaSpout's brokers, group and topics (the lag in storm stats)
    checkpoint: NotRequired[bool]  # a CheckpointSpout (storm upgrade asks it for a checkpoint)
    stateful: NotRequired[bool]  # a StatefulBolt


class ComponentShape(TypedDict):
    """What `storm upgrade` compares: the component's streams' fields and its inputs."""

    outputs: dict[str, list[str]]
    inputs: list[str]  # "source.stream>grouping"


class Description(TypedDict):
    """A topology built from its code in a subprocess (the inspect answer)."""

    name: str
    fingerprint: str
    workers: int
    tasks: int
    message_timeout: float
    components: dict[str, ComponentRecord]
    shape: dict[str, ComponentShape]


class WorkerSlot(TypedDict):
    """One worker of an assignment. During an upgrade, a worker moved to the
    new code carries that code (the CODE_KEYS of storm.daemon._upgrade)."""

    index: int
    supervisor: str
    host: str
    port: int
    sha: NotRequired[str]
    target: NotRequired[str]
    fingerprint: NotRequired[str]
    overrides: NotRequired[dict[str, Any]]
    code_version: NotRequired[int]
    parallelism: NotRequired[dict[str, int]]


class Assignment(TypedDict):
    """Where a topology's workers run and what code they run."""

    topology: str
    id: str
    version: int  # a new one restarts every worker
    sha: str
    target: str
    overrides: dict[str, Any]
    parallelism: dict[str, int]
    fingerprint: str
    active: bool
    workers: list[WorkerSlot]
    endpoints: list[str]
    time: float
    log_levels: dict[str, str]
    code_version: int
    checkpoint: NotRequired[int]  # the newest checkpoint request of storm upgrade


class UpgradeRecord(TypedDict):
    """A rolling upgrade under way (storm.daemon._upgrade.RollingUpgrade)."""

    sha: str
    target: str
    fingerprint: str
    overrides: dict[str, Any]
    parallelism: NotRequired[dict[str, int]]
    shape: dict[str, ComponentShape] | None
    code_version: int
    order: list[int]  # worker indexes in the order they are replaced
    step: int  # how many are replaced
    phase: str  # next, checkpoint, replacing, rolling-back
    since: float
    version: int  # the assignment version it runs on
    started: float
    checkpoint: NotRequired[bool]  # a checkpoint before each worker stops
    token: NotRequired[int]
    old_pid: NotRequired[int | None]
    reason: NotRequired[str]


# What a --rebalance upgrade started from: the previous code version and code
# (dropped once the new one runs), and the layout's differences. ("from" is a
# keyword, hence the functional form.)
LayoutUpgrade = TypedDict("LayoutUpgrade", {"from": int, "sha": str, "layout": list[str]})


class RebalanceRecord(TypedDict):
    """A rebalance (or a --rebalance upgrade) under way: every worker stops,
    then the topology is scheduled again with these values."""

    phase: str  # checkpoint (upgrade only), wait, stopping
    at: float
    was_active: bool
    overrides: dict[str, Any]
    parallelism: dict[str, int]
    fingerprint: str
    workers: int
    components: dict[str, ComponentRecord]
    tasks: int
    shape: dict[str, ComponentShape] | None
    since: NotRequired[float]
    # storm upgrade --rebalance: the new code
    sha: NotRequired[str]
    target: NotRequired[str]
    code_version: NotRequired[int]
    message_timeout: NotRequired[float]
    upgrade: NotRequired[LayoutUpgrade]
    token: NotRequired[int]
    txid: NotRequired[int | None]


class LastUpgrade(TypedDict):
    ok: bool
    code_version: int
    reason: str
    time: float
    sha: str
    stop: NotRequired[bool]  # a --rebalance upgrade


class TopologyRecord(TypedDict):
    """A submitted topology, as nimbus keeps it."""

    name: str
    id: str
    sha: str
    target: str
    overrides: dict[str, Any]
    parallelism: dict[str, int]
    fingerprint: str
    workers: int
    tasks: int
    components: dict[str, ComponentRecord]
    message_timeout: float
    status: str  # ACTIVE, INACTIVE, KILLED, REBALANCING
    submitted: float
    version: int  # of its assignment
    note: str
    shape: dict[str, ComponentShape] | None
    code_version: int
    kill_at: NotRequired[float]
    log_levels: NotRequired[dict[str, LogLevel]]
    rebalance: NotRequired[RebalanceRecord]
    upgrade: NotRequired[UpgradeRecord]
    last_upgrade: NotRequired[LastUpgrade]


class ErrorRecord(TypedDict):
    time: float
    component: str
    task: int
    where: str
    error: str


class WorkerBeat(TypedDict):
    """A worker's heartbeat, written by its supervisor."""

    topology_id: str
    version: int
    index: int
    supervisor: str
    host: str
    port: int
    pid: int
    status: str  # starting, running, backoff, stopping
    uptime: float
    restarts: int
    failures: int
    fatal: str
    metrics: dict[str, dict[str, Any]]  # task id (text) -> the task's figures
    errors: list[ErrorRecord]
    error_count: int
    cpu: float | None
    rss: int | None
    time: float
    backpressure: bool
    code_version: int
    trace_sample: NotRequired[float]
    trace_error: NotRequired[str]
    trace: NotRequired[list[Any]]


class SupervisorRecord(TypedDict):
    """A supervisor's heartbeat."""

    id: str
    host: str
    hostname: str
    ports: list[int]
    logs: str
    pid: int
    beat: int
    time: float
    workers: int
    cpus: int
    load: float
    mem_percent: float
    mem_total: int
    stopped: NotRequired[bool]


class SupervisorInfo(SupervisorRecord):
    """A supervisor as nimbus sees it: alive by nimbus's own clock."""

    alive: bool


class NimbusRecord(TypedDict):
    id: str
    host: str
    port: int
    pid: int
    hostname: str
    started: float
    version: str
    beat: float
    missing_code: list[str]


class NimbusInfo(NimbusRecord):
    alive: bool
    leader: bool


# -- answers to the CLI ---------------------------------------------------------------


class ComponentStats(TypedDict):
    """Per-component all-time figures (the `components` of an info answer)."""

    kind: str
    tasks: int
    emitted: int
    transferred: int
    executed: int
    acked: int
    failed: int
    errors: int
    queue: int
    pending: int
    reporting: int
    complete_ms: float | None
    exec_ms: float | None
    capacity: float | None


class TopologyRow(TypedDict):
    """One line of `storm list`."""

    name: str
    id: str
    status: str
    workers: int
    assigned: int
    running: int
    tasks: int
    executors: int
    uptime: float
    note: str
    code_version: int
    upgrade: str
    error: str


class ListAnswer(TypedDict):
    topologies: list[TopologyRow]
    state: str
    supervisors: int
    where: str


class WorkerRow(WorkerSlot):
    """A worker in an info answer: its slot, tasks and latest beat."""

    tasks: list[int]
    components: list[str]
    logs: str | None
    supervisor_alive: bool
    status: str
    pid: int | None
    restarts: int
    cpu: float | None
    rss: int | None
    fatal: str
    uptime: float | None


class InfoAnswer(TypedDict):
    topology: TopologyRecord
    assignment: Assignment | dict[str, Any]  # {} before the first assignment
    workers: list[WorkerRow]
    errors: list[ErrorRecord]
    components: dict[str, ComponentStats]
    error_count: int


class NimbusesAnswer(TypedDict):
    nimbuses: list[NimbusInfo]
    leader: str | None
    answered_by: str


class PingAnswer(TypedDict):
    version: str
    state: str
    pid: int
    id: str
    leading: bool
    leader: str | None


class WorkerCode(TypedDict):
    """The code one worker runs (storm.daemon._upgrade.code_of)."""

    sha: str
    target: str
    fingerprint: str
    overrides: dict[str, Any]
    code_version: int
    parallelism: dict[str, int]


class PlanStep(TypedDict):
    """One worker of a rolling upgrade's plan."""

    index: int
    host: str
    port: int
    components: list[str]


# The code version an upgrade starts from ("from" is a keyword, hence the functional form).
_FromVersion = TypedDict("_FromVersion", {"from": int})


class UpgradeAnswer(_FromVersion):
    """The answer to an upgrade request (the plan, with dry_run)."""

    name: str
    to: int
    sha: str
    dry_run: bool
    checkpoint: bool  # a checkpoint before each worker (or every worker) stops
    same_code: bool
    plan: list[PlanStep]
    # --rebalance with a layout change: every worker stops
    stop: NotRequired[bool]
    layout: NotRequired[list[str]]
    workers: NotRequired[int]
    state_kept: NotRequired[list[str]]
    state_new: NotRequired[list[str]]
    state_dropped: NotRequired[list[str]]


class SubmitAnswer(TypedDict):
    name: str
    id: str
    workers: int
    tasks: int
    scheduled: bool
    note: str
    state: str


class KillAnswer(TypedDict):
    name: str
    wait: float


class StatusAnswer(TypedDict):
    """activate / deactivate."""

    name: str
    status: str


class RebalanceAnswer(TypedDict):
    name: str
    wait: float
    workers: int
    parallelism: dict[str, int]


class LogLevelsAnswer(TypedDict):
    name: str
    levels: dict[str, LogLevel]


class SupervisorRow(SupervisorInfo):
    """A supervisor in the supervisors answer: its id and slots in use."""

    used: int


class SupervisorsAnswer(TypedDict):
    supervisors: list[SupervisorRow]


def only_maps(objs: Mapping[str, Any]) -> dict[str, Any]:
    """The records among values read from the state (a torn or foreign one is
    not a map): what the caller types as the records it reads there."""
    return {k: v for k, v in objs.items() if isinstance(v, dict)}
