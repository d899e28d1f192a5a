"""Checkpoints, consistency between them, and `verify_journal` over stored rows."""

from __future__ import annotations

import base64

import sqlalchemy as sa

from journal.ledger import merkle, note
from journal.ledger.audit import parse_hash_lines
from journal.models import Entry
from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint, latest_checkpoint, verify_journal

from ..factories import NOW


def fill(world, n: int) -> None:
    students = [world.add_student() for _ in range(n)]
    for student in students:
        record_entry(world.session, world.signed("attendance", student=student.id), now=NOW)


def test_checkpoint_signs_the_root_of_every_leaf(world):
    fill(world, 5)
    checkpoint = cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    leaves = world.session.scalars(
        sa.select(Entry.leaf).where(Entry.log_id == world.log.id).order_by(Entry.seq)
    ).all()
    expected = merkle.root([merkle.leaf_hash(leaf) for leaf in leaves])
    opened = note.verify_checkpoint(
        checkpoint.note, note.parse_vkey(world.school.log_vkey), world.log.origin
    )
    assert (opened.size, opened.root_hash) == (5, expected)
    assert checkpoint.note.startswith(
        f"{world.log.origin}\n5\n{base64.b64encode(expected).decode()}\n"
    )


def test_no_new_checkpoint_when_nothing_was_added(world):
    fill(world, 2)
    first = cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    assert cut_checkpoint(world.session, world.log, world.log_key, now=NOW).id == first.id


def test_consistency_proof_between_consecutive_checkpoints(world):
    fill(world, 3)
    old = cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    fill(world, 4)
    new = cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    assert (new.previous_size, new.size) == (3, 7)
    merkle.verify_consistency(
        3, 7, old.root_hash, new.root_hash, parse_hash_lines(new.consistency_proof)
    )


def test_verify_journal_passes_on_an_honest_log(world):
    fill(world, 6)
    cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    fill(world, 2)
    cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    report = verify_journal(world.session, world.log)
    assert report.ok, report.summary()
    assert report.checkpoints_checked == [6, 8]
    assert report.consistency_checked == [(6, 8)]


def test_latest_checkpoint_is_the_largest(world):
    fill(world, 1)
    cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    fill(world, 1)
    cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    assert latest_checkpoint(world.session, world.log).size == 2


def test_verify_says_which_entries_no_checkpoint_covers_yet(world):
    fill(world, 2)
    cut_checkpoint(world.session, world.log, world.log_key, now=NOW)
    fill(world, 1)
    report = verify_journal(world.session, world.log)
    assert report.ok
    assert report.summary().endswith("the last 1 entries are under no checkpoint yet")
