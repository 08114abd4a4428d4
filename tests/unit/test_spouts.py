"""storm.spouts in one process (storm.testing): a ReliableSpout re-emits failed
and timed-out messages until they are acked, replays before new messages, hands
a message to the dead-letter hook after max_replays, stays within
max.spout.pending; ListSpout and FileSpout are finite sources built on it, and
FileSpout commits (and checkpoints) its offset only over fully processed lines."""

from __future__ import annotations

import doctest
import json
import random
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import storm.spouts
from storm import Bolt, ConfigError, Spout, StormError, Stream, Topology
from storm.spouts import (
    CHECKPOINT_DIR_KEY,
    FILE_PATH_KEY,
    LIST_ITEMS_KEY,
    MAX_REPLAYS_KEY,
    SUMMARY_DIR_KEY,
    FileSpout,
    ListSpout,
    Message,
    ReliableSpout,
)
from storm.testing import TestTopology, run_topology

pytestmark = pytest.mark.timeout(10)


# -- components ------------------------------------------------------------------
class Numbers(ListSpout):
    outputs = ["n"]
    items: ClassVar[Sequence[Sequence[Any]]] = [[n] for n in range(10)]


class DeadLetters(Numbers):
    """Remembers what reached the dead-letter hook."""

    max_replays = 2

    def open(self, conf: dict[str, Any], context: Any) -> None:
        super().open(conf, context)
        self.dead: list[tuple[Hashable, list[Any], int]] = []

    def on_dead_letter(self, msg_id: Hashable, values: list[Any], attempts: int) -> None:
        self.dead.append((msg_id, values, attempts))
        super().on_dead_letter(msg_id, values, attempts)


class FailFirstAttempts(Bolt):
    """Fails value n on its first n % 3 attempts (half of them by raising)."""

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.attempts: Counter[Any] = Counter()

    def execute(self, tup: Any) -> None:
        n = tup[0]
        self.attempts[n] += 1
        if self.attempts[n] <= n % 3:
            if self.attempts[n] == 1:
                raise RuntimeError(f"first attempt at {n} fails")
            self.fail(tup)
        else:
            self.ack(tup)


class AlwaysFailThree(Bolt):
    def execute(self, tup: Any) -> None:
        (self.fail if tup[0] == 3 else self.ack)(tup)


class FailFirstTwoOnce(Bolt):
    """Fails 0 and 1 on their first attempt."""

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.seen: set[Any] = set()

    def execute(self, tup: Any) -> None:
        first = tup[0] not in self.seen
        self.seen.add(tup[0])
        (self.fail if first and tup[0] in (0, 1) else self.ack)(tup)


class HoldOnce(Bolt):
    """Neither acks nor fails the first attempt at the values in `hold` (its
    tree times out); acks everything else."""

    hold: ClassVar[set[Any]] = set()

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.seen: set[Any] = set()

    def execute(self, tup: Any) -> None:
        first = tup[0] not in self.seen
        self.seen.add(tup[0])
        if first and tup[0] in self.hold:
            return
        self.ack(tup)


class NeverAck(Bolt):
    def execute(self, tup: Any) -> None:
        pass


class AckAll(Bolt):
    def execute(self, tup: Any) -> None:
        self.ack(tup)


class FailHalf(Bolt):
    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.rng = random.Random(context.task_id)

    def execute(self, tup: Any) -> None:
        (self.fail if self.rng.random() < 0.5 else self.ack)(tup)


def topology(spout: type[Spout], bolt: type[Bolt], spout_par: int = 1, **config: Any) -> type[Topology]:
    """source (the spout) -> check (the bolt), shuffle grouping."""
    return type("T", (Topology,), {
        "config": dict(config),
        "source": spout.spec(par=spout_par),
        "check": bolt.spec(inputs=["source"]),
    })


def msg_ids(result: Any, component: str = "source") -> list[Any]:
    return [e.msg_id for e in result.emissions(component)]


