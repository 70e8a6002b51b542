"""The Redis read model: each client's wallet, bonuses and rebates, as the client area shows
them. Written after the state is safely in the tables; guarded by version (the sequenced offset
of the last record that changed the client), so that a replayed or rebalanced partition can never
move a view back in time."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit
from typing import Any, Final, NamedTuple

import orjson
import redis.asyncio as redis

from handlers import terms
from handlers.money import ZERO, fmt
from handlers.rules import Rules
from handlers.clientstate import ClientState
from handlers.state import TermsVersion

log = logging.getLogger("rewards.readmodel")
WARN_EVERY_S: Final = 60.0  # while Redis is down, a reminder this often

# KEYS[1] the client's hash; ARGV: version, wallet, bonuses, rebates. Writes only a newer version.
GUARDED_WRITE: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'wallet', ARGV[2], 'bonuses', ARGV[3], 'rebates', ARGV[4])
return 1
"""


class View(NamedTuple):
    """A client's views as written to Redis, with their version."""

    version: int
    wallet: bytes
    bonuses: bytes
    rebates: bytes


def views(client: ClientState, rules: Rules) -> tuple[bytes, bytes, bytes]:
    wallet = {
        "client_id": client.client_id,
        "balance": fmt(client.wallet.balance),
        "lifetime_accrued": fmt(client.wallet.accrued - client.wallet.reversed),
        "reward_rate": fmt(rules.cashback_rate),
        "allocated": fmt(client.wallet.allocated),
        "accounts": [{"account_id": a.account_id, "account_type": a.account_type,
                      "allocated": fmt(a.allocated)} for a in client.accounts.values()
                     if a.account_type != "welcome"],
    }
    bonuses = {"client_id": client.client_id, "bonuses": [
        {"bonus_id": b.bonus_id, "account_id": b.account_id, "deposit_id": b.deposit_id,
         "percent": b.percent, "amount": fmt(b.amount), "required_lots": fmt(b.required_lots),
         "lots_traded": fmt(b.lots_traded), "unlocked": b.unlocked} for b in client.bonuses]}
    rebates = {"client_id": client.client_id, "partner_id": client.partner_id, "rebates": [
        {"partner_id": p, "accrued": fmt(r.accrued), "paid": fmt(r.paid), "carried": fmt(r.carried),
         "pending": fmt(sum(r.pending.values(), ZERO))} for p, r in sorted(client.rebates.items())]}
    return orjson.dumps(wallet), orjson.dumps(bonuses), orjson.dumps(rebates)


def redis_address(url: str) -> str:
    """``url``'s host:port, for a message (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path or url


class ReadModel:
    def __init__(self, url: str, prefix: str, rules: Rules) -> None:
        self.client = redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        self.prefix = prefix
        self.rules = rules  # the wallet view shows the reward rate in force
        # the terms timeline (every ledger partition has the same): the rate at the client's newest event
        self.timeline: list[TermsVersion] = []
        self._script: Any = None
        self.backlog: dict[str, View] = {}  # views not yet written (Redis down)
        self.where = redis_address(url)
        self._down_since: float | None = None
        self._warned_at = 0.0

    def key(self, client_id: str) -> str:
        return f"{self.prefix}client:{client_id}"

    def render(self, changed: list[tuple[ClientState, int]],
               timeline: list[TermsVersion] | None = None) -> dict[str, View]:
        """The views of the changed clients as they are now, each with its version: the worker
        renders them as its turn ends, for they change again (in place) while it commits."""
        timeline = self.timeline if timeline is None else timeline
        return {client.client_id: View(version, *views(client, terms.rules_at(timeline, self.rules,
                                                                             client.latest_ts_us)))
                for client, version in changed}

    async def publish(self, changed: list[tuple[ClientState, int]]) -> bool:
        """Render the views of the changed clients and write them (``write``)."""
        return await self.write(self.render(changed))

    async def write(self, rendered: dict[str, View]) -> bool:
        """Write the views; True when every view is in Redis. While Redis is unreachable they
        wait in a backlog (newest version per client) and go out with the next batch that gets
        through."""
        for client_id, view in rendered.items():
            held = self.backlog.get(client_id)
            if held is None or held.version <= view.version:
                self.backlog[client_id] = view
        if not self.backlog:
            return True
        if self._script is None:
            self._script = self.client.register_script(GUARDED_WRITE)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for client_id, view in self.backlog.items():
                    await self._script(keys=[self.key(client_id)], args=list(view), client=pipe)
                await pipe.execute()
            self.backlog.clear()
            if self._down_since is not None:
                log.warning("Redis at %s (REDIS_URL) is back after %.0f s; the waiting client views are written",
                            self.where, time.monotonic() - self._down_since)
                self._down_since = None
            return True
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            now = time.monotonic()
            if self._down_since is None or now - self._warned_at >= WARN_EVERY_S:  # not one line per batch
                self._down_since = self._down_since or now
                self._warned_at = now
                log.warning("Redis at %s (REDIS_URL) unreachable for %.0f s: the ledger goes on, %d client views "
                            "wait for it, the client-area API answers 503: %s", self.where, now - self._down_since,
                            len(self.backlog), exc)
            return False

    async def view(self, client_id: str, part: str) -> bytes | None:
        value = await self.client.hget(self.key(client_id), part)
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False


