"""Classes, subjects and teachers; the weekly timetable and the lessons generated from it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from auth.models import RoleGrant, User

from ..models import (
    ClassGroup,
    Entry,
    Holiday,
    Lesson,
    School,
    SchoolYear,
    Subject,
    TeachingAssignment,
    Term,
    TimetableSlot,
)
from ..services import ensure_journal_log
from . import N_, PERIODS, TEACHING_ROLES, WEEKDAYS, SetupError


def school_teachers(session: Session, school_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .where(
                exists().where(
                    RoleGrant.user_id == User.id,
                    RoleGrant.school_id == school_id,
                    RoleGrant.role.in_(TEACHING_ROLES),
                )
            )
            .order_by(User.full_name)
        )
    )


def _check_teacher(session: Session, school_id: int, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not any(
        grant.role in TEACHING_ROLES and grant.school_id == school_id for grant in user.roles
    ):
        raise SetupError(N_("No such teacher in this school."))
    return user


def add_class_group(
    session: Session,
    year: SchoolYear,
    name: str,
    grade_level: int,
    class_teacher_id: int | None = None,
) -> ClassGroup:
    name = name.strip()
    if not name or len(name) > 40:
        raise SetupError(N_("A class needs a name of at most 40 characters, like 7Ә."))
    if not 0 <= grade_level <= 12:
        raise SetupError(N_("The grade must be from 0 to 12."))
    taken = session.scalar(
        select(ClassGroup.id).where(ClassGroup.school_year_id == year.id, ClassGroup.name == name)
    )
    if taken is not None:
        raise SetupError(N_("The class %(name)s exists already this year."), name=name)
    if class_teacher_id is not None:
        _check_teacher(session, year.school_id, class_teacher_id)
    class_group = ClassGroup(
        school_id=year.school_id,
        school_year_id=year.id,
        name=name,
        grade_level=grade_level,
        class_teacher_id=class_teacher_id,
    )
    session.add(class_group)
    session.flush()
    ensure_journal_log(session, class_group)  # the class's journal for this year
    return class_group


def set_class_teacher(session: Session, class_group: ClassGroup, teacher_id: int | None) -> None:
    if teacher_id is not None:
        _check_teacher(session, class_group.school_id, teacher_id)
    class_group.class_teacher_id = teacher_id
    session.flush()


def add_subject(
    session: Session,
    school: School,
    name: str,
    *,
    graded: bool = True,
    by_half_year: bool = False,
    pass_fail: bool = False,
) -> Subject:
    name = name.strip()
    if not name or len(name) > 200:
        raise SetupError(N_("A subject needs a name."))
    taken = session.scalar(
        select(Subject.id).where(Subject.school_id == school.id, Subject.name == name)
    )
    if taken is not None:
        raise SetupError(N_("The subject %(name)s exists already."), name=name)
    subject = Subject(
        school_id=school.id,
        name=name,
        graded=graded,
        by_half_year=by_half_year,
        pass_fail=pass_fail and graded,
    )
    session.add(subject)
    session.flush()
    return subject


def assign_teacher(
    session: Session, class_group: ClassGroup, subject: Subject, teacher_id: int
) -> TeachingAssignment:
    if subject.school_id != class_group.school_id:
        raise SetupError(N_("No such subject in this school."))
    _check_teacher(session, class_group.school_id, teacher_id)
    taken = session.scalar(
        select(TeachingAssignment.id).where(
            TeachingAssignment.user_id == teacher_id,
            TeachingAssignment.class_group_id == class_group.id,
            TeachingAssignment.subject_id == subject.id,
        )
    )
    if taken is not None:
        raise SetupError(N_("This teacher already teaches this subject in this class."))
    assignment = TeachingAssignment(
        user_id=teacher_id, class_group_id=class_group.id, subject_id=subject.id
    )
    session.add(assignment)
    session.flush()
    return assignment


def remove_assignment(session: Session, assignment: TeachingAssignment) -> None:
    """Entries already signed stay valid; the teacher can no longer write new ones."""
    session.delete(assignment)
    session.flush()


# -- timetable and lessons ---------------------------------------------------------------------


def set_timetable(
    session: Session, class_group: ClassGroup, cells: Mapping[tuple[int, int], int | None]
) -> None:
    """Replace the class's weekly timetable: (weekday, period) → subject id, or None for free."""
    subject_ids = set(
        session.scalars(select(Subject.id).where(Subject.school_id == class_group.school_id))
    )
    for (weekday, period), subject_id in cells.items():
        if weekday not in WEEKDAYS or period not in PERIODS:
            raise SetupError(N_("The timetable has a day or period that does not exist."))
        if subject_id is not None and subject_id not in subject_ids:
            raise SetupError(N_("No such subject in this school."))
    session.execute(delete(TimetableSlot).where(TimetableSlot.class_group_id == class_group.id))
    session.add_all(
        TimetableSlot(
            class_group_id=class_group.id, subject_id=subject_id, weekday=weekday, period=period
        )
        for (weekday, period), subject_id in sorted(cells.items())
        if subject_id is not None
    )
    session.flush()


