"""What a teacher works on: every term grid of every class × subject assigned, and the week's
grids that the service worker keeps for a day without network."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User

from ..collation import class_key
from ..models import ClassGroup, Lesson, Subject, TeachingAssignment, Term


@dataclass(frozen=True)
class GridLink:
    class_group: ClassGroup
    subject: Subject
    term: Term
    current: bool

    @property
    def url(self) -> str:
        return url_for(
            "teacher.grid",
            class_id=self.class_group.id,
            subject_id=self.subject.id,
            term_id=self.term.id,
        )


def grid_links(session: Session, user: User, today: dt.date) -> list[GridLink]:
    """Every term grid of every class × subject the teacher is assigned to."""
    links = []
    rows = session.execute(
        select(ClassGroup, Subject)
        .join(TeachingAssignment, TeachingAssignment.class_group_id == ClassGroup.id)
        .join(Subject, Subject.id == TeachingAssignment.subject_id)
        .where(TeachingAssignment.user_id == user.id)
        .order_by(Subject.name)
    ).all()
    rows = sorted(rows, key=lambda row: class_key(row[0].name, row[0].grade_level))
    for class_group, subject in rows:
        kind = "half" if subject.by_half_year else "quarter"
        terms = session.scalars(
            select(Term)
            .where(Term.school_year_id == class_group.school_year_id, Term.kind == kind)
            .order_by(Term.starts_on)
        )
        links.extend(GridLink(class_group, subject, t, t.covers(today)) for t in terms)
    return links


def week_grid_urls(session: Session, user: User, today: dt.date) -> list[str]:
    """Grids that hold the teacher's lessons this week: what to keep for a day without network."""
    monday = today - dt.timedelta(days=today.weekday())
    urls = []
    for link in grid_links(session, user, today):
        has_lessons = session.scalar(
            select(Lesson.id)
            .where(
                Lesson.class_group_id == link.class_group.id,
                Lesson.subject_id == link.subject.id,
                Lesson.date >= max(monday, link.term.starts_on),
                Lesson.date <= min(monday + dt.timedelta(days=6), link.term.ends_on),
            )
            .limit(1)
        )
        if has_lessons is not None:
            urls.append(link.url)
    return urls
