"""Signing in with a password, and the throttles that keep online guessing slow without letting
a stranger lock anybody out.

Wrong passwords are counted in ``LoginFailure`` rows under three keys, each over ``WINDOW``:
the account and the address together, the account from clients it does not know, and the
address for every account. Once a key reaches its limit, one attempt a ``PAUSE`` goes through:
nobody is ever kept waiting longer than that by someone else's failures. A browser where the
person signed in before carries a known-device cookie (``device``): its attempts are counted
only against that cookie, so an attacker elsewhere, or behind the same school NAT, does not slow
the person down at all. The figures are in ``docs/operations.md`` ("Security model").

Every answer to a refused password is the same whatever the account's state (unknown, no
password yet, locked by an administrator): the same words, the same status, the same single
argon2 verification.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from .models import STAFF_ROLES, LoginFailure, User
from .passwords import hash_password, needs_rehash, verify_password
from .services import AuthError

WINDOW = dt.timedelta(minutes=15)
PAUSE = dt.timedelta(seconds=60)
PAIR_LIMIT = 5  # one account from one address
ACCOUNT_LIMIT = 20  # one account from clients it does not know, all addresses together
ADDRESS_LIMIT = 50  # one address, all accounts, clients that are not known devices
DEVICE_LIMIT = 10  # a known device's own failures before it counts as unknown
CODE_LIMIT = 10  # wrong one-time codes (invitations, reset letters) from one address

# Wrong second-factor codes come from someone who knew the password: the account locks after
# LOCK_AFTER of them in a row, for LOCK_BASE, doubling with each further one up to LOCK_MAX.
LOCK_AFTER = 10
LOCK_BASE = dt.timedelta(minutes=15)
LOCK_MAX = dt.timedelta(hours=24)
FAILURES_FORGOTTEN_AFTER = dt.timedelta(hours=24)


class Throttled(AuthError):
    """Too many recent failures under one key: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("throttled", f"too many failed attempts: wait {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Count:
    failures: int
    last: dt.datetime | None

    def wait(self, limit: int, now: dt.datetime) -> int:
        """Seconds until the next attempt may go through (0: now)."""
        if self.failures < limit or self.last is None:
            return 0
        remaining = PAUSE - (now - self.last)
        return max(0, int(remaining.total_seconds() + 0.999))


def _count(condition: object) -> tuple[object, object]:
    return (
        func.count(LoginFailure.id).filter(condition),  # type: ignore[arg-type]
        func.max(LoginFailure.at).filter(condition),  # type: ignore[arg-type]
    )


def sign_in_wait(
    session: Session,
    *,
    username: str,
    address: str | None,
    device: str | None,
    now: dt.datetime,
) -> int:
    """How many seconds this attempt must wait (0: it may go through). One query."""
    unknown = LoginFailure.device.is_(None)
    columns = [
        *_count(and_(LoginFailure.username == username, LoginFailure.address == address)),
        *_count(and_(LoginFailure.username == username, unknown)),
        *_count(and_(LoginFailure.address == address, unknown)),
        *_count(LoginFailure.device == device),
    ]
    keys = [LoginFailure.username == username]
    if address:
        keys.append(LoginFailure.address == address)
    row = session.execute(
        select(*columns).where(LoginFailure.at > now - WINDOW, or_(*keys))  # type: ignore[call-overload]
    ).one()
    pair, account, from_address, own = (_Count(row[i] or 0, row[i + 1]) for i in range(0, 8, 2))
    if device is not None and own.failures < DEVICE_LIMIT:
        return 0  # a known device answers only for its own failures
    waits = [account.wait(ACCOUNT_LIMIT, now)]
    if address:
        waits += [pair.wait(PAIR_LIMIT, now), from_address.wait(ADDRESS_LIMIT, now)]
    return max(waits)


def record_failure(
    session: Session,
    *,
    username: str,
    address: str | None,
    device: str | None,
    now: dt.datetime,
) -> None:
    """Count one failure; failures older than the window are pruned on the way."""
    session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
    session.add(LoginFailure(address=address, username=username[:100], device=device, at=now))
    session.flush()


def forget_failures(
    session: Session, *, username: str, address: str | None, device: str | None
) -> None:
    """After a success: this client's own failures no longer count (the account's failures
    from elsewhere still do)."""
    mine = [and_(LoginFailure.username == username, LoginFailure.address == address)]
    if device is not None:
        mine.append(LoginFailure.device == device)
    session.execute(delete(LoginFailure).where(or_(*mine)))


def code_wait(session: Session, kind: str, address: str | None, now: dt.datetime) -> int:
    """The throttle for one-time codes typed from paper (``kind``: "invitation", "reset"):
    per address, one attempt a PAUSE once CODE_LIMIT failed in the window."""
    if not address:
        return 0
    row = session.execute(
        select(*_count(LoginFailure.address == address)).where(  # type: ignore[call-overload]
            LoginFailure.username == kind, LoginFailure.at > now - WINDOW
        )
    ).one()
    return _Count(row[0] or 0, row[1]).wait(CODE_LIMIT, now)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def needs_second_factor(user: User) -> bool:
    """Staff always; others once they have chosen to enrol TOTP."""
    return (
        any(grant.role in STAFF_ROLES for grant in user.roles) or user.totp_confirmed_at is not None
    )


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    address: str | None,
    now: dt.datetime,
    device: str | None = None,
) -> User:
    """Check a username and password. Raises ``Throttled`` or AuthError ``bad_credentials``.

    ``device``: the id from a known-device cookie the browser holds for this username."""
    name = username.strip().lower()[:100]
    wait = sign_in_wait(session, username=name, address=address, device=device, now=now)
    if wait:
        raise Throttled(wait)
    user = session.scalar(select(User).where(User.username == name))
    stored = user.password_hash if user is not None else None
    # One argon2 verification whatever the state, so that time tells nothing either.
    matches = verify_password(stored or _dummy_hash(), password) and stored is not None
    if user is None or not matches or user.locked_at is not None:
        record_failure(session, username=name, address=address, device=device, now=now)
        raise AuthError("bad_credentials", "wrong username or password")
    assert stored is not None
    if needs_rehash(stored):
        user.password_hash = hash_password(password)
    forget_failures(session, username=name, address=address, device=device)
    session.flush()
    return user


