"""Teachers' devices that keep syncing through trouble, and the check that follows it: each
entry a device made is in its journal exactly once, at the seq the device was told, every log is
gap-free and every journal verifies. Shared by the crash, failover and two-server tests.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from .outbox import Device, Exchange
from .servers import Gunicorn, LiveJournal, Teacher

OUTBOX_HIGH_WATER = 200


def crash_seed() -> int:
    """``JOURNAL_CRASH_SEED`` replays a sequence; the seed is in every failure message."""
    return int(os.environ.get("JOURNAL_CRASH_SEED") or random.SystemRandom().randrange(2**32))


class Teaching(threading.Thread):
    """A device that keeps signing entries and syncing them, until ``stop`` is set."""

    def __init__(self, device: Device, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.device = device
        self.rng = rng
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        teacher = self.device.teacher
        try:
            while not self.stop.is_set():
                if len(self.device.outbox) < OUTBOX_HIGH_WATER:
                    for _ in range(self.rng.randint(5, 40)):
                        self.device.make_entry(
                            self.rng.choice(["grade", "attendance"]),
                            self.rng.choice(teacher.lessons),
                            self.rng.choice(teacher.students),
                        )
                self.device.sync(batch_size=self.rng.choice([10, 25, 50]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def run_devices_through(
    journal: LiveJournal,
    server: Gunicorn,
    teachers: list[Teacher],
    rng: random.Random,
    trouble: Callable[[], None],
    *,
    mirrors: Sequence[Gunicorn] = (),
    watch: list[Device] | None = None,
) -> tuple[list[Device], list[Exchange]]:
    """One device per ``Teacher`` (two may share a journal) syncs while ``trouble()`` runs,
    each request to ``server`` or one of ``mirrors`` at random; then they drain their
    outboxes. ``watch``, when given, receives the devices before the trouble starts."""
    exchanges: list[Exchange] = []
    devices = [
        Device(
            teacher,
            server.url,
            journal.session_cookie(teacher),
            mirrors=tuple(mirror.url for mirror in mirrors),
            timeout=20,
            rng=random.Random(rng.random()),
            on_exchange=exchanges.append,
        )
        for teacher in teachers
    ]
    if watch is not None:
        watch.extend(devices)
    workers = [Teaching(device, random.Random(rng.random())) for device in devices]
    for worker in workers:
        worker.start()
    try:
        trouble()
    finally:
        for worker in workers:
            worker.stop.set()
            worker.join(timeout=60)
    for worker in workers:
        assert worker.error is None, repr(worker.error)
    deadline = time.monotonic() + 60
    for device in devices:
        device.drain(deadline, batch_size=50)
    return devices, exchanges


def assert_each_entry_once(journal: LiveJournal, devices: list[Device], seed: int) -> None:
    """Every entry made is stored once, at the seq its device was told; logs are gap-free and
    every journal verifies (a checkpoint is cut and checked)."""
    made: dict[str, list[str]] = defaultdict(list)
    for device in devices:
        assert device.refused == [], f"seed {seed}: refused {device.refused[:3]}"
        assert len(device.stored) == len(device.made), f"seed {seed}"
        made[device.teacher.origin].extend(device.made)
    audit = journal.audit(made)
    assert audit.ok, f"seed {seed}: {audit}"
    assert audit.verified == len(made)
    stored_seqs = journal_seqs(journal, list(made))
    for device in devices:
        # Answers seen after a retry ("duplicate") name the seq the first, unseen answer had.
        assert device.stored == {i: stored_seqs[i] for i in device.made}, f"seed {seed}"


def journal_seqs(journal: LiveJournal, origins: list[str]) -> dict[str, int]:
    import sqlalchemy as sa

    from journal.db import db
    from journal.models import Entry, Log

    with journal.app.app_context():
        rows = db.session.execute(
            sa.select(Entry.entry_id, Entry.seq)
            .join(Log, Log.id == Entry.log_id)
            .where(Log.origin.in_(origins))
        ).all()
    return {row.entry_id: row.seq for row in rows}
