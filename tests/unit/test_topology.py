"""The topology DSL, the TopologyBuilder and the resolved TopologySpec: equivalent
specs from both forms, named streams, every validation error (type and message),
deterministic task ids, the acker system component and task assignment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from storm import (
    Bolt,
    ComponentSpec,
    ConfigError,
    CustomGrouping,
    Grouping,
    Spout,
    Stream,
    StreamRef,
    Topology,
    TopologyBuilder,
    TopologyError,
    TopologySpec,
)
from storm._component import Component
from storm._topology import build_spec

ACK_STREAMS = {"__ack_ack", "__ack_fail", "__ack_init"}


class WordSpout(Spout):
    outputs = ["word"]


class MultiSpout(Spout):
    outputs = [
        Stream(["word"]),
        Stream(["msg", "code"], name="errors"),
        Stream(["x"], name="directed", direct=True),
    ]


class CountBolt(Bolt):
    outputs = ["word", "count"]


class SinkBolt(Bolt):
    pass


class ByLength(CustomGrouping):
    def choose_tasks(self, task_id: int, values: Any) -> list[int]:
        return [self.targets[len(values[0]) % len(self.targets)]]


def summary(spec: TopologySpec) -> dict[str, Any]:
    """Everything two equivalent topologies must agree on."""
    return {
        "components": {
            name: (
                c.cls,
                c.par,
                c.is_spout,
                c.system,
                tuple(c.tasks),
                {s: (st.fields, st.direct) for s, st in sorted(c.outputs.items())},
                sorted((s.source, s.stream, s.grouping.describe()) for s in c.inputs),
                c.config,
            )
            for name, c in spec.components.items()
        },
        "stream_ids": dict(spec.stream_ids),
        "streams": [(m.component, m.stream, m.fields, m.sid, m.direct) for m in spec.streams],
        "task_component": dict(spec.task_component),
        "subscribers": {
            k: sorted((s.target, s.grouping.describe()) for s in v)
            for k, v in spec.subscribers.items()
        },
    }


# -- DSL and builder -------------------------------------------------------------


class WordCount(Topology):
    config = {"topology.workers": 2}
    sentences = MultiSpout.spec(par=2)
    count = CountBolt.spec(inputs={sentences: Grouping.fields("word")}, par=3)
    errors = SinkBolt.spec(inputs={sentences["errors"]: Grouping.global_()})
    direct = SinkBolt.spec(inputs={sentences.stream("directed"): Grouping.direct()}, par=2)
    sink = SinkBolt.spec(
        inputs={count: Grouping.partial_key("word", "count"), ("sentences", "errors"): Grouping.all()}
    )
    custom = SinkBolt.spec(inputs={count: Grouping.custom(ByLength)})


def word_count_builder(order: int = 1) -> TopologyBuilder:
    b = TopologyBuilder("WordCount", {"topology.workers": 2})
    steps: list[Callable[[], object]] = [
        lambda: b.set_spout("sentences", MultiSpout, par=2),
        lambda: b.set_bolt("count", CountBolt, par=3).fields_grouping("sentences", "word"),
        lambda: b.set_bolt("errors", SinkBolt).global_grouping("sentences", "errors"),
        lambda: b.set_bolt("direct", SinkBolt, par=2).direct_grouping("sentences", "directed"),
        lambda: b.set_bolt("sink", SinkBolt)
        .partial_key_grouping("count", ["word", "count"])
        .all_grouping("sentences", stream="errors"),
        lambda: b.set_bolt("custom", SinkBolt).custom_grouping("count", ByLength),
    ]
    for step in steps[::order]:
        step()
    return b


def test_dsl_and_builder_produce_equivalent_specs() -> None:
    dsl = WordCount.build()
    built = word_count_builder().build()
    assert dsl.name == built.name == "WordCount"
    assert summary(dsl) == summary(built)


def test_builder_declaration_order_does_not_change_task_or_stream_ids() -> None:
    assert summary(word_count_builder(1).build()) == summary(word_count_builder(-1).build())


def test_task_ids_are_deterministic_and_dense() -> None:
    first, second = WordCount.build(), WordCount.build()
    assert summary(first) == summary(second)
    assert sorted(first.task_component) == list(range(1, first.num_tasks + 1))
    # User components in name order, then the system components.
    assert first.component_tasks("count") == [1, 2, 3]
    assert first.component_tasks("custom") == [4]
    assert first.component_tasks("direct") == [5, 6]
    assert first.component_tasks("errors") == [7]
    assert first.component_tasks("sentences") == [8, 9]
    assert first.component_tasks("sink") == [10]
    assert first.component_tasks("__acker") == [11, 12]
    # Stream ids are dense, unique, and the stream table agrees with them.
    assert sorted(first.stream_ids.values()) == list(range(len(first.streams)))
    for (comp, stream), sid in first.stream_ids.items():
        meta = first.streams[sid]
        assert (meta.component, meta.stream, meta.sid) == (comp, stream, sid)


def test_subscriptions_resolve_named_streams_and_groupings() -> None:
    spec = WordCount.build()
    subs = {(s.source, s.stream): s.grouping for s in spec.components["sink"].inputs}
    assert subs == {
        ("count", "default"): Grouping.partial_key("word", "count"),
        ("sentences", "errors"): Grouping.all(),
    }
    assert [(s.source, s.stream) for s in spec.components["errors"].inputs] == [("sentences", "errors")]
    assert spec.components["direct"].inputs[0].grouping == Grouping.direct()
    assert spec.components["custom"].inputs[0].grouping.custom_cls is ByLength
    targets = sorted(s.target for s in spec.subscribers[("sentences", "errors")])
    assert targets == ["errors", "sink"]
    sentences = spec.components["sentences"]
    assert sentences.outputs["errors"].fields == ("msg", "code")
    assert sentences.outputs["directed"].direct
    assert spec.streams[spec.stream_ids[("sentences", "directed")]].direct
    assert spec.spouts() == [sentences]
    assert {c.name for c in spec.bolts()} == {"count", "custom", "direct", "errors", "sink", "__acker"}


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda a: a["errors"], id="spec[stream]"),
        pytest.param(lambda a: a.stream("errors"), id="spec.stream()"),
        pytest.param(lambda a: ("src", "errors"), id="(name, stream)"),
        pytest.param(lambda a: StreamRef("src", "errors"), id="StreamRef(name)"),
    ],
)
def test_every_way_to_name_a_stream(source: Callable[[ComponentSpec], Any]) -> None:
    src = MultiSpout.spec(name="src")
    sink = SinkBolt.spec(name="sink", inputs={source(src): Grouping.fields("code")})
    spec = build_spec("t", [src, sink])
    [sub] = spec.components["sink"].inputs
    assert (sub.source, sub.stream, sub.grouping) == ("src", "errors", Grouping.fields("code"))


def test_list_inputs_mean_shuffle_on_default_stream() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs=[a, "a2"])
        a2 = WordSpout.spec()

    spec = T.build()
    assert sorted((s.source, s.stream, s.grouping.kind) for s in spec.components["b"].inputs) == [
        ("a", "default", "shuffle"),
        ("a2", "default", "shuffle"),
    ]


def test_grouping_class_as_input_value_means_custom_grouping() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs={a: ByLength})

    [sub] = T.build().components["b"].inputs
    assert sub.grouping.kind == "custom" and sub.grouping.custom_cls is ByLength


def test_builder_keeps_list_inputs_when_declarer_adds_more() -> None:
    b = TopologyBuilder("t")
    b.set_spout("a", WordSpout)
    b.set_spout("c", WordSpout)
    b.set_bolt("x", SinkBolt, inputs=["a"]).fields_grouping("c", "word")
    subs = {(s.source, s.grouping.kind) for s in b.build().components["x"].inputs}
    assert subs == {("a", "shuffle"), ("c", "fields")}


def test_builder_declarer_covers_every_grouping() -> None:
    b = TopologyBuilder("t")
    b.set_spout("a", MultiSpout)
    (
        b.set_bolt("x", SinkBolt)
        .shuffle_grouping("a")
        .none_grouping("a", "errors")
        .direct_grouping("a", "directed")
    )
    b.set_bolt("y", SinkBolt).local_or_shuffle_grouping("a")
    b.set_bolt("z", SinkBolt).custom_grouping("a", ByLength, stream="errors", size=3)
    spec = b.build()
    kinds = {(s.target, s.stream): s.grouping.kind for subs in spec.subscribers.values() for s in subs}
    assert kinds[("x", "default")] == "shuffle"
    assert kinds[("x", "errors")] == "none"
    assert kinds[("x", "directed")] == "direct"
    assert kinds[("y", "default")] == "local_or_shuffle"
    [z] = spec.components["z"].inputs
    assert z.grouping.custom_args == {"size": 3}


def test_topology_inheritance_adds_and_overrides_components() -> None:
    class Base(Topology):
        words = WordSpout.spec()
        count = CountBolt.spec(inputs=[words])

    class Derived(Base):
        count = CountBolt.spec(inputs={Base.words: Grouping.fields("word")}, par=3)
        sink = SinkBolt.spec(inputs=["count"])

    spec = Derived.build()
    assert sorted(c for c in spec.components if not c.startswith("__")) == ["count", "sink", "words"]
    assert spec.components["count"].par == 3
    assert spec.components["count"].inputs[0].grouping == Grouping.fields("word")
    # The base class is untouched.
    base = Base.build()
    assert base.components["count"].par == 1
    assert "sink" not in base.components


def test_topology_name_and_config() -> None:
    spec = WordCount.build({"topology.name": "wc-prod", "myapp.threshold": 3})
    assert spec.name == "wc-prod"
    assert spec.config["topology.name"] == "wc-prod"
    assert spec.config["myapp.threshold"] == 3
    assert spec.config["topology.workers"] == 2
    assert spec.config["topology.message.timeout.secs"] == 30  # a default
    assert WordCount.build({"topology.workers": 5}).config["topology.workers"] == 5


def test_with_config_validates_and_copies() -> None:
    spec = WordCount.build()
    other = spec.with_config({"topology.debug": True})
    assert other.config["topology.debug"] is True
    assert spec.config["topology.debug"] is False
    with pytest.raises(ConfigError, match="topology.debug"):
        spec.with_config({"topology.debug": "yes"})


@pytest.mark.parametrize(
    "overrides",
    [
        {"topology.workers": 3},
        {"topology.acker.executors": 0},
        {"topology.acker.executors": 4, "topology.workers": 1},
        {"topology.message.timeout.secs": 4},
        {"topology.name": "renamed", "topology.debug": True},
        {"myapp.x": 1},
    ],
)
def test_with_config_matches_a_fresh_build(overrides: dict[str, Any]) -> None:
    # A module-level TopologySpec target gets `-c` overrides through with_config: the
    # acker (task count, tick rate) and the name must follow them as in a fresh build.
    original = WordCount.build()
    before = summary(original)
    derived = original.with_config(overrides)
    fresh = WordCount.build(overrides)
    assert summary(derived) == summary(fresh)
    assert derived.config == fresh.config
    assert derived.name == fresh.name
    assert summary(original) == before  # the original spec is untouched
    assert derived.with_config({"topology.workers": 2}).config["topology.workers"] == 2


def test_with_config_rejects_zero_workers() -> None:
    with pytest.raises(TopologyError, match="'WordCount'.*topology.workers must be at least 1"):
        WordCount.build().with_config({"topology.workers": 0})


def test_component_config_is_kept() -> None:
    class T(Topology):
        a = WordSpout.spec(config={"topology.tick.tuple.freq.secs": 0.5, "myapp.k": [1]})
        b = SinkBolt.spec(inputs=[a])

    assert T.build().components["a"].config == {"topology.tick.tuple.freq.secs": 0.5, "myapp.k": [1]}


# -- the acker system component -----------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_acker_defaults_to_one_task_per_worker(workers: int) -> None:
    spec = WordCount.build({"topology.workers": workers})
    acker = spec.components["__acker"]
    assert acker.system and not acker.is_spout
    assert acker.par == len(acker.tasks) == workers
    assert spec.config["topology.acker.executors"] == workers
    # System tasks come after every user task.
    assert min(acker.tasks) > max(t for t, c in spec.task_component.items() if c != "__acker")


def test_acker_executors_setting() -> None:
    spec = WordCount.build({"topology.acker.executors": 4})
    acker = spec.components["__acker"]
    assert len(acker.tasks) == 4
    assert acker.outputs["__ack_result"].direct
    # Every component reports acks and fails; spouts also init and get results.
    subs = {(s.source, s.stream) for s in acker.inputs}
    for name, comp in spec.components.items():
        if comp.system:
            continue
        assert (name, "__ack_ack") in subs and (name, "__ack_fail") in subs
        assert ((name, "__ack_init") in subs) == comp.is_spout
        assert ACK_STREAMS & set(comp.outputs) == (
            ACK_STREAMS if comp.is_spout else ACK_STREAMS - {"__ack_init"}
        )
    sources = {(s.source, s.stream) for s in spec.components["sentences"].inputs}
    assert sources == {("__acker", "__ack_result")}
    for (comp, stream), sid in spec.stream_ids.items():
        if stream.startswith("__ack"):
            assert spec.streams[sid].direct, (comp, stream)


def test_zero_acker_executors_means_no_acker() -> None:
    spec = WordCount.build({"topology.acker.executors": 0})
    assert "__acker" not in spec.components
    assert all(not c.startswith("__") for c in spec.task_component.values())
    assert not any(stream.startswith("__") for _, stream in spec.stream_ids)
    assert spec.components["sentences"].inputs == []


# -- assignment -----------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
def test_assign_spreads_each_component_over_workers(workers: int) -> None:
    spec = WordCount.build({"topology.workers": workers})
    assignment = spec.assign()
    assert sorted(assignment) == sorted(spec.task_component)
    assert set(assignment.values()) <= set(range(workers))
    for name, comp in spec.components.items():
        per_worker = Counter(assignment[t] for t in comp.tasks)
        counts = [per_worker.get(w, 0) for w in range(workers)]
        assert max(counts) - min(counts) <= 1, (name, counts)
    assert spec.assign() == spec.assign()


def test_assign_with_explicit_worker_count() -> None:
    spec = WordCount.build()
    assert set(spec.assign(1).values()) == {0}
    assert set(spec.assign(3).values()) == {0, 1, 2}
    for bad in (0, -1):
        with pytest.raises(TopologyError, match="topology.workers"):
            spec.assign(bad)


# -- validation -------------------------------------------------------------------


def _dsl_unknown_component() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs={"missing": Grouping.shuffle()})

    T.build()


def _dsl_unknown_stream() -> None:
    class T(Topology):
        a = MultiSpout.spec()
        b = SinkBolt.spec(inputs={a["warnings"]: Grouping.shuffle()})

    T.build()


def _dsl_unknown_field() -> None:
    class T(Topology):
        a = MultiSpout.spec()
        b = SinkBolt.spec(inputs={a["errors"]: Grouping.fields("msg", "severity")})

    T.build()


def _dsl_unknown_partial_key_field() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs={a: Grouping.partial_key("letter")})

    T.build()


def _dsl_direct_on_plain_stream() -> None:
    class T(Topology):
        a = MultiSpout.spec()
        b = SinkBolt.spec(inputs={a["errors"]: Grouping.direct()})

    T.build()


def _dsl_shuffle_on_direct_stream() -> None:
    class T(Topology):
        a = MultiSpout.spec()
        b = SinkBolt.spec(inputs={a["directed"]: Grouping.shuffle()})

    T.build()


def _dsl_duplicate_name() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = WordSpout.spec(name="a")

    T.build()


def _dsl_same_spec_twice() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = a


def _builder_duplicate_name() -> None:
    b = TopologyBuilder("t")
    b.set_spout("dup", WordSpout)
    b.set_bolt("dup", SinkBolt)


def _dsl_spout_with_inputs() -> None:
    class T(Topology):
        a = WordSpout.spec()
        relay = WordSpout.spec(inputs=[a])

    T.build()


def _dsl_not_a_component() -> None:
    class Plain(Component):
        pass

    class T(Topology):
        a = WordSpout.spec()
        weird = Plain.spec()

    T.build()


def _spec_of_plain_class() -> None:
    build_spec("t", [WordSpout.spec(name="a"), ComponentSpec(cls=dict, name="weird")])


def _builder_spout_is_not_a_spout() -> None:
    TopologyBuilder("t").set_spout("weird", CountBolt)


def _builder_bolt_is_not_a_bolt() -> None:
    TopologyBuilder("t").set_bolt("weird", WordSpout)


def _builder_spout_is_not_a_class() -> None:
    TopologyBuilder("t").set_spout("weird", "WordSpout")  # type: ignore[arg-type]


def _dsl_bolt_without_inputs() -> None:
    class T(Topology):
        a = WordSpout.spec()
        lonely = SinkBolt.spec()

    T.build()


def _dsl_no_spout() -> None:
    class NoSource(Topology):
        a = SinkBolt.spec(inputs=["b"])
        b = SinkBolt.spec(inputs=["a"])

    NoSource.build()


def _builder_reserved_name() -> None:
    b = TopologyBuilder("t")
    b.set_spout("__acker", WordSpout)
    b.build()


def _dsl_reserved_name() -> None:
    class T(Topology):
        a = WordSpout.spec(name="__system")

    T.build()


def _dsl_reserved_stream() -> None:
    class T(Topology):
        a = WordSpout.spec(outputs=[Stream(["root", "xor"], name="__ack_ack")])

    T.build()


def _dsl_invalid_name() -> None:
    build_spec("t", [WordSpout.spec(name="two words")])


def _dsl_subscribes_twice() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs=[a, "a"])

    T.build()


def _builder_subscribes_twice() -> None:
    b = TopologyBuilder("t")
    b.set_spout("a", WordSpout)
    b.set_bolt("b", SinkBolt).shuffle_grouping("a").fields_grouping("a", "word")


def _dsl_grouping_not_a_grouping() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs={a: "shuffle"})

    T.build()


def _dsl_bad_input() -> None:
    class T(Topology):
        a = WordSpout.spec()
        b = SinkBolt.spec(inputs=[42])

    T.build()


def _unnamed_spec_as_input() -> None:
    orphan = WordSpout.spec()
    build_spec("t", [WordSpout.spec(name="a"), SinkBolt.spec(name="b", inputs=[orphan])])


def _stream_declared_twice() -> None:
    class T(Topology):
        a = WordSpout.spec(outputs=[Stream(["x"], name="s"), Stream(["y"], name="s")])

    T.build()


def _stream_repeats_field() -> None:
    class T(Topology):
        a = WordSpout.spec(outputs=["word", "word"])

    T.build()


def _default_stream_declared_twice() -> None:
    class T(Topology):
        a = WordSpout.spec(outputs=["word", Stream(["n"])])

    T.build()


def _bad_outputs_item() -> None:
    class T(Topology):
        a = WordSpout.spec(outputs=["word", 3])  # type: ignore[list-item]

    T.build()


def _empty_fields_grouping() -> None:
    Grouping.fields()


def _custom_grouping_not_custom() -> None:
    Grouping.custom(dict)  # type: ignore[arg-type]


def _empty_topology_name() -> None:
    build_spec("", [WordSpout.spec(name="a")])


def _topology_unknown_config_key() -> None:
    class Typo(Topology):
        config = {"topology.wokers": 2}
        a = WordSpout.spec()

    Typo.build()


def _topology_bad_config_type() -> None:
    class T(Topology):
        config = {"topology.workers": "2"}
        a = WordSpout.spec()

    T.build()


def _topology_bool_for_int() -> None:
    TopologyBuilder("t", {"topology.max.spout.pending": True}).build()


def _topology_null_for_non_nullable() -> None:
    class T(Topology):
        a = WordSpout.spec()

    T.build({"topology.message.timeout.secs": None})


def _topology_zero_workers() -> None:
    class T(Topology):
        a = WordSpout.spec()

    T.build({"topology.workers": 0})


def _negative_ackers() -> None:
    class T(Topology):
        a = WordSpout.spec()

    T.build({"topology.acker.executors": -1})


def _component_unknown_config_key() -> None:
    class T(Topology):
        a = WordSpout.spec(config={"topology.tick.tuple.freqsecs": 1})

    T.build()


def _component_bad_config_type() -> None:
    b = TopologyBuilder("t")
    b.set_spout("a", WordSpout, config={"topology.debug": 1})
    b.build()


def _component_non_str_key() -> None:
    class T(Topology):
        a = WordSpout.spec(config={1: 2})  # type: ignore[dict-item]

    T.build()


VALIDATION_CASES = [
    (_dsl_unknown_component, TopologyError, ["'b'", "'missing'", "known components: a, b"]),
    (_dsl_unknown_stream, TopologyError, ["'b'", "'warnings'", "'a'", "errors"]),
    (_dsl_unknown_field, TopologyError, ["'b'", "'errors'", "'a'", "'severity'", "'msg'"]),
    (_dsl_unknown_partial_key_field, TopologyError, ["'b'", "'letter'", "'word'"]),
    (_dsl_direct_on_plain_stream, TopologyError, ["'b'", "direct", "'errors'", "'a'"]),
    (_dsl_shuffle_on_direct_stream, TopologyError, ["'b'", "'directed'", "shuffle", "Grouping.direct()"]),
    (_dsl_duplicate_name, TopologyError, ["'a'", "unique"]),
    (_dsl_same_spec_twice, TopologyError, ["'T'", "'b'"]),
    (_builder_duplicate_name, TopologyError, ["'dup'", "unique"]),
    (_dsl_spout_with_inputs, TopologyError, ["spout 'relay'", "inputs"]),
    (_dsl_not_a_component, TopologyError, ["'weird'", "Plain", "Spout or Bolt"]),
    (_spec_of_plain_class, TopologyError, ["'weird'", "dict", "Spout or Bolt"]),
    (_builder_spout_is_not_a_spout, TopologyError, ["'weird'", "CountBolt", "Spout"]),
    (_builder_bolt_is_not_a_bolt, TopologyError, ["'weird'", "WordSpout", "Bolt"]),
    (_builder_spout_is_not_a_class, TopologyError, ["'weird'", "Spout"]),
    (_dsl_bolt_without_inputs, TopologyError, ["bolt 'lonely'", "no inputs"]),
    (_dsl_no_spout, TopologyError, ["'NoSource'", "no spout"]),
    (_builder_reserved_name, TopologyError, ["'__acker'", "reserved"]),
    (_dsl_reserved_name, TopologyError, ["'__system'", "reserved"]),
    (_dsl_reserved_stream, TopologyError, ["'a'", "'__ack_ack'", "reserved"]),
    (_dsl_invalid_name, TopologyError, ["'two words'", "invalid"]),
    (_dsl_subscribes_twice, TopologyError, ["'b'", "'default'", "'a'", "twice"]),
    (_builder_subscribes_twice, TopologyError, ["'b'", "'default'", "'a'", "twice"]),
    (_dsl_grouping_not_a_grouping, TopologyError, ["'b'", "'a'", "Grouping"]),
    (_dsl_bad_input, TopologyError, ["'b'", "42"]),
    (_unnamed_spec_as_input, TopologyError, ["WordSpout", "name"]),
    (_stream_declared_twice, TopologyError, ["'a'", "'s'", "twice"]),
    (_stream_repeats_field, TopologyError, ["'a'", "'default'", "word"]),
    (_default_stream_declared_twice, TopologyError, ["'a'", "default stream"]),
    (_bad_outputs_item, TopologyError, ["'a'", "3"]),
    (_empty_fields_grouping, TopologyError, ["Grouping.fields()"]),
    (_custom_grouping_not_custom, TopologyError, ["CustomGrouping", "dict"]),
    (_empty_topology_name, TopologyError, ["name"]),
    (_topology_unknown_config_key, ConfigError, ["'topology.wokers'", "did you mean 'topology.workers'"]),
    (_topology_bad_config_type, ConfigError, ["'topology.workers'", "int", "str"]),
    (_topology_bool_for_int, ConfigError, ["'topology.max.spout.pending'", "int", "bool"]),
    (_topology_null_for_non_nullable, ConfigError, ["'topology.message.timeout.secs'", "None"]),
    (_topology_zero_workers, TopologyError, ["'T'", "topology.workers", "0"]),
    (_negative_ackers, ConfigError, ["topology.acker.executors", "-1"]),
    (
        _component_unknown_config_key,
        ConfigError,
        ["component 'a'", "'topology.tick.tuple.freqsecs'", "did you mean 'topology.tick.tuple.freq.secs'"],
    ),
    (_component_bad_config_type, ConfigError, ["component 'a'", "'topology.debug'", "bool", "int"]),
    (_component_non_str_key, ConfigError, ["component 'a'", "strings", "1"]),
]


@pytest.mark.parametrize(
    ("make", "error", "parts"),
    VALIDATION_CASES,
    ids=[case[0].__name__.lstrip("_") for case in VALIDATION_CASES],
)
def test_validation_error(make: Callable[[], object], error: type[Exception], parts: list[str]) -> None:
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    missing = [p for p in parts if p not in message]
    assert not missing, f"{missing} not in {message!r}"


@pytest.mark.parametrize("par", [0, -1, 1.5, True, "2", None])
@pytest.mark.parametrize("form", ["dsl", "builder"])
def test_parallelism_must_be_a_positive_int(par: Any, form: str) -> None:
    with pytest.raises(TopologyError) as info:
        if form == "dsl":

            class T(Topology):
                a = WordSpout.spec()
                slow = SinkBolt.spec(inputs=[a], par=par)

            T.build()
        else:
            b = TopologyBuilder("t")
            b.set_spout("a", WordSpout)
            b.set_bolt("slow", SinkBolt, par=par).shuffle_grouping("a")
            b.build()
    message = str(info.value)
    assert "'slow'" in message and "parallelism" in message and repr(par) in message


def test_errors_are_storm_errors() -> None:
    from storm import StormError

    assert issubclass(TopologyError, StormError) and issubclass(ConfigError, StormError)