# -- the second factor's lockout -----------------------------------------------------------------


def lock_time(failures: int) -> dt.timedelta | None:
    """How long the account locks after this many wrong codes in a row (None: not locked)."""
    if failures < LOCK_AFTER:
        return None
    doublings = min(failures - LOCK_AFTER, 16)
    return min(LOCK_BASE * (2**doublings), LOCK_MAX)


def register_code_failure(session: Session, user: User, now: dt.datetime) -> dt.datetime | None:
    """Count one wrong second-factor code; returns the lock's end when this one locks."""
    last = user.last_failed_login_at
    if last is not None and now - last > FAILURES_FORGOTTEN_AFTER:
        user.failed_logins = 0
        session.flush()
    # An SQL increment, so that concurrent attempts cannot overwrite each other's count.
    user.failed_logins = User.failed_logins + 1  # type: ignore[assignment]
    user.last_failed_login_at = now
    session.flush()
    session.refresh(user, ["failed_logins"])
    duration = lock_time(user.failed_logins)
    if duration is None:
        return None
    user.locked_until = now + duration
    session.flush()
    return user.locked_until


def clear_code_failures(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
    user.last_failed_login_at = None


def refuse_if_locked(user: User, now: dt.datetime) -> None:
    """Refuse a second-factor step while the account is locked (by codes or an admin)."""
    if user.locked_until is not None and user.locked_until > now:
        raise AuthError(
            "locked",
            f"too many wrong codes: the account is locked until {user.locked_until:%H:%M} UTC",
            until=user.locked_until,
        )
    if user.locked_at is not None:
        raise AuthError("disabled", "the account is locked by an administrator")
