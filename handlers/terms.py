"""Program terms over time: which rules govern an input, and whether a new version may join.

A partition keeps a timeline of versions (``Shared.terms``, sorted by ``effective``). The rules
in force at event time T are the version with the greatest ``effective`` <= T (the defaults
overridden by its keys), or, before the first version, the deployment's rules file. Whether a
``program.terms`` event joins the timeline depends only on the event and the versions already
on it, never on a partition's own clients or clock: every partition of the worker reads the same
versions in the same order (one partition of one topic), so all decide alike.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from typing import Any, Final

import msgspec

from handlers.rules import Rules, RulesError
from handlers.state import TermsVersion
from handlers.verdict import Refusal
from schemas.inputs import ProgramTerms
from schemas.timefmt import parse_ts_us

_canonical: Final = msgspec.json.Encoder(order="sorted")
# Built rules by (the deployment's rules, a version's digest): a version's Rules is built once
# per process. The deployment's Rules is kept in the value so that its id is not reused.
_BUILT: Final[dict[tuple[int, str], tuple[Rules, Rules]]] = {}


def canonical(rules: dict[str, Any]) -> bytes:
    """A version's rules as canonical JSON: keys sorted at every level, no spaces."""
    return _canonical.encode(rules)


def digest(canonical_rules: bytes) -> str:
    return hashlib.sha256(canonical_rules).hexdigest()


def rules_at(timeline: list[TermsVersion], base: Rules, ts_us: int) -> Rules:
    """The rules in force at ``ts_us``: ``base`` (the deployment's) before the first version."""
    if not timeline or ts_us < timeline[0].effective_us:
        return base
    return rules_of(timeline[bisect_right(timeline, ts_us, key=_effective) - 1], base)


def version_at(timeline: list[TermsVersion], ts_us: int) -> TermsVersion | None:
    """The version in force at ``ts_us``; None before the first."""
    index = bisect_right(timeline, ts_us, key=_effective)
    return timeline[index - 1] if index else None


def rules_of(version: TermsVersion, base: Rules) -> Rules:
    key = (id(base), version.digest)
    found = _BUILT.get(key)
    if found is None:
        found = _BUILT[key] = (base, Rules.for_terms(msgspec.json.decode(version.rules), base))
    return found[1]


def _effective(version: TermsVersion) -> int:
    return version.effective_us


def admit(timeline: list[TermsVersion], event: ProgramTerms, ts_us: int, base: Rules) -> TermsVersion | Refusal:
    """The version ``event`` publishes, or why it cannot join the timeline. Paid rewards are
    never recomputed: a version takes effect after its own ``ts``; a version name stands for
    one content and one instant; its rules are checked as a rules file is."""
    effective_us = parse_ts_us(event.effective)
    if effective_us <= ts_us:
        return Refusal("terms_retroactive", f"version {event.version!r} takes effect at {event.effective}, not "
                       f"after it was published ({event.ts}): paid rewards are never recomputed "
                       "(study a past change with `rewards whatif`)")
    rules = canonical(event.rules)
    rules_digest = digest(rules)
    for version in timeline:
        if version.version == event.version:
            if version.digest == rules_digest and version.effective_us == effective_us:
                return Refusal("duplicate", f"version {event.version!r} was already accepted (event "
                                            f"{version.cause_id!r}); no second effect")
            return Refusal("terms_conflict", f"version {event.version!r} was accepted before with other "
                                             f"content (event {version.cause_id!r})")
        if version.effective_us == effective_us:
            return Refusal("terms_conflict", f"version {version.version!r} already takes effect at "
                                             f"{version.effective}")
    try:
        built = Rules.for_terms(event.rules, base)
    except RulesError as exc:
        return Refusal("terms_invalid", f"version {event.version!r}: {exc}")
    version = TermsVersion(version=event.version, effective_us=effective_us, effective=event.effective,
                           digest=rules_digest, rules=rules, cause_id=event.id)
    _BUILT[(id(base), rules_digest)] = (base, built)
    return version


def join(timeline: list[TermsVersion], version: TermsVersion) -> None:
    """Add an admitted version in its place (by ``effective``)."""
    timeline.insert(bisect_right(timeline, version.effective_us, key=_effective), version)
