"""The school's clock: "today", closing rules and every shown or printed time use the school's
time zone (an IANA name, ``Asia/Almaty`` by default: UTC+5 since March 2024).

Pure functions of plain values: the server stores UTC, people read local time.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "Asia/Almaty"


class UnknownTimeZone(ValueError):
    pass


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(f"unknown time zone {name!r}") from exc


def school_today(time_zone: str, now: dt.datetime) -> dt.date:
    """The school's calendar date at the moment ``now`` (an aware datetime)."""
    return local_time(now, time_zone).date()


def local_time(moment: dt.datetime, time_zone: str) -> dt.datetime:
    """``moment`` on the school's wall clock; a naive moment is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone(time_zone))


def format_local(moment: dt.datetime | None, time_zone: str) -> str:
    """``2026-12-06 10:30 (UTC+05:00)``: date and time on the school's clock with its offset,
    so that a printout read elsewhere still says when it was."""
    if moment is None:
        return ""
    local = local_time(moment, time_zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"
