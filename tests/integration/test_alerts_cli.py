"""`storm alerts run` on real worker processes (2 workers: match and evaluate
in different processes), with the rules file edited while it runs: a rule
added, a bad edit rejected (shown in the dashboard and the worker log, the
running rules kept), a rule removed, a rule changed; a key silenced with
`storm alerts silence`; `storm alerts list` showing firing and resolved keys."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from daemon_topos_harness import wait_until
from itest_support import stop_tree

BIN = Path(sys.executable).parent
STORM = str(BIN / "storm")

RULES = """time_field: ts
rules:
  - name: cpu_high
    filter: {metric: cpu}
    key: host
    condition: {kind: threshold, aggregate: avg, field: value, window: 2, slide: 1, op: ">", value: 90}
"""
CPU_LOW = """  - name: cpu_low
    filter: {metric: cpu}
    key: host
    condition: {kind: threshold, aggregate: avg, field: value, window: 2, slide: 1, op: "<", value: 50}
"""


class Events(threading.Thread):
    """Appends cpu events for h1 (hot), h2 (cool), h3 and h4 (cool until
    ``hot`` is set) to a JSON-lines file, event time = wall clock."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.hot = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with open(self.path, "a") as f:
            while not self.stop.wait(0.05):
                now = time.time()
                hot = self.hot.is_set()
                for host, value in (("h1", 95.0), ("h2", 10.0), ("h3", 95.0 if hot else 10.0),
                                    ("h4", 95.0 if hot else 10.0)):
                    f.write(json.dumps({"ts": now, "host": host, "metric": "cpu", "value": value}) + "\n")
                f.flush()


def alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def changes(path: Path, rule: str, key: str) -> list[tuple[str, str]]:
    return [(a["state"], a["message"]) for a in alerts(path) if a["rule"] == rule and a["key"] == key]