# -- ReliableSpout ----------------------------------------------------------------
def test_failed_messages_are_replayed_until_acked() -> None:
    result = run_topology(topology(Numbers, FailFirstAttempts))
    spout = result.instances("source")[0]
    expected_failures = sum(n % 3 for n in range(10))
    assert sorted(result.acked("source")) == list(range(10))
    assert Counter(result.acked("source")) == Counter(range(10)), "each message acked exactly once"
    assert len(result.failed("source")) == expected_failures
    assert Counter(msg_ids(result)) == Counter({n: 1 + n % 3 for n in range(10)})
    # A replay is the same message: same id, same values.
    assert all(e.values == [e.msg_id] for e in result.emissions("source"))
    assert len(result.errors) == sum(1 for n in range(10) if n % 3), "raises are recorded errors"
    assert (spout.emitted, spout.replays, spout.acked, spout.failed) == (10, expected_failures, 10,
                                                                         expected_failures)
    assert spout.dead_letters == 0 and spout.pending == 0 and spout.finished


def test_replay_limit_hands_the_message_to_the_dead_letter_hook(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="storm.source.1"):
        result = run_topology(topology(DeadLetters, AlwaysFailThree))
    spout = result.instances("source")[0]
    assert spout.dead == [(3, [3], 3)], "first emit + max_replays (2) re-emits, then dead"
    assert msg_ids(result).count(3) == 3
    assert result.failed("source") == [3, 3, 3]
    assert sorted(result.acked("source")) == [n for n in range(10) if n != 3]
    assert (spout.dead_letters, spout.replays, spout.pending) == (1, 2, 0)
    assert spout.finished, "a dead letter is settled: the spout can finish"
    assert any("dead letter" in r.getMessage() and "3" in r.getMessage() for r in caplog.records)


def test_max_replays_zero_sends_the_first_failure_to_the_dead_letters() -> None:
    class NoReplays(DeadLetters):
        max_replays = 0

    result = run_topology(topology(NoReplays, AlwaysFailThree))
    spout = result.instances("source")[0]
    assert spout.dead == [(3, [3], 1)] and spout.replays == 0 and msg_ids(result).count(3) == 1


def test_the_config_key_overrides_the_class_attribute() -> None:
    result = run_topology(topology(DeadLetters, AlwaysFailThree, **{MAX_REPLAYS_KEY: 0}))
    assert result.instances("source")[0].dead == [(3, [3], 1)]
    # null: unlimited, so it is still failing when the harness stops it.
    result = run_topology(topology(DeadLetters, AlwaysFailThree, **{MAX_REPLAYS_KEY: None}),
                          max_tuples=60)
    spout = result.instances("source")[0]
    assert spout.dead == [] and spout.replays == 60 - 10 and not spout.finished


@pytest.mark.parametrize("bad", [-1, "3", 1.5, True])
def test_a_bad_replay_limit_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"spout 'source'.*spouts\.max\.replays"):
        TestTopology(topology(Numbers, AckAll, **{MAX_REPLAYS_KEY: bad}))


def test_replays_go_out_before_new_messages_in_the_topology() -> None:
    result = run_topology(topology(Numbers, FailFirstTwoOnce, **{"topology.max.spout.pending": 3}))
    ids = msg_ids(result)
    assert ids[:3] == [0, 1, 2]
    first_new = ids.index(3)
    assert ids.index(0, 1) < first_new and ids.index(1, 2) < first_new, ids
    assert sorted(result.acked("source")) == list(range(10))


