"""YAML topology files: the YAML and Python forms of the word count and of the
alerting topology build the same TopologySpec; every grouping, named and direct
streams, windows, checkpoints and multi-lang components; `${...}` from a filter
file and the environment; includes with override; and every mistake reported
as file:line: key before anything runs. In one process: no workers."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from storm import Grouping, TopologySpec
from storm._target import build_target, load_target
from storm.daemon._code import package_target
from storm.multilang import KEY_BASE, KEY_COMMAND, KEY_SCRIPT, ShellBolt, _resolve
from storm.stateful import CHECKPOINT_STREAM
from storm.testing import run_topology
from storm.windowing import LENGTH_MS, SLIDE_MS, TIMESTAMP_FIELD
from storm.yaml_topology import VARS_KEY, YamlTopology, YamlTopologyError

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "topologies"
RULES = str(REPO / "conf" / "alerts.example.yaml")


def python_form(module: str, name: str) -> Any:
    # Imported by module name, as the YAML form's class paths import it, so both
    # forms hold the very same component classes.
    if str(TOPOLOGIES) not in sys.path:
        sys.path.insert(0, str(TOPOLOGIES))
    return getattr(importlib.import_module(module), name)


def assert_same_spec(a: TopologySpec, b: TopologySpec) -> None:
    for f in dataclasses.fields(TopologySpec):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "streams":  # StreamMeta has no __eq__: compare what it holds
            va, vb = ([(s.component, s.stream, s.fields, s.sid, s.direct, s.ordered) for s in v] for v in (va, vb))
        assert va == vb, f"TopologySpec.{f.name} differs:\n{va}\n{vb}"


def test_word_count_yaml_and_python_build_the_same_spec() -> None:
    from_yaml = build_target(load_target(str(TOPOLOGIES / "wordcount.yaml")))
    assert_same_spec(python_form("wordcount", "WordCount").build(), from_yaml)
    with_overrides = {"topology.workers": 3, "wordcount.output": "x.json"}
    assert_same_spec(python_form("wordcount", "WordCount").build(with_overrides),
                     build_target(load_target(str(TOPOLOGIES / "wordcount.yaml")), with_overrides))


def test_alerting_yaml_and_python_build_the_same_spec() -> None:
    overrides = {"alerting.rules": RULES}
    from_yaml = build_target(YamlTopology(TOPOLOGIES / "alerting.yaml", environ={}), overrides)
    assert_same_spec(python_form("alerting", "Alerting").build(overrides), from_yaml)
    assert [(s.source, s.stream, s.grouping) for s in from_yaml.components["evaluate"].inputs] == [
        ("match", "default", Grouping.fields("rule", "key")), ("match", "watermark", Grouping.all())]


def write(dir: Path, name: str, text: str) -> Path:
    path = dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GROUPINGS = """\
name: Groupings
config:
  topology.workers: 2
spouts:
  - name: numbers
    class: yaml_parts.Numbers
    par: 2
bolts:
  - name: router
    class: yaml_parts.Router
    par: 3
    config: {topology.tick.tuple.freq.secs: 2}
  - {name: a, class: yaml_parts.Collect, par: 2}
  - {name: b, class: yaml_parts.Collect, par: 2}
  - {name: c, class: yaml_parts.Collect, par: 2}
streams:
  - {from: numbers, to: router, grouping: local_or_shuffle}
  - {from: router, stream: evens, to: a, grouping: fields, fields: [n]}
  - {from: router, stream: odds, to: a, grouping: partial_key, fields: n}
  - {from: router, stream: picked, to: a, grouping: direct}
  - {from: router, to: a, grouping: GLOBAL}
  - {from: router, stream: evens, to: b, grouping: all}
  - {from: router, stream: odds, to: b, grouping: none}
  - {from: router, to: b}
  - {from: router, stream: evens, to: c, grouping: custom, class: yaml_parts.ByValue, args: {offset: 1}}
