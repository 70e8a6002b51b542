"""`rewards replay`: same engine, deterministic bytes, rejections as outputs, a summary."""

from pathlib import Path

import orjson
import pytest

from streams.cli import main
from streams.devtools.sample_day import write


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    write(str(path), clients=60, fills=3000, seed=3, bad_share=0.01)
    with open(path, "ab") as out:
        out.write(b"\n{broken json\n\xff\xfe not utf-8\n")
    return path


def test_same_input_gives_byte_identical_output(sample: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert main(["replay", "--input", str(sample), "--output", str(first), "--quiet"]) == 0
    assert main(["replay", "--input", str(sample), "--output", str(second), "--quiet"]) == 0
    assert first.read_bytes() == second.read_bytes()
    outputs = [orjson.loads(line) for line in first.read_bytes().splitlines()]
    kinds = {o["type"] for o in outputs}
    assert {"cashback.accrued", "event.rejected", "rebate.payout"} <= kinds
    rejected = [o for o in outputs if o["type"] == "event.rejected"]
    assert {"malformed", "duplicate"} <= {o["reason"] for o in rejected}
    assert all("line" in o["source"] for o in rejected)


def test_summary_counts_events_outputs_and_rejections(sample: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["replay", "--input", str(sample), "--output", str(out), "--quiet"]) == 0
    report = capsys.readouterr().err
    lines = sample.read_bytes().splitlines()
    events_in = sum(1 for line in lines if line.strip())
    assert f"events in: {events_in:,}" in report
    outputs = out.read_bytes().splitlines()
    assert f"outputs: {len(outputs):,}" in report
    malformed = sum(1 for line in outputs if b'"reason":"malformed"' in line)
    assert any(line.split() == ["malformed", f"{malformed:,}"] for line in report.splitlines())


def test_rules_file_overrides_the_defaults(sample: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[cashback]\nrate = "0.20"\n')
    default, doubled = tmp_path / "default.jsonl", tmp_path / "doubled.jsonl"
    main(["replay", "--input", str(sample), "--output", str(default), "--quiet"])
    main(["replay", "--input", str(sample), "--output", str(doubled), "--rules", str(rules), "--quiet"])

    def first_cashback(path: Path) -> dict:
        return next(o for o in map(orjson.loads, path.read_bytes().splitlines())
                    if o["type"] == "cashback.accrued")

    a, b = first_cashback(default), first_cashback(doubled)
    assert a["id"] == b["id"]
    from decimal import Decimal

    assert Decimal(b["amount"]) == pytest.approx(2 * Decimal(a["amount"]), abs=Decimal("0.000001"))


def test_unreadable_input_and_bad_rules_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    (tmp_path / "in.jsonl").write_text("")
    (tmp_path / "bad.toml").write_text("[cashback]\nrate = 0.1\n")
    assert main(["replay", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
                 "--rules", str(tmp_path / "bad.toml")]) == 2
    assert "cashback.rate" in capsys.readouterr().err


def test_replay_refuses_to_write_over_its_input(sample: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(sample.read_bytes())
    link = tmp_path / "same.jsonl"
    link.symlink_to(events)
    for output in (events, link, tmp_path / "." / "events.jsonl"):
        assert main(["replay", "--input", str(events), "--output", str(output), "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == (f"rewards: --output {output} is the input file; "
                                                   "replaying would overwrite the events it reads")
    assert events.read_bytes() == sample.read_bytes()


def test_an_output_in_a_folder_that_is_not_there_is_named_as_given(sample: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "missing" / "out.jsonl"
    assert main(["replay", "--input", str(sample), "--output", str(output), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (f"rewards: --output {output}: the folder {output.parent} "
                                               "does not exist")


def test_ctrl_c_during_a_replay_leaves_no_file_and_prints_one_line(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.support import default_signals

    big = tmp_path / "big.jsonl"
    write(str(big), clients=500, fills=300_000, seed=5)
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"an earlier replay's output\n")
    replay = subprocess.Popen([sys.executable, "-m", "streams.cli", "replay", "--input", str(big), "--output",
                               str(output), "--quiet"], stderr=subprocess.PIPE, text=True,
                              preexec_fn=default_signals)
    partial = tmp_path / f".out.jsonl.partial-{replay.pid}"
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0):  # under way: it has written some outputs
        assert replay.poll() is None and time.monotonic() < deadline, "the replay ended before it could be stopped"
        time.sleep(0.05)
    replay.send_signal(signal.SIGINT)
    _, err = replay.communicate(timeout=60)
    assert replay.returncode == 130
    assert err.strip().splitlines() == [f"rewards: replay interrupted; {output} was not written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl", "out.jsonl"]
    assert output.read_bytes() == b"an earlier replay's output\n"
