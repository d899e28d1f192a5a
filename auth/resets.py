"""Resets of someone else's password or second factor, with four eyes, and the one-time letters
that let a person set their own password.

Nobody ends up holding a working session for someone else:

- one person with admin rights asks for a reset (with a reason), a second one approves it; in a
  school with one administrator the operator approves with ``flask --app wsgi user approve-reset``;
  the operator's own ``user reset`` command is the one reset that needs no second person (the
  operator runs the server and its database);
- at approval the reset is applied: every session of the person ends, every device key of theirs
  is revoked (a signed record in the school ledger log), and the password or second factor is
  cleared;
- the code that sets a new password is shown once, on a printable letter addressed to the
  person (the person's welcome letter for a new account is the same kind of letter), and is
  exchanged on first use for a value kept in that browser's session, so it never has to stay in
  a URL;
- at the next sign-in the person is shown who asked for the reset, who approved it, and when;
  a device key enrolled after a reset is marked so in the device list, the access log and the
  ledger.

Every function takes the session first, flushes, and never commits.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from journal.keys import LogKey

from . import policy, sessions
from .devices import revoke_device_key
from .models import AccountReset, DeviceKey, Passkey, PasswordReset, RecoveryCode, User
from .passwords import check_new_password, hash_password
from .services import (
    AuthError,
    group_code,
    normalize_paper_code,
    paper_code,
    record_access,
    sha256_text,
)
from .signin import Throttled, clear_code_failures, code_wait, record_failure

RESET_KINDS = ("password", "second_factor", "both")
# A request nobody approved lapses; an approved reset's letter may be printed until then too.
REQUEST_LIFETIME = dt.timedelta(days=7)
# A letter's code works this long: letters are handed over on paper, parents come by later.
LETTER_LIFETIME = dt.timedelta(days=7)
LETTER_CODE_LENGTH = 16  # 31 symbols each: about 79 bits
MAX_REASON = 500
# The throttle's key for wrong letter codes (never a username: those have no '#').
CODE_KIND = "#reset"


@dataclass(frozen=True)
class Letter:
    """What a printed letter tells its person: shown once, the code kept nowhere else."""

    user: User
    code: str  # grouped for reading: ABCD-EFGH-JKLM-NPQR
    expires_at: dt.datetime
    reset: AccountReset | None  # None: the welcome letter of a new account

    @property
    def path_code(self) -> str:
        return normalize_paper_code(self.code)


# -- asking, approving, cancelling ---------------------------------------------------------------


def request_reset(
    session: Session,
    target: User,
    kind: str,
    reason: str,
    *,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
    log_key: LogKey | None = None,
) -> AccountReset:
    """Ask for a reset of ``target``'s password, second factor or both.

    ``actor`` None is the operator's command: the reset is approved and applied at once."""
    if actor is not None:
        policy.require(policy.can_manage_user(actor, target), "not a user of your school")
    if kind not in RESET_KINDS:
        raise AuthError("bad_reset_kind", f"a reset is one of {', '.join(RESET_KINDS)}")
    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON:
        raise AuthError("bad_reason", f"say why in 1-{MAX_REASON} characters")
    if any(pending.user_id == target.id for pending in pending_resets(session, target, now)):
        raise AuthError("reset_pending", "a reset of this account is waiting for approval")
    reset = AccountReset(
        user_id=target.id,
        school_id=target.school_id,
        kind=kind,
        reason=reason,
        requested_by_id=actor.id if actor is not None else None,
        requested_at=now,
        expires_at=now + REQUEST_LIFETIME,
    )
    session.add(reset)
    session.flush()
    record_access(
        session, actor, f"user.reset.request.{kind}", "user", target.id, ip,
        school_id=target.school_id, now=now,
    )  # fmt: skip
    if actor is None:
        _apply(session, reset, approver=None, ip=ip, now=now, log_key=log_key)
    return reset


def pending_resets(
    session: Session, user_or_school: User | int, now: dt.datetime
) -> list[AccountReset]:
    """Requests waiting for a second person: of one account (a User) or a school (its id)."""
    query = select(AccountReset).where(
        AccountReset.approved_at.is_(None),
        AccountReset.cancelled_at.is_(None),
        AccountReset.expires_at > now,
    )
    if isinstance(user_or_school, User):
        query = query.where(AccountReset.user_id == user_or_school.id)
    else:
        query = query.where(AccountReset.school_id == user_or_school)
    return list(session.scalars(query.order_by(AccountReset.requested_at, AccountReset.id)))


