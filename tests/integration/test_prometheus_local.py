"""`storm local -c storm.prometheus.port=P` serves the dashboard's figures in
Prometheus text format while it runs (parsed with prometheus-client's parser),
and stops serving when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemon_topos_harness import free_ports, wait_until
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent


def scrape(port: int) -> dict[tuple[str, str | None], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, s.labels.get("component")): s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.labels.get("topology") == "Counted" and "task" not in s.labels}


def scraped_acked(port: int) -> bool:
    """Every worker reported the end: spout acks and sink executes come from different workers."""
    try:
        samples = scrape(port)
    except (OSError, urllib.error.URLError):
        return False
    return (samples.get(("storm_component_acked_total", "numbers")) == 1000
            and samples.get(("storm_component_acked_total", "relay")) == 1000
            and samples.get(("storm_component_executed_total", "sink")) == 1000)


@pytest.mark.timeout(60)
def test_storm_local_serves_prometheus(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS="120")
    log = tmp_path / "out.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "storm.cli", "local", f"{HERE / 'topos_metrics.py'}:Counted", "--duration", "40",
             "-c", f"storm.prometheus.port={port}", "-c", f"storm.local.dir={tmp_path}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path), start_new_session=True)
    try:
        wait_until(lambda: scraped_acked(port), "the endpoint shows 1,000 acked", 40,
                   lambda: log.read_text(errors="replace"))
        samples = scrape(port)
        assert samples[("storm_component_emitted_total", "numbers")] == 1000
        assert samples[("storm_component_failed_total", "numbers")] == 0
        assert samples[("storm_component_executed_total", "sink")] == 1000
        assert f"prometheus metrics on http://127.0.0.1:{port}/metrics" in log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        with pytest.raises(OSError):
            scrape(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
