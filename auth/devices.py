"""Device keys: each device that writes the journal signs entries with its own key, registered
here and never deleted (a revoked key keeps verifying what it signed before). Enrolments and
revocations are also signed records in the school ledger log.

Every function takes the session first, flushes, and never commits.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from journal.keys import LogKey
from journal.ledger import entry as ledger_entry
from journal.models import School

from . import policy
from .models import AccountReset, DeviceKey, User
from .services import AuthError, record_access


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
    label = clean_label(label)
    kid = ledger_entry.key_id(alg, raw)
    existing = session.get(DeviceKey, kid)
    if existing is not None:
        if existing.user_id != user.id:
            raise AuthError("key_in_use", "this key belongs to another account")
        if existing.revoked_at is not None:
            raise AuthError("revoked_key", "this key was revoked: make a new one")
        return existing, False
    after_reset = latest_applied_reset(session, user)
    key = DeviceKey(
        kid=kid,
        user_id=user.id,
        alg=alg,
        public_key=raw,
        label=label or None,
        created_at=now,
        after_reset_id=after_reset.id if after_reset is not None else None,
    )
    session.add(key)
    session.flush()
    action = "device_key.enrol" if after_reset is None else "device_key.enrol.after_reset"
    record_access(session, user, action, "device_key", kid, ip, now=now)
    extra = {} if after_reset is None else {"after_reset": _reset_reference(after_reset)}
    record_key_event(
        session, key, "key_enrolled", actor=user, now=now, log_key=log_key, extra=extra
    )
    return key, True


def clean_label(label: object) -> str:
    """A device's name as stored: spaces collapsed, at most 100 characters ("bad_label")."""
    text = " ".join(str(label or "").split())
    if len(text) > 100:
        raise AuthError("bad_label", "a device name is at most 100 characters")
    return text


def rename_device_key(
    session: Session,
    key: DeviceKey,
    label: object,
    *,
    actor: User,
    ip: str | None,
    now: dt.datetime,
) -> None:
    """The owner names the device (so that they can tell it from their others)."""
    policy.require(key.user_id == actor.id, "not your device")
    text = clean_label(label)
    if not text:
        raise AuthError("empty_label", "a device needs a name")
    if text == key.label:
        return
    key.label = text
    session.flush()
    record_access(session, actor, "device_key.rename", "device_key", key.kid, ip, now=now)


def mark_devices_seen(session: Session, kids: set[str], now: dt.datetime) -> None:
    """The server took entries signed by these keys just now (accepted, or sent again): their
    "last used" moves to ``now``. One UPDATE per batch, whatever its size."""
    if not kids:
        return
    session.execute(
        update(DeviceKey)
        .where(
            DeviceKey.kid.in_(sorted(kids)),
            or_(DeviceKey.last_seen_at.is_(None), DeviceKey.last_seen_at < now),
        )
        .values(last_seen_at=now)
    )


def revoke_device_key(
    session: Session,
    key: DeviceKey,
    *,
    actor: User | None,
    ip: str | None,
    now: dt.datetime,
    log_key: LogKey | None = None,
    reset: AccountReset | None = None,
) -> None:
    """From now on entries signed by this key are quarantined; earlier ones keep verifying.

    ``reset``: the approved account reset that revokes it (``actor`` then approved it, or is
    None for the operator's command)."""
    if reset is None:
        policy.require(policy.can_revoke_device(actor, key), "not your device")
    if key.revoked_at is not None:
        return
    key.revoked_at = now
    session.flush()
    owner = session.get_one(User, key.user_id)
    record_access(
        session,
        actor,
        "device_key.revoke" if reset is None else "device_key.revoke.reset",
        "device_key",
        key.kid,
        ip,
        school_id=owner.school_id,
        now=now,
    )
    extra = {} if reset is None else {"after_reset": _reset_reference(reset)}
    record_key_event(
        session, key, "key_revoked", actor=actor, now=now, log_key=log_key, extra=extra
    )


def record_key_event(
    session: Session,
    key: DeviceKey,
    kind: str,
    *,
    actor: User | None,
    now: dt.datetime,
    log_key: LogKey | None,
    extra: Mapping[str, Any] | None = None,
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
        **(extra or {}),
    }
    return append_ledger_record(session, school, log_key, kind, fields, now=now).seq


def latest_applied_reset(session: Session, user: User) -> AccountReset | None:
    """The account's most recent approved reset, if it ever had one."""
    return session.scalar(
        select(AccountReset)
        .where(AccountReset.user_id == user.id, AccountReset.approved_at.is_not(None))
        .order_by(AccountReset.approved_at.desc(), AccountReset.id.desc())
        .limit(1)
    )


def _reset_reference(reset: AccountReset) -> dict[str, Any]:
    """How a key event in the ledger names the reset it follows (DESIGN §5: ledger records)."""
    assert reset.approved_at is not None
    return {
        "id": reset.id,
        "approved_at": reset.approved_at.isoformat().replace("+00:00", "Z"),
        "requested_by": reset.requested_by_id,
        "approved_by": reset.approved_by_id,
    }
