"""The command says what it is and what each subcommand is for, and which environment variables
it reads; ``--version`` names the versions a bug report needs."""

from __future__ import annotations

import re
import sys
from importlib.metadata import version

import pytest

from streams.cli import READS, build_parser, main


def test_version_names_the_release_and_the_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"rewards {version('rewards')} (Python {sys.version.split()[0]}, aiokafka "
        f"{version('aiokafka')}, faust-streaming {version('faust-streaming')})")


def test_every_command_says_what_it_is_for_and_what_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    overview = build_parser().format_help()
    assert "client-incentive programs" in overview and "Settings come from the environment" in overview
    found = re.search(r"\{([a-z,-]+)\}", overview)
    assert found
    names = found.group(1).split(",")
    assert set(names) <= set(READS)
    for name in names:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        description = text.split("\n\n")[1]
        assert len(description) > 30 and description[0].isupper(), (name, description)
        assert re.search(r"Reads: \S", text), name
        assert "``" not in text, name  # no reStructuredText left in what a user reads
