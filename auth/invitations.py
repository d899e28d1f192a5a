"""Invitations: one-time codes on paper that let a parent or a student make their own account,
linked to one child (or link one more child to a signed-in account).

Every function takes the session first, flushes, and never commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from journal.models import Student

from . import policy
from .models import Invitation, RoleGrant, User
from .passwords import check_new_password, hash_password
from .services import (
    AuthError,
    check_full_name,
    check_username,
    group_code,
    normalize_paper_code,
    paper_code,
    record_access,
    sha256_text,
)
from .signin import Throttled, code_wait, record_failure

INVITATION_LIFETIME = dt.timedelta(days=30)
# The throttle's key for wrong invitation codes (never a username: those have no '#').
CODE_KIND = "#invitation"


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
    code = paper_code(12)
    invitation = Invitation(
        school_id=student.school_id,
        student_id=student.id,
        role=role,
        code_hash=sha256_text(code),
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
    return invitation, group_code(code, 4)


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
    wait = code_wait(session, CODE_KIND, address, now)
    if wait:
        raise Throttled(wait)
    normalized = normalize_paper_code(code)
    invitation = session.scalar(
        select(Invitation).where(Invitation.code_hash == sha256_text(normalized))
    )
    if invitation is None or invitation.used_at is not None:
        record_failure(session, username=CODE_KIND, address=address, device=None, now=now)
        raise AuthError("bad_invitation", "this invitation code is unknown or used")
    if invitation.expires_at <= now:
        raise AuthError("expired_invitation", "this invitation has expired: ask the school")
    if user is None:
        name = check_username(session, username)
        full = check_full_name(full_name)
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
