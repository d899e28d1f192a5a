"""Write-once archive storage: one small interface, a local and an S3 Object Lock implementation.

Layout decision: **one object per bag**, the bag's deterministic uncompressed tar
(:func:`archive.bag.bag_to_tar`) under the key ``<bag-name>.tar``. A bag is then present or absent
as a whole (no half-uploaded bag whose manifest lists missing files), one retention date and one
legal hold cover the whole package, and a restore is one GET. :func:`put_bag` and
:func:`fetch_bag` do the tar round trip and validate the bag on both sides.

Both implementations keep the same promises:

- ``put`` checks the caller's sha512 against the bytes, refuses to replace an existing key with
  other bytes (:class:`WriteOnceError`), and treats a second put of identical bytes as a no-op
  (retention is extended if the new date is later; it is never shortened);
- ``delete`` is refused before the retain-until moment and while a legal hold is on
  (:class:`RetentionError`, :class:`LegalHoldError`); ``today`` is passed in, so callers and
  tests decide what day it is;
- ``get`` checks the bytes against the stored sha512 (:class:`IntegrityError`);
- ``put`` returns the version it wrote (S3 version id) and ``get``, ``head`` and ``delete`` take
  that ``version_id``: the archive pins the version it sealed and reads nothing else, because
  Object Lock protects versions, not keys (a plain PutObject or CopyObject makes a new current
  version on top of a locked one, and a delete marker hides it);
- ``audit_objects`` compares what the archive recorded (:class:`Pinned`) with what the store holds
  and names every difference (:class:`Finding`): missing objects or versions, replaced current
  versions, delete markers, objects nobody recorded, files that are writable or not immutable.

Retain-until values are timezone-aware UTC datetimes, whole seconds, rounded up; a ``date`` means
midnight UTC at the start of that day, so on that day deletion is allowed.

Neither store is the only line of defence. :class:`LocalWormStorage` is enforced by this code,
file permissions and, where the process may set it (Linux, root or CAP_LINUX_IMMUTABLE, a file
system that supports it), the immutable attribute; without that attribute the OS user owning the
directory can still chmod and delete the files, and the store says so (``write_once_note``).
SeaweedFS enforces Object Lock in its S3 gateway only; its filer and volume ports can delete
locked data and must stay off the network. The school ledger's Merkle log, which records every
sealed journal's final checkpoint, is the second line that makes such a deletion evident.
"""

from __future__ import annotations

import builtins
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from base64 import b64encode
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from archive.bag import bag_to_tar, tar_to_bag, validate_bag

log = logging.getLogger(__name__)

Data = bytes | os.PathLike[str]
RetainUntil = dt.date | dt.datetime
Clock = Callable[[], dt.datetime]

_CHUNK = 1024 * 1024
_KEY_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")


class StorageError(Exception):
    """Base class for archive storage errors."""


class ObjectNotFound(StorageError, KeyError):
    """No object under that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object not found"


class WriteOnceError(StorageError):
    """The key already holds other bytes; archive objects are never replaced."""


class RetentionError(StorageError):
    """The object is still under retention (or the store refused the change)."""


class LegalHoldError(RetentionError):
    """The object is under a legal hold."""


class IntegrityError(StorageError):
    """Bytes do not match their sha512 (on put: the caller's; on get: the stored one)."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha512: str
    retain_until: dt.datetime | None
    legal_hold: bool = False
    version_id: str | None = None
    retention_mode: str | None = None  # "COMPLIANCE" on S3; None for the local store
    # The store's own checksums of the bytes it received (S3: x-amz-checksum-sha256, base64,
    # and the ETag, the MD5 in hex for a single PUT); None where the store keeps none.
    sha256: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Expected:
    """What an uploaded object must be: the staged tar's size and digests, and its retention."""

    size: int
    sha512: str
    sha256: str  # base64, as S3 sends it
    md5: str  # hex, as an S3 ETag of a single PUT
    retain_until: dt.datetime

    @classmethod
    def of(cls, data: Data, retain_until: RetainUntil) -> Expected:
        digests = _digests(data)
        return cls(
            digests.size,
            digests.sha512,
            b64encode(digests.sha256).decode("ascii"),
            digests.md5.hex(),
            normalize_retain_until(retain_until),
        )


def compare_stored(
    stored: StoredObject | None, expected: Expected, *, compliance: bool
) -> builtins.list[str]:
    """How ``stored`` differs from ``expected``: size, sha512, the store's SHA-256 and MD5 when
    it reports them, and a retention at least as long (in COMPLIANCE mode when ``compliance``).
    Empty when it is what was built."""
    if stored is None:
        return ["the version written is not in the store"]
    problems = []
    if stored.size != expected.size:
        problems.append(f"stored with {stored.size} bytes, not {expected.size}")
    if stored.sha512 != expected.sha512:
        problems.append(f"its sha512 is {stored.sha512[:16] or 'missing'}…, not the bag's")
    if stored.sha256 is not None and stored.sha256 != expected.sha256:
        problems.append(f"the store's SHA-256 is {stored.sha256}, not {expected.sha256}")
    if stored.etag and re.fullmatch(r"[0-9a-f]{32}", stored.etag) and stored.etag != expected.md5:
        problems.append(f"the store's MD5 (ETag) is {stored.etag}, not {expected.md5}")
    if stored.retain_until is None or stored.retain_until < expected.retain_until:
        problems.append(
            f"retained until {stored.retain_until}, not {expected.retain_until} or later"
        )
    if compliance and stored.retention_mode != "COMPLIANCE":
        problems.append(f"its retention mode is {stored.retention_mode}, not COMPLIANCE")
    return problems


@dataclass(frozen=True)
class Pinned:
    """What the archive recorded when it sealed an object: its sha512 and the version it wrote
    (None on the local store, which keeps one version per key)."""

    key: str
    sha512: str
    version_id: str | None = None


@dataclass(frozen=True)
class Finding:
    """One difference between the archive's records and the store. ``kind`` is one of
    ``missing``, ``replaced``, ``hidden``, ``unexpected``, ``altered``, ``writable``,
    ``mutable``."""

    key: str
    kind: str
    what: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what}"


