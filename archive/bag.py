"""Archive packages as BagIt 1.0 bags (RFC 8493), and their deterministic tar serialization.

A bag is laid out as DESIGN §5 describes::

    <bag>/bagit.txt                 BagIt-Version: 1.0, UTF-8
    <bag>/bag-info.txt              the given info, labels sorted, plus Payload-Oxum
    <bag>/manifest-sha512.txt       one line per payload file, sorted by path
    <bag>/tagmanifest-sha512.txt    bagit.txt, bag-info.txt, manifest-sha512.txt
    <bag>/data/...                  the payload

Manifests use two spaces between checksum and path, so ``sha512sum -c manifest-sha512.txt`` run
inside the bag checks the payload with coreutils alone, and ``bagit.py --validate <bag>`` checks
everything.

We write the bag ourselves instead of calling ``bagit.make_bag``: that function bags a directory in
place (changing the process's working directory), writes ``BagIt-Version: 0.97`` and lists tag
files in directory order, so its output is not reproducible. Validation is the ``bagit`` library's
(:func:`validate_bag`). The same files and info always make byte-identical bags and tars: that is
what lets an archive run be repeated, and a stored package be compared with a rebuilt one.

Payload paths are restricted to a portable subset: relative POSIX paths, no ``.``/``..``/empty
segments, no backslash, control characters or ``%`` (which BagIt would percent-encode and
bagit-python would not decode), NFC-normalized, and unique ignoring case.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import bagit

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
TAG_FILES = ("bagit.txt", "bag-info.txt", "manifest-sha512.txt")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\%]")


class BagInvalid(Exception):
    """A bag failed validation; ``details`` lists each problem found."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        self.message = message
        self.details = details or []
        super().__init__("; ".join([message, *self.details]) if self.details else message)


