"""The configuration table of docs/operations.md is the worker's settings: every variable the code
reads, with its default, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from streams.settings import Settings

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (`[^|]*`) \| ", OPERATIONS.read_text("utf-8"), re.M))
    assert rows == {variable: f"`{default}`" for variable, default, _ in Settings.documentation()}
