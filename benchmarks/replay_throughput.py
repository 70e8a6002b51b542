"""Offline engine throughput: `rewards replay` over a generated file of mixed events, on one
core. Prints events per second and writes benchmarks/results/replay_throughput.json.

The engine is the compiled build when `make setup` made one (``handlers.BUILD`` says), and the
same replay runs again on the Python source (REWARDS_PURE_PYTHON=1, a child process) in the same
run: both rates, and whether their outputs are the same bytes.

Whether the rate holds as the state grows is measured twice: the first steady tenth against the
last tenth of the timed replay (one run: the machine's drift over it falls on one tenth or the
other), and the same two tenths fed to two engines side by side, taking turns
(``steadiness_alternated``: the drift falls on both), the median of ``--rounds`` such runs.

The naive reference (benchmarks/naive_replay.py) and the engine replay the file ``--rounds``
times each, taking turns, and their medians are compared (``against_naive``).

    python -m benchmarks.replay_throughput --events 1000000
"""

from __future__ import annotations

import argparse
import filecmp
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import handlers
from handlers.engine import Engine
from handlers.rules import Rules
from schemas.codec import encode_outputs
from schemas.outputs import OutputEvent
from streams.offline.replay import FREEZE_EVERY_EVENTS, WRITE_BATCH_LINES, long_lived_state_gc, replay_files
from streams.devtools.sample_day import write

RESULTS = Path(__file__).parent / "results"
TARGET_EVENTS_PER_S = 200_000  # issue 15


