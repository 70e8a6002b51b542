"""A refusal of a whole input event: it becomes an ``event.rejected`` output."""

from __future__ import annotations

from typing import Literal

from schemas.outputs import RejectionReason


class Refusal:
    """``reason`` "recopy" is the stream worker's: a second copy of an input already applied,
    skipped without a dead letter. Every other reason becomes an ``event.rejected``."""

    def __init__(self, reason: RejectionReason | Literal["recopy"], error: str, repeat: int = 0) -> None:
        self.reason = reason
        self.error = error
        self.repeat = repeat  # a redelivery's: 1 + how many of the id's redeliveries were rejected before it

    def __repr__(self) -> str:
        return f"Refusal({self.reason!r}, {self.error!r}, {self.repeat})"


def unknown_account(client_id: str, account_id: str) -> Refusal:
    return Refusal("unknown_account", f"client {client_id} has no account {account_id!r}")
