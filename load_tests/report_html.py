"""The load summary (``benchmarks.load``) or a soak's samples (``benchmarks.soak``) as one
self-contained HTML page: tables, and charts drawn here as inline SVG (no script, no style
sheet, font or image fetched from anywhere). Every chart is an ``<svg data-chart="...">`` whose
marks (lines, bars) carry ``class="mark"``, which is what tests/test_load_report.py looks for."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 900, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 250, 28, 40
BAR_HEIGHT, BAR_GAP = 16, 6
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
OK_COLOUR, FAILED_COLOUR = "#2ca02c", "#d62728"
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
svg { display: block; margin: 8px 0 20px; background: #fff; }
.axis { stroke: #888; stroke-width: 1; }
.grid { stroke: #eee; stroke-width: 1; }
text { font: 11px system-ui, sans-serif; fill: #333; }
h2 { margin-top: 36px; border-top: 1px solid #ddd; padding-top: 12px; }
"""


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float | None]]  # (x, y); None leaves a gap


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def nice_step(span: float, ticks: int = 5) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def _y_axis(top: float, step: float, plot_h: float, y_of: Any, left: float, right: float) -> str:
    parts, value = [], 0.0
    while value <= top + step / 2:
        y = y_of(value)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
        value += step
    return "".join(parts)


def line_chart(
    chart_id: str, title: str, series: Sequence[Series], x_label: str, y_label: str
) -> str:
    """Lines over a shared x axis (time in s), one colour per series, a legend on the right."""
    xs = [x for s in series for x, y in s.points if y is not None]
    ys = [y for s in series for _, y in s.points if y is not None]
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    head = _svg_head(chart_id, title)
    if not xs:
        return head + f'<text x="{left}" y="{top + 20}">no data</text></svg>'
    x_min, x_max = min(xs), max(xs)
    x_span = (x_max - x_min) or 1.0
    y_step = nice_step(max(ys) or 1.0)
    y_top = math.ceil((max(ys) or 1.0) / y_step) * y_step

    def x_of(x: float) -> float:
        return left + (x - x_min) / x_span * (right - left)

    def y_of(y: float) -> float:
        return bottom - y / y_top * (bottom - top)

    parts = [head, _y_axis(y_top, y_step, bottom - top, y_of, left, right)]
    x_step = nice_step(x_span, 8)
    tick = math.ceil(x_min / x_step) * x_step
    while tick <= x_max + 1e-9:
        parts.append(
            f'<text x="{x_of(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>'
        )
        tick += x_step
    parts.append(_axes(left, right, top, bottom, x_label, y_label))
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        parts.append(_polyline(s, colour, x_of, y_of))
        y = top + 14 + n * 18
        parts.append(
            f'<rect x="{right + 12}" y="{y - 9}" width="14" height="4" fill="{colour}"/>'
            f'<text x="{right + 32}" y="{y - 4}">{esc(s.label)}</text>'
        )
    return "".join(parts) + "</svg>"


