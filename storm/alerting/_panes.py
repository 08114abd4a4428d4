"""Window panes: the partial aggregates of one (rule, key) over one slice of
event time (gcd of window and slide), combined at evaluation into the window's
count, sum, avg, min, max, quantile or mean ± stddev. Work per event is O(1),
memory per key O(window / slide) whatever the event rate. Quantiles come from
DDSketch buckets per pane (the ``ddsketch`` package's mapping), summed at
evaluation into one DDSketch; a pane keeps its first few values raw, so small
windows give exact quantiles and a key with few events holds no buckets.
``Pane`` is a pane's checkpoint form; the engine keeps panes in flat arrays
(the functions at the end). Owns no rule state and no alert logic (_engine.py)."""

from __future__ import annotations

import math
import sys
from array import array
from fractions import Fraction
from typing import Any, Final

from ddsketch import DDSketch

#: DDSketch's relative accuracy: a quantile it answers is within 1% of the exact
#: value at that rank (relative error, for any distribution and any value range).
RELATIVE_ACCURACY: Final = 0.01
#: Values a pane holds raw before they go into its sketch. A window whose panes
#: all hold raw values answers quantiles exactly.
RAW_VALUES: Final = 32


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


# -- the engine's flat form ------------------------------------------------------------
# The engine keeps each (rule, key) as one array('d'): a header (NEW_KEY) and
# then its non-empty panes by index, STRIDE[mode] floats each (the pane index,
# its count, then the mode's partial aggregates). Arrays of floats are not
# tracked by the garbage collector, nor is a dict holding only them, so millions
# of panes cost the collector nothing (one object per pane made it scan them all,
# about a third of the engine's time). Quantile panes hold the id of their values
# in a per-rule dict of stores: an array('d') of raw values, a dict of DDSketch
# bins while the pane is open, packed into bytes once the key moves on (BINS).

#: Length of a key's array header: firing (1.0 / 0.0), fired_at and ref (NaN: none).
H: Final = 3
NAN: Final = math.nan
#: A new key's array, the header alone: a key's array starts as a slice of it
#: (array("d", ...) parses its arguments and converts each item, several times
#: the cost). Its values are spelled out: compiled, a module-level Final built
#: from another Final tuple is not set yet at import.
NEW_KEY: Final[Any] = array("d", (0.0, math.nan, math.nan))
#: A new quantile pane's raw values: a copy of this one, its value then set.
ONE_VALUE: Final[Any] = array("d", (0.0,))
#: Floats per pane, by engine mode: 0 count, 1 sum/avg, 2 min, 3 max, 4 quantile, 5 anomaly.
#: idx, n, then: - | sum, compensation | min | max | store id | sum, compensation, sum of squares.
STRIDE: Final = (2, 4, 3, 3, 3, 5)
#: What follows the index of a new pane, by mode (the store id of a quantile pane is set apart).
TAIL: Final = ((0.0,), (0.0, 0.0, 0.0), (0.0, math.inf), (0.0, -math.inf), (0.0, 0.0), (0.0, 0.0, 0.0, 0.0))

_MAPPING: Final[Any] = DDSketch(RELATIVE_ACCURACY)._mapping
_MIN_INDEXABLE: Final[Any] = _MAPPING.min_possible
#: Bin keys of a store: a positive value's DDSketch key as is, a negative
#: value's key + NEG_KEY, zero as ZERO_KEY (DDSketch keys stay within ±2^16).
NEG_KEY: Final = 1 << 20
ZERO_KEY: Final = 1 << 22

Store = Any  # array('d') of raw values | dict[int, float] of bins | bytes (packed bins)


def bin_key(v: float) -> int:
    """The bin of v, as DDSketch.add files it (positive, negative or zero)."""
    if v > _MIN_INDEXABLE:
        return int(_MAPPING.key(v))
    if v < -_MIN_INDEXABLE:
        return int(_MAPPING.key(-v)) + NEG_KEY
    return ZERO_KEY


def to_bins(values: Any) -> dict[int, float]:
    bins: dict[int, float] = {}
    for v in values:
        k = bin_key(v)
        bins[k] = bins.get(k, 0.0) + 1.0
    return bins


def pack_bins(bins: dict[int, float]) -> bytes:
    """A closed pane's bins in a few bytes: per bin the zigzag varint of the
    key's step from the previous key, then the varint of its count (counts are
    whole: each value adds 1). About 2 bytes a bin, where a dict entry takes ~100."""
    out = bytearray()
    prev = 0
    for k in sorted(bins):
        d = k - prev
        prev = k
        for x in ((d << 1) ^ (d >> 63), int(bins[k])):
            while x >= 0x80:
                out.append((x & 0x7F) | 0x80)
                x >>= 7
            out.append(x)
    return bytes(out)


def unpack_bins(data: bytes, into: dict[int, float]) -> None:
    """Adds the bins packed in data to ``into``."""
    prev = 0
    i, n = 0, len(data)
    while i < n:
        vals = [0, 0]
        for j in (0, 1):
            x = shift = 0
            while True:
                b = data[i]
                i += 1
                x |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
            vals[j] = x
        z, count = vals
        prev += (z >> 1) ^ -(z & 1)
        into[prev] = into.get(prev, 0.0) + count


