"""A pupil's term percent in one subject, week by week: a step chart on a 0–100 % axis with the
grade bands of the subject's rule as dashed guides and their grades in the right margin.

One small panel per subject (small multiples) reads better on a phone and on paper than one
chart with a dozen crossing lines: every panel has the same axes, so they compare at a glance,
and each wraps to the next line on a narrow screen. The percent holds from the end of one week
to the end of the next (a step), since it only changes when work is marked.

The numbers come computed (``journal.charts.series``); the texts come translated; this module
only lays out and escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup

from .svg import GUIDE, INK, LINE, MUTED, WHITE, document, element, number, text

WIDTH = 340
HEIGHT = 196
LEFT, RIGHT, TOP, BOTTOM = 34.0, 316.0, 30.0, 150.0  # the plot area
BAND_FILL = "#eef1f4"


@dataclass(frozen=True)
class Week:
    """One week of the term: ``tick`` under the axis ("3"), ``label`` in the description
    ("week 3, 17–23 Nov")."""

    tick: str
    label: str


@dataclass(frozen=True)
class Band:
    """A grade band of the rule: from ``minimum`` percent up, the grade ``label``."""

    minimum: Decimal
    label: str


@dataclass(frozen=True)
class PercentPanel:
    """One subject's panel. ``values`` has one percent (or None: no work yet) for each week
    that has begun; weeks still to come have no value and are left empty."""

    chart_id: str
    heading: str  # the subject's name, shown above the plot
    title: str  # the accessible name, e.g. "Mathematics: term percent by week"
    summary: str  # the description's first sentence
    values: tuple[Decimal | None, ...]


def y_of(percent: Decimal | float) -> float:
    """The y coordinate of a percent (0 at the bottom of the plot, 100 at its top)."""
    clamped = min(max(float(percent), 0.0), 100.0)
    return BOTTOM - (BOTTOM - TOP) * clamped / 100.0


def x_of(index: int, weeks: int) -> float:
    """The x coordinate of the middle of week ``index`` (0-based) of ``weeks``."""
    step = (RIGHT - LEFT) / max(weeks, 1)
    return LEFT + step * (index + 0.5)


def _bands(bands: Sequence[Band]) -> list[Markup]:
    out: list[Markup] = []
    ordered = sorted(bands, key=lambda b: b.minimum, reverse=True)
    top = Decimal(100)
    for index, band in enumerate(ordered):
        low = max(band.minimum, Decimal(0))
        if index % 2 == 0:
            out.append(
                element(
                    "rect",
                    x=LEFT,
                    y=y_of(top),
                    width=RIGHT - LEFT,
                    height=y_of(low) - y_of(top),
                    fill=BAND_FILL,
                )
            )
        middle = (top + low) / 2
        out.append(
            text(
                band.label,
                RIGHT + 12,
                y_of(middle) + 4,
                font_size=12,
                text_anchor="middle",
                font_weight="bold",
                fill=MUTED,
            )
        )
        top = low
    for band in ordered:
        if band.minimum <= 0:
            continue
        y = y_of(band.minimum)
        out.append(
            element(
                "line",
                x1=LEFT,
                x2=RIGHT,
                y1=y,
                y2=y,
                stroke=GUIDE,
                stroke_width=1,
                stroke_dasharray="4 3",
            )
        )
    ticks = sorted({Decimal(0), Decimal(100), *(b.minimum for b in ordered if b.minimum > 0)})
    for tick in ticks:
        out.append(
            text(
                number(tick), LEFT - 4, y_of(tick) + 4, font_size=10, text_anchor="end", fill=MUTED
            )
        )
    return out


def _axis(weeks: Sequence[Week], axis_label: str) -> list[Markup]:
    out = [
        element("line", x1=LEFT, x2=RIGHT, y1=BOTTOM, y2=BOTTOM, stroke=INK, stroke_width=1),
        element("line", x1=LEFT, x2=LEFT, y1=TOP, y2=BOTTOM, stroke=INK, stroke_width=1),
    ]
    every = 1 if len(weeks) <= 12 else 2
    for index, week in enumerate(weeks):
        if index % every:
            continue
        out.append(
            text(
                week.tick,
                x_of(index, len(weeks)),
                BOTTOM + 14,
                font_size=10,
                text_anchor="middle",
                fill=MUTED,
            )
        )
    out.append(
        text(
            axis_label,
            (LEFT + RIGHT) / 2,
            BOTTOM + 32,
            font_size=11,
            text_anchor="middle",
            fill=MUTED,
        )
    )
    return out


def _line(
    values: Sequence[Decimal | None], weeks: int, fmt: Callable[[Decimal], str]
) -> list[Markup]:
    out: list[Markup] = []
    path: list[str] = []
    previous: tuple[float, float] | None = None
    points: list[tuple[float, float, Decimal]] = []
    for index, value in enumerate(values):
        if value is None:
            previous = None
            continue
        x, y = x_of(index, weeks), y_of(value)
        if previous is None:
            path.append(f"M{number(x)} {number(y)}")
        else:
            path.append(f"H{number(x)} V{number(y)}")
        previous = (x, y)
        points.append((x, y, value))
    if path:
        out.append(
            element(
                "path",
                d=" ".join(path),
                fill="none",
                stroke=LINE,
                stroke_width=2.5,
                stroke_linejoin="round",
            )
        )
    for x, y, value in points:
        out.append(
            element(
                "circle",
                element("title", fmt(value)),
                cx=x,
                cy=y,
                r=3.5,
                fill=WHITE,
                stroke=LINE,
                stroke_width=2,
                class_="point",
                data_percent=str(value),
            )
        )
    if points:
        x, y, value = points[-1]
        above = y - 8 if y > TOP + 14 else y + 16
        anchor = "end" if x > RIGHT - 30 else "middle"
        out.append(
            text(
                fmt(value),
                x,
                above,
                font_size=12,
                font_weight="bold",
                text_anchor=anchor,
                stroke=WHITE,
                stroke_width=3,
                paint_order="stroke",
                class_="last",
            )
        )
    return out


def percent_chart(
    panel: PercentPanel,
    weeks: Sequence[Week],
    bands: Sequence[Band],
    *,
    fmt: Callable[[Decimal], str],
    no_value: str,
    axis_label: str,
) -> Markup:
    """One subject's panel as an inline SVG. ``fmt`` writes a percent in the page's language
    ("78,5 %"); ``no_value`` is said of a week without work yet; ``axis_label`` names the x
    axis ("Weeks of the term")."""
    if len(panel.values) > len(weeks):
        raise ValueError("more values than weeks")
    stated = [
        f"{week.label}: {fmt(value) if value is not None else no_value}"
        for week, value in zip(weeks, panel.values, strict=False)
    ]
    desc = panel.summary + (" " + "; ".join(stated) + "." if stated else "")
    body = [
        text(panel.heading, 4, 16, font_size=13, font_weight="bold"),
        *_bands(bands),
        *_axis(weeks, axis_label),
        *_line(panel.values, len(weeks), fmt),
    ]
    return document(
        chart_id=panel.chart_id,
        width=WIDTH,
        height=HEIGHT,
        title=panel.title,
        desc=desc,
        body=body,
        class_="chart percent-chart",
    )
