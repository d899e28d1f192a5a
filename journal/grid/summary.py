"""The class teacher's summary of one term: every pupil × subject with the current percent or
the sealed term result, and attendance totals in lessons and in whole days (of which by
illness). Read-only; the pupils are numbered as on every grid and printout."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cells import Cell, read_cells
from ..models import ClassGroup, Lesson, Term
from ..pupils import Pupil, class_pupils
from ..services import ensure_journal_log
from ..year.closing import class_subjects
from ..year.results import Outcome, TermBook
from ..year.rules import rule_id_for, term_kind_of

ABSENCES = ("absent", "sick", "excused")  # being late is not an absence


@dataclass
class SummaryRow:
    number: int
    pupil: Pupil
    results: dict[int, Outcome] = field(default_factory=dict)
    lessons_missed: int = 0
    lessons_sick: int = 0
    days_missed: int = 0
    days_sick: int = 0


@dataclass
class ClassSummary:
    term: Term
    subjects: list[tuple[object, Term, bool]]  # (subject, the term shown for it, graded)
    rows: list[SummaryRow]
    # Every cell of the class's log as read for the summary: the page's charts reuse them.
    cells: dict[str, Cell] = field(default_factory=dict, repr=False)


def summary_terms(session: Session, class_group: ClassGroup) -> list[Term]:
    """The terms a summary can show: the quarters, or the halves in a year without them."""
    terms = list(
        session.scalars(
            select(Term)
            .where(Term.school_year_id == class_group.school_year_id)
            .order_by(Term.starts_on, Term.kind)
        )
    )
    quarters = [t for t in terms if t.kind == "quarter"]
    return quarters or terms


def _term_for(terms: list[Term], kind: str, shown: Term) -> Term | None:
    if shown.kind == kind:
        return shown
    # A half-year subject in a quarter's summary: the half-year the quarter ends in.
    return next((t for t in terms if t.kind == kind and t.covers(shown.ends_on)), None)


def class_summary(session: Session, class_group: ClassGroup, term: Term) -> ClassSummary:
    log = ensure_journal_log(session, class_group)
    all_terms = list(
        session.scalars(select(Term).where(Term.school_year_id == class_group.school_year_id))
    )
    pupils = class_pupils(session, class_group, term.starts_on, term.ends_on)
    rows = [SummaryRow(number, pupil) for number, pupil in enumerate(pupils, 1)]
    cells = read_cells(session, log.id)
    books: dict[int, TermBook] = {}
    subjects = []
    for subject in class_subjects(session, class_group):
        shown = _term_for(all_terms, term_kind_of(subject), term)
        if shown is None:
            continue
        graded = rule_id_for(subject, class_group) != "kz-no-grades"
        subjects.append((subject, shown, graded))
        if not graded:
            continue
        if shown.id not in books:
            books[shown.id] = TermBook(session, class_group, log, shown, cells=cells)
        outcomes = books[shown.id].outcomes(subject, [p.id for p in pupils])
        for row in rows:
            row.results[subject.id] = outcomes[row.pupil.id]
    _attendance(session, class_group, term, cells, rows)
    return ClassSummary(term, subjects, rows, cells)


def _attendance(
    session: Session, class_group: ClassGroup, term: Term, cells: dict, rows: list[SummaryRow]
) -> None:
    lessons = session.execute(
        select(Lesson.id, Lesson.date).where(
            Lesson.class_group_id == class_group.id,
            Lesson.date >= term.starts_on,
            Lesson.date <= term.ends_on,
        )
    ).all()
    for row in rows:
        by_day: dict[dt.date, list[str | None]] = {}
        for lesson_id, day in lessons:
            if not row.pupil.enrolled_on(day):
                continue
            cell = cells.get(f"att:{lesson_id}:{row.pupil.id}")
            value = cell.value if cell is not None else None
            by_day.setdefault(day, []).append(value if value in ABSENCES else None)
        for values in by_day.values():
            missed = [v for v in values if v is not None]
            row.lessons_missed += len(missed)
            row.lessons_sick += sum(v == "sick" for v in missed)
            # A day counts when the pupil missed every lesson of it.
            if values and len(missed) == len(values):
                row.days_missed += 1
                row.days_sick += all(v == "sick" for v in missed)
