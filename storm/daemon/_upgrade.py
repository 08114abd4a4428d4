"""Rolling code upgrade of a running topology (`storm upgrade NAME TARGET`),
nimbus's side: what may change live (the components' code, not the layout:
components, stream fields, groupings and parallelism stay), the plan, and the
step the leader takes on each pass. Workers are moved to the new code one at a
time by writing the new code into that worker's entry of the assignment (the
assignment version stays, so the supervisor restarts that worker alone); the
next one goes only once the new one has run healthy for
`nimbus.upgrade.healthy.secs`. A new worker that fails to start (its code
raises in prepare/open) or does not come up in
`supervisor.worker.start.timeout.secs` rolls every moved worker back.

Stateful bolts lose nothing: before a worker is stopped, the topology's
checkpoint spout is asked for a checkpoint (a request token in the assignment,
passed by the supervisors to the workers as a control message) and the worker
goes only once a checkpoint prepared after the request has committed (the
spout reports the newest request it served in its metrics, so in the worker's
heartbeat); within `nimbus.upgrade.checkpoint.timeout.secs`, else the upgrade
is rolled back and no worker is stopped for it. A stopped worker's tasks
restore that checkpoint and the tuples after it, whose acks were held, are
replayed by the spouts. The upgrade record lives in the topology's record, so a
new leader carries an upgrade on where the old one stopped.

A layout change (told so: `--rebalance`) cannot go one worker at a time: the
topology checkpoints, its spouts are deactivated, every worker is stopped and
the new code is started as a rebalance does (the topology's `rebalance` record,
which nimbus's rebalance pass carries on). Task ids follow component names, so
a component added or removed renumbers the tasks of others; the store of each
task of a component kept by name is named by the task id it was first saved
under (`topology.state.tasks`), so its state is restored."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._records import (
    Assignment,
    ComponentRecord,
    ComponentShape,
    Description,
    LastUpgrade,
    PlanStep,
    RebalanceRecord,
    TopologyRecord,
    UpgradeAnswer,
    UpgradeRecord,
    WorkerBeat,
    WorkerCode,
    WorkerSlot,
    only_maps,
)

if TYPE_CHECKING:
    from ._nimbus import Nimbus

log = logging.getLogger("storm.nimbus")

# The code of one worker: in the assignment's entry of a worker being upgraded,
# else the assignment's own (every worker's) code.
CODE_KEYS = ("sha", "target", "fingerprint", "overrides", "code_version", "parallelism")
STORE_TASKS_KEY = "topology.state.tasks"  # storm.stateful.STORE_TASKS_KEY (a worker-side module)


def differences(old: Mapping[str, ComponentShape] | None, new: Mapping[str, ComponentShape] | None) -> list[str]:
    """What differs between two topologies' shapes (see _code.describe_spec),
    each change named, in terms of what a live upgrade cannot do."""
    if not old or not new:
        return []
    out = []
    for name in sorted(set(new) - set(old)):
        out.append(f"component '{name}' is new")
    for name in sorted(set(old) - set(new)):
        out.append(f"component '{name}' is gone")
    for name in sorted(set(old) & set(new)):
        was, now = old[name], new[name]
        for stream in sorted(set(now["outputs"]) | set(was["outputs"])):
            a, b = was["outputs"].get(stream), now["outputs"].get(stream)
            if a is None:
                out.append(f"component '{name}' declares a new stream '{stream}'")
            elif b is None:
                out.append(f"component '{name}' no longer declares stream '{stream}'")
            elif list(a) != list(b):
                out.append(f"stream '{name}.{stream}' fields change from {list(a)} to {list(b)}")
        if sorted(was["inputs"]) != sorted(now["inputs"]):
            gone = sorted(set(was["inputs"]) - set(now["inputs"]))
            added = sorted(set(now["inputs"]) - set(was["inputs"]))
            out.append(f"bolt '{name}' inputs change (groupings): {', '.join(gone) or 'none'} -> "
                       f"{', '.join(added) or 'none'}")
    return out


def checkpoint_tasks(components: Mapping[str, ComponentRecord]) -> list[int]:
    """The tasks of the topology's checkpoint spout (none: no stateful bolts)."""
    return sorted(int(t) for v in components.values() if v.get("checkpoint") for t in v["tasks"])


