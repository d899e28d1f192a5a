"""Second factors: authenticator apps (TOTP, RFC 6238) with one-time recovery codes, and
passkeys (WebAuthn), which are also a password-free sign-in for parents and students.

Every function takes the session first, flushes, and never commits.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any

import pyotp
import segno
from sqlalchemy import delete, exists, func, or_, select, update
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

from .models import Passkey, RecoveryCode, User
from .services import AuthError, group_code, paper_code, sha256_text
from .signin import (
    clear_code_failures,
    needs_second_factor,
    refuse_if_locked,
    register_code_failure,
)

RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "Class journal"
TOTP_STEP_SECONDS = 30
# Device keys may be enrolled, and recovery codes renewed, only this soon after a second-factor
# check.
FRESH_SECOND_FACTOR = dt.timedelta(minutes=5)


def second_factor_is_fresh(checked_at: dt.datetime | None, now: dt.datetime) -> bool:
    return checked_at is not None and dt.timedelta(0) <= now - checked_at <= FRESH_SECOND_FACTOR


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
    return sha256_text(re.sub(r"[^a-z0-9]", "", code.lower()))


def replace_recovery_codes(session: Session, user: User, *, now: dt.datetime) -> list[str]:
    """Ten new one-time codes, shown once; earlier codes stop working."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [group_code(paper_code(10).lower(), 5) for _ in range(RECOVERY_CODE_COUNT)]
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
    refuse_if_locked(user, now)
    try:
        if _use_totp(session, user, code, now):
            method = "totp"
        elif _use_recovery_code(session, user, code, now):
            method = "recovery_code"
        else:
            raise AuthError("bad_code", "wrong code")
    except AuthError:
        if register_code_failure(session, user, now) is not None:
            refuse_if_locked(user, now)
        raise
    clear_code_failures(user)
    session.flush()
    return method


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
    refuse_if_locked(owner, now)
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = now
    clear_code_failures(owner)
    session.flush()
    return owner
