"""Closing a term, and the admin-approved late corrections that are the only way back in."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from journal.models import Entry, Log, TermClosure
from journal.services import EntryRefused, record_entry, verify_journal
from journal.year.closing import TermError, approve_late_correction, close_term

from ..factories import NOW, add_user


@pytest.fixture
def closed(world):
    first = record_entry(world.session, world.signed("grade"), now=NOW)
    admin = add_user(world.session, world.school, "school_admin")
    # In November, before quarter 2 ends and with quarter 1 open: only with a reason.
    close_term(world.session, world.q2, world.log_key, closed_by=admin, now=NOW, reason="test")
    world.first = first
    world.admin = admin
    return world


def test_close_term_seals_every_journal_and_records_the_event(closed):
    closure = closed.session.scalar(sa.select(TermClosure))
    assert (closure.log_id, closure.checkpoint_size) == (closed.log.id, 1)
    ledger = closed.session.scalar(sa.select(Log).where(Log.kind == "ledger"))
    (record,) = closed.session.scalars(sa.select(Entry).where(Entry.log_id == ledger.id)).all()
    payload = json.loads(record.leaf)["payload"]
    assert payload["kind"] == "term_closed"
    assert payload["journals"] == [
        {"origin": closed.log.origin, "size": 1, "root": payload["journals"][0]["root"]}
    ]
    assert verify_journal(closed.session, ledger).ok


def test_a_closed_term_cannot_be_closed_again(closed):
    with pytest.raises(TermError):
        close_term(
            closed.session, closed.q2, closed.log_key, closed_by=closed.admin, now=NOW, reason="x"
        )


def correction(world):
    return world.signed(
        "correction",
        corrects="grade",
        component="FO",
        supersedes=[world.first.entry_id],
        reason="marked the wrong student",
        value={"score": 5},
    )


def test_entries_and_corrections_are_refused_after_close(closed):
    with pytest.raises(EntryRefused) as caught:
        record_entry(closed.session, correction(closed), now=NOW)
    assert caught.value.code == "closed_term"


def test_an_approved_late_correction_is_accepted_and_the_approval_is_an_entry(closed):
    cell = f"FO:{closed.lesson.id}:{closed.student.id}"
    approve_late_correction(
        closed.session,
        closed.log,
        cell,
        closed.log_key,
        approved_by=closed.admin,
        reason="parent's complaint",
        now=NOW,
    )
    accepted = record_entry(closed.session, correction(closed), now=NOW + dt.timedelta(hours=1))
    assert accepted.status == "accepted"
    ledger = closed.session.scalar(sa.select(Log).where(Log.kind == "ledger"))
    kinds = [
        json.loads(leaf)["payload"]["kind"]
        for leaf in closed.session.scalars(
            sa.select(Entry.leaf).where(Entry.log_id == ledger.id).order_by(Entry.seq)
        )
    ]
    assert kinds == ["term_closed", "late_correction_approved"]
    # The approval covers that one cell only, and only corrections.
    with pytest.raises(EntryRefused):
        record_entry(closed.session, closed.signed("grade"), now=NOW)


def test_an_approval_expires(closed):
    cell = f"FO:{closed.lesson.id}:{closed.student.id}"
    approve_late_correction(
        closed.session,
        closed.log,
        cell,
        closed.log_key,
        approved_by=closed.admin,
        reason="complaint",
        now=NOW,
    )
    with pytest.raises(EntryRefused) as caught:
        record_entry(closed.session, correction(closed), now=NOW + dt.timedelta(days=8))
    assert caught.value.code == "closed_term"


def test_an_approval_needs_a_reason(closed):
    with pytest.raises(TermError):
        approve_late_correction(
            closed.session,
            closed.log,
            "FO:1:1",
            closed.log_key,
            approved_by=closed.admin,
            reason="  ",
            now=NOW,
        )
