"""School set-up for the school admin: the year and its terms and holidays, classes, subjects,
teaching assignments, the weekly timetable that lessons are generated from, and transfers.

Services come first (session first, flush, never commit); the ``setup`` blueprint's views call
them and commit. Service errors carry an English message id that views translate when shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session
from wtforms import BooleanField, DateField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from auth.access import current_user, personal_data, roles_required
from auth.iin import InvalidIIN, iin_lookup_hash, validate_iin
from auth.models import RoleGrant, User
from auth.services import (
    group_code,
    normalize_paper_code,
    paper_code,
    record_access,
    sha256_text,
)
from auth.signin import code_wait, record_failure

from .class_list import year_class_list
from .collation import class_key, in_pupil_order
from .db import db, utcnow
from .ids import id_arg
from .models import (
    ClassGroup,
    Enrollment,
    Entry,
    Holiday,
    Lesson,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
    TimetableSlot,
    TransferCode,
)
from .services import ensure_journal_log

WEEKDAYS = range(6)  # Monday to Saturday: some schools teach six days a week
PERIODS = range(1, 9)
TERM_COUNTS = {"quarter": 4, "half": 2}
TEACHING_ROLES = ("teacher", "class_teacher")


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown (view or command)."""
    return message


class SetupError(Exception):
    """A set-up request that cannot be done; nothing was written."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params

    def translated(self) -> str:
        return _(self.message, **self.params)


# -- the school year, terms and holidays -------------------------------------------------------


def create_school_year(
    session: Session, school: School, name: str, starts_on: dt.date, ends_on: dt.date
) -> SchoolYear:
    name = name.strip()
    if not name or len(name) > 20:
        raise SetupError(N_("A school year needs a name of at most 20 characters."))
    if starts_on >= ends_on:
        raise SetupError(N_("The school year must end after it starts."))
    years = session.scalars(select(SchoolYear).where(SchoolYear.school_id == school.id)).all()
    for year in years:
        if year.name == name:
            raise SetupError(N_("The school year %(name)s exists already."), name=name)
        if year.starts_on <= ends_on and starts_on <= year.ends_on:
            raise SetupError(N_("The dates overlap the school year %(name)s."), name=year.name)
    year = SchoolYear(school_id=school.id, name=name, starts_on=starts_on, ends_on=ends_on)
    session.add(year)
    session.flush()
    return year


def _check_term_dates(
    session: Session,
    year: SchoolYear,
    kind: str,
    starts_on: dt.date,
    ends_on: dt.date,
    term_id: int,
) -> None:
    if starts_on > ends_on:
        raise SetupError(N_("A term must end after it starts."))
    if starts_on < year.starts_on or ends_on > year.ends_on:
        raise SetupError(N_("A term must lie inside the school year."))
    others = session.scalars(
        select(Term).where(Term.school_year_id == year.id, Term.kind == kind, Term.id != term_id)
    )
    for other in others:
        if other.starts_on <= ends_on and starts_on <= other.ends_on:
            raise SetupError(N_("The dates overlap another term of the same kind."))


def add_term(
    session: Session,
    year: SchoolYear,
    kind: str,
    number: int,
    starts_on: dt.date,
    ends_on: dt.date,
) -> Term:
    if kind not in TERM_COUNTS:
        raise SetupError(N_("A term is a quarter or a half-year."))
    if not 1 <= number <= TERM_COUNTS[kind]:
        raise SetupError(
            N_("The number must be from 1 to %(count)s for this kind of term."),
            count=TERM_COUNTS[kind],
        )
    taken = session.scalar(
        select(Term.id).where(
            Term.school_year_id == year.id, Term.kind == kind, Term.number == number
        )
    )
    if taken is not None:
        raise SetupError(N_("This term exists already."))
    _check_term_dates(session, year, kind, starts_on, ends_on, term_id=0)
    term = Term(
        school_year_id=year.id, kind=kind, number=number, starts_on=starts_on, ends_on=ends_on
    )
    session.add(term)
    session.flush()
    return term


def change_term_dates(session: Session, term: Term, starts_on: dt.date, ends_on: dt.date) -> None:
    if term.closed_at is not None:
        raise SetupError(N_("A closed term cannot change."))
    _check_term_dates(session, term.school_year, term.kind, starts_on, ends_on, term.id)
    term.starts_on, term.ends_on = starts_on, ends_on
    session.flush()


def add_holiday(
    session: Session, year: SchoolYear, name: str, starts_on: dt.date, ends_on: dt.date
) -> Holiday:
    name = name.strip()
    if not name:
        raise SetupError(N_("A holiday needs a name."))
    if starts_on > ends_on:
        raise SetupError(N_("A holiday must end on or after its first day."))
    if starts_on < year.starts_on or ends_on > year.ends_on:
        raise SetupError(N_("A holiday must lie inside the school year."))
    holiday = Holiday(school_year_id=year.id, name=name, starts_on=starts_on, ends_on=ends_on)
    session.add(holiday)
    session.flush()
    return holiday


def remove_holiday(session: Session, holiday: Holiday) -> None:
    session.delete(holiday)
    session.flush()


# -- classes, subjects, teachers ---------------------------------------------------------------


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


# -- enrollments and transfers -----------------------------------------------------------------


def open_enrollment(session: Session, student: Student, on_date: dt.date) -> Enrollment | None:
    """The student's enrollment that covers ``on_date`` or starts after it and is still open."""
    return session.scalar(
        select(Enrollment)
        .where(
            Enrollment.student_id == student.id,
            (Enrollment.ends_on.is_(None)) | (Enrollment.ends_on >= on_date),
        )
        .order_by(Enrollment.starts_on.desc())
    )


