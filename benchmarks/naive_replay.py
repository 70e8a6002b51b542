"""A deliberately naive reference replay: the four programs, busts and one-effect-per-id written
the obvious way (stdlib json, Decimal, dicts, an output dict per effect), for issue 15's ratio
of the real engine to a simple one on the same input. It is not the product: no parking, no
event-time windows, no ts order, no schema beyond the fields it reads, and its rejections say
less. What it computes per event is what the engine computes: validation of the money fields,
the dedupe digest, coverage and cashback, allocations, the Welcome Bonus and its transfers,
deposit bonuses with their cap and turnover, rebates and commissions paid daily in cents with a
carry, and the reversal of a busted fill.

    python -m benchmarks.naive_replay INPUT.jsonl OUTPUT.jsonl
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

MICRO, CENT, ZERO = Decimal("0.000001"), Decimal("0.01"), Decimal(0)
RATE, SHARE, WELCOME, TRANSFER_MIN, PER_LOT, CAP = (Decimal("0.10"), Decimal("0.50"), Decimal(30), Decimal(100),
                                                    Decimal(2), Decimal(40000))
TIERS = {50: ({"standard_cent", "standard", "pro"}, Decimal(100)), 100: ({"standard", "pro"}, Decimal(100)),
         120: ({"standard", "pro"}, Decimal(500))}
LIVE = {"standard_cent", "standard", "pro", "raw_spread"}


def money(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError("money must be a string")
    amount = Decimal(value)
    if amount < 0:
        raise ValueError("negative")
    return amount


def q6(x: Decimal) -> Decimal:
    return x.quantize(MICRO, ROUND_HALF_EVEN)


def text(x: Decimal) -> str:
    return format(x.normalize(), "f") if x else "0"


class Naive:
    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.clients: dict[str, dict[str, Any]] = {}
        self.identities: dict[str, str] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.fills: dict[str, dict[str, Any]] = {}
        self.due: dict[tuple[str, str], Decimal] = {}  # (payee kind:id, date) -> accrued
        self.carry: dict[str, Decimal] = {}
        self.out: list[dict[str, Any]] = []

    def emit(self, kind: str, event: dict[str, Any], **fields: Any) -> None:
        self.out.append({"type": kind, "id": f"{kind}:{event.get('id')}:{len(self.out)}",
                         "cause_id": event.get("id"), "ts": event.get("ts"), **fields})

    def reject(self, raw: str, reason: str, error: str, event: dict[str, Any] | None = None) -> None:
        self.out.append({"type": "event.rejected", "id": "event.rejected:" + hashlib.blake2b(
            raw.encode(), digest_size=8).hexdigest(), "cause_id": (event or {}).get("id"), "reason": reason,
            "error": error, "raw": raw[:4096]})

    def apply(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except ValueError as exc:
            return self.reject(raw, "malformed", str(exc))
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            return self.reject(raw, "malformed", "not an event")
        digest = hashlib.blake2b(json.dumps(event, sort_keys=True).encode(), digest_size=10).hexdigest()
        if event["id"] in self.seen:
            reason = "duplicate" if self.seen[event["id"]] == digest else "conflicting_duplicate"
            return self.reject(raw, reason, "seen before", event)
        self.seen[event["id"]] = digest
        handler = getattr(self, "on_" + str(event.get("type", "")).replace(".", "_"), None)
        if handler is None:
            return self.reject(raw, "unknown_type", f"type {event.get('type')!r}", event)
        try:
            handler(event)
        except (KeyError, ValueError, InvalidOperation, TypeError) as exc:
            self.reject(raw, "invalid_field", repr(exc), event)

    # -- clients and accounts --------------------------------------------------------------------
    def client(self, event: dict[str, Any]) -> dict[str, Any]:
        client = self.clients.get(event["client_id"])
        if client is None:
            raise KeyError("unknown_client")
        return client

    def on_client_registered(self, e: dict[str, Any]) -> None:
        self.clients[e["client_id"]] = {"country": e["country"], "verified": False, "identity": None,
                                        "accounts": {}, "wallet": ZERO, "partner": None, "bonus_total": ZERO,
                                        "welcomed": False, "qualified": False}

    def on_client_verified(self, e: dict[str, Any]) -> None:
        client = self.client(e)
        client["verified"] = bool(e["id_document"]) and bool(e["phone"])
        client["identity"] = e["identity_hash"]

    def on_account_opened(self, e: dict[str, Any]) -> None:
        self.client(e)["accounts"][e["account_id"]] = {
            "type": e["account_type"], "usc": e["currency"] == "USC", "validated": False, "allocated": ZERO,
            "bonuses": [], "profit": ZERO, "conditions": e.get("conditions")}

    def on_account_validated(self, e: dict[str, Any]) -> None:
        self.client(e)["accounts"][e["account_id"]]["validated"] = True

    def on_partner_linked(self, e: dict[str, Any]) -> None:
        self.client(e)["partner"] = e["partner_id"]

    def on_partner_plan(self, e: dict[str, Any]) -> None:
        self.plans[e["partner_id"]] = {"rebate": {k: money(v) for k, v in e["rebate_per_lot"].items()},
                                       "commission": {k: money(v) for k, v in e["commission_per_lot"].items()}}

    # -- the programs ----------------------------------------------------------------------------
    def on_trade_fill(self, e: dict[str, Any]) -> None:
        client = self.client(e)
        account = client["accounts"][e["account_id"]]
        usd = Decimal("0.01") if account["usc"] else Decimal(1)
        cost = (money(e["spread_cost"]) + money(e["commission"])) * usd
        lots = money(e["lots"]) * usd
        record = {"client": e["client_id"], "account": e["account_id"], "cashback": ZERO, "covered": ZERO,
                  "lots": ZERO, "rebate": ZERO, "commission": ZERO, "partner": None, "date": e["ts"][:10]}
        if account["type"] in LIVE:
            covered = min((cost * SHARE).quantize(MICRO, ROUND_DOWN), account["allocated"])
            account["allocated"] -= covered
            cashback = q6((cost - covered) * RATE)
            client["wallet"] += cashback
            record.update(cashback=cashback, covered=covered)
            if covered:
                self.emit("coverage.applied", e, client_id=e["client_id"], covered=text(covered))
            if cashback:
                self.emit("cashback.accrued", e, client_id=e["client_id"], amount=text(cashback),
                          wallet_balance=text(client["wallet"]))
        if e["action"] == "close":
            if "realized_pnl" in e and account["type"] == "welcome":
                account["profit"] += Decimal(e["realized_pnl"]) * usd
            left = lots
            for bonus in account["bonuses"]:
                if left and bonus["traded"] < bonus["required"]:
                    step = min(left, bonus["required"] - bonus["traded"])
                    bonus["traded"] += step
                    left -= step
                    self.emit("bonus.progress", e, client_id=e["client_id"], lots_traded=text(bonus["traded"]))
                    if bonus["traded"] >= bonus["required"]:
                        self.emit("bonus.unlocked", e, client_id=e["client_id"], amount=text(bonus["amount"]))
            record["lots"] = lots - left
            plan = self.plans.get(client["partner"] or "")
            if plan is not None:
                rebate = q6(lots * plan["rebate"].get(account["type"], ZERO))
                commission = q6(lots * plan["commission"].get(account["type"], ZERO))
                if rebate or commission:
                    self.accrue("client:" + e["client_id"], record["date"], rebate)
                    self.accrue("partner:" + client["partner"], record["date"], commission)
                    record.update(rebate=rebate, commission=commission, partner=client["partner"])
                    self.emit("rebate.accrued", e, client_id=e["client_id"], rebate=text(rebate),
                              commission=text(commission))
        self.fills[e["fill_id"]] = record

    def on_trade_bust(self, e: dict[str, Any]) -> None:
        record = self.fills.pop(e["fill_id"])
        client = self.clients[record["client"]]
        account = client["accounts"][record["account"]]
        client["wallet"] -= record["cashback"]
        account["allocated"] += record["covered"]
        left = record["lots"]
        for bonus in reversed(account["bonuses"]):
            step = min(left, bonus["traded"])
            bonus["traded"] -= step
            left -= step
        if record["partner"]:
            self.accrue("client:" + record["client"], e["ts"][:10], -record["rebate"])
            self.accrue("partner:" + record["partner"], e["ts"][:10], -record["commission"])
        self.emit("fill.reversed", e, client_id=record["client"], cashback=text(record["cashback"]),
                  covered=text(record["covered"]), lots=text(record["lots"]))

    def on_wallet_allocate(self, e: dict[str, Any]) -> None:
        client = self.client(e)
        account = client["accounts"].get(e["account_id"])
        amount = money(e["amount"]) * (Decimal("0.01") if account and account["usc"] else 1)
        reason = ("unknown_account" if account is None else "ineligible_account" if account["type"] not in LIVE
                  else "invalid_amount" if amount <= 0 else "not_verified" if not client["verified"]
                  else "account_not_validated" if not account["validated"]
                  else "insufficient_balance" if amount > client["wallet"] else None)
        if reason:
            return self.emit("wallet.allocation_rejected", e, client_id=e["client_id"], reason=reason)
        assert account is not None
        client["wallet"] -= amount
        account["allocated"] += amount
        self.emit("wallet.allocated", e, client_id=e["client_id"], amount=text(amount))

    def on_welcome_claim(self, e: dict[str, Any]) -> None:
        client = self.client(e)
        account = client["accounts"].get(e["account_id"])
        reason = ("unknown_account" if account is None or account["type"] != "welcome"
                  else "already_claimed" if client["welcomed"] else "not_verified" if not client["verified"]
                  else "ineligible_account" if account["conditions"] not in ("standard", "pro")
                  else "duplicate_identity" if self.identities.get(client["identity"], e["client_id"]) != e["client_id"]
                  else None)
        if reason:
            return self.emit("welcome.rejected", e, client_id=e["client_id"], reason=reason)
        self.identities[client["identity"]] = e["client_id"]
        client["welcomed"] = True
        self.emit("welcome.granted", e, client_id=e["client_id"], amount=text(WELCOME))

    def on_welcome_transfer(self, e: dict[str, Any]) -> None:
        client = self.client(e)
        account = client["accounts"].get(e["account_id"])
        amount = money(e["amount"])
        reason = ("unknown_account" if account is None or e["to_account_id"] not in client["accounts"]
                  else "invalid_amount" if amount <= 0 else "no_qualifying_deposit" if not client["qualified"]
                  else "insufficient_profit" if amount > account["profit"] else None)
        if reason:
            return self.emit("welcome.transfer_rejected", e, client_id=e["client_id"], reason=reason)
        assert account is not None
        account["profit"] -= amount
        self.emit("welcome.transfer_approved", e, client_id=e["client_id"], amount=text(amount))

    def on_deposit(self, e: dict[str, Any]) -> None:
        client = self.client(e)
        account = client["accounts"][e["account_id"]]
        amount = money(e["amount"]) * (Decimal("0.01") if account["usc"] else 1)
        if e["source"] == "external" and amount >= TRANSFER_MIN and account["validated"]:
            client["qualified"] = True
        percent = e.get("bonus_percent")
        if percent is None:
            return
        types, minimum = TIERS[int(percent)]
        reason = ("internal_transfer" if e["source"] != "external" else "ineligible_account"
                  if account["type"] not in types else "below_minimum" if amount < minimum
                  else "cap_reached" if client["bonus_total"] >= CAP else None)
        if reason:
            return self.emit("bonus.rejected", e, client_id=e["client_id"], reason=reason)
        bonus = min(q6(amount * int(percent) / 100), CAP - client["bonus_total"])
        client["bonus_total"] += bonus
        account["bonuses"].append({"amount": bonus, "required": q6(bonus / PER_LOT), "traded": ZERO})
        self.emit("bonus.granted", e, client_id=e["client_id"], amount=text(bonus))

    # -- payouts -----------------------------------------------------------------------------------
    def accrue(self, payee: str, date: str, amount: Decimal) -> None:
        self.due[(payee, date)] = self.due.get((payee, date), ZERO) + amount

    def on_settlement_day_closed(self, e: dict[str, Any]) -> None:
        totals: dict[str, Decimal] = {}
        for (payee, date) in sorted(self.due):
            if date <= e["date"]:
                totals[payee] = totals.get(payee, ZERO) + self.due.pop((payee, date))
        for payee, total in sorted(totals.items()):
            owed = total + self.carry.get(payee, ZERO)
            paid = owed.quantize(CENT, ROUND_DOWN) if owed >= CENT else ZERO
            self.carry[payee] = owed - paid
            if paid:
                kind = "rebate.payout" if payee.startswith("client:") else "commission.payout"
                self.emit(kind, e, payee=payee, amount=text(paid), carried=text(self.carry[payee]))


def replay_file(source: Any, sink: Any) -> tuple[int, float]:
    """Replay ``source`` into ``sink``; (events, seconds)."""
    engine = Naive()
    started = time.perf_counter()
    events = 0
    with open(source, encoding="utf-8", errors="surrogateescape") as lines, open(sink, "w", encoding="utf-8") as out:
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            events += 1
            engine.apply(line)
            if len(engine.out) >= 4096:
                out.write("".join(json.dumps(o) + "\n" for o in engine.out))
                engine.out.clear()
        out.write("".join(json.dumps(o) + "\n" for o in engine.out))
    return events, time.perf_counter() - started


def main(argv: list[str]) -> int:
    events, seconds = replay_file(*argv)
    print(json.dumps({"events": events, "seconds": round(seconds, 2), "events_per_s": round(events / seconds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