def _polyline(s: Series, colour: str, x_of: Any, y_of: Any) -> str:
    """One path, broken where a point has no value; a lone point gets a dot."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in s.points:
        if y is None:
            runs.append([])
        else:
            runs[-1].append((x_of(x), y_of(y)))
    d, dots = [], []
    for run in runs:
        if len(run) == 1:
            dots.append(
                f'<circle class="mark" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="3" '
                f'fill="{colour}"/>'
            )
        elif run:
            d.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in run))
    path = (
        f'<path class="mark" d="{" ".join(d)}" fill="none" stroke="{colour}" stroke-width="2">'
        f"<title>{esc(s.label)}</title></path>"
        if d
        else ""
    )
    return path + "".join(dots)


def bar_chart(
    chart_id: str, title: str, bars: Sequence[tuple[str, float, float]], unit: str
) -> str:
    """Horizontal bars, one per label: the ok part in green, the failed part in red after it."""
    left = 300
    right = WIDTH - 70
    height = MARGIN_TOP + len(bars) * (BAR_HEIGHT + BAR_GAP) + MARGIN_BOTTOM
    head = _svg_head(chart_id, title, height)
    if not bars:
        return head + f'<text x="{left}" y="{MARGIN_TOP + 20}">no data</text></svg>'
    top_value = max(ok + failed for _, ok, failed in bars) or 1.0
    step = nice_step(top_value)
    top_value = math.ceil(top_value / step) * step
    scale = (right - left) / top_value
    parts = [head]
    bottom = height - MARGIN_BOTTOM
    value = 0.0
    while value <= top_value + step / 2:
        x = left + value * scale
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{bottom}"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{value:g}</text>'
        )
        value += step
    for n, (label, ok, failed) in enumerate(bars):
        y = MARGIN_TOP + n * (BAR_HEIGHT + BAR_GAP)
        parts.append(
            f'<text x="{left - 6}" y="{y + BAR_HEIGHT - 4}" text-anchor="end">{esc(label)}</text>'
        )
        for x0, v, colour, kind in (
            (0.0, ok, OK_COLOUR, "ok"),
            (ok, failed, FAILED_COLOUR, "failed"),
        ):
            if v > 0:
                parts.append(
                    f'<rect class="mark" x="{left + x0 * scale:.1f}" y="{y}" '
                    f'width="{max(v * scale, 1.0):.1f}" height="{BAR_HEIGHT}" fill="{colour}">'
                    f"<title>{esc(label)}: {v:.1f} {esc(unit)} {kind}</title></rect>"
                )
        parts.append(
            f'<text x="{left + (ok + failed) * scale + 4:.1f}" y="{y + BAR_HEIGHT - 4}">'
            f"{ok + failed:.1f}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{left}" y1="{MARGIN_TOP}" x2="{left}" y2="{bottom}"/>'
        f'<text x="{(left + right) / 2}" y="{height - 6}" text-anchor="middle">{esc(unit)}</text>'
    )
    return "".join(parts) + "</svg>"


def _svg_head(chart_id: str, title: str, height: int = HEIGHT) -> str:
    return (
        f'<svg data-chart="{esc(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">'
        f"<title>{esc(title)}</title>"
        f'<text x="{MARGIN_LEFT}" y="16" style="font-weight:600">{esc(title)}</text>'
    )


def _axes(left: float, right: float, top: float, bottom: float, x_label: str, y_label: str) -> str:
    return (
        f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>'
        f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle">'
        f"{esc(x_label)}</text>"
        f'<text x="14" y="{(top + bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + bottom) / 2})">{esc(y_label)}</text>'
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc('' if v is None else v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>{body}</body></html>"
    )


def latency_chart(scenario: dict[str, Any], n: int) -> str:
    """p50 and p99 of all requests per slice, and the p99 of the busiest endpoint (whose
    latency a few slow reads in the same slice would hide)."""
    rows = scenario["timeline"]
    series = [
        Series(label, [(r["t_s"], r["all"][key]) for r in rows])
        for label, key in (("p50", "p50_ms"), ("p99", "p99_ms"))
    ]
    if scenario["endpoints"]:
        busiest = max(scenario["endpoints"], key=lambda e: e["requests"])["endpoint"]
        points = [(r["t_s"], r["endpoints"].get(busiest, {}).get("p99_ms")) for r in rows]
        series.append(Series(f"p99 {busiest}", points))
    title = f"{scenario['scenario']}: latency per {scenario['slice_s']:g} s slice"
    return line_chart(f"latency-{n}", title, series, "s since start", "ms")


def throughput_chart(scenario: dict[str, Any], n: int) -> str:
    bars = [
        (e["endpoint"], e["ok_per_s"], e["per_s"] - e["ok_per_s"]) for e in scenario["endpoints"]
    ]
    title = f"{scenario['scenario']}: requests per second by endpoint (red: failed)"
    return bar_chart(f"throughput-{n}", title, bars, "requests/s")


def scenario_section(scenario: dict[str, Any], n: int) -> str:
    name = esc(scenario["scenario"])
    if "error" in scenario:
        return f"<h2>{name}</h2><p>{esc(scenario['error'])}</p>"
    users = ", ".join(f"{count} {cls}" for cls, count in scenario["users"].items())
    everything = {
        "endpoint": "all",
        **scenario["total"],
        "failures_by_outcome": scenario["failures_by_outcome"],
    }
    rows = [
        [
            e["endpoint"], e["requests"], f"{e['per_s']:.1f}", e["p50_ms"], e["p95_ms"],
            e["p99_ms"], e["max_ms"], e["failures"],
            "; ".join(f"{o}: {c}" for o, c in e["failures_by_outcome"].items()),
        ]
        for e in [*scenario["endpoints"], everything]
    ]  # fmt: skip
    headers = ("endpoint", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
               "failures", "failures by status and slug")  # fmt: skip
    extra = f"; server 5xx in its log: {scenario['server_5xx']}" if "server_5xx" in scenario else ""
    return (
        f"<h2>{name}</h2><p>{esc(users)}; {scenario['duration_s']:.0f} s{esc(extra)}</p>"
        + table(headers, rows)
        + latency_chart(scenario, n)
        + throughput_chart(scenario, n)
    )


def render_report(summary: dict[str, Any]) -> str:
    """The whole load summary as one HTML page."""
    sizes = summary.get("sizes", {})
    seeding = summary.get("seeding", {})
    intro = (
        f"<p>Generated {esc(summary.get('generated_at', ''))} on {esc(summary.get('cores', '?'))} "
        f"cores, {esc(summary.get('database', ''))}.</p>"
        + table(("size", "count"), list(sizes.items()))
    )
    if seeding:
        phases = [
            (p["phase"], p.get("requests", ""), p["seconds"]) for p in seeding.get("phases", [])
        ]
        intro += f"<p>Seeding over HTTP took {esc(seeding.get('seconds'))} s.</p>" + table(
            ("phase", "requests", "seconds"), phases
        )
    sections = "".join(scenario_section(s, n) for n, s in enumerate(summary["scenarios"]))
    return page("voucher-ledger load run", intro + sections)
