"""The README's fault-injection test on LocalCluster, run as a user would:
the block saved as test_count_cluster.py and run with `python -m pytest`
in a directory of its own (its worker processes import that file)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_readme_examples import kill_workers_of, python_blocks, workers_of

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_says_how_the_example_is_run() -> None:
    section = README.read_text().split("### Testing against failures: fault injection", 1)[1].split("\n## ", 1)[0]
    assert "run with `python -m pytest test_count_cluster.py`:" in section
    [block] = [b for b in python_blocks() if b.startswith("# test_count_cluster.py")]
    assert block in section


@pytest.mark.timeout(120)
def test_the_readme_local_cluster_fault_test_passes(tmp_path: Path) -> None:
    [block] = [b for b in python_blocks() if b.startswith("# test_count_cluster.py")]
    path = tmp_path / "test_count_cluster.py"
    path.write_text(block)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_count_cluster.py"],
            cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=100,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"\b1 passed\b", result.stdout), result.stdout
        assert workers_of(path) == []
    finally:
        kill_workers_of(path)