"""


def test_every_grouping_named_and_direct_streams(tmp_path: Path) -> None:
    spec = build_target(load_target(str(write(tmp_path, "g.yaml", GROUPINGS))))
    assert spec.config["topology.workers"] == 2
    assert spec.components["router"].par == 3
    assert spec.components["router"].config == {"topology.tick.tuple.freq.secs": 2}
    subs = {(s.source, s.stream, s.target): s.grouping.describe()
            for c in spec.components.values() for s in c.inputs if not s.stream.startswith("__")}
    assert subs == {
        ("numbers", "default", "router"): "local_or_shuffle",
        ("router", "evens", "a"): "fields(n)",
        ("router", "odds", "a"): "partial_key(n)",
        ("router", "picked", "a"): "direct",
        ("router", "default", "a"): "global",
        ("router", "evens", "b"): "all",
        ("router", "odds", "b"): "none",
        ("router", "default", "b"): "shuffle",
        ("router", "evens", "c"): "custom(ByValue)",
    }
    custom = next(s.grouping for s in spec.components["c"].inputs if s.grouping.kind == "custom")
    assert custom.custom_args == {"offset": 1}


def test_windows_checkpoints_shipped_components_and_multilang(tmp_path: Path) -> None:
    write(tmp_path, "multilang/split.py", "# the child's script\n")
    path = write(tmp_path, "parts.yaml", """\
name: Parts
spouts:
  - {name: checkpoint, class: CheckpointSpout}
  - name: lines
    class: storm.spouts.FileSpout
    outputs: [line]
    config: {spouts.file.path: in.txt}
bolts:
  - name: split
    command: [python3]
    script: multilang/split.py
    outputs:
      default: [word]
      errors: {fields: [message], direct: true}
  - name: sum
    class: yaml_parts.Sum
    window: {length: 10s, slide: 500ms, timestamp_field: ts, lag: 2s, late_stream: late}
  - name: tally
    class: yaml_parts.Tally
    checkpoints: checkpoint
  - name: out
    class: FileSink
    config: {sinks.file.path: out.jsonl}
streams:
  - {from: lines, to: split}
  - {from: split, to: sum}
  - {from: sum, to: tally}
  - {from: sum, to: out}
""")
    spec = build_target(load_target(str(path)))
    split = spec.components["split"]
    assert split.cls is ShellBolt and split.config[KEY_COMMAND] == ["python3"]
    assert split.config[KEY_SCRIPT] == "multilang/split.py"
    assert set(split.outputs) >= {"default", "errors"} and split.outputs["errors"].direct
    # The script is relative to the YAML file, as a .py target's scripts are to it.
    assert sys.modules[split.config[KEY_BASE]].__file__ == str(path.resolve())
    assert _resolve(split.config)[0][-1] == str(tmp_path.resolve() / "multilang" / "split.py")
    conf = spec.components["sum"].config
    assert conf[LENGTH_MS] == 10000.0 and conf[SLIDE_MS] == 500.0 and conf[TIMESTAMP_FIELD] == "ts"
    assert "late" in spec.components["sum"].outputs
    assert ("checkpoint", CHECKPOINT_STREAM, "all") in {
        (s.source, s.stream, s.grouping.kind) for s in spec.components["tally"].inputs}
    assert spec.components["out"].config["sinks.file.path"] == "out.jsonl"
    assert spec.components["lines"].config["spouts.file.path"] == "in.txt"


VARS = """\
name: ${topo.name}
config:
  topology.workers: ${workers}
  app.home: ${ENV-HOME_FOR_TEST}
  app.quoted: "${workers}"
  app.default: ${missing:-fallback}
  app.literal: $${not.a.var}
spouts:
  - name: numbers
    class: yaml_parts.Numbers
    par: ${par:-1}
