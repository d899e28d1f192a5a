"""Accounts and trust: sign-in with lockout, second factors, invitations, password-reset links,
device keys and the access log.

Every function takes the session first, flushes, and never commits. Time comes in as ``now`` so
that tests can move it. Errors are ``AuthError`` with a machine ``code`` (views turn codes into
translated sentences) and an English message for commands and logs.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyotp
import segno
from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from journal.db import utcnow
from journal.keys import LogKey
from journal.ledger import entry as ledger_entry
from journal.models import ClassGroup, Entry, Lesson, School, Student, Subject, Supersession

from . import policy
from .models import (
    STAFF_ROLES,
    AccessLogEntry,
    DeviceKey,
    Invitation,
    LoginFailure,
    Passkey,
    PasswordReset,
    RecoveryCode,
    RoleGrant,
    User,
)
from .passwords import check_new_password, hash_password, needs_rehash, verify_password

# Sign-in protection. An account locks after LOCK_AFTER wrong passwords or codes in a row, for
# LOCK_BASE; every further failure after a lock doubles the time, up to LOCK_MAX. A day without
# failures forgets the count. One address may fail ADDRESS_LIMIT times per ADDRESS_WINDOW.
LOCK_AFTER = 20
LOCK_BASE = dt.timedelta(minutes=15)
LOCK_MAX = dt.timedelta(hours=24)
FAILURES_FORGOTTEN_AFTER = dt.timedelta(hours=24)
ADDRESS_LIMIT = 50
ADDRESS_WINDOW = dt.timedelta(minutes=15)
# Device keys may be enrolled only this soon after a second-factor check.
FRESH_SECOND_FACTOR = dt.timedelta(minutes=5)
INVITATION_LIFETIME = dt.timedelta(days=30)
RESET_LIFETIME = dt.timedelta(hours=48)
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "Class journal"
TOTP_STEP_SECONDS = 30

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


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _paper_code(length: int) -> str:
    return "".join(secrets.choice(_PAPER_ALPHABET) for _ in range(length))


def _normalize_paper_code(code: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", code.upper())


def _group(code: str, size: int) -> str:
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


def _check_full_name(full_name: str) -> str:
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
) -> tuple[User, str]:
    """A staff account without a password, and a one-time link token to set one.

    Parents and students get accounts only through invitations (their own child's)."""
    if not roles or any(role not in STAFF_ROLES for role in roles):
        raise AuthError("bad_role", f"staff roles are {', '.join(sorted(STAFF_ROLES))}")
    if school_id is not None and session.get(School, school_id) is None:
        raise AuthError("unknown_school", "no such school")
    user = User(
        school_id=school_id,
        username=check_username(session, username),
        full_name=_check_full_name(full_name),
    )
    for role in dict.fromkeys(roles):
        user.roles.append(RoleGrant(role=role, school_id=school_id))
    session.add(user)
    session.flush()
    token = issue_password_reset(session, user, actor=actor, ip=ip, now=now, action="user.create")
    return user, token


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
    user.auth_version += 1
    session.flush()
    record_access(session, actor, "user.set_roles", "user", user.id, ip, now=now)


def lock_account(
    session: Session, user: User, *, actor: User | None, ip: str | None, now: dt.datetime
) -> None:
    """An administrator's lock: signs the person out everywhere until unlocked."""
    user.locked_at = now
    user.auth_version += 1
    session.flush()
    record_access(session, actor, "user.lock", "user", user.id, ip, now=now)


def unlock_account(
    session: Session, user: User, *, actor: User | None, ip: str | None, now: dt.datetime
) -> None:
    user.locked_at = None
    user.locked_until = None
    user.failed_logins = 0
    session.flush()
    record_access(session, actor, "user.unlock", "user", user.id, ip, now=now)


# -- signing in ----------------------------------------------------------------------------------


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def address_is_limited(session: Session, address: str | None, now: dt.datetime) -> bool:
    if not address:
        return False
    count = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.address == address, LoginFailure.at > now - ADDRESS_WINDOW)
    )
    return (count or 0) >= ADDRESS_LIMIT


def _record_address_failure(
    session: Session, address: str | None, username: str, now: dt.datetime
) -> None:
    if not address:
        return
    session.execute(
        delete(LoginFailure).where(
            LoginFailure.address == address, LoginFailure.at < now - ADDRESS_WINDOW
        )
    )
    session.add(LoginFailure(address=address, username=username[:100], at=now))
    session.flush()


