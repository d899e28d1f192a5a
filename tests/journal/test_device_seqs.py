"""The device_seq report kept on each key's row (journal.device_seqs) says exactly what one
ordered pass over all of the key's entries says, however the seqs arrived."""

from __future__ import annotations

import random
import threading

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from auth.models import DeviceKey
from journal.device_seqs import DeviceSeqReport, advance, device_seq_reports, full_report
from journal.models import Entry
from journal.sync import upload_batch

from ..factories import NOW


def reference(kid: str, seqs: list[int]) -> DeviceSeqReport:
    """What the report means: numbers from 0 to the highest never seen, numbers seen twice."""
    report = DeviceSeqReport(kid)
    seen: dict[int, int] = {}
    for seq in seqs:
        seen[seq] = seen.get(seq, 0) + 1
    start = None
    for seq in range(max(seqs, default=-1) + 1):
        if seq not in seen and start is None:
            start = seq
        if seq in seen and start is not None:
            report.missing.append((start, seq - 1))
            start = None
    report.reused = sorted(seq for seq, count in seen.items() if count > 1)
    return report


@given(st.lists(st.lists(st.integers(0, 40), max_size=8), max_size=12))
def test_folding_batches_in_says_what_the_whole_history_says(batches):
    report, upto, history = DeviceSeqReport("k"), -1, []
    for batch in batches:
        history.extend(batch)
        upto = advance(report, upto, sorted(batch))
        assert report == reference("k", history)
        assert upto == max(history, default=-1)


def history(rng: random.Random, size: int) -> list[list[int]]:
    """Batches of a device's seqs: mostly counting up, with numbers skipped (some sent late),
    numbers used again, and a counter reset now and then."""
    seqs, counter, skipped = [], 0, []
    while len(seqs) < size:
        roll = rng.random()
        if roll < 0.15:
            skipped.append(counter)  # lost, or arrives later
            counter += 1
        elif roll < 0.25 and skipped:
            seqs.append(skipped.pop(rng.randrange(len(skipped))))  # arrives late
        elif roll < 0.32 and counter:
            seqs.append(rng.randrange(counter))  # used again (a clone)
        elif roll < 0.34:
            counter = rng.randrange(counter + 1)  # the device's counter was reset
        else:
            seqs.append(counter)
            counter += 1
    batches, at = [], 0
    while at < len(seqs):
        step = rng.randint(1, 6)
        batches.append(seqs[at : at + step])
        at += step
    return batches


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_batch_reports_what_a_full_scan_reports(world, seed):
    rng = random.Random(seed)
    kid, sent = world.device.kid, []
    for number, batch in enumerate(history(rng, 60)):
        entries = [world.signed("topic", device_seq=seq) for seq in batch]
        if sent and rng.random() < 0.2:
            entries.append(rng.choice(sent))  # sent again: stored once, folded in once
        outcome = upload_batch(world.session, world.teacher, entries, now=NOW)
        assert {r.status for r in outcome.results} <= {"accepted", "duplicate"}
        sent.extend(entries)
        whole, _upto = full_report(world.session, kid)
        reported = [r for r in outcome.device_seq_gaps if r.kid == kid]
        assert reported == ([whole] if whole.missing or whole.reused else [])
        assert device_seq_reports(world.session, [kid]) == [whole]
        if number == 4:  # as after the migration: the next batch reads all the seqs once
            world.session.execute(
                sa.update(DeviceKey).where(DeviceKey.kid == kid).values(seq_summary=None)
            )
        world.session.commit()
    assert whole == reference(kid, [e["payload"]["device_seq"] for e in unique(sent)])


def unique(entries: list[dict]) -> list[dict]:
    return list({e["payload"]["entry_id"]: e for e in entries}.values())


