"""Multi-level partners: who is whose sub-partner (``partner.parent``, by event time), and the
override a master partner earns on each sub-partner's commission.

A master partner at level k above a partner earns ``[partners] override_shares[k-1]`` of that
partner's commission, on top of it (the broker pays it; the sub-partner keeps its whole
commission). Overrides accrue with the commission they follow, kept to the micro-dollar, and
are paid with commissions at day closes, rounded down to the cent with the rest carried. A bust
takes back its fill's commission and, with it, the same overrides: they are computed from the
hierarchy in force at the fill's ``ts`` both times.

The hierarchy is a broadcast input, kept by every partition like the plans. A link that would
make a partner its own ancestor (by the newest links) is refused ``partner_cycle``.
"""

from __future__ import annotations

from bisect import insort
from decimal import Decimal
from typing import Final

from handlers.money import q6
from handlers.state import ParentLink
from handlers.step import CommissionAccrual
from schemas.inputs import PartnerParent

LINKS_KEPT_MAX: Final = 32  # per partner: old links no fill can still use


class ParentBook:
    """Every partner's parent links by effective time."""

    def __init__(self, links: dict[str, list[ParentLink]]) -> None:
        self.links = links

    def parent_at(self, partner_id: str, ts_us: int) -> str | None:
        for link in reversed(self.links.get(partner_id, ())):
            if link.ts_us <= ts_us:
                return link.parent_id
        return None

    def newest_parent(self, partner_id: str) -> str | None:
        links = self.links.get(partner_id)
        return links[-1].parent_id if links else None

    def ancestors(self, partner_id: str, ts_us: int, levels: int) -> list[str]:
        """The partner's parent, its parent's parent, ..., at most ``levels``, as at ``ts_us``.
        A cycle in history (links published late can make one in the past) ends the walk."""
        found: list[str] = []
        seen = {partner_id}
        current = partner_id
        while len(found) < levels:
            parent = self.parent_at(current, ts_us)
            if parent is None or parent in seen:
                break
            found.append(parent)
            seen.add(parent)
            current = parent
        return found

    def would_cycle(self, partner_id: str, parent_id: str | None) -> bool:
        """Whether making ``parent_id`` the partner's parent makes the partner its own ancestor."""
        current, seen = parent_id, set()
        while current is not None and current not in seen:
            if current == partner_id:
                return True
            seen.add(current)
            current = self.newest_parent(current)
        return False

    def add(self, event: PartnerParent, ts_us: int) -> None:
        history = self.links.setdefault(event.partner_id, [])
        insort(history, ParentLink(cause_id=event.id, ts_us=ts_us, parent_id=event.parent_id),
               key=lambda link: (link.ts_us, link.cause_id))
        del history[:-LINKS_KEPT_MAX]


def override_accruals(book: ParentBook, accrual: CommissionAccrual,
                      shares: tuple[Decimal, ...]) -> list[CommissionAccrual]:
    """The overrides a commission accrual (or its reversal) earns the masters above its partner."""
    found = []
    for level, master in enumerate(book.ancestors(accrual.partner_id, accrual.ts_us, len(shares))):
        amount = q6(accrual.amount * shares[level])
        if amount:
            found.append(CommissionAccrual(master, accrual.date, amount, accrual.ts_us))
    return found
