"""Write-once archive storage.

The proof that retention holds is the SeaweedFS section: every refusal there is asserted on raw
boto3 calls that bypass our code. The moto tests only cover quick happy paths (moto accepts
shortened and past retention, RECIPES).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from archive.bag import BagInvalid, build_bag
from archive.storage import (
    Expected,
    IntegrityError,
    LegalHoldError,
    LocalWormStorage,
    ObjectNotFound,
    RetentionError,
    S3ObjectLockStorage,
    StorageError,
    StoredObject,
    WriteOnceError,
    bag_key,
    fetch_bag,
    normalize_retain_until,
    put_bag,
    retention_allows_delete,
    storage_from_config,
)
from tests.archive.conftest import SeaweedFS

DATA = b"tar bytes of a bag\x00\xff" * 100
SHA = hashlib.sha512(DATA).hexdigest()
OTHER = b"other bytes"
OTHER_SHA = hashlib.sha512(OTHER).hexdigest()
RETAIN = dt.date(2031, 9, 1)
BEFORE = dt.date(2031, 8, 31)
INFO = {
    "External-Identifier": "school.example.kz/journal/2024-2025/7A",
    "Tier": "journal-5y",
    "Retention-Until": "2030-08-31",
    "Source-Organization": "School 1",
    "Bagging-Date": "2025-06-30",
}


def sha(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


# --------------------------------------------------------------------------- shared rules


def test_retain_until_normalization() -> None:
    assert normalize_retain_until(dt.date(2030, 1, 2)) == dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    almaty = dt.timezone(dt.timedelta(hours=5))
    assert normalize_retain_until(dt.datetime(2030, 1, 2, 5, 0, 0, 1, tzinfo=almaty)) == (
        dt.datetime(2030, 1, 2, 0, 0, 1, tzinfo=dt.UTC)  # rounded up, never shortened
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        normalize_retain_until(dt.datetime(2030, 1, 2))  # noqa: DTZ001


def test_delete_is_allowed_from_the_retain_until_day() -> None:
    until = normalize_retain_until(RETAIN)
    assert not retention_allows_delete(until, BEFORE)
    assert retention_allows_delete(until, RETAIN)
    noon = until + dt.timedelta(hours=12)
    assert not retention_allows_delete(noon, RETAIN)
    assert retention_allows_delete(noon, RETAIN + dt.timedelta(days=1))


# --------------------------------------------------------------------------- local


@pytest.fixture
def local(tmp_path: Path) -> LocalWormStorage:
    return LocalWormStorage(tmp_path / "archive")


def test_local_put_get_head_list(local: LocalWormStorage) -> None:
    stored = local.put("journal/2024-2025/7A.tar", DATA, retain_until=RETAIN, sha512=SHA)
    assert stored == StoredObject(
        "journal/2024-2025/7A.tar", len(DATA), SHA, normalize_retain_until(RETAIN)
    )
    local.put("ledger/2024-2025.tar", OTHER, retain_until=RETAIN, sha512=OTHER_SHA)
    assert local.get("journal/2024-2025/7A.tar") == DATA
    assert local.head("journal/2024-2025/7A.tar") == stored
    assert local.head("journal/missing.tar") is None
    assert [o.key for o in local.list()] == ["journal/2024-2025/7A.tar", "ledger/2024-2025.tar"]
    assert [o.key for o in local.list("ledger/")] == ["ledger/2024-2025.tar"]
    with pytest.raises(ObjectNotFound):
        local.get("journal/missing.tar")


def test_local_put_from_a_file(local: LocalWormStorage, tmp_path: Path) -> None:
    source = tmp_path / "bag.tar"
    source.write_bytes(DATA)
    stored = local.put("k.tar", source, retain_until=RETAIN, sha512=SHA)
    assert stored.size == len(DATA)
    assert local.get("k.tar") == DATA


def test_local_put_checks_the_sha512(local: LocalWormStorage) -> None:
    with pytest.raises(IntegrityError):
        local.put("k", DATA, retain_until=RETAIN, sha512=OTHER_SHA)
    assert local.head("k") is None
    assert not list(local.objects.rglob("*"))


def test_local_overwrite_is_refused(local: LocalWormStorage) -> None:
    local.put("k", DATA, retain_until=RETAIN, sha512=SHA)
    with pytest.raises(WriteOnceError):
        local.put("k", OTHER, retain_until=RETAIN, sha512=OTHER_SHA)
    assert local.get("k") == DATA


def test_local_identical_put_is_a_no_op(local: LocalWormStorage) -> None:
    first = local.put("k", DATA, retain_until=RETAIN, sha512=SHA)
    index_before = local.index_path.read_bytes()
    assert local.put("k", DATA, retain_until=BEFORE, sha512=SHA) == first
    assert local.put("k", DATA, retain_until=RETAIN, sha512=SHA) == first
    assert local.index_path.read_bytes() == index_before
    # A later date extends retention; an earlier one never shortens it.
    later = dt.date(2040, 1, 1)
    assert local.put("k", DATA, retain_until=later, sha512=SHA).retain_until == (
        normalize_retain_until(later)
    )
    head = local.head("k")
    assert head is not None and head.retain_until == normalize_retain_until(later)


def test_local_refuses_a_past_retain_until(local: LocalWormStorage) -> None:
    with pytest.raises(ValueError, match="not in the future"):
        local.put("k", DATA, retain_until=dt.date(2001, 1, 1), sha512=SHA)


def test_local_delete_before_retain_until_is_refused(local: LocalWormStorage) -> None:
    local.put("k", DATA, retain_until=RETAIN, sha512=SHA)
    with pytest.raises(RetentionError):
        local.delete("k", today=BEFORE)
    assert local.get("k") == DATA
    local.delete("k", today=RETAIN)
    assert local.head("k") is None
    assert not (local.objects / "k").exists()
    assert local.audit() == []
    events = [json.loads(line) for line in local.index_path.read_text().splitlines()]
    assert [e["op"] for e in events] == ["put", "delete"]  # the destruction is recorded
    with pytest.raises(ObjectNotFound):
        local.delete("k", today=RETAIN)


def test_local_legal_hold_blocks_delete(local: LocalWormStorage) -> None:
    local.put("k", DATA, retain_until=RETAIN, sha512=SHA)
    local.set_legal_hold("k", True)
    head = local.head("k")
    assert head is not None and head.legal_hold
    with pytest.raises(LegalHoldError):
        local.delete("k", today=dt.date(2099, 1, 1))
    local.set_legal_hold("k", False)
    local.delete("k", today=dt.date(2099, 1, 1))
    with pytest.raises(ObjectNotFound):
        local.set_legal_hold("k", True)


def test_local_files_are_read_only(local: LocalWormStorage) -> None:
    local.put("journal/7A.tar", DATA, retain_until=RETAIN, sha512=SHA)
    path = local.objects / "journal" / "7A.tar"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(PermissionError):
            path.open("wb")


def test_local_index_matches_contents(local: LocalWormStorage) -> None:
    for number in range(5):
        data = f"bag {number}".encode()
        local.put(f"j/{number}.tar", data, retain_until=RETAIN, sha512=sha(data))
    local.set_legal_hold("j/3.tar", True)
    local.delete("j/1.tar", today=RETAIN)
    assert local.audit() == []
    state = {o.key: o for o in local.list()}
    on_disk = {p.relative_to(local.objects).as_posix(): p for p in local.objects.rglob("*.tar")}
    assert set(state) == set(on_disk) == {"j/0.tar", "j/2.tar", "j/3.tar", "j/4.tar"}
    for key, stored in state.items():
        assert sha(on_disk[key].read_bytes()) == stored.sha512
        assert on_disk[key].stat().st_size == stored.size
    assert state["j/3.tar"].legal_hold
    # A second instance on the same root sees the same state (the index is the truth).
    assert list(LocalWormStorage(local.root).list()) == list(local.list())


def test_local_audit_and_get_notice_tampering(local: LocalWormStorage) -> None:
    local.put("k", DATA, retain_until=RETAIN, sha512=SHA)
    path = local.objects / "k"
    path.chmod(0o644)
    path.write_bytes(OTHER)
    (local.objects / "stray").write_bytes(b"x")
    problems = local.audit()
    assert "k: size or sha512 differs from the index" in problems
    assert "k: file is writable" in problems
    assert "stray: file not in the index" in problems
    with pytest.raises(IntegrityError):
        local.get("k")
    path.unlink()
    assert "k: indexed but missing" in local.audit()


def test_local_recovers_a_file_written_before_a_crash(local: LocalWormStorage) -> None:
    """Crash between link and index append: the next identical put indexes the file."""
    (local.objects / "k").write_bytes(DATA)
    with pytest.raises(WriteOnceError):
        local.put("k", OTHER, retain_until=RETAIN, sha512=OTHER_SHA)
    assert local.put("k", DATA, retain_until=RETAIN, sha512=SHA).sha512 == SHA
    assert local.head("k") is not None


def test_local_torn_index_line_is_ignored(local: LocalWormStorage) -> None:
    local.put("a", DATA, retain_until=RETAIN, sha512=SHA)
    with local.index_path.open("ab") as index:
        index.write(b'{"op": "put", "key": "b", "si')  # crash mid-append
    assert [o.key for o in local.list()] == ["a"]
    local.put("c", OTHER, retain_until=RETAIN, sha512=OTHER_SHA)
    assert [o.key for o in local.list()] == ["a", "c"]


def test_local_fsyncs_file_directory_and_index(
    local: LocalWormStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append("<tmp file>" if path.startswith(str(local.root / "tmp" / "put-")) else path)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    root, objects = str(local.root), str(local.objects)
    local.put("deep/er/k.tar", DATA, retain_until=RETAIN, sha512=SHA)
    # data before name, new directories from the top, index last (its directory when created)
    assert synced == [
        "<tmp file>",
        objects,
        f"{objects}/deep",
        f"{objects}/deep/er",
        str(local.index_path),
        root,
    ]
    synced.clear()
    local.put("deep/er/k2.tar", OTHER, retain_until=RETAIN, sha512=OTHER_SHA)
    assert synced == ["<tmp file>", f"{objects}/deep/er", str(local.index_path)]
    synced.clear()
    local.delete("deep/er/k.tar", today=RETAIN)
    assert synced == [f"{objects}/deep/er", str(local.index_path)]
    assert not list((local.root / "tmp").iterdir())


def test_local_key_clashes_with_an_object_path(local: LocalWormStorage) -> None:
    local.put("a/b", DATA, retain_until=RETAIN, sha512=SHA)
    with pytest.raises(WriteOnceError):
        local.put("a", DATA, retain_until=RETAIN, sha512=SHA)
    with pytest.raises(WriteOnceError):
        local.put("a/b/c", DATA, retain_until=RETAIN, sha512=SHA)
    assert [o.key for o in local.list()] == ["a/b"]
    assert local.audit() == []


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a\nb", "x/"])
def test_bad_keys_are_refused(local: LocalWormStorage, key: str) -> None:
    with pytest.raises(ValueError):
        local.put(key, DATA, retain_until=RETAIN, sha512=SHA)


def test_local_bag_round_trip(local: LocalWormStorage, tmp_path: Path) -> None:
    bag = build_bag(tmp_path / "journal-7A", {"entries.jsonl": b"{}\n"}, INFO)
    stored = put_bag(local, bag)
    assert stored.key == bag_key("journal-7A") == "journal-7A.tar"
    assert stored.retain_until == normalize_retain_until(dt.date(2030, 8, 31))
    assert put_bag(local, bag) == stored  # storing the same bag again is a no-op
    with pytest.raises(ValueError, match="earlier than the bag's Retention-Until"):
        put_bag(local, bag, retain_until=dt.date(2030, 8, 30), key="other.tar")
    restored = fetch_bag(local, "journal-7A.tar", tmp_path / "restored")
    assert (restored / "data" / "entries.jsonl").read_bytes() == b"{}\n"
    (bag / "data" / "entries.jsonl").write_bytes(b"changed\n")
    with pytest.raises(BagInvalid):
        put_bag(local, bag, key="changed.tar")


def test_storage_from_config(tmp_path: Path) -> None:
    local = storage_from_config({"ARCHIVE_STORAGE": "local", "ARCHIVE_LOCAL_ROOT": tmp_path})
    assert isinstance(local, LocalWormStorage) and local.root == tmp_path
    s3 = storage_from_config(
        {
            "ARCHIVE_STORAGE": "s3",
            "ARCHIVE_S3_BUCKET": "b",
            "ARCHIVE_S3_ENDPOINT": "http://127.0.0.1:1",
            "ARCHIVE_S3_REGION": "kz-1",
            "ARCHIVE_S3_STORAGE_CLASS": "STANDARD_IA",
            "ARCHIVE_S3_ACCESS_KEY": "a",
            "ARCHIVE_S3_SECRET_KEY": "b",
        }
    )
    assert isinstance(s3, S3ObjectLockStorage)
    assert s3.bucket == "b" and s3.storage_class == "STANDARD_IA"
    assert s3.client.meta.region_name == "kz-1"
    assert s3.client.meta.endpoint_url == "http://127.0.0.1:1"
    for bad in (
        {"ARCHIVE_STORAGE": "ftp"},
        {"ARCHIVE_STORAGE": "local"},
        {"ARCHIVE_STORAGE": "s3"},
        {"ARCHIVE_STORAGE": "s3", "ARCHIVE_S3_BUCKET": "b", "ARCHIVE_S3_ACCESS_KEY": "a"},
    ):
        with pytest.raises(ValueError):
            storage_from_config(bad)


# --------------------------------------------------------------------------- moto (happy path)


def test_moto_happy_path() -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        storage = S3ObjectLockStorage(client, "archive")
        storage.ensure_bucket()
        storage.ensure_bucket()  # idempotent
        stored = storage.put("j/7A.tar", DATA, retain_until=RETAIN, sha512=SHA)
        assert stored.sha512 == SHA and stored.size == len(DATA)
        assert storage.get("j/7A.tar") == DATA
        assert [o.key for o in storage.list("j/")] == ["j/7A.tar"]
        with pytest.raises(WriteOnceError):
            storage.put("j/7A.tar", OTHER, retain_until=RETAIN, sha512=OTHER_SHA)
        with pytest.raises(RetentionError):
            storage.delete("j/7A.tar", today=BEFORE)


def test_moto_confirm_names_every_difference_from_what_was_built() -> None:
    """The archive run's ``store`` check: one HEAD of the pinned version against the staged tar."""
    import boto3
    from moto import mock_aws

    until = dt.datetime(2031, 9, 1, tzinfo=dt.UTC)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        storage = S3ObjectLockStorage(client, "archive")
        storage.ensure_bucket()
        stored = storage.put("j/7A.tar", DATA, retain_until=RETAIN, sha512=SHA)
        assert storage.confirm("j/7A.tar", stored.version_id, Expected.of(DATA, until)) == []
        # Other bytes than were built: every digest and the size differ.
        problems = storage.confirm("j/7A.tar", stored.version_id, Expected.of(OTHER, until))
        assert problems is not None and len(problems) == 4
        assert "bytes, not 11" in problems[0] and "SHA-256" in problems[2] and "MD5" in problems[3]
        # A retention shorter than the bag's.
        later = Expected.of(DATA, until + dt.timedelta(days=1))
        [short] = storage.confirm("j/7A.tar", stored.version_id, later) or ["none"]
        assert short.startswith("retained until 2031-09-01")
        # Dropped: the pinned version is not there.
        assert storage.confirm("j/7A.tar", "gone", Expected.of(DATA, until)) == [
            "the version written is not in the store"
        ]
        # Written without a checksum the store keeps (not by this archive): only a read-back
        # can tell, so confirm says it cannot.
        client.put_object(
            Bucket="archive", Key="j/raw.tar", Body=DATA, ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until, Metadata={"sha512": SHA},
            ContentMD5=base64.b64encode(hashlib.md5(DATA).digest()).decode(),  # noqa: S324
        )  # fmt: skip
        assert storage.confirm("j/raw.tar", None, Expected.of(DATA, until)) is None


