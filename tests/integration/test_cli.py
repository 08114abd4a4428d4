"""The `storm` console script run as a user runs it: a real process, real workers.

Each test names its topology uniquely, so the worker processes it may leave can
be found by that name in their command line and killed, whatever happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from itest_support import kill_all

REPO = Path(__file__).resolve().parents[2]
WORDCOUNT = REPO / "topologies" / "wordcount.py"
STORM = Path(sys.executable).parent / "storm"  # the console script of this venv
WORKER_MODULE = "storm._worker_main"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def worker_processes(name: str) -> list[psutil.Process]:
    """Live worker processes of the topology named `name`."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        line = " ".join(p.info["cmdline"] or [])
        if WORKER_MODULE in line and name in line:
            found.append(p)
    return found


def kill_workers(name: str) -> None:
    kill_all(worker_processes(name))


@pytest.fixture
def topology_name() -> Iterator[str]:
    """A unique topology name; any worker still running under it is killed after."""
    name = unique("cli")
    try:
        yield name
    finally:
        kill_workers(name)


def run_storm(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run(
        [str(STORM), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,  # run() kills the child when it expires
    )


class OutputReader:
    """Collects a process's output lines on a thread, so a test can wait for a
    line with a deadline instead of blocking on the pipe."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self._stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not printed within {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 5) -> str:
        self._thread.join(timeout)
        return self.text()


@pytest.mark.timeout(90)
def test_local_runs_wordcount_for_a_duration(tmp_path: Path, topology_name: str) -> None:
    counts = tmp_path / "counts.json"
    result = run_storm(
        "local", str(WORDCOUNT), "--duration", "4", "--name", topology_name,
        "-c", f"wordcount.output={counts}",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    for component in ("sentences", "split", "count", "sink"):
        assert component in result.stdout
    assert f"running topology '{topology_name}' on 2 worker(s)" in result.stdout
    assert f"summary: '{topology_name}' ran" in result.stdout
    assert "stopped by --duration 4" in result.stdout
    assert "all workers stopped" in result.stdout
    log_dir = Path(result.stdout.split("worker logs: ", 1)[1].split()[0])
    assert (log_dir / "worker-0.log").is_file()
    # The CLI returned only after its workers were gone: nothing to wait for here.
    assert worker_processes(topology_name) == []
    words = json.loads(counts.read_text())
    assert words["the"] > 0


NO_TOPOLOGY = "x = 1\n"

INVALID_TOPOLOGY = """
from storm import Bolt, Spout, Topology

class Source(Spout):
    outputs = ["x"]
    def next_tuple(self):
        pass

class Sink(Bolt):
    def execute(self, tup):
        pass

class Broken(Topology):
    source = Source.spec()
    sink = Sink.spec(inputs=["nowhere"])
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "files", "expected"),
    [
        (["missing.py"], {}, "topology file 'missing.py' does not exist"),
        (["empty.py"], {"empty.py": NO_TOPOLOGY}, "no topology found in 'empty.py'"),
        (["broken.py"], {"broken.py": INVALID_TOPOLOGY}, "nowhere"),
        ([str(WORDCOUNT), "-c", "topology.wrkers=2"], {}, "unknown config key 'topology.wrkers'"),
        ([str(WORDCOUNT), "-c", "topology.workers=abc"], {}, "'topology.workers' must be int"),
        ([str(WORDCOUNT), "-c", "topology.workers"], {}, "key=value"),
    ],
    ids=["missing-file", "no-topology", "invalid-topology", "unknown-key", "ill-typed", "bad-syntax"],
)
def test_local_user_errors_are_one_line(
    tmp_path: Path, topology_name: str, args: list[str], files: dict[str, str], expected: str
) -> None:
    for filename, text in files.items():
        (tmp_path / filename).write_text(text)
    result = run_storm("local", *args, "--name", topology_name, "--duration", "5", cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert output.count("\n") == 0, f"expected one line, got:\n{output}"
    assert output.startswith("error: "), output
    assert expected in output
    assert worker_processes(topology_name) == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_local_stops_cleanly_on_signal(
    tmp_path: Path, topology_name: str, signum: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [str(STORM), "local", str(WORDCOUNT), "--workers", "3", "--name", topology_name,
         "-c", f"wordcount.output={tmp_path / 'counts.json'}"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        reader = OutputReader(proc)
        reader.wait_for(f"running topology '{topology_name}' on 3 worker(s)", timeout=60)
        assert len(worker_processes(topology_name)) == 3
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
        output = reader.finish()
        assert code == 0, output
        assert "Traceback" not in output
        assert "stopped by " + ("Ctrl-C" if signum == signal.SIGINT else "SIGTERM") in output
        assert "all workers stopped" in output
        assert worker_processes(topology_name) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(30)
def test_version(tmp_path: Path) -> None:
    import storm

    result = run_storm("version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"storm {storm.__version__} ")


@pytest.mark.timeout(60)
def test_local_accepts_a_module_target_from_the_current_directory(
    tmp_path: Path, topology_name: str
) -> None:
    result = run_storm(
        "local", "topologies.wordcount:WordCount", "--duration", "1", "--workers", "1",
        "--name", topology_name, "-c", f"wordcount.output={tmp_path / 'counts.json'}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"running topology '{topology_name}' on 1 worker(s)" in result.stdout
    assert worker_processes(topology_name) == []
