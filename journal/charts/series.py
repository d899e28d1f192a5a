"""The numbers the charts draw, read from a class journal. Nothing here writes.

- :func:`pupil_progress`: a pupil's term percent in each graded subject as it stood at the end
  of each week of a term. The percent is the one the grid and the summary show: the subject's
  rule (``journal.grading.compute_term``) applied to the pupil's marks of the term's lessons up
  to that day, with the term's assessment plan (``journal.year.results.TermBook``). A half-year
  subject in a quarter counts its half-year's lessons up to that day.
- :func:`class_attendance`: for each day of a term with lessons, how many pupil-lessons were
  attended out of how many (being late is attending, as in the class summary), and the days
  off of the school year inside the term.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cells import Cell, read_cells, term_works
from ..grading import GradingRule, compute_term
from ..grid.summary import ABSENCES
from ..models import ClassGroup, Holiday, Lesson, Log, Subject, Term
from ..pupils import class_pupils
from ..year.closing import class_subjects
from ..year.results import TermBook
from ..year.rules import NO_GRADES_RULE, rule_id_for, term_kind_of
from .heatmap import DayState


@dataclass(frozen=True)
class WeekSpan:
    number: int  # 1-based within the term
    starts_on: dt.date  # the term's first day or a Monday
    ends_on: dt.date  # a Sunday or the term's last day


@dataclass(frozen=True)
class SubjectProgress:
    subject: Subject
    rule: GradingRule
    values: tuple[Decimal | None, ...]  # one per week begun; None: no work yet

    @property
    def has_values(self) -> bool:
        return any(v is not None for v in self.values)


@dataclass(frozen=True)
class Progress:
    term: Term
    weeks: tuple[WeekSpan, ...]
    subjects: tuple[SubjectProgress, ...]

    @property
    def has_values(self) -> bool:
        return any(s.has_values for s in self.subjects)


@dataclass(frozen=True)
class DayAttendance:
    date: dt.date
    state: DayState  # "held", "pending" (lessons still to come) or "holiday"
    attended: int = 0  # pupil-lessons
    expected: int = 0
    absent_all_day: int = 0  # pupils who missed every lesson of the day
    holiday: str = ""  # the holiday's name


def term_weeks(term: Term) -> tuple[WeekSpan, ...]:
    """The term's weeks, Monday to Sunday, the first and last cut to the term."""
    weeks: list[WeekSpan] = []
    start = term.starts_on
    while start <= term.ends_on:
        sunday = start + dt.timedelta(days=6 - start.weekday())
        weeks.append(WeekSpan(len(weeks) + 1, start, min(sunday, term.ends_on)))
        start = sunday + dt.timedelta(days=1)
    return tuple(weeks)


def _journal_log(session: Session, class_group: ClassGroup) -> Log | None:
    return session.scalar(
        select(Log).where(Log.class_group_id == class_group.id, Log.kind == "journal")
    )


def _subject_term(terms: list[Term], kind: str, shown: Term) -> Term | None:
    if shown.kind == kind:
        return shown
    return next((t for t in terms if t.kind == kind and t.covers(shown.ends_on)), None)


def pupil_progress(
    session: Session, class_group: ClassGroup, term: Term, student_id: int, today: dt.date
) -> Progress:
    """The pupil's term percent per graded subject at the end of each week of ``term`` that
    has begun by ``today`` (see the module docstring)."""
    weeks = term_weeks(term)
    begun = [w for w in weeks if w.starts_on <= today]
    log = _journal_log(session, class_group)
    if log is None:
        return Progress(term, weeks, ())
    all_terms = list(
        session.scalars(select(Term).where(Term.school_year_id == class_group.school_year_id))
    )
    books: dict[int, TermBook] = {}
    dates: dict[int, dt.date] = {}
    found = []
    for subject in class_subjects(session, class_group):
        if rule_id_for(subject, class_group) == NO_GRADES_RULE:
            continue
        shown = _subject_term(all_terms, term_kind_of(subject), term)
        if shown is None:
            continue
        if shown.id not in books:
            books[shown.id] = TermBook(session, class_group, log, shown, student_ids=[student_id])
            for lesson_id, day in session.execute(
                select(Lesson.id, Lesson.date).where(
                    Lesson.class_group_id == class_group.id,
                    Lesson.date >= shown.starts_on,
                    Lesson.date <= shown.ends_on,
                )
            ):
                dates[lesson_id] = day
        book = books[shown.id]
        rule = book.rule(subject)
        if rule.kind not in ("criteria", "pass_fail"):
            continue  # no percent to draw
        planned = book.work(subject, student_id, [student_id])
        lessons = book.lessons.get(subject.id, [])
        values = []
        for week in begun:
            until = [i for i in lessons if dates[i] <= week.ends_on]
            marks = term_works(book.values, [student_id], until)[student_id]
            work = replace(planned, fo=marks.fo, sor=marks.sor, soch=marks.soch, marks=marks.marks)
            values.append(compute_term(rule, work).percent)
        found.append(SubjectProgress(subject, rule, tuple(values)))
    return Progress(term, weeks, tuple(found))


def class_attendance(
    session: Session,
    class_group: ClassGroup,
    term: Term,
    today: dt.date,
    cells: dict[str, Cell] | None = None,
) -> list[DayAttendance]:
    """Each day of ``term`` with lessons or off (a holiday), in date order. ``cells``: the
    log's cells when the caller has read them already (the class page's summary)."""
    lessons = session.execute(
        select(Lesson.id, Lesson.date).where(
            Lesson.class_group_id == class_group.id,
            Lesson.date >= term.starts_on,
            Lesson.date <= term.ends_on,
        )
    ).all()
    by_day: dict[dt.date, list[int]] = {}
    for lesson_id, day in lessons:
        by_day.setdefault(day, []).append(lesson_id)
    held = [i for day, ids in by_day.items() if day <= today for i in ids]
    if cells is None:
        log = _journal_log(session, class_group)
        cells = read_cells(session, log.id, lesson_ids=held) if log is not None and held else {}
    pupils = class_pupils(session, class_group, term.starts_on, term.ends_on)
    days: dict[dt.date, DayAttendance] = {}
    for day, ids in by_day.items():
        if day > today:
            days[day] = DayAttendance(day, "pending")
            continue
        attended = expected = absent_all_day = 0
        for pupil in pupils:
            if not pupil.enrolled_on(day):
                continue
            missed = 0
            for lesson_id in ids:
                cell = cells.get(f"att:{lesson_id}:{pupil.id}")
                missed += cell is not None and cell.value in ABSENCES
            expected += len(ids)
            attended += len(ids) - missed
            absent_all_day += missed == len(ids)
        days[day] = DayAttendance(day, "held", attended, expected, absent_all_day)
    holidays = session.scalars(
        select(Holiday).where(
            Holiday.school_year_id == class_group.school_year_id,
            Holiday.starts_on <= term.ends_on,
            Holiday.ends_on >= term.starts_on,
        )
    )
    six_days = any(day.weekday() == 5 for day in by_day)
    for holiday in holidays:
        day = max(holiday.starts_on, term.starts_on)
        while day <= min(holiday.ends_on, term.ends_on):
            if day not in days and day.weekday() < (6 if six_days else 5):
                days[day] = DayAttendance(day, "holiday", holiday=holiday.name)
            day += dt.timedelta(days=1)
    return [days[day] for day in sorted(days)]