class ArchiveStorage(Protocol):
    def put(
        self, key: str, data: Data, *, retain_until: RetainUntil, sha512: str
    ) -> StoredObject: ...

    def get(self, key: str, version_id: str | None = None) -> bytes: ...

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None: ...

    def list(self, prefix: str = "") -> Iterator[StoredObject]: ...

    def delete(self, key: str, *, today: dt.date, version_id: str | None = None) -> None: ...

    def confirm(
        self, key: str, version_id: str | None, expected: Expected
    ) -> builtins.list[str] | None: ...

    def set_legal_hold(self, key: str, on: bool) -> None: ...

    def audit_objects(
        self, pinned: Mapping[str, Pinned], prefix: str
    ) -> builtins.list[Finding]: ...

    def write_once_note(self) -> str | None: ...


# --------------------------------------------------------------------------- shared checks


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def normalize_retain_until(value: RetainUntil) -> dt.datetime:
    """Aware UTC datetime in whole seconds (rounded up); a date is midnight UTC of that day."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("retain_until must be timezone-aware")
        moment = value.astimezone(dt.UTC)
        if moment.microsecond:
            moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
        return moment
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise TypeError(f"retain_until must be a date or datetime, not {type(value).__name__}")


def retention_allows_delete(retain_until: dt.datetime | None, today: dt.date) -> bool:
    """True when the whole of ``today`` (from 00:00 UTC) is at or after ``retain_until``."""
    if retain_until is None:
        return True
    return normalize_retain_until(today) >= retain_until


def check_key(key: str) -> str:
    """Keys are relative '/'-separated names without empty, '.' or '..' segments."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise ValueError("key must be a non-empty string of at most 1024 characters")
    if _KEY_UNSAFE.search(key):
        raise ValueError(f"key {key!r} has a control character or backslash")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"key {key!r} has an empty, '.' or '..' segment")
    return key


def _check_sha512(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{128}", value or ""):
        raise ValueError("sha512 must be 128 lowercase hex digits")
    return value


@dataclass(frozen=True)
class _Digests:
    size: int
    sha512: str
    sha256: bytes
    md5: bytes


def _digests(data: Data) -> _Digests:
    sha512, sha256 = hashlib.sha512(), hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    if isinstance(data, bytes | bytearray | memoryview):
        chunks: Iterator[bytes] = iter([bytes(data)])
    else:
        chunks = _read_chunks(Path(data))
    for chunk in chunks:
        size += len(chunk)
        sha512.update(chunk)
        sha256.update(chunk)
        md5.update(chunk)
    return _Digests(size, sha512.hexdigest(), sha256.digest(), md5.digest())


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _verified_digests(data: Data, sha512: str) -> _Digests:
    digests = _digests(data)
    if digests.sha512 != _check_sha512(sha512):
        raise IntegrityError(f"data does not match the given sha512 ({digests.sha512[:16]}…)")
    return digests


# --------------------------------------------------------------------------- local


# Linux inode flags (linux/fs.h): FS_IOC_GETFLAGS/SETFLAGS and FS_IMMUTABLE_FL ("chattr +i").
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x00000010


def _inode_flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        buffer = bytearray(8)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buffer, True)
        return int.from_bytes(buffer[:4], "little")
    finally:
        os.close(fd)


def is_immutable(path: Path) -> bool:
    """True when the file carries the immutable attribute (False where flags are unsupported)."""
    try:
        return bool(_inode_flags(path) & _FS_IMMUTABLE_FL)
    except OSError:
        return False


