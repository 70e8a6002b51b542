"""Compile the rule engine (``handlers/`` and the field checks of ``schemas/``) with mypyc,
into .build/compiled.

    python -m streams.devtools.compile        # what `make setup` runs

The modules are compiled as they are: mypy-strict Python. The records made for every input
(``handlers.step``) are plain classes, native once compiled, and so is the client state
(``handlers.clientstate``); the rest of the persisted state stays msgspec Structs in modules left
as source (``handlers.shared`` says why). The build goes beside the sources, not
over them, with a manifest of the hashes of the sources it was made from; ``schemas.compiled``
uses it only while every one of those sources is unchanged (an edited module never runs as its
stale compiled self), and never when REWARDS_PURE_PYTHON is set. Outputs are the same either
way (tests/unit/test_compiled_build.py checks it byte for byte).

Without a C compiler, or if mypyc fails, this says so, writes a manifest saying why, and exits
0: the engine then runs as Python source, with the same outputs, slower.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Final

from schemas.compiled import BUILD_DIR, ROOT, source_digest

# Not compiled: the package's init, and the modules that define msgspec Structs: mypyc does
# not compile those, and the persisted state must stay Structs (handlers.shared says why).
HANDLERS_NOT_COMPILED: Final = frozenset({"__init__.py", "state.py", "shared.py"})
SCHEMAS_COMPILED: Final = ("fields.py", "timefmt.py", "checks.py", "codec.py")
GROUP: Final = "rewards_engine"  # mypyc's shared runtime module: rewards_engine__mypyc
# The one failure that is not a defect where it happens (`make test` requires the build elsewhere).
NO_COMPILER: Final = "no C compiler found (cc or gcc on PATH, or CC)"


def sources() -> list[Path]:
    handlers = sorted(p for p in (ROOT / "handlers").glob("*.py") if p.name not in HANDLERS_NOT_COMPILED)
    return handlers + [ROOT / "schemas" / name for name in SCHEMAS_COMPILED]


def write_manifest(status: str, **fields: Any) -> None:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    manifest = {"status": status, "cache_tag": sys.implementation.cache_tag, **fields}
    (BUILD_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def build(verbose: bool = False) -> str | None:
    """Build into BUILD_DIR; None when it worked, else why not."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return NO_COMPILER
    try:
        from mypyc.build import mypycify
        from setuptools import setup  # type: ignore[import-untyped]
    except ImportError as exc:
        return f"mypyc or setuptools is not installed ({exc}); `make setup` installs them"
    work = ROOT / ".build" / "mypyc-work"
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = io.StringIO()
    here = Path.cwd()
    try:
        os.chdir(ROOT)  # mypyc names modules by their path from here
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            modules = mypycify([str(p.relative_to(ROOT)) for p in sources()], opt_level="3",
                               target_dir=str(work / "c"), group_name=GROUP)
            setup(name="rewards-compiled", ext_modules=modules, script_args=[
                "build_ext", "--build-lib", str(BUILD_DIR), "--build-temp", str(work / "obj"), "--quiet"])
    except (Exception, SystemExit) as exc:  # setuptools exits on a compiler error
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
        tail = [line for line in log.getvalue().splitlines() if line.strip()][-15:]
        return f"mypyc failed ({exc!r}):\n    " + "\n    ".join(tail)
    finally:
        os.chdir(here)
        shutil.rmtree(work, ignore_errors=True)
    if verbose:
        print(log.getvalue(), file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="show mypyc's and the compiler's output")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the build fails (default: fall back)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    compiled = sources()
    hashes = {str(p.relative_to(ROOT)): source_digest(p) for p in compiled}
    failure = build(args.verbose)
    if failure is not None:
        write_manifest("pure", reason=failure)
        print(f"rewards: the compiled engine was not built: {failure}\n"
              "rewards: the engine runs as Python source (same outputs, slower); "
              "install a C compiler and run `make setup` again for the compiled one.", file=sys.stderr)
        return 1 if args.strict else 0
    # Hashed before the build: a source edited while it ran makes the build stale, never wrongly fresh.
    write_manifest("compiled", sources=hashes)
    print(f"rewards: compiled {len(compiled)} modules of handlers/ and schemas/ with mypyc into "
          f"{BUILD_DIR.relative_to(ROOT)} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
