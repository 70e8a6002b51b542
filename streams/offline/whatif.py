"""``rewards whatif``: two rule sets over the same history, and what the change would have cost.

The history is read once. Each input is decoded once and applied by two engines side by side
(``Engine.process`` of an input decoded once), one per rules file, each with its own state: the same
outputs each would give alone in ``rewards replay``. Their outputs are not written; each
engine's are tallied by program (money per day, per account type, per client and per partner),
and the two output lists of every input are compared by id. What comes out is
``report.json`` and a self-contained ``report.html`` (streams.offline.whatif_html).

The history is a file (file order, or ``--order ts``) or, with ``--from-kafka``, the worker's
sequenced log: every input once (the copies of a broadcast input in each partition counted
once, by their source position), merged by ``ts`` as the sequencer records them.
"""

from __future__ import annotations

import gc
import os
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from handlers import terms
from handlers.engine import Engine
from handlers.money import fmt
from handlers.rules import Rules
from handlers.state import TermsVersion
from schemas.codec import BadInput, Decoded, decode
from schemas.inputs import ProgramTerms
from schemas.outputs import OutputEvent
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
NO_ACCOUNT: Final = "-"  # payouts are per client or partner, not per account
# what a client was given, for "the clients most affected" (coverage spends cashback already
# counted; an unlocked bonus was counted when granted)
CLIENT_PROGRAMS: Final = frozenset({"cashback_accrued", "welcome_granted", "bonus_granted", "rebates_paid"})


class Tally:
    """One rule set's money by program. Amounts are keyed by (program, day, client, account);
    the totals per day, account type, client and partner are made from them at the end."""

    def __init__(self) -> None:
        self.amounts: defaultdict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        self.partners: defaultdict[tuple[str, str, str], Decimal] = defaultdict(Decimal)  # (program, day, partner)
        self.outputs = 0
        self._by_type: dict[str, Callable[[Any], None]] = {
            "cashback.accrued": self._cashback, "coverage.applied": self._coverage,
            "welcome.granted": self._welcome, "bonus.granted": self._bonus_granted,
            "bonus.released": self._bonus_released,
            "bonus.unlocked": self._bonus_unlocked, "rebate.payout": self._rebate_payout,
            "commission.payout": self._commission_payout, "override.payout": self._override_payout,
            "fill.reversed": self._reversed,
        }

    def add(self, outputs: list[OutputEvent]) -> None:
        self.outputs += len(outputs)
        by_type = self._by_type
        for output in outputs:
            handler = by_type.get(output.type)
            if handler is not None:
                handler(output)

    def _cashback(self, o: Any) -> None:
        self.amounts["cashback_accrued", o.ts[:10], o.client_id, o.account_id] += Decimal(o.amount)

    def _coverage(self, o: Any) -> None:
        if o.covered != "0":
            self.amounts["cashback_covered", o.ts[:10], o.client_id, o.account_id] += Decimal(o.covered)

    def _reversed(self, o: Any) -> None:
        day = o.ts[:10]
        if o.cashback != "0":
            self.amounts["cashback_accrued", day, o.client_id, o.account_id] -= Decimal(o.cashback)
        if o.covered != "0":
            self.amounts["cashback_covered", day, o.client_id, o.account_id] -= Decimal(o.covered)

    def _welcome(self, o: Any) -> None:
        self.amounts["welcome_granted", o.ts[:10], o.client_id, o.account_id] += Decimal(o.amount)

    def _bonus_granted(self, o: Any) -> None:
        self.amounts["bonus_granted", o.ts[:10], o.client_id, o.account_id] += Decimal(o.amount)

    def _bonus_unlocked(self, o: Any) -> None:
        self.amounts["bonus_unlocked", o.ts[:10], o.client_id, o.account_id] += Decimal(o.amount)

    def _bonus_released(self, o: Any) -> None:
        self.amounts["bonus_released", o.date, o.client_id, o.account_id] += Decimal(o.amount)

    def _rebate_payout(self, o: Any) -> None:
        self.amounts["rebates_paid", o.date, o.client_id, NO_ACCOUNT] += Decimal(o.amount)

    def _commission_payout(self, o: Any) -> None:
        self.partners["commissions_paid", o.date, o.partner_id] += Decimal(o.amount)

    def _override_payout(self, o: Any) -> None:
        self.partners["overrides_paid", o.date, o.partner_id] += Decimal(o.amount)


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


