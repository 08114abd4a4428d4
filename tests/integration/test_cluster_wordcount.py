"""The word count example (topologies/wordcount.py) on real worker processes over
a finite spout: the counts its sink writes must be exact, and every sentence's
tuple tree must be acked back at the spout."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from itest_support import stats, wait_for

from storm import LocalCluster

WORDCOUNT = Path(__file__).resolve().parents[2] / "topologies" / "wordcount.py"
REPEAT = 200


def sentences() -> list[str]:
    spec = importlib.util.spec_from_file_location("wordcount_sentences", WORDCOUNT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.SENTENCES)


def read_counts(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_wordcount_counts_are_exact(cluster: LocalCluster, tmp_path: Path, workers: int) -> None:
    lines = sentences()
    expected = dict(Counter(w for s in lines * REPEAT for w in s.split()))
    out = tmp_path / "counts.json"
    topo = cluster.submit(f"{WORDCOUNT}:WordCount", config={
        "wordcount.repeat": REPEAT, "wordcount.output": str(out), "topology.workers": workers})
    assert len(topo.pids()) == workers

    wait_for(topo, lambda: read_counts(out) == expected, "the sink's counts equal the expected counts")
    # every sentence was emitted with a msg id: each tree completes and is acked
    wait_for(topo, lambda: stats(topo)["sentences"].acked == len(lines) * REPEAT,
             "every sentence acked at the spout")
    s = stats(topo)
    assert s["sentences"].failed == 0
    assert sum(c.errors for c in s.values()) == 0
    assert topo.recent_errors() == []
    assert all(w.restarts == 0 for w in topo.workers)
