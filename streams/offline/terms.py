"""``rewards terms``: publish a version of the program terms, and list the timeline on the
topic (a replay of the terms topic).

Whether a version joins the timeline depends only on it and the versions before it on the terms
topic (handlers.terms), so the list reads the topic from its start and decides each version as
every partition of the worker does. The wall clock is read here, by a tool, never on the event
path: it stamps a new version's ``ts`` and checks that its ``effective`` leaves the worker time.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from handlers import terms as timeline
from handlers.rules import Rules, RulesError
from handlers.state import TermsVersion
from handlers.verdict import Refusal
from schemas.codec import BadInput, decode
from schemas.inputs import ProgramTerms
from schemas.timefmt import parse_ts_us
from streams.settings import Settings

MIN_NOTICE_S: Final = 3600  # `terms publish`: how far ahead `effective` must be by default


class TermsRefused(Exception):
    """A version `rewards terms publish` will not publish; the message says why and what to do."""


@dataclass
class Entry:
    """One record of the terms topic, as the worker decides it."""

    offset: int
    event_id: str
    version: str
    effective: str
    note: str | None
    accepted: bool
    reason: str = ""
    error: str = ""


def decide(records: list[tuple[int, bytes]], base: Rules, words: dict[str, dict[int, bool]] | None = None,
           tasks: int = 0) -> tuple[list[Entry], list[TermsVersion]]:
    """Each record of the terms topic in its order, accepted or refused as a partition of the
    worker decides it (a record that is no program.terms event is refused too), and the
    timeline that results. ``words``: the sequencer tasks' words on the versions
    (``read_words``), of ``tasks`` tasks: a version that passes its own checks is in time when
    every task has said so, late (``terms_late``) when one said it was, else still waiting
    (neither accepted nor refused yet, so not on the timeline). Without ``words``, in time."""
    accepted: list[TermsVersion] = []
    seen: set[str] = set()
    entries = []
    for offset, raw in records:
        decoded = decode(raw)
        if isinstance(decoded, BadInput) or not isinstance(decoded.event, ProgramTerms):
            reason, error = ((decoded.reason, decoded.error) if isinstance(decoded, BadInput)
                             else ("invalid_field", f"{decoded.event.__struct_config__.tag} on the terms topic"))
            entries.append(Entry(offset, "", "", "", None, False, reason, error))
            continue
        event = decoded.event
        verdict: TermsVersion | Refusal
        if event.id in seen:
            verdict = Refusal("duplicate", f"event {event.id!r} was already applied; no second effect")
        else:
            verdict = timeline.admit(accepted, event, decoded.ts_us, base)
        seen.add(event.id)
        said = None if words is None or isinstance(verdict, Refusal) else words.get(event.id, {})
        if said is not None and any(said.values()):
            verdict = Refusal("terms_late", f"sequencer task(s) {sorted(t for t, late in said.items() if late)} had "
                              "recorded inputs at or past its effective before it: refused on every partition")
        if isinstance(verdict, Refusal):
            entries.append(Entry(offset, event.id, event.version, event.effective, event.note, False,
                                 verdict.reason, verdict.error))
        elif said is not None and len(said) < tasks:
            entries.append(Entry(offset, event.id, event.version, event.effective, event.note, False, "waiting",
                                 f"recorded by {len(said)} of the sequencer's {tasks} tasks so far; its verdict "
                                 "comes when every task has recorded it"))
        else:
            timeline.join(accepted, verdict)
            entries.append(Entry(offset, event.id, event.version, event.effective, event.note, True))
    return entries, accepted


async def _one_partition(settings: Settings, topic: str) -> list[tuple[int, bytes]]:
    """Every committed record of partition 0 of ``topic``, from its start (no consumer group),
    as (offset, value); none where the topic does not exist."""
    from aiokafka import TopicPartition

    from streams import connect
    from streams.ops.topics import partition_counts
    from streams.worker.kafkaio import read_to_end, reader

    if not (await partition_counts(settings, [topic])).get(topic):
        return []
    consumer = reader(settings)
    await connect.start(consumer)
    try:
        return [(message.offset, message.value or b"")
                async for _, messages in read_to_end(consumer, [TopicPartition(topic, 0)]) for message in messages]
    finally:
        await consumer.stop()


async def read_topic(settings: Settings) -> list[tuple[int, bytes]]:
    """Every committed record of the terms topic, from its start."""
    return await _one_partition(settings, settings.topic_programs)


async def read_words(settings: Settings) -> dict[str, dict[int, bool]]:
    """The sequencer tasks' words on the versions they recorded (streams.worker.sequencer): event
    id -> task -> whether it was late; a task's first word counts. Empty where no worker ran."""
    from streams.worker import wire

    words: dict[str, dict[int, bool]] = {}
    for _, value in await _one_partition(settings, settings.terms_acks_topic):
        ack = wire.terms_acks.decode(value)
        words.setdefault(ack.event_id, {}).setdefault(ack.task, ack.late)
    return words