def compare(lines: Iterable[bytes], base: Rules, candidate: Rules, progress: Progress | None = None,
            position: Callable[[], int] | None = None, pinned: TermsVersion | None = None) -> Comparison:
    """Apply every input to both engines; tally their outputs and compare them input by input.
    ``progress`` is told ``position()`` (bytes read), or the events done when there is none.
    With ``pinned``, the candidate engine has that version from its effective on, and the
    history's own versions taking effect from then on are left out of its run."""
    found = Comparison()
    where = position or (lambda: found.events_in)
    engines = Engine(base), Engine(candidate)
    a, b = engines
    if pinned is not None:
        b.shared.terms.append(pinned)
    started = time.perf_counter()
    with long_lived_state_gc():
        for n, line in enumerate(lines, 1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                found.blank_lines += 1
                continue
            found.events_in += 1
            decoded = decode(raw)
            origin = {"line": n}
            out_a = a.process(raw, origin, decoded)
            out_b = ([] if pinned is not None and _from_pinned_on(decoded, pinned)
                     else b.process(raw, origin, decoded))
            found.base.add(out_a)
            found.candidate.add(out_b)
            if out_a != out_b:
                _count_changes(found, out_a, out_b)
            if not n % FREEZE_EVERY_EVENTS:
                gc.freeze()
                if progress is not None:
                    progress.update(where(), found.events_in)
    found.seconds = time.perf_counter() - started
    if progress is not None:
        progress.finish(found.events_in)
    for engine in engines:
        for client in engine.clients.values():
            for account_id, account in client.accounts.items():
                found.account_types[client.client_id, account_id] = account.account_type
    return found


def _from_pinned_on(decoded: Decoded | BadInput, pinned: TermsVersion) -> bool:
    """A version of the history's that would take effect at or after the pinned one."""
    return (not isinstance(decoded, BadInput) and isinstance(decoded.event, ProgramTerms)
            and parse_ts_us(decoded.event.effective) >= pinned.effective_us)


def _count_changes(found: Comparison, out_a: list[OutputEvent], out_b: list[OutputEvent]) -> None:
    """By id: an output of this input under one rule set only, or with other contents."""
    by_id = {o.id: o for o in out_b}
    for o in out_a:
        other = by_id.pop(o.id, None)
        if other != o:
            found.changed += 1
            found.changed_by_type[o.type] += 1
    for o in by_id.values():
        found.changed += 1
        found.changed_by_type[o.type] += 1


# -- the report ------------------------------------------------------------------------------------
def _pct(base: Decimal, candidate: Decimal) -> str | None:
    if base == 0:
        return None
    return format(((candidate - base) * 100 / base).quantize(CENT), "f")


def _row(base: Decimal, candidate: Decimal, **key: str) -> dict[str, Any]:
    return {**key, "base": fmt(base), "candidate": fmt(candidate), "difference": fmt(candidate - base),
            "difference_pct": _pct(base, candidate)}


def _sums(tally: Tally, program: str, part: Callable[[tuple[str, str, str, str]], str]) -> dict[str, Decimal]:
    sums: defaultdict[str, Decimal] = defaultdict(Decimal)
    if program in PARTNER_PROGRAMS:
        for (kind, day, partner), amount in tally.partners.items():
            if kind == program:
                sums[part((program, day, partner, NO_ACCOUNT))] += amount
        return sums
    for key, amount in tally.amounts.items():
        if key[0] == program:
            sums[part(key)] += amount
    return sums


def report(found: Comparison, about: dict[str, Any]) -> dict[str, Any]:
    """The report's content (``report.json``): money as decimal strings, percentages to 0.01."""
    types = found.account_types

    def account_type(key: tuple[str, str, str, str]) -> str:
        return "partner" if key[0] in PARTNER_PROGRAMS else types.get((key[2], key[3]), NO_ACCOUNT)

    programs = []
    days: set[str] = set()
    for program, title, unit in PROGRAMS:
        per_day = [_sums(t, program, lambda k: k[1]) for t in (found.base, found.candidate)]
        per_type = [_sums(t, program, account_type) for t in (found.base, found.candidate)]
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


def whatif_file(input_path: Path, base: Rules, candidate: Rules, show_progress: bool = True,
                order: str = "file", pinned: TermsVersion | None = None) -> Comparison:
    if not input_path.is_file():
        raise WhatifRefused(f"--input {input_path} is not a file")
    size = os.path.getsize(input_path)
    big = size >= PROGRESS_MIN_BYTES
    progress = Progress(size) if show_progress and big and order == "file" else None
    with open(input_path, "rb", buffering=1 << 20) as source:
        if order == "file":
            return compare(source, base, candidate, progress, source.tell, pinned)
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
