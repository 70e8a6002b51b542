"""What the programs know about one client: ``ClientState``, with its accounts, Reward Wallet and
bonuses (Decimal money). Its history (ids seen, fills a bust can still reach) is
handlers.history's; what every partition shares, handlers.shared's.

Native classes, compiled (streams.devtools.compile): the rules read and write these fields
several times for every input, and compiled code reaches a native class's fields directly, where
a msgspec Struct's are looked up by name as from Python. Dataclasses, so that msgspec encodes
them as it encoded the Structs they were (a map of every field in order, the same bytes:
tests/unit/test_state_codec pins them) and decodes the worker's changelog into them. It decodes
by the fields' annotations, and mypyc erases generic and union ones from a compiled class
(``dict[str, Account]`` becomes ``dict``): ``DECLARED`` gives them back as written
(``declare``; the same test checks them against the source's). The partition's shared state is
done the same way (handlers.sharedstate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from handlers.money import ZERO
from handlers.state import PayoutLedger


@dataclass
class Account:
    account_id: str
    account_type: str
    currency: str
    conditions: str | None = None
    validated: bool = False
    allocated: Decimal = ZERO          # JM USD allocated here and not yet used for coverage
    qualifying_deposit: bool = False   # an external deposit of at least the transfer minimum
    profit: Decimal = ZERO             # welcome account: sum of realized P&L, USD
    transferred: Decimal = ZERO        # welcome account: profit already transferred, USD


@dataclass
class Wallet:
    """The Reward Wallet, JM USD. Conservation (asserted after every change):
    accrued - reversed == balance + allocated + covered."""

    balance: Decimal = ZERO
    allocated: Decimal = ZERO  # JM USD allocated to accounts and not yet used (their sum)
    accrued: Decimal = ZERO    # lifetime cashback credited
    reversed: Decimal = ZERO   # lifetime cashback taken back by busts
    covered: Decimal = ZERO    # allocated JM USD consumed by coverage, net of bust refunds


@dataclass
class Bonus:
    bonus_id: str
    account_id: str
    deposit_id: str
    percent: int
    amount: Decimal
    required_lots: Decimal
    lots_traded: Decimal = ZERO
    unlocked: bool = False
    release_per_lot: Decimal = ZERO  # a convertible bonus: USD released as cash per lot traded (0: not one)


@dataclass
class ClientState:
    client_id: str
    country: str
    latest_ts_us: int = 0              # the newest event time applied: the windows' reference
    id_document: bool = False
    phone: bool = False
    identity_hash: str | None = None
    accounts: dict[str, Account] = field(default_factory=dict)
    wallet: Wallet = field(default_factory=Wallet)
    welcome_granted: bool = False
    bonus_granted_usd: Decimal = ZERO
    external_deposits: int = 0         # deposits of new money: the first may earn a first-deposit-only tier
    bonuses: list[Bonus] = field(default_factory=list)
    partner_id: str | None = None
    rebates: dict[str, PayoutLedger] = field(default_factory=dict)  # by partner id
    releases: dict[str, PayoutLedger] = field(default_factory=dict)  # convertible bonuses', by bonus id
    pending_claims: list[str] = field(default_factory=list)  # welcome claims awaiting the registry

    @property
    def verified(self) -> bool:
        return self.id_document and self.phone


# Each class's field types as written above, for msgspec's decoding (see the module).
DECLARED: Final[dict[type, dict[str, Any]]] = {
    Account: {"account_id": str, "account_type": str, "currency": str, "conditions": str | None,
              "validated": bool, "allocated": Decimal, "qualifying_deposit": bool, "profit": Decimal,
              "transferred": Decimal},
    Wallet: {"balance": Decimal, "allocated": Decimal, "accrued": Decimal, "reversed": Decimal,
             "covered": Decimal},
    Bonus: {"bonus_id": str, "account_id": str, "deposit_id": str, "percent": int, "amount": Decimal,
            "required_lots": Decimal, "lots_traded": Decimal, "unlocked": bool, "release_per_lot": Decimal},
    ClientState: {"client_id": str, "country": str, "latest_ts_us": int, "id_document": bool, "phone": bool,
                  "identity_hash": str | None, "accounts": dict[str, Account], "wallet": Wallet,
                  "welcome_granted": bool, "bonus_granted_usd": Decimal, "external_deposits": int,
                  "bonuses": list[Bonus], "partner_id": str | None, "rebates": dict[str, PayoutLedger],
                  "releases": dict[str, PayoutLedger], "pending_claims": list[str]},
}


def declare(declared: dict[type, dict[str, Any]]) -> None:
    """Give each class its annotations as written (compiled, mypyc has erased some)."""
    for cls, annotations in declared.items():
        setattr(cls, "__annotations__", dict(annotations))


declare(DECLARED)
