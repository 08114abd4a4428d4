"""Window panes: the partial aggregates of one (rule, key) over one slice of
event time (gcd of window and slide), combined at evaluation into the window's
count, sum, avg, min, max, quantile or mean ± stddev. Work per event is O(1),
memory per key O(window / slide) whatever the event rate. Quantiles come from a
DDSketch per pane (the ``ddsketch`` package), merged at evaluation; a pane keeps
its first few values raw, so small windows give exact quantiles and a key with
few events holds no sketch. Owns no rule state and no alert logic (_engine.py)."""

from __future__ import annotations

import math
from array import array
from fractions import Fraction
from typing import Any

from ddsketch import DDSketch

#: DDSketch's relative accuracy: a quantile it answers is within 1% of the exact
#: value at that rank (relative error, for any distribution and any value range).
RELATIVE_ACCURACY = 0.01
#: Values a pane holds raw before they go into its sketch. A window whose panes
#: all hold raw values answers quantiles exactly.
RAW_VALUES = 32


def pane_length(window: float, slide: float) -> float:
    """gcd(window, slide) in seconds, on rationals (1.5 and 0.5 give 0.5)."""
    a = Fraction(window).limit_denominator(10**6)
    b = Fraction(slide).limit_denominator(10**6)
    g = Fraction(math.gcd(a.numerator * b.denominator, b.numerator * a.denominator),
                 a.denominator * b.denominator)
    return float(g)


def quantile_of(aggregate: str) -> float | None:
    """0.95 for "p95", 0.999 for "p99.9"; None for a non-quantile aggregate."""
    if len(aggregate) < 2 or aggregate[0] != "p":
        return None
    try:
        pct = float(aggregate[1:])
    except ValueError:
        return None
    return pct / 100.0 if 0 < pct < 100 else None


def nearest_rank(n: int, q: float) -> int:
    """0-based index of the q-quantile of n sorted values (nearest rank)."""
    return max(0, math.ceil(q * n) - 1)


class Pane:
    """Partial aggregates of one pane. ``s`` is a compensated (Neumaier) sum, the
    compensation in ``c``; anomaly rules store values shifted by the key's first
    value in ``s`` and ``ss`` so the variance does not cancel catastrophically."""

    __slots__ = ("idx", "n", "s", "c", "ss", "mn", "mx", "raw", "sketch")

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.n = 0
        self.s = 0.0
        self.c = 0.0
        self.ss = 0.0
        self.mn = math.inf
        self.mx = -math.inf
        self.raw: array[float] | None = None
        self.sketch: DDSketch | None = None

    def add_sum(self, v: float) -> None:
        s = self.s
        t = s + v
        if abs(s) >= abs(v):
            self.c += (s - t) + v
        else:
            self.c += (v - t) + s
        self.s = t

    def add_value(self, v: float, exact: bool) -> None:
        """Keeps v for quantiles: raw while few (always, for exact rules), else
        in the pane's sketch."""
        raw = self.raw
        if raw is None:
            raw = self.raw = array("d")
        raw.append(v)
        if not exact and len(raw) > RAW_VALUES:
            sk = self.sketch
            if sk is None:
                sk = self.sketch = DDSketch(RELATIVE_ACCURACY)
            add = sk.add
            for x in raw:
                add(x)
            self.raw = array("d")

    def size_bytes(self) -> int:
        """Approximate memory of the pane (CPython objects, sketch bins)."""
        size = 120
        if self.raw is not None:
            size += 64 + 8 * len(self.raw)
        if self.sketch is not None:
            bins = len(self.sketch._store.bins) + len(self.sketch._negative_store.bins)
            size += 1200 + 8 * bins
        return size

    # -- checkpoints ----------------------------------------------------------------
    def dump(self) -> list[Any]:
        sk = self.sketch
        return [self.idx, self.n, self.s, self.c, self.ss,
                None if self.n == 0 or math.isinf(self.mn) else self.mn,
                None if self.n == 0 or math.isinf(self.mx) else self.mx,
                None if self.raw is None else self.raw.tobytes(),
                None if sk is None else sketch_dump(sk)]

    @classmethod
    def load(cls, data: list[Any]) -> Pane:
        p = cls(int(data[0]))
        p.n, p.s, p.c, p.ss = int(data[1]), float(data[2]), float(data[3]), float(data[4])
        p.mn = math.inf if data[5] is None else float(data[5])
        p.mx = -math.inf if data[6] is None else float(data[6])
        if data[7] is not None:
            p.raw = array("d")
            p.raw.frombytes(data[7])
        if data[8] is not None:
            p.sketch = sketch_load(data[8])
        return p