"""


def test_substitution_from_the_filter_file_then_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "vars.yaml", VARS)
    props = {"topo.name": "FromFilter", "workers": "3"}
    topo = YamlTopology(path, props, environ={"HOME_FOR_TEST": "/home/x", "par": "4", "workers": "9"})
    spec = topo.build()
    assert spec.name == "FromFilter"
    assert spec.config["topology.workers"] == 3  # the filter wins over the environment, typed as YAML
    assert spec.config["app.home"] == "/home/x" and spec.config["app.quoted"] == "3"
    assert spec.config["app.default"] == "fallback" and spec.config["app.literal"] == "${not.a.var}"
    assert spec.components["numbers"].par == 4  # from the environment
    assert topo.variables == {"topo.name": "FromFilter", "workers": "3", "ENV-HOME_FOR_TEST": "/home/x",
                              "par": "4"}
    # A worker substitutes the values resolved at submission, whatever its own environment.
    fixed = {VARS_KEY: dict(topo.variables)}
    again = YamlTopology(path, environ={"HOME_FOR_TEST": "/elsewhere", "workers": "7"}).build(fixed)
    assert again.name == "FromFilter" and again.config["app.home"] == "/home/x"
    assert again.config[VARS_KEY] == {}  # the default: the values are not part of the topology's config


def test_includes_merge_and_override(tmp_path: Path) -> None:
    write(tmp_path, "shared/base.yaml", """\
name: Base
config: {topology.workers: 1, a: base, b: base}
spouts:
  - {name: numbers, class: yaml_parts.Numbers, par: 1}
bolts:
  - {name: sink, class: yaml_parts.Collect}
streams:
  - {from: numbers, to: sink}
""")
    write(tmp_path, "shared/forced.yaml", "config: {b: forced}\n")
    path = write(tmp_path, "app/top.yaml", """\
includes:
  - ../shared/base.yaml
  - {file: ../shared/forced.yaml, override: true}
name: Top
config: {a: top, b: top}
spouts:
  - {name: numbers, class: yaml_parts.Numbers, par: 3}
bolts:
  - {name: extra, class: yaml_parts.Collect}
streams:
  - {from: numbers, stream: default, to: sink, grouping: all}
  - {from: numbers, to: extra}
