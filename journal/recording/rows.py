"""The statements a recorder runs, built once (building one and its cache key cost more than
running it), and the COPY that writes a batch's rows. Plain rows are read through Core tables:
SQLAlchemy's ORM handling of a statement naming mapped attributes costs about twice its round
trip, even when it returns no objects."""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from sqlalchemy import (
    Exists,
    Select,
    and_,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from auth.models import DeviceKey

from ..db import (
    among,
    lock_wait_condition,
    note_write,
    text_array,
)
from ..models import (
    ClassGroup,
    Enrollment,
    Entry,
    Lesson,
    Log,
    School,
    Student,
    Subject,
    Supersession,
    TeachingAssignment,
    Term,
)

# The statements every sync batch runs are built once: building one (and its cache key) cost
# more than running it.
JOURNAL_ROWS = (
    select(Log, ClassGroup, School, Term)
    .outerjoin(ClassGroup, ClassGroup.id == Log.class_group_id)
    .outerjoin(School, School.id == ClassGroup.school_id)
    .outerjoin(Term, Term.school_year_id == ClassGroup.school_year_id)
    .where(Log.origin == bindparam("origin"), Log.kind == "journal")
)
# JOURNAL_ROWS that also does what ``reserve`` does, in the same round trip (a sync batch on
# PostgreSQL): it locks the log's row as the UPDATE would (FOR NO KEY UPDATE, with the same
# lock_timeout) and reads its size as committed when the lock is granted (the locked row is
# read afresh after a wait; the ORM's Log may be an older copy, so the column comes apart).
LOCKED_JOURNAL_ROWS = (
    JOURNAL_ROWS.add_columns(Log.size.label("locked_size"))
    .where(lock_wait_condition(True))
    .with_for_update(of=Log, key_share=True)
)


@functools.cache
def lesson_rows(postgres: bool) -> Select[tuple[Lesson, Subject, int]]:
    """The lessons ``:lessons`` with their subjects, and which of the ``:authors`` teach each
    (``among``'s parameters)."""
    return (
        select(Lesson, Subject, TeachingAssignment.user_id)
        .outerjoin(Subject, Subject.id == Lesson.subject_id)
        .outerjoin(
            TeachingAssignment,
            and_(
                TeachingAssignment.class_group_id == Lesson.class_group_id,
                TeachingAssignment.subject_id == Lesson.subject_id,
                among(TeachingAssignment.user_id, "authors", postgres, "INTEGER"),
            ),
        )
        .where(among(Lesson.id, "lessons", postgres, "INTEGER"))
    )


@functools.cache
def student_rows(postgres: bool) -> Select[tuple[int, int, int | None, Any, Any]]:
    """The students ``:students``, a row for each of their enrollments in the classes
    ``:classes`` (one with NULLs for none), as plain rows (``among``'s parameters)."""
    students, enrollments = Student.__table__.c, Enrollment.__table__.c
    return (
        select(
            students.id,
            students.school_id,
            enrollments.class_group_id,
            enrollments.starts_on,
            enrollments.ends_on,
        )
        .select_from(Student.__table__)
        .outerjoin(
            Enrollment.__table__,
            and_(
                enrollments.student_id == students.id,
                among(enrollments.class_group_id, "classes", postgres, "INTEGER"),
            ),
        )
        .where(among(students.id, "students", postgres, "INTEGER"))
    )


_KEYS = DeviceKey.__table__.c
DEVICE_KEY_ROW = select(
    _KEYS.kid, _KEYS.user_id, _KEYS.alg, _KEYS.public_key, _KEYS.revoked_at
).where(_KEYS.kid == bindparam("kid"))


@functools.cache
def recorded(postgres: bool) -> Select[tuple[str, int, int, bytes, str | None]]:
    """The entries with ids ``:ids`` (``among``'s parameter)."""
    entries = Entry.__table__.c  # Core, as student_rows
    return select(entries.entry_id, entries.log_id, entries.seq, entries.leaf, entries.cell).where(
        among(entries.entry_id, "ids", postgres)
    )


@functools.cache
def reserve(postgres: bool) -> Any:
    """Lock the log ``:log_id``'s row and read its committed size (``Recorder._reserve_seq``)."""
    logs = Log.__table__.c
    return (
        update(Log.__table__)
        .where(logs.id == bindparam("log_id"), lock_wait_condition(postgres))
        .values(size=logs.size)
        .returning(logs.size)
    )


# Core, built once (an ORM bulk UPDATE would also look for Log objects to update).
SET_SIZE = (
    update(Log.__table__)
    .where(Log.__table__.c.id == bindparam("log_id"))
    .values(size=bindparam("size"))
)


# The columns a new entry row fills, in the order of the pending tuples, with their PostgreSQL
# types (as the migrations make them): the COPY is binary, so the leaves go as they are, not as
# hex text for the client to write and the server to read back.
ENTRY_COLUMN_TYPES = (
    ("log_id", "int4"),
    ("seq", "int8"),
    ("entry_id", "varchar"),
    ("kind", "varchar"),
    ("author_id", "int4"),
    ("device_kid", "varchar"),
    ("device_seq", "int8"),
    ("lesson_id", "int4"),
    ("student_id", "int4"),
    ("cell", "varchar"),
    ("received_at", "timestamptz"),
    ("leaf", "bytea"),
    ("leaf_hash", "bytea"),
)
ENTRY_COLUMNS = tuple(name for name, _type in ENTRY_COLUMN_TYPES)
_SET_SIZE = "UPDATE logs SET size = %s WHERE id = %s"  # SET_SIZE, for the driver itself
_COPY_ENTRIES = f"COPY entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


# What a foreign key's check does for each row it names, done once for a batch's distinct rows
# (migration 0019refs): lock them as a foreign key would (FOR KEY SHARE: no delete or renumbering
# until we commit, other writers and updates not held up) and count what is there.
_HOLD_REFERENCES = """
SELECT (SELECT count(*) FROM (SELECT FROM logs WHERE id = ANY(%s::int4[]) FOR KEY SHARE) AS h),
       (SELECT count(*) FROM (SELECT FROM users WHERE id = ANY(%s::int4[]) FOR KEY SHARE) AS h),
       (SELECT count(*) FROM (SELECT FROM lessons WHERE id = ANY(%s::int4[]) FOR KEY SHARE) AS h),
       (SELECT count(*) FROM (SELECT FROM students WHERE id = ANY(%s::int4[]) FOR KEY SHARE) AS h)
"""
# The tables _HOLD_REFERENCES counts in, and where a pending row names each of them.
_REFERENCED = ("logs", "users", "lessons", "students")
_REFERENCE_AT = [
    ENTRY_COLUMNS.index(column) for column in ("log_id", "author_id", "lesson_id", "student_id")
]


def insert_entries(
    session: Session, rows: list[tuple[Any, ...]], *, log_size: tuple[int, int] | None = None
) -> None:
    """Insert Entry rows (tuples of ``ENTRY_COLUMNS``' values, UTC-aware ``received_at``);
    ``log_size``: (log id, size) to write as that log's size too (its row locked already).

    On PostgreSQL with psycopg 3: the log, author, lesson and student rows the entries name are
    held as a foreign key would hold them (IntegrityError when one is missing), then one COPY
    in the session's transaction: the rows cost the server a fraction of as many INSERTs, and
    constraints and triggers apply as for INSERT. Its errors are raised as SQLAlchemy's
    (IntegrityError for a duplicate entry_id, ...), as an INSERT's would be. Elsewhere one
    INSERT ... executemany, under the database's own foreign keys."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    if connection.dialect.name != "postgresql" or not isinstance(driver, psycopg.Connection):
        session.execute(
            insert(Entry.__table__), [dict(zip(ENTRY_COLUMNS, row, strict=True)) for row in rows]
        )
        if log_size is not None:
            session.execute(SET_SIZE, {"log_id": log_size[0], "size": log_size[1]})
        return
    note_write(connection)
    named = [{row[i] for row in rows if row[i] is not None} for i in _REFERENCE_AT]
    try:
        with driver.cursor() as cursor:
            # Pipelined: the hold and the size go in one round trip (each round trip costs
            # both ends a sleep and a wake-up, about as much CPU as a few entries' inserts).
            with driver.pipeline():
                cursor.execute(_HOLD_REFERENCES, [text_array(ids) for ids in named], prepare=True)
                if log_size is not None:
                    driver.execute(_SET_SIZE, (log_size[1], log_size[0]), prepare=True)
            found = cursor.fetchone() or ()
            for table, ids, count in zip(_REFERENCED, named, found, strict=True):
                if count != len(ids):
                    missing = LookupError(f"an entry names a row that {table} does not have")
                    raise IntegrityError(_HOLD_REFERENCES, None, missing)
            with cursor.copy(_COPY_ENTRIES) as copy:
                copy.set_types([type_ for _name, type_ in ENTRY_COLUMN_TYPES])
                for row in rows:
                    copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(
            _COPY_ENTRIES, None, exc, psycopg.Error, dialect=connection.dialect
        ) from exc


def superseded_entry() -> Exists:
    """Whether a correction supersedes the Entry row at hand."""
    return (
        select(Supersession.correction_entry_id)
        .where(
            Supersession.log_id == Entry.log_id,
            Supersession.superseded_entry_id == Entry.entry_id,
        )
        .exists()
    )
