"""Encrypted backups: create, restore, and the drill that proves a restore holds every journal.

The drill runs on SQLite and on PostgreSQL (``fresh_app``: the data is committed, as pg_dump and
the SQLite backup API only see committed rows).
"""

from __future__ import annotations

import base64
import io
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import archive.backup as backup
from archive.backup import (
    BackupError,
    backup_key_from_config,
    create_backup,
    decrypt_stream,
    encrypt_stream,
    restore_backup,
)
from journal.db import db
from journal.models import Entry, Log
from journal.services import cut_checkpoint
from tests.archive.school import build_past_school

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def encrypted(data: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key, {"format": "sqlite"})
    return out.getvalue()


def decrypted(blob: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, key)
    return out.getvalue()


# --------------------------------------------------------------------------- the file format


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(backup, "CHUNK_SIZE", 64)
    return 64


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 5, 64 * 5 + 17])
def test_round_trip_in_chunks(small_chunks: int, size: int) -> None:
    data = secrets.token_bytes(size)
    blob = encrypted(data)
    assert size < 16 or data not in blob
    assert decrypted(blob) == data


def test_any_changed_byte_is_refused(small_chunks: int) -> None:
    blob = encrypted(secrets.token_bytes(200))
    for offset in range(0, len(blob), 7):
        changed = bytearray(blob)
        changed[offset] ^= 0x01
        with pytest.raises(BackupError):
            decrypted(bytes(changed))


def test_truncated_reordered_or_extended_files_are_refused(small_chunks: int) -> None:
    data = secrets.token_bytes(64 * 3)
    blob = encrypted(data)
    header_end = blob.index(b"\n", len(backup.MAGIC)) + 1
    body = blob[header_end:]
    chunk = 4 + 64 + 16
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    assert len(chunks) == 3
    with pytest.raises(BackupError, match="damaged or truncated"):
        decrypted(blob[:header_end] + b"".join(chunks[:2]))  # the final chunk cut off
    with pytest.raises(BackupError):
        decrypted(blob[:header_end] + chunks[1] + chunks[0] + chunks[2])
    with pytest.raises(BackupError):
        decrypted(blob + chunks[2])
    with pytest.raises(BackupError, match="truncated"):
        decrypted(blob[:-5])


def test_wrong_key_and_not_a_backup_are_named() -> None:
    blob = encrypted(b"data")
    with pytest.raises(BackupError, match="another BACKUP_KEY"):
        decrypted(blob, OTHER_KEY)
    with pytest.raises(BackupError, match="not a class-journal backup"):
        decrypted(b"SQLite format 3\x00" + b"\x00" * 100)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "BACKUP_KEY is not set"),
        ("", "BACKUP_KEY is not set"),
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "must be 32 bytes"),
    ],
)
def test_backup_key_must_be_32_bytes_of_base64(value: str | None, message: str) -> None:
    with pytest.raises(BackupError, match=message):
        backup_key_from_config({"BACKUP_KEY": value})
    assert backup_key_from_config({"BACKUP_KEY": base64.b64encode(KEY).decode()}) == KEY


# --------------------------------------------------------------------------- restore refusals


@pytest.fixture
def sqlite_backup(tmp_path: Path) -> Path:
    source = tmp_path / "source.db"
    connection = sqlite3.connect(source)
    connection.execute("CREATE TABLE t (x)")
    connection.execute("INSERT INTO t VALUES ('Әсел')")
    connection.commit()
    connection.close()
    return create_backup(f"sqlite:///{source}", tmp_path / "backups", KEY)


def test_sqlite_backup_restores_into_a_new_file(sqlite_backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    assert restore_backup(sqlite_backup, f"sqlite:///{target}", KEY) == "sqlite"
    connection = sqlite3.connect(target)
    assert connection.execute("SELECT x FROM t").fetchall() == [("Әсел",)]
    connection.close()
    assert sqlite_backup.stat().st_mode & 0o777 == 0o400
    assert b"CREATE TABLE" not in sqlite_backup.read_bytes()


def test_bad_restores_write_nothing(sqlite_backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    with pytest.raises(BackupError, match="another BACKUP_KEY"):
        restore_backup(sqlite_backup, f"sqlite:///{target}", OTHER_KEY)
    damaged = tmp_path / "damaged.cjbackup"
    data = bytearray(sqlite_backup.read_bytes())
    data[-3] ^= 0x01
    damaged.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="damaged"):
        restore_backup(damaged, f"sqlite:///{target}", KEY)
    with pytest.raises(BackupError, match="this is a sqlite backup"):
        restore_backup(sqlite_backup, "postgresql+psycopg://postgres@127.0.0.1:5432/nowhere", KEY)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".restore-")] == []
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"precious")
    with pytest.raises(BackupError, match="exists already"):
        restore_backup(sqlite_backup, f"sqlite:///{existing}", KEY)
    assert existing.read_bytes() == b"precious"


