"""``rewards replay``: the engine behind a file reader, in file order, in process."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, Final, TextIO

import handlers
from handlers.engine import Engine
from handlers.rules import Rules
from schemas.codec import encode_outputs
from schemas.outputs import EventRejected, OutputEvent

WRITE_BATCH_LINES: Final = 4096
PROGRESS_MIN_BYTES: Final = 4 * 1024 * 1024   # smaller files finish before a bar helps
PROGRESS_EVERY_S: Final = 0.5


@dataclass
class Summary:
    events_in: int = 0
    blank_lines: int = 0
    outputs: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    # (events in, seconds since the start) at each batch written: the rate along the run
    marks: list[tuple[int, float]] = field(default_factory=list)
    # inputs still waiting for a prerequisite when the file ended: (event id, what it waits for, which)
    waiting: list[tuple[str, str, str]] = field(default_factory=list)
    settled: int = 0  # with --settle-at-end: parked inputs applied as they stood

    def render(self) -> str:
        rate = self.events_in / self.seconds if self.seconds else 0.0
        lines = [f"events in: {self.events_in:,} in {self.seconds:.1f} s ({rate:,.0f} events/s)",
                 f"engine: {handlers.BUILD}"]
        if self.blank_lines:
            lines.append(f"blank lines skipped: {self.blank_lines:,}")
        lines.append(f"outputs: {sum(self.outputs.values()):,}")
        lines += [f"  {name:<28}{count:>12,}" for name, count in sorted(self.outputs.items())]
        lines.append(f"rejections: {sum(self.rejections.values()):,}")
        lines += [f"  {name:<28}{count:>12,}" for name, count in sorted(self.rejections.items())]
        if self.settled:
            lines.append(f"applied as they stood at the end (--settle-at-end): {self.settled:,} inputs that were "
                         "still waiting for a prerequisite")
        if self.waiting:
            kinds = Counter(kind for _, kind, _ in self.waiting)
            lines.append(f"still waiting for a prerequisite at the end: {len(self.waiting):,} inputs, no outputs yet "
                         "(--settle-at-end applies them as they stand, as the parking window would)")
            lines += [f"  {WAITS_FOR[kind]:<28}{count:>12,}" for kind, count in sorted(kinds.items())]
            lines += [f"  {event_id}: {WAITS_FOR_ONE[kind].format(which)}" for event_id, kind, which in self.waiting[:WAITING_SHOWN]]
            if len(self.waiting) > WAITING_SHOWN:
                lines.append(f"  ... and {len(self.waiting) - WAITING_SHOWN:,} more")
        return "\n".join(lines)


WAITING_SHOWN: Final = 10
WAITS_FOR: Final = {"client": "its client's registration", "account": "an account's opening",
                    "fill": "the fill it busts", "behind": "an earlier input waiting"}
WAITS_FOR_ONE: Final = {"client": "waits for its client's registration{}", "account": "waits for account {}'s opening",
                        "fill": "waits for fill {}", "behind": "waits behind {}, of its client"}


FREEZE_EVERY_EVENTS: Final = 1 << 16


@contextmanager
def long_lived_state_gc() -> Iterator[None]:
    """The engine's state lives for the whole run and holds no reference cycles worth
    hunting: collect rarely, and every FREEZE_EVERY_EVENTS move what survived out of the
    collector's sight (``gc.freeze``), or full collections rescan the growing state again and
    again (a quarter of a 1M-event run). Reference counting still frees ordinary garbage."""
    before = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def replay(source: BinaryIO, sink: BinaryIO, rules: Rules, progress: Progress | None = None,
           settle_at_end: bool = False) -> Summary:
    with long_lived_state_gc():
        return _replay(enumerate(source, 1), sink, rules, progress, source.tell, settle_at_end)


def replay_in_ts_order(source: BinaryIO, sink: BinaryIO, rules: Rules, settle_at_end: bool = False) -> Summary:
    """The file's events sorted as the sequencer would record them (streams.bus.in_ts_order);
    a rejection's ``source`` still names the line of the file."""
    from streams.bus import ts_order
    from streams.settings import Settings

    lines = [line.rstrip(b"\r\n") for line in source]
    numbered = [(n, raw) for n, raw in enumerate(lines, 1) if raw.strip()]
    order = ts_order([raw for _, raw in numbered], Settings())
    with long_lived_state_gc():
        summary = _replay((numbered[i] for i in order), sink, rules, None, lambda: 0, settle_at_end)
    summary.blank_lines = len(lines) - len(numbered)
    return summary