def set_immutable(path: Path, on: bool) -> None:
    """Set or clear the immutable attribute; OSError when the process or file system cannot."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        buffer = bytearray(8)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buffer, True)
        flags = int.from_bytes(buffer[:4], "little")
        flags = flags | _FS_IMMUTABLE_FL if on else flags & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, bytearray(flags.to_bytes(4, "little") + bytes(4)))
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWormStorage:
    """Write-once store in a local directory: the embedded default.

    ``root/objects/<key>`` holds each object, written to ``root/tmp``, fsynced, made read-only
    (0o444) and hard-linked into place (``link`` fails if the name exists, so nothing is ever
    overwritten), then the directory is fsynced. ``root/index.jsonl`` is an append-only, fsynced
    journal of ``put``, ``retain``, ``legal_hold`` and ``delete`` events; replaying it gives key,
    size, sha512, retain-until and legal hold. Writers serialize on ``flock(root/.lock)``, so
    several processes may share a root. :meth:`audit` compares the index with the files.

    With ``immutable=True`` each object also gets the immutable attribute (``chattr +i``), which
    only a process with CAP_LINUX_IMMUTABLE (root) can clear: then neither ``rm``, ``mv -f`` nor
    ``chmod u+w`` works on a stored bag, even for the files' owner. Where the attribute cannot be
    set (not root, not Linux, a file system without it) the store still works, and
    :meth:`write_once_note` says plainly that it is not write-once. Without the attribute this
    protects against the application and against mistakes, not against the machine's owner;
    Object Lock storage, ``archive audit`` and the ledger's Merkle log cover that.
    """

    def __init__(
        self, root: Path | str, *, clock: Clock = utc_now, immutable: bool = False
    ) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.index_path = self.root / "index.jsonl"
        self._tmp = self.root / "tmp"
        self._clock = clock
        self.immutable = immutable
        self._immutable_error: str | None = None
        for directory in (self.root, self.objects, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)

    def _make_immutable(self, path: Path) -> None:
        if not self.immutable:
            return
        try:
            set_immutable(path, True)
        except OSError as exc:  # EPERM (not root), ENOTTY/EOPNOTSUPP (file system): say so
            self._immutable_error = f"{exc.strerror or exc}"
            log.warning("%s: cannot set the immutable attribute on %s: %s", self, path, exc)

    def write_once_note(self) -> str | None:
        """None when objects are protected by the immutable attribute; else why they are not."""
        if not self.immutable:
            return (
                "the local store is not write-once: ARCHIVE_LOCAL_IMMUTABLE is off, so the files' "
                "owner (and root) can delete or replace a bag; archive audit finds it afterwards"
            )
        if self._immutable_error is None:
            self._probe_immutable()
        if self._immutable_error is not None:
            return (
                "the local store is not write-once: this process cannot set the immutable "
                f"attribute in {self.root} ({self._immutable_error}; it needs Linux, root or "
                "CAP_LINUX_IMMUTABLE, and a file system that supports it), so the files' owner "
                "can delete or replace a bag; archive audit finds it afterwards"
            )
        return None

    def _probe_immutable(self) -> None:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="probe-")
        os.close(fd)
        probe = Path(name)
        try:
            set_immutable(probe, True)
            set_immutable(probe, False)
        except OSError as exc:
            self._immutable_error = f"{exc.strerror or exc}"
        finally:
            probe.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"LocalWormStorage({str(self.root)!r})"

    # -- index

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _state(self) -> dict[str, StoredObject]:
        state: dict[str, StoredObject] = {}
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return state
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines):  # a torn last line from a crash mid-append
                    log.warning("ignoring a torn last line in %s", self.index_path)
                    continue
                raise StorageError(f"{self.index_path}:{number} is not JSON") from exc
            key, op = event["key"], event["op"]
            if op == "put":
                state[key] = StoredObject(
                    key=key,
                    size=event["size"],
                    sha512=event["sha512"],
                    retain_until=dt.datetime.fromisoformat(event["retain_until"]),
                    legal_hold=event.get("legal_hold", False),
                )
            elif op == "retain":
                state[key] = replace(
                    state[key], retain_until=dt.datetime.fromisoformat(event["retain_until"])
                )
            elif op == "legal_hold":
                state[key] = replace(state[key], legal_hold=bool(event["on"]))
            elif op == "delete":
                state.pop(key, None)
            else:
                raise StorageError(f"{self.index_path}:{number}: unknown op {op!r}")
        return state

    def _append(self, event: dict[str, Any]) -> None:
        event = {**event, "at": self._clock().astimezone(dt.UTC).isoformat()}
        line = json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n"
        created = not self.index_path.exists()
        with self.index_path.open("a+b") as index:
            size = index.seek(0, os.SEEK_END)
            if size:
                index.seek(-1, os.SEEK_END)
                if index.read(1) != b"\n":  # a torn last line from a crash: drop it
                    index.seek(0)
                    keep = index.read().rfind(b"\n") + 1
                    log.warning("dropping a torn last line from %s", self.index_path)
                    index.truncate(keep)
            index.write(line.encode("utf-8"))
            index.flush()
            os.fsync(index.fileno())
        if created:
            _fsync_dir(self.root)

    def _path(self, key: str) -> Path:
        return self.objects.joinpath(*check_key(key).split("/"))

    # -- the interface

    def put(self, key: str, data: Data, *, retain_until: RetainUntil, sha512: str) -> StoredObject:
        path = self._path(key)
        until = normalize_retain_until(retain_until)
        digests = _verified_digests(data, sha512)
        with self._locked():
            existing = self._state().get(key)
            if existing is not None:
                return self._same_again(existing, digests, until)
            if path.exists():  # written but not indexed (crash between link and index)
                if not path.is_file() or _digests(path).sha512 != digests.sha512:
                    raise WriteOnceError(f"{key} already exists with other bytes")
                log.warning("indexing %s, found on disk without an index entry", key)
                self._make_immutable(path)
            else:
                if until <= self._clock():
                    raise ValueError(f"retain_until {until.isoformat()} is not in the future")
                self._write_file(path, data)
            stored = StoredObject(key, digests.size, digests.sha512, until)
            self._append(
                {
                    "op": "put",
                    "key": key,
                    "size": stored.size,
                    "sha512": stored.sha512,
                    "retain_until": until.isoformat(),
                    "legal_hold": False,
                }
            )
            return stored

    def _same_again(
        self, existing: StoredObject, digests: _Digests, until: dt.datetime
    ) -> StoredObject:
        if existing.sha512 != digests.sha512:
            raise WriteOnceError(f"{existing.key} already exists with other bytes")
        if existing.retain_until is not None and until > existing.retain_until:
            self._append({"op": "retain", "key": existing.key, "retain_until": until.isoformat()})
            return replace(existing, retain_until=until)
        return existing

    def _write_file(self, path: Path, data: Data) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes | bytearray | memoryview):
                    handle.write(data)
                else:
                    for chunk in _read_chunks(Path(data)):
                        handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.chmod(0o444)
            self._make_parents(path.parent)
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise WriteOnceError(f"{path} appeared while writing") from exc
            except NotADirectoryError as exc:
                raise WriteOnceError(f"a parent of {path} is an object") from exc
            _fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        self._make_immutable(path)  # after the temporary name is gone: it shares the inode

    def _make_parents(self, directory: Path) -> None:
        missing = []
        while not directory.exists() and not directory.is_symlink():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            new.mkdir()
            _fsync_dir(new.parent)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        stored = self.head(key, version_id)
        if stored is None:
            raise ObjectNotFound(key)
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise IntegrityError(f"{key} is indexed but its file is missing") from exc
        if hashlib.sha512(data).hexdigest() != stored.sha512:
            raise IntegrityError(f"{key} does not match its sha512")
        return data

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        """The object's state; ``version_id`` must be None (one version per key here)."""
        check_key(key)
        if version_id is not None:
            return None  # the local store has no versions: a version id names nothing here
        return self._state().get(key)

    def confirm(self, key: str, version_id: str | None, expected: Expected) -> builtins.list[str]:
        """Differences between the stored object and ``expected`` (empty: it is what was built):
        the index's size, sha512 and retain-until, and the file itself hashed again (a local
        read) and still read-only."""
        problems = compare_stored(self.head(key, version_id), expected, compliance=False)
        if problems:
            return problems
        path = self._path(key)
        try:
            if _digests(path).sha512 != expected.sha512:
                problems.append("the file does not hold the bytes that were put")
            if path.stat().st_mode & 0o222:
                problems.append("the file is writable")
        except OSError as exc:
            problems.append(f"the file cannot be read: {exc.strerror or exc}")
        return problems

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        state = self._state()
        for key in sorted(state):
            if key.startswith(prefix):
                yield state[key]

    def delete(self, key: str, *, today: dt.date, version_id: str | None = None) -> None:
        """Remove the object once its retention has ended. ObjectNotFound when the index does not
        hold it or its file is gone: only a file this store finds and removes counts as deleted."""
        path = self._path(key)
        with self._locked():
            stored = self._state().get(key) if version_id is None else None
            if stored is None:
                raise ObjectNotFound(key)
            if stored.legal_hold:
                raise LegalHoldError(f"{key} is under a legal hold")
            if not retention_allows_delete(stored.retain_until, today):
                raise RetentionError(f"{key} is retained until {stored.retain_until}")
            if not path.is_file():
                raise ObjectNotFound(f"{key}: indexed, but its file is gone")
            if is_immutable(path):
                try:
                    set_immutable(path, False)
                except OSError as exc:
                    raise RetentionError(
                        f"cannot clear the immutable attribute of {key}: {exc.strerror or exc}"
                    ) from exc
            path.unlink()
            _fsync_dir(path.parent)
            self._append({"op": "delete", "key": key})

    def set_legal_hold(self, key: str, on: bool) -> None:
        check_key(key)
        with self._locked():
            if key not in self._state():
                raise ObjectNotFound(key)
            self._append({"op": "legal_hold", "key": key, "on": bool(on)})

    def audit(self) -> builtins.list[str]:
        """Differences between the index and the files; an empty list means they agree."""
        state = self._state()
        problems = []
        for key, stored in sorted(state.items()):
            path = self._path(key)
            if not path.is_file():
                problems.append(f"{key}: indexed but missing")
                continue
            digests = _digests(path)
            if (digests.size, digests.sha512) != (stored.size, stored.sha512):
                problems.append(f"{key}: size or sha512 differs from the index")
            if path.stat().st_mode & 0o222:
                problems.append(f"{key}: file is writable")
        for path in sorted(p for p in self.objects.rglob("*") if not p.is_dir()):
            key = path.relative_to(self.objects).as_posix()
            if key not in state:
                problems.append(f"{key}: file not in the index")
        return problems

    def audit_objects(self, pinned: Mapping[str, Pinned], prefix: str) -> builtins.list[Finding]:
        """Compare the archive's records (keys under ``prefix``) with the index and the files.

        Contents are not hashed here: the caller reads every pinned object back and checks it.
        """
        state = {key: value for key, value in self._state().items() if key.startswith(prefix)}
        protected = self.immutable and self.write_once_note() is None
        findings = []
        for key, pin in sorted(pinned.items()):
            path = self._path(key)
            stored = state.get(key)
            if stored is None:
                findings.append(Finding(key, "missing", "the store's index no longer holds it"))
            elif stored.sha512 != pin.sha512:
                findings.append(Finding(key, "altered", "the store's index records another sha512"))
            if not path.is_file():
                findings.append(Finding(key, "missing", "its file is gone"))
                continue
            if path.stat().st_mode & 0o222:
                findings.append(Finding(key, "writable", "its file is writable"))
            if protected and not is_immutable(path):
                findings.append(
                    Finding(key, "mutable", "its file does not carry the immutable attribute")
                )
        for key in sorted(set(state) - set(pinned)):
            findings.append(
                Finding(key, "unexpected", "in the store's index, in no archive record")
            )
        base = self.objects.joinpath(*prefix.rstrip("/").split("/")) if prefix else self.objects
        if base.is_dir():
            for path in sorted(p for p in base.rglob("*") if not p.is_dir()):
                key = path.relative_to(self.objects).as_posix()
                if key not in state and key not in pinned:
                    findings.append(Finding(key, "unexpected", "a file in no index or record"))
        return findings