class Counting(ReliableSpout):
    """An endless source of [n], msg id n, for driving the base directly."""

    outputs = ["n"]

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.sent: list[tuple[list[Any], str, Any]] = []

    def next_message(self) -> tuple[Hashable, Sequence[Any]] | None:
        self.n += 1
        return self.n, [self.n]

    def emit(self, values: Sequence[Any], stream: str = "default", msg_id: Any = None,
             direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
        self.sent.append((list(values), stream, msg_id))
        return [1]


def test_replays_are_emitted_oldest_failure_first_before_new_messages() -> None:
    spout = Counting()
    for _ in range(3):
        spout.next_tuple()
    spout.fail(2)
    spout.fail(1)
    assert spout.waiting_replays == 2
    for _ in range(3):
        spout.next_tuple()
    assert [m for _, _, m in spout.sent] == [1, 2, 3, 2, 1, 4]
    spout.ack(1)
    spout.ack(1)  # a second result for the same id is counted, not applied
    assert spout.acked == 1 and spout.unknown_results == 1
    assert spout.pending_ids() == [2, 3, 4] and spout.peak_pending == 4


def test_pending_messages_stay_within_max_spout_pending() -> None:
    class Many(ListSpout):
        outputs = ["n"]
        items = [[n] for n in range(300)]

    result = run_topology(topology(Many, FailHalf, **{"topology.max.spout.pending": 5}), timeout=8)
    spout = result.instances("source")[0]
    assert sorted(result.acked("source")) == list(range(300))
    assert spout.replays > 100
    assert spout.peak_pending == 5


def test_a_timed_out_message_is_replayed() -> None:
    class HoldFour(HoldOnce):
        hold: ClassVar[set[Any]] = {4}

    with TestTopology(topology(Numbers, HoldFour)) as t:
        t.run()
        spout = t.result.instances("source")[0]
        assert t.result.pending("source") == [4] and spout.pending_ids() == [4]
        assert not spout.finished
        t.expire_pending()
        assert t.result.failed("source") == [4]
        assert sorted(t.result.acked("source")) == list(range(10))
        assert spout.replays == 1 and spout.finished


def test_messages_on_a_named_stream_are_replayed_on_it() -> None:
    class Alerts(ReliableSpout):
        outputs = [Stream(["text"], "alerts")]

        def open(self, conf: dict[str, Any], context: Any) -> None:
            super().open(conf, context)
            self.todo = ["disk full", "cpu hot"]

        def next_message(self) -> Message | None:
            return Message(len(self.todo), [self.todo.pop()], stream="alerts") if self.todo else None

        def source_exhausted(self) -> bool:
            return not self.todo

    class FailFirst(FailFirstTwoOnce):
        def execute(self, tup: Any) -> None:
            first = tup[0] not in self.seen
            self.seen.add(tup[0])
            (self.fail if first else self.ack)(tup)

    class T(Topology):
        source = Alerts.spec()
        check = FailFirst.spec(inputs=[source["alerts"]])

    result = run_topology(T)
    assert [(e.stream, e.values, e.msg_id) for e in result.emissions("source")] == [
        ("alerts", ["cpu hot"], 2), ("alerts", ["disk full"], 1),
        ("alerts", ["cpu hot"], 2), ("alerts", ["disk full"], 1)]
    assert sorted(result.acked("source")) == [1, 2]
    assert result.instances("source")[0].finished


@pytest.mark.parametrize(("returned", "match"), [
    ("oops", r"next_message\(\) returned 'oops'"),
    ((None, [1]), "msg_id None"),
    (([1], [1]), "not hashable"),
])
def test_bad_next_message_results_are_named(returned: Any, match: str) -> None:
    class Bad(ReliableSpout):
        outputs = ["n"]

        def next_message(self) -> Any:
            return returned

    result = run_topology(topology(Bad, AckAll), max_tuples=1, idle_steps=3)
    assert result.errors and result.errors[0].where == "next_tuple"
    assert "spout 'source'" in result.errors[0].error
    assert any(re.search(match, e.error) for e in result.errors), result.errors


def test_a_pending_message_id_returned_again_is_an_error() -> None:
    class Same(ReliableSpout):
        outputs = ["n"]

        def next_message(self) -> tuple[Hashable, Sequence[Any]]:
            return 7, [7]

    with TestTopology(topology(Same, NeverAck), max_tuples=1) as t:
        t.run()
        spout = t.result.instances("source")[0]
        # Past the harness's max_tuples gate, straight into the spout.
        with pytest.raises(StormError, match="message id 7 .* still pending"):
            ReliableSpout.next_tuple(spout)
        assert spout.pending_ids() == [7] and spout.emitted == 1


# -- ListSpout --------------------------------------------------------------------
def test_list_spout_from_config_splits_items_over_tasks_and_writes_a_summary(tmp_path: Path) -> None:
    items = [[f"w{i}"] for i in range(7)]
    config = {LIST_ITEMS_KEY: items, SUMMARY_DIR_KEY: str(tmp_path)}

    class T(Topology):
        source = ListSpout.spec(par=2, outputs=["word"])
        check = AckAll.spec(inputs=[source])

    result = run_topology(T, config=config)
    first, second = result.spec.components["source"].tasks
    by_task: dict[int, list[Any]] = {first: [], second: []}
    for e in result.emissions("source"):
        by_task[e.task].append((e.msg_id, e.values))
    assert by_task == {first: [(i, [f"w{i}"]) for i in (0, 2, 4, 6)],
                       second: [(i, [f"w{i}"]) for i in (1, 3, 5)]}
    assert sorted(result.acked("source")) == list(range(7))
    for task, emitted in ((first, 4), (second, 3)):
        summary = json.loads((tmp_path / f"source-{task}.json").read_text())
        assert summary["finished"] is True
        assert (summary["emitted"], summary["acked"], summary["pending"], summary["replays"]) == (emitted, emitted, 0, 0)


def test_list_spout_finishes_with_acking_off_and_when_empty() -> None:
    result = run_topology(topology(Numbers, AckAll, **{"topology.acker.executors": 0}))
    spout = result.instances("source")[0]
    assert spout.finished and spout.acked == 10 and result.acked("source") == list(range(10))

    class Empty(ListSpout):
        items = ()

    result = run_topology(topology(Empty, AckAll))
    assert result.instances("source")[0].finished and result.emissions("source") == []


def test_list_spout_rejects_items_that_are_not_lists() -> None:
    with pytest.raises(ConfigError, match="spouts.list.items must be a list of value lists"):
        TestTopology(topology(ListSpout, AckAll, **{LIST_ITEMS_KEY: "abc"}))
    result = run_topology(topology(ListSpout, AckAll, **{LIST_ITEMS_KEY: ["abc"]}), idle_steps=3)
    assert "item 0 is 'abc'" in result.errors[0].error


# -- FileSpout ----------------------------------------------------------------------
LINES = ["alpha", "beta", "", "gamma", "délta", "epsilon"]


def write_lines(path: Path, lines: list[str], end: str = "\n", final_newline: bool = True) -> Path:
    text = end.join(lines) + (end if final_newline else "")
    path.write_bytes(text.encode())
    return path


def offset_after(lines: list[str], n: int, end: str = "\n") -> int:
    return sum(len((line + end).encode()) for line in lines[:n])


def file_topology(bolt: type[Bolt], path: Path, spout: type[Spout] = FileSpout, par: int = 1,
                  **config: Any) -> type[Topology]:
    return topology(spout, bolt, spout_par=par, **{FILE_PATH_KEY: str(path)}, **config)


@pytest.mark.parametrize(("end", "final_newline"), [("\n", True), ("\r\n", False)])
def test_file_spout_emits_lines_with_their_numbers_as_ids(tmp_path: Path, end: str,
                                                          final_newline: bool) -> None:
    path = write_lines(tmp_path / "in.txt", LINES, end, final_newline)
    result = run_topology(file_topology(AckAll, path))
    assert [(e.msg_id, e.values) for e in result.emissions("source")] == [
        (i + 1, [line]) for i, line in enumerate(LINES)]
    spout = result.instances("source")[0]
    assert spout.finished
    assert (spout.committed_line, spout.committed_offset) == (len(LINES), path.stat().st_size)


def test_file_spout_commits_only_over_fully_processed_lines(tmp_path: Path) -> None:
    class HoldThree(HoldOnce):
        hold: ClassVar[set[Any]] = {"beta"}

    path = write_lines(tmp_path / "in.txt", LINES)
    with TestTopology(file_topology(HoldThree, path)) as t:
        t.run()
        spout = t.result.instances("source")[0]
        assert sorted(t.result.acked("source")) == [1, 3, 4, 5, 6] and spout.pending_ids() == [2]
        assert (spout.committed_line, spout.committed_offset) == (1, offset_after(LINES, 1))
        assert not spout.finished
        t.expire_pending()  # line 2 times out, is replayed and acked
        assert t.result.failed("source") == [2]
        assert (spout.committed_line, spout.committed_offset) == (6, path.stat().st_size)
        assert spout.finished


def test_file_spout_parse_line_may_skip_lines_and_dead_letters_are_committed(tmp_path: Path) -> None:
    class Fields(FileSpout):
        outputs = ["word", "length"]
        max_replays = 1

        def parse_line(self, line: str) -> list[Any] | None:
            return [line, len(line)] if line else None

    class FailGamma(Bolt):
        def execute(self, tup: Any) -> None:
            (self.fail if tup[0] == "gamma" else self.ack)(tup)

    path = write_lines(tmp_path / "in.txt", LINES)
    result = run_topology(file_topology(FailGamma, path, spout=Fields))
    assert sorted(set(msg_ids(result))) == [1, 2, 4, 5, 6], "the empty line 3 is skipped"
    assert result.emitted("source")[0] == ["alpha", 5]
    spout = result.instances("source")[0]
    assert spout.dead_letters == 1 and spout.finished
    assert (spout.committed_line, spout.committed_offset) == (6, path.stat().st_size)


def test_file_spout_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    class HoldGamma(HoldOnce):
        hold: ClassVar[set[Any]] = {"gamma"}

    path = write_lines(tmp_path / "in.txt", LINES)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    config = {CHECKPOINT_DIR_KEY: str(checkpoints)}
    with TestTopology(file_topology(HoldGamma, path, **config)) as t:
        t.run()
        assert t.result.pending("source") == [4]
    saved = json.loads((checkpoints / "source-0-of-1.offset.json").read_text())
    assert saved == {"line": 3, "offset": offset_after(LINES, 3), "path": str(path)}

    # A new incarnation starts after the last committed line: line 4 (never
    # acked) and everything after it is emitted again, lines 1-3 are not.
    result = run_topology(file_topology(AckAll, path, **config))
    assert [(e.msg_id, e.values) for e in result.emissions("source")] == [
        (i + 1, [LINES[i]]) for i in range(3, 6)]
    saved = json.loads((checkpoints / "source-0-of-1.offset.json").read_text())
    assert saved["line"] == 6 and saved["offset"] == path.stat().st_size

    # Finished: nothing left to emit.
    result = run_topology(file_topology(AckAll, path, **config))
    assert result.emissions("source") == [] and result.instances("source")[0].finished


def test_file_spout_ignores_a_checkpoint_of_another_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.txt", LINES)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "source-0-of-1.offset.json").write_text(
        json.dumps({"line": 2, "offset": 11, "path": "/elsewhere.txt"}))
    result = run_topology(file_topology(AckAll, path, **{CHECKPOINT_DIR_KEY: str(checkpoints)}))
    assert msg_ids(result) == [1, 2, 3, 4, 5, 6]


