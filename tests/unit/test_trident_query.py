"""`storm query TARGET STATE KEY...`: the current values of a Trident state read
from its backend (SQLite here), as text or JSON, the top keys without KEYs, and
one red line for a state that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from storm.cli._app import app
from storm.trident import SQLiteState, encode_key

pytestmark = pytest.mark.timeout(60)

TOPOLOGY = '''
from storm.trident import Count, SQLiteState, TransactionalListSpout, TridentTopology

t = TridentTopology("Q")
(t.new_stream("lines", TransactionalListSpout([["a b"]], ["line"]))
 .each("line", str.split, "word")
 .group_by("word")
 .persistent_aggregate(SQLiteState({path!r}, "counts"), Count(), "n", name="counts"))
topology = t.build()
'''


@pytest.fixture
def target(tmp_path: Path) -> str:
    db = tmp_path / "q.sqlite"
    state = SQLiteState(db, "counts").make(task=1)
    state.apply(1, {encode_key(["the"]): lambda old: 5, encode_key(["cow"]): lambda old: 2})
    state.backing.close()
    path = tmp_path / "q_topology.py"
    path.write_text(TOPOLOGY.format(path=str(db)))
    return str(path)


def test_query_reads_the_current_values(target: str) -> None:
    r = CliRunner().invoke(app, ["query", target, "counts", "the", "cow", "moon"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["the\t5", "cow\t2", "moon\tnull"]
    r = CliRunner().invoke(app, ["query", target, "counts", "--json", "the"])
    assert r.exit_code == 0 and r.output.strip() == '{"the": 5}'


def test_query_without_keys_lists_the_top_keys(target: str) -> None:
    r = CliRunner().invoke(app, ["query", target, "counts", "--top", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["the\t5"]


def test_query_names_the_states_there_are(target: str) -> None:
    r = CliRunner().invoke(app, ["query", target, "nope"])
    assert r.exit_code == 2
    assert "has no state named 'nope'; its states: counts" in r.output
