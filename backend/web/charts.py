"""KPI charts of the escrow page: one inline SVG per KPI, drawn on the server from the per-period
series that `GET /api/escrows/{id}/kpis` serves (`backend.oracle.scorecard.escrow_kpis`).

Pure: a series and the words to write (already in the reader's language) in, an `<svg>` string
out; no I/O, no state. Each period is a bar (its aggregate against the KPI's threshold), the
threshold a dashed line, a failing period a red bar marked with a cross, a period without a value
(fewer samples than `min_samples`) a dashed outline, a period not yet closed a lighter bar. The
chart names itself for assistive technology (`role="img"`, `<title>`, and a `<desc>` listing
every period's value and verdict) and scales to its container (a `viewBox`, no fixed width).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

#: drawing size in SVG units (the chart scales to its container's width)
WIDTH = 480
HEIGHT = 200
MARGIN_LEFT = 56
MARGIN_RIGHT = 12
MARGIN_TOP = 18
MARGIN_BOTTOM = 34
#: the most recent periods drawn (a long escrow's earlier periods are left out, and said so)
MAX_POINTS = 60

#: colours (WCAG AA against white); failing bars also carry a cross, so colour is not the only cue
PASS_COLOUR = "#1e6b3a"
FAIL_COLOUR = "#a32020"
MISSING_COLOUR = "#4f5a66"
THRESHOLD_COLOUR = "#8a5300"
AXIS_COLOUR = "#4f5a66"
GRID_COLOUR = "#d4dae1"

OPS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


@dataclass(frozen=True)
class KpiPoint:
    """One KPI in one period: its value (None: fewer samples than `min_samples`) and verdict."""

    period: int
    start: int
    end: int
    closed: bool
    value: float | None
    verdict: str  # pass | fail | missing
    samples: int
    min_samples: int


@dataclass(frozen=True)
class KpiSeries:
    """One KPI of the terms over the escrow's periods."""

    kpi: str
    aggregate: str
    op: str
    threshold: float
    points: tuple[KpiPoint, ...]

    @property
    def failing(self) -> tuple[KpiPoint, ...]:
        return tuple(p for p in self.points if p.verdict == "fail")


@dataclass(frozen=True)
class ChartText:
    """The words a chart writes, in the reader's language. `point` has the placeholders
    `%(period)s`, `%(value)s` and `%(verdict)s`; `threshold` and `earlier` `%(value)s` and
    `%(count)s`; `verdicts` maps pass/fail/missing (and `open`: a period still open) to words."""

    title: str
    summary: str
    point: str = "Period %(period)s: %(value)s (%(verdict)s)"
    threshold: str = "threshold %(value)s"
    no_value: str = "no value"
    earlier: str = "%(count)s earlier periods not drawn"
    axis: str = "period"
    verdicts: Mapping[str, str] = field(default_factory=lambda: {
        "pass": "pass", "fail": "fail", "missing": "missing", "open": "open"})


def kpi_series(kpis: Mapping[str, Any]) -> list[KpiSeries]:
    """The series of every KPI in the answer of `escrow_kpis` (in the order the KPIs first
    appear), each with its periods in order."""
    points: dict[str, list[KpiPoint]] = {}
    rules: dict[str, tuple[str, str, float]] = {}
    for period in kpis.get("periods") or []:
        for k in period.get("kpis") or []:
            kpi_id = str(k["id"])
            rules.setdefault(kpi_id, (str(k["aggregate"]), str(k["op"]), float(k["threshold"])))
            value = k.get("value")
            points.setdefault(kpi_id, []).append(KpiPoint(
                period=int(period["period"]),
                start=int(period["start"]),
                end=int(period["end"]),
                closed=bool(period["closed"]),
                value=None if value is None else float(value),
                verdict=str(k["verdict"]),
                samples=int(k.get("samples") or 0),
                min_samples=int(k.get("min_samples") or 1),
            ))
    return [
        KpiSeries(kpi_id, *rules[kpi_id], tuple(sorted(found, key=lambda p: p.period)))
        for kpi_id, found in points.items()
    ]