def _replay(numbered: Iterable[tuple[int, bytes]], sink: BinaryIO, rules: Rules, progress: Progress | None,
            position: Callable[[], int], settle_at_end: bool = False) -> Summary:
    engine = Engine(rules)
    summary = Summary()
    started = time.perf_counter()
    batch: list[OutputEvent] = []  # encoded together when written: one call for thousands of lines
    for line_number, line in numbered:
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            summary.blank_lines += 1
            continue
        summary.events_in += 1
        batch += engine.process(raw, {"line": line_number})
        if not line_number % FREEZE_EVERY_EVENTS:
            gc.freeze()
        if len(batch) >= WRITE_BATCH_LINES:
            _count(batch, summary)
            sink.write(encode_outputs(batch))
            batch.clear()
            summary.marks.append((summary.events_in, time.perf_counter() - started))
            if progress is not None:
                progress.update(position(), summary.events_in)
    if settle_at_end:
        summary.settled = engine.shared.parked_events
        batch += engine.settle()
    else:
        summary.waiting = engine.waiting()
    if batch:
        _count(batch, summary)
        sink.write(encode_outputs(batch))
    summary.seconds = time.perf_counter() - started
    if progress is not None:
        progress.finish(summary.events_in)
    return summary


_TYPE: Final = attrgetter("type")
REJECTED: Final = "event.rejected"


def _count(batch: list[OutputEvent], summary: Summary) -> None:
    """The batch's outputs by type, and its rejections by reason (counted in C: a Python loop over
    every output cost more than a microsecond an event)."""
    before = summary.outputs[REJECTED]
    summary.outputs.update(map(_TYPE, batch))
    if summary.outputs[REJECTED] != before:
        summary.rejections.update(o.reason for o in batch if isinstance(o, EventRejected))


class Progress:
    """A progress bar on stderr, by bytes read. Wall-clock time here only paces the display."""

    def __init__(self, total_bytes: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self.started = self.last = time.monotonic()

    def update(self, position: int, events: int) -> None:
        now = time.monotonic()
        if now - self.last < (PROGRESS_EVERY_S if self.tty else 10 * PROGRESS_EVERY_S):
            return
        self.last = now
        share = min(position / self.total, 1.0)
        rate = events / max(now - self.started, 1e-9)
        bar = "#" * int(share * 30)
        text = f"[{bar:<30}] {share:6.1%}  {events:>12,} events  {rate:>10,.0f} events/s"
        self.stream.write(("\r" + text) if self.tty else (text + "\n"))
        self.stream.flush()

    def finish(self, events: int) -> None:
        self.last = 0.0
        self.update(self.total, events)
        if self.tty:
            self.stream.write("\n")


class ReplayRefused(Exception):
    """The replay would destroy something (its input) or cannot write where it was told."""


def replay_files(input_path: Path, output_path: Path, rules: Rules, show_progress: bool = True,
                 order: str = "file", settle_at_end: bool = False) -> Summary:
    """Replay a file into another. The output is written beside its final name and renamed
    into place when the replay is done: an interrupted or failed run leaves no half file, and
    an existing output stays as it was until a whole new one replaces it."""
    if output_path.is_dir():
        raise ReplayRefused(f"--output {output_path} is a folder; give a file name")
    if not output_path.parent.is_dir():
        raise ReplayRefused(f"--output {output_path}: the folder {output_path.parent} does not exist")
    if output_path.exists() and input_path.exists() and os.path.samefile(input_path, output_path):
        raise ReplayRefused(f"--output {output_path} is the input file; replaying would overwrite the events it reads")
    size = os.path.getsize(input_path)
    progress = Progress(size) if show_progress and size >= PROGRESS_MIN_BYTES else None
    partial = output_path.with_name(f".{output_path.name}.partial-{os.getpid()}")
    try:
        with open(input_path, "rb", buffering=1 << 20) as source, open(partial, "wb", buffering=1 << 20) as sink:
            if order == "ts":
                summary = replay_in_ts_order(source, sink, rules, settle_at_end)
            else:
                summary = replay(source, sink, rules, progress, settle_at_end)
        os.replace(partial, output_path)
        return summary
    finally:
        partial.unlink(missing_ok=True)
