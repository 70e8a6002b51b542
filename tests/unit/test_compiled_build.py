"""The compiled build (mypyc, made by `make setup`): used only while it is of the sources as they
are, and it gives the bytes the Python source gives."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.compiled import BUILD_DIR, ROOT, decide
from streams.devtools.compile import NO_COMPILER
from streams.devtools.sample_day import write

# `make test` sets it (and so CI): there the tests must run on the compiled build, not skip it,
# unless the build found no C compiler (then the source runs, as on any such machine).
REQUIRED = os.environ.get("REWARDS_REQUIRE_COMPILED") == "1"
SCENARIOS = ROOT / "tests" / "scenarios"


def need_the_compiled_build() -> None:
    """Skip without a fresh build; fail instead where `make test` requires one."""
    directory, why = decide(ROOT, BUILD_DIR)
    if directory is None:
        if REQUIRED and NO_COMPILER not in why:
            pytest.fail(f"no fresh compiled build: {why}")
        pytest.skip(why)


def built(tmp_path: Path, files: dict[str, bytes], **manifest: object) -> tuple[Path, Path]:
    """A source tree and a build of it (its manifest only: ``decide`` reads nothing else)."""
    root, build_dir = tmp_path / "src", tmp_path / "build"
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    build_dir.mkdir()
    fields = {"status": "compiled", "cache_tag": sys.implementation.cache_tag,
              "sources": {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}}
    fields.update(manifest)
    (build_dir / "manifest.json").write_text(json.dumps(fields))
    return root, build_dir


def test_a_build_of_the_sources_as_they_are_is_used(tmp_path: Path) -> None:
    root, build_dir = built(tmp_path, {"handlers/engine.py": b"x = 1\n", "schemas/fields.py": b"y = 2\n"})
    assert decide(root, build_dir) == (build_dir, "compiled (mypyc)")


def test_an_edited_source_makes_the_whole_build_unused_and_names_the_file(tmp_path: Path) -> None:
    root, build_dir = built(tmp_path, {"handlers/engine.py": b"x = 1\n", "schemas/fields.py": b"y = 2\n"})
    (root / "schemas" / "fields.py").write_bytes(b"y = 3\n")
    directory, why = decide(root, build_dir)
    assert directory is None
    assert "schemas/fields.py changed since the compiled build: run `make setup`" in why
    (root / "schemas" / "fields.py").unlink()
    assert decide(root, build_dir)[0] is None  # a compiled module whose source is gone


@pytest.mark.parametrize(("manifest", "reason"), [
    ({"status": "pure", "reason": "no C compiler found"}, "could not be made: no C compiler found"),
    ({"cache_tag": "cpython-399"}, "compiled for cpython-399"),
    ({"sources": {}}, "lists no sources"),
])
def test_a_failed_build_or_one_for_another_python_is_not_used(tmp_path: Path, manifest: dict[str, object],
                                                              reason: str) -> None:
    root, build_dir = built(tmp_path, {"handlers/engine.py": b"x = 1\n"}, **manifest)
    directory, why = decide(root, build_dir)
    assert directory is None and reason in why


def test_no_build_an_unreadable_one_or_the_asking_runs_the_source(tmp_path: Path) -> None:
    root, build_dir = built(tmp_path, {"handlers/engine.py": b"x = 1\n"})
    assert decide(root, build_dir, pure=True) == (None, "pure Python (REWARDS_PURE_PYTHON is set)")
    (build_dir / "manifest.json").write_text("{not json")
    assert "unreadable" in decide(root, build_dir)[1]
    (build_dir / "manifest.json").unlink()
    assert "no compiled build: `make setup` makes one" in decide(root, build_dir)[1]


def test_make_test_runs_on_the_compiled_build() -> None:
    if not REQUIRED:
        pytest.skip("REWARDS_REQUIRE_COMPILED is not set (`make test` sets it)")
    need_the_compiled_build()
    import handlers
    import handlers.engine
    import schemas
    import schemas.fields

    assert handlers.BUILD == schemas.BUILD == "compiled (mypyc)", handlers.BUILD
    for module in (handlers.engine, schemas.fields):
        assert module.__file__ is not None and module.__file__.startswith(str(BUILD_DIR)), module.__file__


def replay(events: Path, out: Path, pure: bool, rules: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REWARDS_PURE_PYTHON"}
    if pure:
        env["REWARDS_PURE_PYTHON"] = "1"
    command = [sys.executable, "-m", "streams.cli", "replay", "--input", str(events), "--output", str(out), "--quiet"]
    if rules is not None:
        command += ["--rules", str(rules)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("case", ["generated", "programs", "partners", *[p.stem for p in (ROOT / "rules").glob("*.toml")]])
def test_the_compiled_build_gives_the_bytes_the_source_gives(case: str, tmp_path: Path) -> None:
    need_the_compiled_build()
    rules: Path | None = None
    if case in ("programs", "partners"):
        events = SCENARIOS / f"{case}.jsonl"
        rules = SCENARIOS / "partners.toml" if case == "partners" else None
    else:  # two generated days, bad inputs among them: every program, rejections, day closes
        events = tmp_path / "events.jsonl"
        write(str(events), clients=80, fills=12_000, days=2, seed=11, bad_share=0.01,
              notional=case == "notional-commissions")
        rules = None if case == "generated" else ROOT / "rules" / f"{case}.toml"
    compiled, pure = tmp_path / "compiled.jsonl", tmp_path / "pure.jsonl"
    assert "engine: compiled (mypyc)" in replay(events, compiled, pure=False, rules=rules)
    assert "engine: pure Python (REWARDS_PURE_PYTHON is set)" in replay(events, pure, pure=True, rules=rules)
    assert compiled.stat().st_size > 0
    assert compiled.read_bytes() == pure.read_bytes()
