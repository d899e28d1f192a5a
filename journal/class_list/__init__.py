"""The admin's list of a year's classes: per class, its pupils now and who teaches what, so
that the list has one row per class (the subjects and teachers inside the row)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.models import User

from ..models import ClassGroup, Enrollment, Subject, TeachingAssignment


@dataclass
class ClassTeaching:
    pupils: int = 0
    subjects: list[tuple[str, list[str]]] = field(default_factory=list)  # (subject, teachers)


def year_class_list(session: Session, year_id: int) -> dict[int, ClassTeaching]:
    """By class id: the pupils enrolled now and each subject with its teachers, by name."""
    found: dict[int, ClassTeaching] = {}
    for class_id, count in session.execute(
        select(Enrollment.class_group_id, func.count())
        .join(ClassGroup, ClassGroup.id == Enrollment.class_group_id)
        .where(ClassGroup.school_year_id == year_id, Enrollment.ends_on.is_(None))
        .group_by(Enrollment.class_group_id)
    ):
        found.setdefault(class_id, ClassTeaching()).pupils = count
    by_subject: dict[tuple[int, str], list[str]] = {}
    for class_id, subject, teacher in session.execute(
        select(TeachingAssignment.class_group_id, Subject.name, User.full_name)
        .join(ClassGroup, ClassGroup.id == TeachingAssignment.class_group_id)
        .join(Subject, Subject.id == TeachingAssignment.subject_id)
        .join(User, User.id == TeachingAssignment.user_id)
        .where(ClassGroup.school_year_id == year_id)
        .order_by(Subject.name, User.full_name)
    ):
        by_subject.setdefault((class_id, subject), []).append(teacher)
    for (class_id, subject), teachers in by_subject.items():
        found.setdefault(class_id, ClassTeaching()).subjects.append((subject, teachers))
    return found