def number(value: float) -> str:
    """A KPI value as people write it: `300`, `99.9`, `0.000123`, `1.5e+20`."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _y_range(series: KpiSeries, points: tuple[KpiPoint, ...]) -> tuple[float, float]:
    values = [p.value for p in points if p.value is not None] + [series.threshold]
    lo, hi = min(0.0, *values), max(0.0, *values)
    if hi == lo:
        hi = lo + 1.0
    pad = (hi - lo) * 0.1
    return (lo - pad if lo < 0 else lo), hi + pad


def kpi_chart_svg(series: KpiSeries, text: ChartText, *, chart_id: str) -> str:
    """One KPI's periods against its threshold as an inline `<svg>` element (no XML prologue).
    `chart_id` makes the ids of its `<title>` and `<desc>` unique on the page."""
    shown = series.points[-MAX_POINTS:]
    left_out = len(series.points) - len(shown)
    lo, hi = _y_range(series, shown)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    bottom = MARGIN_TOP + plot_h

    def y(value: float) -> float:
        return MARGIN_TOP + (hi - value) / (hi - lo) * plot_h

    band = plot_w / max(1, len(shown))
    bar = min(48.0, band * 0.64)
    base = y(0.0 if lo <= 0.0 <= hi else lo)
    ident = escape(chart_id, quote=True)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="kpi-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'preserveAspectRatio="xMidYMid meet" data-kpi="{escape(series.kpi, quote=True)}">',
        f'<title id="{ident}-title">{escape(text.title)}</title>',
        f'<desc id="{ident}-desc">{escape(_description(series, shown, left_out, text))}</desc>',
    ]
    # grid and y-axis labels: bottom, middle, top of the range
    for value in (lo, (lo + hi) / 2, hi):
        gy = y(value)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="{AXIS_COLOUR}">{escape(number(round(value, 6)))}</text>'
        )
    step = max(1, math.ceil(len(shown) / 20))  # at most about 20 period labels
    for n, point in enumerate(shown):
        cx = MARGIN_LEFT + band * n + band / 2
        x = cx - bar / 2
        if point.value is None:
            parts.append(
                f'<rect class="bar missing" x="{x:.1f}" y="{base - 12:.1f}" width="{bar:.1f}" '
                f'height="12" fill="none" stroke="{MISSING_COLOUR}" stroke-dasharray="3 2">'
                f"<title>{escape(_point(point, text))}</title></rect>"
            )
        else:
            top = y(point.value)
            colour = FAIL_COLOUR if point.verdict == "fail" else (
                PASS_COLOUR if point.verdict == "pass" else MISSING_COLOUR)
            opacity = "" if point.closed else ' fill-opacity="0.45"'
            classes = f"bar {escape(point.verdict)}" + ("" if point.closed else " open")
            parts.append(
                f'<rect class="{classes}" x="{x:.1f}" y="{min(top, base):.1f}" '
                f'width="{bar:.1f}" height="{max(1.0, abs(base - top)):.1f}" fill="{colour}"'
                f"{opacity}><title>{escape(_point(point, text))}</title></rect>"
            )
            if point.verdict == "fail":
                parts.append(
                    f'<text class="fail-mark" x="{cx:.1f}" y="{min(top, base) - 4:.1f}" '
                    f'text-anchor="middle" font-size="13" font-weight="700" '
                    f'fill="{FAIL_COLOUR}">✗</text>'
                )
        if n % step == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{bottom + 15}" text-anchor="middle" font-size="12" '
                f'fill="{AXIS_COLOUR}">{point.period}</text>'
            )
    ty = y(series.threshold)
    threshold = text.threshold % {"value": f"{OPS.get(series.op, series.op)} "
                                           f"{number(series.threshold)}"}
    parts += [
        f'<line class="threshold" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
        f'y1="{ty:.1f}" y2="{ty:.1f}" stroke="{THRESHOLD_COLOUR}" stroke-width="2" '
        f'stroke-dasharray="6 4"/>',
        f'<text x="{WIDTH - MARGIN_RIGHT}" y="{ty - 5:.1f}" text-anchor="end" font-size="12" '
        f'fill="{THRESHOLD_COLOUR}">{escape(threshold)}</text>',
        f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{bottom}" y2="{bottom}" '
        f'stroke="{AXIS_COLOUR}" stroke-width="1"/>',
        f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 3}" text-anchor="middle" '
        f'font-size="12" fill="{AXIS_COLOUR}">{escape(text.axis)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def _point(point: KpiPoint, text: ChartText) -> str:
    verdict = text.verdicts.get(point.verdict, point.verdict)
    if not point.closed:
        verdict = f"{verdict}, {text.verdicts.get('open', 'open')}"
    value = text.no_value if point.value is None else number(point.value)
    return text.point % {"period": point.period, "value": value, "verdict": verdict}


def _description(
    series: KpiSeries, shown: tuple[KpiPoint, ...], left_out: int, text: ChartText
) -> str:
    threshold = text.threshold % {"value": f"{OPS.get(series.op, series.op)} "
                                           f"{number(series.threshold)}"}
    lines = [text.summary, threshold]
    if left_out:
        lines.append(text.earlier % {"count": left_out})
    lines += [_point(p, text) for p in shown]
    return "; ".join(lines)