def store_add(store: Store, v: float, exact: bool) -> Store:
    """v added to a quantile pane's store; the store to keep (raw values go to
    bins past RAW_VALUES unless exact; packed bins are unpacked to add)."""
    t = type(store)
    if t is array:
        store.append(v)
        if not exact and len(store) > RAW_VALUES:
            return to_bins(store)
        return store
    if t is bytes:
        bins: dict[int, float] = {}
        unpack_bins(store, bins)
        store = bins
    k = bin_key(v)
    store[k] = store.get(k, 0.0) + 1.0
    return store


def bins_sketch(bins: dict[int, float]) -> DDSketch:
    """A DDSketch holding exactly these bins (count set; sum, min, max unknown)."""
    sk = DDSketch(RELATIVE_ACCURACY)
    pos, neg = sk._store, sk._negative_store
    total = 0.0
    for k in sorted(bins):
        c = bins[k]
        total += c
        if k >= ZERO_KEY:
            sk._zero_count += c
        elif k >= NEG_KEY // 2:
            neg.add(k - NEG_KEY, c)
        else:
            pos.add(k, c)
    sk._count = total
    return sk


def sketch_bins(sk: DDSketch) -> dict[int, float]:
    bins: dict[int, float] = {}
    for store, shift in ((sk._store, 0), (sk._negative_store, NEG_KEY)):
        for i, c in enumerate(store.bins):
            if c:
                bins[store.offset + i + shift] = float(c)
    if sk._zero_count:
        bins[ZERO_KEY] = float(sk._zero_count)
    return bins


def store_of_pane(p: Pane) -> Store:
    """A checkpointed pane's values as a store."""
    if p.sketch is None:
        return p.raw if p.raw is not None else array("d")
    bins = sketch_bins(p.sketch)
    for v in p.raw or ():
        k = bin_key(v)
        bins[k] = bins.get(k, 0.0) + 1.0
    return bins


def pane_of_store(p: Pane, store: Store) -> None:
    """Sets a checkpoint pane's raw values or sketch from a store."""
    if type(store) is array:
        p.raw = array("d", store)
        return
    bins = store
    if type(store) is bytes:
        bins = {}
        unpack_bins(store, bins)
    p.sketch = bins_sketch(bins)


def store_bytes(store: Store) -> int:
    """Memory of a store (the container and, for a dict, its int and float objects)."""
    if type(store) is dict:
        return sys.getsizeof(store) + 56 * len(store)
    return sys.getsizeof(store)


def flat_aggregate(mode: int, kind: str, st: Any, K: int, lo: int, hi: int) -> float | None:
    """count/sum/avg/min/max over the panes [lo, hi) of a key's array."""
    n = 0.0
    end = len(st)
    p = H
    while p < end and st[p] < lo:
        p += K
    if mode == 0:
        while p < end and st[p] < hi:
            n += st[p + 1]
            p += K
        return n
    if mode == 1:
        parts: list[float] = []
        while p < end and st[p] < hi:
            n += st[p + 1]
            parts.append(st[p + 2])
            parts.append(st[p + 3])
            p += K
        if not n:
            return None
        total = math.fsum(parts)
        return total if kind == "sum" else total / n
    found = []
    while p < end and st[p] < hi:
        if st[p + 1]:
            found.append(st[p + 2])
        p += K
    if not found:
        return None
    return min(found) if mode == 2 else max(found)


def flat_quantile(st: Any, lo: int, hi: int, q: float, stores: dict[int, Store]) -> float | None:
    """As window_quantile, over the quantile panes [lo, hi) of a key's array."""
    raws: list[float] = []
    bins: dict[int, float] | None = None
    end = len(st)
    for p in range(H, end, 3):
        i = st[p]
        if i < lo:
            continue
        if i >= hi:
            break
        store = stores[int(st[p + 2])]
        t = type(store)
        if t is array:
            raws.extend(store)
            continue
        if bins is None:
            bins = {}
        if t is bytes:
            unpack_bins(store, bins)
        else:
            for k, c in store.items():
                bins[k] = bins.get(k, 0.0) + c
    if bins is None:
        if not raws:
            return None
        raws.sort()
        return float(raws[nearest_rank(len(raws), q)])
    for v in raws:
        k = bin_key(v)
        bins[k] = bins.get(k, 0.0) + 1.0
    merged = bins_sketch(bins)
    n = int(merged.count)
    rank = nearest_rank(n, q)
    value = merged.get_quantile_value(rank / (n - 1) if n > 1 else 0.0)
    return None if value is None else float(value)


def flat_moments(st: Any, lo: int, hi: int) -> tuple[int, float, float]:
    """As window_moments, over the anomaly panes [lo, hi) of a key's array."""
    n = 0.0
    s: list[float] = []
    ss: list[float] = []
    end = len(st)
    for p in range(H, end, 5):
        i = st[p]
        if i < lo:
            continue
        if i >= hi:
            break
        n += st[p + 1]
        s.append(st[p + 2])
        s.append(st[p + 3])
        ss.append(st[p + 4])
    if not n:
        return 0, 0.0, 0.0
    mean = math.fsum(s) / n
    var = max(0.0, math.fsum(ss) / n - mean * mean)
    return int(n), mean, var
