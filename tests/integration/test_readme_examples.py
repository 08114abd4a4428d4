"""The README's examples that start worker processes, run as a user would: the
quickstart file under `storm local`, and the LocalCluster example as a script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from itest_support import kill_all

README = Path(__file__).resolve().parents[2] / "README.md"
STORM = Path(sys.executable).parent / "storm"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def workers_of(path: Path) -> list[psutil.Process]:
    """Live worker processes whose target is the file `path`."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        line = " ".join(p.info["cmdline"] or [])
        if p.info["status"] != psutil.STATUS_ZOMBIE and "storm._worker_main" in line and str(path) in line:
            found.append(p)
    return found


def kill_workers_of(path: Path) -> None:
    kill_all(workers_of(path))


@pytest.mark.timeout(90)
def test_quickstart_file_runs_under_storm_local(tmp_path: Path) -> None:
    path = tmp_path / "my_wordcount.py"
    path.write_text(python_blocks()[0])
    try:
        result = subprocess.run(
            [str(STORM), "local", path.name, "--duration", "2"], cwd=tmp_path,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "running topology 'WordCount' on 2 worker(s)" in result.stdout
        assert workers_of(path) == []
    finally:
        kill_workers_of(path)


@pytest.mark.timeout(90)
def test_local_cluster_example_runs_as_a_script(tmp_path: Path) -> None:
    quickstart, _, cluster_example = python_blocks()[:3]
    path = tmp_path / "wordcount_cluster.py"
    path.write_text(quickstart + "\n\n" + cluster_example)
    try:
        result = subprocess.run(
            [sys.executable, str(path)], cwd=tmp_path,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "'count':" in result.stdout
        assert workers_of(path) == []
    finally:
        kill_workers_of(path)
