"""``rewards whatif``: two rule sets over the same history, and what the change would have cost.

Each rules file runs over the history in a process of its own (on two cores, both at once), each
with its own state: the same outputs each would give alone in ``rewards replay``. Their outputs
are not written; each engine's are tallied by program (money per day, per account type, per
client and per partner), and the two output lists of every input are compared by id, through
their fingerprints. What comes out is
``report.json`` and a self-contained ``report.html`` (streams.offline.whatif_html).

The history is a file (file order, or ``--order ts``) or, with ``--from-kafka``, the worker's
sequenced log: every input once (the copies of a broadcast input in each partition counted
once, by their source position), merged by ``ts`` as the sequencer records them.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
import tomllib
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ContextManager, Final

from handlers import terms
from handlers.engine import Engine
from handlers.money import fmt
from handlers.rules import Rules
from handlers.state import TermsVersion
from handlers.tally import NO_ACCOUNT, OUTPUT_TYPES, Tally, changed_outputs, fingerprints
from schemas.codec import BadInput, Decoded, decode
from schemas.inputs import ProgramTerms
from schemas.timefmt import parse_ts_us
from streams.offline.replay import PROGRESS_MIN_BYTES, FREEZE_EVERY_EVENTS, Progress, long_lived_state_gc

ZERO: Final = Decimal(0)
CENT: Final = Decimal("0.01")
TOP: Final = 10  # clients and partners listed as most affected

# (key, title, what the amount is): the programs the report compares, in its order
PROGRAMS: Final = (
    ("cashback_accrued", "Cashback accrued", "JM USD credited to Reward Wallets, net of busts"),
    ("cashback_covered", "Coverage applied", "allocated JM USD that paid trading costs, net of busts"),
    ("welcome_granted", "Welcome bonuses granted", "USD"),
    ("bonus_granted", "Deposit bonuses granted", "USD"),
    ("bonus_unlocked", "Deposit bonuses unlocked", "USD that became withdrawable"),
    ("bonus_released", "Convertible bonuses released", "USD paid as cash per lot traded, at day closes"),
    ("rebates_paid", "Rebates paid", "USD paid to clients at day closes"),
    ("commissions_paid", "Commissions paid", "USD paid to partners at day closes"),
    ("overrides_paid", "Overrides paid", "USD paid to master partners on their sub-partners' commissions"),
)
PARTNER_PROGRAMS: Final = frozenset({"commissions_paid", "overrides_paid"})
# what a client was given, for "the clients most affected" (coverage spends cashback already
# counted; an unlocked bonus was counted when granted)
CLIENT_PROGRAMS: Final = frozenset({"cashback_accrued", "welcome_granted", "bonus_granted", "rebates_paid"})


@dataclass
class Comparison:
    """What ``compare`` found: the two tallies, the outputs that differ, where the accounts are."""

    base: Tally = field(default_factory=Tally)
    candidate: Tally = field(default_factory=Tally)
    events_in: int = 0
    blank_lines: int = 0
    changed: int = 0  # outputs of an input present under one rule set only, or different under the other
    changed_by_type: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    account_types: dict[tuple[str, str], str] = field(default_factory=dict)  # (client, account) -> type
    seconds: float = 0.0


def pinned_version(candidate_toml: str, from_ts: str, base: Rules) -> TermsVersion:
    """``--candidate FILE --from TS``: the candidate as a version of the terms in force from TS
    (program terms only: the windows, parking and history limits stay the base's)."""
    try:
        doc = tomllib.loads(candidate_toml)
        from_us = parse_ts_us(from_ts)
        Rules.for_terms(doc, base)
    except tomllib.TOMLDecodeError as exc:
        raise WhatifRefused(f"--candidate is not valid TOML: {exc}") from None
    except ValueError as exc:  # RulesError too
        raise WhatifRefused(f"--candidate with --from {from_ts}: {exc}") from None
    rules = terms.canonical(doc)
    return TermsVersion(version="whatif-candidate", effective_us=from_us, effective=from_ts,
                        digest=terms.digest(rules), rules=rules, cause_id="whatif")


def compare(lines: Iterable[bytes] | Callable[[], ContextManager[tuple[Iterable[bytes], Callable[[], int]]]],
            base: Rules, candidate: Rules, progress: Progress | None = None,
            pinned: TermsVersion | None = None, parallel: bool = True) -> Comparison:
    """Apply every input to both rule sets and compare their outputs input by input. ``lines``:
    the history, or an opener giving it with its position (bytes read) for ``progress``. With
    ``pinned``, the candidate has that version from its effective on, and the history's own
    versions taking effect from then on are left out of its run.

    Each rule set runs in a process of its own where the machine can fork and has two cores (the
    same results as one after the other, in about one replay's time): each reads the history
    itself, keeps its tally, and leaves, per input, a fingerprint of its outputs (per output: a
    hash of its id, a hash of its contents, its type) that the two are compared by."""
    opener = lines if callable(lines) else _listed(lines)
    started = time.perf_counter()
    sides = _run_both(opener, ((base, None), (candidate, pinned)), progress, parallel)
    found = Comparison(seconds=0.0)
    a, b = sides
    found.base, found.candidate = a.tally(), b.tally()
    found.events_in, found.blank_lines = a.events_in, a.blank_lines
    found.account_types = {**a.account_types, **b.account_types}
    _compare_prints(found, a, b)
    found.seconds = time.perf_counter() - started
    if progress is not None:
        progress.finish(found.events_in)
    return found


@dataclass
class Side:
    """One rule set's run over the history: its tally, and its outputs' fingerprints, input by input
    (input i's are ``prints[ends[i - 1]:ends[i]]``). The tally's amounts are kept as their texts
    here: a side is sent to the parent pickled, and on the 1M benchmark file its Decimals took
    0.36 s to pickle and unpickle, their texts 0.20 s, after both sides were done."""

    amounts: dict[tuple[str, str, str, str], str]
    partners: dict[tuple[str, str, str], str]
    outputs: int
    prints: bytes
    ends: array[int]
    account_types: dict[tuple[str, str], str]
    events_in: int
    blank_lines: int

    def tally(self) -> Tally:
        found = Tally()
        found.amounts.update((key, Decimal(amount)) for key, amount in self.amounts.items())
        found.partners.update((key, Decimal(amount)) for key, amount in self.partners.items())
        found.outputs = self.outputs
        return found


@contextmanager
def _iterate(lines: Iterable[bytes]) -> Iterator[tuple[Iterable[bytes], Callable[[], int]]]:
    done = [0]

    def counted() -> Iterator[bytes]:
        for line in lines:
            done[0] += 1
            yield line

    yield counted(), lambda: done[0]


def _listed(lines: Iterable[bytes]) -> Callable[[], ContextManager[tuple[Iterable[bytes], Callable[[], int]]]]:
    return lambda: _iterate(lines)


def _side(opener: Callable[[], ContextManager[tuple[Iterable[bytes], Callable[[], int]]]], rules: Rules,
          pinned: TermsVersion | None, report: Callable[[int, int], None]) -> Side:
    """Every input of the history under ``rules`` (and ``pinned``, see ``compare``)."""
    engine = Engine(rules)
    if pinned is not None:
        engine.shared.terms.append(pinned)
    tally = Tally()
    prints = bytearray()
    ends = array("Q")
    events = blank = 0
    with opener() as (lines, position), long_lived_state_gc():
        for n, line in enumerate(lines, 1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                blank += 1
                continue
            events += 1
            decoded = decode(raw)
            outputs = ([] if pinned is not None and _from_pinned_on(decoded, pinned)
                       else engine.process(raw, {"line": n}, decoded))
            tally.add(outputs)
            prints += fingerprints(outputs)
            ends.append(len(prints))
            if not n % FREEZE_EVERY_EVENTS:
                gc.freeze()
                report(position(), events)
    types = {(client.client_id, account_id): account.account_type
             for client in engine.clients.values() for account_id, account in client.accounts.items()}
    return Side({key: str(amount) for key, amount in tally.amounts.items()},
                {key: str(amount) for key, amount in tally.partners.items()},
                tally.outputs, bytes(prints), ends, types, events, blank)


def _run_both(opener: Callable[[], ContextManager[tuple[Iterable[bytes], Callable[[], int]]]],
              runs: tuple[tuple[Rules, TermsVersion | None], ...], progress: Progress | None,
              parallel: bool) -> list[Side]:
    """The two sides, in two processes where that can be (see ``compare``), else one after the other."""
    if not (parallel and hasattr(os, "fork") and len(os.sched_getaffinity(0)) >= 2):
        def report(where: int, events: int) -> None:
            if progress is not None:
                progress.update(where, events)

        return [_side(opener, rules, pinned, report) for rules, pinned in runs]
    context = multiprocessing.get_context("fork")
    slots = context.RawArray("q", 2 * len(runs))  # each side's (position, events), for the progress line
    workers = []
    for index, (rules, pinned) in enumerate(runs):
        receive, send = context.Pipe(duplex=False)
        worker = context.Process(target=_side_process, args=(send, opener, rules, pinned, slots, index), daemon=True)
        worker.start()
        send.close()
        workers.append((worker, receive))
    try:
        return [_received(worker, receive, slots, progress) for worker, receive in workers]
    finally:
        for worker, _ in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def _side_process(send: Any, opener: Any, rules: Rules, pinned: TermsVersion | None, slots: Any, index: int) -> None:
    """A side in its own process: its result, or its failure, sent back whole."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it: one line, no second traceback

    def report(where: int, events: int) -> None:
        slots[2 * index], slots[2 * index + 1] = where, events

    try:
        send.send(("done", _side(opener, rules, pinned, report)))
    except BaseException as exc:  # noqa: BLE001 - raised again in the parent
        send.send(("failed", exc))
    finally:
        send.close()


def _received(worker: Any, receive: Any, slots: Any, progress: Progress | None) -> Side:
    while not receive.poll(0.5):
        if not worker.is_alive() and not receive.poll(0):
            raise RuntimeError(f"a what-if side stopped (exit status {worker.exitcode}) before it was done")
        if progress is not None:
            progress.update(min(slots[0::2]), min(slots[1::2]))
    outcome, value = receive.recv()
    if outcome == "failed":
        raise value
    side: Side = value
    return side


def _compare_prints(found: Comparison, a: Side, b: Side) -> None:
    """Input by input, the outputs that changed (by id: under one rule set only, or with other
    contents), by type: handlers.tally.changed_outputs, compiled (as Python, a loop over every
    input here took a tenth of a replay's time, after both sides were done)."""
    for code, count in enumerate(changed_outputs(a.prints, a.ends, b.prints, b.ends)):
        if count:
            found.changed += count
            found.changed_by_type[OUTPUT_TYPES[code]] += count


def _from_pinned_on(decoded: Decoded | BadInput, pinned: TermsVersion) -> bool:
    """A version of the history's that would take effect at or after the pinned one."""
    return (not isinstance(decoded, BadInput) and isinstance(decoded.event, ProgramTerms)
            and parse_ts_us(decoded.event.effective) >= pinned.effective_us)


# -- the report ------------------------------------------------------------------------------------
def _pct(base: Decimal, candidate: Decimal) -> str | None:
    if base == 0:
        return None
    return format(((candidate - base) * 100 / base).quantize(CENT), "f")


def _row(base: Decimal, candidate: Decimal, **key: str) -> dict[str, Any]:
    return {**key, "base": fmt(base), "candidate": fmt(candidate), "difference": fmt(candidate - base),
            "difference_pct": _pct(base, candidate)}


def _by_program(tally: Tally) -> dict[str, list[tuple[tuple[str, str, str, str], Decimal]]]:
    """A tally's amounts, program by program (a partner's keyed as (program, day, partner, "-")),
    each in the tally's order: read once, not once for every total the report makes of them."""
    found: defaultdict[str, list[tuple[tuple[str, str, str, str], Decimal]]] = defaultdict(list)
    for key, amount in tally.amounts.items():
        found[key[0]].append((key, amount))
    for (program, day, partner), amount in tally.partners.items():
        found[program].append(((program, day, partner, NO_ACCOUNT), amount))
    return found


def _sums(entries: list[tuple[tuple[str, str, str, str], Decimal]],
          part: Callable[[tuple[str, str, str, str]], str]) -> dict[str, Decimal]:
    sums: defaultdict[str, Decimal] = defaultdict(Decimal)
    for key, amount in entries:
        sums[part(key)] += amount
    return sums


def report(found: Comparison, about: dict[str, Any]) -> dict[str, Any]:
    """The report's content (``report.json``): money as decimal strings, percentages to 0.01."""
    types = found.account_types

    def account_type(key: tuple[str, str, str, str]) -> str:
        return "partner" if key[0] in PARTNER_PROGRAMS else types.get((key[2], key[3]), NO_ACCOUNT)

    programs = []
    days: set[str] = set()
    sides = [_by_program(t) for t in (found.base, found.candidate)]
    for program, title, unit in PROGRAMS:
        per_day = [_sums(side.get(program, []), lambda k: k[1]) for side in sides]
        per_type = [_sums(side.get(program, []), account_type) for side in sides]
        days |= set(per_day[0]) | set(per_day[1])
        base, candidate = sum(per_day[0].values(), ZERO), sum(per_day[1].values(), ZERO)
        programs.append({
            "program": program, "title": title, "unit": unit, **_row(base, candidate),
            "by_day": [_row(per_day[0].get(d, ZERO), per_day[1].get(d, ZERO), day=d)
                       for d in sorted(set(per_day[0]) | set(per_day[1]))],
            "by_account_type": [_row(per_type[0].get(t, ZERO), per_type[1].get(t, ZERO), account_type=t)
                                for t in sorted(set(per_type[0]) | set(per_type[1]))],
        })
    clients = [_payee_totals({k: v for k, v in t.amounts.items() if k[0] in CLIENT_PROGRAMS}, lambda k: k[2])
               for t in (found.base, found.candidate)]
    partners = [_payee_totals(t.partners, lambda k: k[2]) for t in (found.base, found.candidate)]
    return {
        **about,
        "events": found.events_in,
        "blank_lines": found.blank_lines,
        "days": sorted(days),
        "programs": programs,
        "clients_most_affected": _most_affected(clients, "client_id"),
        "partners_most_affected": _most_affected(partners, "partner_id"),
        "outputs": {"base": found.base.outputs, "candidate": found.candidate.outputs, "changed": found.changed,
                    "changed_by_type": dict(sorted(found.changed_by_type.items()))},
    }


def _payee_totals(amounts: dict[Any, Decimal], payee: Callable[[Any], str]) -> dict[str, Decimal]:
    """What each client (everything it was credited or paid) or partner (its commissions) got."""
    totals: defaultdict[str, Decimal] = defaultdict(Decimal)
    for key, amount in amounts.items():
        totals[payee(key)] += amount
    return totals


def _most_affected(both: list[dict[str, Decimal]], name: str) -> list[dict[str, Any]]:
    base, candidate = both
    moved = [(abs(candidate.get(k, ZERO) - base.get(k, ZERO)), k) for k in set(base) | set(candidate)]
    moved = [(by, k) for by, k in moved if by]
    moved.sort(key=lambda item: (-item[0], item[1]))
    return [_row(base.get(k, ZERO), candidate.get(k, ZERO), **{name: k}) for _, k in moved[:TOP]]


# -- from a file ----------------------------------------------------------------------------------
class WhatifRefused(Exception):
    """The what-if cannot run as asked (its input, its report folder)."""


def _in_ts_order(path: Path) -> list[bytes]:
    from streams.bus import ts_order
    from streams.settings import Settings

    with open(path, "rb") as source:
        lines = [line.rstrip(b"\r\n") for line in source]
    kept = [raw for raw in lines if raw.strip()]
    return [kept[i] for i in ts_order(kept, Settings())]


@contextmanager
def _read(path: Path) -> Iterator[tuple[Iterable[bytes], Callable[[], int]]]:
    """The file's lines, with the bytes read so far."""
    with open(path, "rb", buffering=1 << 20) as source:
        yield source, source.tell


def whatif_file(input_path: Path, base: Rules, candidate: Rules, show_progress: bool = True,
                order: str = "file", pinned: TermsVersion | None = None) -> Comparison:
    if not input_path.is_file():
        raise WhatifRefused(f"--input {input_path} is not a file")
    size = os.path.getsize(input_path)
    big = size >= PROGRESS_MIN_BYTES
    if order == "file":
        return compare(lambda: _read(input_path), base, candidate, Progress(size) if show_progress and big else None,
                       pinned)
    history = _in_ts_order(input_path)
    return compare(history, base, candidate, Progress(len(history)) if show_progress and big else None,
                   pinned=pinned)


def write_report(found: Comparison, about: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``folder``/report.json and ``folder``/report.html (made if missing); the report's content."""
    import orjson

    from streams.offline.whatif_html import render

    if folder.exists() and not folder.is_dir():
        raise WhatifRefused(f"--report {folder} is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    content = report(found, about)
    (folder / "report.json").write_bytes(orjson.dumps(content, option=orjson.OPT_INDENT_2) + b"\n")
    (folder / "report.html").write_text(render(content), "utf-8")
    return content


# -- from Kafka -----------------------------------------------------------------------------------
async def sequenced_history(settings: Any) -> list[bytes]:
    """Every input of the worker's sequenced log once, by ``ts`` as the sequencer records them
    (streams.bus.ts_order): each partition read from its start to its end with a reader of its
    own (no group: the worker's offsets are neither used nor moved); a broadcast input, copied
    into every partition, is kept once by its source position. Held in memory until the run."""
    from aiokafka import TopicPartition

    from streams import connect
    from streams.bus import ts_order
    from streams.worker import wire
    from streams.worker.kafkaio import read_to_end, reader

    kinds = {wire.KIND_INPUT, wire.KIND_BROADCAST}
    seen: set[bytes] = set()
    inputs: list[bytes] = []
    consumer = reader(settings)
    await connect.start(consumer)
    try:
        partitions = [TopicPartition(settings.sequenced_topic, p) for p in range(settings.partitions)]
        async for _, messages in read_to_end(consumer, partitions):
            for message in messages:
                headers = dict(message.headers or ())
                source = headers.get(wire.H_SOURCE)
                if headers.get(wire.H_KIND) not in kinds or source is None or source in seen:
                    continue
                seen.add(source)
                inputs.append(message.value or b"")
    finally:
        await consumer.stop()
    return [inputs[i] for i in ts_order(inputs, settings)]
