"""``flask archive run`` killed with SIGKILL at ten random points, then run again: it completes and
every bag verifies, nothing is stored twice, each seal is recorded once.

Half of the kills land on named steps (``JOURNAL_ARCHIVE_CRASH_AT=<step>:<n>``: after planning,
after staging the tar, after recording it, before, during and after the upload, after the
read-back check, after sealing), half at random moments (mid-build, mid-upload, mid-commit).
``JOURNAL_CRASH_SEED`` replays a failing sequence; the seed is printed on failure.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from archive.models import ArchivedBag, ArchiveRun
from archive.readback import verify_stored_bag
from archive.services import ArchiveSettings, school_lock
from archive.storage import LocalWormStorage
from journal.db import db
from journal.models import Entry
from journal.services import verify_journal
from tests.archive.school import build_past_school

REPO = Path(__file__).resolve().parents[2]
STEPS = ("planned", "staged", "built", "uploading", "uploaded", "verified", "sealed")
CLASSES = 6  # 6 × (4 quarters + year) + 1 ledger = 31 bags: more than ten kills can finish


def _environment(app: Any, tmp_path: Path) -> dict[str, str]:
    config = app.config
    return {
        **os.environ,
        "JOURNAL_TESTING": "true",
        "JOURNAL_INSTANCE": str(tmp_path / "instance"),
        "JOURNAL_DATABASE_URL": config["DATABASE_URL"],
        "JOURNAL_KEYS_DIR": config["KEYS_DIR"],
        "JOURNAL_ARCHIVE_STORAGE": "local",
        "JOURNAL_ARCHIVE_LOCAL_ROOT": str(tmp_path / "store"),
        "JOURNAL_ARCHIVE_LOCAL_IMMUTABLE": "false",
        "JOURNAL_ARCHIVE_STAGING_DIR": str(tmp_path / "staging"),
        "JOURNAL_IIN_ENCRYPTION_KEY": config["IIN_ENCRYPTION_KEY"],
        "JOURNAL_IIN_HMAC_KEY": config["IIN_HMAC_KEY"],
    }


def _wait_until_unlocked(app: Any, school_id: int) -> None:
    """A killed run's PostgreSQL backend lets go of the lock a moment after the client dies."""
    deadline = time.monotonic() + 10
    with app.app_context():
        while True:
            with school_lock(db.session, school_id) as free:
                if free:
                    return
            assert time.monotonic() < deadline, "the school lock was never released"
            time.sleep(0.1)


def _working(staging: Path) -> bool:
    return staging.is_dir() and any(staging.iterdir())


def test_archive_run_survives_sigkill_at_ten_random_points(fresh_app: Any, tmp_path: Path) -> None:
    seed = int(os.environ.get("JOURNAL_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    with fresh_app.app_context():
        past = build_past_school(db.session, fresh_app.config["KEYS_DIR"], classes=CLASSES)
        db.session.commit()
        school_id, ledger_id = past.school.id, past.ledger.id
        ledger_vkey = past.school.log_vkey
    env = _environment(fresh_app, tmp_path)
    staging = tmp_path / "staging"
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "archive", "run"]

    history = []
    for attempt in range(10):
        _wait_until_unlocked(fresh_app, school_id)
        run_env = dict(env)
        if attempt % 2 == 0:
            step = rng.choice(STEPS)
            point = f"{step}:{1 if step == 'planned' else rng.randint(1, 2)}"
            run_env["JOURNAL_ARCHIVE_CRASH_AT"] = point
        process = subprocess.Popen(
            command, cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        if attempt % 2 == 1:
            # Kill at a random moment once bags are being built (start-up takes a second or
            # two; the work itself well under one).
            delay = rng.uniform(0.0, 0.12)
            point = f"{delay:.3f} s into the work"
            while process.poll() is None and not _working(staging):
                time.sleep(0.005)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=120)
        history.append((point, process.returncode))
        assert process.returncode == -signal.SIGKILL, (
            f"seed {seed}: the run to be killed {point} exited {process.returncode} "
            f"(history {history})\n{output.decode()}"
        )

    _wait_until_unlocked(fresh_app, school_id)
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, f"seed {seed}, {history}\n{final.stdout}{final.stderr}"

    settings = ArchiveSettings(
        storage=LocalWormStorage(tmp_path / "store"),
        staging_dir=tmp_path / "staging",
        keys_dir=Path(fresh_app.config["KEYS_DIR"]),
    )
    with fresh_app.app_context():
        session = db.session
        rows = list(session.scalars(sa.select(ArchivedBag).order_by(ArchivedBag.id)))
        assert len(rows) == CLASSES * 5 + 1 and {row.state for row in rows} == {"sealed"}
        for row in rows:
            report = verify_stored_bag(row, settings, ledger_vkey)
            assert report.ok, f"seed {seed}, {history}: {row.key}\n{report.text()}"
        # Each bag stored once, each seal recorded once, the ledger log whole.
        stored = list(settings.storage.list())
        assert sorted(obj.key for obj in stored) == sorted(row.key for row in rows)
        assert settings.storage.audit() == []
        index = (tmp_path / "store" / "index.jsonl").read_text().splitlines()
        assert sum('"op": "put"' in line for line in index) == len(rows)
        kinds = list(session.scalars(sa.select(Entry.kind).where(Entry.log_id == ledger_id)))
        records = list(
            session.scalars(
                sa.select(Entry.student_id).where(
                    Entry.log_id == ledger_id, Entry.kind == "ledger_record"
                )
            )
        )
        # One summary-ledger record per student, never two, whatever the kills.
        assert records and len(records) == len(set(records))
        assert sorted(kinds) == sorted(
            ["pdf_signer_registered"]  # by the first printout, once whatever the kills
            + ["journal_sealed"] * (CLASSES * 5)
            + ["ledger_record"] * len(records)
            + ["ledger_sealed"]
        )
        ledger = session.get(type(past.ledger), ledger_id)
        assert verify_journal(session, ledger).ok
        # Killed runs are marked as interrupted by the next run; the last one finished.
        runs = list(session.scalars(sa.select(ArchiveRun).order_by(ArchiveRun.id)))
        assert runs[-1].status == "done" and "running" not in {run.status for run in runs}
        assert sum("interrupted" in (run.error or "") for run in runs) >= 5
    assert [p.name for p in (tmp_path / "staging").iterdir()] == []
