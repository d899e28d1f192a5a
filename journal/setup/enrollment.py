"""Enrollments, transfers between classes and schools (one-time transfer codes), leaving, and
the class roster."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

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

from ..collation import in_pupil_order
from ..db import utcnow
from ..models import (
    ClassGroup,
    Enrollment,
    Entry,
    Lesson,
    School,
    SchoolYear,
    Student,
    TransferCode,
)
from . import N_, SetupError


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
