"""Prerequisites: which earlier event an input needs before it can be applied.

Source systems publish independently, so a client's deposit may reach the engine before the
``account.opened`` it pays into, or a bust before the fill it cancels. Such an input is *parked*
(``handlers.engine``): it waits in its client's history, with every newer event of that client
queued behind it in ``ts`` order, and is applied as soon as what it needs has been applied. The
outputs are then those of the events taken in ``ts`` order. An input still waiting once the
partition's event time has moved ``[parking] window_seconds`` past it is applied as it stands,
which gives it its usual refusal (``unknown_client``, ``unknown_account``, ``unknown_fill``, or a
program's own answer such as ``bonus.rejected``). Event time, never the wall clock: every
replay decides the same.

Source clocks differ: a client's deposit may be stamped a second before the CRM stamps the
registration. So when the oldest parked input waits for something that a newer parked input
brings (the registration, the account's opening, the fill), that one is applied first.
"""

from __future__ import annotations

from typing import Final

from handlers.history import ClientHistory
from handlers.clientstate import ClientState
from schemas.inputs import (
    AccountOpened,
    AccountValidated,
    ClientEvent,
    ClientRegistered,
    Deposit,
    TradeBust,
    TradeFill,
    WalletAllocate,
    WelcomeClaim,
    WelcomeTransfer,
)

_ACCOUNT_EVENTS: Final = (TradeFill, Deposit, WalletAllocate, WelcomeClaim, AccountValidated)
CLIENT: Final = ("client", "")


def missing(client: ClientState | None, history: ClientHistory, event: ClientEvent) -> tuple[str, str] | None:
    """What ``event`` waits for: ("client", ""), ("account", id) or ("fill", id); None when it
    can be applied."""
    if client is None:
        return None if isinstance(event, ClientRegistered) else CLIENT
    if isinstance(event, _ACCOUNT_EVENTS):
        return None if event.account_id in client.accounts else ("account", event.account_id)
    if isinstance(event, WelcomeTransfer):
        for account_id in (event.account_id, event.to_account_id):
            if account_id not in client.accounts:
                return ("account", account_id)
        return None
    if isinstance(event, TradeBust):
        # Never seen at all; a fill that is known but too old gets its answer at once.
        return None if history.fill(event.fill_id) is not None else ("fill", event.fill_id)
    return None


def provides(event: ClientEvent) -> tuple[str, str] | None:
    """What ``event`` brings that another input may wait for."""
    if isinstance(event, ClientRegistered):
        return CLIENT
    if isinstance(event, AccountOpened):
        return ("account", event.account_id)
    if isinstance(event, TradeFill):
        return ("fill", event.fill_id)
    return None
