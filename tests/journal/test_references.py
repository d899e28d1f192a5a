"""An entry's journal, author, lesson and student stay in the database as long as the entry.

SQLite keeps them with foreign keys. PostgreSQL keeps them without a check per entry (migration
0019refs): the writer holds the rows a batch names until it commits, as a foreign key would,
and the referenced tables refuse to delete or renumber a row an entry names. Either way the
same things are refused.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from journal.db import db
from journal.models import Entry, Lesson
from journal.recording.recorder import Recorder, record_entry
from journal.recording.rows import ENTRY_COLUMNS, insert_entries

from ..factories import NOW, build_world


def refusal(world, sql: str) -> str:  # type: ignore[no-untyped-def]
    """Run raw SQL in a savepoint; return the database's refusal."""
    nested = world.session.begin_nested()
    try:
        world.session.execute(sa.text(sql))
    except sa.exc.IntegrityError as exc:
        nested.rollback()
        return str(exc.orig)
    nested.rollback()
    pytest.fail(f"the database accepted: {sql}")


def why(backend: str, table: str) -> str:
    """What the refusal says: SQLite's foreign keys name no table; 0019refs' triggers do."""
    return "FOREIGN KEY constraint failed" if backend == "sqlite" else f"entries name {table}"


@pytest.fixture
def named(world):  # type: ignore[no-untyped-def]
    """A world whose one entry names its journal, teacher, lesson and student."""
    record_entry(world.session, world.signed("grade"), now=NOW)
    return world


def ids(world) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {
        "logs": world.log.id,
        "users": world.teacher.id,
        "lessons": world.lesson.id,
        "students": world.student.id,
    }


@pytest.mark.parametrize("table", ["logs", "users", "lessons", "students"])
def test_a_row_an_entry_names_is_not_deleted(named, backend, table):
    sql = f"DELETE FROM {table} WHERE id = {ids(named)[table]}"  # noqa: S608
    assert why(backend, table) in refusal(named, sql)


@pytest.mark.parametrize("table", ["logs", "users", "lessons", "students"])
def test_a_row_an_entry_names_is_not_renumbered(named, backend, table):
    sql = f"UPDATE {table} SET id = id + 100000 WHERE id = {ids(named)[table]}"  # noqa: S608
    assert why(backend, table) in refusal(named, sql)


def test_a_lesson_no_entry_names_is_still_deleted(named):
    """Rescheduling removes the lessons nobody wrote to (journal.setup.classes)."""
    spare = Lesson(
        class_group_id=named.class_group.id,
        subject_id=named.subject.id,
        date=named.lesson.date,
        period=named.lesson.period + 1,
    )
    named.session.add(spare)
    named.session.flush()
    named.session.execute(sa.delete(Lesson).where(Lesson.id == spare.id))
    assert named.session.get(Lesson, named.lesson.id) is not None
    # Its other columns may change: only the key is held.
    named.session.execute(sa.text(f"UPDATE lessons SET period = 7 WHERE id = {named.lesson.id}"))  # noqa: S608


def test_the_tables_entries_name_are_not_emptied(named, backend):
    # SQLite has no TRUNCATE: its stand-in is an unqualified DELETE.
    sql = "TRUNCATE lessons CASCADE" if backend == "postgresql" else "DELETE FROM lessons"
    assert why(backend, "lessons") in refusal(named, sql)


@pytest.mark.parametrize("column", ["log_id", "author_id", "lesson_id", "student_id"])
def test_an_entry_naming_a_missing_row_is_not_written(world, column):
    row = {
        "log_id": world.log.id,
        "seq": 0,
        "entry_id": "00000000-0000-4000-8000-000000000001",
        "kind": "grade",
        "author_id": world.teacher.id,
        "device_kid": world.device.kid,
        "device_seq": 1,
        "lesson_id": world.lesson.id,
        "student_id": world.student.id,
        "cell": None,
        "received_at": NOW,
        "leaf": b"{}",
        "leaf_hash": bytes(32),
        column: 999_999,
    }
    nested = world.session.begin_nested()
    with pytest.raises(sa.exc.IntegrityError):
        insert_entries(world.session, [tuple(row[name] for name in ENTRY_COLUMNS)])
    nested.rollback()
    assert world.session.scalar(sa.select(sa.func.count()).select_from(Entry)) == 0


def test_a_lesson_is_not_deleted_under_a_batch_writing_to_it(backend, request):
    """The race a check made before writing leaves open: the lesson deleted (it had no
    entries yet) between the batch's check and its commit. The batch holds it: the delete
    waits, and once the batch commits it is refused."""
    app = request.getfixturevalue("fresh_app")
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        db.session.commit()
        lesson_id = world.lesson.id
        recorder = Recorder(db.session, now=NOW, deferred=True)
        assert recorder.record(world.signed("grade")).status == "accepted"
        recorder.flush()  # written, not committed

        sqlite = backend == "sqlite"
        other = sa.create_engine(
            app.config["DATABASE_URL"], connect_args={"timeout": 0.3} if sqlite else {}
        )
        delete = sa.text("DELETE FROM lessons WHERE id = :id")
        try:
            with other.connect() as connection:
                connection.execute(
                    sa.text("PRAGMA foreign_keys = ON" if sqlite else "SET lock_timeout = '300ms'")
                )
                with pytest.raises(sa.exc.OperationalError):  # lock not available / locked
                    connection.execute(delete, {"id": lesson_id})
                connection.rollback()

                db.session.commit()
                if not sqlite:
                    connection.execute(sa.text("SET lock_timeout = '300ms'"))
                with pytest.raises(sa.exc.IntegrityError) as refused:
                    connection.execute(delete, {"id": lesson_id})
                assert why(backend, "lessons") in str(refused.value.orig)
                connection.rollback()
        finally:
            other.dispose()
        assert db.session.get(Lesson, lesson_id) is not None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Entry)) == 1
