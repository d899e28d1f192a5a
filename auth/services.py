"""Accounts and the access log: who exists, with which roles, locked or not, and the record of
who did what to whose data. Signing in is in ``auth.signin``, sessions in ``auth.sessions``,
second factors in ``auth.factors``, resets and letters in ``auth.resets``, invitations in
``auth.invitations``, device keys in ``auth.devices``.

Every function takes the session first, flushes, and never commits. Time comes in as ``now`` so
that tests can move it. Errors are ``AuthError`` with a machine ``code`` (views turn codes into
translated sentences) and an English message for commands and logs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from sqlalchemy import bindparam, case, exists, func, insert, select, true
from sqlalchemy.orm import Session

from journal.db import single_statement, utcnow
from journal.ledger import entry as ledger_entry
from journal.models import ClassGroup, Entry, Lesson, School, Student, Subject, Supersession

from . import policy, sessions
from .models import STAFF_ROLES, AccessLogEntry, RoleGrant, User

# Codes people type from paper: no 0/O, 1/I/L.
_PAPER_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,99}$")


class AuthError(Exception):
    """Refused: ``code`` for the view to explain, ``message`` in English for commands."""

    def __init__(self, code: str, message: str, *, until: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.until = until


def sha256_text(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def paper_code(length: int) -> str:
    return "".join(secrets.choice(_PAPER_ALPHABET) for _ in range(length))


def normalize_paper_code(code: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", code.upper())


def group_code(code: str, size: int) -> str:
    return "-".join(code[i : i + size] for i in range(0, len(code), size))


# -- accounts ------------------------------------------------------------------------------------


def check_username(session: Session, username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise AuthError(
            "bad_username",
            "a username is 3-100 characters: latin letters, digits, '.', '_' or '-'",
        )
    if session.scalar(select(exists().where(User.username == name))):
        raise AuthError("username_taken", f"the username {name!r} is taken")
    return name


def check_full_name(full_name: str) -> str:
    name = " ".join(full_name.split())
    if not name or len(name) > 200:
        raise AuthError("bad_full_name", "a full name is 1-200 characters")
    return name


def create_account(
    session: Session,
    *,
    school_id: int | None,
    username: str,
    full_name: str,
    roles: list[str],
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
) -> User:
    """A staff account without a password: the person sets one with the code of a welcome
    letter (``auth.resets.welcome_letter``).

    Parents and students get accounts only through invitations (their own child's)."""
    if not roles or any(role not in STAFF_ROLES for role in roles):
        raise AuthError("bad_role", f"staff roles are {', '.join(sorted(STAFF_ROLES))}")
    if school_id is not None and session.get(School, school_id) is None:
        raise AuthError("unknown_school", "no such school")
    user = User(
        school_id=school_id,
        username=check_username(session, username),
        full_name=check_full_name(full_name),
    )
    for role in dict.fromkeys(roles):
        user.roles.append(RoleGrant(role=role, school_id=school_id))
    session.add(user)
    session.flush()
    record_access(session, actor, "user.create", "user", user.id, ip, now=now)
    return user


def set_roles(
    session: Session,
    user: User,
    roles: list[str],
    *,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
) -> None:
    """Replace a staff member's roles in their school (parent and student links stay)."""
    if any(role not in STAFF_ROLES for role in roles):
        raise AuthError("bad_role", f"staff roles are {', '.join(sorted(STAFF_ROLES))}")
    for grant in list(user.roles):
        if grant.role in STAFF_ROLES and grant.role not in roles:
            user.roles.remove(grant)
    held = {grant.role for grant in user.roles}
    for role in dict.fromkeys(roles):
        if role not in held:
            user.roles.append(RoleGrant(role=role, school_id=user.school_id))
    session.flush()
    sessions.end_sessions_of(session, user.id, "roles", now)
    record_access(session, actor, "user.set_roles", "user", user.id, ip, now=now)


def lock_account(
    session: Session, user: User, *, actor: User | None, ip: str | None, now: dt.datetime
) -> None:
    """An administrator's lock: signs the person out everywhere until unlocked."""
    user.locked_at = now
    session.flush()
    sessions.end_sessions_of(session, user.id, "lock", now)
    record_access(session, actor, "user.lock", "user", user.id, ip, now=now)


def unlock_account(
    session: Session, user: User, *, actor: User | None, ip: str | None, now: dt.datetime
) -> None:
    user.locked_at = None
    user.locked_until = None
    user.failed_logins = 0
    session.flush()
    record_access(session, actor, "user.unlock", "user", user.id, ip, now=now)


# -- the access log ------------------------------------------------------------------------------


def school_of(session: Session, target_type: str, target_id: object) -> int | None:
    """The school a logged target belongs to, for the school admin's view of the log."""
    try:
        ident = int(str(target_id))
    except ValueError:
        return None
    if target_type == "student":
        student = session.get(Student, ident)
        return student.school_id if student else None
    if target_type == "class_group":
        group = session.get(ClassGroup, ident)
        return group.school_id if group else None
    if target_type == "user":
        user = session.get(User, ident)
        return user.school_id if user else None
    if target_type == "school":
        return ident
    return None


# A plain INSERT built once, not an ORM object nor a statement made per call: every
# personal-data page writes one, and nothing reads it back in the same request.
RECORD_ACCESS = insert(AccessLogEntry.__table__)  # the columns are the parameters' keys
_LOGGED = ("at", "school_id", "actor_id", "action", "target_type", "target_id", "ip")
_LOGGED += ("user_agent", "detail")
# The same row for a page view on PostgreSQL: when it is all the transaction writes (no
# transaction id yet), its commit does not wait for the WAL to reach the disk
# (``synchronous_commit`` off for this transaction alone). The row is visible at once; only a
# crash of the database server within about a second could lose it. Anything written before
# it in the same transaction keeps the commit as it was.
RECORD_VIEW = insert(AccessLogEntry.__table__).from_select(
    _LOGGED,
    select(
        *(bindparam(name, type_=AccessLogEntry.__table__.c[name].type) for name in _LOGGED)
    ).where(
        func.set_config(
            "synchronous_commit",
            case(
                (func.txid_current_if_assigned().is_(None), "off"),
                else_=func.current_setting("synchronous_commit"),
            ),
            true(),
        ).is_not(None)
    ),
)


def record_access(
    session: Session,
    actor: User | None,
    action: str,
    target_type: str,
    target_id: object,
    ip: str | None,
    *,
    school_id: int | None = None,
    now: dt.datetime | None = None,
    user_agent: str | None = None,
    detail: str | None = None,
    page_view: bool = False,
) -> None:
    """Append who did what to which record, when and from where (append-only table).

    ``actor`` None is a command run on the server. The row belongs to ``school_id``, else to
    the target's school, else to the actor's. ``user_agent`` is the browser's header: a row
    written while serving a request takes the request's when not given. ``detail`` is what
    else the request named (``auth.access_log`` reads it), at most 200 characters.
    ``page_view``: a page's view of personal data (``RECORD_VIEW``)."""
    if user_agent is None and has_request_context():
        user_agent = request.headers.get("User-Agent")
    if school_id is None:
        school_id = school_of(session, target_type, target_id)
    if school_id is None and actor is not None:
        school_id = actor.school_id
    view = page_view and session.get_bind().dialect.name == "postgresql"
    if view:
        session.flush()  # objects still pending are written first, and count as written
    # A page view's row is committed at once (``personal_data``): when it is all the
    # transaction would hold, it is a transaction of its own.
    with single_statement(session) if view else nullcontext():
        session.execute(
            RECORD_VIEW if view else RECORD_ACCESS,
            {
                "at": now or utcnow(),
                "school_id": school_id,
                "actor_id": actor.id if actor is not None else None,
                "action": action[:80],
                "target_type": target_type[:40],
                "target_id": None if target_id is None else str(target_id)[:80],
                "ip": ip[:45] if ip else None,
                "user_agent": user_agent[:200] if user_agent else None,
                "detail": detail[:200] if detail else None,
            },
        )


# -- a parent's or student's read-only view ------------------------------------------------------


@dataclass(frozen=True)
class RecordLine:
    date: dt.date | None
    subject: str
    kind: str
    component: str | None
    value: str
    corrects: str | None  # for a correction: the kind it corrects
    reason: str | None
    superseded: bool


@dataclass(frozen=True)
class StudentRecord:
    student_id: int
    name: str
    lines: list[RecordLine]


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        if "score" in value:
            return str(value["score"])
        if "mark" in value:
            return str(value["mark"])
        if "points" in value and "max" in value:
            return f"{value['points']}/{value['max']}"
    return "" if value is None else str(value)


def student_record(session: Session, user: User | None, student_id: int) -> StudentRecord:
    """A student's grades and attendance as recorded, for someone allowed to read them."""
    policy.require(policy.can_read_student(user, student_id), "not your child")
    student = session.get_one(Student, student_id)
    rows = session.execute(
        select(Entry.entry_id, Entry.leaf, Lesson.date, Subject.name)
        .outerjoin(Lesson, Lesson.id == Entry.lesson_id)
        .outerjoin(Subject, Subject.id == Lesson.subject_id)
        .where(
            Entry.student_id == student_id,
            Entry.kind.in_(("grade", "attendance", "correction", "term_grade", "year_grade")),
        )
        .order_by(Lesson.date, Entry.received_at)
    ).all()
    ids = [row.entry_id for row in rows]
    superseded = set(
        session.scalars(
            select(Supersession.superseded_entry_id).where(
                Supersession.superseded_entry_id.in_(ids)
            )
        )
    )
    lines = []
    for row in rows:
        payload = ledger_entry.parse_leaf(row.leaf).payload
        lines.append(
            RecordLine(
                date=row.date,
                subject=row.name or "",
                kind=str(payload.get("kind")),
                component=payload.get("component"),  # type: ignore[arg-type]
                value=_value_text(payload.get("value", payload.get("grade"))),
                corrects=payload.get("corrects"),  # type: ignore[arg-type]
                reason=payload.get("reason"),  # type: ignore[arg-type]
                superseded=row.entry_id in superseded,
            )
        )
    return StudentRecord(student.id, student.full_name, lines)


def children(session: Session, user: User) -> list[Student]:
    ids = policy.children_of(user)
    if not ids:
        return []
    return list(
        session.scalars(
            select(Student).where(Student.id.in_(ids)).order_by(Student.last_name, Student.id)
        )
    )
