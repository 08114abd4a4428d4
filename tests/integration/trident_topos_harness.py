"""What the Trident exactly-once tests share: the config of a run, reading the
state and the coordinator's committed txid from outside the workers, waiting
for the true total, and the checks (exact counts, commits in txid order). Also
the Redis / PostgreSQL servers: the ones CI started (STORM_TEST_REDIS,
STORM_TEST_POSTGRES) or private ones started with scripts/services."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trident_topos_wordcount as tw
from itest_support import stats, wait_for
from preconditions import missing

from storm import LocalCluster, LocalTopology
from storm.trident import MetaStore, StateFactory
from storm.trident._executor import meta_server_state, open_meta
from storm.trident._spouts import Meta

TARGET = str(Path(tw.__file__).resolve()) + ":wordcount"
FINISH_TIMEOUT = 90.0


def base_conf(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A SQLite state and metadata file under tmp_path; with a Redis or
    PostgreSQL backend in `extra`, the batch metadata lives on that server
    (the default when a state does), so the kills test it too."""
    conf = {tw.STATE: str(tmp_path / "state.sqlite"), **extra}
    if str(conf.get(tw.BACKEND) or "sqlite") == "sqlite":
        conf["topology.trident.meta.path"] = str(tmp_path / "meta.sqlite")
    return conf


def committed(conf: dict[str, Any]) -> int:
    """The coordinator's last committed txid, read where the workers keep it."""
    m: Meta
    if conf.get("topology.trident.meta.path"):
        path = Path(conf["topology.trident.meta.path"])
        if not path.exists():
            return 0
        m = MetaStore(str(path))
    else:
        m = open_meta(conf, meta_server_state([tw.state_factory(conf)]))
    try:
        return m.committed("TridentWordCount")
    finally:
        m.close()


def counts(factory: StateFactory) -> Counter[str]:
    try:
        raw = factory.read_all()
    except Exception:  # the table may not exist yet
        return Counter()
    return Counter({json.loads(k)[0]: v for k, v in raw.items()})


def check_commit_order(factory: StateFactory) -> tuple[int, int]:
    """Per persisting task, txids were applied in increasing order (a txid may be
    re-applied when the coordinator restarted between the commit and its ack,
    which the txid rules make harmless). Returns (commits, re-commits)."""
    per_task: dict[int, list[int]] = defaultdict(list)
    for task, txid in factory.commits():
        per_task[task].append(txid)
    again = 0
    for task, txids in per_task.items():
        for a, b in zip(txids, txids[1:], strict=False):
            assert b >= a, f"task {task} committed txid {b} after {a}: {txids[:50]}"
            again += a == b
    return sum(len(v) for v in per_task.values()), again


def wait_exact(topo: LocalTopology, conf: dict[str, Any], factory: StateFactory,
               expected: Counter[str]) -> int:
    """Wait until the state holds the true total, then until three more batches
    committed (so any double count would have landed); returns the txid."""
    total = sum(expected.values())
    wait_for(topo, lambda: sum(counts(factory).values()) >= total, "the state reached the true total",
             timeout=FINISH_TIMEOUT)
    at = committed(conf)
    wait_for(topo, lambda: committed(conf) >= at + 3, "three more batches committed", timeout=30)
    return committed(conf)


def check_exact(factory: StateFactory, expected: Counter[str]) -> None:
    got = counts(factory)
    wrong = {w: (got.get(w), n) for w, n in expected.items() if got.get(w) != n}
    extra = set(got) - set(expected)
    assert not wrong and not extra, f"counts differ (got, true): {dict(list(wrong.items())[:10])}, extra {extra}"


def run_with_failures_and_kills(cluster: LocalCluster, tmp_path: Path, kind: str,
                                **extra: Any) -> None:
    """50,000 sentences, random failed batches, worker 1 then worker 0 killed
    with SIGKILL mid-run: the final counts are exactly the true counts."""
    n = 50_000
    conf = base_conf(tmp_path, **{tw.KIND: kind, tw.SENTENCES: n, tw.START: time.time(), tw.BATCH: 250, tw.FAIL_RATE: 0.00005,
                                  **extra})
    factory = tw.state_factory(conf)
    expected = tw.true_counts(n)
    started = time.monotonic()
    topo = cluster.submit(TARGET, config=conf)
    kills = []
    for index in (1, 0):  # worker 0 holds the master coordinator
        mark = committed(conf) + 10
        wait_for(topo, lambda m=mark: committed(conf) >= m, f"ten more batches committed (txid {mark})")
        w = topo.workers[index]
        restarts = w.restarts
        kills.append((index, committed(conf), sum(counts(factory).values())))
        topo.kill_worker(index)
        wait_for(topo, lambda w=w, r=restarts: w.restarts == r + 1 and w.ready, f"worker {index} restarted")
    last = wait_exact(topo, conf, factory, expected)
    elapsed = time.monotonic() - started
    changed = sum(Path(w.log_path).read_text(errors="replace").count("opaque replay:")
                  for w in topo.workers if Path(w.log_path).exists())
    errors = stats(topo)["b2-shuffle"].errors
    failed = stats(topo)["trident-coord"].failed
    topo.stop()
    check_exact(factory, expected)
    ncommits, again = check_commit_order(factory)
    print(f"\n{conf.get(tw.BACKEND) or 'sqlite'} {kind}: {n} sentences, {sum(expected.values())} words exactly counted in {elapsed:.1f}s; "
          f"kills (worker, committed txid, words counted then): {kills}; last txid {last}; "
          f"injected failures {errors}; coordinator trees failed {failed}; "
          f"commits {ncommits}, re-applied after a restart {again}; opaque replays that changed {changed}")
    assert failed > 0, "no batch failed: the test proved little"
    if kind == "opaque":
        assert changed > 0, "no replayed batch differed from its first attempt: the opaque test proved little"




# -- Redis and PostgreSQL servers ------------------------------------------

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_installed() -> bool:
    return any(Path(p).joinpath("initdb").exists() for p in glob.glob("/usr/lib/postgresql/*/bin"))


@contextmanager
def server(kind: str, env_var: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a running `kind` server ("redis" or "postgres"): the one
    `env_var` names, or a private one on a free port, stopped afterwards."""
    url = os.environ.get(env_var)
    if url:
        yield url
        return
    installed = shutil.which("redis-server") if kind == "redis" else _pg_installed()
    if not installed:
        missing(f"{env_var} is not set and no {kind} server is installed here "
                f"(scripts/services install; CI sets {env_var})")
    # Not under tmp_path: pytest makes that 0700, and PostgreSQL runs as its own user.
    directory = tempfile.mkdtemp(prefix=f"storm-test-{kind}-")
    os.chmod(directory, 0o755)
    env = {**os.environ, "STORM_SERVICES_DIR": directory}
    port = _free_port()
    try:
        subprocess.run([str(SERVICES), "start", kind, str(port)], env=env, check=True, timeout=90)
        yield subprocess.run([str(SERVICES), "url", kind, str(port)], env=env, check=True,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    finally:
        subprocess.run([str(SERVICES), "stop", kind], env=env, check=False, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
