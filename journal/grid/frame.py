"""The grid's frame in one statement: the class, subject and term, the log's size and last leaf,
whether the user is assigned, the school's time zone, the assessment plan, and a text "shape"
of the lessons and pupils that changes whenever any of them does.

Together they say whether a rendered copy of the page is still current without reading the
lessons, the pupils or any entry: a grid opened again costs this one query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, cast, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from auth import policy

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


def _text(value: ColumnElement[Any]) -> ColumnElement[str]:
    """A value as text, NULL as "-"."""
    return func.coalesce(cast(value, String), literal("-"))


def _name(value: ColumnElement[Any]) -> ColumnElement[str]:
    """A name prefixed by its length: no name can pass for two."""
    return cast(func.length(func.coalesce(value, "")), String) + ":" + func.coalesce(value, "")


LESSONS_SHAPE = (
    select(
        ordered_concat(
            _text(Lesson.id) + "," + _text(Lesson.date) + "," + _text(Lesson.period), Lesson.id
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
            + ","
            + _text(Enrollment.student_id)
            + ","
            + _text(Enrollment.starts_on)
            + ","
            + _text(Enrollment.ends_on)
            + ","
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


# Built once: the grid is opened far more often than anything else, and building a statement
# costs about as much as running it.
GRID_FRAME = (
    select(
        ClassGroup,
        Subject,
        Term,
        Log,
        Log.size,
        select(Entry.leaf_hash)
        .where(Entry.log_id == Log.id, Entry.seq == Log.size - 1)
        .scalar_subquery()
        .label("last_leaf"),
        policy.assignment_exists(
            bindparam("user_id"), bindparam("class_id"), bindparam("subject_id")
        ).label("assigned"),
        School.time_zone,
        _plan(AssessmentPlan.soch_planned).label("soch_planned"),
        _plan(AssessmentPlan.sor_count).label("sor_count"),
        LESSONS_SHAPE.label("lessons_shape"),
        PUPILS_SHAPE.label("pupils_shape"),
    )
    .select_from(ClassGroup)
    .join(School, School.id == ClassGroup.school_id)
    .join(Subject, Subject.id == bindparam("subject_id"))
    .join(Term, Term.id == bindparam("term_id"))
    .outerjoin(Log, Log.class_group_id == ClassGroup.id)
    .where(ClassGroup.id == bindparam("class_id"))
)
