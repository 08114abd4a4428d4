"""The README's Trident commands, run as a user would: `storm local` on
topologies/trident_wordcount.py until `storm query` (while it runs) reads the
true counts of all the sentences, then Ctrl-C (SIGINT), then `storm query` on
its state, whose counts must still be exactly the true counts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORM = Path(sys.executable).parent / "storm"
TARGET = str(ROOT / "topologies" / "trident_wordcount.py") + ":wordcount"
SENTENCES = 10_000


def true_counts() -> Counter[str]:
    sys.path.insert(0, str(ROOT / "topologies"))
    try:
        import trident_wordcount as twc
    finally:
        sys.path.pop(0)
    c: Counter[str] = Counter()
    for (s,) in twc.sentences(SENTENCES):
        c.update(s.split())
    return c


# A cap on the run, not a wait: the test stops it as soon as the counts are complete.
RUN_CAP_SECS = 100


def query(conf: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STORM), "query", TARGET, "counts", *args, *conf],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(150)
def test_storm_local_then_storm_query(tmp_path: Path) -> None:
    conf = ["-c", f"wordcount.state={tmp_path / 'counts.sqlite'}",
            "-c", f"topology.trident.meta.path={tmp_path / 'meta.sqlite'}",
            "-c", f"wordcount.sentences={SENTENCES}", "-c", f"storm.local.dir={tmp_path / 'local'}"]
    expected = true_counts()
    log = tmp_path / "local.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(STORM), "local", TARGET, "-d", str(RUN_CAP_SECS), *conf],
                                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + RUN_CAP_SECS - 10
        seen: object = None
        while True:
            assert proc.poll() is None, f"storm local exited early:\n{log.read_text()[-3000:]}"
            q = query(conf, "--top", str(len(expected) + 1), "--json")
            seen = json.loads(q.stdout) if q.returncode == 0 and q.stdout.strip() else q.stderr
            if seen == dict(expected):
                break
            assert time.monotonic() < deadline, f"the counts never became the true counts: {seen}"
            time.sleep(0.5)  # the next poll of storm query; the condition is the counts
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    output = log.read_text()
    assert "all workers stopped" in output, output[-3000:]
    words = sorted(expected)[:5]
    q = query(conf, *words, "zebra", "--json")
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == {**{w: expected[w] for w in words}, "zebra": None}
    top = query(conf, "--top", "3")
    assert top.returncode == 0, top.stderr
    assert top.stdout.splitlines() == [f"{w}\t{n}" for w, n in expected.most_common(3)]
