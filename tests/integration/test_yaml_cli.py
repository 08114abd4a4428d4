"""YAML topology files through the `storm` command, as a user runs them: a YAML
file that includes the multi-lang word count and takes its output path from a
--filter file runs on real worker processes (the workers substitute the values
resolved by the CLI, and the pystorm child's script is found beside the
included file); `--dry-run` prints the graph and starts nothing; a mistake is
one red line naming file:line and key, exit 2; and on a cluster `storm submit
topology.yaml --filter` ships the YAML, its includes and its modules to the
workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_topos_harness import Daemons, processes_mentioning, wait_until

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "topologies"
STORM = [sys.executable, "-m", "storm.cli"]
SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "four score and seven years ago",
    "snow white and the seven dwarfs",
    "i am at two with nature",
]


def expected_counts(repeat: int) -> dict[str, int]:
    return {w: n * repeat for w, n in Counter(" ".join(SENTENCES).split()).items()}


def storm(*argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STORM_CONF_FILE"}
    env["COLUMNS"] = "100"
    return subprocess.run([*STORM, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def read_counts(path: Path) -> dict[str, int] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def assert_user_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.fixture
def no_leftover_workers(tmp_path: Path) -> Iterator[None]:
    yield
    left = processes_mentioning(str(tmp_path))
    for p in left:
        p.kill()
    assert not left, f"workers left running: {[p.pid for p in left]}"


@pytest.mark.timeout(120)
def test_local_run_of_an_including_yaml_with_a_filter_file(tmp_path: Path, no_leftover_workers: None) -> None:
    out = tmp_path / "counts.json"
    (tmp_path / "dev.properties").write_text(f"# where the sink writes\nout={out}\npython={sys.executable}\n")
    (tmp_path / "run.yaml").write_text(f"""\
includes:
  - {TOPOLOGIES / "multilang_wordcount.yaml"}
name: YamlWordCount
config:
  wordcount.output: ${{out}}
  wordcount.repeat: 40
  storm.local.dir: {tmp_path / "local"}
""")
    r = storm("local", "run.yaml", "--filter", "dev.properties", "-d", "12", cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running topology 'YamlWordCount' on 2 worker(s)" in r.stdout
    # The sink, in a worker, wrote where the filter file said: the value the CLI resolved.
    assert read_counts(out) == expected_counts(40), r.stdout


@pytest.mark.timeout(60)
def test_dry_run_prints_the_graph_and_mistakes_are_one_line(tmp_path: Path) -> None:
    r = storm("local", str(TOPOLOGIES / "alerting.yaml"), "--dry-run", cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "watermark ─all→ evaluate" in r.stdout and "default ─fields(rule, key)→ evaluate" in r.stdout
    assert "ok: 'Alerting' is valid: 5 component(s) with 5 task(s) on 1 worker(s); no worker started" in r.stdout
    assert "running topology" not in r.stdout

    r = storm("visualize", str(TOPOLOGIES / "wordcount.yaml"), "--dot", cwd=REPO)
    assert r.returncode == 0 and '"split" -> "count" [label="default: fields(word)"];' in r.stdout, r.stdout

    # The word count with its split bolt replaced by one that cannot be imported.
    (tmp_path / "topology.yaml").write_text(f"""\
includes: [{TOPOLOGIES / "wordcount.yaml"}]
bolts:
  - name: split
    class: mypkg.bolts.SplitBolt
""")
    for command in ("local", "visualize"):
        assert_user_error(storm(command, "topology.yaml", cwd=tmp_path),
                          "topology.yaml:4: bolts[0].class: no module named 'mypkg'")
    assert_user_error(storm("local", str(TOPOLOGIES / "wordcount.py"), "--filter", "x.properties", cwd=tmp_path),
                      "--filter applies to YAML topology files")
    (tmp_path / "bad.properties").write_text("just words\n")
    assert_user_error(storm("local", str(TOPOLOGIES / "wordcount.yaml"), "--filter", "bad.properties",
                            cwd=tmp_path), "bad.properties:1: expected name=value")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with Daemons(tmp_path / "cluster") as d:
        d.start_nimbus()
        d.start_supervisor("sup1", slots=2)
        yield d


@pytest.mark.timeout(150)
def test_submit_a_yaml_topology_with_includes_to_a_cluster(tmp_path: Path, daemons: Daemons) -> None:
    project = tmp_path / "project"
    (project / "topologies").mkdir(parents=True)
    (project / "shared").mkdir()
    # The components live beside the YAML file: the archive must carry them.
    (project / "topologies" / "wc_cluster_parts.py").write_text((TOPOLOGIES / "wordcount.py").read_text())
    (project / "shared" / "base.yaml").write_text("config:\n  wordcount.output: ${out}\n  wordcount.repeat: 30\n")
    (project / "topologies" / "wc.yaml").write_text(
        "includes: [../shared/base.yaml]\n"
        + (TOPOLOGIES / "wordcount.yaml").read_text()
        .replace("name: WordCount", "name: YamlOnCluster").replace("class: wordcount.", "class: wc_cluster_parts."))
    out = tmp_path / "cluster-counts.json"
    (tmp_path / "prod.properties").write_text(f"out={out}\n")
    r = daemons.storm("submit", str(project / "topologies" / "wc.yaml"), "--filter", str(tmp_path / "prod.properties"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "submitted topology 'YamlOnCluster'" in r.stdout and "(3 file(s)," in r.stdout, r.stdout
    try:
        wait_until(lambda: read_counts(out) == expected_counts(30), "the cluster's workers count every word",
                   90, lambda: f"{read_counts(out)}\n{daemons.diagnostics()}")
    finally:
        daemons.storm("kill", "YamlOnCluster", "-w", "0")
    wait_until(lambda: not daemons.worker_processes(), "the topology's workers exit", 30, daemons.diagnostics)

    # The README's command: the repository's own YAML word count, beside its wordcount.py.
    out = tmp_path / "repo-counts.json"
    r = daemons.storm("submit", str(TOPOLOGIES / "wordcount.yaml"), "-c", "wordcount.repeat=20",
                      "-c", f"wordcount.output={out}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "submitted topology 'WordCount'" in r.stdout and "(2 file(s)," in r.stdout, r.stdout
    try:
        wait_until(lambda: read_counts(out) == expected_counts(20), "the cluster counts every word", 90,
                   lambda: f"{read_counts(out)}\n{daemons.diagnostics()}")
    finally:
        daemons.storm("kill", "WordCount", "-w", "0")
