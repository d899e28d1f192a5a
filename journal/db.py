"""Database plumbing: the declarative base, shared column types, and the engine/session extension.

Services take a ``Session`` as their first argument, ``flush()`` and never ``commit()``; the
request, command or job that called them commits once at its boundary.
"""

from __future__ import annotations

import datetime as dt
import select
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any

import psycopg
from flask import Flask, current_app, g, has_app_context
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    text,
    true,
)
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use UTC-aware datetimes")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY auto-increments).
BigId = BigInteger().with_variant(Integer(), "sqlite")

intpk = Annotated[int, mapped_column(primary_key=True)]
bigpk = Annotated[int, mapped_column(BigId, primary_key=True)]
timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime())]
blob = Annotated[bytes, mapped_column(LargeBinary())]
str40 = Annotated[str, mapped_column(String(40))]
str200 = Annotated[str, mapped_column(String(200))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Seconds a writer waits for a journal's row lock (APPEND_LOCK_TIMEOUT) before giving up.
DEFAULT_LOCK_TIMEOUT = 5
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout fires


def bound_lock_wait(session: Session) -> None:
    """On PostgreSQL, make this transaction's lock waits give up after ``APPEND_LOCK_TIMEOUT``
    seconds (``SET LOCAL lock_timeout``) instead of waiting for ever behind a stuck writer: the
    statement then fails with SQLSTATE 55P03 (see ``lock_wait_expired``) and the transaction
    writes nothing. 0 waits for ever. SQLite writers already queue on ``busy_timeout``."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text("SELECT set_config('lock_timeout', :value, true)"), {"value": _lock_timeout()}
    )


def lock_wait_condition(postgres: bool) -> ColumnElement[bool]:
    """``bound_lock_wait`` as a condition for the WHERE clause of the statement that takes the
    lock, one round trip instead of two: PostgreSQL evaluates it on the row before it waits for
    the row's lock (true elsewhere). The statement is built once: the timeout is its bound
    parameter ``lock_timeout``, whose value ``lock_wait_params`` gives."""
    if not postgres:
        return true()
    return func.set_config("lock_timeout", bindparam("lock_timeout", type_=String), True).is_not(
        None
    )


def lock_wait_params() -> dict[str, str]:
    """The parameters of ``lock_wait_condition`` (APPEND_LOCK_TIMEOUT, read now)."""
    return {"lock_timeout": _lock_timeout()}


def _lock_timeout() -> str:
    seconds = (
        current_app.config.get("APPEND_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)
        if has_app_context()
        else DEFAULT_LOCK_TIMEOUT
    )
    return f"{max(0, round(float(seconds) * 1000))}ms"


def text_array(values: Iterable[object]) -> str:
    """PostgreSQL's text form of an array of ``values`` (strings or integers, no None), bound as
    one string (``TextArray``, or ``%s::int4[]``): psycopg adapts a list value by value in
    Python, about 2 µs each, which for a sync batch's 200 entry ids cost the client more than
    the statement's round trip did."""
    quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


class TextArray(UserDefinedType[str]):
    """An array parameter (of VARCHAR, or of ``item``) given as ``text_array``'s string.
    Rendered ``:p::VARCHAR[]``, so the parameter itself has the array type and the server
    reads it once; a CAST of a VARCHAR parameter in SQL was read again for each row a plan
    scanned."""

    cache_ok = True
    render_bind_cast = True

    def __init__(self, item: str = "VARCHAR") -> None:
        self.item = item

    def get_col_spec(self, **_kw: Any) -> str:
        return f"{self.item}[]"


def among(column: Any, name: str, postgres: bool, item: str = "VARCHAR") -> ColumnElement[bool]:
    """``column`` is one of the parameter ``name``'s values: on PostgreSQL ``= ANY`` of one
    array parameter (give it ``array_value``), elsewhere an expanding IN (a list). An expanding
    IN is rendered anew for each execution, a parameter per value, and each count of values is
    another statement for the server to prepare."""
    if postgres:
        return column == any_(bindparam(name, type_=TextArray(item)))
    return column.in_(bindparam(name, expanding=True))


def array_value(values: Iterable[object], postgres: bool) -> str | list[object]:
    """The value of an ``among`` (or ``TextArray``) parameter."""
    return text_array(values) if postgres else list(values)


def lock_wait_expired(exc: BaseException) -> bool:
    """Whether a database error is ``lock_timeout`` firing (psycopg 3 or psycopg2)."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code == LOCK_NOT_AVAILABLE


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _drop_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Before the pool hands out a connection: an idle connection has nothing to read unless
    its server went away (a closed socket, or the FATAL notice of a shutdown, a crash of the
    postmaster or ``pg_terminate_backend``). Such a one is dropped and the pool connects
    afresh (to whichever host takes writes). A system call instead of ``pool_pre_ping``'s
    round trip to the server on every request."""
    if getattr(dbapi_connection, "autocommit", False):  # never, unless single_statement broke
        raise DisconnectionError("a connection left in autocommit")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        raise DisconnectionError("the database server closed this connection")


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling begins lazily and deferred: two writers that both read
    # the log size first would then fail to upgrade their locks. We take the write lock at BEGIN
    # (IMMEDIATE), so SQLite writers queue on busy_timeout instead, one at a time.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# Whether the transaction on a connection has written, kept in ``Connection.info`` from the
# engine's events below: a write is any statement but a plain SELECT, and COPY says so itself.
WROTE = "journal.wrote"
_CONNECTION = "journal.connection"
# ``Session.info`` key of the work a session holds to write before its commit (deferred
# recorders): a session with any ends with ROLLBACK as before.
PENDING_WRITES = "journal.pending_writes"


def note_write(connection: Any) -> None:
    """Record that ``connection``'s transaction wrote by a path SQLAlchemy does not see (COPY)."""
    connection.info[WROTE] = True


@event.listens_for(Engine, "begin")
def _transaction_begins(connection: Any) -> None:
    connection.info[WROTE] = False


@event.listens_for(Engine, "before_cursor_execute")
def _maybe_a_write(
    connection: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    # WITH may hide an INSERT; DDL, SET and the rest count as writes too (SQLite's BEGIN not).
    if statement.lstrip()[:6].upper() not in ("SELECT", "BEGIN "):
        connection.info[WROTE] = True


@event.listens_for(Session, "after_begin")
def _remember_connection(session: Session, _transaction: Any, connection: Any) -> None:
    session.info[_CONNECTION] = connection


def end_session(session: Session, *, failed: bool = False) -> None:
    """Close a request's session. A transaction that wrote nothing and holds no unflushed
    change ends with COMMIT rather than ROLLBACK: the database sees no difference, but psycopg
    forgets every prepared statement of the connection on ROLLBACK, so each read-only request
    made the requests after it parse and plan their statements afresh."""
    connection = session.info.pop(_CONNECTION, None)
    try:
        if (
            not failed
            and connection is not None
            and session.in_transaction()
            and not connection.closed
            and not connection.invalidated  # lost mid-request: its info is out of reach
            and connection.info.get(WROTE) is False
            and not session.info.get(PENDING_WRITES)
            and not (session.new or session.dirty or session.deleted)
        ):
            # A connection lost at the very end: close() below cleans up.
            with suppress(SQLAlchemyError):
                session.commit()
    finally:
        session.close()


@contextmanager
def single_statement(session: Session) -> Iterator[None]:
    """Run the block's one statement as a transaction of its own when none is open on the
    server yet (psycopg: autocommit for the statement): what BEGIN, the statement and COMMIT
    would do, in one round trip instead of two or three. For a read that locks nothing, or a
    write the caller commits at once; anything after it in the request begins a transaction
    as usual. On SQLite, or inside an open transaction, the block runs as it would anyway."""
    driver = session.connection().connection.driver_connection
    if not isinstance(driver, psycopg.Connection) or (
        driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    ):
        yield
        return
    driver.autocommit = True
    try:
        yield
    finally:
        if driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            driver.autocommit = False
        # Else the connection broke: SQLAlchemy invalidates it, and the pool's checkout
        # check below would not hand it out in autocommit in any case.


class DatabaseState:
    """One app's engine and session factory (``app.extensions["journal_db"]``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.metadata = Base.metadata
        self.session_factory = sessionmaker(bind=engine, expire_on_commit=False)


class Database:
    """``db.session``: one session per application context, from the current app's engine."""

    metadata = Base.metadata

    def init_app(self, app: Flask) -> None:
        app.extensions["journal_db"] = DatabaseState(make_engine(app.config["DATABASE_URL"]))

        @app.teardown_appcontext
        def _close_session(exc: BaseException | None) -> None:
            session = g.pop("_journal_session", None)
            if session is not None:
                end_session(session, failed=exc is not None)

    @property
    def state(self) -> DatabaseState:
        state: DatabaseState = current_app.extensions["journal_db"]
        return state

    @property
    def engine(self) -> Engine:
        return self.state.engine

    @property
    def session(self) -> Session:
        session: Session | None = g.get("_journal_session")
        if session is None:
            session = self.state.session_factory()
            g._journal_session = session
        return session

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A fresh session committed at the end of the block (jobs and threads)."""
        with self.state.session_factory() as session, session.begin():
            yield session


db = Database()
