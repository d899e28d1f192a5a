"""The sync API (DESIGN §6): offline devices upload signed entries in batches and pull the log.

Every entry gets its own result (``accepted | duplicate | conflict | rejected | quarantined``):
one refused entry never undoes the others. Entries signed by an unknown or revoked key are kept
in quarantine, never in a log. The pull cursor is a journal's ``seq``: seqs are reserved under the
log row's lock and committed with it, so every committed snapshot holds a gap-free prefix and a
reader that stops at the log's committed size never skips a row.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from flask import Blueprint, Response, current_app, jsonify, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, generate_csrf
from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    bindparam,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column
from werkzeug.exceptions import HTTPException

from auth import policy
from auth.access import current_user, log_access, roles_required
from auth.browsers import device_name
from auth.devices import mark_devices_seen
from auth.models import DeviceKey, User

from .db import Base, TextArray, array_value, bigpk, db, lock_wait_expired, timestamp, utcnow
from .device_seqs import DeviceSeqReport, device_seq_reports
from .errors import error_words
from .ids import BIG_ID_MAX, parse_id
from .ledger import entry as ledger_entry
from .models import Entry, Lesson, Log, Supersession
from .payloads import PayloadRejected, check_payload
from .recording.recorder import EntryRefused, Recorder, Signed
from .recording.rows import superseded_entry

UPLOADER_ROLES = ("teacher", "class_teacher")
PULL_PAGE_MAX = 1000
# New quarantined rows per uploader in QUARANTINE_WINDOW (SYNC_QUARANTINE_DAILY_QUOTA).
QUARANTINE_DAILY_QUOTA = 500
QUARANTINE_WINDOW = dt.timedelta(days=1)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class QuarantinedSubmission(Base):
    """A signed entry whose key was unknown or revoked when it arrived: kept, never in a log.

    History like the logs (append-only triggers). ``submission`` holds the JCS bytes of what was
    sent; the same submission sent again is stored once (``digest``).
    """

    __tablename__ = "quarantined_submissions"
    __table_args__ = (
        Index("ix_quarantined_submissions_kid", "kid"),
        # The daily quota counts one uploader's recent rows.
        Index("ix_quarantined_submissions_uploader_at", "uploaded_by", "received_at"),
    )

    id: Mapped[bigpk]
    received_at: Mapped[timestamp]
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kid: Mapped[str] = mapped_column(String(64))
    entry_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(20))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    submission: Mapped[bytes] = mapped_column(LargeBinary)


# -- upload ------------------------------------------------------------------------------------


@dataclass
class EntryResult:
    """What happened to one submitted entry."""

    index: int
    status: str
    entry_id: str | None = None
    journal: str | None = None
    seq: int | None = None
    code: str | None = None
    message: str | None = None

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"index": self.index, "status": self.status}
        for name in ("entry_id", "journal", "seq", "code", "message"):
            value = getattr(self, name)
            if value is not None:
                result[name] = value
        return result


@dataclass
class CellConflict:
    """A cell with more than one head: two writers did not see each other's entry."""

    journal: str
    cell: str
    heads: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"journal": self.journal, "cell": self.cell, "heads": self.heads}


@dataclass
class BatchOutcome:
    results: list[EntryResult]
    conflicts: list[CellConflict]
    device_seq_gaps: list[DeviceSeqReport]

    def count(self, status: str) -> int:
        return sum(1 for result in self.results if result.status == status)

    def as_json(self) -> dict[str, Any]:
        return {
            "results": [result.as_json() for result in self.results],
            "conflicts": [conflict.as_json() for conflict in self.conflicts],
            "device_seq_gaps": [report.as_json() for report in self.device_seq_gaps],
        }


