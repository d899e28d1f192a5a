"""Shared fixtures: the app on SQLite and on PostgreSQL, one rolled-back transaction per test.

Every test that asks for ``session`` (or ``world``) runs twice, once per database. PostgreSQL is
the one at 127.0.0.1:5432 (trust auth); each test run makes its own throwaway databases.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from journal.app import create_app
from journal.db import db

from .external import missing

PG_ADMIN_URL = os.environ.get(
    "JOURNAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TEST_IIN_ENCRYPTION_KEY = base64.b64encode(b"e" * 32).decode()
TEST_IIN_HMAC_KEY = base64.b64encode(b"h" * 32).decode()
TEST_BACKUP_KEY = base64.b64encode(b"b" * 32).decode()


class Databases:
    """Creates migrated throwaway databases and drops them at the end of the run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[str] = []

    def create(self, backend: str) -> str:
        name = f"journal_test_{secrets.token_hex(4)}"
        if backend == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.db')}"
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            missing(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}")
        finally:
            admin.dispose()
        self.created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("db"))
    yield dbs
    dbs.drop_all()


def make_app(database_url: str, keys_dir: Path, **overrides: object) -> Flask:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "KEYS_DIR": str(keys_dir),
        "IIN_ENCRYPTION_KEY": TEST_IIN_ENCRYPTION_KEY,
        "IIN_HMAC_KEY": TEST_IIN_HMAC_KEY,
        "BACKUP_KEY": TEST_BACKUP_KEY,
        "ARCHIVE_LOCAL_ROOT": str(keys_dir.parent / "archive"),
        # Immutable files would outlive the test's temporary directory (only root clears them);
        # tests/archive/test_audit.py sets the attribute on purpose and clears it again.
        "ARCHIVE_LOCAL_IMMUTABLE": False,
        "BACKUP_DIR": str(keys_dir.parent / "backups"),
        "SESSION_COOKIE_SECURE": False,
        "WTF_CSRF_ENABLED": True,
    }
    config.update(overrides)
    return create_app(config)


def migrate(app: Flask) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def app(
    backend: str, databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    url = databases.create(backend)
    application = make_app(url, tmp_path_factory.mktemp(f"keys-{backend}"))
    migrate(application)
    yield application
    application.extensions["journal_db"].engine.dispose()


@pytest.fixture
def fresh_app(backend: str, databases: Databases, tmp_path: Path) -> Iterator[Flask]:
    """An app on its own new database, for tests that commit (threads, commands, crashes)."""
    url = databases.create(backend)
    application = make_app(url, tmp_path / "keys")
    migrate(application)
    yield application
    application.extensions["journal_db"].engine.dispose()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    """``db.session`` inside one outer transaction that is rolled back after the test.

    Code under test may ``commit()``: that only releases a savepoint.
    """
    database = app.extensions["journal_db"]
    connection = database.engine.connect()
    outer = connection.begin()
    database.session_factory.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        with app.app_context():
            yield db.session
    finally:
        outer.rollback()
        connection.close()
        database.session_factory.configure(
            bind=database.engine, join_transaction_mode="conditional_savepoint"
        )


@pytest.fixture
def world(session: Session, app: Flask):  # type: ignore[no-untyped-def]
    """A small school with one class, one subject, a teacher with a device key, a student."""
    from .factories import build_world

    return build_world(session, app.config["KEYS_DIR"])
