"""Random event sequences against a small reference model, with the ledger's invariants
checked after every step (issue 2's acceptance):

- JM USD conserved: accrued - reversed = wallet + allocated + covered;
- coverage never above 50 % of a fill's cost, and equal to what the model predicts;
- cashback and wallet balances equal to what the model predicts;
- no client's bonuses above the cap;
- turnover moved only by closing fills and busts;
- payouts plus carry equal accruals, for every payee;
- overrides conserve: what the master partners are paid, carry and have pending equals the
  sum of their shares of every commission (and of its reversal), level by level, under the
  hierarchy a reference model keeps; a cycle is refused;
- a redelivered event changes nothing;
- replaying the same sequence gives identical outputs.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import msgspec
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from handlers.engine import Engine
from handlers.money import ZERO, q6
from handlers.rules import Rules
from tests.support import without_parking
from schemas.codec import encode_output

CLIENTS = ("c0", "c1", "c2")
ACCOUNTS = {"std": ("standard", "USD"), "cent": ("standard_cent", "USC"), "pro": ("pro", "USD"),
            "raw": ("raw_spread", "USD"), "w": ("welcome", "USD")}
MONEY = st.sampled_from(["0", "0.000035", "0.01", "1", "7.5", "100", "2500"])
LOTS = st.sampled_from(["0.01", "0.1", "1", "2.5", "30", "250"])
RULES = without_parking(Rules.from_toml('[partners]\noverride_shares = ["0.20", "0.05"]\n'))  # parking: test_parking.py
PARTNERS = ("P", "Q", "M1", "M2", "M3")


def acct(client: str, name: str) -> str:
    return f"{client}-{name}"


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(RULES)
        self.now = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
        self.count = 0
        self.sent: list[bytes] = []
        self.all_outputs: list[bytes] = []
        self.step_outputs: list[dict[str, Any]] = []
        self.fills: list[tuple[str, str]] = []
        # the reference model: what it expects the engine to hold
        self.balance: dict[str, Decimal] = defaultdict(Decimal)
        self.allocated: dict[str, Decimal] = defaultdict(Decimal)          # by account id
        self.fill_effects: dict[str, tuple[str, Decimal, Decimal]] = {}  # fill -> (account, cashback, covered)
        self.paid: dict[tuple[str, str], Decimal] = defaultdict(Decimal)   # (payee kind, id) -> sum
        self.parent: dict[str, str | None] = {}                           # the hierarchy now
        self.fill_overrides: dict[str, list[tuple[str, Decimal]]] = {}    # fill -> (master, override)
        self.overrides: dict[str, Decimal] = defaultdict(Decimal)          # master -> its shares, in all

    # -- sending --------------------------------------------------------------------------
    def send(self, event_type: str, **fields: Any) -> list[dict[str, Any]]:
        self.count += 1
        self.now += timedelta(seconds=1)
        event = {"type": event_type, "id": f"e{self.count}",
                 "ts": self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields}
        return self.send_raw(orjson.dumps(event))

    def send_raw(self, raw: bytes) -> list[dict[str, Any]]:
        self.sent.append(raw)
        before = self._turnover()
        outputs = [encode_output(o) for o in self.engine.process(raw, {"line": len(self.sent)})]
        self.all_outputs.extend(outputs)
        self.step_outputs = [orjson.loads(o) for o in outputs]
        event = orjson.loads(raw)
        moves_turnover = (event["type"] == "trade.fill" and event.get("action") == "close") or event["type"] == "trade.bust"
        if not moves_turnover:
            after = self._turnover()
            assert {k: v for k, v in after.items() if k in before} == before, "turnover moved without a fill or bust"
        self._observe(event)
        return self.step_outputs

    def _turnover(self) -> dict[str, Decimal]:
        return {b.bonus_id: b.lots_traded for c in self.engine.clients.values() for b in c.bonuses}

    def _observe(self, event: dict[str, Any]) -> None:
        """Check every output of the step against the model, then update the model."""
        for out in self.step_outputs:
            kind = out["type"]
            if kind == "coverage.applied":
                cost, covered = Decimal(out["cost"]), Decimal(out["covered"])
                expected = min((cost * RULES.coverage_share).quantize(Decimal("0.000001"), ROUND_FLOOR),
                               self.allocated[out["account_id"]])
                assert covered == expected and covered <= cost * Decimal("0.5")
                assert Decimal(out["charged"]) == cost - covered
                self.allocated[out["account_id"]] -= covered
            elif kind == "cashback.accrued":
                self.balance[out["client_id"]] += Decimal(out["amount"])
                assert Decimal(out["wallet_balance"]) == self.balance[out["client_id"]]
            elif kind == "wallet.allocated":
                self.balance[out["client_id"]] -= Decimal(out["amount"])
                self.allocated[out["account_id"]] += Decimal(out["amount"])
                assert Decimal(out["wallet_balance"]) == self.balance[out["client_id"]] >= 0
            elif kind == "fill.reversed":
                self.balance[out["client_id"]] -= Decimal(out["cashback"])
                self.allocated[out["account_id"]] += Decimal(out["covered"])
                for master, amount in self.fill_overrides.pop(out["fill_id"], []):
                    self.overrides[master] -= amount  # the same masters as the fill's
                account, cashback, covered = self.fill_effects.pop(out["fill_id"])
                assert (account, Decimal(out["cashback"]), Decimal(out["covered"])) == (out["account_id"], cashback, covered)
            elif kind == "rebate.accrued":
                masters = self._masters(out["partner_id"])
                self.fill_overrides[out["fill_id"]] = [
                    (master, q6(Decimal(out["commission"]) * share))
                    for master, share in zip(masters, RULES.override_shares, strict=False)]
                for master, amount in self.fill_overrides[out["fill_id"]]:
                    self.overrides[master] += amount
            elif kind in ("rebate.payout", "commission.payout", "override.payout"):
                payee = out.get("client_id", "") + "/" + out["partner_id"]
                self.paid[(kind, payee)] += Decimal(out["amount"])
                assert Decimal(out["amount"]) >= Decimal("0.01")
                assert Decimal(out["amount"]) == Decimal(out["amount"]).quantize(Decimal("0.01"))
        reasons = [o["reason"] for o in self.step_outputs if o["type"] == "event.rejected"]
        if event["type"] == "partner.parent" and reasons not in (["duplicate"], ["stale_event"]):
            partner, parent = event["partner_id"], event["parent_id"]
            if parent == partner:
                assert reasons == ["invalid_field"]
            elif partner in self._masters(parent, levels=len(PARTNERS)):
                assert reasons == ["partner_cycle"]
            else:
                assert reasons == []
                self.parent[partner] = parent
        if event["type"] == "trade.fill" and not any(o["type"] == "event.rejected" for o in self.step_outputs):
            cashback = sum((Decimal(o["amount"]) for o in self.step_outputs if o["type"] == "cashback.accrued"), ZERO)
            covered = sum((Decimal(o["covered"]) for o in self.step_outputs if o["type"] == "coverage.applied"), ZERO)
            self.fill_effects[event["fill_id"]] = (event["account_id"], cashback, covered)
            if ACCOUNTS[event["account_id"].split("-")[1]][0] != "welcome":
                cost = Decimal(event["spread_cost"]) + Decimal(event["commission"])
                if event["account_id"].endswith("-cent"):
                    cost /= 100
                assert cashback == q6((cost - covered) * RULES.cashback_rate)

    def _masters(self, partner: str | None, levels: int = len(RULES.override_shares)) -> list[str]:
        """The masters above ``partner`` in the model's hierarchy, nearest first (never cyclic:
        the model refuses a cycle as the engine must)."""
        found: list[str] = []
        current = partner
        while current is not None and len(found) < levels:
            current = self.parent.get(current)
            if current is not None:
                found.append(current)
        return found

    # -- the world ------------------------------------------------------------------------
    @initialize()
    def setup(self) -> None:
        self.send("partner.plan", partner_id="P", rebate_per_lot={"standard": "3.5", "standard_cent": "1"},
                  commission_per_lot={"standard": "7", "standard_cent": "1.25", "pro": "2"})
        for client in CLIENTS:
            self.send("client.registered", client_id=client, country="DE")
            for name, (account_type, currency) in ACCOUNTS.items():
                extra = {"conditions": "pro"} if account_type == "welcome" else {}
                self.send("account.opened", client_id=client, account_id=acct(client, name),
                          account_type=account_type, currency=currency, **extra)
        self.send("partner.plan", partner_id="Q", rebate_per_lot={"pro": "1"},
                  commission_per_lot={"standard": "3.333333", "pro": "2.5"})
        self.send("partner.linked", client_id="c0", partner_id="P")
        self.send("partner.linked", client_id="c1", partner_id="Q")
        # c0 and c1 can allocate and claim from the start; c2 walks the refusal paths until
        # the machine verifies it.
        for client in ("c0", "c1"):
            self.send("client.verified", client_id=client, id_document=True, phone=True,
                      identity_hash=f"person-{client}")
            for name in ACCOUNTS:
                self.send("account.validated", client_id=client, account_id=acct(client, name))
            self.fill(client, "std", "open", "1", "1000", "0", None)       # 100 JM USD to spend
            self.send("deposit", client_id=client, account_id=acct(client, "std"), deposit_id=f"d-{client}",
                      amount="500", source="external", bonus_percent=50)  # 250 USD bonus, 125 lots

    @rule(client=st.sampled_from(CLIENTS), name=st.sampled_from(sorted(ACCOUNTS)),
          action=st.sampled_from(["open", "close"]), lots=LOTS, spread=MONEY, commission=MONEY,
          pnl=st.sampled_from([None, "-20", "0", "15.5", "300"]))
    def fill(self, client: str, name: str, action: str, lots: str, spread: str, commission: str, pnl: str | None) -> None:
        self.count_fill = getattr(self, "count_fill", 0) + 1
        fill_id = f"f{self.count_fill}"
        extra = {"realized_pnl": pnl} if action == "close" and pnl is not None else {}
        self.send("trade.fill", client_id=client, account_id=acct(client, name), fill_id=fill_id,
                  symbol="EURUSD", action=action, lots=lots, spread_cost=spread, commission=commission, **extra)
        self.fills.append((client, fill_id))

    @rule(client=st.sampled_from(CLIENTS), lots=LOTS, spread=MONEY)
    def close_on_std(self, client: str, lots: str, spread: str) -> None:
        """Closing fills on the accounts that carry bonuses and allocations, more often."""
        self.fill(client, "std", "close", lots, spread, "0", None)

    @rule(client=st.sampled_from(CLIENTS), pnl=st.sampled_from(["-50", "40", "300"]))
    def trade_welcome(self, client: str, pnl: str) -> None:
        self.fill(client, "w", "close", "1", "1", "0", pnl)

    @precondition(lambda self: self.fills)
    @rule(data=st.data())
    def bust(self, data: st.DataObject) -> None:
        client, fill_id = data.draw(st.sampled_from(self.fills))
        self.send("trade.bust", client_id=client, fill_id=fill_id)

    @rule(client=st.sampled_from(CLIENTS), name=st.sampled_from(sorted(ACCOUNTS)),
          amount=st.sampled_from(["-1", "0", "0.5", "3", "25", "1000"]))
    def allocate(self, client: str, name: str, amount: str) -> None:
        self.send("wallet.allocate", client_id=client, account_id=acct(client, name), amount=amount)

    @rule(client=st.sampled_from(CLIENTS), name=st.sampled_from(sorted(ACCOUNTS)),
          amount=st.sampled_from(["50", "100", "500", "10000", "60000"]),
          percent=st.sampled_from([None, 50, 100, 120]), source=st.sampled_from(["external", "internal"]))
    def deposit(self, client: str, name: str, amount: str, percent: int | None, source: str) -> None:
        self.send("deposit", client_id=client, account_id=acct(client, name), deposit_id=f"d{self.count}",
                  amount=amount, source=source, bonus_percent=percent)

    @rule(client=st.sampled_from(CLIENTS), phone=st.booleans(), person=st.sampled_from(["p1", "p2", "p3"]))
    def verify(self, client: str, phone: bool, person: str) -> None:
        self.send("client.verified", client_id=client, id_document=True, phone=phone, identity_hash=person)

    @rule(client=st.sampled_from(CLIENTS), name=st.sampled_from(sorted(ACCOUNTS)))
    def validate(self, client: str, name: str) -> None:
        self.send("account.validated", client_id=client, account_id=acct(client, name))

    @rule(client=st.sampled_from(CLIENTS))
    def claim(self, client: str) -> None:
        self.send("welcome.claim", client_id=client, account_id=acct(client, "w"))

    @rule(client=st.sampled_from(CLIENTS), amount=st.sampled_from(["1", "10", "100"]))
    def transfer(self, client: str, amount: str) -> None:
        self.send("welcome.transfer", client_id=client, account_id=acct(client, "w"),
                  to_account_id=acct(client, "std"), amount=amount)

    @rule(partner=st.sampled_from(PARTNERS), parent=st.sampled_from((None, *PARTNERS)))
    def link(self, partner: str, parent: str | None) -> None:
        self.send("partner.parent", partner_id=partner, parent_id=parent)

    @rule(days_back=st.integers(0, 2))
    def close_day(self, days_back: int) -> None:
        self.send("settlement.day_closed", date=(self.now - timedelta(days=days_back)).date().isoformat())

    @rule(hours=st.sampled_from([1, 20, 24 * 3, 24 * 8]))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @precondition(lambda self: len(self.sent) > 1)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        raw = data.draw(st.sampled_from(self.sent))
        snapshot = msgspec.json.encode(self.engine.clients)
        outputs = self.send_raw(raw)
        assert len(outputs) == 1 and outputs[0]["type"] == "event.rejected"
        # an input that never decoded (malformed, invalid) is not remembered: the same answer again
        assert outputs[0]["reason"] in ("duplicate", "stale_event", "unknown_client", "malformed", "invalid_field")
        assert msgspec.json.encode(self.engine.clients) == snapshot, "a redelivery changed state"

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def jm_usd_is_conserved(self) -> None:
        for client in self.engine.clients.values():
            w = client.wallet
            allocated = sum((a.allocated for a in client.accounts.values()), ZERO)
            assert w.allocated == allocated
            assert w.accrued - w.reversed == w.balance + allocated + w.covered
            assert w.balance == self.balance[client.client_id]
            for account in client.accounts.values():
                assert account.allocated == self.allocated[account.account_id] >= 0

    @invariant()
    def bonuses_stay_under_the_cap(self) -> None:
        for client in self.engine.clients.values():
            total = sum((b.amount for b in client.bonuses), ZERO)
            assert total == client.bonus_granted_usd <= RULES.bonus_cap_usd
            for b in client.bonuses:
                assert ZERO <= b.lots_traded <= b.required_lots

    @invariant()
    def payouts_plus_carry_equal_accruals(self) -> None:
        ledgers = [(("rebate.payout", f"{c.client_id}/{p}"), ledger)
                   for c in self.engine.clients.values() for p, ledger in c.rebates.items()]
        ledgers += [(("commission.payout", f"/{p}"), ledger) for p, ledger in self.engine.commissions.items()]
        for key, ledger in ledgers:
            assert ledger.paid == self.paid[key]
            assert ledger.paid + ledger.carried + sum(ledger.pending.values(), ZERO) == ledger.accrued

    @invariant()
    def overrides_conserve(self) -> None:
        partners = self.engine.partners
        pending = self.engine.shared.overrides  # accrued, not yet handed to a close
        for master in set(self.overrides) | set(pending) | set(partners.overrides):
            expected = self.overrides.get(master, ZERO)
            assert (pending[master].accrued if master in pending else ZERO) == expected, master
            handed = pending[master].paid if master in pending else ZERO  # handed on at closes
            ledger = partners.overrides.get(master)
            if ledger is not None:
                assert ledger.accrued == handed
                assert ledger.paid == self.paid[("override.payout", f"/{master}")]
                assert ledger.paid + ledger.carried + sum(ledger.pending.values(), ZERO) == ledger.accrued
            else:
                assert handed == ZERO
        # every level together: paid + carried + not yet due == the sum of all the shares
        total = sum((ledger.paid + ledger.carried for ledger in partners.overrides.values()), ZERO)
        total += sum((sum(ledger.pending.values(), ZERO) for ledger in pending.values()), ZERO)
        assert total == sum(self.overrides.values(), ZERO)

    def teardown(self) -> None:
        again = Engine(RULES)
        replayed = [encode_output(o) for i, raw in enumerate(self.sent, 1) for o in again.process(raw, {"line": i})]
        assert replayed == self.all_outputs, "replaying the same sequence gave other outputs"


EngineMachine.TestCase.settings = settings(
    settings.default, max_examples=max(150, settings.default.max_examples), stateful_step_count=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestEngineMachine = EngineMachine.TestCase