def storm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([STORM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.timeout(120)
def test_alerts_run_hot_reload_silence_and_list(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events_file, out_file = tmp_path / "app.jsonl", tmp_path / "alerts.jsonl"
    events_file.touch()
    name = f"alerts-test-{uuid.uuid4().hex[:8]}"
    events = Events(events_file)
    events.start()
    proc = subprocess.Popen(
        [STORM, "alerts", "run", "rules.yaml", "--source", f"tail://{events_file}", "--sink",
         "file:alerts.jsonl", "-w", "2", "-n", name, "-d", "100"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        env=dict(os.environ, COLUMNS="200"))
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    workers: list[psutil.Process] = []

    def log() -> str:
        return "".join(out) + "\nalerts:\n" + (out_file.read_text() if out_file.exists() else "")

    def listed() -> str:
        r = storm("alerts", "list", name, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    try:
        wait_until(lambda: ("firing", "cpu_high [h1]: avg(value) over 2s = 95 > 90") in changes(out_file, "cpu_high", "h1"),
                   "cpu_high fires for h1", 40, log)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len([w for w in workers if "storm._worker_main" in " ".join(w.cmdline())]) == 2

        # A rule added: it fires; the unchanged rule keeps its window and firing state.
        rules.write_text(RULES + CPU_LOW)
        wait_until(lambda: [s for s, _ in changes(out_file, "cpu_low", "h2")] == ["firing"],
                   "the added rule cpu_low fires for h2", 30, log)
        assert [s for s, _ in changes(out_file, "cpu_high", "h1")] == ["firing"]
        wait_until(lambda: re.search(r"cpu_low\s+warning\s+h2, h3, h4", listed()), "list shows cpu_low firing", 20,
                   listed)

        # A bad edit: rejected, the error in the dashboard; the running rules stay.
        rules.write_text(RULES.replace('op: ">"', 'op: "=>"'))
        rejected = time.time()
        wait_until(lambda: "RuleError: rules.yaml:6: rule 'cpu_high': condition field 'op' must be one of"
                   in "".join(out), "the dashboard shows the rejected edit", 30, log)

        def fresh_status() -> str:
            text = listed()
            age = float(re.search(r"updated ([\d.]+)s ago", text).group(1))  # type: ignore[union-attr]
            return text if time.time() - age > rejected + 0.5 else ""
        shown = wait_until(fresh_status, "list updated after the bad edit", 20, listed)
        assert re.search(r"cpu_low\s+warning\s+h2, h3, h4", shown), shown
        assert re.search(r"cpu_high\s+warning\s+h1\b", shown), shown

        # A rule removed (its firing keys resolve); cpu_high's severity changed only: state kept.
        rules.write_text(RULES.replace("    key: host\n", "    key: host\n    severity: critical\n", 1))
        wait_until(lambda: ("resolved", "cpu_low [h2]: resolved (rule removed)") in changes(out_file, "cpu_low", "h2"),
                   "the removed rule resolves", 30, log)
        assert [s for s, _ in changes(out_file, "cpu_high", "h1")] == ["firing"]

        # A silence of one key: h3 and h4 go hot; h4 is notified, h3 is not, yet it is firing.
        r = storm("alerts", "silence", "cpu_high/h3", "--for", "30m", "-n", name, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "silenced rule 'cpu_high' key 'h3' until" in r.stdout
        wait_until(lambda: "silenced: cpu_high/h3 for 29m" in listed(), "list shows the silence", 10, listed)
        time.sleep(1.5)  # the evaluators re-read the silences file at their next tick (0.5 s)
        events.hot.set()
        wait_until(lambda: changes(out_file, "cpu_high", "h4"), "cpu_high fires for h4", 30, log)
        wait_until(lambda: re.search(r"cpu_high\s+critical\s+h1, h3 \(silenced\), h4", listed()),
                   "list shows h3 firing, silenced", 20, listed)
        assert changes(out_file, "cpu_high", "h3") == []

        # A rule changed (threshold 99): its firing keys resolve; h3's resolve stays silent too.
        rules.write_text(RULES.replace("value: 90", "value: 99"))
        wait_until(lambda: ("resolved", "cpu_high [h4]: resolved (rule changed)") in changes(out_file, "cpu_high", "h4"),
                   "the changed rule resolves h4", 30, log)
        assert ("resolved", "cpu_high [h1]: resolved (rule changed)") in changes(out_file, "cpu_high", "h1")
        wait_until(lambda: re.search(r"cpu_high\s+warning\s+-\s+h\d, h\d", listed()), "list shows them resolved", 20,
                   listed)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log()
    finally:
        events.stop.set()
        stop_tree(proc, workers)
    assert changes(out_file, "cpu_high", "h3") == []
    assert "all workers stopped" in "".join(out)
    logs = Path(re.search(r"worker logs: (\S+)", "".join(out)).group(1))  # type: ignore[union-attr]
    text = "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    assert f"-- edit of {rules} rejected, the running rules stay as they were" in text
    assert "reloaded: added: cpu_low" in text
    assert "reloaded: updated (state kept): cpu_high; removed: cpu_low" in text
    assert "reloaded: changed: cpu_high" in text


@pytest.mark.timeout(150)
def test_alerts_submit_runs_on_a_cluster_and_reloads(tmp_path: Path) -> None:
    from daemon_topos_harness import Daemons

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events_file, out_file = tmp_path / "app.jsonl", tmp_path / "alerts.jsonl"
    events_file.touch()
    events = Events(events_file)
    events.start()
    try:
        with Daemons(tmp_path / "cluster") as d:
            d.start_nimbus()
            d.start_supervisor("sup1", slots=2)
            r = d.storm("alerts", "submit", str(rules), "--source", f"tail://{events_file}",
                        "--sink", f"file://{out_file}", "--workers", "2")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "submitted topology 'alerts-rules': 2 worker(s)" in r.stdout
            d.wait_running("alerts-rules", 2)
            wait_until(lambda: changes(out_file, "cpu_high", "h1"), "cpu_high fires for h1 on the cluster", 60,
                       d.diagnostics)
            # The cluster's workers watch the same file: an added rule applies without a restart.
            rules.write_text(RULES + CPU_LOW)
            wait_until(lambda: changes(out_file, "cpu_low", "h2"), "the added rule fires on the cluster", 40,
                       d.diagnostics)
            assert [s for s, _ in changes(out_file, "cpu_high", "h1")] == ["firing"]
            def listed() -> str:
                return storm("alerts", "list", "alerts-rules", "--rules", str(rules), cwd=tmp_path).stdout
            # The evaluators write their status every second: the list follows within one.
            wait_until(lambda: re.search(r"cpu_low\s+warning\s+h2, h3, h4", listed()), "list shows cpu_low firing",
                       20, listed)
            assert d.storm("kill", "alerts-rules", "-w", "0").returncode == 0
    finally:
        events.stop.set()


def test_alerts_check_and_bad_urls_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("window: 2", "window: -2") + "  - name: cpu_high\n    condition: {kind: nope}\n")
    r = storm("alerts", "check", str(bad), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.splitlines() == [
        f"error: {bad}:6: rule 'cpu_high': condition field 'window' must be > 0, got -2",
        f"error: {bad}:8: rule 'cpu_high': condition field 'kind' must be one of threshold, rate_of_change, "
        "absence, anomaly, sequence, got 'nope'",
    ]
    good = tmp_path / "rules.yaml"
    good.write_text(RULES)
    r = storm("alerts", "check", str(good), cwd=tmp_path)
    assert r.returncode == 0 and f"ok: {good}: 1 rule(s) valid: cpu_high" in r.stdout, r.stdout + r.stderr
    r = storm("alerts", "run", str(good), "--source", "ftp://x/y", "-d", "1", cwd=tmp_path)
    assert r.returncode == 2
    assert "error: --source 'ftp://x/y': unknown scheme 'ftp'; the sources are: tail:///path/app.jsonl" in r.stderr
    r = storm("alerts", "run", str(good), "--source", "tail:app.jsonl", "--sink", "http://127.0.0.1:9/x", cwd=tmp_path)
    assert r.returncode == 2
    assert "error: --sink 'http://127.0.0.1:9/x': a webhook sink is written webhook+http://" in r.stderr
    r = storm("alerts", "run", str(bad), "--source", "tail:app.jsonl", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 2, r.stderr


@pytest.mark.timeout(90)
def test_alerts_run_http_source_to_a_webhook(tmp_path: Path) -> None:
    """--source http://127.0.0.1:PORT takes POSTs; --sink webhook+http://... POSTs the alerts."""
    import http.server
    import urllib.error
    import urllib.request

    from daemon_topos_harness import free_ports

    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.extend(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    (tmp_path / "rules.yaml").write_text(RULES)
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [STORM, "alerts", "run", "rules.yaml", "--source", f"http://127.0.0.1:{port}",
         "--sink", f"webhook+http://127.0.0.1:{hook.server_address[1]}/alerts", "-d", "60"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    stop = threading.Event()

    def post() -> None:
        while not stop.wait(0.1):
            now = time.time()
            body = "\n".join(json.dumps({"ts": now, "host": h, "metric": "cpu", "value": v})
                             for h, v in (("h1", 95.0), ("h2", 10.0))).encode()
            try:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}", data=body), timeout=5)
            except (urllib.error.URLError, OSError):
                pass  # not listening yet

    threading.Thread(target=post, daemon=True).start()
    children: list[psutil.Process] = []
    try:
        wait_until(lambda: any(a["rule"] == "cpu_high" and a["key"] == "h1" for a in received),
                   "the webhook receives cpu_high for h1", 60, lambda: "".join(out))
        children = psutil.Process(proc.pid).children(recursive=True)
        assert [(a["state"], a["key"]) for a in received] == [("firing", "h1")]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(out)
    finally:
        stop.set()
        hook.shutdown()
        stop_tree(proc, children)
