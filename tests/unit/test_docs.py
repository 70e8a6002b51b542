"""docs/ is the contract a cloner reads: it names every input and output type with every field
the JSON Schemas have, every reason code the models can give, and every key of the rules file;
the README points there, not outside the repository, and is only the front door."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest

from schemas.outputs import (AllocationRefusal, BonusRefusal, RejectionReason, TransferRefusal,
                             WelcomeRefusal)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = (ROOT / "docs" / "events.md").read_text("utf-8")
PROGRAMS = (ROOT / "docs" / "programs.md").read_text("utf-8")
ENVELOPE = {"input": {"type", "id", "ts", "client_id"}, "output": {"type", "id", "cause_id", "ts", "client_id"}}


def rows(text: str) -> dict[str, str]:
    """First cell (a `code` name) -> the whole table row."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_.]+)` \|.*$", text, re.M)}


@pytest.mark.parametrize("kind", ["input", "output"])
def test_every_event_type_is_documented_with_every_field(kind: str) -> None:
    table = rows(EVENTS)
    for path in sorted((ROOT / "schemas" / "json" / kind).glob("*.schema.json")):
        schema = json.loads(path.read_text())
        name = path.name.removesuffix(".schema.json")
        assert name in table, f"docs/events.md has no row for {kind} {name}"
        missing = [field for field in schema["properties"]
                   if field not in ENVELOPE[kind] and f"`{field}`" not in table[name]]
        assert missing == [], f"docs/events.md: {name} lacks {missing}"


def test_every_reason_code_is_documented() -> None:
    codes = {code for literal in (RejectionReason, AllocationRefusal, WelcomeRefusal, TransferRefusal, BonusRefusal)
             for code in get_args(literal)}
    reasons = rows(EVENTS.split("### Reason codes", 1)[1])
    assert sorted(codes - set(reasons)) == []
    assert sorted(set(reasons) - codes) == []  # and none the code cannot give


def keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found |= keys(value, f"{name}.")
        else:
            found.add(name)
    return found


def test_every_rules_file_key_is_in_the_rulebook() -> None:
    defaults = keys(tomllib.loads((ROOT / "rules.toml").read_text("utf-8")))
    named = {re.sub(r"tiers\.\d+\.", "tiers.<percent>.", key) for key in defaults}
    documented = PROGRAMS.replace("deposit_bonus.tiers.<percent>`: `account_types`, `min_deposit_usd`",
                                  "deposit_bonus.tiers.<percent>.account_types deposit_bonus.tiers.<percent>.min_deposit_usd")
    assert sorted(key for key in named if key not in documented) == []


def test_the_readme_is_a_front_door_to_the_docs_in_the_repository() -> None:
    """At most ~200 lines: the two commands near the top, the diagram, the layout, and links that
    all lead to pages of the repository."""
    readme = (ROOT / "README.md").read_text("utf-8")
    assert len(readme.splitlines()) <= 200
    assert readme.index("make demo") < readme.index("make test") < 1200
    assert "../shared" not in readme
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert {"docs/events.md", "docs/programs.md", "docs/operations.md", "docs/benchmarks.md"} <= set(links)
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_every_page_of_docs_links_only_to_pages_that_exist() -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        for link in re.findall(r"\]\(([^)#:]+)\)", page.read_text("utf-8")):
            assert (page.parent / link).exists(), f"{page.name} links to {link}, which does not exist"
