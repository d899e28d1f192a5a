"""What a school admin checks about the teachers' devices: keys whose device_seq numbers have
holes or repeats (``journal.device_seqs``), keys with entries that have not synced
for STALE_DAYS days, and entries kept in quarantine (``journal.sync.QuarantinedSubmission``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auth.models import DeviceKey, User

from ..device_seqs import device_seq_reports
from ..models import Entry
from ..sync import QuarantinedSubmission

# A key with entries that the server has not heard from in this many days is listed: its
# browser may hold entries that never left it.
STALE_DAYS = 7


@dataclass
class DeviceProblem:
    teacher: str
    kid: str
    device: str | None  # the name the teacher gave it; None when never enrolled
    missing: list[tuple[int, int]] = field(default_factory=list)  # device_seq ranges never seen
    reused: list[int] = field(default_factory=list)
    last_seen: dt.datetime | None = None
    stale: bool = False
    quarantined: int = 0
    quarantine_reasons: tuple[str, ...] = ()  # "unknown_key", "revoked_key"
    revoked: bool = False

    @property
    def missing_text(self) -> str:
        """The missing device_seq ranges as "3, 7–9"."""
        return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in self.missing)


def device_problems(session: Session, school_id: int, now: dt.datetime) -> list[DeviceProblem]:
    """The school's device keys with sync gaps, stale keys with entries, and quarantined
    entries (by key, with the uploader), ordered by teacher and device."""
    keys = {
        key.kid: (key, name)
        for key, name in session.execute(
            select(DeviceKey, User.full_name)
            .join(User, User.id == DeviceKey.user_id)
            .where(User.school_id == school_id)
        ).all()
    }
    with_entries = (
        set(
            session.scalars(
                select(Entry.device_kid)
                .where(Entry.device_kid.in_(list(keys)))
                .group_by(Entry.device_kid)
            )
        )
        if keys
        else set()
    )
    problems: dict[str, DeviceProblem] = {}

    def problem(kid: str, teacher: str) -> DeviceProblem:
        if kid not in problems:
            key = keys.get(kid, (None, teacher))[0]
            problems[kid] = DeviceProblem(
                teacher=teacher,
                kid=kid,
                device=key.label if key is not None else None,
                last_seen=key.last_seen_at if key is not None else None,
                revoked=key is not None and key.revoked_at is not None,
            )
        return problems[kid]

    for report in device_seq_reports(session, with_entries):
        if report.missing or report.reused:
            found = problem(report.kid, keys[report.kid][1])
            found.missing, found.reused = report.missing, report.reused
    stale_before = now - dt.timedelta(days=STALE_DAYS)
    for kid in with_entries:
        key, teacher = keys[kid]
        if (
            key.revoked_at is None
            and key.last_seen_at is not None
            and key.last_seen_at < stale_before
        ):
            problem(kid, teacher).stale = True
    for kid, teacher, reason, count in session.execute(
        select(
            QuarantinedSubmission.kid,
            User.full_name,
            QuarantinedSubmission.reason,
            func.count(),
        )
        .join(User, User.id == QuarantinedSubmission.uploaded_by)
        .where(User.school_id == school_id)
        .group_by(QuarantinedSubmission.kid, User.full_name, QuarantinedSubmission.reason)
    ).all():
        found = problem(kid, teacher)
        found.quarantined += count
        found.quarantine_reasons = tuple(sorted({*found.quarantine_reasons, reason}))
    return sorted(problems.values(), key=lambda p: (p.teacher, p.device or "", p.kid))
