"""The school's "today" and "now", read from its time zone (``journal.school_time``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import utcnow
from .models import School
from .school_time import DEFAULT_TIME_ZONE, school_today


def school_zone(session: Session, school_id: int | None) -> str:
    if school_id is None:
        return DEFAULT_TIME_ZONE
    found = session.scalar(select(School.time_zone).where(School.id == school_id))
    return found or DEFAULT_TIME_ZONE


def today_at(session: Session, school_id: int | None, now: dt.datetime | None = None) -> dt.date:
    return school_today(school_zone(session, school_id), now or utcnow())
