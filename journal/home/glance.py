"""A class teacher's class at a glance: today's attendance and the term's percents per subject,
and the pupils whose term percent is falling. Only for the classes the person is class teacher
of: the callers pass ``user`` and nothing else is read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User

from ..cells import read_cells
from ..grid.summary import ClassSummary, class_summary, summary_terms
from ..models import ClassGroup, Lesson, Log, Subject, Term
from ..payloads import GRADE_COMPONENTS
from ..pupils import Pupil, class_pupils
from ..year.results import TermBook

ABSENT = ("absent", "sick", "excused")

# A falling term percent (early warning): the pupil's computed term percent in a subject is at
# least FALL_POINTS lower than it was on the marks of lessons up to FALL_DAYS days ago and now
# gives a 3 or lower, or the computed grade is below the lowest passing band (a 2, or "fail" in
# a pass/fail subject). A fall that still leaves a 4 or a 5 is not listed: early in a term a
# few marks swing percents by tens of points, and a list of half the class helps nobody.
FALL_DAYS = 14
FALL_POINTS = Decimal(10)
FALL_GRADE = 3
FAILING_GRADE = 2


@dataclass
class TodayAttendance:
    lessons: int = 0  # today's lessons of the class
    taken: bool = False  # some lesson today has an attendance mark
    present: int = 0
    late: int = 0
    absent: list[tuple[Pupil, list[tuple[str, str]]]] = field(default_factory=list)
    # (pupil, [(subject name, "absent" | "sick" | "excused")])


@dataclass
class SubjectPercent:
    subject: Subject
    average: Decimal | None  # the class's mean of the pupils' current term percents
    pupils: int  # how many pupils have a percent


@dataclass
class Glance:
    class_group: ClassGroup
    term: Term | None
    today: TodayAttendance
    subjects: list[SubjectPercent]


@dataclass
class Falling:
    """A pupil whose term percent in a subject falls, with the marks of the last FALL_DAYS."""

    class_group: ClassGroup
    pupil: Pupil
    subject: Subject
    before: Decimal | None  # the percent on lessons up to FALL_DAYS ago
    now: Decimal | None
    failing: bool
    since: dt.date
    marks: list[tuple[dt.date, str]] = field(default_factory=list)


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text) if text else None
    except InvalidOperation:
        return None


def _current_term(session: Session, class_group: ClassGroup, today: dt.date) -> Term | None:
    return next((t for t in summary_terms(session, class_group) if t.covers(today)), None)


# The class summaries one page asks for, by (class, term): built once for both lists.
Summaries = dict[tuple[int, int], ClassSummary]


def _summary(
    session: Session, class_group: ClassGroup, term: Term, cache: Summaries | None
) -> ClassSummary:
    if cache is None:
        return class_summary(session, class_group, term)
    key = (class_group.id, term.id)
    if key not in cache:
        cache[key] = class_summary(session, class_group, term)
    return cache[key]


def own_classes(session: Session, user: User) -> list[ClassGroup]:
    return list(
        session.scalars(
            select(ClassGroup)
            .where(ClassGroup.class_teacher_id == user.id)
            .order_by(ClassGroup.grade_level, ClassGroup.name)
        )
    )


def _today(
    session: Session, class_group: ClassGroup, log_id: int, today: dt.date
) -> TodayAttendance:
    lessons = dict(
        session.execute(
            select(Lesson.id, Subject.name)
            .join(Subject, Subject.id == Lesson.subject_id)
            .where(Lesson.class_group_id == class_group.id, Lesson.date == today)
            .order_by(Lesson.period)
        ).all()
    )
    found = TodayAttendance(lessons=len(lessons))
    if not lessons:
        return found
    cells = read_cells(
        session, log_id, lesson_ids=list(lessons), kinds=("attendance", "correction")
    )
    marks: dict[int, list[tuple[str, str]]] = {}
    for key, cell in cells.items():
        if not key.startswith("att:") or not cell.heads or cell.value is None:
            continue
        head = cell.heads[0]
        if head.lesson_id is None or head.student_id is None:
            continue
        found.taken = True
        marks.setdefault(head.student_id, []).append((lessons[head.lesson_id], str(cell.value)))
    for pupil in class_pupils(session, class_group, today, today):
        if not pupil.enrolled_on(today):
            continue
        own = marks.get(pupil.id, [])
        missed = [(subject, value) for subject, value in own if value in ABSENT]
        if missed:
            found.absent.append((pupil, missed))
        elif any(value == "late" for _, value in own):
            found.late += 1
        else:
            found.present += 1
    return found


def class_glance(
    session: Session, user: User, today: dt.date, summaries: Summaries | None = None
) -> list[Glance]:
    """Each of the user's own classes: attendance today and the term's percents per subject
    (the class summary's outcomes, averaged over the pupils who have a percent)."""
    glances = []
    for class_group in own_classes(session, user):
        log_id = session.scalar(select(Log.id).where(Log.class_group_id == class_group.id))
        attendance = (
            _today(session, class_group, log_id, today) if log_id is not None else TodayAttendance()
        )
        term = _current_term(session, class_group, today)
        subjects = []
        if term is not None:
            summary = _summary(session, class_group, term, summaries)
            for subject, _shown, graded in summary.subjects:
                if not graded:
                    continue
                assert isinstance(subject, Subject)
                percents = [
                    p
                    for row in summary.rows
                    if (p := _decimal(row.results[subject.id].percent)) is not None
                ]
                average = (
                    (sum(percents, Decimal(0)) / len(percents)).quantize(Decimal("0.1"))
                    if percents
                    else None
                )
                subjects.append(SubjectPercent(subject, average, len(percents)))
        glances.append(Glance(class_group, term, attendance, subjects))
    return glances


def _mark_text(value: object) -> str:
    if not isinstance(value, dict):
        return ""
    if "points" in value:
        return f"{value['points']}/{value.get('max', '')}"
    for name in ("score", "mark"):
        if name in value:
            return str(value[name])
    return ""


def falling_percents(
    session: Session, user: User, today: dt.date, summaries: Summaries | None = None
) -> list[Falling]:
    """Pupils of the user's own classes whose term percent falls (see FALL_POINTS above)."""
    since = today - dt.timedelta(days=FALL_DAYS)
    found: list[Falling] = []
    for class_group in own_classes(session, user):
        term = _current_term(session, class_group, today)
        if term is None:
            continue
        summary = _summary(session, class_group, term, summaries)
        log_id = session.scalar(select(Log.id).where(Log.class_group_id == class_group.id))
        if log_id is None:
            continue
        cells = read_cells(session, log_id)
        lesson_days = dict(
            session.execute(
                select(Lesson.id, Lesson.date).where(
                    Lesson.class_group_id == class_group.id,
                    Lesson.date >= term.starts_on,
                    Lesson.date <= term.ends_on,
                )
            ).all()
        )
        books: dict[int, TermBook] = {}
        held: dict[int, list[int]] = {}  # each subject's lesson ids in the shown term
        ids = [row.pupil.id for row in summary.rows]
        for subject, shown, graded in summary.subjects:
            if not graded:
                continue
            assert isinstance(subject, Subject) and isinstance(shown, Term)
            if shown.id not in books:
                log = session.get_one(Log, log_id)
                book = TermBook(session, class_group, log, shown, cells=cells)
                held.update(book.lessons)
                # The same rule on the lessons held up to FALL_DAYS days ago.
                book.lessons = {
                    subject_id: [i for i in lesson_ids if lesson_days.get(i, today) <= since]
                    for subject_id, lesson_ids in book.lessons.items()
                }
                books[shown.id] = book
            before_outcomes = books[shown.id].outcomes(subject, ids)
            recent = [i for i in held.get(subject.id, []) if lesson_days.get(i, since) > since]
            for row in summary.rows:
                outcome = row.results[subject.id]
                if outcome.sealed or outcome.status is not None:
                    continue
                computed = outcome.computed or outcome
                earlier = before_outcomes[row.pupil.id]
                now = _decimal(computed.percent)
                before = _decimal((earlier.computed or earlier).percent)
                failing = (
                    computed.grade is not None and computed.grade <= FAILING_GRADE
                ) or computed.result == "fail"
                fell = (
                    now is not None
                    and before is not None
                    and before - now >= FALL_POINTS
                    and computed.grade is not None
                    and computed.grade <= FALL_GRADE
                )
                if not (failing or fell):
                    continue
                marks = [
                    (lesson_days[lesson_id], text)
                    for lesson_id in recent
                    for component in GRADE_COMPONENTS
                    if (cell := cells.get(f"{component}:{lesson_id}:{row.pupil.id}")) is not None
                    and (text := _mark_text(cell.value))
                ]
                found.append(
                    Falling(class_group, row.pupil, subject, before, now, failing, since, marks)
                )
    return found
