"""The README's `storm alerts` commands, run as shown in a shell from a copy of
the repository's layout: check, run (on a file the test appends events to),
silence and list while it runs, and the demo topology with --rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from daemon_topos_harness import wait_until
from itest_support import stop_tree

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BIN = Path(sys.executable).parent


def section(title: str) -> str:
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def env(cwd: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "STORM_CONF_FILE"}
    e.update(PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}", HOME=str(cwd), COLUMNS="200")
    return e


def shell(script: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env(cwd), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def cpu_events(path: Path, stop: threading.Event) -> None:
    with open(path, "a") as f:
        while not stop.wait(0.1):
            now = time.time()
            for host, value in (("host-1", 30.0), ("host-2", 97.0)):
                f.write(json.dumps({"ts": now, "host": host, "metric": "cpu", "value": value}) + "\n")
            f.flush()


@pytest.mark.timeout(150)
def test_storm_alerts_section_commands(tmp_path: Path) -> None:
    text = section("`storm alerts`")
    start, silences = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    check, run = start.strip().splitlines()
    local = re.search(r"`(storm local topologies/alerting.py --rules \S+ -d \d+)`", text)
    assert local is not None
    # A copy of the rules (the silences and the status are written beside them), the demo topology as it is.
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO / "conf" / "alerts.example.yaml", tmp_path / "conf")
    (tmp_path / "topologies").symlink_to(REPO / "topologies")

    r = shell(check, tmp_path)
    assert r.returncode == 0 and "ok: conf/alerts.example.yaml: 5 rule(s) valid" in r.stdout, r.stdout + r.stderr

    (tmp_path / "app.jsonl").touch()
    stop = threading.Event()
    threading.Thread(target=cpu_events, args=(tmp_path / "app.jsonl", stop), daemon=True).start()
    proc = subprocess.Popen(["bash", "-c", f"exec {run}"], cwd=tmp_path, env=env(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    alerts = tmp_path / "alerts.jsonl"
    children: list[psutil.Process] = []
    try:
        wait_until(lambda: alerts.exists() and '"key":"host-2"' in alerts.read_text(), "cpu_high fires for host-2",
                   60, lambda: "".join(out))
        children = psutil.Process(proc.pid).children(recursive=True)
        silence, listing = silences.strip().splitlines()
        r = shell(silence, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "silenced rule 'cpu_high' key 'host-2' until" in r.stdout
        assert (tmp_path / "conf" / "alerts.example.silences.yaml").exists()

        def listed() -> str:
            r = shell(listing, tmp_path)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout
        shown = wait_until(lambda: (lambda t: t if re.search(r"cpu_high\s+critical\s+host-2 \(silenced\)", t)
                                    else "")(listed()), "list shows host-2 firing, silenced", 20, listed)
        assert "topology 'alerts-alerts.example'" in shown
        assert "silenced: cpu_high/host-2 for 29m" in shown and "(maintenance)" in shown
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(out)
    finally:
        stop.set()
        stop_tree(proc, children)
    assert "stopped by Ctrl-C" in "".join(out)

    r = shell(local.group(1), tmp_path, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running topology 'Alerting'" in r.stdout and "stopped by --duration 10" in r.stdout
    assert (tmp_path / "conf" / ".alerts.example.yaml.d" / "last-good.yaml").exists()