def sample_file(events: int, cache: Path) -> Path:
    """The generated input, made once per size (the generator is seeded: same bytes)."""
    clients = max(200, events // 70)
    fills = int(events * 0.92)
    path = cache / f"sample-{events}.jsonl"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        written = write(str(path.with_suffix(".tmp")), clients=clients, fills=fills, days=3)
        path.with_suffix(".tmp").rename(path)
        print(f"generated {written:,} events in {time.perf_counter() - started:.1f} s -> {path}",
              file=sys.stderr)
    return path


def floor_seconds(source: Path, sink: Path) -> float:
    """The parse-and-serialise floor: every line parsed and serialised again by orjson and written
    in batches, as the replay writes; no engine. What any engine over these bytes pays at least."""
    import orjson

    started = time.perf_counter()
    with open(source, "rb", buffering=1 << 20) as lines, open(sink, "wb", buffering=1 << 20) as out:
        batch = []
        for line in lines:
            if line.strip():
                try:
                    batch.append(orjson.dumps(orjson.loads(line)))
                except orjson.JSONDecodeError:  # the generated day's share of bad lines
                    batch.append(line.rstrip(b"\r\n"))
            if len(batch) >= 4096:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        out.write(b"\n".join(batch) + b"\n")
    return time.perf_counter() - started


def decode_seconds(source: Path) -> float:
    """The engine's first stage alone: bytes to a validated, typed input (schemas.codec.decode)."""
    from schemas.codec import decode

    started = time.perf_counter()
    with open(source, "rb", buffering=1 << 20) as lines:
        for line in lines:
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                decode(raw)
    return time.perf_counter() - started


def steadiness(marks: list[tuple[int, float]], events: int, seconds: float) -> dict[str, float]:
    """Events/s over the first steady tenth of the run (the second: the first warms up) and over
    the last tenth, from the replay's marks: whether the rate holds as the state grows."""
    marks = [(0, 0.0), *marks, (events, seconds)]

    def at(share: float) -> tuple[int, float]:
        return min(marks, key=lambda mark: abs(mark[0] - share * events))

    def rate(start: float, end: float) -> float:
        (n0, t0), (n1, t1) = at(start), at(end)
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    first, last = rate(0.1, 0.2), rate(0.9, 1.0)
    return {"first_steady_tenth_events_per_s": round(first), "last_tenth_events_per_s": round(last),
            "last_vs_first": round(last / first, 3) if first else 0.0}


class _Fed:
    """An engine fed a file's events in order, a stretch at a time (the replay's work on each:
    decode, apply, encode the outputs, the collector's freezes; nothing written)."""

    def __init__(self, source: Path) -> None:
        self.engine = Engine(Rules.default())
        self.lines = (raw for raw in (line.rstrip(b"\r\n") for line in open(source, "rb", buffering=1 << 20))
                      if raw.strip())
        self.done = 0

    def feed(self, count: int) -> None:
        batch: list[OutputEvent] = []
        for raw in islice(self.lines, count):
            self.done += 1
            batch += self.engine.process(raw, {"line": self.done})
            if not self.done % FREEZE_EVERY_EVENTS:
                gc.freeze()
            if len(batch) >= WRITE_BATCH_LINES:
                encode_outputs(batch)
                batch.clear()
        encode_outputs(batch)


def steadiness_alternated(source: Path, events: int, slices: int = 20) -> dict[str, float]:
    """The first steady tenth and the last tenth again, timed side by side so that the machine's
    drift falls on both: one engine brought to 10 % of the file and another to 90 % (untimed),
    then each fed the next tenth in ``slices`` slices, taking turns. The late engine holds the
    state of nine tenths: what it loses is what the state's growth costs."""
    early, late = _Fed(source), _Fed(source)
    tenth = events // 10
    spent = [0.0, 0.0]
    with long_lived_state_gc():
        early.feed(tenth)
        late.feed(9 * tenth)
        for k in range(slices):
            size = tenth // slices if k < slices - 1 else tenth - (slices - 1) * (tenth // slices)
            for fed in (early, late) if k % 2 == 0 else (late, early):
                started = time.perf_counter()
                fed.feed(size)
                spent[0 if fed is early else 1] += time.perf_counter() - started
    first, last = tenth / spent[0], tenth / spent[1]
    return {"first_steady_tenth_events_per_s": round(first), "last_tenth_events_per_s": round(last),
            "last_vs_first": round(last / first, 3), "slices": slices}


def steadiness_repeated(source: Path, events: int, rounds: int) -> dict[str, Any]:
    """``steadiness_alternated`` ``rounds`` times; the median round's figures, and every round's
    ratio (one pair of tenths moved by 0.82 to 0.94 between runs on the same build)."""
    runs = sorted((steadiness_alternated(source, events) for _ in range(rounds)), key=lambda run: run["last_vs_first"])
    return {**runs[len(runs) // 2], "rounds": [run["last_vs_first"] for run in runs]}


def against_naive(source: Path, folder: Path, first_seconds: float, rounds: int) -> dict[str, Any]:
    """The engine against the naive reference (benchmarks/naive_replay.py) as the medians of
    ``rounds`` replays of each, taking turns: the engine's timed replay above, the naive one, the
    engine again, ... The machine's drift over a run falls on both (one run gave the naive replay,
    timed after the engine's, 2.81x when the machine had slowed by a third in between)."""
    from benchmarks.naive_replay import replay_file as naive_replay

    engine_s, naive_s, events = [first_seconds], [], 0
    for k in range(rounds):
        events, seconds = naive_replay(source, folder / "naive.jsonl")
        naive_s.append(seconds)
        if k < rounds - 1:
            engine_s.append(replay_files(source, folder / "again.jsonl", Rules.default(), show_progress=False).seconds)
    for leftover in ("naive.jsonl", "again.jsonl"):
        (folder / leftover).unlink(missing_ok=True)
    engine_rate, naive_rate = events / statistics.median(engine_s), events / statistics.median(naive_s)
    return {"engine_events_per_s": round(engine_rate), "naive_events_per_s": round(naive_rate),
            "engine_vs_naive": round(engine_rate / naive_rate, 2),
            "engine_rounds_events_per_s": [round(events / s) for s in engine_s],
            "naive_rounds_events_per_s": [round(events / s) for s in naive_s]}


def pure_python_replay(source: Path, sink: Path) -> dict[str, float]:
    """The same replay on the Python source, in a child process (the engine is chosen at import)."""
    env = {**os.environ, "REWARDS_PURE_PYTHON": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.replay_throughput", "--engine-only", str(source), str(sink)],
                          env=env, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--cache", default=".cache/bench")
    parser.add_argument("--keep", help="keep the input and output files in this folder")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternated rounds of the engine and the naive reference, and repetitions of the "
                             "side-by-side tenths; their medians are the figures")
    parser.add_argument("--engine-only", nargs=2, metavar=("INPUT", "OUTPUT"),
                        help="only replay INPUT into OUTPUT and print events and seconds as JSON")
    args = parser.parse_args(argv)
    if args.engine_only:
        only = replay_files(Path(args.engine_only[0]), Path(args.engine_only[1]), Rules.default(), show_progress=False)
        print(json.dumps({"events": only.events_in, "seconds": only.seconds, "engine": handlers.BUILD}))
        return 0

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the issue asks
    folder = Path(args.keep or args.cache)
    source = sample_file(args.events, Path(args.cache))
    output = folder / "outputs.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    summary = replay_files(source, output, Rules.default(), show_progress=True)
    print(summary.render())
    rate = summary.events_in / summary.seconds
    steady = steadiness(summary.marks, summary.events_in, summary.seconds)
    print(f"as the state grows, in the run: {steady}", file=sys.stderr)
    alternated = steadiness_repeated(source, summary.events_in, args.rounds)
    print(f"as the state grows, the two tenths alternated: {alternated}", file=sys.stderr)
    # the same replay on the Python source, in the same run
    pure = pure_python_replay(source, folder / "pure.jsonl")
    pure_rate = pure["events"] / pure["seconds"]
    identical = filecmp.cmp(output, folder / "pure.jsonl", shallow=False)
    (folder / "pure.jsonl").unlink()
    print(f"engine: {handlers.BUILD}, {rate:,.0f} events/s; the Python source ({pure['engine']}): "
          f"{pure_rate:,.0f} events/s; outputs {'identical' if identical else 'DIFFERENT'}", file=sys.stderr)
    # the same input again, stage by stage, in the same run (the figures compare within a run)
    per_event = 1e6 / summary.events_in
    floor_s = floor_seconds(source, folder / "floor.jsonl")
    (folder / "floor.jsonl").unlink()
    decode_s = decode_seconds(source)
    stages = {"floor_parse_and_serialise": round(floor_s * per_event, 2),
              "decode_and_validate": round(decode_s * per_event, 2),
              "engine_after_decoding": round((summary.seconds - decode_s) * per_event, 2),
              "replay_total": round(summary.seconds * per_event, 2)}
    print(f"us per event: {stages}", file=sys.stderr)
    # the naive reference (benchmarks/naive_replay.py) on the same input, alternated with the engine
    naive = against_naive(source, folder, summary.seconds, args.rounds)
    naive_rate = naive["naive_events_per_s"]
    print(f"naive reference: {naive_rate:,} events/s; the engine {naive['engine_vs_naive']:.2f}x of it, medians of "
          f"{args.rounds} alternated rounds: {naive}", file=sys.stderr)
    result = {
        "benchmark": "replay_throughput",
        "events": summary.events_in,
        "outputs": sum(summary.outputs.values()),
        "seconds": round(summary.seconds, 2),
        "events_per_s": round(rate),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "engine": handlers.BUILD,
        "pure_python_events_per_s": round(pure_rate),
        "engine_vs_pure_python": round(rate / pure_rate, 2),
        "outputs_identical_to_pure_python": identical,
        "as_state_grows": steady,
        "as_state_grows_alternated": alternated,
        "us_per_event": stages,
        "naive_reference_events_per_s": naive_rate,
        "engine_vs_naive": naive["engine_vs_naive"],
        "against_naive_rounds": naive,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(result))
    if not identical:
        print("the compiled and the pure-Python outputs differ: a defect", file=sys.stderr)
        return 1
    if args.keep:  # the demo: its files are kept, and it records no benchmark result
        print(f"inputs: {source}\noutputs: {output}")
    else:
        RESULTS.mkdir(exist_ok=True)
        name = "replay_throughput" if args.events == 1_000_000 else f"replay_throughput_{args.events}"
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        output.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
