"""Whether the compiled build is used: one decision for every compiled package.

``make setup`` compiles the engine's modules with mypyc (``handlers/``, and the field checks and
codec of ``schemas/``, streams.devtools.compile) into .build/compiled, with a manifest of the hashes of
the sources it was made from. The build is used only while every one of those sources is
unchanged, and then for all of them or none: compiled modules of one build call each other
directly, so a stale one can never be mixed with an edited one. REWARDS_PURE_PYTHON=1 runs
the Python source instead. The outputs are the same either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
BUILD_DIR: Final = ROOT / ".build" / "compiled"


@cache
def build() -> tuple[Path | None, str]:
    """(the build's directory, or None: the source runs; what runs and why)."""
    directory, why = decide(ROOT, BUILD_DIR, bool(os.environ.get("REWARDS_PURE_PYTHON")))
    if directory is not None:
        sys.path.append(str(directory))  # mypyc's shared runtime for the build: a top-level module
    return directory, why


def source_digest(path: Path) -> str:
    """What the manifest records of a compiled module's source, and what it is checked against."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decide(root: Path, build_dir: Path, pure: bool = False) -> tuple[Path | None, str]:
    """Whether the build in ``build_dir`` is of the sources under ``root`` as they are now."""
    if pure:
        return None, "pure Python (REWARDS_PURE_PYTHON is set)"
    try:
        manifest = json.loads((build_dir / "manifest.json").read_text())
    except FileNotFoundError:
        return None, "pure Python (no compiled build: `make setup` makes one)"
    except (OSError, ValueError) as exc:
        return None, f"pure Python (the compiled build's manifest is unreadable: {exc}; run `make setup`)"
    if manifest.get("status") != "compiled":
        return None, f"pure Python (the compiled build could not be made: {manifest.get('reason')})"
    if manifest.get("cache_tag") != sys.implementation.cache_tag:
        return None, (f"pure Python (compiled for {manifest.get('cache_tag')}, running "
                      f"{sys.implementation.cache_tag}: run `make setup`)")
    sources = manifest.get("sources")
    if not isinstance(sources, dict) or not sources:
        return None, "pure Python (the compiled build's manifest lists no sources: run `make setup`)"
    for name, digest in sources.items():
        try:
            current = source_digest(root / name)
        except OSError:
            current = ""
        if current != digest:
            return None, f"pure Python ({name} changed since the compiled build: run `make setup`)"
    return build_dir, "compiled (mypyc)"


def attach(package_path: list[str], package: str) -> str:
    """Called by a compiled package's ``__init__`` with its ``__path__``: its modules are then
    looked for in the build first, then in the source (where the modules never compiled are)."""
    directory, why = build()
    if directory is not None:
        package_path.insert(0, str(directory / package))
    return why
