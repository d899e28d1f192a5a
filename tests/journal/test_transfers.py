"""A pupil leaves school A: A issues a signed transfer extract of the year's СОР/СОЧ results;
school B carries them in as "carried in" entries with the document's SHA-256. A tampered, foreign
or untrusted extract is refused and nothing is written."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import sqlalchemy as sa

from auth.iin import iin_lookup_hash
from journal.models import Entry
from journal.recording.recorder import record_entry
from journal.transfers.extract import TransferError, carried_in, carry_in, transfer_extract
from journal.year.closing import close_term

from ..factories import NOW, add_user, build_world

IIN = "110315500018"
OTHER_IIN = "120101500014"


def _entries(session: Any) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(Entry)))


@pytest.fixture
def schools(session: Any, app: Any) -> Any:
    key = app.config["IIN_HMAC_KEY"]
    old = build_world(session, app.config["KEYS_DIR"])
    new = build_world(session, app.config["KEYS_DIR"])
    old.student.iin_hmac = iin_lookup_hash(IIN, key)
    for component, value in (
        ("SOR", {"points": 12, "max": 15}),
        ("SOCh", {"points": 18, "max": 25}),
    ):
        record_entry(session, old.signed("grade", component=component, value=value), now=NOW)
    record_entry(session, old.signed("grade", value={"score": 7}), now=NOW)  # ФО: not carried
    arrived = new.add_student(last_name=old.student.last_name, first_name=old.student.first_name)
    arrived.iin_hmac = iin_lookup_hash(IIN, key)
    stranger = new.add_student()
    stranger.iin_hmac = iin_lookup_hash(OTHER_IIN, key)
    session.flush()
    return old, new, arrived, stranger


def test_a_transfer_extract_is_carried_in(session: Any, schools: Any) -> None:
    old, new, arrived, _stranger = schools
    admin = add_user(session, old.school, "school_admin")
    close_term(session, old.q2, old.log_key, closed_by=admin, now=NOW, reason="test")
    data = transfer_extract(session, old.log_key, old.student, old.class_group)
    document = json.loads(data)
    assert {r["component"] for r in document["extract"]["results"]} == {"SOR", "SOCh"}
    # ФО 7/10 · 25 % + СОР 12/15 · 25 % + СОЧ 18/25 · 50 % = 73.5 % → 4, sealed at closing.
    assert document["extract"]["term_grades"] == [
        {"subject": old.subject.name, "term": 2, "grade": "4"}
    ]
    carried = carry_in(
        session, new.log_key, data, arrived, new.class_group, trusted_vkeys={old.school.log_vkey}
    )
    assert len(carried) == 3
    assert carried[-1]["term_grade"] == {"subject": old.subject.name, "term": 2, "grade": "4"}
    entries = [e for e in carried_in(session, new.class_group, arrived) if "result" in e]
    digest = hashlib.sha256(data).hexdigest()
    assert sorted(e["result"]["points"] for e in entries) == [12, 18]
    assert all(e["carried_in"] is True and e["source"]["sha256"] == digest for e in entries)
    assert all(e["source"]["school"] == old.school.domain for e in entries)
    # The same document twice: refused.
    before = _entries(session)
    with pytest.raises(TransferError, match="already"):
        carry_in(
            session,
            new.log_key,
            data,
            arrived,
            new.class_group,
            trusted_vkeys={old.school.log_vkey},
        )
    assert _entries(session) == before


def test_a_tampered_foreign_or_untrusted_extract_writes_nothing(session: Any, schools: Any) -> None:
    old, new, arrived, stranger = schools
    data = transfer_extract(session, old.log_key, old.student, old.class_group)
    trusted = {old.school.log_vkey}
    tampered = data.replace(b'"points": 12', b'"points": 15')
    assert tampered != data
    before = _entries(session)
    refusals = [
        (tampered, arrived, trusted, "changed after it was signed"),
        (data, stranger, trusted, "another pupil"),
        (data, arrived, {new.school.log_vkey}, "does not trust"),
        (b"not json", arrived, trusted, "not a transfer extract"),
    ]
    for document, pupil, keys, reason in refusals:
        with pytest.raises(TransferError, match=reason):
            carry_in(session, new.log_key, document, pupil, new.class_group, trusted_vkeys=keys)
    assert _entries(session) == before
    assert carried_in(session, new.class_group, arrived) == []


def test_transfer_commands(app: Any, session: Any, schools: Any, tmp_path: Any) -> None:
    old, new, arrived, stranger = schools
    session.commit()
    runner = app.test_cli_runner()
    path = tmp_path / "transfer.json"
    made = runner.invoke(
        args=["transfer", "extract", "--student", str(old.student.id), "--class",
              str(old.class_group.id), "--output", str(path)]
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    refused = runner.invoke(
        args=["transfer", "carry-in", "--student", str(stranger.id), "--class",
              str(new.class_group.id), str(path)]
    )  # fmt: skip
    assert refused.exit_code != 0 and "another pupil" in refused.output
    done = runner.invoke(
        args=["transfer", "carry-in", "--student", str(arrived.id), "--class",
              str(new.class_group.id), str(path)]
    )  # fmt: skip
    assert done.exit_code == 0 and "2 value(s) carried in" in done.output


def test_a_journal_bag_with_carried_in_entries_verifies(
    app: Any, session: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carried-in entries are records of the new class's journal: its archive bag still
    verifies with the standalone verifier (a run with the full read-back verifies each bag
    after upload)."""
    from pathlib import Path

    from archive.services import ArchiveSettings, run_archive
    from archive.storage import LocalWormStorage
    from tests.archive.school import build_past_school

    key = app.config["IIN_HMAC_KEY"]
    old = build_world(session, app.config["KEYS_DIR"])
    old.student.iin_hmac = iin_lookup_hash(IIN, key)
    record_entry(
        session, old.signed("grade", component="SOR", value={"points": 9, "max": 10}), now=NOW
    )
    data = transfer_extract(session, old.log_key, old.student, old.class_group)
    past = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    arrived = past.students[0]
    arrived.iin_hmac = iin_lookup_hash(IIN, key)
    carry_in(
        session,
        past.log_key,
        data,
        arrived,
        past.classes[0],
        trusted_vkeys={old.school.log_vkey},
    )
    session.commit()
    settings = ArchiveSettings(
        storage=LocalWormStorage(tmp_path / "store"),
        staging_dir=tmp_path / "staging",
        keys_dir=Path(app.config["KEYS_DIR"]),
        full_readback=True,
    )
    outcomes = run_archive(session, settings, domains=[past.school.domain])
    assert [o.failed for o in outcomes] == [[]]
    assert any("journal-2024-2025-class" in key for key in outcomes[0].sealed)
