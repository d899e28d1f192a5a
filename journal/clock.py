"""The school's time zone, for showing times on its clock (``journal.school_time``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from .school_time import DEFAULT_TIME_ZONE


def school_zone(session: Session, school_id: int | None) -> str:
    """The IANA zone the school's people read times in. Every school is on Asia/Almaty until
    schools carry their own zone (a ``School.time_zone`` column): then this reads it."""
    return DEFAULT_TIME_ZONE