def test_local_confirm_hashes_the_file_again(local: LocalWormStorage) -> None:
    until = dt.datetime(2031, 9, 1, tzinfo=dt.UTC)
    local.put("j/7A.tar", DATA, retain_until=RETAIN, sha512=SHA)
    assert local.confirm("j/7A.tar", None, Expected.of(DATA, until)) == []
    path = local.objects / "j" / "7A.tar"
    path.chmod(0o644)
    path.write_bytes(DATA[:-1] + b"!")
    assert local.confirm("j/7A.tar", None, Expected.of(DATA, until)) == [
        "the file does not hold the bytes that were put",
        "the file is writable",
    ]
    path.unlink()
    [gone] = local.confirm("j/7A.tar", None, Expected.of(DATA, until)) or []
    assert gone.startswith("the file cannot be read")


# --------------------------------------------------------------------------- SeaweedFS (the proof)


def test_seaweedfs_checks_the_checksums_on_receipt_and_reports_them(
    s3: S3ObjectLockStorage, s3_client: Any
) -> None:
    """What the run's ``store`` check rests on: SeaweedFS refuses a PUT whose bytes do not match
    the SHA-256 sent with it, and a HEAD of the version returns the checksum it keeps."""
    until = _future()
    stored = s3.put("j/7A.tar", DATA, retain_until=until, sha512=SHA)
    expected = Expected.of(DATA, until)
    assert stored.sha256 == expected.sha256 and stored.etag == expected.md5
    assert s3.confirm("j/7A.tar", stored.version_id, expected) == []
    with pytest.raises(ClientError) as refused:
        s3_client.put_object(
            Bucket=s3.bucket, Key="j/other.tar", Body=DATA, ChecksumAlgorithm="SHA256",
            ChecksumSHA256=Expected.of(OTHER, until).sha256, ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
        )  # fmt: skip
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    assert _versions(s3_client, s3.bucket, "j/other.tar") == []
    # A retention shorter than the bag's is named.
    [short] = s3.confirm("j/7A.tar", stored.version_id, Expected.of(DATA, _future(31))) or []
    assert short.startswith("retained until")


