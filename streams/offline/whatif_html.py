"""The what-if report as one self-contained HTML page: inline CSS and SVG, no script, nothing
fetched. A summary table first (each program under both rule sets, the difference in USD and
%), then per program a bar chart of its daily totals (base and candidate side by side) and its
totals per account type, then the clients and partners most affected and the outputs changed.

Amounts are printed from the report's decimal strings; only the bars' geometry is computed
in floating point (pixels, not money)."""

from __future__ import annotations

from html import escape
from typing import Any, Final

BASE_COLOUR: Final = "#4c78a8"
CANDIDATE_COLOUR: Final = "#f58518"
WIDTH: Final = 760
HEIGHT: Final = 240
LEFT: Final = 84
BOTTOM: Final = 36
TOP_GAP: Final = 14
MAX_DAY_LABELS: Final = 16

STYLE: Final = f"""
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 980px;
       color: #1d2530; background: #fff; padding: 0 16px; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }}
h2 {{ font-size: 17px; margin: 28px 0 6px; border-bottom: 1px solid #d9dee5; padding-bottom: 4px; }}
.meta {{ color: #566270; margin: 0 0 14px; }}
table {{ border-collapse: collapse; margin: 6px 0 12px; }}
th, td {{ padding: 3px 10px; border-bottom: 1px solid #eceff3; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f4f6f9; font-weight: 600; }}
td.up {{ color: #a33b00; }} td.down {{ color: #19692c; }}
.legend span {{ display: inline-block; margin-right: 16px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 5px; }}
.base {{ background: {BASE_COLOUR}; }} .candidate {{ background: {CANDIDATE_COLOUR}; }}
.unit {{ color: #566270; font-weight: normal; font-size: 13px; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #3b4652; }}
"""


def render(report: dict[str, Any]) -> str:
    base, candidate = report["base"], report["candidate"]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>What if: the candidate rules against the base rules</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>What if: the candidate rules against the base rules</h1>",
        f'<p class="meta">base <b>{escape(base["rules"])}</b> (sha256 {escape(base["sha256"][:12])}) · '
        f'candidate <b>{escape(candidate["rules"])}</b> (sha256 {escape(candidate["sha256"][:12])})<br>'
        f'history: {escape(report["history"])} · {report["events"]:,} events · '
        f'{len(report["days"])} day{"" if len(report["days"]) == 1 else "s"}{_span(report["days"])}</p>',
        '<p class="legend"><span><i class="swatch base"></i>base</span>'
        '<span><i class="swatch candidate"></i>candidate</span></p>',
        '<h2>Totals by program</h2>', _summary(report["programs"]),
    ]
    for program in report["programs"]:
        parts.append(f'<h2 id="{program["program"]}">{escape(program["title"])} '
                     f'<span class="unit">{escape(program["unit"])}</span></h2>')
        if not program["by_day"]:
            parts.append("<p>Nothing under either rule set.</p>")
            continue
        parts.append(_chart(program))
        parts.append(_table(["account type", "base", "candidate", "difference", "%"],
                            [[r["account_type"], *_amounts(r)] for r in program["by_account_type"]]))
    parts.append("<h2>Clients most affected</h2>")
    parts.append(_table(["client", "base", "candidate", "difference", "%"],
                        [[r["client_id"], *_amounts(r)] for r in report["clients_most_affected"]])
                 if report["clients_most_affected"] else "<p>No client gets a different amount.</p>")
    parts.append("<h2>Partners most affected</h2>")
    parts.append(_table(["partner", "base", "candidate", "difference", "%"],
                        [[r["partner_id"], *_amounts(r)] for r in report["partners_most_affected"]])
                 if report["partners_most_affected"] else "<p>No partner gets a different amount.</p>")
    outputs = report["outputs"]
    parts.append("<h2>Outputs</h2>")
    parts.append(f'<p><span id="outputs-changed">{outputs["changed"]:,}</span> outputs differ (compared input by '
                 f'input, by id), of {outputs["base"]:,} under the base rules and {outputs["candidate"]:,} under '
                 "the candidate.</p>")
    if outputs["changed_by_type"]:
        parts.append(_table(["output type", "changed"],
                            [[kind, f"{count:,}"] for kind, count in outputs["changed_by_type"].items()]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _span(days: list[str]) -> str:
    return f", {days[0]} to {days[-1]}" if days else ""


def _summary(programs: list[dict[str, Any]]) -> str:
    return _table(["program", "base", "candidate", "difference", "%"],
                  [[f'<a href="#{p["program"]}">{escape(p["title"])}</a>', *_amounts(p)] for p in programs],
                  raw_first=True)


def _amounts(row: dict[str, Any]) -> list[str]:
    pct = row["difference_pct"]
    return [_grouped(row["base"]), _grouped(row["candidate"]), _grouped(row["difference"]),
            "–" if pct is None else f"{pct} %"]


def _grouped(amount: str) -> str:
    """A decimal string with thousands separators, its digits untouched."""
    sign, digits = ("-", amount[1:]) if amount.startswith("-") else ("", amount)
    whole, _, fraction = digits.partition(".")
    whole = f"{int(whole):,}"
    return sign + whole + (f".{fraction}" if fraction else "")


def _table(header: list[str], rows: list[list[str]], raw_first: bool = False) -> str:
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for n, cell in enumerate(row):
            text = cell if (raw_first and n == 0) else escape(cell)
            tone = ""
            if n == 3 and cell not in ("0", ""):
                tone = ' class="down"' if cell.startswith("-") else ' class="up"'
            cells.append(f"<td{tone}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _chart(program: dict[str, Any]) -> str:
    """Daily totals as grouped bars, with a value axis (three ticks) and day labels."""
    days = program["by_day"]
    values = [(float(d["base"]), float(d["candidate"])) for d in days]  # geometry only
    high = max(0.0, *(v for pair in values for v in pair))
    low = min(0.0, *(v for pair in values for v in pair))
    if high == low:
        high = low + 1.0
    plot_w, plot_h = WIDTH - LEFT - 12, HEIGHT - BOTTOM - TOP_GAP

    def y(value: float) -> float:
        return TOP_GAP + (high - value) / (high - low) * plot_h

    slot = plot_w / len(days)
    bar = max(1.0, min(18.0, slot * 0.38))
    out = [f'<svg id="chart-{program["program"]}" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(program["title"])} per day">']
    out.append('<g class="y-axis">')
    for tick in (low, (low + high) / 2, high) if low < 0 else (0.0, high / 2, high):
        ty = y(tick)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - 12}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e3e7ec"/>')
        out.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" class="tick">{_tick(tick)}</text>')
    out.append("</g>")
    zero = y(0.0)
    every = max(1, -(-len(days) // MAX_DAY_LABELS))
    for n, (day, (b, c)) in enumerate(zip(days, values, strict=True)):
        x0 = LEFT + n * slot + (slot - 2 * bar) / 2
        for x, value, colour in ((x0, b, BASE_COLOUR), (x0 + bar, c, CANDIDATE_COLOUR)):
            top, bottom = sorted((y(value), zero))
            out.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{max(bottom - top, 0.5):.1f}" '
                       f'fill="{colour}"><title>{escape(day["day"])}: {escape(day["base" if colour == BASE_COLOUR else "candidate"])}'
                       "</title></rect>")
        if n % every == 0:
            out.append(f'<text x="{LEFT + (n + 0.5) * slot:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                       f'{escape(day["day"][5:])}</text>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - 12}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#8a96a3"/>')
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">day (UTC)</text>')
    out.append("</svg>")
    return "".join(out)


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.2f}"
