"""The worker's internal records: the headers of the sequenced log and the messages between
its processors, encoded with msgspec. Touch it freely between releases: none of this is part of
the public event contract, but a change is a change of the changelogs' format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

H_SOURCE: Final = "rw-src"    # "topic:partition:offset" of the input this record copies
H_KIND: Final = "rw-kind"     # KIND_*
H_OVERSIZE: Final = "rw-oversize"  # "size:digest" of an input too large to copy; the value holds its first
                                   # schemas.codec.RAW_KEPT_BYTES, what its rejection keeps
KIND_INPUT: Final = b"in"     # a client's input, routed by key
KIND_BROADCAST: Final = b"bc"  # a plan or a day close: one copy in every partition
KIND_VERDICT: Final = b"verdict"  # the identity registry's answer to a welcome claim
KIND_PROGRESS: Final = b"progress"  # a Progress mark: in the sequenced log, then on the identity topic
KIND_TERMS: Final = b"terms"  # the sequencer's verdict on a version of the program terms (TermsVerdict)


@dataclass(slots=True)
class Send:
    """One record to write: to ``partition``, or where Kafka's default partitioner puts ``key``."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


class Source(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    offset: int

    def header(self) -> bytes:
        return f"{self.topic}:{self.partition}:{self.offset}".encode()

    @classmethod
    def parse(cls, header: bytes) -> Source:
        topic, partition, offset = header.decode().rsplit(":", 2)
        return cls(topic, int(partition), int(offset))

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class TermsAck(msgspec.Struct, frozen=True):
    """A sequencer task has recorded a version of the terms (on the terms-acks topic, with its
    copy): whether it had recorded an input at or past the version's effective before it."""

    event_id: str
    task: int
    late: bool


class TermsVerdict(msgspec.Struct, frozen=True):
    """Every task has recorded the version (header KIND_TERMS in the sequenced log, before any
    input at or past its effective): in time on all of them, or late on one."""

    event_id: str
    in_time: bool


class IdentityRequest(msgspec.Struct, frozen=True):
    identity_hash: str
    client_id: str
    claim: bytes  # the welcome.claim event, canonical JSON


PROGRESS_EVERY_S: Final = 0.5  # how often a sequencer task marks its Progress in the sequenced log, at most


class Progress(msgspec.Struct, frozen=True):
    """How far a partition of the sequenced log has got (header KIND_PROGRESS). The sequencer
    task marks it in its sequenced partition after its copies: it has copied its inputs up to
    ``clock_us`` of event time, and whether it had then copied all that its sources had. The
    ledger partition, once it has applied the mark, sends it on to every identity registry
    partition, after its identity requests, with the mark's ``offset``."""

    partition: int
    clock_us: int
    caught_up: bool
    offset: int = -1  # of the mark in the sequenced log (set by the ledger)


class WaitingClaim(msgspec.Struct, frozen=True, array_like=True):
    ts_us: int
    client_id: str
    claim_id: str
    identity_hash: str
    claim: bytes
    offset: int  # of its request on the identity topic


class RegistryState(msgspec.Struct):
    """One identity registry partition's own state (streams.worker.registry)."""

    last: int = -1  # the last identity-topic offset applied
    marks: dict[int, int] = msgspec.field(default_factory=dict)  # ledger partition -> offset of its last mark
    clocks: dict[int, int] = msgspec.field(default_factory=dict)
    caught_up: dict[int, bool] = msgspec.field(default_factory=dict)
    waiting: list[WaitingClaim] = msgspec.field(default_factory=list)


class Verdict(msgspec.Struct, frozen=True):
    client_id: str
    claim: bytes
    identity_free: bool


class CommissionReport(msgspec.Struct, frozen=True):
    """One ledger partition's share of a day close, for the partners of one aggregator partition."""

    close_id: str
    close_ts: str
    date: str
    partition: int
    due: dict[str, str]  # partner id -> decimal string
    overrides: dict[str, str] = msgspec.field(default_factory=dict)  # master partner id -> decimal string


class CloseProgress(msgspec.Struct):
    reported: set[int] = msgspec.field(default_factory=set)
    due: dict[str, list[str]] = msgspec.field(default_factory=dict)
    done: bool = False
    overrides: dict[str, list[str]] = msgspec.field(default_factory=dict)


encode = msgspec.msgpack.encode
identity_requests = msgspec.msgpack.Decoder(IdentityRequest)
progress_reports = msgspec.msgpack.Decoder(Progress)
registry_states = msgspec.msgpack.Decoder(RegistryState)
verdicts = msgspec.msgpack.Decoder(Verdict)
terms_acks = msgspec.msgpack.Decoder(TermsAck)
terms_verdicts = msgspec.msgpack.Decoder(TermsVerdict)
commission_reports = msgspec.msgpack.Decoder(CommissionReport)
close_progress = msgspec.msgpack.Decoder(CloseProgress)