def recent_resets(session: Session, school_id: int, *, limit: int = 50) -> list[AccountReset]:
    return list(
        session.scalars(
            select(AccountReset)
            .where(AccountReset.school_id == school_id)
            .order_by(AccountReset.id.desc())
            .limit(limit)
        )
    )


def approve_reset(
    session: Session,
    reset: AccountReset,
    *,
    approver: User | None,
    ip: str | None,
    now: dt.datetime,
    log_key: LogKey | None = None,
) -> None:
    """The second person's approval; applies the reset. ``approver`` None: the operator."""
    target = session.get_one(User, reset.user_id)
    if approver is not None:
        policy.require(policy.can_manage_user(approver, target), "not a user of your school")
        if approver.id == reset.requested_by_id:
            raise AuthError("same_person", "a second person must approve this reset")
    if reset.cancelled_at is not None or reset.approved_at is not None:
        raise AuthError("reset_closed", "this reset was approved or cancelled already")
    if reset.expires_at <= now:
        raise AuthError("reset_expired", "this request has lapsed: ask again")
    _apply(session, reset, approver=approver, ip=ip, now=now, log_key=log_key)


def cancel_reset(
    session: Session, reset: AccountReset, *, actor: User | None, ip: str | None, now: dt.datetime
) -> None:
    """Withdraw or refuse a request that nobody approved yet."""
    target = session.get_one(User, reset.user_id)
    if actor is not None:
        policy.require(policy.can_manage_user(actor, target), "not a user of your school")
    if reset.cancelled_at is not None or reset.approved_at is not None:
        raise AuthError("reset_closed", "this reset was approved or cancelled already")
    reset.cancelled_at = now
    reset.cancelled_by_id = actor.id if actor is not None else None
    session.flush()
    record_access(
        session, actor, "user.reset.cancel", "user", target.id, ip,
        school_id=target.school_id, now=now,
    )  # fmt: skip


def _apply(
    session: Session,
    reset: AccountReset,
    *,
    approver: User | None,
    ip: str | None,
    now: dt.datetime,
    log_key: LogKey | None,
) -> None:
    """The reset takes effect: sessions end, device keys are revoked, the factor is cleared."""
    target = session.get_one(User, reset.user_id)
    reset.approved_at = now
    reset.approved_by_id = approver.id if approver is not None else None
    session.flush()
    sessions.end_sessions_of(session, target.id, "reset", now)
    keys = session.scalars(
        select(DeviceKey).where(DeviceKey.user_id == target.id, DeviceKey.revoked_at.is_(None))
    ).all()
    for key in keys:
        revoke_device_key(
            session, key, actor=approver, ip=ip, now=now, log_key=log_key, reset=reset
        )
    if reset.resets_second_factor:
        target.totp_secret = None
        target.totp_confirmed_at = None
        target.totp_last_step = None
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == target.id))
        session.execute(delete(Passkey).where(Passkey.user_id == target.id))
    if reset.resets_password:
        target.password_hash = None
        _void_letters(session, target, now)
    clear_code_failures(target)
    session.flush()
    record_access(
        session, approver, f"user.reset.approve.{reset.kind}", "user", target.id, ip,
        school_id=target.school_id, now=now,
    )  # fmt: skip


def _void_letters(session: Session, user: User, now: dt.datetime) -> None:
    """Earlier letters of the person stop working."""
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


# -- letters -------------------------------------------------------------------------------------


def _new_letter(
    session: Session,
    user: User,
    reset: AccountReset | None,
    *,
    actor: User | None,
    now: dt.datetime,
) -> Letter:
    _void_letters(session, user, now)
    code = paper_code(LETTER_CODE_LENGTH)
    row = PasswordReset(
        user_id=user.id,
        token_hash=sha256_text(code),
        account_reset_id=reset.id if reset is not None else None,
        created_by_id=actor.id if actor is not None else None,
        created_at=now,
        expires_at=now + LETTER_LIFETIME,
    )
    session.add(row)
    session.flush()
    return Letter(user, group_code(code, 4), row.expires_at, reset)


def welcome_letter(
    session: Session, user: User, *, actor: User | None, ip: str | None, now: dt.datetime
) -> Letter:
    """The letter of a new account that has no password yet (made with the account)."""
    if user.password_hash is not None:
        raise AuthError("has_password", "this account has a password: ask for a reset")
    letter = _new_letter(session, user, None, actor=actor, now=now)
    record_access(session, actor, "user.letter.welcome", "user", user.id, ip, now=now)
    return letter


