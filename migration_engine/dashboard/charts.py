"""Small inline-SVG charts rendered on the server.

Why SVG strings and no chart library: the Airflow host may have no internet access (no CDN), the
page must stay one self-contained response, and the series are tiny (at most 60 points) because
the SQL already aggregated them. Every value shown comes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLORS = {
    "ok": "#2e7d32", "passed": "#2e7d32", "warning": "#ed6c02", "critical": "#c62828", "failed": "#c62828",
    "waiting": "#1565c0", "running": "#1565c0", "low_volume": "#8d6e63", "no_data": "#9e9e9e",
    "none": "#e0e0e0", "unknown": "#9e9e9e",
}
SERIES_COLORS = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00")
# viewBox width: the page scales every chart to the section's full width (CSS width: 100%), so this
# sets the aspect ratio and the text size at a 1280-1920 px window (about 1:1 at 1280 px).
CHART_WIDTH = 1200


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    color: str = SERIES_COLORS[0]
    tips: Sequence[str] | None = None  # one tooltip per point (defaults to label: value)


@dataclass
class Threshold:
    value: float
    label: str
    color: str = COLORS["warning"]


@dataclass
class _Frame:
    width: int
    height: int
    left: int = 52
    right: int = 96
    top: int = 14
    bottom: int = 30
    lo: float = 0.0
    hi: float = 100.0
    n: int = 1

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, i: int) -> float:
        if self.n <= 1:
            return self.left + self.plot_w / 2
        return self.left + self.plot_w * i / (self.n - 1)

    def y(self, v: float) -> float:
        span = (self.hi - self.lo) or 1.0
        v = min(max(v, self.lo), self.hi)
        return self.top + self.plot_h * (1 - (v - self.lo) / span)


def _fmt(v: float, decimals: int) -> str:
    return f"{v:,.{decimals}f}"


def nice_range(values: Sequence[float], *, floor: float | None = None,
               ceil: float | None = None) -> tuple[float, float]:
    """A y range that shows small differences (99.2 vs 99.9 %) instead of squashing them at the top."""
    if not values:
        lo, hi = (floor if floor is not None else 0.0), (ceil if ceil is not None else 1.0)
        return lo, hi
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.002, 0.05)
    lo, hi = lo - pad, hi + pad
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-9)))
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    if floor is not None:
        lo = max(lo, floor)
    if ceil is not None:
        hi = min(hi, ceil)
    if hi <= lo:
        hi = lo + 1
    return lo, hi


def _show_label(i: int, n: int, max_labels: int = 8) -> bool:
    """Every k-th label, plus the last one unless it would collide with the previous shown one."""
    every = max(1, math.ceil(n / max_labels))
    if i % every == 0:
        return True
    return i == n - 1 and (n - 1) % every >= every / 2


def _axis(f: _Frame, labels: Sequence[str], y_suffix: str, decimals: int) -> list[str]:
    out = []
    for k in range(5):
        v = f.lo + (f.hi - f.lo) * k / 4
        y = f.y(v)
        out.append(f'<line x1="{f.left}" x2="{f.left + f.plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                   f'{escape(_fmt(v, decimals))}{escape(y_suffix)}</text>')
    for i, label in enumerate(labels):
        if _show_label(i, len(labels)):
            out.append(f'<text x="{f.x(i):.1f}" y="{f.height - 10}" text-anchor="middle" class="tick">'
                       f'{escape(label)}</text>')
    return out


def line_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    thresholds: Sequence[Threshold] = (),
    y_suffix: str = "%",
    y_floor: float | None = 0.0,
    y_ceil: float | None = None,
    decimals: int = 2,
    width: int = CHART_WIDTH,
    height: int = 240,
) -> str:
    """A line chart; ``None`` values break the line (a gap in the data stays visible)."""
    n = len(labels)
    values = [v for s in series for v in s.values if v is not None]
    lo, hi = nice_range(values + [t.value for t in thresholds], floor=y_floor, ceil=y_ceil)
    f = _Frame(width=width, height=height, lo=lo, hi=hi, n=n)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" data-points="{len(values)}" data-slots="{n}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        *_axis(f, labels, y_suffix, 0 if hi - lo >= 20 else decimals if hi - lo < 2 else 1),
    ]
    for t in thresholds:
        y = f.y(t.value)
        parts.append(f'<line x1="{f.left}" x2="{f.left + f.plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{t.color}" stroke-dasharray="5 4" stroke-width="1.2"/>')
        parts.append(f'<text x="{f.left + f.plot_w + 6:.1f}" y="{y + 4:.1f}" class="thr" fill="{t.color}">'
                     f'{escape(t.label)}</text>')
    if not values:
        parts.append(f'<text x="{f.left + f.plot_w / 2:.1f}" y="{f.top + f.plot_h / 2:.1f}" '
                     f'text-anchor="middle" class="empty">no data in this window</text>')
    for s in series:
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, v in enumerate(s.values):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{f.x(i):.1f},{f.y(v):.1f}")
        if segment:
            segments.append(segment)
        for seg in segments:
            parts.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for i, v in enumerate(s.values):
            if v is None:
                continue
            tip = s.tips[i] if s.tips else f"{labels[i]}: {_fmt(v, decimals)}{y_suffix}"
            parts.append(f'<circle cx="{f.x(i):.1f}" cy="{f.y(v):.1f}" r="2.6" fill="{s.color}">'
                         f'<title>{escape(s.name)} {escape(tip)}</title></circle>')
    if len(series) > 1:
        for k, s in enumerate(series):
            y = f.top + k * 16
            x = f.left + f.plot_w + 8
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{s.color}"/>'
                         f'<text x="{x + 14:.1f}" y="{y + 9:.1f}" class="tick">{escape(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def status_strip(*, chart_id: str, title: str, cells: Sequence[tuple[str, str, str]],
                 width: int = CHART_WIDTH, height: int = 64) -> str:
    """One coloured cell per slot: (label, status, tooltip). For hourly pass/fail results."""
    n = max(len(cells), 1)
    left, right = 52, 96
    cw = (width - left - right) / n
    parts = [f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="{escape(title)}" data-slots="{len(cells)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, status, tip) in enumerate(cells):
        x = left + i * cw
        color = COLORS.get(status, COLORS["unknown"])
        parts.append(f'<rect x="{x + 1:.1f}" y="6" width="{max(cw - 2, 1):.1f}" height="28" rx="3" '
                     f'fill="{color}" data-status="{escape(status)}"><title>{escape(tip)}</title></rect>')
        if _show_label(i, len(cells)):
            parts.append(f'<text x="{x + cw / 2:.1f}" y="{height - 10}" text-anchor="middle" class="tick">'
                         f'{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def rollout_gauge(*, chart_id: str, pct: float, steps: Sequence[int], width: int = CHART_WIDTH,
                  height: int = 70) -> str:
    """Read rollout: the share of reads served by the new tables, with the configured steps."""
    left, right = 52, 96
    w = width - left - right
    pct = min(max(float(pct), 0.0), 100.0)
    parts = [f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="Reads served by the new tables: {pct:g}%" '
             f'xmlns="http://www.w3.org/2000/svg"><title>Reads served by the new tables: {pct:g}%</title>',
             f'<rect x="{left}" y="10" width="{w}" height="22" rx="4" fill="{COLORS["none"]}"/>',
             f'<rect x="{left}" y="10" width="{w * pct / 100:.1f}" height="22" rx="4" fill="{SERIES_COLORS[0]}"/>']
    for step in steps:
        x = left + w * step / 100
        reached = pct >= step
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="6" y2="36" class="step" stroke-width="1.5"/>'
                     f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" class="tick">'
                     f'{"&#10003; " if reached else ""}{step}%</text>')
    parts.append(f'<text x="{left + w + 8}" y="26" class="big">{pct:g}%</text></svg>')
    return "".join(parts)