def sketch_dump(sk: DDSketch) -> list[Any]:
    """A DDSketch as msgpack-able data: its bins (offset, counts), zero count and
    summary. The ddsketch package's own serialisation needs protobuf; the bins
    are the whole state, so a restored sketch answers exactly as the original."""
    pos, neg = sk._store, sk._negative_store
    return [pos.offset, list(pos.bins), neg.offset, list(neg.bins), sk._zero_count,
            sk._count, sk._sum, sk._min, sk._max]


def sketch_load(data: list[Any]) -> DDSketch:
    sk = DDSketch(RELATIVE_ACCURACY)
    for store, offset, bins in ((sk._store, data[0], data[1]), (sk._negative_store, data[2], data[3])):
        for i, ct in enumerate(bins):
            if ct:
                store.add(int(offset) + i, float(ct))
    sk._zero_count = float(data[4])
    sk._count, sk._sum, sk._min, sk._max = float(data[5]), float(data[6]), float(data[7]), float(data[8])
    return sk


def window_quantile(panes: list[Pane], lo: int, hi: int, q: float) -> float | None:
    """The q-quantile (nearest rank) of the values in panes [lo, hi): exact when
    every pane holds its values raw, else from the merge of the panes' sketches
    (within RELATIVE_ACCURACY of the exact value at that rank)."""
    raws: list[float] = []
    sketches: list[DDSketch] = []
    for p in panes:
        if p.idx < lo:
            continue
        if p.idx >= hi:
            break
        if p.raw:
            raws.extend(p.raw)
        if p.sketch is not None:
            sketches.append(p.sketch)
    if not sketches:
        if not raws:
            return None
        raws.sort()
        return float(raws[nearest_rank(len(raws), q)])
    merged = DDSketch(RELATIVE_ACCURACY)
    for sk in sketches:
        merged.merge(sk)
    for v in raws:
        merged.add(v)
    n = int(merged.count)
    # DDSketch ranks from q·(n-1); ask for the rank nearest-rank names, so small
    # and large windows agree on which value "p95" is.
    rank = nearest_rank(n, q)
    value = merged.get_quantile_value(rank / (n - 1) if n > 1 else 0.0)
    return None if value is None else float(value)


def window_aggregate(kind: str, q: float | None, panes: list[Pane], lo: int, hi: int) -> float | None:
    """count/sum/avg/min/max/quantile over panes [lo, hi); None when undefined."""
    if q is not None:
        return window_quantile(panes, lo, hi, q)
    n = 0
    if kind == "count":
        for p in panes:
            if lo <= p.idx < hi:
                n += p.n
        return float(n)
    if kind in ("sum", "avg"):
        parts: list[float] = []
        for p in panes:
            if lo <= p.idx < hi:
                n += p.n
                parts.append(p.s)
                parts.append(p.c)
        if not n:
            return None
        total = math.fsum(parts)
        return total if kind == "sum" else total / n
    if kind == "min":
        found = [p.mn for p in panes if lo <= p.idx < hi and p.n]
        return min(found) if found else None
    if kind == "max":
        found = [p.mx for p in panes if lo <= p.idx < hi and p.n]
        return max(found) if found else None
    raise ValueError(f"unknown aggregate {kind!r}")


def window_moments(panes: list[Pane], lo: int, hi: int) -> tuple[int, float, float]:
    """(count, mean, population variance) of the shifted values in [lo, hi)."""
    n = 0
    s: list[float] = []
    ss: list[float] = []
    for p in panes:
        if lo <= p.idx < hi:
            n += p.n
            s.append(p.s)
            s.append(p.c)
            ss.append(p.ss)
    if not n:
        return 0, 0.0, 0.0
    mean = math.fsum(s) / n
    var = max(0.0, math.fsum(ss) / n - mean * mean)
    return n, mean, var
