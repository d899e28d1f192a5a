"""People and their keys: one account per person, device keys that sign entries."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from journal.db import Base, UTCDateTime, intpk, str200, timestamp, utcnow

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


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    full_name: Mapped[str200]
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # Bumped on password reset, lock and second-factor reset: signs out every session.
    auth_version: Mapped[int] = mapped_column(default=1, server_default="1")
    language: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)

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

    user: Mapped[User] = relationship()

    def revoked_by(self, moment: dt.datetime) -> bool:
        return self.revoked_at is not None and self.revoked_at <= moment