def test_entries_stored_without_folding_above_the_summary_are_still_reported(world):
    upload_batch(world.session, world.teacher, [world.signed("topic", device_seq=0)], now=NOW)
    world.session.execute(
        sa.update(DeviceKey)
        .where(DeviceKey.kid == world.device.kid)
        .values(seq_summary={"upto": -1, "missing": [], "reused": []})
    )
    assert device_seq_reports(world.session, [world.device.kid]) == [
        DeviceSeqReport(world.device.kid)
    ]
    upload_batch(world.session, world.teacher, [world.signed("topic", device_seq=3)], now=NOW)
    report = DeviceSeqReport(world.device.kid, missing=[(1, 2)])
    assert device_seq_reports(world.session, [world.device.kid]) == [report]


def test_a_seq_two_entries_of_one_batch_use_is_reported_as_used_again(world):
    """Above what the key's report holds, the batch's own seqs are read back in one look-up
    of their steps: a number used twice there is a clone's sign as much as one used before."""
    kid = world.device.kid
    upload_batch(world.session, world.teacher, [world.signed("topic", device_seq=0)], now=NOW)
    batch = [world.signed("topic", device_seq=seq) for seq in (3, 3, 4, 4, 4, 7)]
    outcome = upload_batch(world.session, world.teacher, batch, now=NOW)
    assert {r.status for r in outcome.results} == {"accepted"}
    expected = DeviceSeqReport(kid, missing=[(1, 2), (5, 6)], reused=[3, 4])
    assert outcome.device_seq_gaps == [expected]
    assert device_seq_reports(world.session, [kid]) == [expected]
    assert full_report(world.session, kid)[0] == expected


@pytest.mark.postgres_only
def test_writers_with_one_key_in_two_journals_keep_the_report_exact(backend, request):
    """Two journals' batches commit in parallel (each journal's lock does not order them),
    all signed by one (cloned) key with overlapping seqs: the kept report, read alone, is
    still what a pass over all the key's entries says."""
    if backend != "postgresql":
        pytest.skip("row locking is what this checks; SQLite has one writer at a time")
    fresh_app = request.getfixturevalue("fresh_app")
    from auth.models import User
    from journal.db import db
    from journal.models import ClassGroup, Lesson, TeachingAssignment
    from journal.services import ensure_journal_log

    from ..factories import LESSON_DAY, build_world

    rng = random.Random(7)
    with fresh_app.app_context():
        world = build_world(db.session, fresh_app.config["KEYS_DIR"])
        other = ClassGroup(
            school_id=world.school.id, school_year_id=world.year.id, name="8А", grade_level=8
        )
        db.session.add(other)
        db.session.flush()
        db.session.add(
            TeachingAssignment(
                user_id=world.teacher.id, class_group_id=other.id, subject_id=world.subject.id
            )
        )
        lesson = Lesson(
            class_group_id=other.id, subject_id=world.subject.id, date=LESSON_DAY, period=3
        )
        db.session.add(lesson)
        db.session.flush()
        journals = [
            {"journal": world.log.origin, "lesson": world.lesson.id},
            {"journal": ensure_journal_log(db.session, other).origin, "lesson": lesson.id},
        ]
        work = [
            [
                [world.signed("topic", device_seq=rng.randrange(120), **fields) for _ in range(5)]
                for _ in range(12)
            ]
            for fields in journals
            for _writer in range(2)
        ]
        teacher_id, kid = world.teacher.id, world.device.kid
        db.session.commit()

    errors: list[BaseException] = []

    def write(batches) -> None:
        try:
            with fresh_app.app_context():
                for batch in batches:
                    with db.begin() as session:
                        teacher = session.get_one(User, teacher_id)
                        outcome = upload_batch(session, teacher, batch, now=NOW)
                        assert {r.status for r in outcome.results} == {"accepted"}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with fresh_app.app_context():
        summary = db.session.get_one(DeviceKey, kid).seq_summary
        seqs = list(db.session.scalars(sa.select(Entry.device_seq).where(Entry.device_kid == kid)))
        whole = reference(kid, seqs)
        assert summary == {
            "upto": max(seqs),
            "missing": [list(span) for span in whole.missing],
            "reused": whole.reused,
        }
        assert full_report(db.session, kid)[0] == whole
