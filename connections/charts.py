"""Small charts drawn as inline SVG by Python: no JavaScript, nothing fetched, so the admin works offline.

Colours come from CSS classes (see templates/admin/dashboard/styles.html), so a dark theme can restyle them.
"""

from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class Bucket:
    label: str  # what the bar's tooltip calls its period, e.g. "14:00–15:00"
    good: int  # drawn at the bottom, e.g. delivered
    bad: int  # stacked on top, e.g. rejected


def hourly_bars(
    buckets: list[Bucket],
    *,
    width: int = 168,
    height: int = 28,
    good: str = "delivered",
    bad: str = "rejected",
    ticks: list[tuple[int, str]] | None = None,
    title: str = "",
) -> SafeString:
    """Stacked bars, one per bucket, each with a tooltip; `ticks` are (bucket index, label) under the bars."""
    n = max(len(buckets), 1)
    axis = 12 if ticks else 0
    plot = height - axis
    slot = width / n
    gap = 1 if slot >= 4 else 0
    top = max((b.good + b.bad for b in buckets), default=0)
    bars = []
    for i, b in enumerate(buckets):
        x = round(i * slot, 2)
        w = round(slot - gap, 2)
        tip = f"{b.label}: {b.good:,} {good}, {b.bad:,} {bad}"
        good_h = _scaled(b.good, top, plot)
        bad_h = _scaled(b.bad, top, plot)
        bars.append(
            format_html(
                '<g><title>{}</title><rect class="relay-bar-slot" x="{}" y="0" width="{}" height="{}"/>'
                '<rect class="relay-bar-good" x="{}" y="{}" width="{}" height="{}"/>'
                '<rect class="relay-bar-bad" x="{}" y="{}" width="{}" height="{}"/></g>',
                tip,
                x,
                w,
                plot,
                x,
                plot - good_h,
                w,
                good_h,
                x,
                plot - good_h - bad_h,
                w,
                bad_h,
            )
        )
    labels = format_html_join(
        "",
        '<text class="relay-tick" x="{}" y="{}">{}</text>',
        ((round(i * slot, 2), height - 2, text) for i, text in (ticks or [])),
    )
    return format_html(
        '<svg class="relay-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>'
        '<line class="relay-baseline" x1="0" y1="{}" x2="{}" y2="{}"/>{}{}</svg>',
        title,
        width,
        height,
        width,
        height,
        title,
        plot - 0.5,
        width,
        plot - 0.5,
        SafeString("".join(bars)),
        labels,
    )


def _scaled(value: int, top: int, height: int) -> float:
    """Bar height; anything above zero stays visible (at least one pixel)."""
    if not value or not top:
        return 0
    return round(max(1.0, value / top * height), 2)