def upload_batch(
    session: Session,
    uploader: User,
    submissions: Sequence[Any],
    *,
    now: dt.datetime | None = None,
    quarantine_quota: int = QUARANTINE_DAILY_QUOTA,
    plain: bool = False,
) -> BatchOutcome:
    """Record each submission once and say per entry what happened; flushes, never commits.

    Only the uploader's own entries are taken: the session user must be each entry's author.
    An entry whose key is unknown or revoked is quarantined only if it passes ``quarantine``'s
    checks, at most ``quarantine_quota`` of them per uploader a day. The batch is received at
    one moment (``now``, else the time it starts). ``plain``: the submissions were read by
    ``parse_json`` from a text ``plain_text`` accepts (see ``Recorder``).
    """
    now = now or utcnow()
    # Deferred: one look-up of the batch's ids and one INSERT per log instead of one per entry.
    recorder = Recorder(session, now=now, deferred=True, plain=plain)
    payloads = [
        sub["payload"]
        for sub in submissions
        if isinstance(sub, dict) and isinstance(sub.get("payload"), dict)
    ]
    recorder.prefetch([p["entry_id"] for p in payloads if isinstance(p.get("entry_id"), str)])
    recorder.prefetch_rows(payloads)
    results: list[EntryResult] = []
    kids: set[str] = set()
    signed: list[tuple[EntryResult, Signed]] = []

    def refuse(result: EntryResult, refused: EntryRefused, parsed: dict[str, Any]) -> None:
        result.status, result.code, result.message = refused.status, refused.code, refused.message
        if refused.status == "quarantined":
            try:
                quarantine(session, uploader, parsed, refused.code, now=now, quota=quarantine_quota)
            except EntryRefused as held_back:
                result.status, result.code, result.message = (
                    held_back.status,
                    held_back.code,
                    held_back.message,
                )

    for index, submission in enumerate(submissions):
        result = EntryResult(index, "rejected")
        parsed: dict[str, Any] = {}
        results.append(result)
        try:
            parsed = recorder.parse(submission)
            payload = parsed["payload"]
            if isinstance(payload.get("entry_id"), str):
                result.entry_id = payload["entry_id"]
            if payload.get("author") != uploader.id:
                raise EntryRefused(
                    "rejected", "not_uploader", "only the signed-in author may upload this entry"
                )
            signed.append((result, recorder.check_signed(parsed)))
        except EntryRefused as refused:
            refuse(result, refused, parsed)
    # Every signature in one run, then the rest of each entry in order: the same checks in the
    # same order for each entry, so the same refusal wins.
    verified = [recorder.verify(entry) for _result, entry in signed]
    for (result, entry), good in zip(signed, verified, strict=True):
        try:
            recorded = recorder.record_signed(entry, verified=good)
        except EntryRefused as refused:
            refuse(result, refused, entry.parsed)
            continue
        result.status, result.seq = recorded.status, recorded.seq
        result.journal = entry.parsed["payload"]["journal"]
        kids.add(entry.parsed["kid"])
    recorder.flush()
    folded = recorder.fold_device_seqs(seen_at=now)
    mark_devices_seen(session, kids - recorder.seen, now)  # keys of duplicates only
    stored = [r.entry_id for r in results if r.status in ("accepted", "duplicate") and r.entry_id]
    if all(entry_id in recorder.cells for entry_id in stored):
        conflicts = conflicts_in_cells(session, [recorder.cells[i] for i in stored])
    else:
        conflicts = cell_conflicts(session, stored)
    return BatchOutcome(
        results=results,
        conflicts=conflicts,
        device_seq_gaps=[
            report
            for report in sorted(
                [
                    *(folded[kid] for kid in kids if kid in folded),
                    *device_seq_reports(session, [kid for kid in kids if kid not in folded]),
                ],
                key=lambda report: report.kid,
            )
            if report.missing or report.reused
        ],
    )


def well_formed_signature(alg: str, sig: bytes) -> bool:
    """The signature has its algorithm's shape: 64 bytes for Ed25519, the one DER encoding of
    an (r, s) pair in range for ECDSA P-256. Says nothing about whether it verifies."""
    if alg == "ed25519":
        return len(sig) == 64
    if alg != "ecdsa-p256" or len(sig) > 72:
        return False
    try:
        r, s = decode_dss_signature(sig)
    except ValueError:
        return False
    return 0 < r < P256_ORDER and 0 < s < P256_ORDER and encode_dss_signature(r, s) == sig


