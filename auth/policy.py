"""Who may read or write which data: the answers services ask before they act.

Roles come from ``RoleGrant`` rows, each scoped to a school (``school_id`` NULL: every school,
for an inspector or operator who serves a region) and, for parents and students, to one child.
The relations that give a teacher scope are data: ``TeachingAssignment`` (teacher × class ×
subject) and ``ClassGroup.class_teacher_id``. A role without its relation gives nothing, and a
relation without its role gives nothing either (a teacher who leaves keeps old assignment rows).

Nobody edits or deletes an entry: there is no function here that could allow it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, object_session

from journal.models import ClassGroup, Enrollment, Student, Subject, TeachingAssignment

from .models import STAFF_ROLES, DeviceKey, User

# Live grades and attendance of every class. Inspectors verify journals and packages and
# registrars work from the archive (DESIGN §2): neither reads the live journal.
READ_WHOLE_SCHOOL = ("school_admin",)
TEACHING_ROLES = ("teacher", "class_teacher")


class Forbidden(Exception):
    """The user may not do this; views answer 403."""


def require(allowed: bool, message: str = "not allowed") -> None:
    if not allowed:
        raise Forbidden(message)


def _session(user: User) -> Session:
    session = object_session(user)
    if session is None:
        from journal.db import db

        return db.session
    return session


def _id(value: object) -> int:
    return value if isinstance(value, int) else int(value.id)  # type: ignore[attr-defined]


def holds(user: User | None, role: str, school_id: int | None) -> bool:
    """The user holds ``role`` in this school (or in every school)."""
    if user is None:
        return False
    return any(
        grant.role == role and (grant.school_id is None or grant.school_id == school_id)
        for grant in user.roles
    )


def holds_any(user: User | None, roles: tuple[str, ...], school_id: int | None) -> bool:
    return any(holds(user, role, school_id) for role in roles)


def children_of(user: User | None) -> list[int]:
    """The students a parent or student account is linked to: their own children, or self."""
    if user is None:
        return []
    return sorted(
        {
            grant.student_id
            for grant in user.roles
            if grant.role in ("parent", "student") and grant.student_id is not None
        }
    )


def assignment_exists(user_id: Any, class_id: Any, subject_id: Any) -> Any:
    """SQL that is true when the user is assigned to teach the subject in the class (each an
    id or a bind parameter): a query that loads the class anyway takes it as a column and
    passes it to ``can_write_journal`` as ``assigned``."""
    return exists().where(
        TeachingAssignment.user_id == user_id,
        TeachingAssignment.class_group_id == class_id,
        TeachingAssignment.subject_id == subject_id,
    )


def is_assigned(user: User, class_group: ClassGroup | int, subject: Subject | int) -> bool:
    session = _session(user)
    assigned = assignment_exists(user.id, _id(class_group), _id(subject))
    return bool(session.scalar(select(assigned)))


def _class(user: User, class_group: ClassGroup | int) -> ClassGroup | None:
    if isinstance(class_group, ClassGroup):
        return class_group
    return _session(user).get(ClassGroup, class_group)


# -- the journal ---------------------------------------------------------------------------------


def can_write_journal(
    user: User | None,
    class_group: ClassGroup | int,
    subject: Subject | int,
    *,
    assigned: bool | None = None,
) -> bool:
    """A teacher writes only for an assigned class × subject; nobody else writes entries.
    ``assigned``: the value of ``assignment_exists`` already read with the class, if it was."""
    if user is None:
        return False
    group = _class(user, class_group)
    if group is None or not holds_any(user, TEACHING_ROLES, group.school_id):
        return False
    return is_assigned(user, group, subject) if assigned is None else assigned


def can_read_class(user: User | None, class_group: ClassGroup | int) -> bool:
    """The whole class across subjects: its class teacher and the school's admin."""
    if user is None:
        return False
    group = _class(user, class_group)
    if group is None:
        return False
    if holds_any(user, READ_WHOLE_SCHOOL, group.school_id):
        return True
    return group.class_teacher_id == user.id and holds_any(user, TEACHING_ROLES, group.school_id)


