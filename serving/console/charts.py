"""Small server-rendered SVG charts for the dashboard (no JavaScript, no CDN): vertical bars over days,
horizontal bars per category, and the cluster graph of a case (accounts linked by the handles they share)."""

from __future__ import annotations

import math
from html import escape

from markupsafe import Markup

PALETTE = ("#2f6fdf", "#e0803b", "#3aa46a", "#c94b4b", "#8a5cc2", "#6b7a8f")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _fmt(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def column_chart(points: list[tuple[str, float]], title: str, width: int = 560, height: int = 200) -> Markup:
    """Vertical bars, one per (label, value) in order (decisions per day)."""
    pad_l, pad_b, pad_t = 40, 34, 22
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    top = _nice_max(max((v for _, v in points), default=0))
    n = max(len(points), 1)
    bar = plot_w / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{pad_l}" y="14" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):
        y = pad_t + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{pad_l}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" class="axis" text-anchor="end">{_fmt(top * i / 4)}</text>'
        )
    every = max(1, math.ceil(n / 8))
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = pad_l + i * bar + bar * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {_fmt(value)}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar * 0.35:.1f}" y="{height - 16}" class="axis" text-anchor="middle">'
                f"{escape(label[-5:])}</text>"
            )
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" class="axis" text-anchor="middle">暂无数据 no data</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(items: list[tuple[str, float]], title: str, width: int = 560, row: int = 24) -> Markup:
    """Horizontal bars, one per (label, value), in the order given (label mix, queue depths)."""
    pad_l, pad_t = 130, 22
    height = pad_t + row * max(len(items), 1) + 8
    top = max((v for _, v in items), default=0) or 1
    plot_w = width - pad_l - 60
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="4" y="14" class="chart-title">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = pad_t + i * row
        w = plot_w * value / top
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<text x="{pad_l - 6}" y="{y + row * 0.65:.1f}" class="axis" text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{pad_l}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 8}" fill="{color}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
        )
        parts.append(
            f'<text x="{pad_l + w + 6:.1f}" y="{y + row * 0.65:.1f}" class="axis">{_fmt(value)}</text>'
        )
    if not items:
        parts.append(
            f'<text x="{width / 2}" y="{pad_t + 14}" class="axis" text-anchor="middle">暂无数据 no data</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def cluster_graph(
    center: str, accounts: list[str], handles: list[str], width: int = 420, height: int = 260
) -> Markup:
    """Accounts on an outer ring, the handles they share on an inner ring, each account linked to each handle
    (a cluster is accounts joined by handles: drawn small, at most 12 of each)."""
    accounts, handles = accounts[:12], handles[:12]
    cx, cy = width / 2, height / 2
    r_out, r_in = min(cx, cy) - 28, (min(cx, cy) - 28) * 0.42

    def ring(names: list[str], r: float, phase: float) -> dict[str, tuple[float, float]]:
        n = max(len(names), 1)
        return {
            name: (
                cx + r * math.cos(2 * math.pi * i / n + phase),
                cy + r * math.sin(2 * math.pi * i / n + phase),
            )
            for i, name in enumerate(names)
        }

    a_pos, h_pos = ring(accounts, r_out, -math.pi / 2), ring(handles, r_in, -math.pi / 3)
    parts = [
        f'<svg class="chart graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="cluster" xmlns="http://www.w3.org/2000/svg">'
    ]
    for ax, ay in a_pos.values():
        for hx, hy in h_pos.values():
            parts.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{hx:.1f}" y2="{hy:.1f}" class="edge"/>')
    for name, (x, y) in h_pos.items():
        parts.append(
            f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{PALETTE[1]}"><title>{escape(name)}</title></rect>'
            f'<text x="{x:.1f}" y="{y + 17:.1f}" class="axis" text-anchor="middle">{escape(name[-14:])}</text>'
        )
    for name, (x, y) in a_pos.items():
        fill = PALETTE[3] if name == center else PALETTE[0]
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{fill}"><title>{escape(name)}</title></circle>'
            f'<text x="{x:.1f}" y="{y - 10:.1f}" class="axis" text-anchor="middle">{escape(name[-12:])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
