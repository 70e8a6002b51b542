"""Issue 27: a bad argument or setting of a command gives one line that names it and its value,
and exit 2; nothing is done with it."""

from __future__ import annotations

import pytest

from streams.cli import main


@pytest.mark.parametrize(("args", "says"), [
    (["publish", "x.jsonl", "--rate", "0"], "argument --rate: must be over 0, got 0"),
    (["publish", "x.jsonl", "--rate", "-3"], "argument --rate: must be over 0, got -3"),
    (["publish", "x.jsonl", "--skew-ms", "-1"], "argument --skew-ms: must be at least 0, got -1"),
    (["lag", "--max-lag", "-5"], "argument --max-lag: must be at least 0, got -5"),
    (["lag", "--max-lag", "many"], "argument --max-lag: 'many' is not a number"),
])
def test_a_negative_or_zero_pace_or_threshold_is_refused(args: list[str], says: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(says)


def test_a_bad_partition_count_is_echoed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REWARDS_PARTITIONS", "-1")
    assert main(["topics", "--print"]) == 2
    assert capsys.readouterr().err.strip() == ("rewards: bad configuration: REWARDS_PARTITIONS must be between 1 and "
                                               "1024, got -1")


def test_a_rules_file_that_is_not_there_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REWARDS_RULES_FILE", "/nowhere/rules.toml")
    monkeypatch.setenv("REWARDS_DATA_DIR", str(tmp_path))
    assert main(["worker"]) == 2
    assert capsys.readouterr().err.strip() == ("rewards: bad rules file: REWARDS_RULES_FILE names "
                                               "'/nowhere/rules.toml', which is not a file")


def test_sample_day_writes_a_file_that_replays(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    assert main(["sample-day", str(folder / "day.jsonl"), "--fills", "500", "--clients", "40", "--seed", "3"]) == 0
    lines = (folder / "day.jsonl").read_bytes().splitlines()
    assert capsys.readouterr().err.strip() == (f"rewards: wrote {len(lines):,} input events (500 fills, 40 clients, "
                                               f"1 day) to {folder / 'day.jsonl'}")
    assert sum(b'"trade.fill"' in line for line in lines) >= 500
    assert main(["replay", "--input", str(folder / "day.jsonl"), "--output", str(folder / "out.jsonl"), "--quiet"]) == 0
    assert (folder / "out.jsonl").read_bytes().count(b'"cashback.accrued"') > 0