def flat(rules: Rules) -> dict[str, str]:
    """A Rules as "key: value" lines' parts, for a difference a person reads."""
    found: dict[str, str] = {}
    for name in (field.name for field in fields(rules)):
        value: Any = getattr(rules, name)
        if name == "bonus_tiers":
            for percent, tier in sorted(value.items()):
                for field in fields(tier):
                    found[f"bonus_tiers.{percent}.{field.name}"] = _text(getattr(tier, field.name))
            continue
        found[name] = _text(value)
    return found


def _text(value: Any) -> str:
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(value)) + "]"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def changes(before: Rules, after: Rules) -> list[str]:
    """What differs, a line each: ``key: old -> new``."""
    old, new = flat(before), flat(after)
    return [f"{key}: {old.get(key, '-')} -> {new.get(key, '-')}" for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)]


def version_event(path_text: str, version: str, effective: str, note: str | None, now: datetime,
                  base: Rules, min_notice_s: int, grace_ms: int,
                  accepted: list[TermsVersion]) -> tuple[dict[str, Any], Rules, TermsVersion]:
    """The program.terms event for a rules file, checked as the worker will check it against
    the ``accepted`` timeline, with the rules it gives and the version it makes.
    ``min_notice_s`` is how far ahead of ``now`` it must take effect; never less than twice the
    ordering grace and a minute, so that every source has moved past it first."""
    try:
        doc = tomllib.loads(path_text)
    except tomllib.TOMLDecodeError as exc:
        raise TermsRefused(f"the rules file is not valid TOML: {exc}") from None
    try:
        built = Rules.for_terms(doc, base)
    except RulesError as exc:
        raise TermsRefused(f"the rules file cannot be a version of the terms: {exc}") from None
    try:
        effective_us = parse_ts_us(effective)
    except ValueError as exc:
        raise TermsRefused(f"--effective {effective!r}: {exc} (RFC 3339 in UTC, such as "
                           "2027-01-01T00:00:00Z)") from None
    floor_s = max(min_notice_s, 2 * grace_ms // 1000 + 60)
    ahead_s = effective_us / 1e6 - now.timestamp()
    if ahead_s < floor_s:
        raise TermsRefused(f"--effective {effective} is {ahead_s:,.0f} s from now; a version must be published at "
                           f"least {floor_s:,} s ahead (--min-notice, at least twice REWARDS_ORDER_GRACE_MS and a "
                           "minute), so that the worker records it before any input it governs. To study a past "
                           "change: rewards whatif --candidate FILE --from TS")
    ts = now.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    event: dict[str, Any] = {"type": "program.terms", "id": f"program.terms:{version}", "ts": ts,
                             "version": version, "effective": effective, "rules": doc}
    if note:
        event["note"] = note
    decoded = decode(orjson.dumps(event))
    if isinstance(decoded, BadInput) or not isinstance(decoded.event, ProgramTerms):
        raise TermsRefused(f"the version would be refused: {getattr(decoded, 'error', '')}")
    made = timeline.admit(accepted, decoded.event, decoded.ts_us, base)
    if isinstance(made, Refusal):
        raise TermsRefused(f"the worker would refuse it ({made.reason}): {made.error}")
    return event, built, made


async def publish(settings: Settings, event: dict[str, Any]) -> None:
    """One version to the terms topic, keyed by its name, acknowledged by the brokers in sync."""
    from streams import connect

    producer = connect.producer(settings, acks="all")
    await connect.start(producer)
    try:
        await producer.send_and_wait(settings.topic_programs, orjson.dumps(event), key=event["version"].encode())
    finally:
        await producer.stop()


def render(entries: list[Entry], accepted: list[TermsVersion], now_us: int) -> str:
    """The timeline as a table: every record of the topic, and which version is in force now."""
    if not entries:
        return "no versions published: the deployment's rules file is in force"
    in_force = timeline.version_at(accepted, now_us)
    upcoming = [v for v in accepted if v.effective_us > now_us]
    lines = [f"{'version':<24}{'effective':<30}{'':<10}status"]
    for entry in entries:
        mark = ""
        if in_force is not None and entry.accepted and entry.event_id == in_force.cause_id:
            mark = "in force"
        elif upcoming and entry.accepted and entry.event_id == upcoming[0].cause_id:
            mark = "next"
        status = ("accepted" if entry.accepted else f"waiting: {entry.error}" if entry.reason == "waiting"
                  else f"refused {entry.reason}: {entry.error}")
        lines.append(f"{entry.version or '-':<24}{entry.effective or '-':<30}{mark:<10}{status}"
                     + (f"  ({entry.note})" if entry.note else ""))
    if in_force is None:
        lines.append("in force now: the deployment's rules file (no version has taken effect)")
    return "\n".join(lines)


def as_json(entries: list[Entry], accepted: list[TermsVersion], now_us: int) -> bytes:
    in_force = timeline.version_at(accepted, now_us)
    upcoming = [v for v in accepted if v.effective_us > now_us]
    return orjson.dumps({
        "versions": [asdict(entry) for entry in entries],
        "in_force": None if in_force is None else in_force.version,
        "next": None if not upcoming else {"version": upcoming[0].version, "effective": upcoming[0].effective},
    }, option=orjson.OPT_INDENT_2)