def _check_quarantinable(session: Session, uploader: User, parsed: Mapping[str, Any]) -> None:
    """What can be checked without the key: a well-formed signature, an existing journal, and
    an uploader who writes in it. Raises ``EntryRefused`` ("rejected") otherwise."""
    try:
        facts = check_payload(parsed["payload"])
        sig = base64.b64decode(parsed["sig"], validate=True)
    except (PayloadRejected, binascii.Error, ValueError):
        raise EntryRefused("rejected", "bad_field", "the entry is not well-formed") from None
    if not well_formed_signature(parsed["alg"], sig):
        raise EntryRefused(
            "rejected", "bad_signature", f"the signature is not a well-formed {parsed['alg']} one"
        )
    log = session.scalar(select(Log).where(Log.origin == facts.journal, Log.kind == "journal"))
    if log is None or log.class_group_id is None:
        raise EntryRefused("rejected", "unknown_journal", f"no journal {facts.journal}")
    subject_id = facts.subject
    if facts.lesson is not None:
        lesson = session.get(Lesson, facts.lesson)
        if lesson is None or lesson.class_group_id != log.class_group_id:
            raise EntryRefused("rejected", "unknown_lesson", "no such lesson in this journal")
        subject_id = lesson.subject_id
    if subject_id is None or not policy.can_write_journal(uploader, log.class_group_id, subject_id):
        raise EntryRefused(
            "rejected", "not_assigned", "the author does not teach this subject in this class"
        )


def quarantine(
    session: Session,
    uploader: User,
    parsed: Mapping[str, Any],
    reason: str,
    *,
    now: dt.datetime | None = None,
    quota: int = QUARANTINE_DAILY_QUOTA,
) -> None:
    """Keep a submission whose key we cannot trust (yet); the same bytes are kept once.

    The quarantine is history (append-only), so it takes only what could become an entry
    (``_check_quarantinable``) and at most ``quota`` new rows per uploader in a day. Raises
    ``EntryRefused`` ("rejected") and writes nothing otherwise.
    """
    now = now or utcnow()
    _check_quarantinable(session, uploader, parsed)
    document = {name: parsed[name] for name in ("payload", "alg", "kid", "sig")}
    data = ledger_entry.canonical_json(document)
    digest = hashlib.sha256(data).digest()
    kept = select(QuarantinedSubmission.id).where(QuarantinedSubmission.digest == digest)
    if session.scalar(kept) is not None:
        return  # sent again: kept already, nothing to count
    recent = session.scalar(
        select(func.count())
        .select_from(QuarantinedSubmission)
        .where(
            QuarantinedSubmission.uploaded_by == uploader.id,
            QuarantinedSubmission.received_at > now - QUARANTINE_WINDOW,
        )
    )
    if (recent or 0) >= quota:
        raise EntryRefused(
            "rejected",
            "quarantine_full",
            f"{quota} of your entries with an unknown or revoked key are kept from the last "
            "24 hours already: enrol this device's key, then send them again",
        )
    entry_id = parsed["payload"].get("entry_id")
    values = {
        "received_at": now,
        "uploaded_by": uploader.id,
        "kid": parsed["kid"][:64],
        "entry_id": entry_id if isinstance(entry_id, str) and len(entry_id) <= 36 else None,
        "reason": reason,
        "digest": digest,
        "submission": data,
    }
    # The table is append-only, so a retried submission must not even try an update.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(QuarantinedSubmission)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["digest"])
    )


def replay_quarantined(
    session: Session, kid: str, *, now: dt.datetime | None = None
) -> list[EntryResult]:
    """Try a key's quarantined submissions again, e.g. after its enrolment arrived late."""
    rows = session.scalars(
        select(QuarantinedSubmission)
        .where(QuarantinedSubmission.kid == kid)
        .order_by(QuarantinedSubmission.id)
    ).all()
    recorder = Recorder(session, now=now)
    results = []
    for index, row in enumerate(rows):
        result = EntryResult(index, "rejected", entry_id=row.entry_id)
        try:
            recorded = recorder.record(row.submission)
        except EntryRefused as refused:
            result.status, result.code, result.message = (
                refused.status,
                refused.code,
                refused.message,
            )
        else:
            result.status, result.seq = recorded.status, recorded.seq
        results.append(result)
    return results


