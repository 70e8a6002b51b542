"""The worker's internal records: the headers of the sequenced log and the messages between
its agents. Encoded with msgspec; none of this is part of the public event contract."""

from __future__ import annotations

from typing import Final

import msgspec

H_SOURCE: Final = "rw-src"    # "topic:partition:offset" of the input this record copies
H_KIND: Final = "rw-kind"     # KIND_*
KIND_INPUT: Final = b"in"     # a client's input, routed by key
KIND_BROADCAST: Final = b"bc"  # a plan or a day close: one copy in every partition
KIND_VERDICT: Final = b"verdict"  # the identity registry's answer to a welcome claim


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


class IdentityRequest(msgspec.Struct, frozen=True):
    identity_hash: str
    client_id: str
    claim: bytes  # the welcome.claim event, canonical JSON


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


class CloseProgress(msgspec.Struct):
    reported: set[int] = msgspec.field(default_factory=set)
    due: dict[str, list[str]] = msgspec.field(default_factory=dict)
    done: bool = False


encode = msgspec.msgpack.encode
identity_requests = msgspec.msgpack.Decoder(IdentityRequest)
verdicts = msgspec.msgpack.Decoder(Verdict)
commission_reports = msgspec.msgpack.Decoder(CommissionReport)
close_progress = msgspec.msgpack.Decoder(CloseProgress)
