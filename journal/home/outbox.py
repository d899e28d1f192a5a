"""What the teacher's home page gives its script (static/home/outbox-count.js) to name the
entries waiting in this browser's outbox: each of the teacher's journals (by origin, as the
entries carry it) with its class, the subjects the teacher teaches there with the current
term's grid, and which subject each of this term's lessons belongs to."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User

from ..grid.links import grid_links
from ..models import Lesson, Log


def outbox_places(session: Session, user: User, today: dt.date) -> dict[str, Any]:
    """JSON for the page: only the teacher's own classes, subjects and current lessons."""
    journals: dict[str, dict[str, Any]] = {}
    lessons: dict[str, int] = {}
    current = [link for link in grid_links(session, user, today) if link.current]
    origins = (
        dict(
            session.execute(
                select(Log.class_group_id, Log.origin).where(
                    Log.class_group_id.in_({link.class_group.id for link in current})
                )
            ).all()
        )
        if current
        else {}
    )
    for link in current:
        origin = origins.get(link.class_group.id)
        if origin is None:
            continue  # no journal yet: nothing can wait for it
        place = journals.setdefault(origin, {"class": link.class_group.name, "subjects": {}})
        place["subjects"][str(link.subject.id)] = {"name": link.subject.name, "url": link.url}
        for lesson_id in session.scalars(
            select(Lesson.id).where(
                Lesson.class_group_id == link.class_group.id,
                Lesson.subject_id == link.subject.id,
                Lesson.date >= link.term.starts_on,
                Lesson.date <= link.term.ends_on,
            )
        ):
            lessons[str(lesson_id)] = link.subject.id
    return {"author": user.id, "journals": journals, "lessons": lessons}
