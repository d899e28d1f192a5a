"""The charts as the pages show them: the numbers of ``series`` drawn by the pure modules with
texts translated into the page's language. Authorization stays with the views that call this
(the portal's ``can_read_student``, the class page's ``can_read_class_grids``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from flask import abort
from flask_babel import format_date, format_decimal, get_locale
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy.orm import Session

from ..cells import Cell
from ..models import ClassGroup, Term
from ..year.views import term_name
from .heatmap import HeatmapText, SchoolDay, attendance_heatmap
from .percent import Band, PercentPanel, Week, percent_chart
from .series import Progress, class_attendance, pupil_progress

if TYPE_CHECKING:
    from ..portal import StudentRecord


@dataclass(frozen=True)
class ProgressCharts:
    """A pupil's panels for one term; no panels: nothing marked yet (the page says so)."""

    term: Term
    student_id: int
    panels: tuple[Markup, ...]


@dataclass(frozen=True)
class ClassCharts:
    attendance: Markup | None  # None: no day with lessons in the term
    pupils: list[tuple[int, str]]  # (id, "№. name") for the pupil picker
    chosen: int | None
    progress: ProgressCharts | None


def percent_words(value: Decimal) -> str:
    return str(format_decimal(value, format="#,##0.0")) + " %"


def _bands(kind: str, bands: tuple[tuple[Decimal, int], ...], passing: Decimal) -> tuple[Band, ...]:
    if kind == "pass_fail":
        return (Band(passing, "✓"), Band(Decimal(0), "✗"))
    return tuple(Band(minimum, str(grade)) for minimum, grade in bands)


def progress_charts(progress: Progress, student_id: int) -> ProgressCharts:
    """One panel per subject with a percent in some week of the term."""
    weeks = tuple(
        Week(
            str(w.number),
            _(
                "week %(number)s (%(first)s – %(last)s)",
                number=w.number,
                first=format_date(w.starts_on, "d MMM"),
                last=format_date(w.ends_on, "d MMM"),
            ),
        )
        for w in progress.weeks
    )
    term = term_name(progress.term)
    panels = []
    for index, item in enumerate(s for s in progress.subjects if s.has_values):
        rule = item.rule
        panels.append(
            percent_chart(
                PercentPanel(
                    chart_id=f"progress-{student_id}-{index + 1}",
                    heading=item.subject.name,
                    title=_("%(subject)s: term percent by week", subject=item.subject.name),
                    summary=_("%(term)s, the term percent at the end of each week.", term=term),
                    values=item.values,
                ),
                weeks,
                _bands(rule.kind, rule.bands, rule.pass_percent),
                fmt=percent_words,
                no_value=_("no marks yet"),
                axis_label=_("Weeks of the term"),
            )
        )
    return ProgressCharts(progress.term, student_id, tuple(panels))


def pupil_charts(
    session: Session, class_group: ClassGroup, term: Term, student_id: int, today: dt.date
) -> ProgressCharts:
    return progress_charts(
        pupil_progress(session, class_group, term, student_id, today), student_id
    )


def portal_charts(
    session: Session, record: StudentRecord, term: Term | None, today: dt.date
) -> ProgressCharts | None:
    """The portal's chart: the term the page opens (or the quarter of today), in the class the
    pupil was in during it."""
    quarters = [t for t in record.terms if t.kind == "quarter"]
    if term is None:
        term = next((t for t in quarters if t.covers(today)), quarters[0] if quarters else None)
    if term is None:
        return None
    classes = [
        class_group
        for class_group, enrollment in record.classes
        if class_group.school_year_id == term.school_year_id
        and enrollment.starts_on <= term.ends_on
        and (enrollment.ends_on is None or enrollment.ends_on >= term.starts_on)
    ]
    if not classes:
        return None
    return pupil_charts(session, classes[-1], term, record.student.id, today)


def _day_label(day_date: dt.date) -> str:
    return str(format_date(day_date, "EEEE, d MMMM"))


def attendance_chart(
    session: Session,
    class_group: ClassGroup,
    term: Term,
    today: dt.date,
    cells: dict[str, Cell] | None = None,
) -> Markup | None:
    days = class_attendance(session, class_group, term, today, cells)
    if not any(d.state == "held" for d in days):
        return None
    shown = []
    for day in days:
        when = _day_label(day.date)
        if day.state == "holiday":
            label = _("%(date)s: day off (%(name)s)", date=when, name=day.holiday)
        elif day.state == "pending":
            label = _("%(date)s: lessons still to come", date=when)
        else:
            share = day.attended * 100 // day.expected if day.expected else 0
            shown_share = str(share) + " %"
            label = _(
                "%(date)s: %(share)s of lessons attended, absent all day: %(count)s",
                date=when,
                share=shown_share,
                count=day.absent_all_day,
            )
        shown.append(SchoolDay(day.date, day.state, label, day.attended, day.expected))
    from babel.dates import get_day_names

    names = get_day_names("abbreviated", locale=str(get_locale()))
    texts = HeatmapText(
        title=_(
            "Attendance of class %(name)s by day, %(term)s",
            name=class_group.name,
            term=term_name(term),
        ),
        summary=_(
            "Each school day's share of lessons attended, in percent; the darker, the lower."
        ),
        weekdays=tuple(str(names[d]) for d in range(7)),
        legend=(
            "100 %",
            "95–99 %",
            "90–94 %",
            "80–89 %",
            _("below 80 %"),
            _("day off"),
            _("lessons to come"),
        ),
    )
    return attendance_heatmap(
        chart_id=f"attendance-{class_group.id}-{term.id}",
        starts_on=term.starts_on,
        ends_on=term.ends_on,
        days=shown,
        texts=texts,
    )


def class_charts(
    session: Session,
    class_group: ClassGroup,
    term: Term,
    pupils: list[tuple[int, int, str]],
    chosen: int | None,
    today: dt.date,
    cells: dict[str, Cell] | None = None,
) -> ClassCharts:
    """The class page's charts: the attendance calendar, and the percent chart of the pupil
    chosen from the class's own list (``pupils``: (number, id, name)); any other id is 404."""
    progress = None
    if chosen is not None:
        if chosen not in {pupil_id for _n, pupil_id, _name in pupils}:
            abort(404)
        progress = pupil_charts(session, class_group, term, chosen, today)
    return ClassCharts(
        attendance=attendance_chart(session, class_group, term, today, cells),
        pupils=[(pupil_id, f"{number}. {name}") for number, pupil_id, name in pupils],
        chosen=chosen,
        progress=progress,
    )