def lock_time(failures: int) -> dt.timedelta | None:
    """How long the account locks after this many failures in a row (None: not locked)."""
    if failures < LOCK_AFTER:
        return None
    doublings = min(failures - LOCK_AFTER, 16)
    return min(LOCK_BASE * (2**doublings), LOCK_MAX)


def _register_failure(session: Session, user: User, now: dt.datetime) -> dt.datetime | None:
    """Count one failure; returns the lock's end when this failure locks the account."""
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


def _clear_failures(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
    user.last_failed_login_at = None


def _refuse_if_locked(user: User, now: dt.datetime) -> None:
    if user.locked_until is not None and user.locked_until > now:
        raise AuthError(
            "locked",
            f"too many failed attempts: the account is locked until {user.locked_until:%H:%M} UTC",
            until=user.locked_until,
        )


def needs_second_factor(user: User) -> bool:
    """Staff always; others once they have chosen to enrol TOTP."""
    return (
        any(grant.role in STAFF_ROLES for grant in user.roles) or user.totp_confirmed_at is not None
    )


def authenticate(
    session: Session, username: str, password: str, *, address: str | None, now: dt.datetime
) -> User:
    """Check a username and password. Raises AuthError: ``address_limited``, ``bad_credentials``,
    ``locked`` (even for the right password) or ``disabled`` (an administrator's lock)."""
    if address_is_limited(session, address, now):
        raise AuthError("address_limited", "too many failed attempts from this address")
    name = username.strip().lower()
    user = session.scalar(select(User).where(User.username == name))
    if user is None:
        verify_password(_dummy_hash(), password)  # the same time as for a real account
        _record_address_failure(session, address, name, now)
        raise AuthError("bad_credentials", "wrong username or password")
    _refuse_if_locked(user, now)
    if not verify_password(user.password_hash, password):
        _record_address_failure(session, address, name, now)
        until = _register_failure(session, user, now)
        if until is not None:
            _refuse_if_locked(user, now)
        raise AuthError("bad_credentials", "wrong username or password")
    if user.locked_at is not None:
        raise AuthError("disabled", "the account is locked by an administrator")
    assert user.password_hash is not None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    # With a second factor to come, the count runs on until that factor is passed too.
    if not needs_second_factor(user):
        _clear_failures(user)
    session.flush()
    return user


# -- TOTP and recovery codes ---------------------------------------------------------------------


def has_second_factor(session: Session, user: User) -> bool:
    if user.totp_confirmed_at is not None:
        return True
    return bool(session.scalar(select(exists().where(Passkey.user_id == user.id))))


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=TOTP_ISSUER)


def qr_data_uri(text: str) -> str:
    """A QR code as an SVG data: URI (the CSP allows data: images, nothing inline else)."""
    return str(segno.make(text, error="m").svg_data_uri(scale=4))


def _time_step(now: dt.datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step (now, or one either side for clock drift) whose code this is."""
    code = re.sub(r"\s", "", code)
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    step = _time_step(now)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def current_totp_code(secret: str, now: dt.datetime) -> str:
    return pyotp.TOTP(secret).generate_otp(_time_step(now))


def _hash_recovery_code(code: str) -> bytes:
    return _sha256(re.sub(r"[^a-z0-9]", "", code.lower()))


def replace_recovery_codes(session: Session, user: User, *, now: dt.datetime) -> list[str]:
    """Ten new one-time codes, shown once; earlier codes stop working."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_group(_paper_code(10).lower(), 5) for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=_hash_recovery_code(code), created_at=now)
        for code in codes
    )
    session.flush()
    return codes


