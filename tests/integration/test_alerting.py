"""Alerting on real worker processes: scripted metric events through match ->
evaluate (two tasks each, two workers) to a file sink and a webhook served by a
real HTTP server on 127.0.0.1 that refuses the first attempts. Every expected
alert arrives (none lost; a replay may repeat one, never invent one) and every
event is acked. Also `storm local` on the demo: a bad rules file is one red
line and a non-zero exit; the demo itself writes alerts that fire and resolve."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import alert_topos_scripted as scripted
import psutil
import pytest
from itest_support import kill_all, wait_for

from storm import LocalCluster
from storm.spouts import SUMMARY_DIR_KEY

REPO = Path(__file__).resolve().parents[2]
STORM = Path(sys.executable).parent / "storm"


@dataclass
class Hook:
    fail_first: int = 3
    attempts: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.attempts += 1
                fail = state.attempts <= state.fail_first
                if not fail:
                    state.records.extend(json.loads(body))
            self.send_response(503 if fail else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def changes(records: list[dict[str, Any]]) -> set[tuple[str, str, str, float]]:
    return {(r["rule"], r["key"], r["state"], r["ts"]) for r in records}


@pytest.mark.timeout(90)
def test_alerts_reach_a_flaky_webhook_and_the_file(cluster: LocalCluster, record_dir: Path,
                                                   hook: Hook) -> None:
    rules = record_dir / "rules.yaml"
    rules.write_text(scripted.RULES)
    out = record_dir / "alerts.jsonl"
    conf = {
        "topology.workers": 2,
        "alerting.rules": str(rules),
        "sinks.file.path": str(out),
        "sinks.webhook.url": hook.url,
        "sinks.webhook.backoff.secs": 0.05,
        SUMMARY_DIR_KEY: str(record_dir),
    }
    topo = cluster.submit(scripted.ScriptedAlertsWebhook, config=conf)
    expected = set(scripted.EXPECTED)
    summary = record_dir / f"events-{topo.spec.components['events'].tasks[0]}.json"

    def done() -> bool:
        with hook.lock:
            got = changes(hook.records)
        finished = summary.exists() and json.loads(summary.read_text()).get("finished") is True
        return got >= expected and finished

    wait_for(topo, done, "every expected alert reached the webhook and every event was acked", timeout=60)
    with hook.lock:
        got = changes(hook.records)
    assert got == expected, f"unexpected alerts: {got - expected}"
    assert hook.attempts >= hook.fail_first + len(expected)
    filed = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    filed += [json.loads(line) for p in record_dir.glob("alerts.jsonl.*") for line in p.read_text().splitlines()]
    assert changes(filed) == expected
    print(f"\nwebhook: {hook.attempts} attempts, {len(hook.records)} records "
          f"({len(hook.records) - len(expected)} repeated by replays)")


def kill_workers(name: str) -> None:
    """Kill worker processes of the topology `name` a killed `storm local` left."""
    procs = [p for p in psutil.process_iter(["cmdline"])
             if "storm._worker_main" in " ".join(p.info["cmdline"] or []) and name in " ".join(p.info["cmdline"] or [])]
    kill_all(procs)


def run_cli(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    name = f"alerting-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen([str(STORM), *args, "--name", name], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_workers(name)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


@pytest.mark.timeout(60)
def test_storm_local_rejects_a_bad_rules_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: cpu\n    condition: {kind: threshold, window: 10, op: '>', value: x}\n")
    res = run_cli(["local", str(REPO / "topologies" / "alerting.py"), "-c", f"alerting.rules={bad}",
                   "--duration", "5"], tmp_path, 50)
    assert res.returncode != 0
    assert "rule 'cpu': condition field 'value' must be a number" in res.stdout
    assert "Traceback" not in res.stdout


def alert_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of an alerts file (a line still being written is left out)."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().split("\n")[:-1] if x.strip()]


@pytest.mark.timeout(120)
def test_alerting_demo_fires_an_alert(tmp_path: Path) -> None:
    """The demo command, started 8 s into its cycle (where host-2's CPU runs hot),
    until cpu_high fires for host-2 in alerts.jsonl, then Ctrl-C (SIGINT): it
    stops cleanly (the other incidents and every resolve are covered on the same
    generator in tests/unit/test_alert_topology.py)."""
    rules = (REPO / "conf" / "alerts.example.yaml").read_text()
    (tmp_path / "rules.yaml").write_text(rules)
    name = f"alerting-{uuid.uuid4().hex[:10]}"
    alerts = tmp_path / "alerts.jsonl"
    log = tmp_path / "local.log"
    cap = 90  # --duration is a cap here: the test stops the demo once the alert is filed
    with log.open("w") as out:
        proc = subprocess.Popen([str(STORM), "local", str(REPO / "topologies" / "alerting.py"),
                                 "-c", "alerting.rules=rules.yaml", "-c", "alerting.demo.start.secs=8",
                                 "--duration", str(cap), "--name", name],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + cap - 10
        while not any(r["rule"] == "cpu_high" and r["state"] == "firing" for r in alert_lines(alerts)):
            assert proc.poll() is None, f"storm local exited early:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"cpu_high never fired:\n{log.read_text()[-2000:]}"
            time.sleep(0.2)  # the next look at alerts.jsonl; the condition is the alert
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        kill_workers(name)
    lines = alert_lines(alerts)
    assert all(r["key"] == "host-2" for r in lines if r["rule"] == "cpu_high"), lines
