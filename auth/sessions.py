"""Signed-in sessions kept on the server: the cookie carries a random id, the row says whose
session it is, since when, whether the second factor was passed, and whether it still stands.

A copy of the cookie is worth nothing once the row has ended: logout, "sign out everywhere", an
approved reset, an administrator's lock and a change of roles end rows at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session, contains_eager, defer, joinedload

from journal.db import single_statement

from .models import STAFF_ROLES, User, UserSession

# A session ends this long after sign-in, whatever happens in between.
STAFF_SESSION_LIFETIME = dt.timedelta(hours=12)
OTHER_SESSION_LIFETIME = dt.timedelta(days=14)
# A clock a little behind the one that started the session does not end it.
CLOCK_SKEW = dt.timedelta(seconds=60)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def lifetime(user: User) -> dt.timedelta:
    staff = any(grant.role in STAFF_ROLES for grant in user.roles)
    return STAFF_SESSION_LIFETIME if staff else OTHER_SESSION_LIFETIME


def start_session(
    session: Session,
    user: User,
    *,
    second_factor_passed: bool,
    ip: str | None,
    user_agent: str | None,
    now: dt.datetime,
) -> tuple[UserSession, str]:
    """A new session for the user; returns the row and the id for the cookie (kept nowhere
    else)."""
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=_token_hash(token),
        user_id=user.id,
        created_at=now,
        second_factor_at=now if second_factor_passed else None,
        ip=ip[:45] if ip else None,
        user_agent=" ".join((user_agent or "").split())[:200] or None,
    )
    session.add(row)
    session.flush()
    return row, token


# Built once: every signed-in request runs it, and building it cost as much as running it.
# Columns few requests read are deferred (loaded on first use): each column selected costs
# every signed-in request its decoding and its ORM attribute, and the sealed TOTP secret an
# AES-GCM opening.
FIND_SESSION = (
    select(UserSession)
    .join(UserSession.user)
    .options(
        defer(UserSession.token_hash),
        defer(UserSession.end_reason),
        defer(UserSession.ip),
        defer(UserSession.user_agent),
        defer(UserSession.totp_pending),
        contains_eager(UserSession.user).options(
            defer(User.password_hash),
            defer(User.totp_secret),
            defer(User.totp_last_step),
            defer(User.failed_logins),
            defer(User.last_failed_login_at),
            defer(User.locked_until),
            defer(User.locked_at),
            defer(User.webauthn_user_handle),
            joinedload(User.roles),
        ),
    )
    .where(UserSession.token_hash == bindparam("token_hash"), UserSession.ended_at.is_(None))
)


def find_session(session: Session, token: str, now: dt.datetime) -> UserSession | None:
    """The standing session with this cookie id, its user and roles loaded in the same query;
    None when it is unknown, ended or past its lifetime."""
    with single_statement(session):  # a request's first statement, as a rule
        row = session.scalar(FIND_SESSION, {"token_hash": _token_hash(token)})
    return row if row is not None and _stands(row, now) else None


def find_session_with(
    session: Session,
    token: str,
    now: dt.datetime,
    statement: Select[Any],
    params: Mapping[str, Any],
) -> tuple[UserSession | None, tuple[Any, ...] | None]:
    """``find_session`` and, in the same statement, a view's own columns: ``statement`` is
    ``FIND_SESSION`` with columns added (``add_columns``, outer joins), ``params`` their
    parameters. Returns the session as ``find_session`` does and the added columns of its row;
    (None, None) when the session does not stand (the added columns are then not used)."""
    with single_statement(session):
        found = session.execute(statement, {**params, "token_hash": _token_hash(token)})
        first = found.unique().first()  # one row per role grant, the same added columns on each
    if first is None or not _stands(first[0], now):
        return None, None
    return first[0], tuple(first)[1:]


def _stands(row: UserSession, now: dt.datetime) -> bool:
    age = now - row.created_at
    return -CLOCK_SKEW <= age <= lifetime(row.user)


def end_session(session: Session, row: UserSession, reason: str, now: dt.datetime) -> None:
    if row.ended_at is None:
        row.ended_at = now
        row.end_reason = reason
        session.flush()


def end_sessions_of(
    session: Session,
    user_id: int,
    reason: str,
    now: dt.datetime,
    *,
    keep: UserSession | None = None,
) -> int:
    """End every standing session of the user (but ``keep``); returns how many ended."""
    query = (
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session="fetch")
    )
    if keep is not None:
        query = query.where(UserSession.id != keep.id)
    return int(session.execute(query).rowcount or 0)  # type: ignore[attr-defined]


def standing_sessions(session: Session, user: User, now: dt.datetime) -> list[UserSession]:
    """The user's sessions that still stand, newest first (for the security page)."""
    rows = session.scalars(
        select(UserSession)
        .options(joinedload(UserSession.user).joinedload(User.roles))
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        .order_by(UserSession.created_at.desc(), UserSession.id.desc())
    ).unique()
    limit = lifetime(user)
    return [row for row in rows if now - row.created_at <= limit]
