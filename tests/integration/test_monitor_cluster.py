"""Observability of a cluster topology (real nimbus, supervisor and workers):
`storm stats --json` and nimbus's Prometheus endpoint agree with known counts,
`storm monitor` draws the live dashboard in an 80x24 tmux pane and quits on q,
`storm visualize NAME` lists the components nimbus knows."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_topos_harness import Daemons, free_ports, wait_until
from preconditions import require_binary
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
COUNTED = f"{HERE / 'topos_metrics.py'}:Counted"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with Daemons(tmp_path) as d:
        yield d


def stats(d: Daemons) -> dict[str, Any]:
    r = d.storm("stats", "Counted", "--json")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def component(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["components"] if c["name"] == name)


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", "storm-test", *args], capture_output=True, text=True, timeout=20)


@pytest.mark.timeout(120)
def test_stats_prometheus_monitor_and_visualize(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons
    prom_port = free_ports(1)[0]
    d.start_nimbus(extra={"storm.prometheus.port": prom_port})
    d.start_supervisor("sup-a")
    d.submit(COUNTED, **{"topology.workers": 2})
    d.wait_running("Counted", 2)

    def done() -> bool:
        # Reports come per worker: wait until every one has sent its figures of the end.
        data = stats(d)
        return all(component(data, n)["acked"] == 1000 for n in ("numbers", "relay", "sink"))

    wait_until(done, "1,000 tuples acked in storm stats", 40, d.diagnostics)
    data = stats(d)
    numbers, relay, sink = (component(data, n) for n in ("numbers", "relay", "sink"))
    assert (numbers["emitted"], numbers["acked"], numbers["failed"]) == (1000, 1000, 0)
    assert (relay["executed"], sink["executed"], sink["acked"]) == (1000, 1000, 1000)
    assert numbers["windows"]["all"]["acked"] == 1000
    assert set(numbers["windows"]) == {"10s", "10m", "all"}
    assert len(data["workers"]) == 2 and all(w["pid"] and w["host"] == "127.0.0.1" for w in data["workers"])
    r = d.storm("stats", "Counted")
    assert r.returncode == 0 and "window 10s" in r.stdout and "numbers" in r.stdout, r.stdout + r.stderr
    r = d.storm("stats", "Nope")
    assert r.returncode == 2 and "Nope" in r.stderr and "Traceback" not in r.stderr

    # nimbus's Prometheus endpoint, refreshed every monitor pass
    def scraped() -> dict[tuple[str, str | None], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {(s.name, s.labels.get("component")): s.value for fam in text_string_to_metric_families(text)
                for s in fam.samples if s.labels.get("topology") == "Counted" and "task" not in s.labels}

    wait_until(lambda: all(scraped().get(("storm_component_acked_total", n)) == 1000
                           for n in ("numbers", "relay", "sink")),
               "prometheus has the counts", 20, d.diagnostics)
    samples = scraped()
    assert samples[("storm_component_emitted_total", "numbers")] == 1000
    assert samples[("storm_component_failed_total", "numbers")] == 0
    assert samples[("storm_component_executed_total", "sink")] == 1000

    r = d.storm("visualize", "Counted")
    assert r.returncode == 0 and "relay  bolt ×2" in r.stdout, r.stdout + r.stderr

    require_binary("tmux", "apt-get install tmux (the live monitor runs in a tmux pane)")
    cmd = " ".join([sys.executable, "-m", "storm.cli", "monitor", "Counted", "--interval", "0.5",
                    *(f"'{a}'" for a in d.args())])
    env_home = f"HOME={tmp_path}"
    try:
        r = tmux("new-session", "-d", "-s", "mon", "-x", "80", "-y", "24", f"env {env_home} {cmd}")
        assert r.returncode == 0, r.stderr

        def pane() -> str:
            return tmux("capture-pane", "-p", "-t", "mon").stdout

        wait_until(lambda: "sink" in pane() and "1000" in pane(), "the monitor shows the figures", 30,
                   lambda: pane())
        text = pane()
        lines = text.splitlines()
        assert len(lines) <= 24 and max(len(x) for x in lines) <= 80
        assert "Counted" in text and "numbers" in text and "relay" in text and "health" in text
        tmux("send-keys", "-t", "mon", "q")
        wait_until(lambda: tmux("has-session", "-t", "mon").returncode != 0, "q quits the monitor", 15, pane)
    finally:
        tmux("kill-server")
