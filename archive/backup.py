"""Encrypted database backups, restore, and the restore drill.

``create_backup`` takes a consistent copy (``pg_dump --format=custom`` for PostgreSQL, SQLite's
online backup API otherwise), encrypts it with AES-256-GCM under ``BACKUP_KEY`` (base64 of 32
bytes; ``JOURNAL_BACKUP_KEY``) and writes it to ``BACKUP_DIR``. ``restore_backup`` decrypts and
authenticates the whole file before it writes anything to the target, which must be empty.
``drill_backup`` restores into a scratch database and proves that every journal's recomputed root
equals its latest checkpoint (:func:`journal.services.verify_journal`).

File format (``.cjbackup``), streamed in chunks so a large database is never held in memory::

    class-journal-backup/v1\\n
    {"chunk_size": ..., "created_at": ..., "format": "sqlite"|"pg_dump", "key_id": ...,
     "nonce_prefix": ..., "source": ...}\\n                         (one line of JSON)
    then chunks: 4-byte big-endian length ‖ AES-256-GCM ciphertext with its 16-byte tag

Chunk ``i`` uses the 12-byte nonce ``nonce_prefix (7 random bytes) ‖ i (4 bytes) ‖ last (1 byte,
1 on the final chunk)`` and the two header lines as associated data, so reordered, dropped,
appended or truncated chunks and an edited header all fail authentication. The final chunk is
always present (it may be empty). ``key_id`` (the first 8 bytes of SHA-256 over a label and the
key, hex) only lets restore say "wrong key" instead of "damaged".
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from journal.db import make_engine
from journal.models import Log
from journal.services import latest_checkpoint, verify_journal

MAGIC = b"class-journal-backup/v1\n"
SUFFIX = ".cjbackup"
CHUNK_SIZE = 1024 * 1024
_TAG = 16
_MAX_HEADER = 4096


class BackupError(Exception):
    """A backup cannot be made, read or restored; the message says why."""


def backup_key_from_config(config: Mapping[str, Any]) -> bytes:
    """The 32-byte key from ``BACKUP_KEY`` (base64), or BackupError saying what is wrong."""
    text = config.get("BACKUP_KEY")
    if not text:
        raise BackupError("BACKUP_KEY is not set (JOURNAL_BACKUP_KEY: base64 of 32 random bytes)")
    try:
        key = base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise BackupError("BACKUP_KEY is not valid base64") from None
    if len(key) != 32:
        raise BackupError(f"BACKUP_KEY must be 32 bytes for AES-256, not {len(key)}")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"class-journal/backup-key\n" + key).digest()[:8].hex()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


# --------------------------------------------------------------------------- encryption


def encrypt_stream(
    source: IO[bytes], target: IO[bytes], key: bytes, header: Mapping[str, Any]
) -> None:
    """Write the encrypted form of everything read from ``source`` to ``target``."""
    prefix = secrets.token_bytes(7)
    fields = {**header, "chunk_size": CHUNK_SIZE, "key_id": key_id(key)}
    fields["nonce_prefix"] = base64.b64encode(prefix).decode()
    head = MAGIC + json.dumps(fields, sort_keys=True).encode() + b"\n"
    target.write(head)
    cipher = AESGCM(key)
    index = 0
    chunk = source.read(CHUNK_SIZE)
    while True:
        following = source.read(CHUNK_SIZE) if chunk else b""
        last = not following
        sealed = cipher.encrypt(_nonce(prefix, index, last), chunk, head)
        target.write(struct.pack(">I", len(sealed)) + sealed)
        if last:
            return
        chunk, index = following, index + 1
        if index >= 2**32:
            raise BackupError("backup too large for one file")


def read_header(source: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    """The header fields and the exact header bytes (the associated data)."""
    magic = source.read(len(MAGIC))
    if magic != MAGIC:
        raise BackupError("not a class-journal backup file (wrong magic line)")
    line = source.readline(_MAX_HEADER)
    if not line.endswith(b"\n"):
        raise BackupError("the backup header is damaged")
    try:
        fields = json.loads(line)
        base64.b64decode(fields["nonce_prefix"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise BackupError("the backup header is damaged") from None
    return fields, magic + line


def decrypt_stream(source: IO[bytes], target: IO[bytes], key: bytes) -> dict[str, Any]:
    """Decrypt a backup into ``target``; BackupError if the key is wrong or any byte changed.

    ``target`` receives plaintext before the last chunk is checked: write it somewhere that is
    thrown away when this raises.
    """
    fields, head = read_header(source)
    if fields.get("key_id") != key_id(key):
        raise BackupError("this backup was encrypted with another BACKUP_KEY")
    prefix = base64.b64decode(fields["nonce_prefix"])
    cipher = AESGCM(key)
    index = 0
    length = _read_length(source)
    while True:
        if length is None:
            raise BackupError("the backup is truncated (no final chunk)")
        if not _TAG <= length <= int(fields.get("chunk_size", CHUNK_SIZE)) + _TAG:
            raise BackupError(f"the backup is damaged (chunk {index} has length {length})")
        sealed = source.read(length)
        if len(sealed) != length:
            raise BackupError("the backup is truncated")
        following = _read_length(source)
        last = following is None
        try:
            target.write(cipher.decrypt(_nonce(prefix, index, last), sealed, head))
        except InvalidTag:
            raise BackupError(f"the backup is damaged or truncated (chunk {index})") from None
        if last:
            return fields
        length, index = following, index + 1


def _read_length(source: IO[bytes]) -> int | None:
    raw = source.read(4)
    if not raw:
        return None
    if len(raw) != 4:
        raise BackupError("the backup is truncated")
    value: int = struct.unpack(">I", raw)[0]
    return value


# --------------------------------------------------------------------------- databases


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(url.database)


def _libpq(url: URL, database: str | None = None) -> tuple[str, dict[str, str]]:
    """A libpq conninfo string for ``url`` and the environment carrying its password."""

    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = {
        "host": url.host,
        "port": str(url.port) if url.port else None,
        "user": url.username,
        "dbname": database or url.database,
    }
    for name, value in url.query.items():
        parts[name] = value if isinstance(value, str) else value[-1]
    conninfo = " ".join(f"{name}={quote(value)}" for name, value in parts.items() if value)
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return conninfo, env


def _kind(url: URL) -> str:
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"cannot back up or restore a {backend} database")
    return backend


def _private_file(directory: Path, prefix: str) -> tuple[IO[bytes], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)  # mode 0600
    return os.fdopen(fd, "w+b"), Path(name)


def _fsync_and_close(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def create_backup(
    database_url: str, backup_dir: Path, key: bytes, *, now: dt.datetime | None = None
) -> Path:
    """Back up the database at ``database_url`` into ``backup_dir``; return the new file."""
    url = make_url(database_url)
    kind = _kind(url)
    backup_dir = Path(backup_dir)
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    fmt = "sqlite" if kind == "sqlite" else "pg_dump"
    target = backup_dir / f"journal-{moment:%Y%m%dT%H%M%S%fZ}-{fmt}{SUFFIX}"
    header = {"created_at": moment.isoformat(), "format": fmt, "source": kind}
    out, tmp = _private_file(backup_dir, ".backup-")
    try:
        if kind == "sqlite":
            with _sqlite_copy(_sqlite_path(url), backup_dir) as copy, copy.open("rb") as source:
                encrypt_stream(source, out, key, header)
        else:
            _pg_dump_encrypted(url, out, key, header)
        _fsync_and_close(out)
        os.chmod(tmp, 0o400)
        os.replace(tmp, target)
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    return target


@contextmanager
def _sqlite_copy(path: Path, work_dir: Path) -> Iterator[Path]:
    """A consistent copy of a live SQLite database (online backup API), deleted afterwards."""
    if not path.is_file():
        raise BackupError(f"no SQLite database at {path}")
    handle, copy = _private_file(work_dir, ".sqlite-copy-")
    handle.close()
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def _pg_dump_encrypted(url: URL, out: IO[bytes], key: bytes, header: Mapping[str, Any]) -> None:
    executable = shutil.which("pg_dump")
    if executable is None:
        raise BackupError("pg_dump is not installed (Debian package postgresql-client)")
    conninfo, env = _libpq(url)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [executable, "--format=custom", "--no-owner", "--no-privileges", "--dbname", conninfo],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert process.stdout is not None
        try:
            encrypt_stream(process.stdout, out, key, header)
        finally:
            process.stdout.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise BackupError(f"pg_dump failed ({code}): {message}")


def restore_backup(path: Path, into_url: str, key: bytes, *, work_dir: Path | None = None) -> str:
    """Restore a backup into an empty database; return the backup's format.

    The file is decrypted and authenticated completely into a private temporary file first, so
    a wrong key, a damaged file or a format that does not fit the target writes nothing there.
    """
    url = make_url(into_url)
    kind = _kind(url)
    path = Path(path)
    with path.open("rb") as source:
        fields, _head = read_header(source)
    fmt = fields.get("format")
    expected = {"sqlite": "sqlite", "pg_dump": "postgresql"}.get(str(fmt))
    if expected is None:
        raise BackupError(f"unknown backup format {fmt!r}")
    if expected != kind:
        raise BackupError(
            f"this is a {expected} backup ({fmt}); restore it into a {expected} database URL"
        )
    if kind == "sqlite":
        target = _sqlite_path(url)
        if target.exists() and target.stat().st_size > 0:
            raise BackupError(f"{target} exists already; restore into a new file")
        work = target.parent
    else:
        _require_empty_postgres(url)
        work = Path(work_dir or tempfile.gettempdir())
    plain, plain_path = _private_file(work, ".restore-")
    try:
        with path.open("rb") as source:
            decrypt_stream(source, plain, key)
        _fsync_and_close(plain)
        if kind == "sqlite":
            _check_sqlite(plain_path)
            os.replace(plain_path, target)
        else:
            _pg_restore(plain_path, url)
    finally:
        plain.close()
        plain_path.unlink(missing_ok=True)
    return str(fmt)


def _check_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the restored SQLite file is not a database: {exc}") from None
    finally:
        connection.close()
    if result != ("ok",):
        raise BackupError(f"the restored SQLite database fails its integrity check: {result}")


def _require_empty_postgres(url: URL) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_catalog.pg_tables "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                )
            )
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot connect to the target database: {exc.orig}") from None
    finally:
        engine.dispose()
    if count:
        raise BackupError(
            f"the target database {url.database} is not empty ({count} tables); restore into "
            "a new, empty database"
        )


def _pg_restore(path: Path, url: URL) -> None:
    executable = shutil.which("pg_restore")
    if executable is None:
        raise BackupError("pg_restore is not installed (Debian package postgresql-client)")
    conninfo, env = _libpq(url)
    result = subprocess.run(
        [
            executable,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            conninfo,
            str(path),
        ],
        capture_output=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(
            f"pg_restore failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )


def latest_backup(backup_dir: Path) -> Path:
    files = sorted(Path(backup_dir).glob(f"journal-*{SUFFIX}"))
    if not files:
        raise BackupError(f"no backups in {backup_dir}; run `flask --app wsgi backup create`")
    return files[-1]


# --------------------------------------------------------------------------- drill


@dataclass
class DrillReport:
    backup: Path
    journals: int = 0
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_restored(database_url: str) -> tuple[int, list[str], list[str]]:
    """Verify every log in a database: ``(count, report lines, failures)``."""
    engine = make_engine(database_url)
    lines: list[str] = []
    failures: list[str] = []
    count = 0
    try:
        with Session(engine) as session:
            for journal in session.scalars(sa.select(Log).order_by(Log.id)):
                count += 1
                try:
                    report = verify_journal(session, journal)
                except LookupError as exc:
                    failures.append(f"{journal.origin}: {exc}")
                    continue
                latest = latest_checkpoint(session, journal)
                if latest is None:
                    lines.append(f"{journal.origin}: {report.size} entries, no checkpoint yet")
                elif latest.size not in report.checkpoints_checked:
                    report.add(None, f"the root does not match the latest checkpoint {latest.size}")
                if report.ok:
                    if latest is not None:
                        lines.append(
                            f"{journal.origin}: root at {latest.size} matches its latest "
                            f"checkpoint ({report.size} entries)"
                        )
                else:
                    failures.append(report.summary())
    finally:
        engine.dispose()
    if count == 0:
        failures.append("the restored database holds no journals: nothing was proven")
    return count, lines, failures


def drill_backup(
    path: Path,
    key: bytes,
    *,
    database_url: str,
    work_dir: Path,
    progress: Callable[[str], None] = lambda _message: None,
) -> DrillReport:
    """Restore ``path`` into a scratch database, verify every journal, drop the scratch copy.

    A SQLite backup goes to a file under ``work_dir``; a pg_dump backup to a new database on the
    server of ``database_url`` (the app's), dropped afterwards.
    """
    report = DrillReport(Path(path))
    with Path(path).open("rb") as source:
        fmt = read_header(source)[0].get("format")
    work_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "sqlite":
        scratch_dir = Path(tempfile.mkdtemp(prefix="drill-", dir=work_dir))
        try:
            scratch = f"sqlite:///{scratch_dir / 'drill.db'}"
            progress(f"restoring {path.name} into {scratch}")
            restore_backup(path, scratch, key)
            report.journals, report.lines, report.failures = verify_restored(scratch)
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)
        return report
    server = make_url(database_url)
    if fmt != "pg_dump" or server.get_backend_name() != "postgresql":
        raise BackupError(
            f"a {fmt} backup needs a PostgreSQL server for its drill; the app uses "
            f"{server.get_backend_name()}"
        )
    name = f"journal_drill_{secrets.token_hex(6)}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        scratch_url = server.set(database=name)
        try:
            progress(f"restoring {path.name} into the scratch database {name}")
            restore_backup(
                path, scratch_url.render_as_string(hide_password=False), key, work_dir=work_dir
            )
            report.journals, report.lines, report.failures = verify_restored(
                scratch_url.render_as_string(hide_password=False)
            )
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
    return report