def cell_conflicts(session: Session, entry_ids: Iterable[str]) -> list[CellConflict]:
    """Cells touched by these entries that now have more than one head (one query)."""
    ids = sorted(set(entry_ids))
    if not ids:
        return []
    touched = (
        select(Entry.log_id, Entry.cell)
        .where(Entry.entry_id.in_(ids), Entry.cell.is_not(None))
        .distinct()
        .subquery()
    )
    rows = session.execute(
        select(Log.origin, Entry.cell, Entry.entry_id)
        .join(touched, (touched.c.log_id == Entry.log_id) & (touched.c.cell == Entry.cell))
        .join(Log, Log.id == Entry.log_id)
        .where(~superseded_entry())
        .order_by(Entry.log_id, Entry.cell, Entry.seq)
    ).all()
    heads: dict[tuple[str, str], list[str]] = {}
    for origin, cell, entry_id in rows:
        heads.setdefault((origin, cell), []).append(entry_id)
    return [
        CellConflict(origin, cell, ids) for (origin, cell), ids in heads.items() if len(ids) > 1
    ]


def conflicts_in_cells(
    session: Session, cells: Iterable[tuple[int, str | None]]
) -> list[CellConflict]:
    """``cell_conflicts`` of entries whose (log id, cell) are known: one query per log, on the
    (log, cell) index, that returns only the heads of cells with more than one."""
    by_log: dict[int, set[str]] = {}
    for log_id, cell in cells:
        if cell is not None:
            by_log.setdefault(log_id, set()).add(cell)
    found: list[CellConflict] = []
    postgres = session.get_bind().dialect.name == "postgresql"
    heads = _conflicted_heads(postgres)
    for log_id in sorted(by_log):
        cells = sorted(by_log[log_id])
        rows = session.execute(
            heads, {"log_id": log_id, "cells": array_value(cells, postgres)}
        ).all()
        if not rows:
            continue
        origin = session.execute(select(Log.origin).where(Log.id == log_id)).scalar_one()
        conflicted: dict[str, list[str]] = {}
        for cell, entry_id in rows:
            conflicted.setdefault(cell, []).append(entry_id)
        found.extend(CellConflict(origin, cell, ids) for cell, ids in conflicted.items())
    return found


@functools.cache
def _conflicted_heads(postgres: bool) -> Select[tuple[str, str]]:
    """The live heads (cell, entry id) of the cells ``:cells`` of log ``:log_id`` that have
    more than one, by cell and seq; built once.

    On PostgreSQL one look-up of the (log, cell) index per cell, whatever the planner knows: a
    LATERAL subquery with an OFFSET is never flattened into a join, so it runs once per wanted
    cell. ``cell = ANY(array)`` let a planner without statistics (a new database, before
    autovacuum analyzes) match the index on the log alone and read all of the log's entries."""
    log_id = bindparam("log_id", type_=Integer)
    if postgres:
        wanted = (
            func.unnest(bindparam("cells", type_=TextArray()))
            .table_valued("cell")
            .render_derived(name="wanted")
        )
        live = (
            select(Entry.entry_id, Entry.seq)
            .where(Entry.log_id == log_id, Entry.cell == wanted.c.cell)
            .offset(0)
            .lateral("live")
        )
        superseded = (
            select(Supersession.correction_entry_id)
            .where(
                Supersession.log_id == log_id, Supersession.superseded_entry_id == live.c.entry_id
            )
            .exists()
        )
        heads = (
            select(
                wanted.c.cell,
                live.c.entry_id,
                live.c.seq,
                func.count().over(partition_by=wanted.c.cell).label("live"),
            )
            .select_from(wanted.join(live, true()))
            .where(~superseded)
            .subquery()
        )
    else:
        heads = (
            select(
                Entry.cell,
                Entry.entry_id,
                Entry.seq,
                func.count().over(partition_by=Entry.cell).label("live"),
            )
            .where(
                Entry.log_id == log_id,
                Entry.cell.in_(bindparam("cells", expanding=True)),
                ~superseded_entry(),
            )
            .subquery()
        )
    return (
        select(heads.c.cell, heads.c.entry_id)
        .where(heads.c.live > 1)
        .order_by(heads.c.cell, heads.c.seq)
    )


# -- pull --------------------------------------------------------------------------------------


class PullRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Pulled:
    journal: str
    entries: list[tuple[int, str]]  # (seq, leaf text)
    next_cursor: int
    size: int


