"""People and their keys: one account per person, device keys that sign entries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Dialect,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from journal.db import Base, UTCDateTime, bigpk, intpk, str200, timestamp, utcnow

from .iin import open_secret, seal_secret

ROLES = (
    "teacher",
    "class_teacher",
    "school_admin",
    "parent",
    "student",
    "registrar",
    "inspector",
    "operator",
)
STAFF_ROLES = frozenset(ROLES) - {"parent", "student"}


class SealedSecret(TypeDecorator[str]):
    """A short secret a person relies on (a TOTP seed), sealed with AES-256-GCM under a key
    derived from JOURNAL_IIN_ENCRYPTION_KEY: a copy of the database alone gives no second
    factor away. Code reads and writes the plain secret."""

    impl = String(128)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return seal_secret(value, current_app.config["IIN_ENCRYPTION_KEY"])

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return open_secret(value, current_app.config["IIN_ENCRYPTION_KEY"])


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    full_name: Mapped[str200]
    password_hash: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    # TOTP (RFC 6238): the base32 secret, when it was confirmed, and the last time step used
    # (a code is accepted only for a later step, so a seen code cannot be replayed).
    totp_secret: Mapped[str | None] = mapped_column(SealedSecret())
    totp_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Wrong second-factor codes in a row (only someone who knew the password makes them);
    # locked_until grows with each one past the threshold. Wrong passwords are throttled
    # separately (``LoginFailure``). locked_at is an administrator's lock that only an unlock
    # ends.
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    last_failed_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    locked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The WebAuthn user handle: random, so it reveals nothing about the person.
    webauthn_user_handle: Mapped[bytes | None] = mapped_column(
        LargeBinary(64), unique=True, index=True
    )

    roles: Mapped[list[RoleGrant]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    def has_role(self, role: str) -> bool:
        return any(grant.role == role for grant in self.roles)


class RoleGrant(Base):
    """A role held by a user, scoped to a school (and for parents, to one child)."""

    __tablename__ = "role_grants"
    __table_args__ = (
        UniqueConstraint("user_id", "role", "school_id", "student_id"),
        CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="role"),
    )

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"))
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"))

    user: Mapped[User] = relationship(back_populates="roles")


class DeviceKey(Base):
    """A device's public key. Never deleted: a revoked key keeps verifying the entries it signed
    before revocation; entries it signs after are quarantined."""

    __tablename__ = "device_keys"
    __table_args__ = (CheckConstraint("alg IN ('ed25519', 'ecdsa-p256')", name="alg"),)

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # When the server last took an entry this key signed (accepted, or sent again): shown as
    # "last used", so that a person can tell a device in daily use from a forgotten one.
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The latest reset of the owner's account before this key was enrolled: shown beside the
    # key, so that a key someone enrolled right after taking an account over stands out.
    after_reset_id: Mapped[int | None] = mapped_column(ForeignKey("account_resets.id"))
    # What the key's device_seq numbers say, kept as entries are stored (journal.device_seqs):
    # {"upto": highest seq folded in, "missing": [[first, last], ...], "reused": [seq, ...]}.
    # None until the key's first entries are folded in.
    seq_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    user: Mapped[User] = relationship()
    after_reset: Mapped[AccountReset | None] = relationship()

    def revoked_by(self, moment: dt.datetime) -> bool:
        return self.revoked_at is not None and self.revoked_at <= moment


# -- second factor ------------------------------------------------------------------------------


class RecoveryCode(Base):
    """A one-time code that stands in for the second factor; only its SHA-256 is stored."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Passkey(Base):
    """A WebAuthn credential: a second factor for staff, a password-free sign-in for parents."""

    __tablename__ = "passkeys"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


# -- accounts made by one-time secrets -----------------------------------------------------------