def can_read_class_subject(
    user: User | None, class_group: ClassGroup | int, subject: Subject | int
) -> bool:
    """One subject's pages of a class: whoever reads the whole class, and its assigned teacher."""
    if user is None:
        return False
    return can_read_class(user, class_group) or can_write_journal(user, class_group, subject)


def can_read_student(user: User | None, student_id: int) -> bool:
    """A student's grades and attendance: the parent or the student, the school's admin, the
    class teacher of a class the student is or was in, and the student's teachers."""
    if user is None:
        return False
    if student_id in children_of(user):
        return True
    if not any(grant.role in STAFF_ROLES for grant in user.roles):
        return False
    session = _session(user)
    student = session.get(Student, student_id)
    if student is None:
        return False
    if holds_any(user, READ_WHOLE_SCHOOL, student.school_id):
        return True
    if not holds_any(user, TEACHING_ROLES, student.school_id):
        return False
    classes = select(Enrollment.class_group_id).where(Enrollment.student_id == student_id)
    as_class_teacher = select(
        exists().where(ClassGroup.id.in_(classes), ClassGroup.class_teacher_id == user.id)
    )
    as_teacher = select(
        exists().where(
            TeachingAssignment.class_group_id.in_(classes), TeachingAssignment.user_id == user.id
        )
    )
    return bool(session.scalar(as_class_teacher)) or bool(session.scalar(as_teacher))


def readable_students(user: User | None, student_ids: list[int]) -> list[int]:
    """The subset of ``student_ids`` the user may read (for lists and API filters)."""
    return [student_id for student_id in student_ids if can_read_student(user, student_id)]


# -- administration ------------------------------------------------------------------------------


def can_administer_school(user: User | None, school_id: int | None) -> bool:
    """Set up the school, manage its accounts, hand out invitations, read its access log."""
    return school_id is not None and holds(user, "school_admin", school_id)


def can_manage_user(actor: User | None, target: User) -> bool:
    """Reset, lock or unlock someone's account: the admin of the target's school, never oneself
    (an admin who locks themselves out needs another admin or the operator's command)."""
    if actor is None or actor.id == target.id:
        return False
    return can_administer_school(actor, target.school_id)


def can_read_access_log(user: User | None, school_id: int | None) -> bool:
    return can_administer_school(user, school_id)


# -- the archive ---------------------------------------------------------------------------------


def registrar_schools(user: User | None) -> set[int] | None:
    """The schools whose archived ledgers the user searches and issues extracts from, as a
    registrar: the schools of their registrar grants. None means every school (a grant without
    a school: a registrar who serves a region, and schools no longer on this server)."""
    if user is None:
        return set()
    grants = [grant for grant in user.roles if grant.role == "registrar"]
    if any(grant.school_id is None for grant in grants):
        return None
    return {grant.school_id for grant in grants if grant.school_id is not None}


def can_issue_extract(user: User | None, school_id: int) -> bool:
    """A duplicate-certificate extract from one school's archive: that school's registrar."""
    return holds(user, "registrar", school_id)


# -- device keys ---------------------------------------------------------------------------------


def can_enrol_device(user: User | None) -> bool:
    """Only people who write the journal sign entries with a device key."""
    return user is not None and any(grant.role in TEACHING_ROLES for grant in user.roles)


def can_revoke_device(user: User | None, key: DeviceKey) -> bool:
    """The key's owner (a lost phone), or the admin of the owner's school."""
    if user is None:
        return False
    if key.user_id == user.id:
        return True
    owner = _session(user).get(User, key.user_id)
    return owner is not None and can_administer_school(user, owner.school_id)


def can_read_class_grids(user: User | None, class_group: ClassGroup | int) -> bool:
    """Every subject's grid of a class, read-only, and its class summary: the class teacher
    (who prepares the summary ledger) and the school's admin."""
    if user is None:
        return False
    group = _class(user, class_group)
    if group is None:
        return False
    if holds(user, "school_admin", group.school_id):
        return True
    return group.class_teacher_id == user.id and holds_any(user, TEACHING_ROLES, group.school_id)