def served(beats: Mapping[int, WorkerBeat], tasks: list[int]) -> int:
    """The newest checkpoint request every checkpoint spout task served, by the
    metrics in the workers' heartbeats (0 while one has not reported)."""
    got = []
    for t in tasks:
        for b in beats.values():
            m = (b.get("metrics") or {}).get(str(t))
            if isinstance(m, dict):
                got.append(int((m.get("state") or {}).get("served_request") or 0))
                break
        else:
            return 0
    return min(got) if got else 0


def committed_txid(beats: Mapping[int, WorkerBeat], tasks: list[int]) -> int | None:
    for t in tasks:
        for b in beats.values():
            m = (b.get("metrics") or {}).get(str(t))
            if isinstance(m, dict) and "committed_txid" in (m.get("state") or {}):
                return int(m["state"]["committed_txid"])
    return None


def store_tasks(old: Mapping[str, ComponentRecord], new: Mapping[str, ComponentRecord],
                current: Mapping[str, Any]) -> dict[str, list[int]]:
    """topology.state.tasks for the new layout: each component kept by name
    (same parallelism) whose task ids change keeps the ids its stores are named
    by (the map so far, else its task ids)."""
    out: dict[str, list[int]] = {}
    for name, comp in new.items():
        was = old.get(name)
        if comp["system"] or was is None or was["system"]:
            continue
        ids = [int(t) for t in current.get(name) or was["tasks"]]
        if len(ids) == len(comp["tasks"]) and ids != [int(t) for t in comp["tasks"]]:
            out[name] = ids
    return out


def code_shas(topo: TopologyRecord) -> set[str]:
    """The code archives a topology needs: its own, and an upgrade's under way."""
    out: set[str | None] = {topo.get("sha")}
    up, rb = topo.get("upgrade"), topo.get("rebalance")
    if up is not None:
        out.add(up.get("sha"))
    if rb is not None:
        out.add(rb.get("sha"))
    return {str(sha) for sha in out if sha}


def code_of(assignment: Assignment, slot: WorkerSlot | None) -> WorkerCode:
    """The code one worker runs: its entry's, else the assignment's (code
    version 1 for an assignment written before upgrades existed)."""
    a: Any = assignment  # records of older nimbuses may lack a key
    w: Any = slot or {}
    return {"sha": w.get("sha", a.get("sha")), "target": w.get("target", a.get("target")),
            "fingerprint": w.get("fingerprint", a.get("fingerprint")),
            "overrides": w.get("overrides", a.get("overrides")),
            "code_version": int(w.get("code_version", a.get("code_version")) or 1),
            "parallelism": w.get("parallelism", a.get("parallelism")) or {}}


def new_code(up: UpgradeRecord) -> WorkerCode:
    """The code an upgrade moves the workers to."""
    return {"sha": up["sha"], "target": up["target"], "fingerprint": up["fingerprint"],
            "overrides": up["overrides"], "code_version": up["code_version"],
            "parallelism": up.get("parallelism") or {}}


def plan(topo: TopologyRecord, assignment: Assignment) -> list[PlanStep]:
    """The workers in the order they are replaced, with what each runs."""
    n = len(assignment.get("workers") or [])
    out: list[PlanStep] = []
    for w in sorted(assignment.get("workers") or [], key=lambda w: int(w["index"])):
        tasks = {t for t in range(1, int(topo["tasks"]) + 1) if (t - 1) % n == int(w["index"])}
        comps = sorted(c for c, v in topo["components"].items() if set(v["tasks"]) & tasks and not v["system"])
        out.append({"index": int(w["index"]), "host": w["host"], "port": w["port"], "components": comps})
    return out


def progress(topo: TopologyRecord) -> str:
    """One line for `storm list`: empty unless an upgrade is under way."""
    rb = topo.get("rebalance")
    if rb is not None and "upgrade" in rb:
        return f"upgrading to code v{rb['code_version']} with a stop of every worker (--rebalance): {rb['phase']}"
    up = topo.get("upgrade")
    if not up:
        return ""
    if up["phase"] in ("rollback", "rolling-back"):
        return f"rolling back to code v{topo.get('code_version', 1)}: {up.get('reason', '')}"
    return (f"upgrading to code v{up['code_version']}: {up['step']}/{len(up['order'])} worker(s) moved"
            + (" (checkpointing)" if up["phase"] == "checkpoint" else ""))


