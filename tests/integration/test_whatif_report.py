"""`rewards whatif` end to end: on the worker's sequenced log (--from-kafka) it finds what the
worker paid, and its report opens in a real headless Chromium, whose screenshot (kept in
artifacts/) shows the charts in both colours."""

from __future__ import annotations

import struct
import subprocess
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from handlers.rules import Rules
from streams.devtools.localservices import debian_binary
from streams.devtools.publish import publish_per_topic
from streams.offline.whatif import compare, report, sequenced_history, write_report
from streams.offline.whatif_html import BASE_COLOUR, CANDIDATE_COLOUR
from streams.settings import Settings
from tests.integration.conftest import ensure, read_all, wait_caught_up
from tests.unit.test_whatif import CANDIDATE_12, about, totals

SCENARIOS = Path(__file__).parents[1] / "scenarios"
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
pytestmark = pytest.mark.integration


async def test_whatif_from_kafka_finds_what_the_worker_paid(settings: Settings, start_worker: Any) -> None:
    lines = (SCENARIOS / "sample_day.jsonl").read_bytes().splitlines()
    await ensure(settings)
    worker = start_worker()
    await publish_per_topic(lines, settings, skew_ms=200, seed=5)  # a producer per source topic, with skew
    try:
        await wait_caught_up(settings)
    except TimeoutError:
        pytest.fail(worker.tail())
    sent = await read_all(settings.kafka_bootstrap, settings.ledger_topic, settings.deadletter_topic)
    history = await sequenced_history(settings)
    assert len(history) == len(lines), "every input once, broadcast copies included once"
    content = report(compare(history, Rules.default(), Rules.from_toml(CANDIDATE_12)), about())
    paid = totals(sent)
    programs = {p["program"]: p for p in content["programs"]}
    assert any(Decimal(p["base"]) for p in programs.values())
    for key, program in programs.items():
        assert Decimal(program["base"]) == paid[key], key
    assert Decimal(programs["cashback_accrued"]["candidate"]) > Decimal(programs["cashback_accrued"]["base"])


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, width = 8, b"", 0
    height = depth = colour = 0
    while at < len(png):
        size, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + size]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", data[:10])
        elif kind == b"IDAT":
            idat += data
        at += 12 + size
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def count_colour(png: bytes, colour: str) -> int:
    width, _, rows = pixels(png)
    step = len(rows[0]) // width
    rgb = bytes.fromhex(colour.lstrip("#"))
    return sum(1 for row in rows for x in range(0, len(row), step) if row[x:x + 3] == rgb)


def test_the_report_in_headless_chromium(tmp_path: Path) -> None:
    from streams.devtools.sample_day import SampleDay

    history = list(SampleDay(clients=300, fills=12_000, days=3, seed=5).lines())
    content = write_report(compare(history, Rules.default(), Rules.from_toml(CANDIDATE_12)), about(), tmp_path)
    chromium = debian_binary("chromium", "chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "whatif-report.png"
    screenshot.unlink(missing_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-extensions", "--hide-scrollbars",
             f"--user-data-dir={ARTIFACTS / '.chromium-profile'}"]
    shot = subprocess.run([chromium, *flags, "--window-size=1100,1400", f"--screenshot={screenshot}",
                           (tmp_path / "report.html").as_uri()], capture_output=True, timeout=120, text=True)
    assert shot.returncode == 0, shot.stderr[-2000:]
    png = screenshot.read_bytes()
    width, height, _ = pixels(png)
    assert (width, height) == (1100, 1400)
    # the first charts are in view: bars of both rule sets, each a block of solid colour
    base, candidate = count_colour(png, BASE_COLOUR), count_colour(png, CANDIDATE_COLOUR)
    assert base > 2_000 and candidate > 2_000, (base, candidate)
    assert len(content["days"]) >= 3
