"""What each person's home page shows of today's work: a teacher's lessons of today and tomorrow
with what is still missing, and a class teacher's early warnings about their own class."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User

from ..cells import read_cells
from ..collation import in_pupil_order
from ..models import (
    ClassGroup,
    Enrollment,
    Lesson,
    Log,
    Student,
    Subject,
    TeachingAssignment,
    Term,
)

# Unexcused absences in this many days that put a pupil on the early-warning list.
WARNING_DAYS = 14
WARNING_ABSENCES = 3


@dataclass(frozen=True)
class DayLesson:
    lesson: Lesson
    class_group: ClassGroup
    subject: Subject
    term: Term | None
    missing: tuple[str, ...]  # "attendance", "topic", "homework"

    @property
    def url(self) -> str | None:
        if self.term is None:
            return None
        return url_for(
            "teacher.grid",
            class_id=self.class_group.id,
            subject_id=self.subject.id,
            term_id=self.term.id,
            lesson=self.lesson.id,
            _anchor=f"lesson-{self.lesson.id}",
        )


def _term_for(
    session: Session, class_group: ClassGroup, subject: Subject, day: dt.date
) -> Term | None:
    kind = "half" if subject.by_half_year else "quarter"
    return session.scalar(
        select(Term).where(
            Term.school_year_id == class_group.school_year_id,
            Term.kind == kind,
            Term.starts_on <= day,
            Term.ends_on >= day,
        )
    )


def teacher_days(session: Session, user: User, today: dt.date) -> list[DayLesson]:
    """The teacher's lessons today and tomorrow, in order, each with what is still missing."""
    tomorrow = today + dt.timedelta(days=1)
    rows = session.execute(
        select(Lesson, ClassGroup, Subject)
        .join(ClassGroup, ClassGroup.id == Lesson.class_group_id)
        .join(Subject, Subject.id == Lesson.subject_id)
        .join(
            TeachingAssignment,
            (TeachingAssignment.class_group_id == Lesson.class_group_id)
            & (TeachingAssignment.subject_id == Lesson.subject_id),
        )
        .where(
            TeachingAssignment.user_id == user.id,
            Lesson.date >= today,
            Lesson.date <= tomorrow,
        )
        .order_by(Lesson.date, Lesson.period, ClassGroup.name)
    ).all()
    found = []
    for lesson, class_group, subject in rows:
        found.append(
            DayLesson(
                lesson,
                class_group,
                subject,
                _term_for(session, class_group, subject, lesson.date),
                _missing(session, lesson),
            )
        )
    return found


def _missing(session: Session, lesson: Lesson) -> tuple[str, ...]:
    log_id = session.scalar(select(Log.id).where(Log.class_group_id == lesson.class_group_id))
    if log_id is None:
        return ("attendance", "topic", "homework")
    cells = read_cells(session, log_id, lesson_ids=[lesson.id])
    missing = []
    # Attendance is marked by exceptions only; a lesson with no mark at all is not yet taken.
    if not any(key.startswith("att:") and cell.heads for key, cell in cells.items()):
        missing.append("attendance")
    topic = cells.get(f"topic:{lesson.id}")
    value = topic.value if topic is not None else None
    if not (isinstance(value, dict) and value.get("topic")):
        missing.append("topic")
    if not (isinstance(value, dict) and value.get("homework")):
        missing.append("homework")
    return tuple(missing)


@dataclass
class Warning:
    student: Student
    class_group: ClassGroup
    absences: list[tuple[dt.date, str]] = field(default_factory=list)  # (day, subject name)


def early_warnings(session: Session, user: User, today: dt.date) -> list[Warning]:
    """Pupils of the classes ``user`` is class teacher of with WARNING_ABSENCES or more
    unexcused absences ("absent") in the last WARNING_DAYS days, each with the lessons missed.
    Nobody else's classes: another teacher gets an empty list."""
    since = today - dt.timedelta(days=WARNING_DAYS - 1)
    warnings: list[Warning] = []
    classes = session.scalars(
        select(ClassGroup).where(ClassGroup.class_teacher_id == user.id).order_by(ClassGroup.name)
    ).all()
    for class_group in classes:
        log_id = session.scalar(select(Log.id).where(Log.class_group_id == class_group.id))
        if log_id is None:
            continue
        lessons = {
            lesson.id: (lesson, subject_name)
            for lesson, subject_name in session.execute(
                select(Lesson, Subject.name)
                .join(Subject, Subject.id == Lesson.subject_id)
                .where(
                    Lesson.class_group_id == class_group.id,
                    Lesson.date >= since,
                    Lesson.date <= today,
                )
            ).all()
        }
        if not lessons:
            continue
        enrolled = session.scalars(
            select(Student)
            .join(Enrollment, Enrollment.student_id == Student.id)
            .where(
                Enrollment.class_group_id == class_group.id,
                Enrollment.starts_on <= today,
                (Enrollment.ends_on.is_(None)) | (Enrollment.ends_on >= since),
            )
        ).all()
        by_student: dict[int, list[tuple[dt.date, str]]] = {}
        cells = read_cells(
            session, log_id, lesson_ids=list(lessons), kinds=("attendance", "correction")
        )
        for key, cell in cells.items():
            if not key.startswith("att:") or cell.value != "absent":
                continue
            head = cell.heads[0]
            if head.lesson_id is None or head.student_id is None:
                continue
            lesson, subject_name = lessons[head.lesson_id]
            by_student.setdefault(head.student_id, []).append((lesson.date, subject_name))
        ordered = in_pupil_order(
            class_group.language,
            enrolled,
            lambda s: (s.last_name, s.first_name, s.patronymic or "", s.id),
        )
        for student in ordered:
            absences = sorted(by_student.get(student.id, []))
            if len(absences) >= WARNING_ABSENCES:
                warnings.append(Warning(student, class_group, absences))
    return warnings