def unused_recovery_codes(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def confirm_totp(
    session: Session, user: User, secret: str, code: str, *, now: dt.datetime
) -> list[str]:
    """Enrol TOTP once the person typed a code from their app; returns the recovery codes.

    Refused when the account already has a second factor: only an administrator's reset clears
    one, so a stolen password alone cannot add an attacker's authenticator."""
    if has_second_factor(session, user):
        raise AuthError("already_enrolled", "a second factor is already enrolled")
    try:
        base64.b32decode(secret, casefold=False)
    except (binascii.Error, ValueError):
        raise AuthError("bad_secret", "the enrolment expired; start again") from None
    step = _matching_step(secret, code, now)
    if step is None:
        raise AuthError("bad_code", "the code does not match: check the phone's clock")
    user.totp_secret = secret
    user.totp_confirmed_at = now
    user.totp_last_step = step
    session.flush()
    return replace_recovery_codes(session, user, now=now)


def _use_totp(session: Session, user: User, code: str, now: dt.datetime) -> bool:
    if not user.totp_secret or user.totp_confirmed_at is None:
        return False
    step = _matching_step(user.totp_secret, code, now)
    if step is None:
        return False
    # Only a step later than the last one used counts: a seen code (or an older one) is refused.
    # One conditional UPDATE, so that two requests racing with the same code cannot both pass.
    result = session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("replayed", "this code was used already: wait for the next one")
    session.refresh(user, ["totp_last_step"])
    return True


def _use_recovery_code(session: Session, user: User, code: str, now: dt.datetime) -> bool:
    result = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash_recovery_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def verify_second_factor(
    session: Session, user: User, code: str, *, address: str | None, now: dt.datetime
) -> str:
    """Check a TOTP code or a recovery code; returns ``"totp"`` or ``"recovery_code"``.

    Wrong codes count towards the same lockout as wrong passwords."""
    _refuse_if_locked(user, now)
    if user.locked_at is not None:
        raise AuthError("disabled", "the account is locked by an administrator")
    try:
        if _use_totp(session, user, code, now):
            method = "totp"
        elif _use_recovery_code(session, user, code, now):
            method = "recovery_code"
        else:
            raise AuthError("bad_code", "wrong code")
    except AuthError:
        _record_address_failure(session, address, user.username, now)
        if _register_failure(session, user, now) is not None:
            _refuse_if_locked(user, now)
        raise
    _clear_failures(user)
    session.flush()
    return method


def reset_second_factor(
    session: Session, user: User, *, actor: User | None, ip: str | None, now: dt.datetime
) -> None:
    """Forget TOTP, recovery codes and passkeys; the person enrols again at next sign-in."""
    user.totp_secret = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.execute(delete(Passkey).where(Passkey.user_id == user.id))
    user.auth_version += 1
    session.flush()
    record_access(session, actor, "user.reset_second_factor", "user", user.id, ip, now=now)


# -- passkeys (WebAuthn) -------------------------------------------------------------------------


def passkeys_of(session: Session, user: User) -> list[Passkey]:
    return list(
        session.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id))
    )