""")
    topo = YamlTopology(path)
    spec = topo.build()
    assert spec.name == "Top"
    assert (spec.config["a"], spec.config["b"]) == ("top", "forced")
    assert spec.components["numbers"].par == 3
    assert [s.grouping.kind for s in spec.components["sink"].inputs if s.source == "numbers"] == ["all"]
    assert set(spec.components) == {"numbers", "sink", "extra", "__acker"}
    assert [p.relative_to(tmp_path.resolve()).as_posix() for p in topo.files] == [
        "app/top.yaml", "shared/base.yaml", "shared/forced.yaml"]


def test_cluster_archive_holds_the_yaml_its_includes_and_its_modules(tmp_path: Path) -> None:
    # A module name of its own: this process may have imported topologies/wordcount.py as wordcount.
    write(tmp_path, "topologies/packed_wc_parts.py", (TOPOLOGIES / "wordcount.py").read_text())
    write(tmp_path, "shared/base.yaml", "config: {wordcount.output: shared.json}\n")
    yaml_text = (TOPOLOGIES / "wordcount.yaml").read_text().replace("name: WordCount", "name: PackedWC")
    path = write(tmp_path, "topologies/wc.yaml", "includes: [../shared/base.yaml]\n"
                 + yaml_text.replace("class: wordcount.", "class: packed_wc_parts."))
    pkg, spec = package_target(str(path))
    assert spec.name == "PackedWC" and spec.config["wordcount.output"] == "shared.json"
    assert pkg.target == "topologies/wc.yaml"
    assert set(pkg.files) == {"shared/base.yaml", "topologies/wc.yaml", "topologies/packed_wc_parts.py"}


def test_a_yaml_target_runs_in_storm_testing() -> None:
    result = run_topology(str(TOPOLOGIES / "wordcount.yaml"), inputs={"sentences": [["a b a"], ["b"]]},
                          ticks=1)
    assert sorted(result.emitted("count")) == [["a", 2], ["b", 2]]
    assert result.acked("sentences") == [0, 1]


HEAD = "name: T\nspouts:\n  - {name: s, class: yaml_parts.Numbers}\n"
ERRORS = [
    (HEAD + "bolts:\n  - name: b\n    class: mypkg.bolts.SplitBolt\n",
     "t.yaml:6: bolts[0].class: no module named 'mypkg'"),
    (HEAD + "bolts:\n  - name: b\n    class: yaml_parts.Nope\n",
     "t.yaml:6: bolts[0].class: module 'yaml_parts' has no attribute 'Nope'"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Numbers}\n",
     "t.yaml:5: bolts[0].class: <class 'yaml_parts.Numbers'> is not a Bolt subclass; it is a Spout"),
    (HEAD + "bolts:\n  - {name: b, className: x.Y}\n", "t.yaml:5: bolts[0].className: unknown key 'className'"),
    (HEAD + "  - {name: s2, class: yaml_parts.Numbers, par: 0}\n", "t.yaml:4: spouts[1].par: par must be an integer >= 1"),
    (HEAD + "config:\n  topology.wrkers: 2\n", "t.yaml:5: config.topology.wrkers: unknown config key 'topology.wrkers'; "
     "did you mean 'topology.workers'?"),
    (HEAD + "config:\n  topology.workers: two\n", "t.yaml:5: config.topology.workers: config key 'topology.workers' must be int"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Collect}\nstreams:\n  - {from: s, to: bb}\n",
     "t.yaml:7: streams[0].to: no component named 'bb'; did you mean 'b'?"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Collect}\nstreams:\n  - {from: s, to: b, grouping: fields, fields: [m]}\n",
     "t.yaml:7: streams[0].fields: stream 'default' of 's' has no field 'm'; its fields: ['n']"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Collect}\nstreams:\n  - {from: s, to: b, stream: x}\n",
     "t.yaml:7: streams[0].stream: component 's' declares no stream 'x'"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Collect}\nstreams:\n  - {from: s, to: b, grouping: direct}\n",
     "t.yaml:7: streams[0].grouping: direct grouping needs a direct stream"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Collect}\nstreams:\n  - {from: s, to: b, grouping: sideways}\n",
     "t.yaml:7: streams[0].grouping: unknown grouping 'sideways'"),
    (HEAD + "bolts:\n  - {name: b, class: yaml_parts.Collect}\n", "t.yaml:5: bolts[0]: bolt 'b' has no inputs"),
    (HEAD + "bolts:\n  - {name: w, class: yaml_parts.Sum, window: {length: 10q}}\n",
     "t.yaml:5: bolts[0].window.length: length must be a tuple count (100) or a duration"),
    (HEAD + "bolts:\n  - {name: t, class: yaml_parts.Tally}\n", "t.yaml:5: bolts[0]: a StatefulBolt needs checkpoints:"),
    (HEAD + "  - {name: s, class: yaml_parts.Numbers}\n", "t.yaml:4: spouts[1].name: two components are named 's'"),
    (HEAD + "trident: {}\n", "t.yaml:4: trident: unknown key 'trident' in a topology file; Trident topologies are not"),
    (HEAD + "config:\n  topology.workers: ${W}\n", "t.yaml:5: config.topology.workers: variable '${W}' is not set"),
    (HEAD + "name: again\n", "t.yaml:4: name: written twice in the same mapping (first at line 1)"),
    (HEAD + "bolts: [\n", "t.yaml:5: not valid YAML"),
    ("spouts: []\n", "t.yaml:1: a topology file needs name:"),
    (HEAD + "includes: [t.yaml]\n", "t.yaml:4: includes[0]: includes form a cycle"),
    (HEAD + "includes: [nowhere.yaml]\n", "t.yaml:4: includes[0]: included file 'nowhere.yaml' does not exist"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[m.split(": ", 2)[1] for _, m in ERRORS])
def test_mistakes_name_the_file_line_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             text: str, message: str) -> None:
    write(tmp_path, "t.yaml", text)
    monkeypatch.chdir(tmp_path)  # messages name the file as given, relative to here
    monkeypatch.delenv("W", raising=False)
    with pytest.raises(YamlTopologyError) as err:
        build_target(load_target("t.yaml"))
    assert str(err.value).startswith(message), str(err.value)