def check_payload_path(path: str) -> PurePosixPath:
    """Return ``path`` as a POSIX path if it may be used inside ``data/``, else ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("payload path must be a non-empty string")
    if _UNSAFE_CHARS.search(path):
        raise ValueError(f"payload path {path!r} has a control character, backslash or '%'")
    if unicodedata.normalize("NFC", path) != path:
        raise ValueError(f"payload path {path!r} is not NFC-normalized")
    if path.startswith("/"):
        raise ValueError(f"payload path {path!r} is absolute")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"payload path {path!r} has an empty, '.' or '..' segment")
    return PurePosixPath(path)


def _check_info(info: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for label, value in info.items():
        if not _LABEL.match(label):
            raise ValueError(f"bag-info label {label!r} is not a plain token")
        if label == "Payload-Oxum":
            raise ValueError("Payload-Oxum is computed by build_bag, do not pass it")
        if not isinstance(value, str) or re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError(f"bag-info value for {label!r} must be one line of text")
        if value != value.strip():
            raise ValueError(f"bag-info value for {label!r} has leading or trailing blanks")
        checked[label] = value
    bagging_date = checked.get("Bagging-Date")
    if bagging_date is None:
        raise ValueError("info needs a Bagging-Date (YYYY-MM-DD) so the bag is reproducible")
    if not _DATE.match(bagging_date):
        raise ValueError(f"Bagging-Date {bagging_date!r} is not YYYY-MM-DD")
    dt.date.fromisoformat(bagging_date)
    return checked


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as handle:
        handle.write(data)


def build_bag(dest: Path, files: Mapping[str, bytes], info: Mapping[str, str]) -> Path:
    """Write a BagIt 1.0 bag at ``dest`` (which must not exist) and return its path.

    ``files`` maps payload paths (relative to ``data/``, e.g. ``"checkpoints/12.checkpoint"``) to
    their bytes; ``info`` becomes ``bag-info.txt`` and must hold ``Bagging-Date``. The bag is built
    in a temporary sibling directory and renamed into place, so ``dest`` is complete or absent.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    checked_info = _check_info(info)
    paths: dict[str, PurePosixPath] = {}
    folded: dict[str, str] = {}
    for name in files:
        path = check_payload_path(name)
        key = name.casefold()
        if key in folded:
            raise ValueError(f"payload paths {folded[key]!r} and {name!r} differ only in case")
        folded[key] = name
        paths[name] = path
    names = sorted(paths)
    for shorter, longer in zip(names, names[1:], strict=False):
        if longer.startswith(shorter + "/"):
            raise ValueError(f"payload path {shorter!r} is both a file and a directory")

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        manifest_lines = []
        total = 0
        for name in names:
            data = bytes(files[name])
            _write(work / "data" / paths[name], data)
            manifest_lines.append(f"{hashlib.sha512(data).hexdigest()}  data/{name}\n")
            total += len(data)
        (work / "data").mkdir(exist_ok=True)
        checked_info["Payload-Oxum"] = f"{total}.{len(names)}"
        tag_bytes = {
            "bagit.txt": BAGIT_TXT,
            "bag-info.txt": "".join(
                f"{label}: {checked_info[label]}\n" for label in sorted(checked_info)
            ).encode("utf-8"),
            "manifest-sha512.txt": "".join(manifest_lines).encode("utf-8"),
        }
        for name, data in tag_bytes.items():
            _write(work / name, data)
        tagmanifest = "".join(
            f"{hashlib.sha512(tag_bytes[name]).hexdigest()}  {name}\n" for name in sorted(tag_bytes)
        )
        _write(work / "tagmanifest-sha512.txt", tagmanifest.encode("utf-8"))
        work.chmod(0o755)
        os.rename(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


def validate_bag(path: Path) -> None:
    """Check a bag completely (structure, every payload and tag checksum); raise BagInvalid.

    Uses the ``bagit`` library with full checksum validation, and also requires the sha512
    payload and tag manifests this project writes (without a tag manifest a changed
    ``bag-info.txt`` would go unnoticed).
    """
    path = Path(path)
    if not path.is_dir():
        raise BagInvalid(f"{path} is not a directory")
    problems = [
        f"{name} is missing"
        for name in ("manifest-sha512.txt", "tagmanifest-sha512.txt")
        if not (path / name).is_file()
    ]
    if problems:
        raise BagInvalid(f"{path} is not a complete archive bag", problems)
    try:
        bag = bagit.Bag(str(path))
    except bagit.BagError as exc:
        raise BagInvalid(f"{path}: {exc}") from exc
    try:
        bag.validate(processes=1, fast=False, completeness_only=False)
    except bagit.BagValidationError as exc:
        details = [str(d) for d in exc.details]
        if not details:  # the Payload-Oxum check fails first and names no file: name them
            only_in_manifest, only_on_disk = bag.compare_manifests_with_fs()
            details = [f"{name} is missing" for name in sorted(only_in_manifest)]
            details += [f"{name} is not in any manifest" for name in sorted(only_on_disk)]
        raise BagInvalid(f"{path}: {exc.message}", details) from exc
    except bagit.BagError as exc:
        raise BagInvalid(f"{path}: {exc}") from exc
    # bagit-python checks only files named in a manifest: also require the tag files be listed.
    listed = {name for name, hashes in bag.entries.items() if "sha512" in hashes}
    unlisted = [name for name in TAG_FILES if name not in listed]
    if unlisted:
        raise BagInvalid(f"{path}: tag files not covered by tagmanifest-sha512.txt", unlisted)


def _tar_mtime(path: Path) -> int:
    """Midnight UTC of the bag's Bagging-Date, or 0 when there is none."""
    info_path = path / "bag-info.txt"
    if info_path.is_file():
        for line in info_path.read_text(encoding="utf-8").splitlines():
            label, _, value = line.partition(":")
            if label.strip() == "Bagging-Date" and _DATE.match(value.strip()):
                day = dt.date.fromisoformat(value.strip())
                return calendar.timegm(day.timetuple())
    return 0


def bag_to_tar(path: Path, *, mtime: int | None = None) -> bytes:
    """Serialize a bag as an uncompressed POSIX (pax) tar with one top-level directory.

    Names are sorted; owner 0:0 with empty names; files 0o644, directories 0o755; every mtime is
    ``mtime`` or else midnight UTC of the Bagging-Date. Same bag, same bytes. Only regular files and
    directories are allowed in the bag.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotADirectoryError(str(path))
    stamp = _tar_mtime(path) if mtime is None else int(mtime)
    top = path.name
    entries: list[tuple[str, Path]] = [(top, path)]
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            full = Path(dirpath) / name
            entries.append((f"{top}/{full.relative_to(path).as_posix()}", full))
    entries.sort(key=lambda item: item[0])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, full in entries:
            mode = full.lstat().st_mode
            info = tarfile.TarInfo(arcname)
            info.mtime = stamp
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif stat.S_ISREG(mode):
                info.mode = 0o644
                info.size = full.stat().st_size
                with full.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                raise ValueError(f"{full} is neither a regular file nor a directory")
    return buffer.getvalue()


def tar_to_bag(data: bytes, dest: Path) -> Path:
    """Extract a bag tar made by :func:`bag_to_tar` into ``dest``; return the bag directory.

    Refuses (ValueError) absolute names, ``..`` or empty segments, links, devices and other special
    members, duplicate names, more than one top-level directory, and a bag directory that already
    exists. Nothing is written until every member has been checked. Does not validate the bag:
    call :func:`validate_bag` on the result.
    """
    dest = Path(dest)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
        if not members:
            raise ValueError("empty tar")
        seen: set[str] = set()
        tops: set[str] = set()
        for member in members:
            name = member.name
            if not (member.isreg() or member.isdir()):
                raise ValueError(f"tar member {name!r} is not a regular file or directory")
            if name.startswith("/") or _UNSAFE_CHARS.search(name):
                raise ValueError(f"tar member {name!r} has an unsafe name")
            parts = name.rstrip("/").split("/") if member.isdir() else name.split("/")
            if any(part in ("", ".", "..") for part in parts):
                raise ValueError(f"tar member {name!r} has an empty, '.' or '..' segment")
            normalized = "/".join(parts)
            if normalized in seen:
                raise ValueError(f"tar member {name!r} appears twice")
            seen.add(normalized)
            tops.add(parts[0])
            if member.isreg() and len(parts) < 2:
                raise ValueError(f"tar member {name!r} is outside the bag directory")
        if len(tops) != 1:
            raise ValueError(f"tar must hold one top-level bag directory, found {sorted(tops)}")
        top = tops.pop()
        bag_dir = dest / top
        if bag_dir.exists():
            raise FileExistsError(f"{bag_dir} already exists")
        dest.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{top}.", dir=dest))
        try:
            for member in members:
                target = work.joinpath(*member.name.rstrip("/").split("/"))
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular members always have data
                    raise ValueError(f"tar member {member.name!r} has no data")
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("xb") as handle:
                    shutil.copyfileobj(source, handle)
            extracted = work / top
            if not extracted.is_dir():
                raise ValueError("tar has no bag directory")
            os.rename(extracted, bag_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return bag_dir