def passkey_registration_options(
    session: Session, user: User, *, rp_id: str, rp_name: str
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.create`` as JSON, and the challenge to keep."""
    if user.webauthn_user_handle is None:
        user.webauthn_user_handle = secrets.token_bytes(32)
        session.flush()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_name=user.username,
        user_id=user.webauthn_user_handle,
        user_display_name=user.full_name,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=key.credential_id)
            for key in passkeys_of(session, user)
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    return options_to_json(options), options.challenge


def add_passkey(
    session: Session,
    user: User,
    credential: Mapping[str, Any] | str,
    *,
    challenge: bytes,
    rp_id: str,
    origin: str,
    label: str,
    now: dt.datetime,
) -> Passkey:
    try:
        verified = verify_registration_response(
            credential=dict(credential) if isinstance(credential, Mapping) else credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except WebAuthnException as exc:
        raise AuthError("bad_passkey", f"the passkey was not accepted: {exc}") from None
    if session.scalar(select(exists().where(Passkey.credential_id == verified.credential_id))):
        raise AuthError("passkey_exists", "this passkey is registered already")
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        label=(label.strip() or "passkey")[:100],
        created_at=now,
    )
    session.add(passkey)
    session.flush()
    return passkey


def remove_passkey(session: Session, user: User, passkey_id: int) -> None:
    passkey = session.get(Passkey, passkey_id)
    if passkey is None or passkey.user_id != user.id:
        raise AuthError("unknown_passkey", "no such passkey")
    remaining = session.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
    )
    if needs_second_factor(user) and user.totp_confirmed_at is None and remaining == 1:
        raise AuthError("last_factor", "this is your only second factor: enrol another first")
    session.delete(passkey)
    session.flush()


def passkey_authentication_options(
    session: Session, *, rp_id: str, user: User | None = None
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.get``: the user's passkeys after a password, or any
    discoverable passkey for a password-free sign-in."""
    allow = (
        [PublicKeyCredentialDescriptor(id=key.credential_id) for key in passkeys_of(session, user)]
        if user is not None
        else None
    )
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=allow,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return options_to_json(options), options.challenge


def authenticate_passkey(
    session: Session,
    credential: Mapping[str, Any] | str,
    *,
    challenge: bytes,
    rp_id: str,
    origin: str,
    now: dt.datetime,
    user: User | None = None,
) -> User:
    """The owner of a verified passkey assertion (``user``'s own passkey when given)."""
    try:
        body = dict(credential) if isinstance(credential, Mapping) else None
        raw_id = (body or {}).get("rawId")
        credential_id = base64url_to_bytes(raw_id) if isinstance(raw_id, str) else b""
    except (binascii.Error, ValueError):
        credential_id = b""
    passkey = session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise AuthError("unknown_passkey", "this passkey is not registered here")
    try:
        verified = verify_authentication_response(
            credential=body if body is not None else credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
        )
    except WebAuthnException as exc:
        raise AuthError("bad_passkey", f"the passkey was not accepted: {exc}") from None
    owner = session.get_one(User, passkey.user_id)
    _refuse_if_locked(owner, now)
    if owner.locked_at is not None:
        raise AuthError("disabled", "the account is locked by an administrator")
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = now
    _clear_failures(owner)
    session.flush()
    return owner


# -- invitations for parents and students --------------------------------------------------------


def create_invitation(
    session: Session,
    *,
    student_id: int,
    role: str,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
    lifetime: dt.timedelta = INVITATION_LIFETIME,
) -> tuple[Invitation, str]:
    """A one-time code (to print on paper) that links a new or existing account to one child."""
    if role not in ("parent", "student"):
        raise AuthError("bad_role", "an invitation is for a parent or a student")
    student = session.get(Student, student_id)
    if student is None:
        raise AuthError("unknown_student", "no such student")
    if actor is not None:
        policy.require(
            policy.can_administer_school(actor, student.school_id),
            "only the school's administrator hands out invitations",
        )
    code = _paper_code(12)
    invitation = Invitation(
        school_id=student.school_id,
        student_id=student.id,
        role=role,
        code_hash=_sha256(code),
        created_by_id=actor.id if actor else None,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(invitation)
    session.flush()
    record_access(
        session,
        actor,
        f"invitation.create.{role}",
        "student",
        student.id,
        ip,
        school_id=student.school_id,
        now=now,
    )
    return invitation, _group(code, 4)


def pending_invitations(session: Session, school_id: int, now: dt.datetime) -> list[Invitation]:
    return list(
        session.scalars(
            select(Invitation)
            .where(
                Invitation.school_id == school_id,
                Invitation.used_at.is_(None),
                Invitation.expires_at > now,
            )
            .order_by(Invitation.id.desc())
        )
    )


def redeem_invitation(
    session: Session,
    code: str,
    *,
    address: str | None,
    now: dt.datetime,
    user: User | None = None,
    username: str = "",
    full_name: str = "",
    password: str = "",
) -> User:
    """Use an invitation once: make the person's own account, or link a signed-in account to
    one more child. Wrong codes count against the address like wrong passwords; nothing else is
    written when the invitation is refused."""
    if address_is_limited(session, address, now):
        raise AuthError("address_limited", "too many failed attempts from this address")
    normalized = _normalize_paper_code(code)
    invitation = session.scalar(
        select(Invitation).where(Invitation.code_hash == _sha256(normalized))
    )
    if invitation is None or invitation.used_at is not None:
        _record_address_failure(session, address, "invitation", now)
        raise AuthError("bad_invitation", "this invitation code is unknown or used")
    if invitation.expires_at <= now:
        raise AuthError("expired_invitation", "this invitation has expired: ask the school")
    if user is None:
        name = check_username(session, username)
        full = _check_full_name(full_name)
        problem = check_new_password(password, name)
        if problem:
            raise AuthError("weak_password", problem)
    elif any(
        grant.role == invitation.role and grant.student_id == invitation.student_id
        for grant in user.roles
    ):
        raise AuthError("already_linked", "your account is linked to this child already")
    # Claim the code before writing anything else: of two people racing, one wins.
    claimed = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("bad_invitation", "this invitation code is unknown or used")
    if user is None:
        user = User(
            school_id=invitation.school_id,
            username=name,
            full_name=full,
            password_hash=hash_password(password),
            created_at=now,
        )
        session.add(user)
        session.flush()
    session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id)
        .values(used_by_id=user.id)
        .execution_options(synchronize_session=False)
    )
    if user.school_id is None:
        user.school_id = invitation.school_id
    user.roles.append(
        RoleGrant(
            role=invitation.role, school_id=invitation.school_id, student_id=invitation.student_id
        )
    )
    session.flush()
    record_access(
        session,
        user,
        f"invitation.redeem.{invitation.role}",
        "student",
        invitation.student_id,
        address,
        school_id=invitation.school_id,
        now=now,
    )
    return user


