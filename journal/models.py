"""The school and its journals (DESIGN §4): who learns what, when, and the append-only logs.

Rows in ``entries`` and ``checkpoints`` are history: database triggers refuse UPDATE and DELETE on
them (migration ``history_guard``). Everything else is set-up data that an admin may edit.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, BigId, UTCDateTime, bigpk, intpk, str40, str200, timestamp, utcnow


class School(Base):
    __tablename__ = "schools"

    id: Mapped[intpk]
    name: Mapped[str200]
    # The stable public name of the school's logs: origins are "<domain>/journal/...".
    domain: Mapped[str] = mapped_column(String(100), unique=True)
    # Public half of the school's log key, in C2SP vkey form; the private key never enters the db.
    log_vkey: Mapped[str | None] = mapped_column(String(300))
    # IANA name: "today", the closing rules and every shown or printed time use it.
    time_zone: Mapped[str] = mapped_column(
        String(60), default="Asia/Almaty", server_default="Asia/Almaty"
    )
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)


class SchoolYear(Base):
    __tablename__ = "school_years"
    __table_args__ = (UniqueConstraint("school_id", "name"),)

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    name: Mapped[str] = mapped_column(String(20))  # "2026-2027"
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    # Set once, by closing the year (journal.year.closing.close_year): year grades are sealed.
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    school: Mapped[School] = relationship()
    terms: Mapped[list[Term]] = relationship(
        back_populates="school_year", order_by="Term.starts_on"
    )


class Term(Base):
    """A quarter (four a year) or a half-year (some subjects are graded by half-years)."""

    __tablename__ = "terms"
    __table_args__ = (
        UniqueConstraint("school_year_id", "kind", "number"),
        CheckConstraint("kind IN ('quarter', 'half')", name="kind"),
    )

    id: Mapped[intpk]
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_years.id"))
    kind: Mapped[str] = mapped_column(String(10), default="quarter")
    number: Mapped[int]
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    school_year: Mapped[SchoolYear] = relationship(back_populates="terms")

    def covers(self, day: dt.date) -> bool:
        return self.starts_on <= day <= self.ends_on


class Holiday(Base):
    """Days off inside a school year (public holidays, extra vacations): no lessons are made."""

    __tablename__ = "holidays"
    __table_args__ = (CheckConstraint("starts_on <= ends_on", name="dates"),)

    id: Mapped[intpk]
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_years.id"), index=True)
    name: Mapped[str200]
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)

    def covers(self, day: dt.date) -> bool:
        return self.starts_on <= day <= self.ends_on


class ClassGroup(Base):
    __tablename__ = "class_groups"
    __table_args__ = (UniqueConstraint("school_year_id", "name"),)

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_years.id"))
    name: Mapped[str40]  # "7Ә"
    grade_level: Mapped[int]
    class_teacher_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Language of instruction ("kk" or "ru"): pupils are listed in its alphabetical order.
    language: Mapped[str] = mapped_column(String(5), default="kk", server_default="kk")

    school_year: Mapped[SchoolYear] = relationship()


class Subject(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("school_id", "name"),)

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    name: Mapped[str200]
    # False for subjects without grades (grade 1, some electives): attendance and topics only.
    graded: Mapped[bool] = mapped_column(default=True)
    # Graded by half-years instead of quarters.
    by_half_year: Mapped[bool] = mapped_column(default=False)
    # Graded pass/fail (есептелді / есептелмеді, зачёт / незачёт) instead of 2..5.
    pass_fail: Mapped[bool] = mapped_column(default=False, server_default=false())


class Student(Base):
    __tablename__ = "students"
    __table_args__ = (UniqueConstraint("school_id", "iin_hmac"),)

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    last_name: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str] = mapped_column(String(100))
    patronymic: Mapped[str | None] = mapped_column(String(100))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    # The IIN is personal data: stored encrypted (AES-GCM), found by a keyed hash (HMAC-SHA256).
    iin_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    iin_hmac: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.last_name, self.first_name, self.patronymic) if p)


class Enrollment(Base):
    """A student in a class between two dates; transfers close one and open another."""

    __tablename__ = "enrollments"
    __table_args__ = (Index("ix_enrollments_class_dates", "class_group_id", "starts_on"),)

    id: Mapped[intpk]
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    class_group_id: Mapped[int] = mapped_column(ForeignKey("class_groups.id"))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)

    student: Mapped[Student] = relationship()

    def covers(self, day: dt.date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


class TeachingAssignment(Base):
    __tablename__ = "teaching_assignments"
    __table_args__ = (UniqueConstraint("user_id", "class_group_id", "subject_id"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    class_group_id: Mapped[int] = mapped_column(ForeignKey("class_groups.id"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))


class TimetableSlot(Base):
    """One weekly slot; lessons are generated from slots for the dates of each term."""

    __tablename__ = "timetable_slots"
    __table_args__ = (UniqueConstraint("class_group_id", "weekday", "period"),)

    id: Mapped[intpk]
    class_group_id: Mapped[int] = mapped_column(ForeignKey("class_groups.id"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    weekday: Mapped[int]  # 0 = Monday
    period: Mapped[int]


class Lesson(Base):
    __tablename__ = "lessons"
    __table_args__ = (
        UniqueConstraint("class_group_id", "date", "period"),
        Index("ix_lessons_class_subject_date", "class_group_id", "subject_id", "date"),
    )

    id: Mapped[intpk]
    class_group_id: Mapped[int] = mapped_column(ForeignKey("class_groups.id"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    date: Mapped[dt.date] = mapped_column(Date)
    period: Mapped[int]

    class_group: Mapped[ClassGroup] = relationship()
    subject: Mapped[Subject] = relationship()


class Log(Base):
    """A Merkle log: one per journal (class × school year) and one ledger log per school."""

    __tablename__ = "logs"
    __table_args__ = (CheckConstraint("kind IN ('journal', 'ledger')", name="kind"),)

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    origin: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    class_group_id: Mapped[int | None] = mapped_column(ForeignKey("class_groups.id"), unique=True)
    # The number of leaves; bumped in the same statement that reserves a seq (the append lock).
    size: Mapped[int] = mapped_column(default=0)

    school: Mapped[School] = relationship()
    class_group: Mapped[ClassGroup | None] = relationship()


class Entry(Base):
    """One leaf of a log. ``leaf`` holds the exact bytes hashed into the tree; the other columns
    are indexes into it for queries and are never trusted by verification."""

    __tablename__ = "entries"
    __table_args__ = (
        UniqueConstraint("log_id", "seq"),
        Index("ix_entries_cell", "log_id", "cell"),
        Index("ix_entries_device", "device_kid", "device_seq"),
    )

    id: Mapped[bigpk]
    # The four references (log, author, lesson, student) are foreign keys on SQLite; PostgreSQL
    # keeps them without a check per row (0019refs): the writer holds the rows named once per
    # batch (rows.insert_entries) and the referenced tables refuse to delete a row named here.
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"))
    seq: Mapped[int] = mapped_column(BigId)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    device_kid: Mapped[str | None] = mapped_column(String(64))
    device_seq: Mapped[int | None] = mapped_column(BigId)
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id"), index=True)
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"), index=True)
    # The grid cell an entry writes ("att:<lesson>:<student>", "FO:<lesson>:<student>", ...):
    # two heads for one cell are a conflict for a person to resolve.
    cell: Mapped[str | None] = mapped_column(String(80))
    received_at: Mapped[timestamp]
    leaf: Mapped[bytes] = mapped_column(LargeBinary)  # holds the signed payload
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    log: Mapped[Log] = relationship()


class Supersession(Base):
    """Which entry a correction supersedes: written with the correction, never changed.

    Keyed by entry UUIDs, not row ids: an offline device may upload a correction before the
    entry it corrects, and neither may be lost for arriving in that order.
    """

    __tablename__ = "supersessions"

    correction_entry_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("entries.entry_id"), primary_key=True
    )
    superseded_entry_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"))


class Checkpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint) with the consistency proof from the previous."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("log_id", "size"),)

    id: Mapped[intpk]
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"), index=True)
    size: Mapped[int] = mapped_column(BigId)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    # Consistency proof from the previous checkpoint's size: base64 hashes, one per line.
    previous_size: Mapped[int | None] = mapped_column(BigId)
    consistency_proof: Mapped[str | None] = mapped_column(Text)
    # RFC 3161 token over the note bytes, when a TSA was configured at cut time.
    timestamp_token: Mapped[bytes | None] = mapped_column(LargeBinary)

    log: Mapped[Log] = relationship()


class TermClosure(Base):
    """A term closed for one journal: the checkpoint that seals its entries. Never changed."""

    __tablename__ = "term_closures"
    __table_args__ = (UniqueConstraint("term_id", "log_id"),)

    id: Mapped[intpk]
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id"))
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"), index=True)
    checkpoint_size: Mapped[int] = mapped_column(BigId)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[timestamp]


class AssessmentPlan(Base):
    """What summative work a class × subject plans in one term: whether a СОЧ (ТЖБ) is written
    and how many СОР (БЖБ). A pupil without a planned result is "incomplete", never silently
    graded on other weights. Set-up data: the admin may change it until the term closes."""

    __tablename__ = "assessment_plans"
    __table_args__ = (
        UniqueConstraint("class_group_id", "subject_id", "term_id"),
        CheckConstraint("sor_count >= 0 AND sor_count <= 20", name="sor_count"),
    )

    id: Mapped[intpk]
    class_group_id: Mapped[int] = mapped_column(ForeignKey("class_groups.id"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id"))
    soch_planned: Mapped[bool] = mapped_column(default=False)
    sor_count: Mapped[int] = mapped_column(default=0)


class LateCorrectionApproval(Base):
    """An admin's approval for corrections of one cell in a closed term, for a limited time.

    Written together with its record in the school ledger log; never changed.
    """

    __tablename__ = "late_correction_approvals"
    __table_args__ = (Index("ix_late_correction_approvals_cell", "log_id", "cell"),)

    id: Mapped[intpk]
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"))
    cell: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    approved_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]


class TransferCode(Base):
    """A one-time code the old school prints for a pupil who leaves: the new school enters it
    with the pupil's IIN to admit them (a school sees its own pupils only). Only the code's
    SHA-256 is stored; a newer code for the same pupil ends the older ones."""

    __tablename__ = "transfer_codes"

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The pupil's record in the school that admitted them.
    admitted_student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"))