# --------------------------------------------------------------------------- S3


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
_REFUSED = {"AccessDenied", "InvalidRequest", "ObjectLocked", "403"}
_NO_STORAGE_CLASS = {"InvalidStorageClass", "NotImplemented", "InvalidArgument"}


class S3ObjectLockStorage:
    """Archive objects in an S3 bucket with Object Lock, each version in COMPLIANCE mode.

    Each put sends Content-MD5 and x-amz-checksum-sha256 (AWS requires one with Object Lock
    parameters), ``If-None-Match: *`` (no silent overwrite, even when two writers race), the
    retain-until date and the sha512 as user metadata. The store, not this class, is the proof of
    retention: no request from here can delete or shorten a COMPLIANCE version before its date.
    ``delete`` removes one *version* (not merely adding a delete marker) once the date has passed,
    and checks afterwards that the store no longer has it. ``put`` returns the version it wrote;
    reads, heads and deletes act on the version given, else on the current one.

    ``storage_class`` (e.g. ``STANDARD_IA``) is optional; if the store rejects it the put is
    retried without it and a warning is logged. Single PUTs limit objects to 5 GiB.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        storage_class: str | None = None,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.storage_class = storage_class or None
        self._clock = clock

    def __repr__(self) -> str:
        return f"S3ObjectLockStorage(bucket={self.bucket!r})"

    def ensure_bucket(self) -> None:
        """Create the bucket with Object Lock (and so versioning), or check an existing one."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND | {"NoSuchBucket"}:
                raise
            params: dict[str, Any] = {"Bucket": self.bucket, "ObjectLockEnabledForBucket": True}
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self.client.create_bucket(**params)
        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
            enabled = config["ObjectLockConfiguration"].get("ObjectLockEnabled") == "Enabled"
        except ClientError as exc:
            if _error_code(exc) != "ObjectLockConfigurationNotFoundError":
                raise
            enabled = False
        if not enabled:
            raise StorageError(f"bucket {self.bucket} exists without Object Lock")
        versioning = self.client.get_bucket_versioning(Bucket=self.bucket)
        if versioning.get("Status") != "Enabled":
            raise StorageError(f"bucket {self.bucket} has Object Lock but versioning is off")

    def put(self, key: str, data: Data, *, retain_until: RetainUntil, sha512: str) -> StoredObject:
        from botocore.exceptions import ClientError

        check_key(key)
        until = normalize_retain_until(retain_until)
        digests = _verified_digests(data, sha512)
        existing = self.head(key)
        if existing is not None:
            return self._same_again(existing, digests, until)
        if until <= self._clock():
            raise ValueError(f"retain_until {until.isoformat()} is not in the future")
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentLength": digests.size,
            "ContentType": "application/x-tar"
            if key.endswith(".tar")
            else "application/octet-stream",
            "ContentMD5": b64encode(digests.md5).decode("ascii"),
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": b64encode(digests.sha256).decode("ascii"),
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": until,
            "Metadata": {"sha512": digests.sha512},
            "IfNoneMatch": "*",
        }
        if self.storage_class:
            params["StorageClass"] = self.storage_class
        try:
            answer = self._put_object(params, data)
        except ClientError as exc:
            code = _error_code(exc)
            if code in {"PreconditionFailed", "412"}:  # another writer won the race
                raced = self.head(key)
                if raced is None:
                    raise
                return self._same_again(raced, digests, until)
            if "StorageClass" in params and code in _NO_STORAGE_CLASS:
                log.warning(
                    "bucket %s rejected storage class %s (%s); storing without it",
                    self.bucket,
                    self.storage_class,
                    code,
                )
                self.storage_class = None
                del params["StorageClass"]
                answer = self._put_object(params, data)
            else:
                raise
        # The version this put wrote: what the archive pins, whatever lands on the key later.
        stored = self.head(key, answer.get("VersionId") or None)
        if stored is None or stored.sha512 != digests.sha512:
            raise IntegrityError(f"{key} was not stored as sent")
        return stored

    def _put_object(self, params: dict[str, Any], data: Data) -> dict[str, Any]:
        if isinstance(data, bytes | bytearray | memoryview):
            answer: dict[str, Any] = self.client.put_object(Body=bytes(data), **params)
        else:
            with Path(data).open("rb") as body:
                answer = self.client.put_object(Body=body, **params)
        return answer

    def _same_again(
        self, existing: StoredObject, digests: _Digests, until: dt.datetime
    ) -> StoredObject:
        if existing.sha512 != digests.sha512:
            raise WriteOnceError(f"{existing.key} already exists with other bytes")
        if existing.retain_until is None or until > existing.retain_until:
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=existing.key,
                VersionId=existing.version_id,
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
            )
            return replace(existing, retain_until=until, retention_mode="COMPLIANCE")
        return existing

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        from botocore.exceptions import ClientError

        check_key(key)
        # ChecksumMode: the store then sends the SHA-256 it computed of the bytes it received.
        params = {"Bucket": self.bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            answer = self.client.head_object(**params)
        except ClientError as exc:
            # 405: the version named is a delete marker, which has no object to describe.
            if _error_code(exc) in _NOT_FOUND | {"405", "MethodNotAllowed"}:
                return None
            raise
        version_id = answer.get("VersionId")
        mode = answer.get("ObjectLockMode")
        until = answer.get("ObjectLockRetainUntilDate")
        if until is None:  # some stores send the lock headers only from the retention API
            try:
                retention = self.client.get_object_retention(
                    Bucket=self.bucket, Key=key, VersionId=version_id
                )["Retention"]
                mode, until = retention.get("Mode"), retention.get("RetainUntilDate")
            except ClientError as exc:
                # A version written without retention (not by this archive) has no lock to read.
                if _error_code(exc) not in {
                    "NoSuchObjectLockConfiguration",
                    "ObjectLockConfigurationNotFoundError",
                    *_NOT_FOUND,
                }:
                    raise
        hold = answer.get("ObjectLockLegalHoldStatus")
        if hold is None:
            try:
                answer_hold = self.client.get_object_legal_hold(
                    Bucket=self.bucket, Key=key, VersionId=version_id
                )
                hold = (answer_hold.get("LegalHold") or {}).get("Status") or "OFF"
            except ClientError as exc:
                if _error_code(exc) not in {"NoSuchObjectLegalHold", *_NOT_FOUND}:
                    raise
                hold = "OFF"
        return StoredObject(
            key=key,
            size=int(answer["ContentLength"]),
            sha512=(answer.get("Metadata") or {}).get("sha512", ""),
            retain_until=until.astimezone(dt.UTC) if until is not None else None,
            legal_hold=hold == "ON",
            version_id=version_id,
            retention_mode=mode,
            sha256=answer.get("ChecksumSHA256") or None,
            etag=(answer.get("ETag") or "").strip('"') or None,
        )

    def confirm(
        self, key: str, version_id: str | None, expected: Expected
    ) -> builtins.list[str] | None:
        """Differences between the pinned version and ``expected`` from one HEAD (empty: it is
        what was built): size, the sha512 metadata, the SHA-256 and MD5 the store computed when
        it received the bytes (it refused the PUT unless they matched the ones sent), COMPLIANCE
        mode and retain-until. None when the store reports no SHA-256 of its own: then only a
        read-back can tell."""
        stored = self.head(key, version_id)
        if stored is not None and stored.sha256 is None:
            return None
        return compare_stored(stored, expected, compliance=True)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        from botocore.exceptions import ClientError

        check_key(key)
        params = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            answer = self.client.get_object(**params)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND | {"405", "MethodNotAllowed"}:
                name = f"{key} (version {version_id})" if version_id else key
                raise ObjectNotFound(name) from exc
            raise
        with answer["Body"] as body:
            data: bytes = body.read()
        expected = (answer.get("Metadata") or {}).get("sha512")
        if not expected:
            raise IntegrityError(f"{key} has no sha512 metadata: not written by this archive")
        if hashlib.sha512(data).hexdigest() != expected:
            raise IntegrityError(f"{key} does not match its sha512")
        return data

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                stored = self.head(item["Key"])
                if stored is not None:
                    yield stored

    def delete(self, key: str, *, today: dt.date, version_id: str | None = None) -> None:
        """Delete one version (``version_id``, else the current one) and check it is gone."""
        from botocore.exceptions import ClientError

        stored = self.head(key, version_id)
        if stored is None:
            raise ObjectNotFound(f"{key} (version {version_id})" if version_id else key)
        if stored.legal_hold:
            raise LegalHoldError(f"{key} is under a legal hold")
        if not retention_allows_delete(stored.retain_until, today):
            raise RetentionError(f"{key} is retained until {stored.retain_until}")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=stored.version_id)
        except ClientError as exc:
            if _error_code(exc) in _REFUSED:
                raise RetentionError(f"the store refused to delete {key}: {exc}") from exc
            raise
        if self.head(key, stored.version_id) is not None:
            raise StorageError(f"the store answered the delete but still holds {key}")

    def _versions(self, prefix: str) -> dict[str, builtins.list[dict[str, Any]]]:
        """Every version and delete marker under ``prefix`` by key, newest first."""
        found: dict[str, builtins.list[dict[str, Any]]] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Versions") or []:
                found.setdefault(item["Key"], []).append({**item, "DeleteMarker": False})
            for item in page.get("DeleteMarkers") or []:
                found.setdefault(item["Key"], []).append({**item, "DeleteMarker": True})
        for versions in found.values():
            versions.sort(key=lambda v: (not v.get("IsLatest"), -v["LastModified"].timestamp()))
        return found

    def audit_objects(self, pinned: Mapping[str, Pinned], prefix: str) -> builtins.list[Finding]:
        """Compare the pinned versions with every version and delete marker under ``prefix``.

        Contents are not read here: the caller reads every pinned version back and checks it.
        """
        found = self._versions(prefix)
        findings = []
        for key, pin in sorted(pinned.items()):
            versions = found.pop(key, [])
            objects = [v for v in versions if not v["DeleteMarker"]]
            wanted = pin.version_id or (objects[-1]["VersionId"] if objects else None)
            if wanted is None or wanted not in {v["VersionId"] for v in objects}:
                findings.append(
                    Finding(key, "missing", f"the pinned version {pin.version_id} is gone")
                )
            latest = next((v for v in versions if v.get("IsLatest")), None)
            if latest is not None and latest["DeleteMarker"]:
                findings.append(
                    Finding(
                        key,
                        "hidden",
                        f"a delete marker ({latest['VersionId']}) hides it: a plain GET "
                        "finds nothing",
                    )
                )
            for version in versions:
                if version["VersionId"] == wanted or version is latest and version["DeleteMarker"]:
                    continue
                what = "delete marker" if version["DeleteMarker"] else "version"
                findings.append(
                    Finding(
                        key,
                        "replaced" if version is latest else "unexpected",
                        f"another {what} {version['VersionId']} of "
                        f"{version['LastModified']:%Y-%m-%d %H:%M:%S}Z"
                        + (
                            " is the current one: a plain GET returns it"
                            if version is latest
                            else ""
                        ),
                    )
                )
        for key, versions in sorted(found.items()):
            for version in versions:
                what = "delete marker" if version["DeleteMarker"] else "object"
                findings.append(
                    Finding(
                        key,
                        "unexpected",
                        f"an {what} in no archive record (version {version['VersionId']})",
                    )
                )
        return findings

    def write_once_note(self) -> str | None:
        return None  # Object Lock in COMPLIANCE mode, checked by ensure_bucket

    def set_legal_hold(self, key: str, on: bool) -> None:
        stored = self.head(key)
        if stored is None:
            raise ObjectNotFound(key)
        self.client.put_object_legal_hold(
            Bucket=self.bucket,
            Key=key,
            VersionId=stored.version_id,
            LegalHold={"Status": "ON" if on else "OFF"},
        )


