"""What a ledger partition sends, collected in its ``Outbox``, and the engine's ports that write into it
(``IdentityPort``: a welcome claim to the identity registry; ``CommissionBook``: a day's commissions
to the commission book). Touch it to change where those messages go; what is decided is handlers/'s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal

from handlers.clientstate import ClientState
from handlers.step import Step
from schemas.codec import canonical_bytes, encode_output
from schemas.inputs import DayClosed, WelcomeClaim
from schemas.outputs import CommissionPayout, EventRejected, OutputEvent
from streams.worker import wire
from streams.worker.partitioning import partition_for
from streams.worker.wire import Send


@dataclass
class Topics:
    ledger: str
    deadletter: str
    identity: str
    commissions: str
    sequenced: str


@dataclass
class Outbox:
    """What the records a partition took since its last turn send, and what they did (for metrics)."""

    sends: list[Send] = field(default_factory=list)
    outputs: list[OutputEvent] = field(default_factory=list)  # also in sends; for metrics and tests
    skipped: int = 0  # records whose effects the state already had
    applied: Counter[str] = field(default_factory=Counter)  # input events applied, by type
    event_ts: list[int] = field(default_factory=list)  # their ts, in µs
    parked: int = 0    # inputs that had to wait for a prerequisite (handlers.parking)
    expired: int = 0   # parked inputs applied as they stood after the parking window
    appended: list[float] = field(default_factory=list)  # when the records taken were appended to the log, s
    changed: dict[str, int] = field(default_factory=dict)  # clients written, with their versions (the read model's)

    def take(self) -> Outbox:
        """Everything in it, which it no longer holds."""
        taken = replace(self)
        vars(self).update(vars(Outbox()))
        return taken


def output_send(output: OutputEvent, topics: Topics) -> Send:
    """Where an output goes: a rejection to the dead-letter topic, keyed by its client; the
    rest to the ledger topic, keyed by its client or partner."""
    if isinstance(output, EventRejected):
        topic, key = topics.deadletter, output.client_id
    elif isinstance(output, CommissionPayout):
        topic, key = topics.ledger, output.partner_id
    else:
        topic, key = topics.ledger, getattr(output, "client_id", None)
    return Send(topic, key.encode() if key else None, encode_output(output))


class DeferredIdentities:
    """The worker's IdentityPort: the claim waits on the client; the registry's partition is
    asked with a message, and its verdict comes back through the client's sequenced log (a
    replay reads the verdicts already recorded there, and asks nothing)."""

    def __init__(self, outbox: Outbox, topic: str, replay: bool) -> None:
        self.outbox, self.topic, self.replay = outbox, topic, replay

    def claim(self, client: ClientState, event: WelcomeClaim, step: Step) -> None:
        assert client.identity_hash is not None
        client.pending_claims.append(event.id)
        if not self.replay:
            request = wire.IdentityRequest(client.identity_hash, client.client_id, canonical_bytes(event))
            self.outbox.sends.append(Send(self.topic, client.identity_hash.encode(), wire.encode(request)))


class RemoteCommissions:
    """The worker's CommissionBook: a partition's share of a day's commissions goes, per
    partner, to the commission book partition that partner's key lands in; every one hears
    from every ledger partition (streams.worker.commissions)."""

    def __init__(self, outbox: Outbox, topic: str, partition: int, partitions: int) -> None:
        self.outbox, self.topic, self.partition, self.partitions = outbox, topic, partition, partitions

    def close(self, event: DayClosed, step: Step, due: dict[str, Decimal], overrides: dict[str, Decimal]) -> None:
        shares: list[dict[str, str]] = [{} for _ in range(self.partitions)]
        override_shares: list[dict[str, str]] = [{} for _ in range(self.partitions)]
        for partner_id, amount in due.items():
            shares[partition_for(partner_id.encode(), self.partitions)][partner_id] = str(amount)
        for partner_id, amount in overrides.items():
            override_shares[partition_for(partner_id.encode(), self.partitions)][partner_id] = str(amount)
        for target, share in enumerate(shares):
            report = wire.CommissionReport(event.id, event.ts, event.date, self.partition, share,
                                           override_shares[target])
            self.outbox.sends.append(Send(self.topic, event.id.encode(), wire.encode(report), partition=target))
