"""Writes the contract scenarios (checked in; rerun after changing this file):

    python -m tests.scenarios.make_scenarios
"""

from __future__ import annotations

from pathlib import Path

from streams.devtools.sample_day import SampleDay
from tests.support import Scenario

HERE = Path(__file__).parent


class Recorder(Scenario):
    """A Scenario that keeps the raw bytes it sent, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def send_raw(self, raw: bytes) -> list:
        self.lines.append(raw)
        return super().send_raw(raw)


def programs() -> list[bytes]:
    s = Recorder()
    s.plan("P1", {"standard": "10", "standard_cent": "2", "pro": "4"}, {"standard": "12", "standard_cent": "3", "pro": "5"})
    s.plan("P2", {"standard": "1.333333"}, {"standard": "2.777777"})
    for n, person in enumerate(["alice", "bob", "alice", "carol"]):   # alice signs up twice
        cid = f"c{n}"
        s.client(cid, identity=f"id-{person}", country="PL" if n == 3 else "DE")
        s.account(f"{cid}-std", "standard", client_id=cid)
        s.account(f"{cid}-cent", "standard_cent", client_id=cid)
        s.account(f"{cid}-w", "welcome", client_id=cid, conditions="pro")
        s.emit("partner.linked", client_id=cid, partner_id="P1" if n % 2 == 0 else "P2")
    s.emit("welcome.claim", client_id="c0", account_id="c0-w")
    s.emit("welcome.claim", client_id="c2", account_id="c2-w")      # same person: duplicate_identity
    s.emit("welcome.claim", client_id="c1", account_id="c1-std")    # not a welcome account
    s.emit("welcome.claim", client_id="c0", account_id="c0-w")      # already claimed
    s.deposit("c0-std", "500", 120, client_id="c0")
    s.deposit("c1-std", "100", 50, client_id="c1")
    s.deposit("c1-cent", "50000", 100, client_id="c1")              # cent: 100 % not offered
    s.deposit("c3-std", "40000", 120, client_id="c3")
    s.deposit("c3-std", "1000", 100, client_id="c3")                # past the cap
    for n in range(12):
        cid = f"c{n % 4}"
        s.fill(f"{cid}-std", f"{cid}-o{n}", action="open", lots="2", spread_cost="14", commission="3", client_id=cid)
        s.fill(f"{cid}-std", f"{cid}-x{n}", action="close", lots="2", spread_cost="14", commission="3",
               realized_pnl="25.5", client_id=cid)
        s.fill(f"{cid}-cent", f"{cid}-k{n}", action="close", lots="150", spread_cost="700", client_id=cid)
    s.fill("c0-w", "c0-w1", action="close", lots="1", spread_cost="8", realized_pnl="42", client_id="c0")
    s.allocate("c0-std", "5", client_id="c0")
    s.allocate("c1-std", "99999", client_id="c1")                    # insufficient balance
    s.allocate("c2-w", "1", client_id="c2")                          # welcome account
    s.fill("c0-std", "c0-after", action="open", lots="1", spread_cost="9", client_id="c0")
    s.emit("welcome.transfer", client_id="c0", account_id="c0-w", to_account_id="c0-std", amount="10")
    s.deposit("c0-std", "150", client_id="c0")
    s.emit("welcome.transfer", client_id="c0", account_id="c0-w", to_account_id="c0-std", amount="10")
    s.emit("trade.bust", client_id="c1", fill_id="c1-x1")
    s.emit("trade.bust", client_id="c1", fill_id="c1-x1")            # twice
    s.emit("trade.bust", client_id="c1", fill_id="nope")
    s.close_day("2026-11-24")
    s.plan("P1", {"standard": "5"}, {"standard": "6"})
    s.fill("c0-std", "c0-late", action="close", lots="1", client_id="c0")
    s.close_day("2026-11-24")
    s.client("c9", verified=False)
    s.send_raw(b'{"type": "trade.fill", "id": "broken')
    s.send_raw(b'{"type": "trade.amend", "id": "a1", "ts": "2026-11-24T12:00:00Z", "client_id": "c0"}')
    s.fill("c0-std", "ghost-fill", client_id="ghost")
    s.send_raw(s.lines[-4])                                          # an exact redelivery
    return s.lines


def partners() -> list[bytes]:
    """Multi-level partners (run with partners.toml): P3 under P2 under P1; clients of P2 and P3
    trading over two days; a cycle refused; a bust after a change of hierarchy; a late fill."""
    s = Recorder()
    for partner in ("P1", "P2", "P3"):
        s.plan(partner, {"standard": "2", "pro": "1"}, {"standard": "7.777777", "pro": "3"})
    s.emit("partner.parent", partner_id="P2", parent_id="P1")
    s.emit("partner.parent", partner_id="P3", parent_id="P2")
    s.emit("partner.parent", partner_id="P1", parent_id="P3")       # a cycle: refused
    s.emit("partner.parent", partner_id="P1", parent_id="P1")       # its own parent: invalid
    for n in range(6):
        cid = f"c{n}"
        s.client(cid)
        s.account(f"{cid}-std", "standard", client_id=cid)
        s.account(f"{cid}-pro", "pro", client_id=cid)
        s.emit("partner.linked", client_id=cid, partner_id=("P1", "P2", "P3")[n % 3])
    for n in range(18):
        cid = f"c{n % 6}"
        s.fill(f"{cid}-std", f"{cid}-s{n}", lots=("0.01", "0.37", "2")[n % 3], spread_cost="3", client_id=cid)
        s.fill(f"{cid}-pro", f"{cid}-p{n}", lots="0.13", spread_cost="1", client_id=cid)
    s.close_day("2026-11-24")
    s.advance(days=1)
    s.emit("partner.parent", partner_id="P3", parent_id="P1")       # P3 moves up
    for n in range(6):
        cid = f"c{n}"
        s.fill(f"{cid}-std", f"{cid}-t{n}", lots="1.11", spread_cost="2", client_id=cid)
    s.emit("trade.bust", client_id="c2", fill_id="c2-s2")           # a day-one fill of P3's, under P2 then
    s.emit("partner.parent", partner_id="P2", parent_id=None)       # P2 on its own
    s.fill("c1-std", "c1-after", lots="3", client_id="c1")
    s.close_day("2026-11-25")
    s.fill("c4-std", "c4-late", lots="1", client_id="c4")             # after its day closed: paid next
    s.advance(days=1)
    s.close_day("2026-11-26")
    return s.lines


def sample_day() -> list[bytes]:
    return list(SampleDay(clients=40, fills=600, seed=11, bad_share=0.01).lines())


def main() -> None:
    for name, lines in (("programs", programs()), ("sample_day", sample_day()), ("partners", partners())):
        (HERE / f"{name}.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
        print(name, len(lines), "events")


if __name__ == "__main__":
    main()