def readable_log(session: Session, user: User, origin: str, subject_id: int | None) -> Log:
    """The journal ``origin``, if the user may read it: one subject's entries (its teacher,
    the class teacher), or all of them (the class teacher). Raises ``Forbidden``."""
    log = session.scalar(select(Log).where(Log.origin == origin, Log.kind == "journal"))
    if log is None or log.class_group_id is None:
        raise PullRefused(404, "unknown_journal", _("There is no such journal."))
    if subject_id is None:
        policy.require(policy.can_read_class(user, log.class_group_id), "not this class")
    else:
        allowed = policy.can_read_class_subject(user, log.class_group_id, subject_id)
        policy.require(allowed, "not this class and subject")
    return log


def pull_entries(
    session: Session, log: Log, subject_id: int | None, cursor: int, limit: int
) -> Pulled:
    """Leaves with ``seq >= cursor`` (of one subject, when given), at most ``limit`` of them.

    The page stops at the log's committed size, read first: every seq below it is committed,
    because seqs are reserved under the log row's lock and committed in that order.
    """
    size = session.execute(select(Log.size).where(Log.id == log.id)).scalar_one()
    query = select(Entry.seq, Entry.leaf).where(
        Entry.log_id == log.id, Entry.seq >= cursor, Entry.seq < size
    )
    if subject_id is not None:
        lessons = select(Lesson.id).where(
            Lesson.class_group_id == log.class_group_id, Lesson.subject_id == subject_id
        )
        query = query.where(
            or_(
                Entry.lesson_id.in_(lessons),
                Entry.cell.like(f"term_grade:{subject_id}:%"),
                Entry.cell.like(f"year_grade:{subject_id}:%"),
            )
        )
    rows = session.execute(query.order_by(Entry.seq).limit(limit)).all()
    entries = [(row.seq, row.leaf.decode("utf-8")) for row in rows]
    next_cursor = entries[-1][0] + 1 if len(entries) == limit else max(size, cursor)
    return Pulled(log.origin, entries, next_cursor, size)


# -- the blueprint -----------------------------------------------------------------------------

bp = Blueprint("sync", __name__, url_prefix="/api/sync")
MAX_DB_ID = 2**31 - 1
_KID = re.compile(r"[0-9a-f]{32}")  # INTEGER columns; a cursor beyond it cannot name a leaf either


def json_error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 401:
        return json_error(401, "signed_out", _("Your session has ended. Sign in again."))
    if status == 413:
        return json_error(413, "too_large", _("The request is too large."))
    _status, _title, message, reason = error_words(exc)
    return json_error(
        status, exc.name.lower().replace(" ", "_"), " ".join(filter(None, (reason, message)))
    )


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError) -> Response:
    # A signed-out browser also has no CSRF token left: tell it to sign in, not that it forged.
    if current_user() is None:
        return json_error(401, "signed_out", _("Your session has ended. Sign in again."))
    return json_error(400, "csrf", _("The security token has expired. Reload and try again."))


@bp.get("/session")
@roles_required(*UPLOADER_ROLES)
def session_info() -> Response:
    """Who is signed in, a fresh CSRF token, and the user's device keys."""
    user = current_user()
    assert user is not None
    keys = db.session.scalars(
        select(DeviceKey).where(DeviceKey.user_id == user.id).order_by(DeviceKey.created_at)
    )
    return jsonify(
        {
            "user": {"id": user.id, "name": user.full_name},
            "csrf_token": generate_csrf(),
            "device_keys": [
                {
                    "kid": key.kid,
                    "alg": key.alg,
                    "label": key.label,
                    "revoked_at": ledger_entry.format_timestamp(key.revoked_at)
                    if key.revoked_at
                    else None,
                }
                for key in keys
            ],
            # What to call this browser's key when it is enrolled, unless the person names it.
            "suggested_device_name": device_name(request.headers.get("User-Agent")),
        }
    )