class RollingUpgrade:
    """The leader's per-pass step of one topology's upgrade (state in topo["upgrade"])."""

    def __init__(self, nimbus: Nimbus) -> None:
        self.nimbus = nimbus
        conf = nimbus.conf
        self.healthy_secs = float(conf["nimbus.upgrade.healthy.secs"])
        # A stop (drain) and a start, with a margin for a supervisor's passes.
        self.start_limit = float(conf["supervisor.worker.start.timeout.secs"]) + float(
            conf["storm.worker.shutdown.timeout.secs"]) + 4 * float(conf["supervisor.monitor.frequency.secs"]) + 5
        self.checkpoint_timeout = float(conf["nimbus.upgrade.checkpoint.timeout.secs"])

    def start(self, topo: TopologyRecord, msg: Mapping[str, Any]) -> UpgradeAnswer:
        """Check the new code against the running topology and record the
        upgrade (or, with dry_run, only answer the plan); RequestError names
        what stands in the way."""
        from ._code import unpack as unpack_code
        from ._nimbus import ACTIVE, INACTIVE, RequestError
        from ._state import paths

        nimbus = self.nimbus
        name = topo["name"]
        sha, archive, target = msg.get("sha256"), msg.get("archive"), msg.get("target")
        if not isinstance(sha, str) or not isinstance(archive, bytes) or not isinstance(target, str):
            raise RequestError("upgrade needs name, target, archive and sha256")
        if topo["status"] not in (ACTIVE, INACTIVE):
            raise RequestError(f"topology '{name}' is {topo['status']}; it cannot be upgraded now")
        if topo.get("upgrade"):
            raise RequestError(f"topology '{name}' is being upgraded already ({progress(topo)})")
        a: Assignment | None = nimbus.state.get_obj(paths.assignment(name))
        if not isinstance(a, dict) or not a.get("workers"):
            raise RequestError(f"topology '{name}' has no workers assigned yet ({topo.get('note') or 'waiting'}); "
                               "upgrade it once it runs, or kill and resubmit it")
        # The layout stays: the running workers, parallelism and rebalance settings.
        overrides = {**topo["overrides"], **dict(msg.get("overrides") or {}),
                     "topology.workers": topo["workers"], "topology.name": name}
        code_dir = unpack_code(archive, sha, nimbus.dir / "code" / sha)
        info = nimbus.inspect(code_dir, target, overrides, {})
        if info["name"] != name:
            raise RequestError(f"the code builds a topology named '{info['name']}', not '{name}'")
        diffs = differences(topo.get("shape"), info.get("shape"))
        parallelism = {c: v["par"] for c, v in topo["components"].items()
                       if not v["system"] and c in info["components"]}
        running = dict(topo.get("parallelism") or {})
        if any(info["components"][c]["par"] != p for c, p in parallelism.items()):
            # The running parallelism stays (storm rebalance changes it): build the new code with it,
            # and the workers too (their --parallelism).
            info = nimbus.inspect(code_dir, target, overrides, parallelism)
            running = parallelism
        if not diffs and info["fingerprint"] != topo["fingerprint"]:
            diffs.append("the topology's layout (components, streams or groupings) differs")
        version = int(topo.get("code_version") or 1) + 1
        checkpoint = bool(checkpoint_tasks(topo["components"])) and topo["status"] == ACTIVE
        reply: UpgradeAnswer = {"name": name, "from": version - 1, "to": version, "sha": sha,
                                "dry_run": bool(msg.get("dry_run")), "checkpoint": checkpoint,
                                "same_code": sha == topo["sha"] and target == topo["target"], "plan": []}
        if diffs and not msg.get("rebalance"):
            raise RequestError(
                f"cannot upgrade '{name}' live: {'; '.join(diffs)}. A live upgrade changes the components' "
                "code only; to apply these changes with a stop of every worker (state kept for components "
                "whose names stay) give --rebalance, or kill the topology and submit the new code")
        if diffs:
            return self._start_layout(topo, a, reply, info, dict(overrides), running, diffs, archive, target)
        steps = plan(topo, a)
        reply["plan"] = steps
        if msg.get("dry_run"):
            return reply
        nimbus.state.put_blob(paths.code(sha), archive)
        topo["upgrade"] = {
            "sha": sha, "target": target, "fingerprint": info["fingerprint"], "overrides": overrides,
            "parallelism": running,
            "shape": info.get("shape"), "code_version": version, "order": [s["index"] for s in steps],
            "step": 0, "phase": "next", "since": time.time(), "version": a["version"], "started": time.time(),
            "checkpoint": checkpoint,
        }
        nimbus.state.put_obj(paths.topology(name), topo)
        log.info("topology %s: upgrading to code v%d (%s), %d worker(s) one at a time", name, version, sha[:12],
                 len(steps))
        return reply

    def step(self, topo: TopologyRecord, a: Assignment, beats: Mapping[int, WorkerBeat], now: float) -> None:
        up = topo["upgrade"]
        state = self.nimbus.state
        from ._state import paths

        if a.get("version") != up["version"]:
            # nimbus rescheduled (a supervisor was lost): the new assignment runs the old code
            self._end(topo, a, ok=False, reason="the assignment changed during the upgrade (a supervisor was "
                                                "lost); every worker runs the previous code")
            return
        if up["phase"] == "next":
            if up["step"] >= len(up["order"]):
                self._finish(topo, a)
                return
            if up.get("checkpoint"):
                # Stateful bolts save their state before the worker goes.
                up["token"] = self.request_checkpoint(topo, a)
                up["phase"], up["since"] = "checkpoint", now
                state.put_obj(paths.topology(topo["name"]), topo)
                log.info("topology %s: upgrade to code v%d: checkpoint (request %d) before worker %d stops",
                         topo["name"], up["code_version"], up["token"], up["order"][up["step"]])
                return
            self._replace(topo, a, beats, now)
            return
        if up["phase"] == "checkpoint":
            index = up["order"][up["step"]]
            tasks = checkpoint_tasks(topo["components"])
            if served(beats, tasks) >= int(up["token"]):
                log.info("topology %s: checkpoint txid %s committed; replacing worker %d", topo["name"],
                         committed_txid(beats, tasks), index)
                self._replace(topo, a, beats, now)
            elif now - float(up["since"]) > self.checkpoint_timeout:
                self._rollback(topo, a, now, self.checkpoint_missed(f"worker {index}"))
            return
        if up["phase"] == "replacing":
            index = up["order"][up["step"]]
            b = beats.get(index)
            on_new = b is not None and b.get("code_version") == up["code_version"] and b.get("pid") != up.get("old_pid")
            if b is None or not on_new:
                pass
            elif b.get("status") == "running" and float(b.get("uptime") or 0) >= self.healthy_secs:
                up["step"] += 1
                up["phase"] = "next"
                state.put_obj(paths.topology(topo["name"]), topo)
            elif b.get("fatal"):
                self._rollback(topo, a, now, f"worker {index} failed on the new code: {b['fatal']}")
                return
            if up["phase"] == "replacing" and now - float(up["since"]) > self.start_limit:
                self._rollback(topo, a, now, f"worker {index} did not come up on the new code within "
                                             f"{self.start_limit:g}s")
            return
        if up["phase"] == "rolling-back":
            old = code_of(a, None)["code_version"]
            back = all(i in beats and beats[i].get("code_version") == old and beats[i].get("status") == "running"
                       for i in up["order"][:up["step"] + 1])
            if back or now - float(up["since"]) > self.start_limit:
                self._end(topo, a, ok=False, reason=str(up.get("reason")))

    def _start_layout(self, topo: TopologyRecord, a: Assignment, reply: UpgradeAnswer, info: Description,
                      overrides: dict[str, Any], parallelism: Mapping[str, int], diffs: list[str], archive: bytes,
                      target: str) -> UpgradeAnswer:
        """--rebalance: the plan of a layout change and, unless a dry run, the
        topology's rebalance record that carries it out (checkpoint, stop every
        worker, start the new code)."""
        from ._nimbus import ACTIVE, REBALANCING
        from ._state import paths

        nimbus = self.nimbus
        name = topo["name"]
        old, new = topo["components"], info["components"]
        stores = store_tasks(old, new, dict(topo["overrides"].get(STORE_TASKS_KEY) or {}))
        if stores:
            overrides[STORE_TASKS_KEY] = stores
        else:
            overrides.pop(STORE_TASKS_KEY, None)
        reply["layout"], reply["stop"], reply["workers"] = diffs, True, len(a["workers"])
        reply["state_kept"] = sorted(c for c, v in new.items() if v.get("stateful") and c in old)
        reply["state_new"] = sorted(c for c, v in new.items() if v.get("stateful") and c not in old)
        reply["state_dropped"] = sorted(c for c, v in old.items() if v.get("stateful") and c not in new)
        if reply["dry_run"]:
            return reply
        nimbus.state.put_blob(paths.code(reply["sha"]), archive)
        now = time.time()
        rb: RebalanceRecord = {
            "phase": "checkpoint" if reply["checkpoint"] else "wait", "at": now, "since": now,
            "was_active": topo["status"] == ACTIVE, "overrides": overrides,
            "parallelism": {c: p for c, p in parallelism.items() if c in new},
            "fingerprint": info["fingerprint"], "workers": info["workers"], "components": new,
            "tasks": info["tasks"], "shape": info.get("shape"), "sha": reply["sha"], "target": target,
            "code_version": reply["to"], "message_timeout": info["message_timeout"],
            "upgrade": {"from": reply["from"], "sha": topo["sha"], "layout": diffs},
        }
        if reply["checkpoint"]:
            rb["token"] = self.request_checkpoint(topo, a)
        topo["rebalance"] = rb
        topo["status"] = REBALANCING
        nimbus.state.put_obj(paths.topology(name), topo)
        if not reply["checkpoint"]:
            nimbus._set_active(name, False)
        log.info("topology %s: upgrading to code v%d with a stop of its %d worker(s) (--rebalance): %s", name,
                 reply["to"], len(a["workers"]), "; ".join(diffs))
        return reply

    def layout_checkpoint(self, topo: TopologyRecord, beats: Mapping[int, WorkerBeat], now: float) -> None:
        """The checkpoint phase of a --rebalance upgrade: once the checkpoint
        committed, the spouts are deactivated and the workers go (the rebalance
        pass); if it does not commit in time, the upgrade is given up."""
        from ._nimbus import ACTIVE, INACTIVE
        from ._state import paths

        nimbus = self.nimbus
        name, rb = topo["name"], topo["rebalance"]
        tasks = checkpoint_tasks(topo["components"])
        if served(beats, tasks) >= int(rb.get("token") or 0):
            rb["phase"], rb["at"] = "wait", now
            rb["txid"] = committed_txid(beats, tasks)
            nimbus.state.put_obj(paths.topology(name), topo)
            nimbus._set_active(name, False)
            log.info("topology %s: checkpoint txid %s committed; stopping every worker for the new layout", name,
                     rb["txid"])
        elif now - float(rb["since"]) > self.checkpoint_timeout:
            reason = self.checkpoint_missed("the topology's workers")
            del topo["rebalance"]
            topo["status"] = ACTIVE if rb.get("was_active") else INACTIVE
            version, sha = int(rb.get("code_version") or 0), str(rb.get("sha"))
            topo["last_upgrade"] = {"ok": False, "code_version": version, "reason": reason, "time": time.time(),
                                    "sha": sha}
            topo["note"] = f"the upgrade to code v{version} was given up: {reason}"
            log.warning("topology %s: %s", name, topo["note"])
            nimbus.state.put_obj(paths.topology(name), topo)
            self._drop_code(sha, topo)

    def finish_layout(self, topo: TopologyRecord, rb: RebalanceRecord) -> None:
        """Put a --rebalance upgrade's new code in the topology's record (its workers start next)."""
        up = rb.get("upgrade")
        if up is None:
            return
        topo["sha"], topo["target"] = str(rb.get("sha")), str(rb.get("target"))
        topo["code_version"] = int(rb.get("code_version") or 1)
        topo["message_timeout"] = float(rb.get("message_timeout") or topo["message_timeout"])
        topo["last_upgrade"] = {"ok": True, "code_version": topo["code_version"], "reason": "", "time": time.time(),
                                "sha": topo["sha"], "stop": True}
        if str(topo.get("note", "")).startswith("the upgrade"):
            topo["note"] = ""
        log.info("topology %s: code v%d (%s) with the new layout: %s", topo["name"], topo["code_version"],
                 topo["sha"][:12], "; ".join(up["layout"]))
        self._drop_code(up["sha"], topo)

    def _drop_code(self, sha: str, topo: TopologyRecord) -> None:
        """Remove a code archive no topology (nor its upgrade) needs any more."""
        from ._state import paths

        if sha == topo.get("sha"):
            return
        state = self.nimbus.state
        topologies: dict[str, TopologyRecord] = only_maps(state.children_objs(paths.TOPOLOGIES))
        still = [t for t in topologies.values() if t.get("name") != topo["name"] and sha in code_shas(t)]
        if not still:
            state.delete(paths.code(sha))

    def _replace(self, topo: TopologyRecord, a: Assignment, beats: Mapping[int, WorkerBeat], now: float) -> None:
        """Move the next worker to the new code (its supervisor restarts it)."""
        from ._state import paths

        up = topo["upgrade"]
        index = up["order"][up["step"]]
        b = beats.get(index)
        up["old_pid"] = b.get("pid") if b is not None else None
        self._set_code(a, [index], new_code(up))
        up["phase"], up["since"] = "replacing", now
        self.nimbus.state.put_obj(paths.assignment(topo["name"]), a)
        self.nimbus.state.put_obj(paths.topology(topo["name"]), topo)
        log.info("topology %s: upgrade to code v%d: replacing worker %d", topo["name"], up["code_version"], index)

    def request_checkpoint(self, topo: TopologyRecord, a: Assignment) -> int:
        """Ask the topology's checkpoint spout for a checkpoint: a new request
        token in the assignment, which the supervisors pass to the workers."""
        from ._state import paths

        token = int(a.get("checkpoint") or 0) + 1
        a["checkpoint"] = token
        self.nimbus.state.put_obj(paths.assignment(topo["name"]), a)
        return token

    def checkpoint_missed(self, what: str) -> str:
        return (f"the checkpoint asked for before stopping {what} did not commit within "
                f"{self.checkpoint_timeout:g}s (nimbus.upgrade.checkpoint.timeout.secs): a stateful bolt may be "
                "failing or stuck in its checkpoints (see storm logs); nothing was stopped for it")

    @staticmethod
    def _set_code(a: Assignment, indexes: list[int], code: WorkerCode | None) -> None:
        for w in a["workers"]:
            if int(w["index"]) in indexes:
                for key in ("sha", "target", "fingerprint", "overrides", "code_version", "parallelism"):
                    w.pop(key, None)  # type: ignore[misc]  # the CODE_KEYS, all NotRequired in a WorkerSlot
                if code is not None:
                    w.update(code)

    def _rollback(self, topo: TopologyRecord, a: Assignment, now: float, reason: str) -> None:
        from ._state import paths

        up = topo["upgrade"]
        log.error("topology %s: upgrade to code v%d failed (%s); rolling back", topo["name"],
                              up["code_version"], reason)
        self._set_code(a, [int(w["index"]) for w in a["workers"]], None)
        up["phase"], up["since"], up["reason"] = "rolling-back", now, reason
        self.nimbus.state.put_obj(paths.assignment(topo["name"]), a)
        self.nimbus.state.put_obj(paths.topology(topo["name"]), topo)

    def _finish(self, topo: TopologyRecord, a: Assignment) -> None:
        up = topo["upgrade"]
        old_sha = topo["sha"]
        code = new_code(up)
        topo["sha"], topo["target"], topo["fingerprint"] = code["sha"], code["target"], code["fingerprint"]
        topo["overrides"], topo["shape"], topo["code_version"] = code["overrides"], up["shape"], code["code_version"]
        a["sha"], a["target"], a["fingerprint"] = code["sha"], code["target"], code["fingerprint"]
        a["overrides"], a["code_version"] = code["overrides"], code["code_version"]
        if "parallelism" in up:
            topo["parallelism"] = a["parallelism"] = code["parallelism"]
        self._set_code(a, [int(w["index"]) for w in a["workers"]], None)
        log.info("topology %s: upgraded to code v%d (%s)", topo["name"], up["code_version"],
                             str(up["sha"])[:12])
        self._end(topo, a, ok=True, reason="", drop_code=old_sha)

    def _end(self, topo: TopologyRecord, a: Assignment, ok: bool, reason: str,
             drop_code: str | None = None) -> None:
        from ._state import paths

        up = topo.pop("upgrade")
        last: LastUpgrade = {"ok": ok, "code_version": up["code_version"], "reason": reason,
                             "time": time.time(), "sha": up["sha"]}
        topo["last_upgrade"] = last
        if not ok:
            topo["note"] = f"the upgrade to code v{up['code_version']} failed and was rolled back: {reason}"
            drop_code = str(up["sha"])
            log.warning("topology %s: %s", topo["name"], topo["note"])
        elif topo.get("note", "").startswith("the upgrade"):
            topo["note"] = ""
        state = self.nimbus.state
        state.put_obj(paths.assignment(topo["name"]), a)
        state.put_obj(paths.topology(topo["name"]), topo)
        if drop_code and drop_code != topo["sha"]:
            topologies: dict[str, TopologyRecord] = only_maps(state.children_objs(paths.TOPOLOGIES))
            still = [t for t in topologies.values() if drop_code in code_shas(t)]
            if not still:
                state.delete(paths.code(drop_code))
