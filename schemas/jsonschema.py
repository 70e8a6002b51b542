"""JSON Schema documents for every event type, generated from the models.

    python -m schemas.jsonschema          # rewrite schemas/json/
    python -m schemas.jsonschema --check  # exit 1 when the checked-in files are stale
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson

from schemas.inputs import INPUT_MODELS
from schemas.outputs import OUTPUT_MODELS, type_of

SCHEMA_DIR: Final = Path(__file__).parent / "json"
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def documents() -> dict[str, dict[str, Any]]:
    """File name -> schema, one per input and per output event type."""
    docs: dict[str, dict[str, Any]] = {}
    for event_type, model in INPUT_MODELS.items():
        docs[f"input/{event_type}.schema.json"] = _document(model, event_type, "input")
    for output_model in OUTPUT_MODELS:
        event_type = type_of(output_model)
        docs[f"output/{event_type}.schema.json"] = _document(output_model, event_type, "output")
    return docs


def _document(model: Any, event_type: str, direction: str) -> dict[str, Any]:
    (definition,), components = msgspec.json.schema_components([model], ref_template="#/$defs/{name}")
    body = dict(components[definition["$ref"].rsplit("/", 1)[1]])
    body.pop("title", None)
    if direction == "output":
        # Every output field is always present (null where it has no value).
        body["required"] = sorted(body["properties"])
    return {
        "$schema": DIALECT,
        "$id": f"rewards/{direction}/{event_type}.schema.json",
        "title": f"{event_type} ({direction})",
        **body,
    }


def _render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, doc in documents().items():
        path = SCHEMA_DIR / name
        text = _render(doc)
        if check:
            if not path.exists() or path.read_bytes() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text)
    if stale:
        print("stale JSON Schema files (run `python -m schemas.jsonschema`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