# --------------------------------------------------------------------------- factory


def storage_from_config(config: Mapping[str, Any]) -> ArchiveStorage:
    """Build the configured store.

    ``ARCHIVE_STORAGE`` is ``local`` (default; ``ARCHIVE_LOCAL_ROOT``, and
    ``ARCHIVE_LOCAL_IMMUTABLE``, default true: set the immutable attribute where possible) or ``s3``
    (``ARCHIVE_S3_BUCKET``, optional ``ARCHIVE_S3_ENDPOINT``, ``ARCHIVE_S3_REGION``,
    ``ARCHIVE_S3_STORAGE_CLASS``, ``ARCHIVE_S3_ACCESS_KEY`` + ``ARCHIVE_S3_SECRET_KEY``; without
    them boto3 uses the standard AWS variables and credential files). Does not create buckets:
    call :meth:`S3ObjectLockStorage.ensure_bucket` from an operator command.
    """
    kind = str(config.get("ARCHIVE_STORAGE") or "local").lower()
    if kind == "local":
        root = config.get("ARCHIVE_LOCAL_ROOT")
        if not root:
            raise ValueError("ARCHIVE_LOCAL_ROOT is required for local archive storage")
        immutable = _flag(config.get("ARCHIVE_LOCAL_IMMUTABLE", True))
        return LocalWormStorage(Path(root), immutable=immutable)
    if kind == "s3":
        import boto3
        from botocore.config import Config

        bucket = config.get("ARCHIVE_S3_BUCKET")
        if not bucket:
            raise ValueError("ARCHIVE_S3_BUCKET is required for s3 archive storage")
        access_key = config.get("ARCHIVE_S3_ACCESS_KEY") or None
        secret_key = config.get("ARCHIVE_S3_SECRET_KEY") or None
        if bool(access_key) != bool(secret_key):
            raise ValueError("set both ARCHIVE_S3_ACCESS_KEY and ARCHIVE_S3_SECRET_KEY, or neither")
        endpoint = config.get("ARCHIVE_S3_ENDPOINT") or None
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=config.get("ARCHIVE_S3_REGION") or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            # Self-hosted stores (SeaweedFS, Ceph) want path-style URLs unless DNS is set up.
            config=Config(s3={"addressing_style": "path" if endpoint else "auto"}),
        )
        return S3ObjectLockStorage(
            client, str(bucket), config.get("ARCHIVE_S3_STORAGE_CLASS") or None
        )
    raise ValueError(f"ARCHIVE_STORAGE must be 'local' or 's3', not {kind!r}")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