# --------------------------------------------------------------------------- the drill


@pytest.fixture
def school_app(fresh_app: Any) -> Any:
    with fresh_app.app_context():
        session = db.session
        past = build_past_school(session, fresh_app.config["KEYS_DIR"])
        for journal in past.logs[:-1]:
            cut_checkpoint(session, journal, past.log_key)
        session.commit()
    return fresh_app


def cli(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_backup_create_and_drill_prove_every_journal(school_app: Any, backend: str) -> None:
    created = cli(school_app, "backup", "create")
    assert created.exit_code == 0, created.output
    files = list(Path(school_app.config["BACKUP_DIR"]).glob("*.cjbackup"))
    assert len(files) == 1
    assert ("pg_dump" if backend == "postgresql" else "sqlite") in files[0].name
    drill = cli(school_app, "backup", "drill")
    assert drill.exit_code == 0, drill.output
    assert "drill PASSED: 3 journal(s) verified" in drill.output
    assert drill.output.count("matches its latest checkpoint (8 entries)") == 2
    assert "no checkpoint yet" in drill.output  # the ledger log, still empty


def test_backup_restore_into_a_new_database(
    school_app: Any, backend: str, databases: Any, tmp_path: Path
) -> None:
    assert cli(school_app, "backup", "create").exit_code == 0
    [file] = Path(school_app.config["BACKUP_DIR"]).glob("*.cjbackup")
    target = (
        f"sqlite:///{tmp_path / 'restored.db'}"
        if backend == "sqlite"
        else databases.create("postgresql")
    )
    restored = cli(school_app, "backup", "restore", str(file), "--into", target)
    assert restored.exit_code == 0, restored.output
    engine = sa.create_engine(target)
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.select(sa.func.count()).select_from(Entry)) == 16
    finally:
        engine.dispose()
    again = cli(school_app, "backup", "restore", str(file), "--into", target)
    assert again.exit_code == 1
    assert "exists already" in again.output or "is not empty" in again.output


def test_the_drill_fails_on_a_tampered_journal(school_app: Any, backend: str) -> None:
    with school_app.app_context():
        session = db.session
        journal = session.scalar(sa.select(Log).where(Log.kind == "journal").order_by(Log.id))
        trigger = (
            "entries_append_only ON entries" if backend == "postgresql" else ("entries_no_update")
        )
        session.execute(sa.text(f"DROP TRIGGER {trigger}"))
        leaf = session.scalar(
            sa.select(Entry.leaf).where(Entry.log_id == journal.id, Entry.seq == 3)
        )
        session.execute(
            sa.update(Entry)
            .where(Entry.log_id == journal.id, Entry.seq == 3)
            .values(leaf=leaf.replace(b'"score":', b'"score": ', 1))
        )
        session.commit()
        origin = journal.origin
    assert cli(school_app, "backup", "create").exit_code == 0
    drill = cli(school_app, "backup", "drill")
    assert drill.exit_code == 1
    assert f"FAILED {origin}: first bad seq 3" in drill.output
    assert "drill FAILED" in drill.output


def test_backup_commands_need_a_key_and_write_nothing_without(
    school_app: Any, tmp_path: Path
) -> None:
    school_app.config["BACKUP_KEY"] = None
    result = cli(school_app, "backup", "create")
    assert result.exit_code == 1 and "BACKUP_KEY is not set" in result.output
    assert not list(Path(school_app.config["BACKUP_DIR"]).glob("*"))
    school_app.config["BACKUP_KEY"] = base64.b64encode(KEY).decode()
    result = cli(school_app, "backup", "drill")
    assert result.exit_code == 1 and "no backups in" in result.output
