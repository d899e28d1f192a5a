"""The grid's frame in one statement: the class, subject and term, the log's size and last leaf,
whether the user is assigned, the school's time zone, the assessment plan, and a text "shape"
of the lessons and pupils that changes whenever any of them does.

Together they say whether a rendered copy of the page is still current without reading the
lessons, the pupils or any entry: a grid opened again costs this one query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, cast, func, join, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from auth import policy, sessions
from auth.models import UserSession

from ..models import (
    AssessmentPlan,
    ClassGroup,
    Enrollment,
    Entry,
    Lesson,
    Log,
    School,
    Student,
    Subject,
    Term,
)


class ordered_concat(FunctionElement[str]):  # noqa: N801 (an SQL function's name)
    """``ordered_concat(value, order)``: the values of a group's rows joined by "|" in
    ``order``. PostgreSQL orders inside the aggregate; SQLite joins in the order its rows come,
    which is the same for the same rows (a different order only costs a cache miss)."""

    type = String()
    inherit_cache = True
    name = "ordered_concat"


@compiles(ordered_concat, "postgresql")
def _ordered_concat_postgresql(element: ordered_concat, compiler: Any, **kw: Any) -> str:
    value, order = element.clauses
    return (
        f"string_agg({compiler.process(value, **kw)}, '|' ORDER BY {compiler.process(order, **kw)})"
    )


@compiles(ordered_concat)
def _ordered_concat_default(element: ordered_concat, compiler: Any, **kw: Any) -> str:
    value, _order = element.clauses
    return f"group_concat({compiler.process(value, **kw)}, '|')"


# The shapes' fixed characters written into the SQL, not sent as parameters: two dozen bound
# constants cost every execution their conversion, and made the statement read with the session
# longer than the 4 KiB up to which psycopg keeps a statement's conversion.
_DASH = literal_column("'-'", String)
_COMMA = literal_column("','", String)
_COLON = literal_column("':'", String)
_EMPTY = literal_column("''", String)


def _text(value: ColumnElement[Any]) -> ColumnElement[str]:
    """A value as text, NULL as "-"."""
    return func.coalesce(cast(value, String), _DASH)


def _name(value: ColumnElement[Any]) -> ColumnElement[str]:
    """A name prefixed by its length: no name can pass for two."""
    return (
        cast(func.length(func.coalesce(value, _EMPTY)), String)
        + _COLON
        + func.coalesce(value, _EMPTY)
    )


LESSONS_SHAPE = (
    select(
        ordered_concat(
            _text(Lesson.id) + _COMMA + _text(Lesson.date) + _COMMA + _text(Lesson.period),
            Lesson.id,
        )
    )
    .where(
        Lesson.class_group_id == ClassGroup.id,
        Lesson.subject_id == Subject.id,
        Lesson.date >= Term.starts_on,
        Lesson.date <= Term.ends_on,
    )
    .scalar_subquery()
)
PUPILS_SHAPE = (
    select(
        ordered_concat(
            _text(Enrollment.id)
            + _COMMA
            + _text(Enrollment.student_id)
            + _COMMA
            + _text(Enrollment.starts_on)
            + _COMMA
            + _text(Enrollment.ends_on)
            + _COMMA
            + _name(Student.last_name)
            + _name(Student.first_name)
            + _name(Student.patronymic),
            Enrollment.id,
        )
    )
    .join(Student, Student.id == Enrollment.student_id)
    .where(
        Enrollment.class_group_id == ClassGroup.id,
        Enrollment.starts_on <= Term.ends_on,
        (Enrollment.ends_on.is_(None)) | (Enrollment.ends_on >= Term.starts_on),
    )
    .scalar_subquery()
)


def _plan(column: Any) -> Any:
    return (
        select(column)
        .where(
            AssessmentPlan.class_group_id == ClassGroup.id,
            AssessmentPlan.subject_id == Subject.id,
            AssessmentPlan.term_id == Term.id,
        )
        .scalar_subquery()
    )


def _frame_columns(user_id: Any) -> tuple[Any, ...]:
    """The frame's columns, for the user ``user_id`` (a bind parameter or a column)."""
    return (
        ClassGroup,
        Subject,
        Term,
        Log,
        Log.size,
        select(Entry.leaf_hash)
        .where(Entry.log_id == Log.id, Entry.seq == Log.size - 1)
        .scalar_subquery()
        .label("last_leaf"),
        policy.assignment_exists(user_id, bindparam("class_id"), bindparam("subject_id")).label(
            "assigned"
        ),
        School.time_zone,
        _plan(AssessmentPlan.soch_planned).label("soch_planned"),
        _plan(AssessmentPlan.sor_count).label("sor_count"),
        LESSONS_SHAPE.label("lessons_shape"),
        PUPILS_SHAPE.label("pupils_shape"),
    )


# The class, its school, the subject, the term and the log (if any): no row when any of the
# first four is missing.
_FRAME_FROM = (
    join(ClassGroup.__table__, School.__table__, School.id == ClassGroup.school_id)
    .join(Subject.__table__, Subject.id == bindparam("subject_id"))
    .join(Term.__table__, Term.id == bindparam("term_id"))
    .outerjoin(Log.__table__, Log.class_group_id == ClassGroup.id)
)

# Built once: the grid is opened far more often than anything else, and building a statement
# costs about as much as running it.
GRID_FRAME = (
    select(*_frame_columns(bindparam("user_id")))
    .select_from(_FRAME_FROM)
    .where(ClassGroup.id == bindparam("class_id"))
)

# The same frame read with the request's session look-up, in one statement (one round trip and
# one statement's client work less a page): the session's row, its user and roles, then the
# frame's columns as in ``GRID_FRAME`` (all NULL when there is no such grid), for the session's
# own user. ``auth.access.with_session_lookup`` runs it; the session is checked as always.
GRID_FRAME_WITH_SESSION = sessions.FIND_SESSION.add_columns(
    *_frame_columns(UserSession.user_id)
).outerjoin(_FRAME_FROM, ClassGroup.id == bindparam("class_id"))