# --------------------------------------------------------------------------- bags


def bag_key(bag_name: str) -> str:
    """The object key of a bag: ``<bag-name>.tar``."""
    return check_key(f"{bag_name}.tar")


def _bag_retention(bag_dir: Path) -> dt.date | None:
    info = bag_dir / "bag-info.txt"
    for line in info.read_text(encoding="utf-8").splitlines():
        label, _, value = line.partition(":")
        if label.strip() == "Retention-Until" and value.strip():
            return dt.date.fromisoformat(value.strip()[:10])
    return None


def put_bag(
    storage: ArchiveStorage,
    bag_dir: Path,
    *,
    retain_until: RetainUntil | None = None,
    key: str | None = None,
) -> StoredObject:
    """Validate a bag, store it as one tar object, and return what was stored.

    ``retain_until`` defaults to the bag's ``Retention-Until``; a date earlier than that is refused
    so a bag is never stored for less time than it says. Storing the same bag again is a no-op.
    """
    bag_dir = Path(bag_dir)
    validate_bag(bag_dir)
    declared = _bag_retention(bag_dir)
    if retain_until is None:
        if declared is None:
            raise ValueError(f"{bag_dir} has no Retention-Until; pass retain_until")
        retain_until = declared
    if declared is not None and normalize_retain_until(retain_until) < normalize_retain_until(
        declared
    ):
        raise ValueError(f"retain_until is earlier than the bag's Retention-Until {declared}")
    data = bag_to_tar(bag_dir)
    return storage.put(
        key or bag_key(bag_dir.name),
        data,
        retain_until=retain_until,
        sha512=hashlib.sha512(data).hexdigest(),
    )


def fetch_bag(storage: ArchiveStorage, key: str, dest: Path, version_id: str | None = None) -> Path:
    """Download a bag tar (the pinned version when given), extract it safely under ``dest`` and
    validate it; return the bag."""
    bag_dir = tar_to_bag(storage.get(key, version_id), Path(dest))
    validate_bag(bag_dir)
    return bag_dir