@dataclass
class Watched:
    """One pupil on a class teacher's early-warning list, once, with every reason: the
    unexcused absences (empty when too few) and each subject whose term percent falls."""

    class_group: ClassGroup
    pupil_id: int
    last_name: str
    first_name: str
    patronymic: str | None
    absences: list[tuple[dt.date, str]]
    falling: list[Any]  # journal.home.glance.Falling, in the class summary's subject order


def pupils_to_watch(warnings: list[Warning], falling: list[Any]) -> list[Watched]:
    """``early_warnings`` and ``falling_percents`` together, one item per pupil: class after
    class (by grade, then name), each class in its pupil order."""
    found: dict[tuple[int, int], Watched] = {}
    for warning in warnings:
        student = warning.student
        found[warning.class_group.id, student.id] = Watched(
            warning.class_group,
            student.id,
            student.last_name,
            student.first_name,
            student.patronymic,
            warning.absences,
            [],
        )
    for item in falling:
        pupil = item.pupil
        key = (item.class_group.id, pupil.id)
        if key not in found:
            found[key] = Watched(
                item.class_group,
                pupil.id,
                pupil.last_name,
                pupil.first_name,
                pupil.patronymic,
                [],
                [],
            )
        found[key].falling.append(item)
    classes = {each.class_group.id: each.class_group for each in found.values()}
    ordered: list[Watched] = []
    for class_group in sorted(classes.values(), key=lambda c: (c.grade_level, c.name, c.id)):
        ordered += in_pupil_order(
            class_group.language,
            [each for each in found.values() if each.class_group.id == class_group.id],
            lambda w: (w.last_name, w.first_name, w.patronymic or "", w.pupil_id),
        )
    return ordered


@dataclass(frozen=True)
class OperatorState:
    """What an operator checks first: the last archive run and audit, the newest backup."""

    last_run: Any | None  # archive.models.ArchiveRun
    last_audit: Any | None  # archive.models.ArchiveAudit
    last_backup: str | None  # file name
    last_backup_at: dt.datetime | None


# The operator's work is done on the command line: these, with what each does.
OPERATOR_COMMANDS = (
    "flask --app wsgi archive run",
    "flask --app wsgi archive audit",
    "flask --app wsgi backup create",
    "flask --app wsgi backup drill",
)


def operator_state(
    session: Session, backup_dir: str, school_id: int | None = None
) -> OperatorState:
    """The last archive run and audit (of one school, or of all), and the newest backup file."""
    from archive.models import ArchiveAudit, ArchiveRun  # archive builds on journal

    run_query = select(ArchiveRun).order_by(ArchiveRun.started_at.desc()).limit(1)
    audit_query = select(ArchiveAudit).order_by(ArchiveAudit.finished_at.desc()).limit(1)
    if school_id is not None:
        run_query = run_query.where(ArchiveRun.school_id == school_id)
        audit_query = audit_query.where(ArchiveAudit.school_id == school_id)
    backups = sorted(Path(backup_dir).glob("journal-*")) if Path(backup_dir).is_dir() else []
    newest = backups[-1] if backups else None
    return OperatorState(
        session.scalar(run_query),
        session.scalar(audit_query),
        newest.name if newest else None,
        dt.datetime.fromtimestamp(newest.stat().st_mtime, dt.UTC) if newest else None,
    )


def admin_term_state(session: Session, school_id: int, today: dt.date) -> Any | None:
    """The pre-close report (``journal.year.closing``) of the school's quarter that holds
    ``today``: where each class × subject stands. None outside any quarter."""
    from ..models import SchoolYear
    from ..year.closing import pre_close_report

    term = session.scalar(
        select(Term)
        .join(SchoolYear, SchoolYear.id == Term.school_year_id)
        .where(
            SchoolYear.school_id == school_id,
            Term.kind == "quarter",
            Term.starts_on <= today,
            Term.ends_on >= today,
        )
        .limit(1)
    )
    return pre_close_report(session, term) if term is not None else None
