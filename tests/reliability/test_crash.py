"""Crashes in the middle of batch syncs lose and double nothing (DESIGN §3.7).

Two teachers' devices keep signing entries and syncing them over HTTP to gunicorn (2 workers,
PostgreSQL on loopback) while the test SIGKILLs the whole server (master and workers) N times,
restarting it each time, or cuts every PostgreSQL connection of the database. Afterwards every
entry a device made is in its journal exactly once, at the seq the device was told, the log is
gap-free, and a checkpoint cut now verifies with the whole journal.

PostgreSQL is restarted for real on a cluster of the test's own (``PrivatePostgres``: initdb in
a temporary folder, a free loopback port), alternately as a service restart (``fast``) and as a
crash (``immediate``, with WAL replay), while the devices sync. Each connection cut is tested
too, by terminating every backend of a database on the shared cluster. The pool must recover
from both (``journal.db`` drops connections their server closed before handing them out).

``JOURNAL_CRASH_SEED`` replays a sequence; the seed is in every failure message.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from .conftest import scaled
from .servers import Gunicorn, LiveJournal, PrivatePostgres, seed_teachers
from .teaching import assert_each_entry_once, crash_seed, run_devices_through

KILLS = scaled(10, 100)
CUTS = scaled(5, 30)
RESTARTS = scaled(3, 20)
# How a request that was on its way when the server died fails (not "connection refused").
INTERRUPTED = {"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError", "IncompleteRead"}


def test_sigkill_of_the_server_mid_sync_loses_and_doubles_nothing(live_journal: LiveJournal):
    seed = crash_seed()
    rng = random.Random(seed)
    teachers = seed_teachers(live_journal, 2)
    server = Gunicorn(live_journal, workers=2)
    server.start()

    def kill_again_and_again() -> None:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.5))  # the devices are mid-batch most of the time
            server.kill()
            server.start()

    try:
        devices, exchanges = run_devices_through(
            live_journal, server, teachers, rng, kill_again_and_again
        )
    finally:
        server.stop()
    outcomes = Counter(str(e.status) for e in exchanges if e.kind == "sync")
    interrupted = sum(outcomes[name] for name in INTERRUPTED)
    duplicates = sum(d.duplicates for d in devices)
    print(f"seed {seed}: {KILLS} kills, sync outcomes {dict(outcomes)}, {duplicates} duplicates")
    # Most kills land while a batch is on its way, some after its commit (answered "duplicate"
    # when the device sends it again).
    assert interrupted >= KILLS // 2, f"seed {seed}: the kills missed the batches {outcomes}"
    assert_each_entry_once(live_journal, devices, seed)


def test_postgresql_connections_cut_mid_sync_lose_nothing(live_journal: LiveJournal):
    seed = crash_seed()
    rng = random.Random(seed)
    teachers = seed_teachers(live_journal, 2)
    server = Gunicorn(live_journal, workers=2)
    server.start()
    cut: list[int] = []

    def restart_postgresql_again_and_again() -> None:
        for _ in range(CUTS):
            time.sleep(rng.uniform(0.1, 0.6))
            cut.append(live_journal.terminate_backends(wait=5))
        time.sleep(0.3)  # the devices sync once more on the fresh connections

    try:
        devices, exchanges = run_devices_through(
            live_journal, server, teachers, rng, restart_postgresql_again_and_again
        )
    finally:
        server.stop()
    outcomes = Counter(str(e.status) for e in exchanges if e.kind == "sync")
    print(f"seed {seed}: backends cut {cut}, sync outcomes {dict(outcomes)}")
    # After a cut a worker connects again only on its next request, and a device told 503 waits
    # before it sends again: each cut waits for a connection first (up to 5 s), so that cuts
    # land on live connections rather than on an idle pool. Most must have found some.
    assert sum(1 for n in cut if n) >= CUTS // 2, f"seed {seed}: few connections to cut {cut}"
    assert outcomes["200"] > 0
    assert_each_entry_once(live_journal, devices, seed)


def test_postgresql_restarted_mid_sync_loses_and_doubles_nothing(
    private_postgres: PrivatePostgres, restartable_journal: LiveJournal
):
    seed = crash_seed()
    rng = random.Random(seed)
    teachers = seed_teachers(restartable_journal, 2)
    restartable_journal.dispose()  # the test's own connections must not hold the restart up
    server = Gunicorn(restartable_journal, workers=2)
    server.start()
    modes = ["fast", "immediate"] * RESTARTS

    def restart_postgresql_again_and_again() -> None:
        for mode in modes[:RESTARTS]:
            time.sleep(rng.uniform(0.2, 0.8))  # the devices are mid-batch most of the time
            private_postgres.restart(mode)
        time.sleep(0.5)  # the devices sync once more after the last start

    try:
        devices, exchanges = run_devices_through(
            restartable_journal, server, teachers, rng, restart_postgresql_again_and_again
        )
    finally:
        server.stop()
    outcomes = Counter(str(e.status) for e in exchanges if e.kind == "sync")
    print(f"seed {seed}: {private_postgres.restarts} restarts, sync outcomes {dict(outcomes)}")
    assert private_postgres.restarts == RESTARTS
    # The restarts cost some requests (answered 5xx or cut), and the devices retried them.
    assert set(outcomes) - {"200"}, f"seed {seed}: no request met a restart {outcomes}"
    assert_each_entry_once(restartable_journal, devices, seed)