# -- password-reset links ------------------------------------------------------------------------


def issue_password_reset(
    session: Session,
    user: User,
    *,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
    action: str = "user.reset_password",
) -> str:
    """A one-time token for ``/reset/<token>``; earlier unused links stop working.

    Nobody ever sees a password: the person sets their own through the link."""
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordReset(
            user_id=user.id,
            token_hash=_sha256(token),
            created_by_id=actor.id if actor else None,
            created_at=now,
            expires_at=now + RESET_LIFETIME,
        )
    )
    session.flush()
    record_access(session, actor, action, "user", user.id, ip, school_id=user.school_id, now=now)
    return token


def find_password_reset(session: Session, token: str, now: dt.datetime) -> PasswordReset | None:
    reset = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == _sha256(token)))
    if reset is None or reset.used_at is not None or reset.expires_at <= now:
        return None
    return reset


def complete_password_reset(
    session: Session, token: str, password: str, *, ip: str | None, now: dt.datetime
) -> User:
    """Set the new password, end every session and any automatic lock."""
    reset = find_password_reset(session, token, now)
    if reset is None:
        raise AuthError("bad_reset_link", "this link is unknown, used or expired")
    user = session.get_one(User, reset.user_id)
    problem = check_new_password(password, user.username)
    if problem:
        raise AuthError("weak_password", problem)
    claimed = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("bad_reset_link", "this link is unknown, used or expired")
    user.password_hash = hash_password(password)
    user.auth_version += 1
    _clear_failures(user)
    session.flush()
    record_access(session, user, "user.password_set", "user", user.id, ip, now=now)
    return user


# -- device keys ---------------------------------------------------------------------------------


def second_factor_is_fresh(checked_at: dt.datetime | None, now: dt.datetime) -> bool:
    return checked_at is not None and dt.timedelta(0) <= now - checked_at <= FRESH_SECOND_FACTOR


def device_keys_of(session: Session, user: User) -> list[DeviceKey]:
    return list(
        session.scalars(
            select(DeviceKey).where(DeviceKey.user_id == user.id).order_by(DeviceKey.created_at)
        )
    )


def enrol_device_key(
    session: Session,
    user: User,
    *,
    alg: str,
    public_key: str,
    label: str,
    ip: str | None,
    now: dt.datetime,
    log_key: LogKey | None = None,
) -> tuple[DeviceKey, bool]:
    """Register a device's public key for the user; returns (key, created).

    ``public_key`` is base64: Ed25519 raw 32 bytes, or P-256 DER SubjectPublicKeyInfo. The same
    key sent again by its owner is the same enrolment (created False). The caller checks that the
    second factor is fresh."""
    if not policy.can_enrol_device(user):
        raise AuthError("not_allowed", "only teachers enrol device keys")
    if alg not in ledger_entry.ALGS:
        raise AuthError("bad_alg", f"alg must be one of {', '.join(ledger_entry.ALGS)}")
    if not isinstance(public_key, str) or len(public_key) > 1000:
        raise AuthError("bad_key", "public_key must be a base64 string")
    try:
        raw = base64.b64decode(public_key, validate=True)
        ledger_entry.load_public_key(alg, raw)
    except (binascii.Error, ValueError) as exc:
        raise AuthError("bad_key", f"the public key is not usable: {exc}") from None
    label = " ".join(str(label or "").split())
    if len(label) > 100:
        raise AuthError("bad_label", "a device name is at most 100 characters")
    kid = ledger_entry.key_id(alg, raw)
    existing = session.get(DeviceKey, kid)
    if existing is not None:
        if existing.user_id != user.id:
            raise AuthError("key_in_use", "this key belongs to another account")
        if existing.revoked_at is not None:
            raise AuthError("revoked_key", "this key was revoked: make a new one")
        return existing, False
    key = DeviceKey(
        kid=kid, user_id=user.id, alg=alg, public_key=raw, label=label or None, created_at=now
    )
    session.add(key)
    session.flush()
    record_access(session, user, "device_key.enrol", "device_key", kid, ip, now=now)
    record_key_event(session, key, "key_enrolled", actor=user, now=now, log_key=log_key)
    return key, True


