"""How a request's database session begins and ends: the pool never hands out a connection
its server has closed; a transaction that wrote nothing is committed (so psycopg keeps the
connection's prepared statements), anything else is rolled back as before."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from journal.db import db
from journal.models import Entry, School
from journal.recording.recorder import Recorder

from ..factories import build_world


@pytest.fixture
def app_with_views(fresh_app: Flask) -> Flask:
    """Views that change the database and return without committing, as a view does when it
    refuses a request half-way."""
    with fresh_app.app_context():
        world = build_world(db.session, fresh_app.config["KEYS_DIR"])
        db.session.commit()
        submissions = iter([world.signed("grade"), world.signed("attendance")])

    @fresh_app.get("/_test/rename")
    def rename() -> str:
        school = db.session.get(School, world.school.id)
        assert school is not None
        school.name = "Renamed, never committed"
        return "ok"

    @fresh_app.get("/_test/rename-flushed")
    def rename_flushed() -> str:
        db.session.execute(
            sa.update(School).where(School.id == world.school.id).values(name="Flushed")
        )
        return "ok"

    @fresh_app.get("/_test/record/<mode>")
    def record(mode: str) -> str:
        # Deferred: held for the commit that never comes; else stored at once (COPY on
        # PostgreSQL, which SQLAlchemy's events do not see).
        recorder = Recorder(db.session, deferred=mode == "deferred")
        recorder.record(next(submissions))
        return "ok"

    @fresh_app.get("/_test/read")
    def read() -> str:
        names = db.session.scalars(sa.select(School.name).where(School.id == world.school.id))
        prepared = 0
        if db.engine.dialect.name == "postgresql":
            prepared = db.session.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements"))
        return f"{len(list(names))} {prepared}"

    @fresh_app.get("/_test/lost")
    def lost() -> str:
        db.session.scalar(sa.select(School.name))
        db.session.connection().invalidate()  # as a dropped connection leaves it
        return "ok"

    fresh_app.config["TEST_SCHOOL_NAME"] = world.school.name
    return fresh_app


def stored_school_name(app: Flask) -> str:
    with app.app_context():
        return str(db.session.scalar(sa.select(School.name)))


def stored_entries(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(sa.func.count()).select_from(Entry)) or 0)


@pytest.mark.parametrize("path", ["/_test/rename", "/_test/rename-flushed"])
def test_changes_a_view_did_not_commit_are_not_stored(app_with_views: Flask, path: str) -> None:
    client = app_with_views.test_client()
    assert client.get(path).status_code == 200
    assert stored_school_name(app_with_views) == app_with_views.config["TEST_SCHOOL_NAME"]


@pytest.mark.parametrize("mode", ["deferred", "at-once"])
def test_entries_a_view_did_not_commit_are_not_stored(app_with_views: Flask, mode: str) -> None:
    before = stored_entries(app_with_views)
    assert app_with_views.test_client().get(f"/_test/record/{mode}").status_code == 200
    assert stored_entries(app_with_views) == before


def test_read_only_requests_keep_prepared_statements(app_with_views: Flask) -> None:
    if app_with_views.extensions["journal_db"].engine.dialect.name != "postgresql":
        pytest.skip("prepared statements are psycopg's (PostgreSQL); SQLite has none to keep")
    client = app_with_views.test_client()
    answers = [client.get("/_test/read").get_data(as_text=True) for _ in range(8)]
    # psycopg prepares a statement on its sixth use; a ROLLBACK at the end of each request
    # used to deallocate them all, so no request ever saw one.
    assert answers[-1].split()[0] == "1"
    assert int(answers[-1].split()[1]) >= 1, answers


def test_a_connection_lost_during_a_read_only_request_is_closed_quietly(
    app_with_views: Flask,
) -> None:
    client = app_with_views.test_client()
    assert client.get("/_test/lost").status_code == 200
    assert client.get("/_test/read").get_data(as_text=True).split()[0] == "1"


def test_a_connection_the_server_closed_is_not_handed_to_the_next_request(
    app_with_views: Flask,
) -> None:
    engine = app_with_views.extensions["journal_db"].engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to close a connection")
    client = app_with_views.test_client()
    assert client.get("/_test/read").status_code == 200  # the pool now keeps a connection
    # pg_terminate_backend, as at a server restart (waiting until the backends are gone)
    operator = sa.create_engine(engine.url)
    try:
        with operator.connect() as other:
            terminated = other.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        operator.dispose()
    assert terminated
    for _ in range(3):
        assert client.get("/_test/read").status_code == 200


def test_a_session_read_alone_leaves_the_connection_transactional(app_with_views: Flask) -> None:
    """The session check runs as a transaction of its own (no BEGIN round trip); what the
    request does next, and every later request on the connection, is in a transaction."""
    engine = app_with_views.extensions["journal_db"].engine
    client = app_with_views.test_client()
    with client.session_transaction() as cookie:
        cookie["sid"] = "no such session"
    for path in ("/_test/read", "/_test/rename-flushed"):
        assert client.get(path).status_code == 200
        raw = engine.raw_connection()
        try:
            assert not getattr(raw.driver_connection, "autocommit", False)
        finally:
            raw.close()
    assert stored_school_name(app_with_views) == app_with_views.config["TEST_SCHOOL_NAME"]
