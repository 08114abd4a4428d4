"""Word count against Bytewax, same machine, same run: N sentences of 8 words
drawn from a 1,000-word vocabulary (fixed seed), counted exactly, timed from the
first sentence handed out to the last word counted, words/s.

    python bench/vs_bytewax.py [--sentences 200000] [--rounds 3] [--only ours|bytewax] [--json]

Modes: Bytewax with 1 worker and with 2 processes (`python -m bytewax.run -i/-a`);
ours with 1 worker acking off, 2 workers acking off, 2 workers acking on
(explicit anchors and acks, and BasicBolt split and count: the runtime anchors
to the input and acks it, as storm-starter's word count is written)
(bench/topologies.py:ExactWordCount, on LocalCluster). The same pipeline on both
sides: sentences -> split -> per-word count grouped by word (Bytewax: flat_map,
key_on, fold_final; --bytewax-count count_final runs Bytewax's own count_final
instead, which pre-sums each batch before the exchange). Rounds interleave the
modes, in an order rotated each round (this VM's speed drifts by +-20% between
runs); the table gives medians and ratios, the issue's targets met or not, and
the p99 complete latency of ours, acking on, paced at half its median peak
(emit to ack of every sentence of that run, measured by the spout).
The clock (time.monotonic, one clock for every process here) starts when a
spout or source hands out its first sentence and stops, for Bytewax, when its
last count is written out at the end of input; for ours, at the first tick
(every 10 ms) of each count task that sees its final total: both upper bounds.

Bytewax is installed by this script, never by the package: `bytewax==0.21.*` in
a venv under $TMPDIR/storm-bench-bytewax, made once and reused. Counts that are
not exact on either side are an error (exit 1).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from storm import LocalCluster  # noqa: E402
from topologies import VOCABULARY  # noqa: E402

BYTEWAX_REQUIREMENT = "bytewax==0.21.*"
BASE = Path(tempfile.gettempdir()) / "storm-bench-bytewax"
TARGET = f"{HERE / 'topologies.py'}:ExactWordCount"
SEED = 12
WORDS_PER_SENTENCE = 8


class BenchError(Exception):
    """A run that failed or counted wrong: printed as one line, exit 1."""


@dataclass(frozen=True)
class Mode:
    name: str
    side: str  # "bytewax" or "ours"
    workers: int
    acking: bool = False
    basic: bool = False  # the bolts are BasicBolts (anchored and acked by the runtime)


BW1 = Mode("Bytewax, 1 worker", "bytewax", 1)
BW2 = Mode("Bytewax, 2 processes", "bytewax", 2)
OURS1 = Mode("ours, 1 worker, acking off", "ours", 1)
OURS2 = Mode("ours, 2 workers, acking off", "ours", 2)
OURS2_ACK = Mode("ours, 2 workers, acking on", "ours", 2, acking=True)
OURS2_ACK_BASIC = Mode("ours, 2 workers, acking on, BasicBolt", "ours", 2, acking=True, basic=True)
MODES = [BW1, OURS1, BW2, OURS2, OURS2_ACK, OURS2_ACK_BASIC]  # one side, then the other


def workload(n: int) -> tuple[list[str], Counter[str]]:
    rng = random.Random(SEED)
    sentences = [" ".join(rng.choices(VOCABULARY, k=WORDS_PER_SENTENCE)) for _ in range(n)]
    return sentences, Counter(w for s in sentences for w in s.split())


def check_counts(what: str, got: Counter[str], expected: Counter[str]) -> None:
    if got == expected:
        return
    wrong = sorted(w for w in expected.keys() | got.keys() if got[w] != expected[w])
    examples = ", ".join(f"{w!r} {got[w]} (expected {expected[w]})" for w in wrong[:3])
    raise BenchError(f"{what}: counts are not exact: {sum(got.values()):,} words counted, "
                     f"{sum(expected.values()):,} expected, {len(wrong)} word(s) differ, e.g. {examples}")


def read_records(out: Path, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"{prefix}-*.json"))]


# -- Bytewax ------------------------------------------------------------------

def bytewax_python() -> Path:
    """The Python of the bench's Bytewax venv, made (once) if missing."""
    venv = BASE / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".storm-bench-requirement"
    BASE.mkdir(parents=True, exist_ok=True)
    with open(BASE / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: one installs, the other waits
        if python.exists() and stamp.exists() and stamp.read_text() == BYTEWAX_REQUIREMENT:
            return python
        print(f"installing {BYTEWAX_REQUIREMENT} into {venv} (once; later runs reuse it)",
              file=sys.stderr, flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        for cmd in ([sys.executable, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "-q", BYTEWAX_REQUIREMENT]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                last = (r.stderr.strip().splitlines() or ["no output"])[-1]
                raise BenchError(f"'{' '.join(cmd)}' failed (exit {r.returncode}): {last}")
        stamp.write_text(BYTEWAX_REQUIREMENT)
    return python


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_bytewax(python: Path, mode: Mode, sentences: Path, expected: Counter[str], run_dir: Path,
                count_op: str) -> float:
    out = Path(tempfile.mkdtemp(prefix="bytewax-", dir=run_dir))
    env = {**os.environ, "BENCH_SENTENCES": str(sentences), "BENCH_OUT": str(out),
           "BENCH_COUNT": count_op, "PYTHONPATH": str(HERE)}
    cmd = [str(python), "-m", "bytewax.run", "bytewax_wordcount:flow"]
    if mode.workers == 1:
        cmds = [cmd]
    else:
        addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(mode.workers))
        cmds = [cmd + ["-i", str(i), "-a", addresses] for i in range(mode.workers)]
    procs = []
    for i, c in enumerate(cmds):
        with open(out / f"process-{i}.log", "wb") as log:  # the process keeps its own copy
            procs.append(subprocess.Popen(c, env=env, cwd=HERE, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60 + sum(expected.values()) / 20_000
    try:
        for i, p in enumerate(procs):
            try:
                code = p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(f"{mode.name}: process {i} did not finish in time; log: {out}") from None
            if code:
                tail = (out / f"process-{i}.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise BenchError(f"{mode.name}: process {i} exited {code}: {tail}; log: {out}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    records = read_records(out, "worker")
    if len(records) != mode.workers or any(r["first"] is None for r in records):
        raise BenchError(f"{mode.name}: expected a result from each of {mode.workers} worker(s) in {out}")
    counts: Counter[str] = Counter()
    for r in records:
        counts.update(r["counts"])
    check_counts(mode.name, counts, expected)
    elapsed = max(r["last"] for r in records) - min(r["first"] for r in records)
    return sum(expected.values()) / elapsed


def bytewax_version(python: Path) -> str:
    r = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('bytewax'))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


# -- ours ---------------------------------------------------------------------

def run_ours(mode: Mode, sentences: Path, expected: Counter[str], run_dir: Path,
             rate: float = 0.0) -> tuple[float, float | None]:
    """Words/s, and the spout's p99 complete latency (ms) when acking is on.
    `rate`: sentences/s over all spout tasks (0: as fast as it goes)."""
    out = Path(tempfile.mkdtemp(prefix="ours-", dir=run_dir))
    words = sum(expected.values())
    n_sentences = words // WORDS_PER_SENTENCE
    conf = {"topology.workers": mode.workers, "topology.metrics.interval.secs": 0.25,
            "bench.par": mode.workers, "bench.acking": mode.acking, "bench.basic": mode.basic,
            "bench.rate": rate / mode.workers,
            "bench.sentences": str(sentences), "bench.out": str(out)}

    def finished() -> bool:
        m = topo.metrics().values()
        counted = sum(v["executed"] for v in m if v["component"] == "count")
        trees = sum(v["acked"] + v["failed"] for v in m if v["component"] == "sentences")
        return counted >= words and (not mode.acking or trees >= n_sentences)

    timeout = 60 + words / 20_000 + (n_sentences / rate if rate else 0)
    with LocalCluster(local_dir=run_dir) as cluster:
        topo = cluster.submit(TARGET, config=conf, name=f"vs-bytewax-{mode.workers}w")
        try:
            topo.wait_until(finished, timeout=timeout, interval=0.02, message="all words counted")
        except TimeoutError as exc:
            raise BenchError(f"{mode.name}: {exc}") from None
        p99 = next(c.complete_p99_ms for c in topo.component_stats() if c.name == "sentences")
        errors = topo.recent_errors()
        time.sleep(0.05)  # a few tick periods, so every count task's tick saw its final total
        topo.stop()
    if errors:
        raise BenchError(f"{mode.name}: {len(errors)} error(s), first: {errors[0]['error']}")
    spouts, bolts = read_records(out, "spout"), read_records(out, "count")
    if len(spouts) != mode.workers or len(bolts) != mode.workers:
        raise BenchError(f"{mode.name}: expected a result from each task in {out}")
    counts: Counter[str] = Counter()
    for r in bolts:
        counts.update(r["counts"])
    check_counts(mode.name, counts, expected)
    if mode.acking:
        acked, failed = sum(r["acked"] for r in spouts), sum(r["failed"] for r in spouts)
        if failed or acked != n_sentences:
            raise BenchError(f"{mode.name}: {acked:,} sentences acked and {failed:,} failed "
                             f"of {n_sentences:,}")
    if not all(r["ticked"] for r in bolts):
        raise BenchError(f"{mode.name}: a count task counted words after its last tick (end time unknown)")
    elapsed = max(r["last"] for r in bolts) - min(r["first"] for r in spouts)
    if rate:
        # Paced: the spouts measured every tree (the runtime's p99 covers the last few thousand).
        lat = sorted(x for r in spouts for x in r["latencies_ms"])
        if len(lat) != n_sentences:
            raise BenchError(f"{mode.name}: {len(lat):,} latencies measured of {n_sentences:,} trees")
        p99 = lat[min(len(lat) - 1, len(lat) * 99 // 100)]
    return words / elapsed, p99


# -- the run ------------------------------------------------------------------

def targets(med: dict[str, float], p99: float | None) -> list[dict[str, Any]]:
    """The issue's targets: (what, measured value, threshold, met); None when not measured."""
    bw_best = max((med[m.name] for m in (BW1, BW2) if m.name in med), default=None)

    def ratio(a: Mode, b: float | None) -> float | None:
        return med[a.name] / b if a.name in med and b else None

    rows = [("ours 2 workers acking off / Bytewax best mode", ratio(OURS2, bw_best), ">=", 1.3),
            ("ours 1 worker / Bytewax 1 worker", ratio(OURS1, med.get(BW1.name)), ">=", 0.9),
            ("ours acking on / acking off (2 workers)", ratio(OURS2_ACK, med.get(OURS2.name)), ">=", 0.6),
            ("the same, BasicBolt split and count", ratio(OURS2_ACK_BASIC, med.get(OURS2.name)), ">=", 0.6),
            ("p99 complete latency at half the peak, ms", p99, "<", 5.0)]
    return [{"target": what, "value": v, "op": op, "threshold": t,
             "met": None if v is None else (v >= t if op == ">=" else v < t)} for what, v, op, t in rows]


def print_table(med: dict[str, float], runs: dict[str, list[float]], rows: list[dict[str, Any]],
                p99: float | None, rate: float) -> None:
    bw_best = max((med[m.name] for m in (BW1, BW2) if m.name in med), default=None)
    bw1 = med.get(BW1.name)
    print(f"\n{'mode':<38}{'words/s':>12}{'min':>12}{'max':>12}{'x Bytewax best':>16}{'x Bytewax 1w':>14}")
    for name, v in runs.items():
        best = f"{med[name] / bw_best:.2f}" if bw_best else "-"
        one = f"{med[name] / bw1:.2f}" if bw1 else "-"
        print(f"{name:<38}{med[name]:>12,.0f}{min(v):>12,.0f}{max(v):>12,.0f}{best:>16}{one:>14}")
    if rate:
        print(f"\nours, 2 workers, acking on, paced at {rate:,.0f} sentences/s (half the median peak): "
              f"p99 complete latency {'-' if p99 is None else f'{p99:.2f}'} ms")
    print("\ntargets")
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.2f}"
        state = "not measured" if r["met"] is None else "met" if r["met"] else "NOT met"
        print(f"  {r['target']:<46}{value:>8}  (target {r['op']} {r['threshold']:g})  {state}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=200_000, help="sentences per run (8 words each)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each mode; the median is reported")
    ap.add_argument("--only", choices=["ours", "bytewax"], help="run one side only")
    ap.add_argument("--bytewax-count", choices=["fold_final", "count_final"], default="fold_final",
                    help="Bytewax's count step (count_final pre-sums each batch)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON (progress to stderr)")
    args = ap.parse_args()
    if args.sentences < 2 or args.rounds < 1:
        ap.error("--sentences must be at least 2 and --rounds at least 1")
    modes = [m for m in MODES if args.only in (None, m.side)]
    log: TextIO = sys.stderr if args.json else sys.stdout
    BASE.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=BASE))
    try:
        sentences, expected = workload(args.sentences)
        sentences_file = run_dir / "sentences.txt"
        sentences_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        python = bytewax_python() if any(m.side == "bytewax" for m in modes) else None
        version = bytewax_version(python) if python else "not run"
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, Bytewax {version} "
              f"({args.bytewax_count}); {args.sentences:,} sentences x {WORDS_PER_SENTENCE} words = "
              f"{sum(expected.values()):,} words, {len(expected)} distinct; {args.rounds} round(s)",
              file=log, flush=True)
        runs: dict[str, list[float]] = {m.name: [] for m in modes}
        for r in range(args.rounds):
            k = r % len(modes)
            for m in modes[k:] + modes[:k]:
                if m.side == "bytewax":
                    assert python is not None
                    rate = run_bytewax(python, m, sentences_file, expected, run_dir, args.bytewax_count)
                else:
                    rate = run_ours(m, sentences_file, expected, run_dir)[0]
                runs[m.name].append(rate)
                print(f"  round {r + 1}: {m.name:<38}{rate:>12,.0f} words/s", file=log, flush=True)
        med = {name: statistics.median(v) for name, v in runs.items()}
        p99, paced = None, 0.0
        if OURS2_ACK in modes:
            paced = med[OURS2_ACK.name] / WORDS_PER_SENTENCE / 2
            p99 = run_ours(OURS2_ACK, sentences_file, expected, run_dir, rate=paced)[1]
        rows = targets(med, p99)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"(the run's files are kept in {run_dir})", file=sys.stderr)
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)
    if args.json:
        json.dump({"sentences": args.sentences, "words": sum(expected.values()), "rounds": args.rounds,
                   "bytewax": version, "bytewax_count": args.bytewax_count, "counts_exact": True,
                   "modes": {name: {"words_per_s": v, "median": med[name]} for name, v in runs.items()},
                   "paced_sentences_per_s": paced, "p99_complete_ms": p99, "targets": rows},
                  sys.stdout, indent=2)
        print()
    else:
        print_table(med, runs, rows, p99, paced)
    return 0


if __name__ == "__main__":
    sys.exit(main())