@bp.post("/entries")
@roles_required(*UPLOADER_ROLES)
def upload() -> Response:
    """A batch of signed entries: ``{"entries": [...]}``, one result per entry."""
    limit = current_app.config["SYNC_MAX_BATCH"]
    raw = request.get_data()
    try:
        body = ledger_entry.parse_json(raw, max_bytes=current_app.config["MAX_CONTENT_LENGTH"])
    except ledger_entry.PayloadError as exc:
        return json_error(400, "malformed_json", str(exc))
    entries = body.get("entries") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return json_error(400, "no_entries", _('Send a JSON object {"entries": [...]}.'))
    if len(entries) > limit:
        return json_error(
            413, "batch_too_large", _("Send at most %(limit)d entries at once.", limit=limit)
        )
    user = current_user()
    assert user is not None
    try:
        outcome = upload_batch(
            db.session,
            user,
            entries,
            quarantine_quota=current_app.config["SYNC_QUARANTINE_DAILY_QUOTA"],
            plain=ledger_entry.plain_text(raw.decode("utf-8")),
        )
        db.session.commit()
    except (IntegrityError, OperationalError) as exc:
        # Another request stored one of these entries a moment ago (the retry sees "duplicate"),
        # the database went away mid-batch, or another writer held the journal's lock past
        # APPEND_LOCK_TIMEOUT. Nothing of the batch is stored: the device sends it again.
        db.session.rollback()
        if lock_wait_expired(exc):
            response = json_error(
                503,
                "journal_locked",
                _("Another upload is writing to this journal. The entries will be sent again."),
            )
            response.headers["Retry-After"] = "2"
            return response
        response = json_error(503, "busy", _("The server is busy. The entries will be sent again."))
        response.headers["Retry-After"] = "1"
        return response
    # orjson: the batch's results hold only strings, integers and lists (Flask's provider,
    # which sorts keys and escapes non-ASCII, took longer than storing a small batch).
    return Response(orjson.dumps(outcome.as_json()), mimetype="application/json")


@bp.get("/pull")
@roles_required(*UPLOADER_ROLES)
def pull() -> Response:
    """Leaves of one journal from ``cursor`` on; ``next`` is the cursor for the next call."""
    origin = request.args.get("journal", "")
    try:
        # Plain digits only (no sign, spaces or "1_0"); the ranges are checked below.
        cursor = parse_id(request.args.get("cursor", "0"), maximum=BIG_ID_MAX)
        limit = parse_id(request.args.get("limit", str(PULL_PAGE_MAX)), maximum=BIG_ID_MAX)
        subject = request.args.get("subject")
        subject_id = parse_id(subject, maximum=BIG_ID_MAX) if subject else None
    except ValueError:
        return json_error(400, "bad_parameter", _("cursor, limit and subject must be numbers."))
    # Out-of-range numbers and NUL characters would reach the database as errors, not answers.
    if (
        "\x00" in origin
        or len(origin) > 200
        or (subject_id is not None and not 1 <= subject_id <= MAX_DB_ID)
    ):
        return json_error(400, "bad_parameter", _("No such journal or subject."))
    if not 0 <= cursor <= MAX_DB_ID or not 1 <= limit <= PULL_PAGE_MAX:
        return json_error(
            400,
            "bad_parameter",
            _("cursor must be 0 or more and limit 1 to %(n)d.", n=PULL_PAGE_MAX),
        )
    user = current_user()
    assert user is not None
    try:
        log = readable_log(db.session, user, origin, subject_id)
    except PullRefused as refused:
        return json_error(refused.status, refused.code, refused.message)
    except policy.Forbidden:
        log_access("denied:sync.pull", "journal", origin)
        db.session.commit()
        raise
    pulled = pull_entries(db.session, log, subject_id, cursor, limit)
    # Grades and attendance are personal data: each read is recorded (DESIGN §3.6).
    log_access("view:sync.pull", "journal", log.id, school_id=log.school_id)
    db.session.commit()
    return jsonify(
        {
            "journal": pulled.journal,
            "entries": [{"seq": seq, "leaf": leaf} for seq, leaf in pulled.entries],
            "next": pulled.next_cursor,
            "size": pulled.size,
            "more": pulled.next_cursor < pulled.size,
        }
    )


@bp.get("/devices/<kid>/gaps")
@roles_required(*UPLOADER_ROLES)
def device_gaps(kid: str) -> Response:
    """The device_seq report of one of the user's own device keys."""
    user = current_user()
    assert user is not None
    # A key id is 32 hex digits; anything else (a NUL, say) must not reach the database.
    key = db.session.get(DeviceKey, kid) if _KID.fullmatch(kid) else None
    if key is None or key.user_id != user.id:
        return json_error(404, "unknown_key", _("You have no such device key."))
    return jsonify(device_seq_reports(db.session, [kid])[0].as_json())
