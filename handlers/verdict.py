"""A refusal of a whole input event: it becomes an ``event.rejected`` output."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.outputs import RejectionReason


@dataclass(slots=True, frozen=True)
class Refusal:
    reason: RejectionReason
    error: str


def unknown_account(client_id: str, account_id: str) -> Refusal:
    return Refusal("unknown_account", f"client {client_id} has no account {account_id!r}")
