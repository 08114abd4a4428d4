"""`storm quickstart NAME`: writes a new project to start from — a word count
topology the user edits (`topologies/NAME.py`), its unit test on storm.testing
(`tests/test_NAME.py`), a `storm.yaml` for the cluster commands, a README
and the pytest settings. Right after it, `storm local topologies/NAME.py` runs
and `python -m pytest` passes. An existing path is refused, never written into."""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ._app import app, fail

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

TOPOLOGY = '''"""{title}: sentences -> split -> count, a word count to make your own.

Run it:   storm local topologies/{name}.py --duration 5
Test it:  python -m pytest
Each worker process imports this file, so keep the Topology class at module level.
"""

from __future__ import annotations

import random
from typing import Any

from storm import Bolt, Grouping, Spout, Topology

SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "snow white and the seven dwarfs",
]


class SentenceSpout(Spout):
    """Emits random sentences; replace it with your source (see storm.sources)."""

    outputs = ["sentence"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.rng = random.Random(context.task_id)
        self.seq = 0

    def next_tuple(self) -> None:
        self.seq += 1
        # A message id makes the sentence tracked until every bolt acked its words.
        self.emit([self.rng.choice(SENTENCES)], msg_id=self.seq)


class SplitBolt(Bolt):
    outputs = ["word"]

    def execute(self, tup: Any) -> None:
        for word in tup.values[0].split():
            self.emit([word], anchors=[tup])
        self.ack(tup)


class CountBolt(Bolt):
    """Counts words; emits (word, running count) for every word it sees."""

    outputs = ["word", "count"]

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.counts: dict[str, int] = {{}}

    def execute(self, tup: Any) -> None:
        word = tup.values[0]
        self.counts[word] = self.counts.get(word, 0) + 1
        self.emit([word, self.counts[word]], anchors=[tup])
        self.ack(tup)


class {cls}(Topology):
    config = {{"topology.workers": 2, "topology.max.spout.pending": 1000}}
    sentences = SentenceSpout.spec()
    split = SplitBolt.spec(inputs=[sentences], par=2)
    count = CountBolt.spec(inputs={{split: Grouping.fields("word")}}, par=2)
'''

TEST = '''"""Unit tests of {cls}: the real runtime, groupings and acking in one process,
fixed sentences in place of the spout (storm.testing)."""

from pathlib import Path

from storm.testing import run_topology

TOPOLOGY = str(Path(__file__).resolve().parent.parent / "topologies" / "{name}.py")


def test_counts_every_word() -> None:
    result = run_topology(TOPOLOGY, inputs={{"sentences": [["a b a"], ["b"]]}})
    assert sorted(result.emitted("count")) == [["a", 1], ["a", 2], ["b", 1], ["b", 2]]


def test_every_sentence_is_acked() -> None:
    result = run_topology(TOPOLOGY, inputs={{"sentences": [["to be or not to be"], ["be"]]}})
    assert result.acked("sentences") == [0, 1]
    assert result.failed("sentences") == []
'''

STORM_YAML = '''# Settings of the storm commands for this project (storm submit, list, stats, ...):
# pass it with --conf-file storm.yaml, or copy it to ~/.storm/storm.yaml.
nimbus.seeds: ["127.0.0.1"]
nimbus.port: 6627
# Config for the topology goes in its `config`, or on the command line: -c key=value.
'''

README = '''# {name}

A Storm-style topology on storm-streams: `topologies/{name}.py` is a word
count (sentences -> split -> count) to edit into your own.

```bash
storm local topologies/{name}.py --duration 5    # run it on this machine with the dashboard
python -m pytest                                # its unit tests (tests/test_{name}.py)
storm visualize topologies/{name}.py            # its graph
```

On a cluster (`storm cluster up` starts one on this machine):

```bash
storm submit topologies/{name}.py --conf-file storm.yaml
storm stats {cls} --conf-file storm.yaml
storm kill {cls} --conf-file storm.yaml
```
'''

PYPROJECT = '''# pytest's settings for this project (it runs tests/ only).
[tool.pytest.ini_options]
testpaths = ["tests"]
'''

GITIGNORE = "__pycache__/\n.pytest_cache/\n"


def class_name(name: str) -> str:
    """The topology class for a project name: my_app -> MyApp."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Topology"


def project_files(name: str) -> dict[str, str]:
    """Relative path -> contents of the project `storm quickstart NAME` writes."""
    cls = class_name(name)
    return {
        f"topologies/{name}.py": TOPOLOGY.format(name=name, cls=cls, title=cls),
        f"tests/test_{name}.py": TEST.format(name=name, cls=cls),
        "storm.yaml": STORM_YAML,
        "README.md": README.format(name=name, cls=cls),
        "pyproject.toml": PYPROJECT,
        ".gitignore": GITIGNORE,
    }


def check_name(name: str) -> str | None:
    """Why `name` cannot name a project, or None."""
    if not _NAME_RE.match(name):
        fixed = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "my_project"
        if not fixed[0].isalpha():
            fixed = f"p_{fixed}"
        return (f"project name '{name}' must be a Python identifier starting with a letter (letters, digits, _), "
                f"since it names the topology module; e.g. {fixed}")
    if keyword.iskeyword(name) or name in ("storm", "test", "tests", "topologies"):
        return f"project name '{name}' would shadow a module its files import; choose another name"
    return None


def write_project(root: Path, name: str) -> list[Path]:
    """Write the project into the new directory `root` (which must not exist)."""
    root.mkdir(parents=True)
    written = []
    for rel, text in project_files(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


@app.command()
def quickstart(
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False,
                                        help="The project: a new directory NAME with topologies/NAME.py.")],
) -> None:
    """Start a project: a word count topology, its test, storm.yaml and a README."""
    problem = check_name(name)
    if problem:
        raise fail(problem)
    root = Path(name)
    if root.exists() or root.is_symlink():
        raise fail(f"'{name}' already exists; quickstart writes only into a new directory (choose another "
                   "name or remove it)")
    try:
        written = write_project(root, name)
    except OSError as exc:
        raise fail(f"cannot write the project '{name}': {exc.strerror or exc}") from None
    console = Console(highlight=False)
    console.print(f"created project '{name}':")
    for path in written:
        console.print(f"  {path}")
    console.print("next:")
    console.print(f"  cd {name}")
    console.print(f"  storm local topologies/{name}.py -d 5   # run it with the dashboard")
    console.print("  python -m pytest                        # run its tests")