def test_file_spout_splits_lines_over_tasks(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.txt", LINES)
    result = run_topology(file_topology(AckAll, path, par=2))
    tasks = result.spec.components["source"].tasks
    by_task: dict[int, list[Any]] = {t: [] for t in tasks}
    for e in result.emissions("source"):
        by_task[e.task].append(e.msg_id)
    assert by_task == {tasks[0]: [1, 3, 5], tasks[1]: [2, 4, 6]}
    first, second = result.instances("source")
    assert (first.committed_line, first.committed_offset) == (5, offset_after(LINES, 5))
    assert (second.committed_line, second.committed_offset) == (6, path.stat().st_size)


def test_file_spout_without_a_readable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spout 'source' needs a file: set the config key spouts.file.path"):
        TestTopology(topology(FileSpout, AckAll))
    with pytest.raises(ConfigError, match="spout 'source' cannot read .*missing.txt"):
        TestTopology(file_topology(AckAll, tmp_path / "missing.txt"))


def test_exports() -> None:
    assert sorted(storm.spouts.__all__) == [
        "CHECKPOINT_DIR_KEY", "FILE_PATH_KEY", "FileSpout", "LIST_ITEMS_KEY", "ListSpout",
        "MAX_REPLAYS_KEY", "Message", "ReliableSpout", "SUMMARY_DIR_KEY"]
    for name in storm.spouts.__all__:
        assert hasattr(storm.spouts, name)


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(storm.spouts, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
