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

Stateful bolts lose nothing: a stopped worker's tasks restore their last
committed checkpoint and the tuples after it, whose acks were held, are
replayed by the spouts. The upgrade record lives in the topology's record, so a
new leader carries an upgrade on where the old one stopped."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._nimbus import Nimbus

log = logging.getLogger("storm.nimbus")

# The code of one worker: in the assignment's entry of a worker being upgraded,
# else the assignment's own (every worker's) code.
CODE_KEYS = ("sha", "target", "fingerprint", "overrides", "code_version")


def differences(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
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


def code_of(assignment: Mapping[str, Any], slot: Mapping[str, Any]) -> dict[str, Any]:
    """The code one worker runs: its entry's, else the assignment's (code
    version 1 for an assignment written before upgrades existed)."""
    code = {k: slot.get(k, assignment.get(k)) for k in CODE_KEYS}
    code["code_version"] = int(code["code_version"] or 1)
    return code


def plan(topo: Mapping[str, Any], assignment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The workers in the order they are replaced, with what each runs."""
    n = len(assignment.get("workers") or [])
    out = []
    for w in sorted(assignment.get("workers") or [], key=lambda w: int(w["index"])):
        tasks = {t for t in range(1, int(topo["tasks"]) + 1) if (t - 1) % n == int(w["index"])}
        comps = sorted(c for c, v in topo["components"].items() if set(v["tasks"]) & tasks and not v["system"])
        out.append({"index": int(w["index"]), "host": w["host"], "port": w["port"], "components": comps})
    return out


def progress(topo: Mapping[str, Any]) -> str:
    """One line for `storm list`: empty unless an upgrade is under way."""
    up = topo.get("upgrade")
    if not up:
        return ""
    if up["phase"] in ("rollback", "rolling-back"):
        return f"rolling back to code v{topo.get('code_version', 1)}: {up.get('reason', '')}"
    return f"upgrading to code v{up['code_version']}: {up['step']}/{len(up['order'])} worker(s) moved"


class RollingUpgrade:
    """The leader's per-pass step of one topology's upgrade (state in topo["upgrade"])."""

    def __init__(self, nimbus: Nimbus) -> None:
        self.nimbus = nimbus
        conf = nimbus.conf
        self.healthy_secs = float(conf["nimbus.upgrade.healthy.secs"])
        # A stop (drain) and a start, with a margin for a supervisor's passes.
        self.start_limit = float(conf["supervisor.worker.start.timeout.secs"]) + float(
            conf["storm.worker.shutdown.timeout.secs"]) + 4 * float(conf["supervisor.monitor.frequency.secs"]) + 5

    def start(self, topo: dict[str, Any], msg: Mapping[str, Any]) -> dict[str, Any]:
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
        a = nimbus.state.get_obj(paths.assignment(name))
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
        if not diffs and any(info["components"][c]["par"] != p for c, p in parallelism.items()):
            # The running parallelism stays (storm rebalance changes it): build the new code with it.
            info = nimbus.inspect(code_dir, target, overrides, parallelism)
        if not diffs and info["fingerprint"] != topo["fingerprint"]:
            diffs.append("the topology's layout (components, streams or groupings) differs")
        if diffs:
            raise RequestError(
                f"cannot upgrade '{name}' live: {'; '.join(diffs)}. A live upgrade changes the components' "
                "code only; for these changes kill the topology and submit the new code")
        version = int(topo.get("code_version") or 1) + 1
        steps = plan(topo, a)
        reply = {"name": name, "from": version - 1, "to": version, "plan": steps, "sha": sha,
                 "dry_run": bool(msg.get("dry_run")),
                 "same_code": sha == topo["sha"] and target == topo["target"]}
        if msg.get("dry_run"):
            return reply
        nimbus.state.put_blob(paths.code(sha), archive)
        topo["upgrade"] = {
            "sha": sha, "target": target, "fingerprint": info["fingerprint"], "overrides": overrides,
            "shape": info.get("shape"), "code_version": version, "order": [s["index"] for s in steps],
            "step": 0, "phase": "next", "since": time.time(), "version": a["version"], "started": time.time(),
        }
        nimbus.state.put_obj(paths.topology(name), topo)
        log.info("topology %s: upgrading to code v%d (%s), %d worker(s) one at a time", name, version, sha[:12],
                 len(steps))
        return reply

    def step(self, topo: dict[str, Any], a: dict[str, Any], beats: Mapping[int, Mapping[str, Any]],
             now: float) -> None:
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
            index = up["order"][up["step"]]
            up["old_pid"] = (beats.get(index) or {}).get("pid")
            self._set_code(a, [index], {k: up[k] for k in CODE_KEYS})
            up["phase"], up["since"] = "replacing", now
            state.put_obj(paths.assignment(topo["name"]), a)
            state.put_obj(paths.topology(topo["name"]), topo)
            log.info("topology %s: upgrade to code v%d: replacing worker %d", topo["name"],
                                 up["code_version"], index)
            return
        if up["phase"] == "replacing":
            index = up["order"][up["step"]]
            b = beats.get(index) or {}
            on_new = b.get("code_version") == up["code_version"] and b.get("pid") != up.get("old_pid")
            if on_new and b.get("status") == "running" and float(b.get("uptime") or 0) >= self.healthy_secs:
                up["step"] += 1
                up["phase"] = "next"
                state.put_obj(paths.topology(topo["name"]), topo)
            elif on_new and b.get("fatal"):
                self._rollback(topo, a, now, f"worker {index} failed on the new code: {b['fatal']}")
            elif now - float(up["since"]) > self.start_limit:
                self._rollback(topo, a, now, f"worker {index} did not come up on the new code within "
                                             f"{self.start_limit:g}s")
            return
        if up["phase"] == "rolling-back":
            old = code_of(a, {})["code_version"]
            back = all((beats.get(i) or {}).get("code_version") == old and (beats.get(i) or {}).get("status") == "running"
                       for i in up["order"][:up["step"] + 1])
            if back or now - float(up["since"]) > self.start_limit:
                self._end(topo, a, ok=False, reason=str(up.get("reason")))

    @staticmethod
    def _set_code(a: dict[str, Any], indexes: list[int], code: Mapping[str, Any] | None) -> None:
        for w in a["workers"]:
            if int(w["index"]) in indexes:
                for k in CODE_KEYS:
                    w.pop(k, None)
                if code is not None:
                    w.update(code)

    def _rollback(self, topo: dict[str, Any], a: dict[str, Any], now: float, reason: str) -> None:
        from ._state import paths

        up = topo["upgrade"]
        log.error("topology %s: upgrade to code v%d failed (%s); rolling back", topo["name"],
                              up["code_version"], reason)
        self._set_code(a, [int(w["index"]) for w in a["workers"]], None)
        up["phase"], up["since"], up["reason"] = "rolling-back", now, reason
        self.nimbus.state.put_obj(paths.assignment(topo["name"]), a)
        self.nimbus.state.put_obj(paths.topology(topo["name"]), topo)

    def _finish(self, topo: dict[str, Any], a: dict[str, Any]) -> None:
        up = topo["upgrade"]
        old_sha = topo["sha"]
        for k in ("sha", "target", "fingerprint", "overrides", "shape"):
            topo[k] = up[k]
        topo["code_version"] = up["code_version"]
        for k in CODE_KEYS:
            a[k] = up[k]
        self._set_code(a, [int(w["index"]) for w in a["workers"]], None)
        log.info("topology %s: upgraded to code v%d (%s)", topo["name"], up["code_version"],
                             str(up["sha"])[:12])
        self._end(topo, a, ok=True, reason="", drop_code=old_sha)

    def _end(self, topo: dict[str, Any], a: dict[str, Any], ok: bool, reason: str,
             drop_code: str | None = None) -> None:
        from ._state import paths

        up = topo.pop("upgrade")
        topo["last_upgrade"] = {"ok": ok, "code_version": up["code_version"], "reason": reason,
                                "time": time.time(), "sha": up["sha"]}
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
            still = [t for t in state.children_objs(paths.TOPOLOGIES).values()
                     if isinstance(t, dict) and drop_code in (t.get("sha"), (t.get("upgrade") or {}).get("sha"))]
            if not still:
                state.delete(paths.code(drop_code))
