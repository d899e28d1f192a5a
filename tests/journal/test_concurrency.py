"""Concurrent writers to one journal never share or skip a seq."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from journal.db import db
from journal.ledger import merkle
from journal.models import Entry, Log
from journal.recording.recorder import Recorder
from journal.services import cut_checkpoint, verify_journal

from ..factories import NOW, add_device, build_world

WRITERS = {"postgresql": (8, 500), "sqlite": (4, 100)}


def test_concurrent_appends_give_gap_free_seqs(fresh_app, backend):
    threads_count, per_thread = WRITERS[backend]
    with fresh_app.app_context():
        session = db.session
        world = build_world(session, fresh_app.config["KEYS_DIR"])
        devices = [add_device(session, world.teacher) for _ in range(threads_count)]
        students = [world.add_student() for _ in range(20)]
        # Sign everything up front so the threads race on the database, not on the CPU.
        batches = [
            [
                world.signed("attendance", device=device, student=students[i % 20].id)
                for i in range(per_thread)
            ]
            for device in devices
        ]
        log_id = world.log.id
        session.commit()

    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def write(batch):
        try:
            start.wait()
            with fresh_app.app_context():
                write_batches(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def write_batches(batch):
        if True:
            for chunk in range(0, len(batch), 25):
                with db.begin() as thread_session:
                    recorder = Recorder(thread_session, now=NOW)
                    for submission in batch[chunk : chunk + 25]:
                        assert recorder.record(submission).status == "accepted"

    with fresh_app.app_context():
        threads = [threading.Thread(target=write, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors

    total = threads_count * per_thread
    with fresh_app.app_context():
        session = db.session
        seqs = session.scalars(
            sa.select(Entry.seq).where(Entry.log_id == log_id).order_by(Entry.seq)
        ).all()
        assert seqs == list(range(total))
        log = session.get(Log, log_id)
        assert log.size == total
        leaves = session.scalars(
            sa.select(Entry.leaf).where(Entry.log_id == log_id).order_by(Entry.seq)
        ).all()
        checkpoint = cut_checkpoint(session, log, world.log_key, now=NOW)
        assert checkpoint.root_hash == merkle.root([merkle.leaf_hash(x) for x in leaves])
        assert verify_journal(session, log).ok
