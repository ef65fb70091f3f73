"""Charts as inline SVG, drawn on the server: no script, nothing to load, CSP-safe.

Only presentation attributes are used (``fill``, ``stroke``), never ``style``,
so the page's ``Content-Security-Policy`` needs no inline-style exception.
Every label goes through ``markupsafe.escape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 1200, 240
LEFT, BOTTOM, TOP = 50, 24, 12


@dataclass(frozen=True)
class Bar:
    label: str  # shown under every few bars and as the bar's tooltip
    value: int
    part: int = 0  # drawn over the bar in the second colour (errors of requests)


def _nice_max(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value``."""
    scale = 1
    while True:
        for multiple in (1, 2, 5):
            if multiple * scale >= value:
                return multiple * scale
        scale *= 10


def bar_chart(bars: Sequence[Bar], title: str, unit: str = "requests") -> Markup:
    """A bar chart of ``bars``; ``part`` of each bar (errors) in a second colour."""
    top = _nice_max(max((b.value for b in bars), default=0))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(bars))
    gap = min(2.0, step * 0.2)
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" stroke="#d0d7de" '
            'stroke-width="1"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#57606a">{top * fraction:g}</text>'
        )
    label_every = max(1, len(bars) // 12)
    for index, bar in enumerate(bars):
        x = LEFT + index * step + gap / 2
        height = plot_h * bar.value / top
        part = plot_h * min(bar.part, bar.value) / top
        tip = escape(
            f"{bar.label}: {bar.value} {unit}" + (f", {bar.part} errors" if bar.part else "")
        )
        out.append(f'<g class="bar"><title>{tip}</title>')
        out.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{max(0.5, step - gap):.1f}" '
            f'height="{height:.1f}" fill="#2f81f7"/>'
        )
        if part:
            out.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - part:.1f}" '
                f'width="{max(0.5, step - gap):.1f}" height="{part:.1f}" fill="#cf222e"/>'
            )
        out.append("</g>")
        if index % label_every == 0:
            out.append(
                f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
                f'font-size="12" fill="#57606a">{escape(bar.label)}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))
