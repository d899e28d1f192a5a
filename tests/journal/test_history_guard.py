"""The database itself refuses to rewrite history, whatever the application does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint

from ..factories import NOW


def attempt(world, sql: str) -> str:
    """Run raw SQL in a savepoint; return the database's refusal message."""
    nested = world.session.begin_nested()
    try:
        world.session.execute(sa.text(sql))
    except sa.exc.DatabaseError as exc:
        nested.rollback()
        return str(exc.orig)
    nested.rollback()
    pytest.fail(f"the database accepted: {sql}")


@pytest.fixture
def history(world):
    first = record_entry(world.session, world.signed("grade"), now=NOW)
    record_entry(
        world.session,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            supersedes=[first.entry_id],
            reason="typo",
            value={"score": 9},
        ),
        now=NOW,
    )
    cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    return world


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE entries SET kind = 'topic'",
        "UPDATE entries SET leaf = leaf",
        "DELETE FROM entries",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "UPDATE supersessions SET superseded_entry_id = 'x'",
        "DELETE FROM supersessions",
    ],
)
def test_update_and_delete_are_refused(history, sql):
    message = attempt(history, sql)
    assert "append-only" in message


def test_truncate_is_refused(history, backend):
    # SQLite has no TRUNCATE: its stand-in is an unqualified DELETE (the truncate optimization,
    # which SQLite disables on tables with triggers).
    sql = "TRUNCATE entries CASCADE" if backend == "postgresql" else "DELETE FROM entries WHERE 1"
    assert "append-only" in attempt(history, sql)


def test_inserts_still_work(history):
    assert record_entry(history.session, history.signed("topic"), now=NOW).seq == 2
