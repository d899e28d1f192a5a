"""`archive audit`: the archive checks itself, as an operator runs it.

On a real SeaweedFS: a PutObject and a CopyObject on a bag's key, a delete marker over one, and a
delete through the filer port are each found (exit 1), none is ever recorded as destroyed, and
the registrar still issues from the version the archive pinned. On the local store: `rm`,
`mv -f` and `chmod u+w` then a write are found, and the immutable attribute, where the process
may set it, makes them fail in the first place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from archive.models import ArchiveAudit, ArchivedBag, BagDestruction
from archive.registrar import Query, find_records
from archive.services import ArchiveSettings, run_archive
from archive.storage import (
    LocalWormStorage,
    S3ObjectLockStorage,
    is_immutable,
    set_immutable,
)
from journal.models import Checkpoint, Entry
from journal.services import verify_journal
from tests.archive.conftest import SeaweedFS
from tests.archive.school import PastSchool, build_past_school
from tests.factories import add_user, signed_in_client

DAY = dt.date(2031, 6, 1)  # the journal bags' 5 years are over by the app's reckoning


def ledger_payloads(session: Any, past: PastSchool) -> list[dict[str, Any]]:
    leaves = session.scalars(
        sa.select(Entry.leaf).where(Entry.log_id == past.ledger.id).order_by(Entry.seq)
    )
    return [json.loads(leaf)["payload"] for leaf in leaves]


def sealed_bags(session: Any, past: PastSchool) -> dict[str, ArchivedBag]:
    rows = session.scalars(sa.select(ArchivedBag).where(ArchivedBag.school_id == past.school.id))
    return {row.bag_name.rsplit("-", 1)[-1] + f"-{row.class_group_id}": row for row in rows}


def findings(output: str) -> dict[str, list[str]]:
    """FINDING lines of the audit's output, by key."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = re.match(r"\s+FINDING (\S+): (.*)", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def ledger_is_checkpointed(session: Any, past: PastSchool) -> None:
    """Every record the run added is under a signed checkpoint, and the log verifies."""
    session.refresh(past.ledger)
    last = session.scalar(
        sa.select(sa.func.max(Checkpoint.size)).where(Checkpoint.log_id == past.ledger.id)
    )
    assert last == past.ledger.size
    assert verify_journal(session, past.ledger).ok


# --------------------------------------------------------------------------- SeaweedFS


