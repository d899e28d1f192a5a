"""High availability on PostgreSQL's own replication, and several app machines (issue 18).

Failover: a primary and a synchronous standby (``synchronous_commit = remote_apply``), both
clusters of the test's own on loopback. Two teachers' devices sync through gunicorn, which knows
the database only by a multi-host URL with ``target_session_attrs=read-write``. The link to the
standby stalls for a moment and, during it, the primary is SIGKILLed (postmaster and backends,
as when its machine dies): commits made in that moment must not have been acknowledged. The
standby is promoted, and a new standby is rebuilt from it on the dead primary's address, as the
runbook in docs/operations.md says. The app carries on by itself: every entry a device was
told is stored is in the promoted database exactly once, at that seq; every journal verifies;
what was unanswered when the primary died is sent again by the devices. Under asynchronous
replication the same test loses acknowledged entries (tried: 113 of 244) and fails.

Two app machines: two separate gunicorn instances (each its own instance folder) on one
PostgreSQL, each device sending each request to either at random, two devices per journal: the
seqs stay gap-free and each entry is stored once.

``JOURNAL_LONG_TESTS=1`` runs more failovers and longer syncing; ``JOURNAL_CRASH_SEED`` replays.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from .conftest import scaled
from .outbox import Device
from .servers import (
    Gunicorn,
    LiveJournal,
    PrivatePostgres,
    another_device,
    multi_host_url,
    seed_teachers,
)
from .teaching import assert_each_entry_once, crash_seed, run_devices_through

FAILOVERS = scaled(1, 4)
SYNCING = scaled(1.5, 8.0)  # seconds the devices sync between two failovers
TWO_SERVERS_SYNCING = scaled(3.0, 30.0)


def entries_on(cluster: PrivatePostgres) -> int:
    engine = sa.create_engine(cluster.url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM entries")).scalar_one())
    finally:
        engine.dispose()


def acknowledged(devices: list[Device]) -> int:
    return sum(len(device.stored) for device in devices)


def test_failover_to_a_synchronous_standby_loses_no_acknowledged_entry(
    replicated_postgres: tuple[PrivatePostgres, Path], tmp_path: Path
):
    primary, folder = replicated_postgres
    seed = crash_seed()
    standby = primary.create_standby(folder / "standby-1")
    primary.require_synchronous_standby()
    journal = LiveJournal.on(multi_host_url(primary, standby), tmp_path / "journal")
    try:
        fail_over_while_syncing(journal, folder, primary, standby, random.Random(seed), seed)
    finally:
        journal.dispose()


def fail_over_while_syncing(
    journal: LiveJournal,
    folder: Path,
    primary: PrivatePostgres,
    standby: PrivatePostgres,
    rng: random.Random,
    seed: int,
) -> None:
    teachers = seed_teachers(journal, 2)
    journal.dispose()
    server = Gunicorn(journal, workers=2)
    server.start()
    devices: list[Device] = []
    rounds: list[str] = []

    def fail_over_again_and_again() -> None:
        nonlocal primary, standby
        for number in range(FAILOVERS):
            time.sleep(rng.uniform(SYNCING / 2, SYNCING))
            with primary.replication_stalled():
                # The link to the standby stalls just before the primary dies: commits made
                # meanwhile must not have been acknowledged (with asynchronous replication they
                # would be, and then lost: this test fails so).
                time.sleep(rng.uniform(0.2, 0.5))
                before = acknowledged(devices)
                primary.kill()  # mid-batch: commits are waiting for the standby's apply
            time.sleep(rng.uniform(0.2, 1.0))  # noticed; the devices' syncs fail meanwhile
            standby.promote()
            # The dead primary's machine comes back as the new standby, on its old address,
            # so the app's URL stays as it is.
            rebuilt = standby.create_standby(folder / f"standby-{number + 2}", port=primary.port)
            standby.require_synchronous_standby()
            primary, standby = standby, rebuilt
            deadline = time.monotonic() + 30
            while acknowledged(devices) <= before + 1 and time.monotonic() < deadline:
                time.sleep(0.05)  # the app reaches the new primary by itself
            rounds.append(f"{before}->{acknowledged(devices)}")
        time.sleep(0.3)

    try:
        devices, exchanges = run_devices_through(
            journal, server, teachers, rng, fail_over_again_and_again, watch=devices
        )
    finally:
        server.stop()
    outcomes = Counter(str(e.status) for e in exchanges if e.kind == "sync")
    retries = sum(device.retries for device in devices)
    print(f"seed {seed}: acknowledged at each failover {rounds}, sync outcomes {dict(outcomes)}")
    assert len(rounds) == FAILOVERS
    # Every failover cost requests that the devices sent again.
    assert retries >= FAILOVERS and set(outcomes) - {"200"}, f"seed {seed}: {outcomes}"
    for acknowledged_then in rounds:
        before, after = map(int, acknowledged_then.split("->"))
        assert 0 < before < after, f"seed {seed}: no sync before or after a failover {rounds}"
    # The app's URL now leads to the promoted cluster, which has it all.
    with journal.app.app_context():
        from journal.db import db

        assert db.session.scalar(sa.text("SELECT inet_server_port()")) == primary.port
        assert db.session.scalar(sa.text("SELECT pg_is_in_recovery()")) is False
        db.session.rollback()
    assert_each_entry_once(journal, devices, seed)
    # remote_apply: the rebuilt standby shows every committed entry already.
    assert entries_on(standby) == entries_on(primary)


def test_two_app_servers_append_to_the_same_journals(live_journal: LiveJournal, tmp_path: Path):
    seed = crash_seed()
    rng = random.Random(seed)
    teachers = seed_teachers(live_journal, 2)
    # Two devices per journal, so that both servers append to each journal at once.
    devices = teachers + [another_device(live_journal, teacher) for teacher in teachers]
    first = Gunicorn(live_journal, workers=2)
    second = Gunicorn(
        live_journal, workers=2, environment={"JOURNAL_INSTANCE": str(tmp_path / "machine-2")}
    )
    try:
        for server in (first, second):
            server.launch()  # both load the app at once
        for server in (first, second):
            server.wait_ready(60)
        synced, exchanges = run_devices_through(
            live_journal,
            first,
            devices,
            rng,
            lambda: time.sleep(TWO_SERVERS_SYNCING),
            mirrors=[second],
        )
    finally:
        first.stop()
        second.stop()
    answered = Counter(
        (e.server, str(e.status)) for e in exchanges if e.kind == "sync" and e.status == 200
    )
    print(f"seed {seed}: sync answers by server {dict(answered)}")
    assert answered[(first.url, "200")] > 0 and answered[(second.url, "200")] > 0
    assert_each_entry_once(live_journal, synced, seed)