def teaching_terms(session: Session, school_year_id: int) -> list[Term]:
    """The terms whose days are taught: the quarters, or the halves in a year without quarters."""
    terms = list(
        session.scalars(
            select(Term).where(Term.school_year_id == school_year_id).order_by(Term.starts_on)
        )
    )
    quarters = [t for t in terms if t.kind == "quarter"]
    return quarters or terms


def generate_lessons(
    session: Session,
    class_group: ClassGroup,
    terms: Iterable[Term] | None = None,
    *,
    from_date: dt.date | None = None,
) -> int:
    """Create the missing lessons of each quarter from the class's weekly timetable.

    Holidays get no lessons; existing lessons are kept. Returns the number created.
    """
    if terms is None:
        terms = teaching_terms(session, class_group.school_year_id)
    else:
        given = list(terms)
        terms = [t for t in given if t.kind == "quarter"] or given
    slots = list(
        session.scalars(select(TimetableSlot).where(TimetableSlot.class_group_id == class_group.id))
    )
    holidays = list(
        session.scalars(select(Holiday).where(Holiday.school_year_id == class_group.school_year_id))
    )
    existing = set(
        session.execute(
            select(Lesson.date, Lesson.period).where(Lesson.class_group_id == class_group.id)
        ).all()
    )
    by_weekday: dict[int, list[TimetableSlot]] = {}
    for slot in slots:
        by_weekday.setdefault(slot.weekday, []).append(slot)
    created = 0
    for term in terms:
        day = max(term.starts_on, from_date) if from_date else term.starts_on
        while day <= term.ends_on:
            if not any(h.covers(day) for h in holidays):
                for slot in by_weekday.get(day.weekday(), []):
                    if (day, slot.period) not in existing:
                        session.add(
                            Lesson(
                                class_group_id=class_group.id,
                                subject_id=slot.subject_id,
                                date=day,
                                period=slot.period,
                            )
                        )
                        existing.add((day, slot.period))
                        created += 1
            day += dt.timedelta(days=1)
    session.flush()
    return created


@dataclass(frozen=True)
class LessonChanges:
    created: int
    removed: int
    kept_with_entries: int


def regenerate_lessons(
    session: Session, class_group: ClassGroup, from_date: dt.date
) -> LessonChanges:
    """Bring lessons from ``from_date`` on in line with the timetable and the holidays.

    Lessons that no longer fit are removed unless an entry refers to them (history stays);
    then the missing ones are created.
    """
    slots = {
        (s.weekday, s.period): s.subject_id
        for s in session.scalars(
            select(TimetableSlot).where(TimetableSlot.class_group_id == class_group.id)
        )
    }
    holidays = list(
        session.scalars(select(Holiday).where(Holiday.school_year_id == class_group.school_year_id))
    )
    lessons = session.scalars(
        select(Lesson).where(Lesson.class_group_id == class_group.id, Lesson.date >= from_date)
    ).all()
    used = set(
        session.scalars(
            select(Entry.lesson_id)
            .join(Lesson, Lesson.id == Entry.lesson_id)
            .where(Lesson.class_group_id == class_group.id, Lesson.date >= from_date)
            .distinct()
        )
    )
    removed = kept = 0
    for lesson in lessons:
        fits = slots.get((lesson.date.weekday(), lesson.period)) == lesson.subject_id and not any(
            h.covers(lesson.date) for h in holidays
        )
        if fits:
            continue
        if lesson.id in used:
            kept += 1
            continue
        session.delete(lesson)
        removed += 1
    session.flush()
    created = generate_lessons(session, class_group, from_date=from_date)
    return LessonChanges(created, removed, kept)