@pytest.fixture
def on_seaweedfs(
    app: Any,
    session: Any,
    seaweedfs: SeaweedFS,
    lock_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The app configured for the SeaweedFS bucket, and its CLI."""
    for name, value in {
        "ARCHIVE_STORAGE": "s3",
        "ARCHIVE_S3_BUCKET": lock_bucket,
        "ARCHIVE_S3_ENDPOINT": seaweedfs.endpoint,
        "ARCHIVE_S3_ACCESS_KEY": seaweedfs.access_key,
        "ARCHIVE_S3_SECRET_KEY": seaweedfs.secret_key,
        "ARCHIVE_STAGING_DIR": str(tmp_path / "staging"),
    }.items():
        monkeypatch.setitem(app.config, name, value)
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def test_every_attack_on_s3_is_found_none_is_destroyed_and_the_registrar_reads_the_pin(
    app: Any,
    session: Any,
    on_seaweedfs: Any,
    seaweedfs: SeaweedFS,
    s3_client: Any,
    lock_bucket: str,
) -> None:
    past = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    result = on_seaweedfs("archive", "run")
    assert result.exit_code == 0, result.output
    bags = sealed_bags(session, past)
    first = past.classes[0].id
    q1, q2, q3, q4 = (bags[f"q{n}-{first}"] for n in range(1, 5))
    ledger = bags["2025-None"]
    assert all(bag.version_id for bag in bags.values())
    records = ledger_payloads(session, past)
    sealed = {r["package"]["key"]: r["package"] for r in records if r["kind"].endswith("_sealed")}
    assert {key: p["version_id"] for key, p in sealed.items()} == {
        bag.key: bag.version_id for bag in bags.values()
    }
    clean = on_seaweedfs("archive", "audit")
    assert clean.exit_code == 0, clean.output
    assert f"{past.school.domain}: 6 bag(s) read back by their pinned version" in clean.output
    assert "0 finding(s)" in clean.output

    # Four attacks with the app's own credentials, and one through the filer port.
    s3_client.put_object(Bucket=lock_bucket, Key=q1.key, Body=b"forged", Metadata={"sha512": "0"})
    s3_client.copy_object(
        Bucket=lock_bucket,
        Key=q2.key,
        CopySource={"Bucket": lock_bucket, "Key": q3.key, "VersionId": q3.version_id},
    )
    s3_client.delete_object(Bucket=lock_bucket, Key=q3.key)  # a delete marker
    filer = urllib.request.Request(
        f"http://127.0.0.1:{seaweedfs.ports['filer']}/buckets/{lock_bucket}/{q4.key}.versions"
        "?recursive=true",
        method="DELETE",
    )
    with urllib.request.urlopen(filer, timeout=10) as answer:  # noqa: S310 (loopback, a test)
        assert answer.status in (200, 202, 204)
    s3_client.put_object(Bucket=lock_bucket, Key=ledger.key, Body=b"not the ledger")
    s3_client.put_object(Bucket=lock_bucket, Key=f"{past.school.domain}/stray.tar", Body=b"x")

    audit = on_seaweedfs("archive", "audit")
    assert audit.exit_code == 1, audit.output
    found = findings(audit.output)
    assert any("is the current one: a plain GET returns it" in f for f in found[q1.key])
    assert any("is the current one: a plain GET returns it" in f for f in found[q2.key])
    assert any("a delete marker" in f and "hides it" in f for f in found[q3.key])
    assert any(f"the pinned version {q4.version_id} is gone" in f for f in found[q4.key])
    assert any("cannot be read back" in f for f in found[q4.key])
    assert any("is the current one" in f for f in found[ledger.key])
    assert any("in no archive record" in f for f in found[f"{past.school.domain}/stray.tar"])
    # The pinned versions of the overwritten and hidden bags are still there and verify.
    for bag in (q1, q2, q3, ledger):
        assert not any("cannot be read back" in f or "FAILED" in f for f in found[bag.key])
    [recorded] = [r for r in ledger_payloads(session, past) if r["kind"] == "archive_audited"][1:]
    assert recorded["finding_count"] == sum(len(v) for v in found.values())
    audits = list(session.scalars(sa.select(ArchiveAudit).order_by(ArchiveAudit.id)))
    assert [a.finding_count == 0 for a in audits] == [True, False]
    ledger_is_checkpointed(session, past)

    # Expiry as of a day when the 5 years are over: no attacked bag is recorded as destroyed.
    expired = on_seaweedfs("archive", "expire", "--today", DAY.isoformat())
    assert expired.exit_code == 1, expired.output
    for bag in (q1, q2, q3, q4):
        assert f"INCIDENT {bag.key}: not destroyed, an integrity incident" in expired.output
    year = bags[f"year-{first}"]
    assert f"refused {year.key}" in expired.output  # the store itself still holds it locked
    assert session.scalar(sa.select(sa.func.count()).select_from(BagDestruction)) == 0
    session.expire_all()
    assert {bag.state for bag in sealed_bags(session, past).values()} == {"sealed"}
    incidents = [r for r in ledger_payloads(session, past) if r["kind"] == "integrity_incident"]
    assert {r["package"]["key"] for r in incidents} == {q1.key, q2.key, q3.key, q4.key}
    ledger_is_checkpointed(session, past)

    # The registrar reads the ledger bag's pinned version, not the substitute on top of it.
    student = past.students[0]
    query = Query(
        last_name=student.last_name, first_name=student.first_name, birth_date=student.birth_date
    )
    storage = S3ObjectLockStorage(s3_client, lock_bucket)
    with pytest.raises(Exception, match="tar|bag|sha512"):
        find_records(storage, query, trusted_vkeys={past.school.log_vkey})  # the current one
    registrar = signed_in_client(app, add_user(session, past.school, "registrar"))
    page = registrar.get("/archive/registrar")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {
        "csrf_token": token,
        "last_name": student.last_name,
        "first_name": student.first_name,
        "birth_date": student.birth_date.isoformat(),
    }
    searched = registrar.post("/archive/registrar", data=form)
    assert searched.status_code == 200 and "2024-2025" in searched.text, searched.text[-2000:]
    issued = registrar.post("/archive/registrar", data={**form, "issue": "1"})
    assert issued.status_code == 200 and issued.data.startswith(b"%PDF"), issued.text[-2000:]


# --------------------------------------------------------------------------- the local store


@pytest.fixture
def on_local(app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(app.config, "ARCHIVE_LOCAL_ROOT", str(tmp_path / "store"))
    monkeypatch.setitem(app.config, "ARCHIVE_STAGING_DIR", str(tmp_path / "staging"))
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def test_local_store_tampering_is_found_and_the_run_says_it_is_not_write_once(
    app: Any, session: Any, on_local: Any, tmp_path: Path
) -> None:
    past = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    run = on_local("archive", "run")
    assert run.exit_code == 0, run.output
    assert "WARNING: the local store is not write-once" in run.output
    bags = sealed_bags(session, past)
    first = past.classes[0].id
    objects = tmp_path / "store" / "objects"
    removed, replaced, rewritten = (bags[f"q{n}-{first}"] for n in (1, 2, 3))
    (objects / removed.key).unlink()  # rm
    os.replace(objects / bags[f"q4-{first}"].key, objects / replaced.key)  # mv -f
    target = objects / rewritten.key
    target.chmod(0o644)  # chmod u+w, then a write
    target.write_bytes(target.read_bytes().replace(b"2024-2025", b"2023-2024", 1))

    again = on_local("archive", "run")
    assert again.exit_code == 0 and "0 bag(s) sealed" in again.output
    assert "not write-once" in again.output
    audit = on_local("archive", "audit")
    assert audit.exit_code == 1, audit.output
    found = findings(audit.output)
    assert "its file is gone" in " ".join(found[removed.key])
    assert "read back with other bytes" in " ".join(found[replaced.key]) or "does not match" in (
        " ".join(found[replaced.key])
    )
    assert "its file is writable" in found[rewritten.key]
    assert f"{bags[f'q4-{first}'].key}" in found  # moved away: its file is gone too
    ledger_is_checkpointed(session, past)


def test_the_local_store_sets_the_immutable_attribute_where_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalWormStorage(tmp_path / "store", immutable=True)
    data = b"a bag"
    import hashlib

    sha = hashlib.sha512(data).hexdigest()
    store.put("s/a.tar", data, retain_until=dt.date(2031, 1, 1), sha512=sha)
    path = store.objects / "s" / "a.tar"
    try:
        if store.write_once_note() is None:  # Linux, root, a file system that supports it
            assert is_immutable(path)
            for attack in (
                path.unlink,
                lambda: path.chmod(0o644),
                lambda: os.replace(tmp_path / "store" / "index.jsonl", path),
            ):
                with pytest.raises(PermissionError):
                    attack()
            assert store.audit_objects({}, "s/") != []  # not in the archive's records
            store.delete("s/a.tar", today=dt.date(2031, 1, 1))  # expiry clears it first
            assert not path.exists()
        else:
            assert "not write-once" in store.write_once_note()
    finally:
        if path.exists() and is_immutable(path):
            set_immutable(path, False)

    # Where the attribute cannot be set, the store says so plainly.
    def refuse(_path: Path, _on: bool) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("archive.storage.set_immutable", refuse)
    other = LocalWormStorage(tmp_path / "other", immutable=True)
    other.put("s/b.tar", data, retain_until=dt.date(2031, 1, 1), sha512=sha)
    note = other.write_once_note()
    assert note and "not write-once" in note and "cannot set the immutable attribute" in note
    assert "Operation not permitted" in note
    off = LocalWormStorage(tmp_path / "off")
    assert "ARCHIVE_LOCAL_IMMUTABLE is off" in (off.write_once_note() or "")


def test_backup_drill_runs_the_archive_audit(fresh_app: Any, tmp_path: Path) -> None:
    from journal.db import db

    fresh_app.config["ARCHIVE_LOCAL_ROOT"] = str(tmp_path / "store")
    fresh_app.config["ARCHIVE_STAGING_DIR"] = str(tmp_path / "staging")
    with fresh_app.app_context():
        past = build_past_school(db.session, fresh_app.config["KEYS_DIR"], classes=1)
        db.session.commit()
        school_id = past.school.id
    runner = fresh_app.test_cli_runner()
    assert runner.invoke(args=["archive", "run"]).exit_code == 0
    assert runner.invoke(args=["backup", "create"]).exit_code == 0
    with fresh_app.app_context():
        key = db.session.scalar(
            sa.select(ArchivedBag.key).where(ArchivedBag.school_id == school_id).limit(1)
        )
    (tmp_path / "store" / "objects" / key).unlink()
    drill = runner.invoke(args=["backup", "drill"])
    assert drill.exit_code == 1, drill.output
    assert "drill PASSED" in drill.output and "archive audit:" in drill.output
    assert f"FINDING {key}: its file is gone" in drill.output


def test_an_archive_run_with_nothing_left_to_do_records_nothing(
    app: Any, session: Any, tmp_path: Path
) -> None:
    past = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    settings = ArchiveSettings(
        storage=LocalWormStorage(tmp_path / "store"),
        staging_dir=tmp_path / "staging",
        keys_dir=Path(app.config["KEYS_DIR"]),
    )
    run_archive(session, settings)
    ledger_is_checkpointed(session, past)
    size = past.ledger.size
    run_archive(session, settings)
    session.refresh(past.ledger)
    assert past.ledger.size == size
