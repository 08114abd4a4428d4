"""The README's Trident commands, run as a user would: `storm local` on
topologies/trident_wordcount.py for a few seconds, then `storm query` on its
state, whose counts must be exactly the true counts of the sentences."""

from __future__ import annotations

import json
import subprocess
import sys
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


@pytest.mark.timeout(120)
def test_storm_local_then_storm_query(tmp_path: Path) -> None:
    conf = ["-c", f"wordcount.state={tmp_path / 'counts.sqlite'}",
            "-c", f"topology.trident.meta.path={tmp_path / 'meta.sqlite'}",
            "-c", f"wordcount.sentences={SENTENCES}", "-c", f"storm.local.dir={tmp_path / 'local'}"]
    run = subprocess.run([str(STORM), "local", TARGET, "-d", "10", *conf], capture_output=True,
                         text=True, timeout=90, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "all workers stopped" in run.stdout
    expected = true_counts()
    words = sorted(expected)[:5]
    q = subprocess.run([str(STORM), "query", TARGET, "counts", *words, "zebra", "--json", *conf],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == {**{w: expected[w] for w in words}, "zebra": None}
    top = subprocess.run([str(STORM), "query", TARGET, "counts", "--top", "3", *conf],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert top.stdout.splitlines() == [f"{w}\t{n}" for w, n in expected.most_common(3)]
