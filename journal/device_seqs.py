"""What a device key's ``device_seq`` numbers say: the ranges the server has never seen, and
the numbers used by more than one entry.

Gaps mean wiped browser storage, entries lost or refused on the way; a seq used by two entries
means the key was cloned (or the device's counter was reset).

The report is kept on the key's row (``DeviceKey.seq_summary``: the report of every seq up to
``upto``, the highest one folded in), so a sync batch costs what it stores, not what the device
ever sent: whoever stores entries folds their seqs in before commit (``fold_stored_seqs``,
called by the recorder), holding the key row's lock, so two writers with the
same key fold one after the other and the second sees the first's rows. Entries written some
other way with seqs above ``upto`` are still found by a look-up of the (device_kid,
device_seq) index above it. A key whose summary is not made yet (keys enrolled before it
existed) is read in one ordered pass over all its seqs (``full_report``), as every report once
was.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, case, func, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from auth.models import DeviceKey

from .db import lock_wait_condition, lock_wait_params
from .models import Entry


@dataclass
class DeviceSeqReport:
    """What a device's ``device_seq`` numbers say: missing ranges and numbers used twice."""

    kid: str
    missing: list[tuple[int, int]] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "missing": [list(span) for span in self.missing],
            "reused": self.reused,
        }


def full_report(session: Session, kid: str) -> tuple[DeviceSeqReport, int]:
    """The report of all of a key's seqs, and the highest of them (-1: none): one ordered pass
    over them, each compared with the one before it."""
    report = DeviceSeqReport(kid)
    previous = func.lag(Entry.device_seq).over(order_by=Entry.device_seq)
    ordered = (
        select(Entry.device_seq.label("seq"), previous.label("previous"))
        .where(Entry.device_kid == kid, Entry.device_seq.is_not(None))
        .subquery()
    )
    step = ordered.c.seq - func.coalesce(ordered.c.previous, literal(-1))
    for seq, step_size in session.execute(
        select(ordered.c.seq, step).where(step != literal(1)).order_by(ordered.c.seq)
    ):
        if step_size == 0:
            if not report.reused or report.reused[-1] != seq:
                report.reused.append(seq)
        else:
            report.missing.append((seq - step_size + 1, seq - 1))
    highest = session.scalar(select(func.max(Entry.device_seq)).where(Entry.device_kid == kid))
    return report, -1 if highest is None else highest


def advance(report: DeviceSeqReport, upto: int, seqs: Iterable[int]) -> int:
    """Fold seqs (ascending) of newly stored entries into the report of every seq up to
    ``upto``; returns the new ``upto``. A seq above it opens the gap before it, one at or below
    it fills a missing number or, if the number was there, is reused."""
    for seq in seqs:
        if seq > upto:
            if seq > upto + 1:
                report.missing.append((upto + 1, seq - 1))
            upto = seq
            continue
        at = bisect.bisect_right(report.missing, seq, key=lambda span: span[0]) - 1
        if at >= 0 and report.missing[at][0] <= seq <= report.missing[at][1]:
            first, last = report.missing[at]
            report.missing[at : at + 1] = [
                span for span in ((first, seq - 1), (seq + 1, last)) if span[0] <= span[1]
            ]
        elif seq not in report.reused:
            bisect.insort(report.reused, seq)
    return upto


def _summary(report: DeviceSeqReport, upto: int) -> dict[str, Any]:
    return {
        "upto": upto,
        "missing": [list(span) for span in report.missing],
        "reused": report.reused,
    }


def _from_summary(kid: str, summary: Mapping[str, Any]) -> tuple[DeviceSeqReport, int]:
    report = DeviceSeqReport(
        kid, [(first, last) for first, last in summary["missing"]], list(summary["reused"])
    )
    return report, int(summary["upto"])


_ENTRIES = Entry.__table__


# A key's seqs above :upto that do not follow the one before them by exactly one (the first,
# those after a gap, those used again), each with the one before it and the highest of them
# all: what ``advance`` would find in them, without sending every seq (a sync batch would read
# back its own 200).
_ABOVE = (
    select(
        _ENTRIES.c.device_seq.label("seq"),
        func.lag(_ENTRIES.c.device_seq).over(order_by=_ENTRIES.c.device_seq).label("previous"),
        func.max(_ENTRIES.c.device_seq).over().label("highest"),
    )
    .where(_ENTRIES.c.device_kid == bindparam("kid"), _ENTRIES.c.device_seq > bindparam("upto"))
    .subquery()
)
_STEPS_ABOVE = (
    select(_ABOVE.c.seq, _ABOVE.c.previous, _ABOVE.c.highest)
    .where(or_(_ABOVE.c.previous.is_(None), _ABOVE.c.seq - _ABOVE.c.previous != literal(1)))
    .order_by(_ABOVE.c.seq)
)