class Invitation(Base):
    """A one-time code on paper that lets a parent or a student make their own account, linked
    to one child. Only the code's SHA-256 is stored."""

    __tablename__ = "invitations"
    __table_args__ = (CheckConstraint("role IN ('parent', 'student')", name="role"),)

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    expires_at: Mapped[timestamp]
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class PasswordReset(Base):
    """A one-time code, printed on a letter to the person, to set their password (a new
    account's welcome letter, or an approved reset). Only hashes are stored: of the code, and of
    the value the first browser that used it keeps in its session (``claim_hash``), so that the
    code never needs to stay in a URL."""

    __tablename__ = "password_resets"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    claim_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    account_reset_id: Mapped[int | None] = mapped_column(ForeignKey("account_resets.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    expires_at: Mapped[timestamp]
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AccountReset(Base):
    """An administrator's reset of someone's password or second factor: asked for by one
    person with admin rights, approved by a second (or by the operator's command), applied at
    approval (sessions end, device keys are revoked), shown to the person at their next
    sign-in. Requested, approved and cancelled rows are all kept."""

    __tablename__ = "account_resets"
    __table_args__ = (
        CheckConstraint("kind IN ('password', 'second_factor', 'both')", name="kind"),
    )

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500))
    # NULL: the operator's command on the server.
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    letter_printed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    letter_printed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # When the person was shown, at sign-in, who reset the account and when.
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])

    @property
    def resets_password(self) -> bool:
        return self.kind in ("password", "both")

    @property
    def resets_second_factor(self) -> bool:
        return self.kind in ("second_factor", "both")


class UserSession(Base):
    """A signed-in session, kept on the server: the cookie holds only a random id whose
    SHA-256 is ``token_hash``. Logout, "sign out everywhere", a reset, a lock or a change of
    roles end it at once by setting ``ended_at``."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_id_ended_at", "user_id", "ended_at"),)

    id: Mapped[bigpk]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[timestamp]
    # When the second factor was last passed in this session (NULL: not yet).
    second_factor_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(20))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    # An authenticator secret shown for enrolment and not yet confirmed: kept here, sealed,
    # never in the cookie.
    totp_pending: Mapped[str | None] = mapped_column(SealedSecret())

    user: Mapped[User] = relationship()


# -- login protection and the access log ---------------------------------------------------------


class LoginFailure(Base):
    """A failed sign-in (or a wrong one-time code): counted by the throttles in
    ``auth.signin``, pruned once older than their window. ``username`` is what was typed (so an
    unknown name is throttled like a real one) or the kind of code; ``device`` the id of a
    known-device cookie that came with it."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_address_at", "address", "at"),
        Index("ix_login_failures_username_at", "username", "at"),
    )

    id: Mapped[bigpk]
    address: Mapped[str | None] = mapped_column(String(45))
    username: Mapped[str] = mapped_column(String(100))
    device: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[timestamp]


class AccessLogEntry(Base):
    """Who saw a student's personal data or took an administrative action, when, from where.

    Append-only: database triggers refuse UPDATE and DELETE (migration ``0004auth``)."""

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_school_at", "school_id", "at"),
        # "Who looked at this pupil": the filter of the admin's page.
        Index("ix_access_log_target", "target_type", "target_id"),
        # The public check page's rate limit counts one address's uploads in the last minute;
        # partial, so the grids' and pupils' rows (nearly all of them) pay nothing for it.
        Index(
            "ix_access_log_check_ip",
            "ip",
            "at",
            postgresql_where=text("action = 'check.upload'"),
            sqlite_where=text("action = 'check.upload'"),
        ),
    )

    id: Mapped[bigpk]
    at: Mapped[timestamp]
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(80))
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(80))
    ip: Mapped[str | None] = mapped_column(String(45))
    # The browser's User-Agent (cut to 200 characters): "from which device", shown parsed.
    user_agent: Mapped[str | None] = mapped_column(String(200))
    # What else the request named, as compact JSON (a grid's subject and term): read by
    # ``auth.access_log`` to say what was opened in words.
    detail: Mapped[str | None] = mapped_column(String(200))

    actor: Mapped[User | None] = relationship()
