"""The benchmark scripts run and count right (their speed is not tested here):
bench/vs_bytewax.py in its quick mode, on our side only (no Bytewax install)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _leftover_workers(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        line = " ".join(p.info["cmdline"] or [])
        if p.info["status"] != psutil.STATUS_ZOMBIE and "storm._worker_main" in line and marker in line:
            found.append(p)
    return found


@pytest.mark.timeout(180)
def test_vs_bytewax_quick_mode_counts_exact(tmp_path: Path) -> None:
    # TMPDIR: the script's run directory, and so every worker's files, under tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, str(BENCH / "vs_bytewax.py"), "--only", "ours", "--sentences", "2000",
           "--rounds", "1", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = _leftover_workers(str(tmp_path))
        for p in left:
            p.kill()
        psutil.wait_procs(left, timeout=5)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert not left, f"worker processes left running: {[p.pid for p in left]}"
    result = json.loads(out)
    assert result["counts_exact"] is True
    assert result["words"] == 16_000
    assert set(result["modes"]) == {"ours, 1 worker, acking off", "ours, 2 workers, acking off",
                                    "ours, 2 workers, acking on", "ours, 2 workers, acking on, BasicBolt"}
    assert all(len(m["words_per_s"]) == 1 for m in result["modes"].values())
    assert result["p99_complete_ms"] is not None  # the paced acking-on run completed its trees
    assert not (tmp_path / "storm-bench-bytewax" / "venv").exists()  # --only ours installs nothing
    assert not list((tmp_path / "storm-bench-bytewax").glob("run-*"))  # removed after a good run


@pytest.fixture
def vs_bytewax() -> Iterator[ModuleType]:
    """bench/vs_bytewax.py imported; sys.path and sys.modules as they were afterwards
    (it puts bench/ on sys.path and imports bench/topologies.py as `topologies`)."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("vs_bytewax", BENCH / "vs_bytewax.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_bytewax"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            del sys.modules[name]


def test_vs_bytewax_rejects_counts_that_are_not_exact(vs_bytewax: ModuleType) -> None:
    bench = vs_bytewax
    sentences, expected = bench.workload(100)
    assert len(sentences) == 100 and sum(expected.values()) == 800
    assert sentences == bench.workload(100)[0]  # fixed seed: the same workload every run
    wrong = Counter(expected)
    word = next(iter(wrong))
    wrong[word] -= 1
    message = f"799 words counted, 800 expected, 1 word(s) differ, e.g. '{word}'"
    with pytest.raises(bench.BenchError, match=re.escape(message)):
        bench.check_counts("ours, 1 worker", wrong, expected)
    bench.check_counts("ours, 1 worker", Counter(expected), expected)
