"""The archive run and expiry, on SQLite and PostgreSQL, against the local store and SeaweedFS.

What an operator or inspector would notice: which bags exist, that each verifies on its own, that
retention holds (the store itself refuses), that a second run stores nothing, and that the school
ledger log records every seal and every destruction and still verifies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.bag import tar_to_bag, validate_bag
from archive.models import ArchivedBag, ArchiveRun, BagDestruction
from archive.readback import verify_stored_bag
from archive.services import (
    ArchiveSettings,
    DueBag,
    bag_content,
    build_staged_bag,
    due_journal_bags,
    due_ledger_bags,
    plan_bag,
    run_archive,
    run_expire,
    school_lock,
    staged_path,
    upload_bag,
)
from archive.storage import LocalWormStorage, RetentionError, S3ObjectLockStorage
from archive.timestamps import HttpTimestampAuthority, verify_timestamp
from journal.keys import LogKey, create_log_key
from journal.models import Checkpoint, Entry, Log
from journal.services import cut_checkpoint, verify_journal
from tests.archive.conftest import LocalTSA, SeaweedFS
from tests.archive.school import PastSchool, build_past_school
from tests.external import need_tool

BAGIT_SCRIPT = Path(sys.executable).parent / "bagit.py"
JOURNAL_UNTIL = dt.date(2030, 5, 25)  # 2024-2025 ends 2025-05-25: + 5 years
LEDGER_UNTIL = dt.date(2050, 5, 25)  # + 25 years


@pytest.fixture
def settings(app: Any, tmp_path: Path) -> ArchiveSettings:
    return ArchiveSettings(
        storage=LocalWormStorage(tmp_path / "store"),
        staging_dir=tmp_path / "staging",
        keys_dir=Path(app.config["KEYS_DIR"]),
    )


@pytest.fixture
def past(session: Any, app: Any) -> PastSchool:
    return build_past_school(session, app.config["KEYS_DIR"])


def bags(session: Any, past: PastSchool) -> dict[str, ArchivedBag]:
    rows = session.scalars(sa.select(ArchivedBag).where(ArchivedBag.school_id == past.school.id))
    return {row.bag_name: row for row in rows}


def ledger_records(session: Any, past: PastSchool) -> list[dict[str, Any]]:
    leaves = session.scalars(
        sa.select(Entry.leaf).where(Entry.log_id == past.ledger.id).order_by(Entry.seq)
    )
    return [json.loads(leaf)["payload"] for leaf in leaves]


def extract(storage: Any, key: str, dest: Path) -> Path:
    bag_dir = tar_to_bag(storage.get(key), dest)
    validate_bag(bag_dir)
    return bag_dir


# --------------------------------------------------------------------------- the run


def test_run_seals_every_closed_quarter_finished_year_and_the_ledger(
    session: Any, past: PastSchool, settings: ArchiveSettings, tmp_path: Path
) -> None:
    [outcome] = run_archive(session, settings)
    assert outcome.error is None
    sealed = bags(session, past)
    class_ids = [group.id for group in past.classes]
    expected = {f"journal-2024-2025-class{c}-q{q}" for c in class_ids for q in (1, 2, 3, 4)}
    expected |= {f"journal-2024-2025-class{c}-year" for c in class_ids}
    expected |= {"ledger-2024-2025"}
    assert set(sealed) == expected
    assert all(bag.state == "sealed" for bag in sealed.values())
    assert {bag.retain_until for name, bag in sealed.items() if name.startswith("journal")} == {
        JOURNAL_UNTIL
    }
    assert sealed["ledger-2024-2025"].retain_until == LEDGER_UNTIL
    stored = {obj.key: obj for obj in settings.storage.list()}
    assert set(stored) == {f"{past.school.domain}/{name}.tar" for name in expected}
    for bag in sealed.values():
        assert stored[bag.key].sha512 == bag.sha512
        assert stored[bag.key].retain_until == dt.datetime.combine(
            bag.retain_until, dt.time(), dt.UTC
        )
    # The first printout registered the school's PDF certificate; the ledger bag was sealed
    # last, after the seals it holds were recorded. Then each student's summary-ledger record
    # (what registrars issue duplicates from).
    records = ledger_records(session, past)
    students = sum(1 for r in records if r["kind"] == "ledger_record")
    assert students > 0
    assert [r["kind"] for r in records] == (
        ["pdf_signer_registered"]
        + ["journal_sealed"] * 10
        + ["ledger_record"] * students
        + ["ledger_sealed"]
    )
    ledger_bag = extract(settings.storage, sealed["ledger-2024-2025"].key, tmp_path / "out")
    held = (ledger_bag / "data" / "entries.jsonl").read_bytes().count(b"\n")
    assert held == 11 + students == sealed["ledger-2024-2025"].checkpoint_size
    # Every bag carries its signed printouts.
    printouts = sorted(p.name for p in (ledger_bag / "data" / "printouts").rglob("*.pdf"))
    assert printouts == [f"ledger-class{c.id}.pdf" for c in past.classes]
    assert all(p.read_bytes().startswith(b"%PDF") for p in (ledger_bag / "data").rglob("*.pdf"))


def test_only_closed_quarters_are_archived_and_no_year_before_it_is_over(
    session: Any, app: Any, settings: ArchiveSettings
) -> None:
    past = build_past_school(session, app.config["KEYS_DIR"], close=2)
    run_archive(session, settings)
    names = set(bags(session, past))
    assert names == {f"journal-2024-2025-class{c.id}-q{q}" for c in past.classes for q in (1, 2)}
    for term in past.quarters[2:]:
        term.closed_at = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    session.flush()
    # Every quarter closed, but as of the year's last day the year is not over yet.
    early = replace(settings, today=past.year.ends_on)
    run_archive(session, early)
    assert not any(
        name.endswith("-year") or name.startswith("ledger") for name in bags(session, past)
    )
    run_archive(session, settings)
    assert "ledger-2024-2025" in bags(session, past)


def test_running_twice_stores_nothing_twice(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    index = (settings.storage.root / "index.jsonl").read_bytes()
    ledger_size = past.ledger.size
    [again] = run_archive(session, settings)
    assert again.sealed == [] and again.error is None
    assert (settings.storage.root / "index.jsonl").read_bytes() == index
    session.refresh(past.ledger)
    assert past.ledger.size == ledger_size
    runs = session.scalars(sa.select(ArchiveRun).where(ArchiveRun.school_id == past.school.id))
    assert [(r.status, r.bags_done) for r in runs] == [("done", 11), ("done", 0)]


def test_a_journal_bag_holds_the_log_keys_and_verifier(
    session: Any, past: PastSchool, settings: ArchiveSettings, tmp_path: Path
) -> None:
    run_archive(session, settings)
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[0].id}-q2"]
    bag_dir = extract(settings.storage, bag.key, tmp_path / "out")
    data = bag_dir / "data"
    journal = past.logs[0]
    leaves = list(
        session.scalars(sa.select(Entry.leaf).where(Entry.log_id == journal.id).order_by(Entry.seq))
    )
    assert (data / "entries.jsonl").read_bytes() == b"".join(leaf + b"\n" for leaf in leaves)
    assert (data / "checkpoints" / f"{journal.size}.checkpoint").is_file()
    assert (data / "keys" / "log.vkey").read_text().strip() == past.school.log_vkey
    keys = json.loads((data / "keys" / "device-keys.json").read_text())
    assert past.devices[0].kid in keys
    assert (data / "verify" / "ledger" / "audit.py").read_bytes() == (
        Path("journal/ledger/audit.py").read_bytes()
    )
    assert (data / "VERIFY.md").read_bytes() == Path("archive/verify/VERIFY.md").read_bytes()
    assert (data / "FORMATS.md").read_bytes() == Path("docs/formats.md").read_bytes()
    # The printouts' signer and its issuer, for pdfsig's certificate database.
    assert (data / "keys" / "pdf-signer.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert (data / "keys" / "pdf-ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert (data / "verify" / "verify.py").is_file() and (bag_dir / "bag-seal.note").is_file()
    info = (bag_dir / "bag-info.txt").read_text()
    for line in (
        f"External-Identifier: {bag.key.removesuffix('.tar')}",
        "Tier: journal-5y",
        "Retention-Until: 2030-05-25",
        "Source-Organization: Өскемен №3 мектеп-лицейі",
        f"Bagging-Date: {dt.datetime.now(dt.UTC).date()}",
        f"Log-Origin: {journal.origin}",
        f"Checkpoint-Size: {journal.size}",
        "Quarter: 2",
        "Class-Name: 5Ғ",
    ):
        assert line in info.splitlines()
    assert verify_stored_bag(bag, settings, past.school.log_vkey).ok


def test_the_bundled_verifier_checks_the_bag_alone(
    session: Any, past: PastSchool, settings: ArchiveSettings, tmp_path: Path
) -> None:
    run_archive(session, settings)
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[1].id}-year"]
    bag_dir = extract(settings.storage, bag.key, tmp_path / "out")

    def inspector() -> subprocess.CompletedProcess[str]:
        # As VERIFY.md says: from the bag, with the key the school publishes.
        return subprocess.run(
            [sys.executable, "-I", "data/verify/verify.py", "bag", ".", "--vkey",
             past.school.log_vkey],
            cwd=bag_dir, capture_output=True, text=True, check=False,
        )  # fmt: skip

    result = inspector()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: OK" in result.stdout and "[ OK ] Seal" in result.stdout
    entries = bag_dir / "data" / "entries.jsonl"
    entries.chmod(0o644)
    entries.write_bytes(entries.read_bytes().replace(b'"score":8', b'"score":9', 1))
    result = inspector()
    assert result.returncode == 1 and "RESULT: FAILED" in result.stdout
    assert "signature does not match" in result.stdout


def test_read_back_refuses_other_bytes_and_another_checkpoint(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[0].id}-q1"]
    vkey = past.school.log_vkey
    assert verify_stored_bag(bag, settings, vkey).ok
    recorded = bag.sha512
    bag.sha512 = "0" * 128
    report = verify_stored_bag(bag, settings, vkey)
    assert not report.ok and "read back with other bytes" in report.first_failure
    bag.sha512, bag.checkpoint_size = recorded, bag.checkpoint_size - 1
    report = verify_stored_bag(bag, settings, vkey)
    assert not report.ok and "Checkpoint-Size is" in report.first_failure
    session.rollback()
    impostor = LogKey(past.school.domain, Ed25519PrivateKey.generate())
    report = verify_stored_bag(bag, settings, impostor.vkey)
    assert not report.ok and "bag-seal.note is not signed by the school's key" in report.text()


def test_the_ledger_log_with_archive_records_verifies(
    session: Any, past: PastSchool, settings: ArchiveSettings, app: Any
) -> None:
    run_archive(session, settings)
    records = ledger_records(session, past)
    assert {r["device_id"] for r in records} == {past.log_key.kid}
    assert [r["device_seq"] for r in records] == list(range(len(records)))
    assert all(r["author"] is None for r in records)
    sealed = {r["package"]["key"]: r for r in records if "package" in r}
    for bag in bags(session, past).values():
        assert sealed[bag.key]["package"]["sha512"] == bag.sha512
        assert f"\n{bag.checkpoint_size}\n" in sealed[bag.key]["checkpoint"]
    assert verify_journal(session, past.ledger).ok
    result = app.test_cli_runner().invoke(args=["journal", "verify", str(past.ledger.id)])
    assert result.exit_code == 0 and result.output.startswith("OK "), result.output
    assert "under no checkpoint" not in result.output  # the run ended with a checkpoint


def test_a_key_that_is_not_the_schools_fails_the_school_and_writes_nothing(
    session: Any, past: PastSchool, settings: ArchiveSettings, tmp_path: Path
) -> None:
    create_log_key(tmp_path / "other-keys", past.school.domain)  # same name, other key
    [outcome] = run_archive(session, replace(settings, keys_dir=tmp_path / "other-keys"))
    assert outcome.error and "is not " in outcome.error and "published key" in outcome.error
    assert bags(session, past) == {}
    assert session.scalar(sa.select(Log.size).where(Log.id == past.ledger.id)) == 0


def test_a_quarter_bag_covers_the_checkpoint_cut_when_the_quarter_closed(
    session: Any, app: Any, settings: ArchiveSettings
) -> None:
    past = build_past_school(session, app.config["KEYS_DIR"], close=1)
    at_close = cut_checkpoint(session, past.logs[0], past.log_key, now=past.quarters[0].closed_at)
    past.record(session, 0, past.quarters[1], day=5)  # Q2 goes on after Q1 closed
    run_archive(session, settings)
    sealed = bags(session, past)
    first = sealed[f"journal-2024-2025-class{past.classes[0].id}-q1"]
    assert first.checkpoint_size == at_close.size == past.logs[0].size - 1
    # The other class had no checkpoint at Q1's close: one is cut by the run.
    second = sealed[f"journal-2024-2025-class{past.classes[1].id}-q1"]
    assert second.checkpoint_size == past.logs[1].size


def test_a_missing_log_key_fails_the_school_and_writes_nothing(
    session: Any, past: PastSchool, settings: ArchiveSettings, tmp_path: Path
) -> None:
    elsewhere = replace(settings, keys_dir=tmp_path / "no-keys")
    [outcome] = run_archive(session, elsewhere)
    assert outcome.error and "no log key" in outcome.error
    assert bags(session, past) == {}
    assert list(settings.storage.list()) == []


def test_a_class_with_empty_quarters_archives_as_empty_valid_bags(
    session: Any, app: Any, settings: ArchiveSettings, tmp_path: Path
) -> None:
    """A class with no entry at all, and one whose only entries are in Q1: every bag seals."""
    past = build_past_school(
        session, app.config["KEYS_DIR"], classes=2, entries_per_quarter=0, close=0
    )
    past.record(session, 0, past.quarters[0])
    for term in past.quarters:
        term.closed_at = dt.datetime.combine(term.ends_on, dt.time(18), dt.UTC)
    session.flush()
    [outcome] = run_archive(session, settings)
    assert outcome.ok, outcome
    assert len(outcome.sealed) == 11
    sealed = bags(session, past)
    empty = sealed[f"journal-2024-2025-class{past.classes[1].id}-q2"]
    assert empty.checkpoint_size == 0
    bag_dir = extract(settings.storage, empty.key, tmp_path / "out")
    assert (bag_dir / "data" / "entries.jsonl").read_bytes() == b""
    assert verify_stored_bag(empty, settings, past.school.log_vkey).ok
    # Each student's summary-ledger record is there for the registrar, the empty class's too.
    records = [r for r in ledger_records(session, past) if r["kind"] == "ledger_record"]
    assert {r["class"]["id"] for r in records} == {c.id for c in past.classes}


def test_a_run_resumes_from_every_step(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    today = dt.date(2026, 1, 1)
    due = due_journal_bags(session, past.school, today)
    planned = plan_bag(session, settings, past.school, due[0], past.log_key)
    built_gone = plan_bag(session, settings, past.school, due[1], past.log_key)
    build_staged_bag(session, built_gone, settings, past.log_key)
    staged_path(settings, built_gone).unlink()  # staged tar lost before the upload
    uploaded = plan_bag(session, settings, past.school, due[2], past.log_key)
    build_staged_bag(session, uploaded, settings, past.log_key)
    upload_bag(session, uploaded, settings, past.log_key)
    staged_path(settings, uploaded).unlink()  # uploaded, then the machine lost its disk
    session.commit()
    [outcome] = run_archive(session, settings)
    assert outcome.error is None
    for bag in (planned, built_gone, uploaded):
        session.refresh(bag)
        assert bag.state == "sealed"
        assert verify_stored_bag(bag, settings, past.school.log_vkey).ok
    assert len(outcome.sealed) == 11
    assert list(settings.staging_dir.glob("*.tar")) == []


def test_other_bytes_under_a_bags_key_fail_that_bag_and_the_rest_goes_on(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    key = f"{past.school.domain}/journal-2024-2025-class{past.classes[0].id}-q1.tar"
    squatter = b"not this bag"
    settings.storage.put(
        key, squatter, retain_until=LEDGER_UNTIL, sha512=hashlib.sha512(squatter).hexdigest()
    )
    [outcome] = run_archive(session, settings)
    assert outcome.error is None and not outcome.ok
    [failure] = outcome.failed
    assert failure.startswith(key) and "stored with other bytes" in failure
    states = {bag.key: bag.state for bag in bags(session, past).values()}
    assert states.pop(key) == "built"
    # Every other journal bag is sealed; the year's ledger bag waits for the missing one.
    assert set(states.values()) == {"sealed"} and len(states) == 9
    assert len(outcome.sealed) == 9
    [run] = session.scalars(sa.select(ArchiveRun).where(ArchiveRun.school_id == past.school.id))
    assert run.status == "failed" and key in run.error


def test_printouts_come_from_the_exports_hook(
    session: Any, past: PastSchool, settings: ArchiveSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def printouts_for(session: Any, class_group: Any, term: Any) -> dict[str, bytes]:
        name = f"journal-q{term.number}.pdf" if term else "ledger.pdf"
        return {name: b"%PDF-1.7 " + class_group.name.encode()}

    import exports.printouts

    monkeypatch.setattr(exports.printouts, "printouts_for", printouts_for)
    first = past.classes[0]
    due = {
        (item.kind, item.term.number if item.term else None, item.class_group): item
        for item in due_journal_bags(session, past.school, dt.date(2026, 1, 1))
    }
    quarter = plan_bag(
        session, settings, past.school, due["journal_quarter", 3, first], past.log_key
    )
    files, _info = bag_content(session, quarter, settings)
    assert files["printouts/journal-q3.pdf"] == "%PDF-1.7 5Ғ".encode()
    year = plan_bag(session, settings, past.school, due["journal_year", None, first], past.log_key)
    assert [name for name in bag_content(session, year, settings)[0] if ".pdf" in name] == [
        "printouts/ledger.pdf"
    ]
    # The ledger bag keeps every class's summary ledger for 25 years.
    for item in due.values():
        if item.kind == "journal_year" and item.class_group is not first:
            plan_bag(session, settings, past.school, item, past.log_key)
    [ledger_due] = due_ledger_bags(session, past.school, dt.date(2026, 1, 1)) or [None]
    assert ledger_due is None  # not before the journal bags are sealed
    ledger = plan_bag(
        session,
        settings,
        past.school,
        DueBag("ledger_year", past.year, past.ledger),
        past.log_key,
    )
    names = [name for name in bag_content(session, ledger, settings)[0] if ".pdf" in name]
    assert names == [f"printouts/class{c.id}/ledger.pdf" for c in past.classes]


def test_a_school_without_a_pdf_certificate_cannot_seal(
    session: Any, past: PastSchool, settings: ArchiveSettings, app: Any
) -> None:
    from journal.keys import pdf_key_paths

    for path in pdf_key_paths(app.config["KEYS_DIR"], past.school.domain):
        path.unlink()
    [outcome] = run_archive(session, settings)
    assert not outcome.ok and len(outcome.failed) == 10 and outcome.sealed == []
    assert all("no PDF signing key" in failure for failure in outcome.failed)
    assert not list(settings.storage.list())


def test_advisory_lock_keeps_a_second_run_off_the_school(
    session: Any, past: PastSchool, settings: ArchiveSettings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("advisory locks exist on PostgreSQL only; SQLite serializes writers itself")
    with school_lock(session, past.school.id) as first:
        assert first
        with school_lock(session, past.school.id) as second:
            assert not second
        [outcome] = run_archive(session, settings)
        assert outcome.locked and bags(session, past) == {}
    [outcome] = run_archive(session, settings)
    assert not outcome.locked and len(outcome.sealed) == 11


# --------------------------------------------------------------------------- expiry


def test_expire_keeps_everything_four_years_on(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    [outcome] = run_expire(session, settings, today=dt.date(2029, 6, 1))
    assert outcome.destroyed == [] and outcome.kept == 11
    assert len(list(settings.storage.list())) == 11
    # One day before the end of retention is still too early, by the app and by the store.
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[0].id}-q1"]
    with pytest.raises(RetentionError):
        settings.storage.delete(bag.key, today=JOURNAL_UNTIL - dt.timedelta(days=1))
    [outcome] = run_expire(session, settings, today=JOURNAL_UNTIL - dt.timedelta(days=1))
    assert outcome.destroyed == []


def test_expire_six_years_on_destroys_journal_bags_and_keeps_the_ledger(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    ledger_size = session.scalar(sa.select(Log.size).where(Log.id == past.ledger.id))
    [outcome] = run_expire(session, settings, today=dt.date(2031, 6, 1))
    assert len(outcome.destroyed) == 10 and outcome.kept == 1 and outcome.refused == []
    assert [obj.key for obj in settings.storage.list()] == [
        f"{past.school.domain}/ledger-2024-2025.tar"
    ]
    states = {name: bag.state for name, bag in bags(session, past).items()}
    assert states.pop("ledger-2024-2025") == "sealed"
    assert set(states.values()) == {"destroyed"}
    destructions = list(session.scalars(sa.select(BagDestruction)))
    assert len(destructions) == 10 and all(d.object_found for d in destructions)
    records = ledger_records(session, past)[ledger_size:]
    assert [r["kind"] for r in records] == ["package_destroyed"] * 10
    assert {r["package"]["key"] for r in records} == {d.key for d in destructions}
    assert {r["destroyed_on"] for r in records} == {"2031-06-01"}
    assert verify_journal(session, past.ledger).ok
    # Nothing is left to do, and ledger bags stay even 30 years on.
    [again] = run_expire(session, settings, today=dt.date(2055, 1, 1))
    assert again.destroyed == [] and again.kept == 1


def test_expire_after_a_crash_between_delete_and_record_still_records(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[0].id}-year"]
    # The crashed run had committed its intent, then deleted, then died.
    bag.destroy_started_at = dt.datetime(2031, 1, 1, 3, tzinfo=dt.UTC)
    session.commit()
    settings.storage.delete(bag.key, today=dt.date(2031, 1, 1))
    [outcome] = run_expire(session, settings, today=dt.date(2031, 1, 1))
    assert bag.key in outcome.destroyed and outcome.incidents == []
    destruction = session.scalar(sa.select(BagDestruction).where(BagDestruction.bag_id == bag.id))
    assert destruction is not None and destruction.object_found is False


def test_expire_records_a_bag_gone_without_its_intent_as_an_incident_not_destroyed(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[0].id}-year"]
    (settings.storage.objects / bag.key).unlink()  # someone with a shell on the machine
    [outcome] = run_expire(session, settings, today=dt.date(2031, 6, 1))
    assert not outcome.ok and bag.key not in outcome.destroyed
    [incident] = outcome.incidents
    assert incident.startswith(bag.key) and "its file is gone" in incident
    assert len(outcome.destroyed) == 9
    session.refresh(bag)
    assert bag.state == "sealed"
    assert session.scalar(sa.select(BagDestruction).where(BagDestruction.bag_id == bag.id)) is None
    records = ledger_records(session, past)
    [recorded] = [r for r in records if r["kind"] == "integrity_incident"]
    assert recorded["package"]["key"] == bag.key and recorded["found_by"] == "archive expire"
    # The run ends with a checkpoint covering every record it added.
    session.refresh(past.ledger)
    last = session.scalar(
        sa.select(sa.func.max(Checkpoint.size)).where(Checkpoint.log_id == past.ledger.id)
    )
    assert last == past.ledger.size == len(records)
    assert verify_journal(session, past.ledger).ok


def test_destruction_records_are_append_only(
    session: Any, past: PastSchool, settings: ArchiveSettings
) -> None:
    run_archive(session, settings)
    run_expire(session, settings, today=dt.date(2031, 6, 1))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), session.begin_nested():
        session.execute(sa.update(BagDestruction).values(destroyed_on=dt.date(2020, 1, 1)))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), session.begin_nested():
        session.execute(sa.delete(BagDestruction))


# --------------------------------------------------------------------------- TSA and S3


def test_checkpoints_and_tag_manifests_are_timestamped(
    session: Any, past: PastSchool, settings: ArchiveSettings, local_tsa: LocalTSA, tmp_path: Path
) -> None:
    need_tool("openssl")
    stamped = replace(
        settings, timestamper=HttpTimestampAuthority(local_tsa.url), tsa_ca_certs=local_tsa.ca_cert
    )
    [outcome] = run_archive(session, stamped)
    assert outcome.error is None
    bag = bags(session, past)[f"journal-2024-2025-class{past.classes[0].id}-q1"]
    bag_dir = extract(settings.storage, bag.key, tmp_path / "out")
    checkpoint = bag_dir / "data" / "checkpoints" / f"{bag.checkpoint_size}.checkpoint"
    verify_timestamp(
        checkpoint.read_bytes(), checkpoint.with_suffix(".tsr").read_bytes(), local_tsa.ca_cert
    )
    token = bag_dir / "tagmanifest-sha512.txt.tsr"
    verify_timestamp(
        (bag_dir / "tagmanifest-sha512.txt").read_bytes(), token.read_bytes(), local_tsa.ca_cert
    )
    assert (bag_dir / "data/keys/tsa-ca.pem").read_bytes() == local_tsa.ca_cert.read_bytes()
    report = verify_stored_bag(bag, stamped, past.school.log_vkey)
    assert report.ok and "openssl ts -verify -attime <genTime> agrees" in report.text()


def test_a_bag_whose_token_does_not_verify_is_never_sealed(
    session: Any, past: PastSchool, settings: ArchiveSettings, local_tsa: LocalTSA
) -> None:
    real = HttpTimestampAuthority(local_tsa.url)

    class Confused:
        """Answers for other bytes than it was asked about."""

        def timestamp(self, data: bytes) -> bytes:
            return real.timestamp(data + b" ")

    confused = replace(settings, timestamper=Confused(), tsa_ca_certs=local_tsa.ca_cert)
    [outcome] = run_archive(session, confused)
    assert outcome.failed and outcome.sealed == []
    # Checked as it comes back, before the bag is staged: nothing is uploaded.
    assert all("imprint does not match" in failure for failure in outcome.failed)
    assert list(settings.storage.list()) == []
    assert "sealed" not in {bag.state for bag in bags(session, past).values()}
    # The ledger log holds no seal.
    assert sealed_checks(session, past) == {}


# --------------------------------------------------------------------------- the check after upload


def sealed_checks(session: Any, past: PastSchool) -> dict[str, str]:
    return {
        r["package"]["key"]: r["checked"]
        for r in ledger_records(session, past)
        if r["kind"] in ("journal_sealed", "ledger_sealed")
    }


@pytest.mark.parametrize("full_readback", [False, True])
def test_each_seal_names_the_check_the_bag_had(
    session: Any, past: PastSchool, settings: ArchiveSettings, full_readback: bool
) -> None:
    checked = "read-back" if full_readback else "store"
    [outcome] = run_archive(session, replace(settings, full_readback=full_readback))
    assert outcome.ok and len(outcome.sealed) == 11
    assert outcome.checks == dict.fromkeys(outcome.sealed, checked)
    assert sealed_checks(session, past) == outcome.checks


class Faulty(LocalWormStorage):
    """Takes the bag, then loses it or keeps other bytes or a shorter retention than asked."""

    def __init__(self, root: Path, faults: dict[str, str]) -> None:
        super().__init__(root)
        self.faults = faults  # key suffix: "drop", "corrupt" or "short"

    def put(self, key: str, data: Any, *, retain_until: Any, sha512: str) -> Any:
        fault = next((f for end, f in self.faults.items() if key.endswith(end)), None)
        if fault == "short":
            retain_until = dt.date(2027, 1, 1)
        stored = super().put(key, data, retain_until=retain_until, sha512=sha512)
        path = self._path(key)
        if fault == "drop":
            path.unlink()
        elif fault == "corrupt":
            path.chmod(0o444 | 0o200)
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 1
            path.write_bytes(bytes(raw))
            path.chmod(0o444)
        return stored


def test_a_store_that_loses_or_alters_a_bag_fails_the_run_loudly(
    session: Any, past: PastSchool, settings: ArchiveSettings, tmp_path: Path
) -> None:
    first, second = (group.id for group in past.classes)
    faults = {f"class{first}-q1.tar": "drop", f"class{first}-q2.tar": "corrupt",
              f"class{second}-q3.tar": "short"}  # fmt: skip
    faulty = replace(settings, storage=Faulty(tmp_path / "faulty", faults))
    [outcome] = run_archive(session, faulty)
    assert not outcome.ok and len(outcome.failed) == 3 and len(outcome.sealed) == 7
    prefix = f"{past.school.domain}/journal-2024-2025-"
    failed = {}
    for failure in outcome.failed:
        key, why = failure.split(": ", 1)
        failed[key.removeprefix(prefix).removesuffix(".tar")] = why
    assert set(failed) == {f"class{first}-q1", f"class{first}-q2", f"class{second}-q3"}
    assert all("failed its store check after upload" in why for why in failed.values())
    assert "file cannot be read" in failed[f"class{first}-q1"]
    assert "does not hold the bytes" in failed[f"class{first}-q2"]
    assert "retained until 2027-01-01" in failed[f"class{second}-q3"]
    # Not sealed, no seal record; the ledger bag waits; the run is recorded as failed.
    unsealed = {bag.key for bag in bags(session, past).values() if bag.state != "sealed"}
    assert unsealed == {failure.split(": ", 1)[0] for failure in outcome.failed}
    assert not unsealed & set(sealed_checks(session, past))
    [run] = session.scalars(sa.select(ArchiveRun).where(ArchiveRun.school_id == past.school.id))
    assert run.status == "failed"


def test_a_bag_the_store_holds_intact_but_that_does_not_verify(
    session: Any,
    past: PastSchool,
    settings: ArchiveSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trade-off of the ``store`` check: it proves the store holds what was built, not that
    what was built verifies. Such a bag is sealed by the default run and found by the audit; a
    run with the full read-back never seals it."""
    from archive.services import audit_school
    from archive.verify import seal

    real_seal = seal.seal_bag
    impostor = Ed25519PrivateKey.generate()
    monkeypatch.setattr(
        seal, "seal_bag", lambda bag_dir, name, _key: real_seal(bag_dir, name, impostor)
    )
    [careful] = run_archive(session, replace(settings, full_readback=True))
    assert careful.sealed == [] and len(careful.failed) == 10  # the ledger bag waits for them
    assert all("read-back check after upload" in failure for failure in careful.failed)
    assert all("bag-seal.note" in failure for failure in careful.failed)
    [quick] = run_archive(session, settings)
    assert len(quick.sealed) == 11 and set(quick.checks.values()) == {"store"}
    audit = audit_school(session, settings, past.school)
    assert audit.checked == 11 and len(audit.findings) == 11
    assert all("bag-seal.note" in finding for finding in audit.findings)