def _advance_above(session: Session, report: DeviceSeqReport, kid: str, upto: int) -> int:
    """``advance`` of the key's stored seqs above ``upto`` (``upto`` the highest folded in, so
    that none of them is at or below it); returns the new ``upto``."""
    for seq, previous, highest in session.execute(_STEPS_ABOVE, {"kid": kid, "upto": upto}):
        first = upto if previous is None else previous
        if seq > first + 1:
            report.missing.append((first + 1, seq - 1))
        elif seq == first and seq not in report.reused:  # used again
            bisect.insort(report.reused, seq)
        upto = highest
    return upto


_KEYS = DeviceKey.__table__
# Core statements, built once: the fold runs in every sync batch, and the ORM's handling of
# an entity's columns cost more than the database's work on these two rows.
_LOCK_SUMMARIES = (
    select(_KEYS.c.kid, _KEYS.c.seq_summary)
    .where(_KEYS.c.kid.in_(bindparam("kids", expanding=True)))
    .order_by(_KEYS.c.kid)
    .with_for_update(key_share=True)  # FOR NO KEY UPDATE: what an UPDATE of the row takes
)


@functools.cache
def _lock_summaries(postgres: bool) -> Any:
    return _LOCK_SUMMARIES.where(lock_wait_condition(postgres))


_STORE_SUMMARY = (
    update(_KEYS).where(_KEYS.c.kid == bindparam("key")).values(seq_summary=bindparam("summary"))
)
# The same, and the key's "last used" moves to :seen unless it is later already (what
# auth.devices.mark_devices_seen does): one UPDATE of the row the fold writes anyway.
_SEEN = bindparam("seen", type_=_KEYS.c.last_seen_at.type)  # stored as the column stores it
_STORE_SUMMARY_SEEN = _STORE_SUMMARY.values(
    last_seen_at=case(
        (or_(_KEYS.c.last_seen_at.is_(None), _KEYS.c.last_seen_at < _SEEN), _SEEN),
        else_=_KEYS.c.last_seen_at,
    )
)


def fold_stored_seqs(
    session: Session,
    stored: Mapping[str, Iterable[int]],
    *,
    seen_at: dt.datetime | None = None,
) -> dict[str, DeviceSeqReport]:
    """Fold the seqs of entries this transaction stored (by key id) into their keys' kept
    reports, under the key rows' locks (taken in kid order, held to commit); returns the
    reports. Keys that are not device keys (a server's log key) keep no report. ``seen_at``:
    the keys folded were also used at that moment (``mark_devices_seen`` of them)."""
    if not stored:
        return {}
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = session.execute(
        _lock_summaries(postgres), {"kids": sorted(stored), **lock_wait_params()}
    ).all()
    reports, summaries = {}, []
    for kid, summary in rows:
        if summary is None:
            report, upto = full_report(session, kid)
        else:
            report, upto = _from_summary(kid, summary)
            # Those at or below upto are this transaction's (no other can see them); those
            # above are found in the index, this transaction's and any written otherwise.
            mine = sorted(seq for seq in stored[kid] if seq <= upto)
            upto = _advance_above(session, report, kid, advance(report, upto, mine))
        reports[kid] = report
        summaries.append({"key": kid, "summary": _summary(report, upto), "seen": seen_at})
    if summaries:
        session.execute(_STORE_SUMMARY if seen_at is None else _STORE_SUMMARY_SEEN, summaries)
    if seen_at is not None:
        # What an ORM UPDATE would do to the keys loaded in the session (the rows' values
        # are what the statement read, so the same test applies to them).
        for kid in reports:
            key = session.identity_map.get(session.identity_key(DeviceKey, (kid,)))
            if key is not None and (key.last_seen_at is None or key.last_seen_at < seen_at):
                set_committed_value(key, "last_seen_at", seen_at)
    return reports


def device_seq_reports(session: Session, kids: Iterable[str]) -> list[DeviceSeqReport]:
    """For each device key (in kid order): the device_seq ranges the server has never seen,
    and reused seqs. Reads the kept reports; writes nothing."""
    wanted = sorted(set(kids))
    if not wanted:
        return []
    kept: dict[str, dict[str, Any] | None] = dict(
        session.execute(
            select(DeviceKey.kid, DeviceKey.seq_summary).where(DeviceKey.kid.in_(wanted))
        ).all()
    )
    reports = []
    for kid in wanted:
        summary = kept.get(kid)
        if summary is None:
            report, _upto = full_report(session, kid)
        else:
            report, upto = _from_summary(kid, summary)
            _advance_above(session, report, kid, upto)
        reports.append(report)
    return reports