def _check_no_entries_after(session: Session, enrollment: Enrollment, last_day: dt.date) -> None:
    later = session.scalar(
        select(func.count())
        .select_from(Entry)
        .join(Lesson, Lesson.id == Entry.lesson_id)
        .where(
            Entry.student_id == enrollment.student_id,
            Lesson.class_group_id == enrollment.class_group_id,
            Lesson.date > last_day,
        )
    )
    if later:
        raise SetupError(
            N_("The journal already has %(count)s entries for this student after that date."),
            count=later,
        )


def transfer_student(
    session: Session, enrollment: Enrollment, to_class: ClassGroup, on_date: dt.date
) -> Enrollment:
    """Move a student to another class of the same school from ``on_date`` (first day there)."""
    source = session.get_one(ClassGroup, enrollment.class_group_id)
    if to_class.school_id != source.school_id:
        raise SetupError(N_("Transfers to another school go through leaving and admission."))
    if to_class.id == source.id:
        raise SetupError(N_("The student is already in this class."))
    if enrollment.ends_on is not None and enrollment.ends_on < on_date:
        raise SetupError(N_("The student has left this class before that date."))
    if on_date <= enrollment.starts_on:
        raise SetupError(N_("The transfer date must be after the student joined the class."))
    year = session.get_one(SchoolYear, to_class.school_year_id)
    if not year.starts_on <= on_date <= year.ends_on:
        raise SetupError(N_("The date is not in the new class's school year."))
    last_day = on_date - dt.timedelta(days=1)
    _check_no_entries_after(session, enrollment, last_day)
    enrollment.ends_on = last_day
    moved = Enrollment(
        student_id=enrollment.student_id,
        class_group_id=to_class.id,
        starts_on=on_date,
        ends_on=None,
    )
    session.add(moved)
    session.flush()
    return moved


def record_leaving(session: Session, enrollment: Enrollment, last_day: dt.date) -> None:
    """The student leaves the school (another school, another town): close the enrollment."""
    if last_day < enrollment.starts_on:
        raise SetupError(N_("The last day cannot be before the student joined the class."))
    if enrollment.ends_on is not None and enrollment.ends_on < last_day:
        raise SetupError(N_("The student has left this class before that date."))
    _check_no_entries_after(session, enrollment, last_day)
    enrollment.ends_on = last_day
    session.flush()


# A transfer code is typed from paper like an invitation (auth.services.paper_code): 12 of 31
# signs (about 59 bits); wrong codes are throttled per address under their own key.
TRANSFER_CODE_LENGTH = 12
TRANSFER_CODE_LIFETIME = dt.timedelta(days=30)
TRANSFER_CODE_KIND = "#transfer"


def _transfer_code_hash(code: str) -> bytes:
    """SHA-256 of the code as typed, without dashes and spaces, in capitals."""
    return sha256_text(normalize_paper_code(code))


