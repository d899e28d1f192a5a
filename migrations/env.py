"""Alembic environment: runs against the app's engine and its one metadata."""

from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

database = current_app.extensions["journal_db"]
target_metadata = database.metadata

# On PostgreSQL, entries' references are kept by the writer's locks and the referenced tables'
# triggers, not by these foreign keys (0019refs): the models keep them for SQLite and the ORM.
GUARDED_ON_POSTGRESQL = frozenset(
    {
        "fk_entries_log_id_logs",
        "fk_entries_author_id_users",
        "fk_entries_lesson_id_lessons",
        "fk_entries_student_id_students",
    }
)


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    postgres = context.get_bind().dialect.name == "postgresql"
    return not (postgres and type_ == "foreign_key_constraint" and name in GUARDED_ON_POSTGRESQL)


def run_migrations_offline() -> None:
    context.configure(
        url=current_app.config["DATABASE_URL"],
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with database.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things: batch mode rebuilds tables there.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