def _future(days: int = 30) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)


@pytest.fixture
def s3(s3_client: Any, lock_bucket: str) -> S3ObjectLockStorage:
    storage = S3ObjectLockStorage(s3_client, lock_bucket)
    storage.ensure_bucket()
    return storage


def _versions(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    answer = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in answer.get("Versions", []) if v["Key"] == key]


def test_bucket_has_object_lock_and_versioning(s3: S3ObjectLockStorage, s3_client: Any) -> None:
    config = s3_client.get_object_lock_configuration(Bucket=s3.bucket)
    assert config["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert s3_client.get_bucket_versioning(Bucket=s3.bucket)["Status"] == "Enabled"
    s3.ensure_bucket()  # a second call checks and keeps the bucket


def test_bucket_without_object_lock_is_refused(s3_client: Any, lock_bucket: str) -> None:
    s3_client.create_bucket(Bucket=lock_bucket)
    with pytest.raises(StorageError, match="without Object Lock"):
        S3ObjectLockStorage(s3_client, lock_bucket).ensure_bucket()


def test_object_is_compliance_locked_with_the_exact_date(
    s3: S3ObjectLockStorage, s3_client: Any
) -> None:
    until = _future()
    stored = s3.put("journal/7A.tar", DATA, retain_until=until, sha512=SHA)
    assert stored.retention_mode == "COMPLIANCE"
    assert stored.retain_until == until
    assert stored.sha512 == SHA and stored.size == len(DATA)
    assert stored.version_id
    retention = s3_client.get_object_retention(
        Bucket=s3.bucket, Key="journal/7A.tar", VersionId=stored.version_id
    )["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["RetainUntilDate"] == until
    raw = s3_client.head_object(Bucket=s3.bucket, Key="journal/7A.tar")
    assert raw["Metadata"]["sha512"] == SHA
    assert s3.get("journal/7A.tar") == DATA
    assert s3.head("journal/7A.tar") == stored
    assert [o.key for o in s3.list("journal/")] == ["journal/7A.tar"]


def test_the_store_refuses_to_delete_a_locked_version(
    s3: S3ObjectLockStorage, s3_client: Any
) -> None:
    stored = s3.put("k.tar", DATA, retain_until=_future(), sha512=SHA)
    for bypass in (False, True):
        with pytest.raises(ClientError) as refused:
            s3_client.delete_object(
                Bucket=s3.bucket,
                Key="k.tar",
                VersionId=stored.version_id,
                BypassGovernanceRetention=bypass,
            )
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    batch = s3_client.delete_objects(
        Bucket=s3.bucket,
        Delete={"Objects": [{"Key": "k.tar", "VersionId": stored.version_id}]},
        BypassGovernanceRetention=True,
    )
    assert batch.get("Errors") and not batch.get("Deleted")
    assert s3.get("k.tar") == DATA
    # Our API refuses before asking the store.
    with pytest.raises(RetentionError):
        s3.delete("k.tar", today=dt.date.today())


def test_the_store_refuses_to_shorten_or_downgrade_retention(
    s3: S3ObjectLockStorage, s3_client: Any
) -> None:
    until = _future()
    stored = s3.put("k.tar", DATA, retain_until=until, sha512=SHA)
    for retention in (
        {"Mode": "COMPLIANCE", "RetainUntilDate": until - dt.timedelta(days=1)},
        {"Mode": "GOVERNANCE", "RetainUntilDate": until},
    ):
        with pytest.raises(ClientError) as refused:
            s3_client.put_object_retention(
                Bucket=s3.bucket,
                Key="k.tar",
                VersionId=stored.version_id,
                Retention=retention,
                BypassGovernanceRetention=True,
            )
        assert refused.value.response["Error"]["Code"] in {"AccessDenied", "InvalidRequest"}
    head = s3.head("k.tar")
    assert head is not None and head.retain_until == until
    assert head.retention_mode == "COMPLIANCE"


def test_the_store_refuses_to_suspend_versioning(s3: S3ObjectLockStorage, s3_client: Any) -> None:
    with pytest.raises(ClientError):
        s3_client.put_bucket_versioning(
            Bucket=s3.bucket, VersioningConfiguration={"Status": "Suspended"}
        )


def test_legal_hold_blocks_delete_after_expiry(s3: S3ObjectLockStorage, s3_client: Any) -> None:
    """A short retention that really expires; the legal hold keeps the version."""
    import time

    # Room for a slow machine between this line and the put: the date must still be ahead.
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).replace(microsecond=0)
    until += dt.timedelta(seconds=1)
    stored = s3.put("held.tar", DATA, retain_until=until, sha512=SHA)
    s3.set_legal_hold("held.tar", True)
    head = s3.head("held.tar")
    assert head is not None and head.legal_hold
    time.sleep(max(0.0, (until - dt.datetime.now(dt.UTC)).total_seconds()) + 1.0)
    with pytest.raises(ClientError) as refused:
        s3_client.delete_object(Bucket=s3.bucket, Key="held.tar", VersionId=stored.version_id)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with pytest.raises(LegalHoldError):
        s3.delete("held.tar", today=tomorrow)
    s3.set_legal_hold("held.tar", False)
    s3.delete("held.tar", today=tomorrow)
    assert s3.head("held.tar") is None
    assert _versions(s3_client, s3.bucket, "held.tar") == []  # the version itself is gone
    answer = s3_client.list_object_versions(Bucket=s3.bucket, Prefix="held.tar")
    assert not answer.get("DeleteMarkers")


def test_same_key_twice_stores_one_version(s3: S3ObjectLockStorage, s3_client: Any) -> None:
    until = _future()
    first = s3.put("k.tar", DATA, retain_until=until, sha512=SHA)
    assert s3.put("k.tar", DATA, retain_until=until, sha512=SHA) == first
    with pytest.raises(WriteOnceError):
        s3.put("k.tar", OTHER, retain_until=until, sha512=OTHER_SHA)
    assert [v["VersionId"] for v in _versions(s3_client, s3.bucket, "k.tar")] == [first.version_id]
    later = s3.put("k.tar", DATA, retain_until=until + dt.timedelta(days=1), sha512=SHA)
    assert later.retain_until == until + dt.timedelta(days=1)
    assert len(_versions(s3_client, s3.bucket, "k.tar")) == 1


def test_raw_overwrite_is_refused_by_if_none_match(s3: S3ObjectLockStorage, s3_client: Any) -> None:
    s3.put("k.tar", DATA, retain_until=_future(), sha512=SHA)
    with pytest.raises(ClientError) as refused:
        s3_client.put_object(Bucket=s3.bucket, Key="k.tar", Body=OTHER, IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"


def test_get_notices_a_foreign_new_version(s3: S3ObjectLockStorage, s3_client: Any) -> None:
    """Object Lock does not stop a new version on top; the sha512 check on read notices it."""
    s3.put("k.tar", DATA, retain_until=_future(), sha512=SHA)
    s3_client.put_object(Bucket=s3.bucket, Key="k.tar", Body=OTHER, Metadata={"sha512": SHA})
    with pytest.raises(IntegrityError):
        s3.get("k.tar")


def test_s3_put_from_file_with_storage_class(
    s3_client: Any, lock_bucket: str, tmp_path: Path
) -> None:
    storage = S3ObjectLockStorage(s3_client, lock_bucket, storage_class="STANDARD_IA")
    storage.ensure_bucket()
    source = tmp_path / "bag.tar"
    source.write_bytes(DATA)
    stored = storage.put("k.tar", source, retain_until=_future(), sha512=SHA)
    assert stored.size == len(DATA)
    assert storage.get("k.tar") == DATA
    raw = s3_client.head_object(Bucket=lock_bucket, Key="k.tar")
    assert raw.get("StorageClass") == "STANDARD_IA"


class _RejectsStorageClass:
    """A client whose store answers InvalidStorageClass (SeaweedFS accepts any class name)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.classes_sent: list[str | None] = []

    def put_object(self, **params: Any) -> Any:
        self.classes_sent.append(params.get("StorageClass"))
        if "StorageClass" in params:
            raise ClientError(
                {"Error": {"Code": "InvalidStorageClass", "Message": "no"}}, "PutObject"
            )
        return self._client.put_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_s3_rejected_storage_class_falls_back(
    s3_client: Any, lock_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = _RejectsStorageClass(s3_client)
    storage = S3ObjectLockStorage(client, lock_bucket, storage_class="GLACIER_IR")
    storage.ensure_bucket()
    assert storage.put("k.tar", DATA, retain_until=_future(), sha512=SHA).sha512 == SHA
    assert client.classes_sent == ["GLACIER_IR", None]
    assert "rejected storage class GLACIER_IR" in caplog.text
    assert storage.storage_class is None  # not tried again
    storage.put("k2.tar", DATA, retain_until=_future(), sha512=SHA)
    assert client.classes_sent == ["GLACIER_IR", None, None]


def test_s3_bag_round_trip(s3: S3ObjectLockStorage, tmp_path: Path) -> None:
    info = {**INFO, "Retention-Until": (dt.date.today() + dt.timedelta(days=40)).isoformat()}
    bag = build_bag(tmp_path / "ledger-2024-2025", {"ledger.jsonl": b"{}\n"}, info)
    stored = put_bag(s3, bag)
    assert stored.key == "ledger-2024-2025.tar"
    assert stored.retention_mode == "COMPLIANCE"
    restored = fetch_bag(s3, stored.key, tmp_path / "restored")
    assert (restored / "data" / "ledger.jsonl").read_bytes() == b"{}\n"


def test_storage_from_config_talks_to_seaweedfs(seaweedfs: SeaweedFS, lock_bucket: str) -> None:
    storage = storage_from_config(
        {
            "ARCHIVE_STORAGE": "s3",
            "ARCHIVE_S3_ENDPOINT": seaweedfs.endpoint,
            "ARCHIVE_S3_BUCKET": lock_bucket,
            "ARCHIVE_S3_ACCESS_KEY": seaweedfs.access_key,
            "ARCHIVE_S3_SECRET_KEY": seaweedfs.secret_key,
        }
    )
    assert isinstance(storage, S3ObjectLockStorage)
    storage.ensure_bucket()
    assert storage.put("k", DATA, retain_until=_future(), sha512=SHA).sha512 == SHA