def revoke_device_key(
    session: Session,
    key: DeviceKey,
    *,
    actor: User,
    ip: str | None,
    now: dt.datetime,
    log_key: LogKey | None = None,
) -> None:
    """From now on entries signed by this key are quarantined; earlier ones keep verifying."""
    policy.require(policy.can_revoke_device(actor, key), "not your device")
    if key.revoked_at is not None:
        return
    key.revoked_at = now
    session.flush()
    owner = session.get_one(User, key.user_id)
    record_access(
        session,
        actor,
        "device_key.revoke",
        "device_key",
        key.kid,
        ip,
        school_id=owner.school_id,
        now=now,
    )
    record_key_event(session, key, "key_revoked", actor=actor, now=now, log_key=log_key)


def record_key_event(
    session: Session,
    key: DeviceKey,
    kind: str,
    *,
    actor: User | None,
    now: dt.datetime,
    log_key: LogKey | None,
) -> int | None:
    """Append a server-signed ``key_enrolled``/``key_revoked`` record to the school ledger log.

    Returns its seq, or None when the owner has no school or the school's log key is not at
    hand (the event is then only in the access log)."""
    from journal.services import append_ledger_record

    owner = session.get_one(User, key.user_id)
    school = session.get(School, owner.school_id) if owner.school_id is not None else None
    if school is None or log_key is None or log_key.vkey != school.log_vkey:
        return None
    fields = {
        "key": {
            "kid": key.kid,
            "alg": key.alg,
            "public_key": base64.b64encode(key.public_key).decode(),
            "user": key.user_id,
        },
        "by": actor.id if actor is not None else None,
    }
    return append_ledger_record(session, school, log_key, kind, fields, now=now).seq


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
) -> None:
    """Append who did what to which record, when and from where (append-only table).

    ``actor`` None is a command run on the server. The row belongs to ``school_id``, else to
    the target's school, else to the actor's."""
    if school_id is None:
        school_id = school_of(session, target_type, target_id)
    if school_id is None and actor is not None:
        school_id = actor.school_id
    # A plain INSERT, not an ORM object: every personal-data page writes one, and nothing
    # reads it back in the same request.
    session.execute(
        insert(AccessLogEntry).values(
            at=now or utcnow(),
            school_id=school_id,
            actor_id=actor.id if actor is not None else None,
            action=action[:80],
            target_type=target_type[:40],
            target_id=None if target_id is None else str(target_id)[:80],
            ip=ip[:45] if ip else None,
        )
    )


def access_log_page(
    session: Session, school_id: int, *, before_id: int | None = None, limit: int = 100
) -> list[AccessLogEntry]:
    query = select(AccessLogEntry).where(AccessLogEntry.school_id == school_id)
    if before_id is not None:
        query = query.where(AccessLogEntry.id < before_id)
    return list(session.scalars(query.order_by(AccessLogEntry.id.desc()).limit(limit)))


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


# -- demo accounts -------------------------------------------------------------------------------


def demo_totp_secret(username: str) -> str:
    """A fixed TOTP secret per demo account, so `flask demo logins` can print it (demo only)."""
    digest = hashlib.sha256(b"class-journal demo totp\n" + username.encode()).digest()
    return base64.b32encode(digest[:20]).decode()


def enrol_demo_totp(user: User, now: dt.datetime | None = None) -> None:
    """Give a demo staff account its fixed TOTP secret (others are left alone)."""
    if any(grant.role in STAFF_ROLES for grant in user.roles):
        user.totp_secret = demo_totp_secret(user.username)
        user.totp_confirmed_at = now or utcnow()


def demo_second_factor_hint(username: str, role: str, now: dt.datetime | None = None) -> str:
    """What `flask demo logins` prints after a staff login: the TOTP key and the code now."""
    if role not in STAFF_ROLES:
        return ""
    secret = demo_totp_secret(username)
    code = current_totp_code(secret, now or utcnow())
    return f"TOTP key {secret} (code now {code}; any authenticator app, or `oathtool --totp -b`)"
