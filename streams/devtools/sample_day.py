"""A realistic, reproducible broker day (or several): the input events of the demo and the
benchmarks. Seeded: the same arguments always give the same bytes.

Mix: registrations, verifications (some people sign up twice under one identity), live
accounts of every type (cent accounts in USC), welcome accounts, validations, partner plans
and links, deposits with bonus choices (some internal, some below the minimum), allocations,
welcome claims and profit transfers, open/close fills with realistic costs, a few busts,
duplicate and conflicting redeliveries, malformed and unknown messages, and a day close.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

import orjson

COUNTRIES: Final = ("DE", "ES", "IT", "PL", "BR", "MX", "NG", "ZA", "TH", "MY", "ID", "VN", "AE")
SYMBOLS: Final = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "AUDUSD", "USDCAD", "BTCUSD", "US30")
# USD traded per standard lot (a fixed price for each symbol): the fills' `notional_usd`, when asked for
NOTIONAL_PER_LOT: Final = {"EURUSD": 108_000, "GBPUSD": 127_000, "USDJPY": 100_000, "XAUUSD": 200_000,
                           "AUDUSD": 66_000, "USDCAD": 100_000, "BTCUSD": 60_000, "US30": 40_000}
# (account type, weight, currency, USD spread cost per standard lot, USD commission per lot)
ACCOUNT_KINDS: Final = (
    ("standard", 45, "USD", (6, 14), 0),
    ("standard_cent", 20, "USD", (6, 14), 0),
    ("pro", 20, "USD", (3, 7), 0),
    ("raw_spread", 15, "USD", (0, 2), 7),
)
PLANS: Final = {  # commission per lot, highest rebate per lot
    "standard": ("25", 21.5), "standard_cent": ("25", 21.5), "pro": ("12", 10), "raw_spread": ("4", 3),
}


@dataclass
class _Client:
    client_id: str
    accounts: list[tuple[str, str, str]] = field(default_factory=list)  # (id, type, currency)
    welcome: str | None = None
    open_positions: list[tuple[str, str, int, float, int]] = field(default_factory=list)
    verified: bool = False


class SampleDay:
    def __init__(self, clients: int = 3000, fills: int = 200_000, days: int = 1, seed: int = 7,
                 start: date = date(2026, 11, 23), bad_share: float = 0.001, notional: bool = False) -> None:
        self.clients, self.fills, self.days, self.bad_share = clients, fills, days, bad_share
        self.notional = notional  # fills carry `notional_usd` (no draw of the generator: the rest is the same)
        self.rng = random.Random(seed)
        self.t0 = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
        self.start = start
        self._n = 0
        self._recent: list[bytes] = []

    def _ts(self, micros: int) -> str:
        return (self.t0 + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _event(self, kind: str, micros: int, **fields: Any) -> bytes:
        self._n += 1
        raw = orjson.dumps({"type": kind, "id": f"ev-{self._n:09d}", "ts": self._ts(micros), **fields})
        if self.rng.random() < 0.01:
            self._recent = self._recent[-63:] + [raw]
        return raw

    def lines(self) -> Iterator[bytes]:
        """The events, one JSON document each, in event-time order."""
        rng = self.rng
        clients = [_Client(f"c{i:06d}") for i in range(self.clients)]
        partners = [f"p{i:04d}" for i in range(max(3, self.clients // 200))]
        micros = 0
        for partner in partners:
            yield self._event("partner.plan", micros, partner_id=partner,
                              commission_per_lot={k: v[0] for k, v in PLANS.items()},
                              rebate_per_lot={k: f"{rng.uniform(0, v[1]):.2f}" for k, v in PLANS.items()})
        identities = [f"id-{i:06d}" for i in range(self.clients)]
        for client in clients:
            micros += rng.randrange(1_000, 200_000)
            yield from self._onboard(client, partners, identities, micros)
        weights = [rng.paretovariate(1.2) for _ in clients]
        day_us = 86_400_000_000
        fills_per_day = self.fills // self.days
        for day in range(self.days):
            begin = max(micros, day * day_us) + 1_000_000
            span = (day + 1) * day_us - 60_000_000 - begin
            stamps = sorted(rng.randrange(span) + begin for _ in range(fills_per_day))
            chosen = rng.choices(clients, weights, k=fills_per_day)
            for client, stamp in zip(chosen, stamps):
                yield from self._trade(client, stamp)
                yield from self._extras(client, stamp)
            micros = (day + 1) * day_us - 30_000_000
            yield self._event("settlement.day_closed", micros,
                              date=(self.start + timedelta(days=day)).isoformat())

    def _onboard(self, client: _Client, partners: list[str], identities: list[str], micros: int) -> Iterator[bytes]:
        rng, cid = self.rng, client.client_id
        yield self._event("client.registered", micros, client_id=cid, country=rng.choice(COUNTRIES))
        for n in range(1 + (rng.random() < 0.35)):
            kind = rng.choices(ACCOUNT_KINDS, [k[1] for k in ACCOUNT_KINDS])[0]
            currency = "USC" if kind[0] == "standard_cent" else "USD"
            account = (f"{cid}-a{n}", kind[0], currency)
            client.accounts.append(account)
            yield self._event("account.opened", micros + 1 + n, client_id=cid, account_id=account[0],
                              account_type=account[1], currency=currency)
            if rng.random() < 0.85:
                yield self._event("account.validated", micros + 10 + n, client_id=cid, account_id=account[0])
        if rng.random() < 0.4:
            client.welcome = f"{cid}-w"
            yield self._event("account.opened", micros + 20, client_id=cid, account_id=client.welcome,
                              account_type="welcome", currency="USD",
                              conditions=rng.choice(("standard", "standard", "pro")))
        if rng.random() < 0.85:
            client.verified = True
            # Some people sign up twice: the same identity behind two clients.
            identity = rng.choice(identities) if rng.random() < 0.03 else identities[int(cid[1:])]
            yield self._event("client.verified", micros + 30, client_id=cid, id_document=True,
                              phone=rng.random() < 0.95, identity_hash=identity)
        if rng.random() < 0.3:
            yield self._event("partner.linked", micros + 40, client_id=cid, partner_id=rng.choice(partners))
        if client.welcome and rng.random() < 0.8:
            yield self._event("welcome.claim", micros + 50, client_id=cid, account_id=client.welcome)
        for n in range(rng.choice((0, 1, 1, 1, 2, 3))):
            yield self._deposit(client, micros + 60 + n, n)

    def _deposit(self, client: _Client, micros: int, n: int) -> bytes:
        rng = self.rng
        account_id, account_type, currency = rng.choice(client.accounts)
        usd = round(rng.lognormvariate(5.5, 1.0), 2)
        amount = usd * 100 if currency == "USC" else usd
        bonus = rng.choice((None, None, 50, 100, 120))
        return self._event("deposit", micros, client_id=client.client_id, account_id=account_id,
                           deposit_id=f"{client.client_id}-d{micros}-{n}", amount=f"{amount:.2f}",
                           source="internal" if rng.random() < 0.1 else "external",
                           bonus_percent=bonus)

    def _trade(self, client: _Client, micros: int) -> Iterator[bytes]:
        rng = self.rng
        if client.open_positions and (rng.random() < 0.5 or len(client.open_positions) > 4):
            account_id, symbol, opened, lots, cents = client.open_positions.pop(rng.randrange(len(client.open_positions)))
            action, extra = "close", {"realized_pnl": f"{rng.gauss(0, 40) * lots * (100 if cents else 1):.2f}",
                                      "opened_at": self._ts(opened)}
        else:
            pool = client.accounts + ([(client.welcome, "welcome", "USD")] if client.welcome else [])
            account_id, account_type, currency = rng.choice(pool)
            symbol, lots, cents = rng.choice(SYMBOLS), round(rng.choice((0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)) * rng.uniform(0.5, 2), 2) or 0.01, currency == "USC"
            client.open_positions.append((account_id, symbol, micros, lots, cents))
            action, extra, opened = "open", {}, micros
        kind = next((k for k in ACCOUNT_KINDS if account_id.endswith(("-a0", "-a1")) and k[0] in account_id), None)
        spread_lo, spread_hi = (kind[3] if kind else (6, 14))
        per_lot_commission = kind[4] if kind else 0
        scale = 100 if cents else 1
        account_lots = lots * scale
        spread_cost = lots * rng.uniform(spread_lo, spread_hi) / 2 * scale
        commission = lots * per_lot_commission / 2 * scale
        yield self._event("trade.fill", micros, client_id=client.client_id, account_id=account_id,
                          fill_id=f"f-{self._n + 1:09d}", symbol=symbol, action=action,
                          lots=_money(account_lots), spread_cost=_money(spread_cost),
                          commission=_money(commission), **extra,
                          **({"notional_usd": _money(lots * NOTIONAL_PER_LOT[symbol])} if self.notional else {}))

    def _extras(self, client: _Client, micros: int) -> Iterator[bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.002:
            yield self._event("trade.bust", micros + 1, client_id=client.client_id, fill_id=f"f-{self._n:09d}")
        elif roll < 0.006:
            account_id = rng.choice(client.accounts)[0]
            yield self._event("wallet.allocate", micros + 1, client_id=client.client_id, account_id=account_id,
                              amount=_money(rng.choice((1, 2, 5, 10, 25))))
        elif roll < 0.0065 and client.welcome:
            yield self._event("welcome.transfer", micros + 1, client_id=client.client_id,
                              account_id=client.welcome, to_account_id=client.accounts[0][0],
                              amount=_money(rng.choice((5, 10, 20))))
        elif roll < 0.0075:
            yield self._deposit(client, micros + 1, 9)
        elif roll < 0.0075 + self.bad_share:
            yield self._bad(client, micros + 1)

    def _bad(self, client: _Client, micros: int) -> bytes:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0 and self._recent:
            return rng.choice(self._recent)                      # an exact redelivery
        if kind == 1 and self._recent:
            doc = orjson.loads(rng.choice(self._recent))         # same id, other payload
            doc["ts"] = self._ts(micros)
            return orjson.dumps(doc)
        if kind == 2:
            return b'{"type": "trade.fill", "id": "broken' + str(micros).encode()
        if kind == 3:
            return self._event("trade.amend", micros, client_id=client.client_id)
        if kind == 4:                                            # money as a JSON float
            return orjson.dumps({"type": "deposit", "id": f"bad-{micros}", "ts": self._ts(micros),
                                 "client_id": client.client_id, "account_id": client.accounts[0][0],
                                 "deposit_id": f"bad-{micros}", "amount": 100.5, "source": "external",
                                 "bonus_percent": None})
        return self._event("wallet.allocate", micros, client_id=f"ghost-{micros}", account_id="x", amount="1")


def _money(value: float) -> str:
    """Generator-side only: sample values are drawn as floats and written as exact decimals."""
    text = f"{value:.2f}"
    return "0.01" if text in ("0.00", "-0.00") else text


def write(path: str, **kwargs: Any) -> int:
    count = 0
    with open(path, "wb", buffering=1 << 20) as out:
        for line in SampleDay(**kwargs).lines():
            out.write(line + b"\n")
            count += 1
    return count
