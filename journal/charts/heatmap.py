"""A class's attendance by school day as a calendar: one column per week of the term, one row
per weekday the school teaches (Monday to Friday, or to Saturday), each day's cell shaded by the
share of lessons attended and labelled with it in percent.

The shades are one hue in five steps of lightness, darker for lower attendance, so the days that
need attention stand out and the order survives a grayscale printout; the percent is written in
every cell anyway. A holiday is hatched, a school day still to come has a dashed outline, a day
without lessons is left blank.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup

from .svg import GUIDE, INK, MUTED, WHITE, document, element, text

DayState = Literal["held", "holiday", "pending"]

CELL_W, CELL_H, GAP = 36, 30, 3
LEFT, TOP = 44, 30
LEGEND_ITEM_W, LEGEND_ROW_H = 104, 22

#: (lowest percent attended, fill, text colour): text contrast at least 4.5:1 on each fill.
SHADES: tuple[tuple[int, str, str], ...] = (
    (100, "#eef5fc", INK),
    (95, "#c6dbef", INK),
    (90, "#8fb8de", INK),
    (80, "#2f6fb0", WHITE),
    (0, "#0b3d75", WHITE),
)


@dataclass(frozen=True)
class SchoolDay:
    """A day of the term with lessons (``held`` or still ``pending``) or a ``holiday``.
    ``attended`` and ``expected`` count pupil-lessons (being late counts as attended);
    ``label`` is the day in words, translated, for the tooltip and the description."""

    date: dt.date
    state: DayState
    label: str
    attended: int = 0
    expected: int = 0

    @property
    def percent(self) -> int | None:
        """The share attended in whole percent, rounded down (100 only without an absence)."""
        if self.state != "held" or self.expected <= 0:
            return None
        return self.attended * 100 // self.expected


@dataclass(frozen=True)
class HeatmapText:
    """The translated texts: ``weekdays`` are seven short names from Monday; ``legend`` five
    labels for ``SHADES`` in order, then the holiday and the day to come."""

    title: str
    summary: str
    weekdays: tuple[str, ...]
    legend: tuple[str, ...]


def shade(percent: int) -> tuple[str, str]:
    """(fill, text colour) of a day with ``percent`` attended."""
    for lowest, fill, ink in SHADES:
        if percent >= lowest:
            return fill, ink
    return SHADES[-1][1], SHADES[-1][2]


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _hatch(pattern_id: str) -> Markup:
    return element(
        "defs",
        element(
            "pattern",
            element("rect", width=6, height=6, fill=WHITE),
            element("path", d="M0 6L6 0M-1 1L1 -1M5 7L7 5", stroke=GUIDE, stroke_width=1.2),
            id=pattern_id,
            width=6,
            height=6,
            patternUnits="userSpaceOnUse",
        ),
    )


def _cell(day: SchoolDay, x: float, y: float, hatch: str) -> Markup:
    parts: list[Markup] = [element("title", day.label)]
    percent = day.percent
    ink = INK
    if day.state == "holiday":
        parts.append(
            element(
                "rect",
                x=x,
                y=y,
                width=CELL_W,
                height=CELL_H,
                fill=f"url(#{hatch})",
                stroke=GUIDE,
                stroke_width=1,
            )
        )
    elif day.state == "pending" or percent is None:
        parts.append(
            element(
                "rect",
                x=x + 0.5,
                y=y + 0.5,
                width=CELL_W - 1,
                height=CELL_H - 1,
                fill=WHITE,
                stroke=GUIDE,
                stroke_width=1,
                stroke_dasharray="3 2",
            )
        )
    else:
        fill, ink = shade(percent)
        parts.append(
            element(
                "rect",
                x=x,
                y=y,
                width=CELL_W,
                height=CELL_H,
                fill=fill,
                stroke=WHITE,
                stroke_width=1,
            )
        )
        parts.append(
            text(
                str(percent),
                x + CELL_W / 2,
                y + CELL_H - 7,
                font_size=12,
                font_weight="bold",
                text_anchor="middle",
                fill=ink,
            )
        )
    day_ink = ink if day.state == "held" and percent is not None else MUTED
    parts.append(text(str(day.date.day), x + 3, y + 9, font_size=8, fill=day_ink))
    return element(
        "g",
        *parts,
        class_=f"day {day.state}",
        data_date=day.date.isoformat(),
        data_percent=None if percent is None else str(percent),
    )


def _legend_item_width(labels: Sequence[str]) -> int:
    """Room for the swatch and the longest label (about 6.5 units a letter at size 10)."""
    return max(LEGEND_ITEM_W, 28 + 13 * max((len(label) for label in labels), default=0) // 2)


def _legend(labels: Sequence[str], y: float, hatch: str, width: int) -> list[Markup]:
    item_w = _legend_item_width(labels)
    per_row = max((width - LEFT) // item_w, 1)
    out: list[Markup] = []
    swatches: list[tuple[str, dict[str, str | int]]] = [
        (label, {"fill": fill}) for label, (_low, fill, _ink) in zip(labels, SHADES, strict=False)
    ]
    if len(labels) > len(SHADES):
        swatches.append((labels[len(SHADES)], {"fill": f"url(#{hatch})"}))
    if len(labels) > len(SHADES) + 1:
        swatches.append((labels[len(SHADES) + 1], {"fill": WHITE, "stroke_dasharray": "3 2"}))
    for index, (label, paint) in enumerate(swatches):
        row, column = divmod(index, per_row)
        x = LEFT + column * item_w
        top = y + row * LEGEND_ROW_H
        out.append(
            element("rect", x=x, y=top, width=14, height=14, stroke=GUIDE, stroke_width=1, **paint)
        )
        out.append(text(label, x + 19, top + 11, font_size=10))
    return out


def attendance_heatmap(
    *,
    chart_id: str,
    starts_on: dt.date,
    ends_on: dt.date,
    days: Sequence[SchoolDay],
    texts: HeatmapText,
) -> Markup:
    """The calendar of the term from ``starts_on`` to ``ends_on``. Saturday gets a row when
    any day falls on it (a six-day school), Sunday likewise."""
    first = _monday(starts_on)
    weeks = (_monday(ends_on) - first).days // 7 + 1
    weekdays = [0, 1, 2, 3, 4] + [d for d in (5, 6) if any(x.date.weekday() == d for x in days)]
    width = LEFT + weeks * (CELL_W + GAP) + 4
    grid_bottom = TOP + len(weekdays) * (CELL_H + GAP)
    per_row = max((width - LEFT) // _legend_item_width(texts.legend), 1)
    legend_rows = -(-len(texts.legend) // per_row)
    height = grid_bottom + 12 + legend_rows * LEGEND_ROW_H
    hatch = f"{chart_id}-hatch"
    body: list[Markup] = [_hatch(hatch)]
    for row, weekday in enumerate(weekdays):
        name = texts.weekdays[weekday] if weekday < len(texts.weekdays) else ""
        y = TOP + row * (CELL_H + GAP) + CELL_H / 2 + 4
        body.append(text(name, LEFT - 6, y, font_size=11, text_anchor="end", fill=MUTED))
    for column in range(weeks):
        monday = first + dt.timedelta(days=7 * column)
        label = f"{monday.day:02d}.{monday.month:02d}"
        x = LEFT + column * (CELL_W + GAP) + CELL_W / 2
        body.append(text(label, x, TOP - 8, font_size=9, text_anchor="middle", fill=MUTED))
    for day in sorted(days, key=lambda d: d.date):
        if day.date.weekday() not in weekdays or not starts_on <= day.date <= ends_on:
            continue
        column = (_monday(day.date) - first).days // 7
        row = weekdays.index(day.date.weekday())
        body.append(_cell(day, LEFT + column * (CELL_W + GAP), TOP + row * (CELL_H + GAP), hatch))
    body.extend(_legend(texts.legend, grid_bottom + 8, hatch, width))
    stated = [d.label for d in sorted(days, key=lambda d: d.date)]
    desc = texts.summary + (" " + "; ".join(stated) + "." if stated else "")
    return document(
        chart_id=chart_id,
        width=width,
        height=height,
        title=texts.title,
        desc=desc,
        body=body,
        class_="chart attendance-heatmap",
    )