def issue_transfer_code(
    session: Session,
    school: School,
    student: Student,
    *,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
    lifetime: dt.timedelta = TRANSFER_CODE_LIFETIME,
) -> tuple[TransferCode, str]:
    """A one-time code for a pupil who leaves, printed for the new school: with the pupil's
    IIN it admits them there. Returns the row and the code, which is shown once."""
    if student.school_id != school.id:
        raise SetupError(N_("No such student in this school."))
    staying = session.scalar(
        select(Enrollment.id).where(
            Enrollment.student_id == student.id, Enrollment.ends_on.is_(None)
        )
    )
    if staying is not None:
        raise SetupError(N_("Record that the student leaves first, then print the transfer code."))
    # Only the newest letter admits the pupil: an earlier code, lost or not, stops working.
    session.execute(
        update(TransferCode)
        .where(
            TransferCode.student_id == student.id,
            TransferCode.used_at.is_(None),
            TransferCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    code = paper_code(TRANSFER_CODE_LENGTH)
    transfer = TransferCode(
        school_id=school.id,
        student_id=student.id,
        code_hash=_transfer_code_hash(code),
        created_by_id=actor.id if actor else None,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(transfer)
    session.flush()
    record_access(
        session,
        actor,
        "transfer_code.issue",
        "student",
        student.id,
        ip,
        school_id=school.id,
        now=now,
    )
    return transfer, group_code(code, 4)


def admit_transferred_student(
    session: Session,
    school: School,
    iin: str,
    to_class: ClassGroup,
    on_date: dt.date,
    *,
    hmac_key: str,
    transfer_code: str = "",
    actor: User | None = None,
    address: str | None = None,
    now: dt.datetime | None = None,
) -> Enrollment:
    """Admit a pupil found by IIN, enrolled from ``on_date``.

    Without a transfer code the IIN is looked up in this school only (a pupil who comes back).
    A pupil from another school needs the code their old school printed
    (``issue_transfer_code``): the IIN and the code together find their record, which is
    copied into this school, and the parent and student accounts follow the child. Nothing
    about any other school is told or shown otherwise.

    Every lookup leaves an access-log row with the keyed hash of the IIN searched; a wrong code
    also counts against the address. On ``SetupError`` those are the only rows written (the
    view commits them), so that a refused lookup stays on record.
    """
    now = now or utcnow()
    try:
        iin = validate_iin(iin)
    except InvalidIIN:
        raise SetupError(N_("This IIN is not valid: check the 12 digits.")) from None
    if to_class.school_id != school.id:
        raise SetupError(N_("No such class in this school."))
    year = session.get_one(SchoolYear, to_class.school_year_id)
    if not year.starts_on <= on_date <= year.ends_on:
        raise SetupError(N_("The date is not in the new class's school year."))
    with_code = bool(transfer_code.strip())
    if with_code and code_wait(session, TRANSFER_CODE_KIND, address, now):
        raise SetupError(N_("Too many wrong codes from this address: try again later."))
    lookup = iin_lookup_hash(iin, hmac_key)
    action = "admit.lookup_iin_with_code" if with_code else "admit.lookup_iin"
    record_access(
        session, actor, action, "iin", lookup.hex(), address, school_id=school.id, now=now
    )
    here = session.scalar(
        select(Student).where(Student.school_id == school.id, Student.iin_hmac == lookup)
    )
    transfer: TransferCode | None = None
    source: Student | None = None
    if with_code:
        transfer = session.scalar(
            select(TransferCode).where(TransferCode.code_hash == _transfer_code_hash(transfer_code))
        )
        source = session.get(Student, transfer.student_id) if transfer is not None else None
        if (
            transfer is None
            or transfer.used_at is not None
            or source is None
            or source.iin_hmac != lookup
        ):
            record_failure(
                session, username=TRANSFER_CODE_KIND, address=address, device=None, now=now
            )
            raise SetupError(
                N_(
                    "This transfer code does not match this IIN, or it has been used. Check "
                    "both, or ask the old school for a new code."
                )
            )
        if transfer.expires_at <= now:
            raise SetupError(
                N_("This transfer code has expired: ask the old school for a new one.")
            )
        if source.school_id == school.id:
            here = source
        elif open_enrollment(session, source, on_date) is not None:
            raise SetupError(
                N_("The old school has not recorded that the student leaves before that date.")
            )
    elif here is None:
        raise SetupError(
            N_(
                "No student with this IIN in this school. A student from another school is "
                "admitted with the transfer code their old school printed; a new student is "
                "added with the roster import."
            )
        )
    if here is not None and open_enrollment(session, here, on_date) is not None:
        raise SetupError(N_("The student is still enrolled in this school on that date."))

    if transfer is not None:
        # Claim the code before writing anything else: of two admins racing, one wins.
        claimed = session.execute(
            update(TransferCode)
            .where(TransferCode.id == transfer.id, TransferCode.used_at.is_(None))
            .values(used_at=now, used_by_id=actor.id if actor else None)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise SetupError(N_("This transfer code has just been used."))
    if here is None:
        assert source is not None
        here = Student(
            school_id=school.id,
            last_name=source.last_name,
            first_name=source.first_name,
            patronymic=source.patronymic,
            birth_date=source.birth_date,
            iin_encrypted=source.iin_encrypted,
            iin_hmac=source.iin_hmac,
        )
        session.add(here)
        session.flush()
        grants = session.scalars(
            select(RoleGrant).where(
                RoleGrant.student_id == source.id, RoleGrant.role.in_(("parent", "student"))
            )
        ).all()
        for grant in grants:
            grant.user.roles.append(
                RoleGrant(role=grant.role, school_id=school.id, student_id=here.id)
            )
    enrollment = Enrollment(
        student_id=here.id, class_group_id=to_class.id, starts_on=on_date, ends_on=None
    )
    session.add(enrollment)
    session.flush()
    if transfer is not None and source is not None:
        session.execute(
            update(TransferCode)
            .where(TransferCode.id == transfer.id)
            .values(admitted_student_id=here.id)
            .execution_options(synchronize_session=False)
        )
        # The old school sees in its own log that its pupil was admitted elsewhere.
        record_access(
            session,
            actor,
            "transfer_code.redeemed",
            "student",
            source.id,
            address,
            school_id=source.school_id,
            now=now,
        )
    record_access(
        session, actor, "admit.student", "student", here.id, address, school_id=school.id, now=now
    )
    return enrollment


@dataclass(frozen=True)
class RosterLine:
    enrollment: Enrollment
    student: Student

    @property
    def current(self) -> bool:
        return self.enrollment.ends_on is None


def class_roster(session: Session, class_group: ClassGroup) -> list[RosterLine]:
    """Every enrollment of the class, pupils in the class's alphabetical order (journal.pupils)."""
    rows = session.execute(
        select(Enrollment, Student)
        .join(Student, Student.id == Enrollment.student_id)
        .where(Enrollment.class_group_id == class_group.id)
        .order_by(Enrollment.starts_on)
    ).all()
    ordered = in_pupil_order(
        class_group.language,
        rows,
        lambda row: (row[1].last_name, row[1].first_name, row[1].patronymic, row[1].id),
    )
    return [RosterLine(enrollment, student) for enrollment, student in ordered]


# -- views -------------------------------------------------------------------------------------

bp = Blueprint("setup", __name__, url_prefix="/setup")


def admin_school() -> School:
    user = current_user()
    assert user is not None
    school_id = next(
        (g.school_id for g in user.roles if g.role == "school_admin" and g.school_id), None
    )
    school = db.session.get(School, school_id or user.school_id or 0)
    if school is None:
        abort(403)
    return school


def own_year(year_id: int) -> SchoolYear:
    year = db.session.get(SchoolYear, year_id)
    if year is None or year.school_id != admin_school().id:
        abort(404)
    return year


def own_class(class_id: int) -> ClassGroup:
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None or class_group.school_id != admin_school().id:
        abort(404)
    return class_group


def year_classes(year: SchoolYear) -> list[ClassGroup]:
    classes = db.session.scalars(select(ClassGroup).where(ClassGroup.school_year_id == year.id))
    return sorted(classes, key=lambda c: class_key(c.name, c.grade_level))  # 7А, 7Ә, 7Б


def school_subjects(school: School) -> list[Subject]:
    return list(
        db.session.scalars(
            select(Subject).where(Subject.school_id == school.id).order_by(Subject.name)
        )
    )


def weekday_names() -> list[str]:
    """Monday first, in the page's language (CLDR names, no catalog needed)."""
    locale = get_locale()
    names = locale.days["format"]["wide"] if locale else {}
    return [str(names.get(day, day + 1)).capitalize() for day in WEEKDAYS]


def done(message: str, target: str) -> Any:
    db.session.commit()
    flash(message, "ok")
    return redirect(target)


def refused(error: SetupError) -> None:
    # Services check everything before they write, so there is nothing to roll back; the
    # request ends without a commit.
    flash(error.translated(), "error")


def flash_form_errors(form: FlaskForm) -> None:
    for field_name, errors in form.errors.items():
        label = getattr(form, field_name).label.text if hasattr(form, field_name) else field_name
        for error in errors:
            flash(f"{label}: {error}", "error")


class YearForm(FlaskForm):
    name = StringField(_l("Name (e.g. 2026-2027)"), validators=[DataRequired(), Length(max=20)])
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class TermForm(FlaskForm):
    kind = SelectField(
        _l("Kind"),
        choices=[SelectChoice("quarter", _l("Quarter")), SelectChoice("half", _l("Half-year"))],
    )
    number = IntegerField(_l("Number"), validators=[InputRequired(), NumberRange(1, 4)])
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class TermDatesForm(FlaskForm):
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class HolidayForm(FlaskForm):
    name = StringField(_l("Holiday"), validators=[DataRequired(), Length(max=200)])
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class ClassForm(FlaskForm):
    name = StringField(_l("Class name (e.g. 7Ә)"), validators=[DataRequired(), Length(max=40)])
    grade_level = IntegerField(_l("Grade level"), validators=[InputRequired(), NumberRange(0, 12)])
    class_teacher = SelectField(_l("Class teacher"), coerce=str, validators=[Optional()])


class SubjectForm(FlaskForm):
    name = StringField(_l("Subject"), validators=[DataRequired(), Length(max=200)])
    graded = BooleanField(_l("Graded"), default=True)
    by_half_year = BooleanField(_l("Graded by half-years"))
    pass_fail = BooleanField(_l("Graded pass/fail"))


class AssignmentForm(FlaskForm):
    teacher = SelectField(_l("Teacher"), coerce=int)
    class_group = SelectField(_l("Class"), coerce=int)
    subject = SelectField(_l("Subject"), coerce=int)


class LessonsForm(FlaskForm):
    from_date = DateField(_l("Starting on"), validators=[InputRequired()])


class TransferForm(FlaskForm):
    to_class = SelectField(_l("New class"), coerce=int)
    on_date = DateField(_l("First day in the new class"), validators=[InputRequired()])


class LeavingForm(FlaskForm):
    last_day = DateField(_l("Last day at school"), validators=[InputRequired()])


class AdmitForm(FlaskForm):
    iin = StringField(_l("IIN"), validators=[DataRequired(), Length(min=12, max=12)])
    transfer_code = StringField(
        _l("Transfer code from the old school"), validators=[Optional(), Length(max=40)]
    )
    class_group = SelectField(_l("Class"), coerce=int)
    on_date = DateField(_l("First day"), validators=[InputRequired()])


@bp.get("/")
@roles_required("school_admin")
def overview() -> Any:
    school = admin_school()
    years = db.session.scalars(
        select(SchoolYear).where(SchoolYear.school_id == school.id).order_by(SchoolYear.starts_on)
    ).all()
    return render_template("setup/overview.html", school=school, years=years, form=YearForm())


@bp.post("/years")
@roles_required("school_admin")
def create_year() -> Any:
    school = admin_school()
    form = YearForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for(".overview"))
    try:
        assert form.starts_on.data and form.ends_on.data
        year = create_school_year(
            db.session, school, form.name.data or "", form.starts_on.data, form.ends_on.data
        )
    except SetupError as error:
        refused(error)
        return redirect(url_for(".overview"))
    return done(
        _("School year %(name)s created.", name=year.name), url_for(".year", year_id=year.id)
    )


@bp.get("/years/<int:year_id>")
@roles_required("school_admin")
def year(year_id: int) -> Any:
    school_year = own_year(year_id)
    holidays = db.session.scalars(
        select(Holiday).where(Holiday.school_year_id == year_id).order_by(Holiday.starts_on)
    ).all()
    return render_template(
        "setup/year.html",
        year=school_year,
        holidays=holidays,
        term_form=TermForm(prefix="term"),
        holiday_form=HolidayForm(prefix="holiday"),
        dates_form=TermDatesForm,
    )


@bp.post("/years/<int:year_id>/terms")
@roles_required("school_admin")
def create_term(year_id: int) -> Any:
    school_year = own_year(year_id)
    form = TermForm(prefix="term")
    target = url_for(".year", year_id=year_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    try:
        assert form.number.data is not None and form.starts_on.data and form.ends_on.data
        add_term(
            db.session,
            school_year,
            form.kind.data or "",
            form.number.data,
            form.starts_on.data,
            form.ends_on.data,
        )
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Term added."), target)


@bp.post("/terms/<int:term_id>")
@roles_required("school_admin")
def update_term(term_id: int) -> Any:
    term = db.session.get(Term, term_id)
    if term is None:
        abort(404)
    own_year(term.school_year_id)
    form = TermDatesForm(prefix="dates")
    target = url_for(".year", year_id=term.school_year_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    try:
        assert form.starts_on.data and form.ends_on.data
        change_term_dates(db.session, term, form.starts_on.data, form.ends_on.data)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Term dates saved."), target)


@bp.post("/years/<int:year_id>/holidays")
@roles_required("school_admin")
def create_holiday(year_id: int) -> Any:
    school_year = own_year(year_id)
    form = HolidayForm(prefix="holiday")
    target = url_for(".year", year_id=year_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    try:
        assert form.starts_on.data and form.ends_on.data
        add_holiday(
            db.session, school_year, form.name.data or "", form.starts_on.data, form.ends_on.data
        )
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Holiday added. Regenerate the lessons of each class to apply it."), target)


@bp.post("/holidays/<int:holiday_id>/delete")
@roles_required("school_admin")
def delete_holiday(holiday_id: int) -> Any:
    holiday = db.session.get(Holiday, holiday_id)
    if holiday is None:
        abort(404)
    own_year(holiday.school_year_id)
    remove_holiday(db.session, holiday)
    return done(_("Holiday removed."), url_for(".year", year_id=holiday.school_year_id))


@bp.route("/years/<int:year_id>/classes", methods=["GET", "POST"])
@roles_required("school_admin")
def classes(year_id: int) -> Any:
    school_year = own_year(year_id)
    school = admin_school()
    form = ClassForm()
    teachers = school_teachers(db.session, school.id)
    form.class_teacher.choices = [SelectChoice("", _("(none)"))] + [
        SelectChoice(str(t.id), t.full_name) for t in teachers
    ]
    if request.method == "POST":
        if form.validate_on_submit():
            teacher = int(form.class_teacher.data) if form.class_teacher.data else None
            try:
                assert form.grade_level.data is not None
                added = add_class_group(
                    db.session, school_year, form.name.data or "", form.grade_level.data, teacher
                )
            except SetupError as error:
                refused(error)
            else:
                return done(
                    _("Class %(name)s added.", name=added.name),
                    url_for(".classes", year_id=year_id),
                )
        else:
            flash_form_errors(form)
    return render_template(
        "setup/classes.html",
        year=school_year,
        class_groups=year_classes(school_year),
        teaching=year_class_list(db.session, year_id),
        teachers=teachers,
        form=form,
    )


@bp.post("/classes/<int:class_id>/class-teacher")
@roles_required("school_admin")
def change_class_teacher(class_id: int) -> Any:
    class_group = own_class(class_id)
    chosen = id_arg(request.form, "class_teacher")  # empty: no class teacher
    target = url_for(".classes", year_id=class_group.school_year_id)
    try:
        set_class_teacher(db.session, class_group, chosen)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Class teacher of %(name)s saved.", name=class_group.name), target)


@bp.route("/subjects", methods=["GET", "POST"])
@roles_required("school_admin")
def subjects() -> Any:
    school = admin_school()
    form = SubjectForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                added = add_subject(
                    db.session,
                    school,
                    form.name.data or "",
                    graded=bool(form.graded.data),
                    by_half_year=bool(form.by_half_year.data),
                    pass_fail=bool(form.pass_fail.data),
                )
            except SetupError as error:
                refused(error)
            else:
                return done(_("Subject %(name)s added.", name=added.name), url_for(".subjects"))
        else:
            flash_form_errors(form)
    return render_template("setup/subjects.html", subjects=school_subjects(school), form=form)


@bp.route("/years/<int:year_id>/assignments", methods=["GET", "POST"])
@roles_required("school_admin")
def assignments(year_id: int) -> Any:
    school_year = own_year(year_id)
    school = admin_school()
    form = AssignmentForm()
    teachers = school_teachers(db.session, school.id)
    class_groups = year_classes(school_year)
    subject_list = school_subjects(school)
    form.teacher.choices = [SelectChoice(t.id, t.full_name) for t in teachers]
    form.class_group.choices = [SelectChoice(c.id, c.name) for c in class_groups]
    form.subject.choices = [SelectChoice(s.id, s.name) for s in subject_list]
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                assert form.class_group.data is not None and form.subject.data is not None
                assign_teacher(
                    db.session,
                    own_class(form.class_group.data),
                    db.session.get_one(Subject, form.subject.data),
                    form.teacher.data or 0,
                )
            except SetupError as error:
                refused(error)
            else:
                return done(_("Assignment added."), url_for(".assignments", year_id=year_id))
        else:
            flash_form_errors(form)
    rows = db.session.execute(
        select(TeachingAssignment, User.full_name, ClassGroup.name, Subject.name)
        .join(User, User.id == TeachingAssignment.user_id)
        .join(ClassGroup, ClassGroup.id == TeachingAssignment.class_group_id)
        .join(Subject, Subject.id == TeachingAssignment.subject_id)
        .where(ClassGroup.school_year_id == year_id)
        .order_by(ClassGroup.grade_level, ClassGroup.name, Subject.name)
    ).all()
    return render_template("setup/assignments.html", year=school_year, rows=rows, form=form)


@bp.post("/assignments/<int:assignment_id>/delete")
@roles_required("school_admin")
def delete_assignment(assignment_id: int) -> Any:
    assignment = db.session.get(TeachingAssignment, assignment_id)
    if assignment is None:
        abort(404)
    class_group = own_class(assignment.class_group_id)
    remove_assignment(db.session, assignment)
    return done(
        _("Assignment removed."), url_for(".assignments", year_id=class_group.school_year_id)
    )


@bp.route("/classes/<int:class_id>/timetable", methods=["GET", "POST"])
@roles_required("school_admin")
def timetable(class_id: int) -> Any:
    class_group = own_class(class_id)
    school = admin_school()
    subject_list = school_subjects(school)
    if request.method == "POST":
        cells = {
            (weekday, period): id_arg(request.form, f"slot-{weekday}-{period}")
            for weekday in WEEKDAYS
            for period in PERIODS
        }
        try:
            set_timetable(db.session, class_group, cells)
        except SetupError as error:
            refused(error)
        else:
            return done(
                _("Timetable saved. Generate the lessons to apply it."),
                url_for(".timetable", class_id=class_id),
            )
    slots = {
        (s.weekday, s.period): s.subject_id
        for s in db.session.scalars(
            select(TimetableSlot).where(TimetableSlot.class_group_id == class_id)
        )
    }
    lesson_count = db.session.scalar(
        select(func.count()).select_from(Lesson).where(Lesson.class_group_id == class_id)
    )
    lessons_form = LessonsForm(from_date=max(dt.date.today(), class_group.school_year.starts_on))
    return render_template(
        "setup/timetable.html",
        class_group=class_group,
        subjects=subject_list,
        slots=slots,
        weekdays=list(zip(WEEKDAYS, weekday_names(), strict=True)),
        periods=PERIODS,
        lesson_count=lesson_count,
        lessons_form=lessons_form,
    )


@bp.post("/classes/<int:class_id>/lessons")
@roles_required("school_admin")
def make_lessons(class_id: int) -> Any:
    class_group = own_class(class_id)
    form = LessonsForm()
    target = url_for(".timetable", class_id=class_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    assert form.from_date.data
    changes = regenerate_lessons(db.session, class_group, form.from_date.data)
    message = _(
        "Lessons created: %(created)s, removed: %(removed)s.",
        created=changes.created,
        removed=changes.removed,
    )
    if changes.kept_with_entries:
        message += " " + _(
            "%(kept)s lessons no longer fit the timetable but keep their entries.",
            kept=changes.kept_with_entries,
        )
    return done(message, target)


@bp.get("/classes/<int:class_id>/students")
@roles_required("school_admin")
@personal_data("class_group", "class_id")
def students(class_id: int) -> Any:
    class_group = own_class(class_id)
    roster = class_roster(db.session, class_group)
    transfer_form = TransferForm()
    transfer_form.to_class.choices = [
        SelectChoice(c.id, c.name)
        for c in year_classes(class_group.school_year)
        if c.id != class_id
    ]
    # Pupils who have left the school (no open enrollment in any of its classes) get a code.
    staying = set(
        db.session.scalars(
            select(Enrollment.student_id).where(
                Enrollment.student_id.in_([line.student.id for line in roster]),
                Enrollment.ends_on.is_(None),
            )
        )
    )
    return render_template(
        "setup/students.html",
        class_group=class_group,
        roster=roster,
        staying=staying,
        transfer_form=transfer_form,
        leaving_form=LeavingForm(),
    )


def own_enrollment(enrollment_id: int) -> tuple[Enrollment, ClassGroup]:
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None:
        abort(404)
    return enrollment, own_class(enrollment.class_group_id)


@bp.post("/enrollments/<int:enrollment_id>/transfer")
@roles_required("school_admin")
def transfer(enrollment_id: int) -> Any:
    enrollment, class_group = own_enrollment(enrollment_id)
    form = TransferForm()
    form.to_class.choices = [
        SelectChoice(c.id, c.name) for c in year_classes(class_group.school_year)
    ]
    target = url_for(".students", class_id=class_group.id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    assert form.to_class.data is not None and form.on_date.data
    try:
        transfer_student(db.session, enrollment, own_class(form.to_class.data), form.on_date.data)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Transfer recorded."), target)


@bp.post("/enrollments/<int:enrollment_id>/leave")
@roles_required("school_admin")
def leave(enrollment_id: int) -> Any:
    enrollment, class_group = own_enrollment(enrollment_id)
    form = LeavingForm()
    target = url_for(".students", class_id=class_group.id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    assert form.last_day.data
    try:
        record_leaving(db.session, enrollment, form.last_day.data)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Leaving recorded."), target)


@bp.post("/students/<int:student_id>/transfer-code")
@roles_required("school_admin")
def transfer_code(student_id: int) -> Any:
    """Print the one-time transfer code of a pupil who leaves, for the new school."""
    student = db.session.get(Student, student_id)
    school = admin_school()
    if student is None or student.school_id != school.id:
        abort(404)
    last_class = db.session.scalar(
        select(Enrollment.class_group_id)
        .where(Enrollment.student_id == student.id)
        .order_by(Enrollment.starts_on.desc())
    )
    back = url_for(".students", class_id=last_class) if last_class else url_for(".overview")
    try:
        transfer, code = issue_transfer_code(
            db.session,
            school,
            student,
            actor=current_user(),
            ip=request.remote_addr,
            now=utcnow(),
        )
    except SetupError as error:
        refused(error)
        return redirect(back)
    db.session.commit()
    return render_template(
        "setup/transfer_code.html",
        school=school,
        student=student,
        code=code,
        expires_at=transfer.expires_at,
        back=back,
    )


@bp.route("/years/<int:year_id>/admit", methods=["GET", "POST"])
@roles_required("school_admin")
def admit(year_id: int) -> Any:
    school_year = own_year(year_id)
    form = AdmitForm()
    form.class_group.choices = [SelectChoice(c.id, c.name) for c in year_classes(school_year)]
    if request.method == "POST":
        if form.validate_on_submit():
            assert form.class_group.data is not None and form.on_date.data
            try:
                enrollment = admit_transferred_student(
                    db.session,
                    admin_school(),
                    form.iin.data or "",
                    own_class(form.class_group.data),
                    form.on_date.data,
                    hmac_key=current_app.config["IIN_HMAC_KEY"],
                    transfer_code=form.transfer_code.data or "",
                    actor=current_user(),
                    address=request.remote_addr,
                    now=utcnow(),
                )
            except SetupError as error:
                # The lookup's access-log row, and a wrong code's count against the address,
                # are the only rows written: keep them.
                db.session.commit()
                refused(error)
            else:
                student = db.session.get_one(Student, enrollment.student_id)
                return done(
                    _("%(name)s admitted.", name=student.full_name),
                    url_for(".students", class_id=enrollment.class_group_id),
                )
        else:
            flash_form_errors(form)
    form.transfer_code.data = ""  # a code is never shown back
    return render_template("setup/admit.html", year=school_year, form=form)
