"""Word count whose split step is a pystorm bolt in a child process, speaking
Apache Storm's multi-lang protocol (needs `pip install pystorm`).

Run it:  storm local topologies/multilang_wordcount.py --duration 10
"""

from __future__ import annotations

import sys

from wordcount import CountBolt, SentenceSpout, SinkBolt

from storm import Grouping, Topology
from storm.multilang import ShellBolt


class MultilangWordCount(Topology):
    config = {"topology.workers": 2, "topology.max.spout.pending": 1000}
    sentences = SentenceSpout.spec()
    split = ShellBolt.spec(command=[sys.executable], script="multilang/split.py",
                           inputs=[sentences], outputs=["word"], par=2)
    count = CountBolt.spec(inputs={split: Grouping.fields("word")}, par=2,
                           config={"topology.tick.tuple.freq.secs": 1})
    sink = SinkBolt.spec(inputs={count: Grouping.global_()}, config={"topology.tick.tuple.freq.secs": 1})
