"""The README's "First hour" and "YAML topology files" commands, run as shown
in a shell: `storm quickstart` writes a project in which `storm local` runs the
topology on real workers and `python -m pytest` passes, an existing path is
refused, the project's topology is submitted to `storm cluster up` with its
storm.yaml; and the YAML section's commands run from the repository."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import yaml
from daemon_topos_harness import FAST, free_ports, processes_mentioning, wait_until

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # storm and python of this environment, first on the PATH


def section(title: str) -> str:
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def shell(script: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STORM_CONF_FILE"}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(cwd), COLUMNS="100")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def kill_leftovers(marker: Path) -> list[int]:
    left = processes_mentioning(str(marker))
    for p in left:
        p.kill()
    psutil.wait_procs(left, timeout=5)
    return [p.pid for p in left]


@pytest.mark.timeout(240)
def test_first_hour_quickstart_local_test_and_submit(tmp_path: Path) -> None:
    text = section("First hour")
    start, cluster = bash_blocks(text)
    try:
        r = shell(start, tmp_path, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "created project 'word_freq'" in r.stdout
        assert "running topology 'WordFreq' on 2 worker(s)" in r.stdout
        assert "all workers stopped" in r.stdout and "0 error(s)" in r.stdout
        assert re.search(r"\b2 passed in\b", r.stdout), r.stdout
        project = tmp_path / "word_freq"
        assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()
                      and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts) == [
            ".gitignore", "README.md", "pyproject.toml", "storm.yaml", "tests/test_word_freq.py",
            "topologies/word_freq.py"]

        # An existing path is refused and left as it was.
        before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
        again = shell("storm quickstart word_freq", tmp_path)
        assert again.returncode == 2 and "error: 'word_freq' already exists" in again.stderr, again.stderr
        assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before

        # The cluster part, against `storm cluster up` with the project's storm.yaml: the
        # test points it at free ports and its own directories, as a user edits it.
        conf = yaml.safe_load((project / "storm.yaml").read_text())
        assert conf["nimbus.seeds"] == ["127.0.0.1"]
        conf.update(FAST)
        conf.update({"nimbus.port": free_ports(1)[0], "supervisor.slots.ports": free_ports(2),
                     "storm.local.dir": str(tmp_path / "cluster"),
                     "storm.cluster.state.sqlite": str(tmp_path / "cluster" / "state.sqlite")})
        (project / "storm.yaml").write_text(yaml.safe_dump(conf))
        up_command = re.search(r"`(storm cluster up --conf-file storm.yaml)`", text)
        assert up_command is not None
        env = dict(os.environ, HOME=str(tmp_path), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        env.pop("STORM_CONF_FILE", None)
        up = subprocess.Popen(["bash", "-c", f"exec {up_command.group(1)}"], cwd=project, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        out: list[str] = []
        threading.Thread(target=lambda: out.extend(iter(up.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
        try:
            wait_until(lambda: any("Ctrl-C stops the cluster" in line for line in out), "cluster up is ready", 60,
                       lambda: "".join(out))
            r = shell(cluster, project, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr + "".join(out)
            assert "submitted topology 'WordFreq'" in r.stdout
            assert re.search(r"WordFreq\s+ACTIVE", r.stdout), r.stdout
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0, "".join(out)
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(5)
    finally:
        left = kill_leftovers(tmp_path)
    assert not left, f"processes left running: {left}"


@pytest.mark.timeout(120)
def test_yaml_section_commands(tmp_path: Path) -> None:
    (block,) = bash_blocks(section("YAML topology files"))
    # From a copy of the repository's layout, so that files the commands write stay out of it.
    for name in ("topologies", "conf"):
        (tmp_path / name).symlink_to(REPO / name)
    try:
        r = shell(block, tmp_path, timeout=100)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        left = kill_leftovers(tmp_path)
    assert "ok: 'WordCount' is valid: 4 component(s) with 7 task(s) on 2 worker(s)" in r.stdout
    assert "running topology 'WordCount' on 2 worker(s)" in r.stdout and "stopped by --duration 3" in r.stdout
    assert "watermark ─all→ evaluate" in r.stdout
    assert "ok: 'Alerting' is valid" in r.stdout
    assert (tmp_path / "wordcount-counts.json").exists()
    assert not left
