"""The rules file: defaults from handlers/rules.toml, overridden key by key.

Parsing takes text, not a path: reading the file is the shell's job.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib import resources
from typing import Any, Final

from schemas.fields import is_money
from schemas.inputs import LIVE_ACCOUNT_TYPES

DEFAULT_RULES_TOML: Final = resources.files("handlers").joinpath("rules.toml").read_text("utf-8")
US_PER_DAY: Final = 86_400_000_000
MAX_OVERRIDE_LEVELS: Final = 10


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class BonusTier:
    percent: int
    account_types: frozenset[str]
    min_deposit_usd: Decimal
    first_deposit_only: bool = False  # only a client's first deposit of new money earns it
    turnover: bool = True             # False: a credit bonus, no lots to trade (never unlocked)
    release_per_lot_usd: Decimal = Decimal(0)  # > 0: convertible, released as cash per lot at day closes


# The sections that are not program terms: windows of event time, parking, history limits. A
# version of the terms (program.terms, handlers.terms) cannot change them: every version keeps
# the deployment's, so that what the engine remembers and for how long never depends on time.
STRUCTURAL_SECTIONS: Final = ("busts", "dedupe", "parking")

TIER_KEYS: Final = frozenset({"account_types", "min_deposit_usd", "first_deposit_only", "turnover",
                              "release_per_lot_usd"})
OPTIONAL_TIER_KEYS: Final = frozenset({"first_deposit_only", "turnover", "release_per_lot_usd"})


@dataclass(frozen=True, slots=True)
class Rules:
    cashback_rate: Decimal
    coverage_share: Decimal
    welcome_amount_usd: Decimal
    welcome_excluded_countries: frozenset[str]
    welcome_transfer_min_deposit_usd: Decimal
    welcome_eligible_conditions: frozenset[str]
    bonus_usd_per_lot: Decimal
    bonus_cap_usd: Decimal
    bonus_tiers: dict[int, BonusTier]
    min_hold_us: int
    bust_window_us: int
    dedupe_window_us: int
    park_window_us: int          # 0: parking off (an event whose prerequisite is missing is refused at once)
    park_max_per_client: int
    override_shares: tuple[Decimal, ...] = ()  # a master partner's share of level 1, 2, ... below it
    rebate_basis: str = "lots"  # "lots": plan rates per standard lot, closes; "notional": per 100,000 USD, per side

    @classmethod
    def default(cls) -> Rules:
        return _DEFAULT

    @classmethod
    def from_toml(cls, override_text: str | None = None) -> Rules:
        merged = tomllib.loads(DEFAULT_RULES_TOML)
        if override_text:
            try:
                override = tomllib.loads(override_text)
            except tomllib.TOMLDecodeError as exc:
                raise RulesError(f"rules file is not valid TOML: {exc}") from None
            _merge(merged, override, "")
        return _build(merged)

    @classmethod
    def for_terms(cls, terms: dict[str, Any], structural: Rules) -> Rules:
        """A version of the program terms: the defaults overridden by ``terms`` (a rules file's
        keys, as a JSON object), with ``structural``'s windows, parking and history limits,
        which a version may not name."""
        for section in STRUCTURAL_SECTIONS:
            if section in terms:
                named = terms[section]
                key = f"{section}.{next(iter(named))}" if isinstance(named, dict) and named else section
                raise RulesError(f"`{key}` is not a program term (windows, parking and history limits "
                                 "stay the deployment's rules file's)")
        merged = tomllib.loads(DEFAULT_RULES_TOML)
        _merge(merged, terms, "")
        built = _build(merged)
        return replace(built, bust_window_us=structural.bust_window_us, dedupe_window_us=structural.dedupe_window_us,
                       park_window_us=structural.park_window_us, park_max_per_client=structural.park_max_per_client)


def _merge(base: dict[str, Any], override: dict[str, Any], prefix: str) -> None:
    for key, value in override.items():
        path = f"{prefix}{key}"
        if key not in base:
            if prefix == "deposit_bonus.tiers." and isinstance(value, dict):
                base[key] = dict(value)  # a tier the defaults do not offer: checked whole by _build
                continue
            if not (prefix.startswith("deposit_bonus.tiers.") and key in OPTIONAL_TIER_KEYS):
                raise RulesError(f"unknown rules key `{path}`")
            base[key] = value
            continue
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise RulesError(f"`{path}` must be a table")
            _merge(base[key], value, f"{path}.")
        else:
            base[key] = value


def _decimal(table: dict[str, Any], key: str, path: str) -> Decimal:
    value = table.get(key)
    if not isinstance(value, str) or not is_money(value):
        raise RulesError(f"`{path}.{key}` must be a non-negative decimal string such as \"0.10\", "
                         f"got {value!r}")
    return Decimal(value)


def _int(table: dict[str, Any], key: str, path: str) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RulesError(f"`{path}.{key}` must be a non-negative integer, got {value!r}")
    return value


def _bool(table: dict[str, Any], key: str, path: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise RulesError(f"`{path}.{key}` must be true or false, got {value!r}")
    return value


def _strings(table: dict[str, Any], key: str, path: str) -> frozenset[str]:
    value = table.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RulesError(f"`{path}.{key}` must be a list of strings, got {value!r}")
    return frozenset(value)


def _choice(table: dict[str, Any], key: str, path: str, choices: tuple[str, ...]) -> str:
    value = table.get(key)
    if value not in choices:
        raise RulesError(f"`{path}.{key}` must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return str(value)


def _shares(table: dict[str, Any], key: str, path: str) -> tuple[Decimal, ...]:
    value = table.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) and is_money(item) for item in value):
        raise RulesError(f"`{path}.{key}` must be a list of decimal strings such as [\"0.20\", \"0.05\"], "
                         f"got {value!r}")
    shares = tuple(Decimal(item) for item in value)
    if any(share > 1 for share in shares) or sum(shares, Decimal(0)) > 1:
        raise RulesError(f"`{path}.{key}`: each share and their sum must be at most 1, got {value!r}")
    if len(shares) > MAX_OVERRIDE_LEVELS:
        raise RulesError(f"`{path}.{key}`: at most {MAX_OVERRIDE_LEVELS} levels, got {len(shares)}")
    return shares


def _build(doc: dict[str, Any]) -> Rules:
    cashback, welcome, bonus = doc["cashback"], doc["welcome"], doc["deposit_bonus"]
    tiers: dict[int, BonusTier] = {}
    for name, tier in bonus["tiers"].items():
        if not name.isdigit() or int(name) <= 0:
            raise RulesError(f"deposit bonus tier `{name}` must be a whole percent")
        path = f"deposit_bonus.tiers.{name}"
        if int(name) > 1000:
            raise RulesError(f"deposit bonus tier `{name}` must be at most 1000 percent")
        unknown_keys = sorted(set(tier) - TIER_KEYS)
        if unknown_keys:
            raise RulesError(f"unknown rules key `{path}.{unknown_keys[0]}`")
        account_types = _strings(tier, "account_types", path)
        unknown = account_types - set(LIVE_ACCOUNT_TYPES)
        if unknown:
            raise RulesError(f"`{path}.account_types` names unknown account types {sorted(unknown)}")
        release = _decimal(tier, "release_per_lot_usd", path) if "release_per_lot_usd" in tier else Decimal(0)
        turnover = _bool(tier, "turnover", path, True)
        if release and not turnover:
            raise RulesError(f"`{path}`: a credit bonus (turnover = false) cannot be released per lot")
        tiers[int(name)] = BonusTier(int(name), account_types, _decimal(tier, "min_deposit_usd", path),
                                     _bool(tier, "first_deposit_only", path, False), turnover, release)
    rules = Rules(
        cashback_rate=_decimal(cashback, "rate", "cashback"),
        coverage_share=_decimal(cashback, "coverage_share", "cashback"),
        welcome_amount_usd=_decimal(welcome, "amount_usd", "welcome"),
        welcome_excluded_countries=_strings(welcome, "excluded_countries", "welcome"),
        welcome_transfer_min_deposit_usd=_decimal(welcome, "transfer_min_deposit_usd", "welcome"),
        welcome_eligible_conditions=_strings(welcome, "eligible_conditions", "welcome"),
        bonus_usd_per_lot=_decimal(bonus, "usd_per_lot", "deposit_bonus"),
        bonus_cap_usd=_decimal(bonus, "cap_usd", "deposit_bonus"),
        bonus_tiers=tiers,
        min_hold_us=_int(doc["rebates"], "min_hold_seconds", "rebates") * 1_000_000,
        bust_window_us=_int(doc["busts"], "window_days", "busts") * US_PER_DAY,
        dedupe_window_us=_int(doc["dedupe"], "window_days", "dedupe") * US_PER_DAY,
        park_window_us=_int(doc["parking"], "window_seconds", "parking") * 1_000_000,
        park_max_per_client=_int(doc["parking"], "max_per_client", "parking"),
        override_shares=_shares(doc["partners"], "override_shares", "partners"),
        rebate_basis=_choice(doc["rebates"], "basis", "rebates", ("lots", "notional")),
    )
    if rules.cashback_rate > 1 or rules.coverage_share > 1:
        raise RulesError("`cashback.rate` and `cashback.coverage_share` must be at most 1")
    if rules.park_window_us and rules.park_max_per_client < 1:
        raise RulesError("`parking.max_per_client` must be at least 1 while parking is on")
    if rules.bonus_usd_per_lot == 0:
        raise RulesError("`deposit_bonus.usd_per_lot` must be greater than 0")
    return rules


_DEFAULT: Final = Rules.from_toml()