@pytest.fixture
def s3_settings(
    settings: ArchiveSettings, seaweedfs: SeaweedFS, s3_client: Any, lock_bucket: str
) -> ArchiveSettings:
    return replace(settings, storage=S3ObjectLockStorage(s3_client, lock_bucket))


def test_against_seaweedfs_bags_are_locked_by_the_store(
    session: Any,
    past: PastSchool,
    s3_settings: ArchiveSettings,
    s3_client: Any,
    lock_bucket: str,
    tmp_path: Path,
    backend: str,
) -> None:
    [outcome] = run_archive(session, s3_settings)  # creates the Object Lock bucket
    assert outcome.error is None and len(outcome.sealed) == 11
    sealed = bags(session, past)
    for bag in sealed.values():
        assert bag.storage == f"s3://{lock_bucket}"
        retention = s3_client.get_object_retention(Bucket=lock_bucket, Key=bag.key)["Retention"]
        assert retention["Mode"] == "COMPLIANCE"
        assert retention["RetainUntilDate"] == dt.datetime.combine(
            bag.retain_until, dt.time(), dt.UTC
        )
    versions = s3_client.list_object_versions(Bucket=lock_bucket)["Versions"]
    assert len(versions) == 11

    # The store itself refuses, whatever our code would say.
    bag = sealed[f"journal-2024-2025-class{past.classes[0].id}-q1"]
    version = s3_client.head_object(Bucket=lock_bucket, Key=bag.key)["VersionId"]
    with pytest.raises(ClientError):
        s3_client.delete_object(
            Bucket=lock_bucket, Key=bag.key, VersionId=version, BypassGovernanceRetention=True
        )
    with pytest.raises(ClientError):
        s3_client.put_object_retention(
            Bucket=lock_bucket,
            Key=bag.key,
            VersionId=version,
            Retention={
                "Mode": "COMPLIANCE",
                "RetainUntilDate": dt.datetime(2026, 12, 31, tzinfo=dt.UTC),
            },
        )
    # Expiry at a simulated date: the app would allow it, the store still refuses; nothing is
    # recorded as destroyed.
    [expired] = run_expire(session, s3_settings, today=dt.date(2031, 6, 1))
    assert expired.destroyed == [] and len(expired.refused) == 10
    assert session.scalar(sa.select(sa.func.count()).select_from(BagDestruction)) == 0
    assert len(s3_client.list_object_versions(Bucket=lock_bucket)["Versions"]) == 11

    # A second run stores nothing twice.
    [again] = run_archive(session, s3_settings)
    assert again.sealed == []
    assert len(s3_client.list_object_versions(Bucket=lock_bucket)["Versions"]) == 11

    # bagit.py --validate passes on every bag; one changed byte fails it.
    for bag in sealed.values():
        bag_dir = extract(s3_settings.storage, bag.key, tmp_path / bag.bag_name)
        result = subprocess.run(
            [sys.executable, str(BAGIT_SCRIPT), "--validate", str(bag_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    entries = bag_dir / "data" / "entries.jsonl"
    entries.chmod(0o644)
    data = bytearray(entries.read_bytes())
    data[len(data) // 2] ^= 0x01
    entries.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, str(BAGIT_SCRIPT), "--validate", str(bag_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "entries.jsonl" in result.stderr
