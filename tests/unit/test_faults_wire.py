"""The part of fault injection that lets rules cross into worker processes,
without processes: rules as data and back (a where= by reference only), the
shared counters that make index=/times= count over every worker (and survive a
restart), and the fault file a killed worker may leave cut short."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from storm import StormError
from storm._faults import (
    _EventLog,
    _SharedCounts,
    _TxidIs,
    read_fault_files,
    read_records,
    write_rules,
)
from storm._tuple import Tuple
from storm.testing import Faults, make_tuple

pytestmark = pytest.mark.timeout(30)


def is_moon(tup: Any) -> bool:
    return bool(tup[0] == "moon")


class Predicates:
    @staticmethod
    def is_cow(tup: Any) -> bool:
        return bool(tup[0] == "cow")

    def method(self, tup: Any) -> bool:
        return True


def tup(word: str) -> Tuple:
    return make_tuple([word], fields=["word"], component="split")


def test_rules_go_as_data_and_come_back_the_same() -> None:
    faults = (Faults().crash("count", where=is_moon, times=None).drop("count", stream="s", source="split", index=3)
              .delay("count", 1.5, task=2).duplicate("count", where=Predicates.is_cow).replay_failed("persist", 7))
    wire = faults.to_wire()
    assert wire[0]["where"] == {"ref": f"{__file__}:is_moon"}
    assert wire[3]["where"] == {"ref": f"{__file__}:Predicates.is_cow"}
    assert wire[4]["where"] == {"txid": 7, "streams": ["coord", "batch"]}
    back = Faults.from_wire(wire)
    for a, b in zip(faults.rules, back.rules, strict=True):
        assert (a.kind, a.bolt, a.stream, a.source, a.index, a.times, a.seconds, a.task) == \
            (b.kind, b.bolt, b.stream, b.source, b.index, b.times, b.seconds, b.task)
    # The predicates came back by import (of this file, under another module name).
    assert back.rules[0].where is not None and back.rules[0].where(tup("moon"))
    assert back.rules[0].where(tup("cow")) is False
    assert back.rules[3].where is not None and back.rules[3].where(tup("cow"))
    assert back.rules[4].where == _TxidIs(7, ("coord", "batch"))


def test_where_that_workers_cannot_import_is_refused_with_what_to_do() -> None:
    def inner(t: Any) -> bool:
        return True

    with pytest.raises(StormError, match=r"crash\('count'\): where= is a lambda .*defined at module level"):
        Faults().crash("count", where=lambda t: True).to_wire()
    with pytest.raises(StormError, match=r"a function defined inside a function \(a closure\).*lambdas and "
                                         r"closures work only in the in-process harness"):
        Faults().crash("count", where=inner).to_wire()
    with pytest.raises(StormError, match="not found by that name in its module"):
        Faults().fail("count", where=Predicates().method).to_wire()
    with pytest.raises(StormError, match="has no importable name"):
        Faults().fail("count", where=_Callable()).to_wire()


def test_where_from_a_main_without_a_file_is_refused() -> None:
    code = ("import sys\nfrom storm.testing import Faults\n"
            "def is_moon(t):\n    return True\n"
            "try:\n    Faults().crash('count', where=is_moon).to_wire()\n"
            "except Exception as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert "where= is_moon is defined in __main__ without a file (python -c" in out, out


class _Callable:
    def __call__(self, t: Any) -> bool:
        return True


def test_a_reference_the_worker_cannot_import_is_a_clear_error() -> None:
    with pytest.raises(StormError, match="where=/nonexistent/x.py:f: cannot import it in the worker process"):
        Faults.from_wire([{"kind": "drop", "bolt": "count", "where": {"ref": "/nonexistent/x.py:f"}}])
    with pytest.raises(StormError, match="unknown kind 'explode'"):
        Faults.from_wire([{"kind": "explode", "bolt": "count"}])
    with pytest.raises(StormError, match="fault rule 0 is malformed"):
        Faults.from_wire([{"bolt": "count"}])


def test_shared_counters_count_over_processes_and_restarts(tmp_path: Path) -> None:
    faults = Faults().drop("count", times=2).crash("count", index=1)
    path = write_rules(tmp_path, faults, 0.0)
    counts = str(tmp_path / "faults.counts")
    assert path.exists() and os.path.getsize(counts) == 32
    # Two workers = two open file descriptions of one file, each its own lock holder.
    a, b = _SharedCounts(counts), _SharedCounts(counts)
    assert a.claim(0, None, 2) == (True, False)
    assert b.claim(0, None, 2) == (True, True)
    assert a.claim(0, None, 2) == (False, True)
    assert b.claim(1, 1, None) == (False, False)  # index 0 seen in one worker ...
    assert a.claim(1, 1, None) == (True, True)  # ... index 1 fires in the other
    # A restarted worker opens the file again and sees what was used up.
    c = _SharedCounts(counts)
    assert c.claim(0, None, 2) == (False, True) and c.claim(1, 1, None) == (False, True)


def test_fault_files_are_read_whole_records_only(tmp_path: Path) -> None:
    f = tmp_path / "faults-0.events"
    log = _EventLog(str(f))
    log.write(["fault", 0, "crash", "count", 2, "default", "split", ["moon"], 1.5])
    log.write(["replay", 0, "lines", 1, 4, 1.7])
    log.write(["fault", 0, "drop", "count", 2, "default", "split", ["cow"], 0.5])
    with open(f, "ab") as raw:  # a record a SIGKILL cut short
        raw.write(struct.pack("<I", 100) + b"\x93")
    assert len(read_records(f)) == 3
    events, replays = read_fault_files([f, tmp_path / "faults-1.events"])
    assert [(e.kind, e.values, e.worker) for e in events] == [("drop", ["cow"], 0), ("crash", ["moon"], 0)]
    assert replays == [(1.7, "lines", 1, 4)]