def print_letter(
    session: Session,
    reset: AccountReset,
    *,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
) -> Letter:
    """The letter of an approved password reset, once: for the person who asked for the
    reset or approved it (or the operator)."""
    if actor is not None and actor.id not in (reset.requested_by_id, reset.approved_by_id):
        raise AuthError("not_your_reset", "only who asked for or approved this reset prints it")
    if reset.approved_at is None or not reset.resets_password:
        raise AuthError("no_letter", "this reset has no letter (not approved, or no password)")
    if reset.letter_printed_at is not None:
        raise AuthError("letter_printed", "the letter was printed already: ask for a new reset")
    if reset.expires_at <= now or reset.completed_at is not None:
        raise AuthError("reset_expired", "this reset has lapsed: ask again")
    claimed = session.execute(
        update(AccountReset)
        .where(AccountReset.id == reset.id, AccountReset.letter_printed_at.is_(None))
        .values(letter_printed_at=now, letter_printed_by_id=actor.id if actor else None)
        .execution_options(synchronize_session="fetch")
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("letter_printed", "the letter was printed already: ask for a new reset")
    target = session.get_one(User, reset.user_id)
    letter = _new_letter(session, target, reset, actor=actor, now=now)
    record_access(
        session, actor, "user.letter.reset", "user", target.id, ip,
        school_id=target.school_id, now=now,
    )  # fmt: skip
    return letter


# -- the person sets their password --------------------------------------------------------------


def claim_code(session: Session, code: str, *, address: str | None, now: dt.datetime) -> str:
    """Exchange a letter's code, on its first use, for a value only this browser keeps (in its
    session); returns that value. Wrong codes are throttled per address."""
    wait = code_wait(session, CODE_KIND, address, now)
    if wait:
        raise Throttled(wait)
    # Links made before letters had paper codes carried a URL-safe token: take those as typed.
    hashes = {sha256_text(normalize_paper_code(code)), sha256_text(code.strip())}
    found = session.scalar(select(PasswordReset).where(PasswordReset.token_hash.in_(hashes)))
    usable = (
        found is not None
        and found.used_at is None
        and found.expires_at > now
        and found.claim_hash is None
    )
    if not usable:
        record_failure(session, username=CODE_KIND, address=address, device=None, now=now)
        raise AuthError("bad_reset_code", "this code is unknown, used or expired")
    assert found is not None
    claim = secrets.token_urlsafe(32)
    claimed = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == found.id, PasswordReset.claim_hash.is_(None))
        .values(claim_hash=sha256_text(claim))
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("bad_reset_code", "this code is unknown, used or expired")
    return claim


def claimed_letter(session: Session, claim: str, now: dt.datetime) -> PasswordReset | None:
    """The letter this browser claimed, while it may still set a password."""
    found = session.scalar(
        select(PasswordReset).where(PasswordReset.claim_hash == sha256_text(claim))
    )
    if found is None or found.used_at is not None or found.expires_at <= now:
        return None
    return found


def complete_password_reset(
    session: Session, claim: str, password: str, *, ip: str | None, now: dt.datetime
) -> User:
    """Set the new password; every session of the person ends (nobody is signed in by it)."""
    letter = claimed_letter(session, claim, now)
    if letter is None:
        raise AuthError("bad_reset_link", "this link is unknown, used or expired")
    user = session.get_one(User, letter.user_id)
    problem = check_new_password(password, user.username)
    if problem:
        raise AuthError("weak_password", problem)
    used = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == letter.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("bad_reset_link", "this link is unknown, used or expired")
    user.password_hash = hash_password(password)
    clear_code_failures(user)
    if letter.account_reset_id is not None:
        session.get_one(AccountReset, letter.account_reset_id).completed_at = now
    session.flush()
    sessions.end_sessions_of(session, user.id, "password", now)
    record_access(session, user, "user.password_set", "user", user.id, ip, now=now)
    return user


# -- what the person is told at sign-in ----------------------------------------------------------


def unacknowledged_resets(session: Session, user: User) -> list[AccountReset]:
    """Resets of the account the person has not been shown yet (oldest first)."""
    return list(
        session.scalars(
            select(AccountReset)
            .where(
                AccountReset.user_id == user.id,
                AccountReset.approved_at.is_not(None),
                AccountReset.acknowledged_at.is_(None),
            )
            .order_by(AccountReset.approved_at, AccountReset.id)
        )
    )


def acknowledge_resets(session: Session, user: User, now: dt.datetime) -> None:
    session.execute(
        update(AccountReset)
        .where(
            AccountReset.user_id == user.id,
            AccountReset.approved_at.is_not(None),
            AccountReset.acknowledged_at.is_(None),
        )
        .values(acknowledged_at=now)
        .execution_options(synchronize_session="fetch")
    )
