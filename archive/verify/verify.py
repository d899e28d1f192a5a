"""journal-verify: check an archive bag, a printout or an inclusion proof without our server.

    journal-verify bag PATH --vkey VKEY [--trust PEM]   a bag directory, or a .zip/.tar of one
    journal-verify log DIR --vkey VKEY                  a `flask journal export` directory
    journal-verify proof --vkey VKEY --leaf FILE PROOF
    journal-verify pdf FILE --vkey VKEY [--trust PEM]

``VKEY`` is the school's published verifier key (``<name>+<key id>+<key>``) or a file holding it.
It must come from the school, not from the bag: whoever could rewrite a bag could rewrite
``data/keys/log.vkey`` too, so a bag whose key differs from ``VKEY`` fails.

Exit status: 0 when everything holds, 1 when anything fails (the report says what and where),
2 for a usage error. Standard library and ``cryptography`` only: this folder is copied into every
bag as ``data/verify/`` and runs there as ``python3 data/verify/verify.py ...``, importing the
``ledger`` package copied beside it.

What ``bag`` checks, in order (DESIGN §5; ``VERIFY.md`` explains each step by hand):

1. BagIt: ``bagit.txt``, ``bag-info.txt`` (Payload-Oxum), every manifest line against its file,
   and that every payload file is listed (nothing added, nothing missing).
2. The seal (``bag-seal.note``, see ``seal.py``): signed by VKEY, over every top-level file, so it
   covers every byte of the bag.
3. Keys: ``data/keys/log.vkey`` is VKEY; each device key's id is derived from its public key.
4. The log: every entry is a canonical record signed by its device key; the Merkle tree of
   ``data/entries.jsonl`` has the root of every checkpoint; each checkpoint is signed by VKEY; the
   consistency proofs hold; the last checkpoint covers every entry and is the one bag-info names.
5. RFC 3161 tokens (``*.tsr``): each covers its file, its signature and certificate chain verify
   here, and ``openssl ts -verify -attime <genTime>`` agrees when openssl is installed.
6. Printouts (``data/printouts/**.pdf``): each PDF signature's digest and signature, by the
   certificate the school registered in its ledger log (the embedded ``signer.jsonl`` and its
   ``signer.tlog-proof``, signed by VKEY; ``journal/ledger/signer.py``) within the registered
   period, or by one chaining to a ``--trust`` root; the embedded ``entries.jsonl`` is a run of
   the bag's entries, the embedded checkpoint is signed by VKEY and has the root of the bag's
   tree at its size, and each embedded ``.tlog-proof`` verifies.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:
    from journal.ledger import audit, merkle, note, tlogproof
    from journal.ledger import signer as registrations
    from journal.ledger.entry import KeyFormatError, PayloadError, key_id, parse_leaf

    from . import cms, pdf, seal
else:  # run as a script from a bag: data/verify/ holds this file and the ledger package
    sys.dont_write_bytecode = True  # a __pycache__ folder would be a file added to the bag
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cms
    import pdf
    import seal
    from ledger import audit, merkle, note, tlogproof
    from ledger import signer as registrations
    from ledger.entry import KeyFormatError, PayloadError, key_id, parse_leaf

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

OK, WARNING, FAILED = "ok", "warning", "failed"
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
TAG_TOKEN = "tagmanifest-sha512.txt.tsr"  # noqa: S105 (a file name)
MAX_FILES = 100_000
MIN_CRYPTOGRAPHY = 42  # Certificate.not_valid_before_utc
MAX_BYTES = 4 * 1024**3
_TYPICAL_LEAF_BYTES = 512  # a record is about this long: the guess only starts workers early
_MANIFEST_NAME = re.compile(r"(tag)?manifest-([a-z0-9]+)\.txt")
_MANIFEST_LINE = re.compile(r"([0-9a-f]+)  ([^\r\n]+)")
_CHECKPOINT_NAME = re.compile(r"data/checkpoints/(0|[1-9][0-9]*)\.checkpoint")
_CONSISTENCY_NAME = re.compile(r"data/checkpoints/consistency-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\.txt")
_BAG_INFO_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*): (\S(?:.*\S)?)")
_PDF_DATE = re.compile(
    r"D:(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:Z|([+-])(\d{2})'?(\d{2})'?)?"
)


class UsageError(Exception):
    """Arguments that cannot be used (exit status 2)."""


class ArchiveRefused(ValueError):
    """An uploaded archive that is unsafe or too large to unpack."""


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Check:
    """One part of the verification: what was checked, and every problem found, with where."""

    key: str  # bag, seal, keys, log, timestamps, printouts, proof, pdf
    title: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return FAILED if self.problems else WARNING if self.warnings else OK

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}" if where else what)

    def warn(self, what: str) -> None:
        self.warnings.append(what)

    def note(self, what: str) -> None:
        self.notes.append(what)


@dataclass
class Report:
    """Every check made on one bag, printout or proof; ``ok`` only when none failed."""

    kind: str
    subject: str
    checks: list[Check] = field(default_factory=list)

    def check(self, key: str, title: str) -> Check:
        made = Check(key, title)
        self.checks.append(made)
        return made

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not any(c.problems for c in self.checks)

    @property
    def first_failure(self) -> str | None:
        for check in self.checks:
            if check.problems:
                return f"{check.title}: {check.problems[0]}"
        return None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def text(self) -> str:
        labels = {OK: "[ OK ]", WARNING: "[WARN]", FAILED: "[FAIL]"}
        lines = [f"journal-verify {self.kind} {self.subject}"]
        for check in self.checks:
            lines.append(f"{labels[check.status]} {check.title}")
            lines += [f"         {text}" for text in check.notes]
            lines += [f"  WARNING {text}" for text in check.warnings]
            lines += [f"  FAILED  {text}" for text in check.problems]
        if self.ok:
            lines.append("RESULT: OK, everything checked holds.")
        else:
            lines.append(f"RESULT: FAILED. First failure: {self.first_failure}")
        return "\n".join(lines) + "\n"


# --- inputs -------------------------------------------------------------------------------------


def read_vkey(value: str) -> note.Verifier:
    """The verifier key given on the command line: the key itself, or a file holding it."""
    text = value
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"--vkey {value!r} is neither a verifier key nor a readable file: {exc}"
            ) from None
    try:
        return note.parse_vkey(text)
    except note.NoteError as exc:
        raise UsageError(f"--vkey is not a verifier key <name>+<key id>+<key>: {exc}") from None


def _safe_member(name: str) -> str:
    """A member name that stays inside the destination: relative, no '..', no backslash."""
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or re.match(r"[A-Za-z]:", name)
        or any(ord(ch) < 0x20 for ch in name)
    ):
        raise ArchiveRefused(f"unsafe file name {name[:80]!r} in the archive")
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ArchiveRefused(f"unsafe file name {name[:80]!r} in the archive")
    return "/".join(parts)


def _bag_root(files: dict[str, bytes]) -> dict[str, bytes]:
    """Files relative to the folder holding ``bagit.txt`` (the top or one folder below it)."""
    if "bagit.txt" in files:
        return files
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1:
        top = tops.pop()
        if f"{top}/bagit.txt" in files:
            prefix = top + "/"
            return {name[len(prefix) :]: data for name, data in files.items()}
    raise ArchiveRefused("no bagit.txt at the top of the archive or in its one folder")


def read_archive(
    data: bytes, *, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES
) -> dict[str, bytes]:
    """The files of a bag packed as zip or tar, unpacked in memory with every name checked:
    no absolute paths, no '..', no links or devices, at most ``max_files`` files and
    ``max_bytes`` bytes in all. ArchiveRefused otherwise."""
    files: dict[str, bytes] = {}
    total = 0

    def add(name: str, read: Callable[[int], bytes], size: int) -> None:
        nonlocal total
        name = _safe_member(name)
        if name in files:
            raise ArchiveRefused(f"{name} appears twice in the archive")
        if len(files) >= max_files:
            raise ArchiveRefused(f"the archive holds more than {max_files} files")
        total += size
        if total > max_bytes:
            raise ArchiveRefused(f"the archive unpacks to more than {max_bytes} bytes")
        content = read(size + 1)
        if len(content) != size:
            raise ArchiveRefused(f"{name} is not the size the archive says")
        files[name] = content

    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zipped:
                for info in zipped.infolist():
                    mode = info.external_attr >> 16
                    if info.is_dir():
                        _safe_member(info.filename)
                        continue
                    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no Unix mode recorded
                        raise ArchiveRefused(f"{info.filename[:80]} is a link or special file")
                    if info.flag_bits & 0x1:
                        raise ArchiveRefused(f"{info.filename[:80]} is encrypted")
                    with zipped.open(info) as member:
                        add(info.filename, member.read, info.file_size)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
            raise ArchiveRefused(f"not a readable zip file: {exc}") from None
    else:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tarred:
                for entry in tarred:
                    if entry.isdir():
                        _safe_member(entry.name)
                        continue
                    if not entry.isreg():
                        raise ArchiveRefused(f"{entry.name[:80]} is a link or special file")
                    handle = tarred.extractfile(entry)
                    if handle is None:
                        raise ArchiveRefused(f"{entry.name[:80]} cannot be read")
                    with handle:
                        add(entry.name, handle.read, entry.size)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveRefused(f"not a readable zip or tar file: {exc}") from None
    if not files:
        raise ArchiveRefused("the archive is empty")
    return _bag_root(files)


def read_bag_directory(path: Path) -> dict[str, bytes]:
    """Every regular file under ``path`` by its POSIX path; links are refused."""
    files: dict[str, bytes] = {}
    for directory, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            full = Path(directory) / name
            relative = full.relative_to(path).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ArchiveRefused(f"{relative} is a symbolic link")
            if name in filenames:
                if not stat.S_ISREG(mode):
                    raise ArchiveRefused(f"{relative} is not a regular file")
                if len(files) >= MAX_FILES:
                    raise ArchiveRefused(f"the bag holds more than {MAX_FILES} files")
                files[relative] = full.read_bytes()
    return files


# --- bag: BagIt ---------------------------------------------------------------------------------


class _Digests:
    """Each file's digest computed once, for the manifests and the seal alike."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files
        self._cache: dict[tuple[str, str], str] = {}

    def hexdigest(self, algorithm: str, name: str) -> str:
        key = (algorithm, name)
        if key not in self._cache:
            self._cache[key] = hashlib.new(algorithm, self.files[name]).hexdigest()
        return self._cache[key]


def _parse_manifest(check: Check, name: str, data: bytes, algorithm: str) -> dict[str, str]:
    """``<hex>  <path>`` lines as our bags write them (sorted, lowercase, two spaces)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        check.fail(name, "is not UTF-8")
        return {}
    if text and not text.endswith("\n"):
        check.fail(name, "does not end with a newline")
    size = hashlib.new(algorithm).digest_size * 2
    entries: dict[str, str] = {}
    for number, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        match = _MANIFEST_LINE.fullmatch(line)
        if not match or len(match.group(1)) != size:
            check.fail(f"{name} line {number}", "is not '<lowercase hex digest>  <path>'")
            continue
        digest, path = match.groups()
        if path in entries:
            check.fail(f"{name} line {number}", f"lists {path} twice")
        entries[path] = digest
    if list(entries) != sorted(entries):
        check.fail(name, "lines are not sorted by path")
    return entries


def _check_bagit(report: Report, files: Mapping[str, bytes], digests: _Digests) -> dict[str, str]:
    check = report.check("bag", "BagIt structure and manifests")
    if files.get("bagit.txt") != BAGIT_TXT:
        check.fail("bagit.txt", "is missing or is not 'BagIt-Version: 1.0' with UTF-8 tag files")
    if "fetch.txt" in files:
        check.fail("fetch.txt", "the bag refers to files it does not hold")
    info = _bag_info(check, files.get("bag-info.txt"))
    payload = sorted(name for name in files if name.startswith("data/"))
    oxum = info.get("Payload-Oxum")
    actual = f"{sum(len(files[n]) for n in payload)}.{len(payload)}"
    if oxum != actual:
        check.fail("bag-info.txt", f"Payload-Oxum is {oxum!r}, the payload is {actual}")

    manifests = sorted(n for n in files if _MANIFEST_NAME.fullmatch(n))
    if "manifest-sha512.txt" not in manifests:
        check.fail("manifest-sha512.txt", "is missing")
    if "tagmanifest-sha512.txt" not in manifests:
        check.fail("tagmanifest-sha512.txt", "is missing")
    tag_listed: set[str] = set()
    for name in manifests:
        match = _MANIFEST_NAME.fullmatch(name)
        assert match is not None
        is_tag, algorithm = bool(match.group(1)), match.group(2)
        if algorithm not in hashlib.algorithms_guaranteed or algorithm.startswith("shake"):
            check.fail(name, f"unknown checksum algorithm {algorithm}")
            continue
        entries = _parse_manifest(check, name, files[name], algorithm)
        for path, expected in entries.items():
            if path not in files:
                check.fail(name, f"lists {path}, which is missing")
            elif is_tag and (path.startswith("data/") or path.startswith("tagmanifest-")):
                check.fail(name, f"lists {path}, which is not a tag file it may cover")
            elif not is_tag and not path.startswith("data/"):
                check.fail(name, f"lists {path}, which is outside data/")
            elif digests.hexdigest(algorithm, path) != expected:
                check.fail(path, f"does not match its {algorithm} checksum in {name}")
        if is_tag:
            tag_listed |= set(entries)
        else:
            unlisted = [p for p in payload if p not in entries]
            for path in unlisted[:20]:
                check.fail(path, f"is not listed in {name}")
            if len(unlisted) > 20:
                check.fail(name, f"{len(unlisted) - 20} more payload files are not listed")
    for name in sorted(files):
        if name.startswith("data/") or name in tag_listed or name in (TAG_TOKEN, seal.SEAL_FILE):
            continue
        if (match := _MANIFEST_NAME.fullmatch(name)) and match.group(1):
            continue  # a tag manifest lists the others, not itself
        if name in ("bagit.txt", "bag-info.txt") or _MANIFEST_NAME.fullmatch(name):
            check.fail(name, "is not listed in tagmanifest-sha512.txt")
        elif "/" in name:
            check.fail(name, "is outside data/ and in no manifest")
        else:
            check.warn(f"{name} is an extra tag file in no manifest (the seal covers it)")
    check.note(
        f"{len(payload)} payload files and {len(manifests)} manifests checked (checksums, "
        "every payload file listed, nothing outside the manifests but the seal and tokens)"
    )
    return info


def _bag_info(check: Check, data: bytes | None) -> dict[str, str]:
    if data is None:
        check.fail("bag-info.txt", "is missing")
        return {}
    info: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        check.fail("bag-info.txt", "is not UTF-8")
        return {}
    if not text.endswith("\n"):
        check.fail("bag-info.txt", "does not end with a newline")
    for number, line in enumerate(text.split("\n")[:-1], 1):
        match = _BAG_INFO_LINE.fullmatch(line)
        if not match:
            check.fail(f"bag-info.txt line {number}", "is not 'Label: value'")
            continue
        label, value = match.groups()
        if label in info:
            check.fail(f"bag-info.txt line {number}", f"repeats {label}")
        info[label] = value
    return info


# --- bag: seal and keys -------------------------------------------------------------------------


def _check_seal(report: Report, files: Mapping[str, bytes], verifier: note.Verifier) -> None:
    check = report.check("seal", f"Seal ({seal.SEAL_FILE}) by the school's key")
    data = files.get(seal.SEAL_FILE)
    if data is None:
        check.fail(
            seal.SEAL_FILE,
            "is missing: nothing signed by the school binds the keys, printouts, timestamps and "
            "bag-info to this bag",
        )
        return
    top = {name: content for name, content in files.items() if "/" not in name}
    try:
        sealed = seal.check_seal(data, top, verifier)
    except seal.SealError as exc:
        check.fail(seal.SEAL_FILE, str(exc))
        return
    check.note(f"signed by {verifier.vkey()}, covers {', '.join(sealed)}")


def _check_keys(
    report: Report, files: Mapping[str, bytes], verifier: note.Verifier
) -> dict[str, audit.DeviceKeyInfo]:
    check = report.check("keys", "Keys in data/keys/")
    stored = files.get("data/keys/log.vkey")
    if stored is None:
        check.fail("data/keys/log.vkey", "is missing")
    else:
        try:
            bag_key = note.parse_vkey(stored.decode("utf-8").strip())
        except (note.NoteError, UnicodeDecodeError) as exc:
            check.fail("data/keys/log.vkey", f"is not a verifier key: {exc}")
        else:
            if stored != (bag_key.vkey() + "\n").encode():
                check.fail("data/keys/log.vkey", "is not exactly one verifier key line")
            if bag_key.vkey() != verifier.vkey():
                check.fail(
                    "data/keys/log.vkey",
                    f"is {bag_key.vkey()}, not the key given with --vkey ({verifier.vkey()})",
                )
            else:
                check.note(f"data/keys/log.vkey is the key given with --vkey: {verifier.vkey()}")
    keys: dict[str, audit.DeviceKeyInfo] = {}
    document = files.get("data/keys/device-keys.json")
    if document is None:
        check.fail("data/keys/device-keys.json", "is missing")
        return keys
    problems = len(check.problems)
    keys = _device_keys(check, "data/keys/device-keys.json", document)
    if len(check.problems) == problems:
        check.note(f"data/keys/device-keys.json: {len(keys)} device keys, each id matches its key")
    return keys


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _device_keys(check: Check, where: str, data: bytes) -> dict[str, audit.DeviceKeyInfo]:
    """``device-keys.json``; each key id must be the one derived from its algorithm and key."""
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicates)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        keys = audit.device_keys_from_document(document)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        check.fail(where, f"is not a device key document: {exc}")
        return {}
    for kid, info in keys.items():
        try:
            derived = key_id(info.alg, info.public_key)
        except KeyFormatError as exc:
            check.fail(where, f"key {kid}: {exc}")
            continue
        if derived != kid:
            check.fail(where, f"key {kid}: its id is not derived from its key ({derived})")
    return keys


# --- bag: the log -------------------------------------------------------------------------------


def split_leaves(data: bytes) -> list[bytes]:
    """Lines of ``entries.jsonl``; ValueError unless every line ends with a newline."""
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise ValueError("does not end with a newline")
    return data[:-1].split(b"\n")


def _entry_where(name: str, seq: int | None, otherwise: str) -> str:
    return f"{name} line {seq + 1} (seq {seq})" if seq is not None else otherwise


@dataclass
class VerifiedLog:
    """The bag's log as verified: what printouts and proofs are compared with."""

    origin: str
    leaves: list[bytes]
    notes: dict[int, str]  # checkpoint size -> note text, for the signed ones
    _tree: merkle.MerkleTree | None = None

    @property
    def tree(self) -> merkle.MerkleTree:
        if self._tree is None:
            self._tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in self.leaves])
        return self._tree


def _check_log(
    report: Report,
    files: Mapping[str, bytes],
    verifier: note.Verifier,
    keys: Mapping[str, audit.DeviceKeyInfo],
    info: Mapping[str, str],
    pool: Executor | None = None,
) -> VerifiedLog | None:
    check = report.check("log", "Entries, checkpoints and consistency proofs")
    data = files.get("data/entries.jsonl")
    if data is None:
        check.fail("data/entries.jsonl", "is missing")
        return None
    try:
        leaves = split_leaves(data)
    except ValueError as exc:
        check.fail("data/entries.jsonl", str(exc))
        return None

    notes: dict[int, str] = {}
    for name in sorted(files):
        if not name.startswith("data/checkpoints/"):
            continue
        match = _CHECKPOINT_NAME.fullmatch(name)
        if match:
            try:
                text = files[name].decode("utf-8")
                size = note.parse_checkpoint(note.split_note(text)[0]).size
            except (UnicodeDecodeError, note.NoteError) as exc:
                check.fail(name, f"is not a checkpoint: {exc}")
                continue
            if str(size) != match.group(1):
                check.fail(name, f"holds a checkpoint of size {size}")
                continue
            notes[size] = text
        elif not _CONSISTENCY_NAME.fullmatch(name) and not name.endswith(".tsr"):
            check.warn(f"{name} is not a file this verifier knows (covered by the manifests only)")
    if not notes:
        check.fail("data/checkpoints/", "no checkpoint: nothing signed covers the entries")
        return None

    proofs: dict[tuple[int, int], list[bytes]] = {}
    for name in sorted(files):
        match = _CONSISTENCY_NAME.fullmatch(name)
        if match:
            try:
                proofs[(int(match.group(1)), int(match.group(2)))] = parse_proof_lines(files[name])
            except ValueError as exc:
                check.fail(name, f"is not a consistency proof: {exc}")

    newest = notes[max(notes)]
    origin = info.get("Log-Origin") or note.parse_checkpoint(note.split_note(newest)[0]).origin
    audit_report = audit.verify_log(
        leaves, keys, list(notes.values()), verifier, origin, consistency=proofs, pool=pool
    )
    for problem in audit_report.problems:
        # A root that does not match names a range, not an entry: say which checkpoint.
        where = (
            _entry_where("data/entries.jsonl", problem.seq, "data/checkpoints/")
            if problem.exact
            else f"data/checkpoints/{problem.checkpoint}.checkpoint"
        )
        check.fail(where, problem.what)
    signed = sorted(audit_report.checkpoints_checked)
    if max(notes) != len(leaves):
        check.fail(
            f"data/checkpoints/{max(notes)}.checkpoint",
            f"the last checkpoint covers {max(notes)} entries, the log holds {len(leaves)}: "
            "entries after it are not covered by any signed checkpoint",
        )
    claimed_size = info.get("Checkpoint-Size")
    if claimed_size is not None and claimed_size != str(max(notes)):
        check.fail("bag-info.txt", f"Checkpoint-Size {claimed_size} is not the last checkpoint")
    claimed_root = info.get("Checkpoint-Root")
    if claimed_root is not None and claimed_root != base64.b64encode(audit_report.root).decode():
        check.fail("bag-info.txt", "Checkpoint-Root is not the root of the entries")
    root = base64.b64encode(audit_report.root).decode()
    if any(problem.seq is not None for problem in audit_report.problems):
        check.note(f"{origin}: {len(leaves)} entries checked against {len(keys)} device keys")
    else:
        check.note(
            f"{origin}: {len(leaves)} entries, each a canonical record signed by one of "
            f"{len(keys)} device keys; root {root}"
        )
    if signed:
        check.note(
            f"{len(signed)} checkpoints signed by {verifier.name} with matching Merkle roots: "
            f"sizes {', '.join(map(str, signed))}"
        )
    if audit_report.consistency_checked:
        check.note(
            "consistency proofs hold: "
            + ", ".join(f"{a}->{b}" for a, b in audit_report.consistency_checked)
        )
    return VerifiedLog(origin, leaves, {size: notes[size] for size in signed})


def parse_proof_lines(data: bytes) -> list[bytes]:
    """A stored consistency proof: canonical base64 SHA-256 hashes, one per line."""
    text = data.decode("ascii")
    lines = split_leaves(data)
    hashes = audit.parse_hash_lines(text)
    if len(hashes) != len(lines) or [base64.b64encode(h) for h in hashes] != lines:
        raise ValueError("lines are not canonical base64 hashes")
    return hashes


# --- timestamps ---------------------------------------------------------------------------------


def _certificates(check: Check, files: Mapping[str, bytes]) -> list[x509.Certificate]:
    """Every certificate in ``data/keys/*.pem``: the anchors for tokens and printouts."""
    found: list[x509.Certificate] = []
    for name in sorted(files):
        if name.startswith("data/keys/") and name.endswith(".pem"):
            try:
                found += cms.load_pem_certificates(files[name])
            except cms.CmsError as exc:
                check.fail(name, str(exc))
    return found


def _openssl_verify(
    openssl: str,
    data: bytes,
    tsr: bytes,
    anchors: Sequence[x509.Certificate],
    gen_time: dt.datetime,
) -> str | None:
    """Run ``openssl ts -verify ... -attime <genTime>``; None when it says OK, else its output."""
    roots = [c for c in anchors if c.issuer == c.subject]
    others = [c for c in anchors if c.issuer != c.subject]
    with tempfile.TemporaryDirectory(prefix="journal-verify-") as work:
        paths = {name: Path(work) / name for name in ("data", "token.tsr", "ca.pem", "more.pem")}
        paths["data"].write_bytes(data)
        paths["token.tsr"].write_bytes(tsr)
        paths["ca.pem"].write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in roots))
        command = [
            openssl, "ts", "-verify",
            "-data", str(paths["data"]),
            "-in", str(paths["token.tsr"]),
            "-CAfile", str(paths["ca.pem"]),
            "-attime", str(calendar.timegm(gen_time.utctimetuple())),
        ]  # fmt: skip
        if others:
            paths["more.pem"].write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in others))
            command += ["-untrusted", str(paths["more.pem"])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"could not run openssl: {exc}"
    if done.returncode == 0 and "Verification: OK" in done.stdout:
        return None
    return " ".join((done.stdout + done.stderr).split())[:500]


def _check_timestamps(
    report: Report,
    files: Mapping[str, bytes],
    anchors: Sequence[x509.Certificate],
    openssl: str | None,
) -> None:
    check = report.check("timestamps", "RFC 3161 timestamps")
    tokens = sorted(name for name in files if name.endswith(".tsr"))
    executable = shutil.which(openssl) if openssl else None
    agreed = 0
    for name in tokens:
        covered = name.removesuffix(".tsr")
        if name.startswith("data/checkpoints/"):
            covered += ".checkpoint"
        if covered not in files:
            check.fail(name, f"times {covered}, which is missing")
            continue
        try:
            token = cms.token_from_response(files[name])
            stamp = cms.verify_timestamp_token(token, files[covered], anchors=anchors)
        except cms.CmsError as exc:
            check.fail(name, str(exc))
            continue
        tsa = cms.subject_name(stamp.signature.signer)
        when = f"{stamp.gen_time:%Y-%m-%d %H:%M:%S}Z"
        if not stamp.signature.anchored:
            check.warn(
                f"{name}: signed by {tsa}, whose chain does not reach a certificate in data/keys/"
            )
        if executable is not None and anchors:
            failure = _openssl_verify(
                executable, files[covered], files[name], anchors, stamp.gen_time
            )
            if failure is not None:
                check.fail(name, f"openssl ts -verify fails: {failure}")
                continue
            agreed += 1
        check.note(f"{name}: times {covered} at {when}, signed by {tsa}")
    if not tokens:
        check.note("no RFC 3161 tokens in the bag (no timestamp authority was configured)")
    elif not anchors:
        check.warn("no TSA CA certificate in data/keys/: the chains were not checked")
    elif executable is None:
        check.warn("skipped: openssl not found; the tokens were checked by this verifier alone")
    elif agreed == len(tokens):
        check.note(f"openssl ts -verify -attime <genTime> agrees on all {len(tokens)} tokens")
    else:
        check.note(
            f"openssl ts -verify -attime <genTime> agrees on {agreed} of the {len(tokens)} tokens"
        )
    for size in sorted(int(m.group(1)) for n in files if (m := _CHECKPOINT_NAME.fullmatch(n))):
        if f"data/checkpoints/{size}.tsr" not in files:
            check.note(f"checkpoint {size} has no timestamp")


# --- printouts ----------------------------------------------------------------------------------


def _pdf_date(text: str | None) -> dt.datetime | None:
    match = _PDF_DATE.fullmatch(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    moment = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=dt.UTC
    )
    if sign:
        offset = dt.timedelta(hours=int(off_h), minutes=int(off_m))
        moment -= offset if sign == "+" else -offset
    return moment


def _registration(
    embedded: Mapping[str, bytes], verifier: note.Verifier
) -> tuple[registrations.Registration | None, str]:
    """The printout's embedded signer registration, verified; else None and why not."""
    record = embedded.get(registrations.RECORD_FILE)
    proof = embedded.get(registrations.PROOF_FILE)
    if record is None and proof is None:
        return None, (
            f"the printout embeds no registration of its signer ({registrations.RECORD_FILE}, "
            f"{registrations.PROOF_FILE})"
        )
    if record is None or proof is None:
        return None, (
            f"the printout embeds only one of {registrations.RECORD_FILE} and "
            f"{registrations.PROOF_FILE}"
        )
    try:
        return registrations.verify_registration(record, proof, verifier), ""
    except registrations.RegistrationError as exc:
        return None, f"its embedded signer registration {exc}"


def _moment(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z"


def check_pdf_signatures(
    check: Check,
    where: str,
    data: bytes,
    document: pdf.PdfDocument,
    anchors: Sequence[x509.Certificate],
    *,
    required: bool,
    verifier: note.Verifier | None = None,
    embedded: Mapping[str, bytes] | None = None,
    trust: Sequence[x509.Certificate] = (),
) -> None:
    """Every signature's digest and signature; the last one must cover the whole file.

    A document signature counts for the school only when its certificate is the one the school
    registered in its ledger log (the embedded ``signer.jsonl`` and ``signer.tlog-proof``, checked
    against ``verifier``) and it was signed within the registration's period, or when its chain
    reaches a root of the operator's ``trust`` list (a national certificate authority, for a
    qualified signature). ``anchors`` (the bag's own certificates) only anchor timestamps.
    """
    try:
        signatures = document.signatures()
    except pdf.PdfError as exc:
        check.fail(where, str(exc))
        return
    if not signatures:
        if required:
            check.fail(where, "is not signed: nothing protects its pages")
        else:
            check.warn(f"{where} is not signed (its bytes are covered by the bag seal)")
        return
    if not signatures[-1].covers(len(data)):
        check.fail(where, "bytes were added after the last signature")
    registration, unregistered = (
        _registration(embedded or {}, verifier)
        if verifier is not None
        else (None, "no school key was given to check a registration")
    )
    for signature in signatures:
        label = f"{where} signature {signature.field_name!r}"
        signed = signature.signed_bytes(data)
        revision = "the whole file" if signature.covers(len(data)) else "its revision"
        try:
            if signature.sub_filter == "ETSI.RFC3161":
                stamp = cms.verify_timestamp_token(
                    signature.contents, signed, anchors=anchors, zero_padding=True
                )
                tsa = stamp.signature
                trusted = (
                    "chains to a certificate in data/keys/"
                    if tsa.anchored
                    else f"root {cms.subject_name(tsa.root)} (check it against the TSA's CA)"
                )
                check.note(
                    f"{where}: document timestamp of {_moment(stamp.gen_time)} by "
                    f"{cms.subject_name(tsa.signer)} valid over {revision}; {trusted}"
                )
                continue
            if signature.sub_filter not in ("ETSI.CAdES.detached", "adbe.pkcs7.detached"):
                check.fail(label, f"unsupported signature type {signature.sub_filter!r}")
                continue
            signed_at = _pdf_date(signature.signing_time)
            signer = cms.verify_signed_data(
                signature.contents,
                detached=signed,
                anchors=trust,
                at=signed_at,
                zero_padding=True,
            )
        except cms.CmsError as exc:
            check.fail(label, str(exc))
            continue
        signed_at = signed_at or signer.signing_time
        who = cms.subject_name(signer.signer)
        fingerprint = cms.fingerprint(signer.signer)
        if registration is not None and registration.sha256 == fingerprint:
            period = f"{_moment(registration.valid_from)} to {_moment(registration.valid_until)}"
            if signed_at is None:
                check.fail(label, "has no signing time to compare with its registration")
            elif not registration.covers(signed_at):
                check.fail(
                    label,
                    f"was made at {_moment(signed_at)}, outside the period its certificate is "
                    f"registered for ({period}, school ledger seq {registration.seq}): the "
                    "school did not let this certificate sign then",
                )
            else:
                check.note(
                    f"{where}: signature by {who} valid over {revision}, made at "
                    f"{_moment(signed_at)} with the certificate the school registered in its "
                    f"ledger log (seq {registration.seq}, SHA-256 {fingerprint[:16]}…, {period})"
                )
            continue
        if signer.anchored:
            check.note(
                f"{where}: signature by {who} valid over {revision}; its certificate chains to "
                f"{cms.subject_name(signer.root)}, a root of the trust list given (--trust)"
            )
            continue
        why = (
            f"the school registered SHA-256 {registration.sha256[:16]}… ({registration.subject})"
            if registration is not None
            else unregistered
        )
        check.fail(
            label,
            f"is by {who} (SHA-256 {fingerprint[:16]}…), a certificate the school did not "
            f"register in its ledger log ({why}), and it does not chain to a root of the trust "
            "list: anyone can make a certificate with the school's names, so nothing shows this "
            "printout comes from the school",
        )


@dataclass
class Printout:
    """What a printout says it is and what it proved: ``described`` is its ``printout.json``;
    ``authentic`` the embedded records its own signed checkpoint proves, by seq."""

    described: dict[str, Any] | None = None
    origin: str | None = None
    size: int | None = None
    authentic: dict[int, bytes] = field(default_factory=dict)


def _described(check: Check, where: str, data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicates)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        check.fail(f"{where} printout.json", f"is not a description of the printout: {exc}")
        return None
    return value


def describe_printout(described: Mapping[str, Any]) -> str:
    """``printout.json`` in words."""
    kind = described.get("document")
    klass = f"class {described.get('class_name')} (id {described.get('class_id')})"
    year = described.get("school_year") or ", ".join(described.get("school_years") or [])
    if kind == "journal_quarter":
        return f"the quarterly journal of {klass}, {year}, quarter {described.get('quarter')}"
    if kind == "journal_half":
        half = described.get("half_year")
        return f"the half-year journal of {klass}, {year}, half-year {half}"
    if kind == "summary_ledger":
        return f"the summary ledger of {klass}, {year}"
    if kind == "duplicate_extract":
        return f"a duplicate-certificate extract ({year})"
    if kind == "certificate_duplicate":
        return f"a duplicate certificate's extract with its final grades ({year})"
    return f"a printout of kind {kind!r}"


def check_printout(
    check: Check,
    where: str,
    data: bytes,
    verifier: note.Verifier,
    log: VerifiedLog | None,
    anchors: Sequence[x509.Certificate] = (),
    *,
    signature_required: bool,
    trust: Sequence[x509.Certificate] = (),
) -> Printout:
    """A printout's signatures and the records embedded in it (``entries.jsonl``), against its
    embedded checkpoint, which must be signed by ``verifier``; and against ``log`` when the
    printout is from the same log.

    The records are proven on their own in one of three ways: all of them, from seq 0 to the
    checkpoint's size, hash to its root; a run of them plus ``entries-range.txt`` (the compact
    range before the run) hashes to it; or each has an embedded ``.tlog-proof``. Records so
    proven are authentic copies: where the bag's log differs from them, the bag's entry is the
    changed one (``Printout.authentic``, reported by the log check at its seq). With embedded
    device keys, each record's signature is checked too.
    """
    facts = Printout()
    try:
        document = pdf.PdfDocument(data)
        embedded = document.embedded_files()
    except pdf.PdfError as exc:
        check.fail(where, f"cannot be read as a PDF: {exc}")
        return facts
    check_pdf_signatures(
        check,
        where,
        data,
        document,
        anchors,
        required=signature_required,
        verifier=verifier,
        embedded=embedded,
        trust=trust,
    )
    facts.described = _described(check, where, embedded.get("printout.json"))
    for name in ("entries.jsonl", "checkpoint"):
        if name not in embedded:
            check.fail(where, f"has no embedded {name}")
    if "entries.jsonl" not in embedded or "checkpoint" not in embedded:
        return facts
    vkey_file = embedded.get("log.vkey")
    if vkey_file is not None and vkey_file.decode("utf-8", "replace").strip() != verifier.vkey():
        check.fail(f"{where} log.vkey", "is not the key given with --vkey")
    try:
        checkpoint = note.verify_checkpoint(embedded["checkpoint"], verifier)
    except (note.NoteError, ValueError) as exc:
        check.fail(f"{where} checkpoint", f"is not signed by the school's key: {exc}")
        return facts
    facts.origin, facts.size = checkpoint.origin, checkpoint.size
    records = f"{where} entries.jsonl"
    try:
        leaves = split_leaves(embedded["entries.jsonl"])
        seqs = [(audit.parse_leaf_fast(leaf) or parse_leaf(leaf)).seq for leaf in leaves]
    except (PayloadError, ValueError, KeyError) as exc:
        check.fail(records, f"is not a list of log records: {exc}")
        return facts
    by_seq = dict(zip(seqs, leaves, strict=True))
    if len(by_seq) != len(leaves):
        check.fail(records, "holds a record twice")
        return facts
    if seqs and max(seqs) >= checkpoint.size:
        check.fail(records, f"holds seq {max(seqs)}, beyond its checkpoint of {checkpoint.size}")
        return facts
    first = seqs[0] if seqs else 0
    run = seqs == list(range(first, first + len(seqs)))
    same_log = log is not None and checkpoint.origin == log.origin

    # 1. On their own: the records against the printout's signed checkpoint.
    proven: set[int] = set()
    how = ""
    if run and first == 0 and len(leaves) == checkpoint.size:
        if merkle.root([merkle.leaf_hash(leaf) for leaf in leaves]) != checkpoint.root_hash:
            check.fail(records, "does not hash to its checkpoint's root")
            return facts
        proven = set(seqs)
        how = f"hash to the signed checkpoint {checkpoint.origin} size {checkpoint.size}"
    if run and audit.RANGE_FILE in embedded:
        try:
            start, prefix = audit.parse_range_file(embedded[audit.RANGE_FILE].decode("ascii"))
            if start != first:
                raise ValueError(f"the range starts at {start}, the records at seq {first}")
            audit.verify_range(start, prefix, leaves, checkpoint)
        except (ValueError, UnicodeDecodeError) as exc:
            check.fail(f"{where} {audit.RANGE_FILE}", str(exc))
            return facts
        if not proven:
            how = (
                f"with {audit.RANGE_FILE}, hash to the signed checkpoint {checkpoint.origin} "
                f"size {checkpoint.size}"
            )
        proven = set(seqs)
    proofs = 0
    record_proofs = (n for n in embedded if n.endswith(tlogproof.FILE_EXTENSION))
    for name in sorted(n for n in record_proofs if n != registrations.PROOF_FILE):
        label = f"{where} {name}"
        try:
            index = tlogproof.parse_tlog_proof(embedded[name]).index
        except merkle.ProofError as exc:
            check.fail(label, str(exc))
            continue
        if index in by_seq:
            leaf = by_seq[index]
        elif log is not None and same_log and index < len(log.leaves):
            leaf = log.leaves[index]
        else:
            check.fail(label, f"proves seq {index}, whose record is not in the printout or bag")
            continue
        try:
            proved = tlogproof.verify_tlog_proof(leaf, embedded[name], verifier)
        except merkle.ProofError as exc:
            check.fail(label, str(exc))
            continue
        proofs += 1
        if proved.origin == checkpoint.origin and index in by_seq:
            proven.add(index)
    if proofs and not how:
        how = f"each have an inclusion proof to the signed checkpoint size {checkpoint.size}"
    facts.authentic = {seq: by_seq[seq] for seq in proven}

    # 2. Against the bag's log, when the printout is of it.
    if log is not None and same_log:
        if checkpoint.size > len(log.leaves):
            check.fail(
                f"{where} checkpoint",
                f"covers {checkpoint.size} entries, the bag's log holds {len(log.leaves)}",
            )
            return facts
        unproven = [seq for seq in seqs if seq not in proven]
        if unproven:  # nothing of its own proves them: they must be the bag's
            if log.tree.root(checkpoint.size) != checkpoint.root_hash:
                check.fail(f"{where} checkpoint", "does not match the bag's entries at its size")
                return facts
            differing = [seq for seq in unproven if by_seq[seq] != log.leaves[seq]]
            if differing:
                check.fail(records, f"seq {differing[0]} differs from the bag's data/entries.jsonl")
                return facts
            proven |= set(unproven)
            how = how or f"are the bag's; its checkpoint {checkpoint.size} is the bag's tree"
        elif all(log.leaves[seq] == leaf for seq, leaf in facts.authentic.items()):
            how += "; the bag's data/entries.jsonl holds the same records"
            if log.tree.root(checkpoint.size) != checkpoint.root_hash:
                how += " (its tree differs from this checkpoint before them: see the log check)"
    unproven = [seq for seq in seqs if seq not in proven]
    if unproven:
        check.fail(
            records,
            f"{len(unproven)} records (first seq {unproven[0]}) are proven neither by the "
            "checkpoint nor by an inclusion proof",
        )
        return facts

    signatures = ""
    keys_file = embedded.get("device-keys.json")
    if not same_log and keys_file is not None:  # the bag's own entries are checked by the log
        keys = _device_keys(check, f"{where} device-keys.json", keys_file)
        for problem in audit.check_leaves(leaves, seqs, keys, checkpoint.origin):
            check.fail(f"{records} seq {problem.seq}", problem.what)
        signatures = "; signatures checked against the embedded device keys"
    elif not same_log:
        signatures = "; entry signatures not checked (no device-keys.json embedded)"
    span = f"seq {first}..{seqs[-1]}" if seqs else "none"
    what = f"{describe_printout(facts.described)}: " if facts.described else ""
    check.note(f"{where}: {what}{len(leaves)} embedded records ({span}) {how}{signatures}")
    return facts


_CLASS_FOLDER = re.compile(r"data/printouts/class([0-9]+)/[^/]+")


def _bind_printout(
    check: Check, name: str, facts: Printout, info: Mapping[str, str], verifier: note.Verifier
) -> None:
    """A printout in a bag must be of the bag's class and period (its ``printout.json`` and its
    signed checkpoint's log say which)."""
    kind = info.get("Bag-Kind")
    origin = info.get("Log-Origin")
    year = info.get("School-Year")
    if kind is None or facts.origin is None:
        return
    described = facts.described
    if described is None:
        check.fail(name, "has no printout.json: nothing says which class and period it shows")
        return
    if described.get("log") != facts.origin or described.get("checkpoint_size") != facts.size:
        check.fail(name, "printout.json does not name its own embedded checkpoint")
    if described.get("school_year") != year:
        check.fail(name, f"is of the school year {described.get('school_year')!r}, not {year}")
    if kind == "journal_quarter":
        wanted = {"document": "journal_quarter", "class_id": info.get("Class-Id"),
                  "quarter": info.get("Quarter")}  # fmt: skip
    elif kind == "journal_half":
        wanted = {"document": "journal_half", "class_id": info.get("Class-Id"),
                  "half_year": info.get("Half-Year")}  # fmt: skip
    elif kind == "journal_year":
        wanted = {"document": "summary_ledger", "class_id": info.get("Class-Id")}
    else:
        folder = _CLASS_FOLDER.fullmatch(name)
        wanted = {"document": "summary_ledger", "class_id": folder and folder.group(1)}
    for label, value in wanted.items():
        if str(described.get(label)) != str(value):
            check.fail(
                name,
                f"is {describe_printout(described)}, not a printout of this bag's "
                f"{label.replace('_', ' ')} ({value})",
            )
            return
    journals = f"{verifier.name}/journal/{year}/"
    allowed = {origin} if kind != "ledger_year" else {origin, f"{journals}{wanted['class_id']}"}
    if facts.origin not in allowed:
        check.fail(name, f"shows the log {facts.origin}, not this bag's {origin}")


def _check_printouts(
    report: Report,
    files: Mapping[str, bytes],
    verifier: note.Verifier,
    log: VerifiedLog | None,
    anchors: Sequence[x509.Certificate],
    trust: Sequence[x509.Certificate],
    info: Mapping[str, str],
) -> dict[int, tuple[str, bytes]]:
    """Every printout, bound to the bag's class and period; the printouts listed in bag-info's
    ``Printouts`` must all be there, and no other. Returns the authentic copies of log records
    (seq → (printout, leaf)) for the log check."""
    names = sorted(n for n in files if n.startswith("data/printouts/"))
    check = report.check("printouts", "Printouts: signer, class and period, embedded records")
    listed = info.get("Printouts")
    if listed is not None:
        declared = {f"data/{path}" for path in listed.split()}
        for missing in sorted(declared - set(names)):
            check.fail(missing, "is listed in bag-info.txt (Printouts) but is not in the bag")
        for extra in sorted(set(names) - declared):
            check.fail(extra, "is in the bag but not listed in bag-info.txt (Printouts)")
    elif info.get("Bag-Kind") is not None:
        check.fail("bag-info.txt", "does not list the bag's printouts (Printouts)")
    if not names:
        check.note("no printouts in the bag")
    authentic: dict[int, tuple[str, bytes]] = {}
    for name in names:
        if not name.lower().endswith(".pdf"):
            check.warn(f"{name} is not a PDF (covered by the manifests only)")
            continue
        facts = check_printout(
            check, name, files[name], verifier, log, anchors, signature_required=False, trust=trust
        )
        _bind_printout(check, name, facts, info, verifier)
        if log is not None and facts.origin == log.origin:
            authentic.update({seq: (name, leaf) for seq, leaf in facts.authentic.items()})
    return authentic


def _check_copies(
    report: Report, log: VerifiedLog | None, authentic: Mapping[int, tuple[str, bytes]]
) -> None:
    """Entries of the bag that differ from a copy a printout proves on its own: the bag's entry
    is the changed one, and this names it at its own seq."""
    if log is None:
        return
    check = next(c for c in report.checks if c.key == "log")
    for seq, (printout, leaf) in sorted(authentic.items()):
        if seq < len(log.leaves) and log.leaves[seq] != leaf:
            check.fail(
                _entry_where("data/entries.jsonl", seq, ""),
                f"differs from the copy of seq {seq} in {printout}, which its signed checkpoint "
                "proves",
            )
    proven = sorted(seq for seq in authentic if seq < len(log.leaves))
    if proven:
        check.note(
            f"{len(proven)} entries compared with the copies printouts prove on their own "
            f"(seq {proven[0]}..{proven[-1]})"
        )


def _check_identity(report: Report, info: Mapping[str, str], verifier: note.Verifier) -> None:
    """Which bag this is (bag-info.txt), first, and whether its names agree with each other and
    with the school of the key given."""
    check = report.check("identity", "Which bag this is")
    ident = info.get("External-Identifier", "")
    kind = info.get("Bag-Kind")
    year = info.get("School-Year", "?")
    class_id = info.get("Class-Id")
    check.note(f"External-Identifier: {ident or '(none)'}")
    check.note(
        f"school: {info.get('Source-Organization', '(not named)')}, whose key {verifier.name} "
        "was given with --vkey"
    )
    if kind == "journal_quarter":
        what = (
            f"the journal of class {info.get('Class-Name')} (id {class_id}), school year "
            f"{year}, up to the close of quarter {info.get('Quarter')}"
        )
        name, origin = f"journal-{year}-class{class_id}-q{info.get('Quarter')}", "journal"
    elif kind == "journal_half":
        what = (
            f"the journal of class {info.get('Class-Name')} (id {class_id}), school year "
            f"{year}, up to the close of half-year {info.get('Half-Year')}"
        )
        name, origin = f"journal-{year}-class{class_id}-h{info.get('Half-Year')}", "journal"
    elif kind == "journal_year":
        what = f"the journal of class {info.get('Class-Name')} (id {class_id}), school year {year}"
        name, origin = f"journal-{year}-class{class_id}-year", "journal"
    elif kind == "ledger_year":
        what = f"the school ledger log of the school year {year} (summary ledgers, seals)"
        name, origin = f"ledger-{year}", "ledger"
    else:
        check.warn("bag-info.txt does not say which journal and period this is (no Bag-Kind)")
        what, name, origin = "", "", ""
    if what:
        check.note(f"{what}; tier {info.get('Tier')}, retained until {info.get('Retention-Until')}")
    size = info.get("Checkpoint-Size")
    if size is not None:
        span = f"seq 0..{int(size) - 1}" if size.isdigit() and int(size) else "no entries"
        check.note(f"log {info.get('Log-Origin')}: {span} under its checkpoint of size {size}")
    if ident and ident.split("/", 1)[0] != verifier.name:
        check.fail(
            "bag-info.txt",
            f"External-Identifier names {ident.split('/', 1)[0]}, not the school of the key "
            f"given ({verifier.name})",
        )
    if not name:
        return
    if ident != f"{verifier.name}/{name}":
        check.fail("bag-info.txt", f"External-Identifier is {ident}, not {verifier.name}/{name}")
    expected_origin = (
        f"{verifier.name}/journal/{year}/{class_id}"
        if origin == "journal"
        else f"{verifier.name}/ledger"
    )
    if info.get("Log-Origin") != expected_origin:
        check.fail("bag-info.txt", f"Log-Origin is {info.get('Log-Origin')}, not {expected_origin}")
    tier = "ledger-25y" if origin == "ledger" else "journal-5y"
    if info.get("Tier") != tier:
        check.fail("bag-info.txt", f"Tier is {info.get('Tier')}, not {tier} for a {kind} bag")


# --- the three commands -------------------------------------------------------------------------


def verify_bag_files(
    files: Mapping[str, bytes],
    verifier: note.Verifier,
    *,
    subject: str = ".",
    openssl: str | None = "openssl",
    trust: Sequence[x509.Certificate] = (),
    pool: Executor | None = None,
) -> Report:
    """Everything ``journal-verify bag`` checks, on a bag's files (POSIX path → bytes);
    ``pool`` is ``audit.worker_pool``'s, when the caller started one."""
    report = Report("bag", subject)
    digests = _Digests(files)
    _check_identity(report, _bag_info(Check("", ""), files.get("bag-info.txt")), verifier)
    info = _check_bagit(report, files, digests)
    _check_seal(report, files, verifier)
    keys = _check_keys(report, files, verifier)
    log = _check_log(report, files, verifier, keys, info, pool)
    certificates = report.check("certificates", "Certificates in data/keys/")
    anchors = _certificates(certificates, files)
    certificates.note(
        ", ".join(f"{cms.subject_name(c)} (SHA-256 {cms.fingerprint(c)[:16]}…)" for c in anchors)
        or "none"
    )
    _check_timestamps(report, files, anchors, openssl)
    authentic = _check_printouts(report, files, verifier, log, anchors, trust, info)
    _check_copies(report, log, authentic)
    return report


def verify_bag(
    path: Path,
    verifier: note.Verifier,
    *,
    openssl: str | None = "openssl",
    trust: Sequence[x509.Certificate] = (),
) -> Report:
    """``journal-verify bag``: a bag directory, or a zip or tar file holding one."""
    path = Path(path)
    report = Report("bag", str(path))
    # The log's workers start while the bag is read and its checksums computed.
    with audit.worker_pool(_expected_leaves(path)) as pool:
        try:
            files = read_bag_directory(path) if path.is_dir() else read_archive(path.read_bytes())
        except (ArchiveRefused, OSError) as exc:
            report.check("bag", "BagIt structure and manifests").fail(str(path), str(exc))
            return report
        return verify_bag_files(
            files, verifier, subject=str(path), openssl=openssl, trust=trust, pool=pool
        )


def _expected_leaves(path: Path) -> int:
    """A guess, before reading, at how many entries the bag holds: its entries file's size (or
    the archive's) over a typical record's; 0 when it cannot be told."""
    try:
        entries = path / "data" / "entries.jsonl"
        size = entries.stat().st_size if path.is_dir() else path.stat().st_size
    except OSError:
        return 0
    return size // _TYPICAL_LEAF_BYTES


def verify_pdf(
    data: bytes,
    verifier: note.Verifier,
    *,
    subject: str = "",
    trust: Sequence[x509.Certificate] = (),
) -> Report:
    """``journal-verify pdf``: a printout's signatures (by the school's registered certificate
    or one chaining to ``trust``) and its records against its checkpoint."""
    report = Report("pdf", subject)
    check = report.check("pdf", "Printout: signatures and embedded records")
    check_printout(
        check, subject or "the PDF", data, verifier, None, signature_required=True, trust=trust
    )
    return report


EXPORT_FILES = ("entries.jsonl", "checkpoint", "log.vkey", "device-keys.json")


def verify_log_files(
    files: Mapping[str, bytes], verifier: note.Verifier, *, subject: str = "."
) -> Report:
    """``journal-verify log``: a ``flask journal export`` directory (``entries.jsonl``,
    ``checkpoint``, ``log.vkey``, ``device-keys.json``): every entry's form and signature, the
    checkpoint's signature by VKEY and its root over the entries."""
    report = Report("log", subject)
    check = report.check("export", "The exported files")
    missing = [name for name in EXPORT_FILES if name not in files]
    for name in missing:
        check.fail(name, "is missing (flask journal export writes it)")
    if missing:
        return report
    check.note(f"{', '.join(EXPORT_FILES)} present")
    keys_check = report.check("keys", "Keys in the export")
    stored = files["log.vkey"].decode("utf-8", "replace").strip()
    if stored != verifier.vkey():
        keys_check.fail("log.vkey", f"is {stored}, not the key given with --vkey")
    else:
        keys_check.note(f"log.vkey is the key given with --vkey: {verifier.vkey()}")
    keys = _device_keys(keys_check, "device-keys.json", files["device-keys.json"])
    if not keys_check.problems:
        keys_check.note(f"device-keys.json: {len(keys)} keys, each id matches its key")
    check = report.check("log", "Entries and checkpoint")
    try:
        leaves = split_leaves(files["entries.jsonl"])
    except ValueError as exc:
        check.fail("entries.jsonl", str(exc))
        return report
    text = files["checkpoint"].decode("utf-8", "replace")
    try:
        claimed = note.parse_checkpoint(note.split_note(text)[0])
    except note.NoteError as exc:
        check.fail("checkpoint", f"is not a checkpoint: {exc}")
        return report
    audit_report = audit.verify_log(leaves, keys, [text], verifier, claimed.origin)
    for problem in audit_report.problems:
        where = (
            _entry_where("entries.jsonl", problem.seq, "checkpoint")
            if problem.exact
            else "checkpoint"
        )
        check.fail(where, problem.what)
    if audit_report.checkpoints_checked:
        check.note(
            f"{claimed.origin}: checkpoint of size {claimed.size} signed by {verifier.name}, "
            f"its root {base64.b64encode(claimed.root_hash).decode()} is the root of the first "
            f"{claimed.size} entries"
        )
    if not any(problem.seq is not None for problem in audit_report.problems):
        check.note(
            f"{len(leaves)} entries, each a canonical record of {claimed.origin} signed by one "
            f"of {len(keys)} keys"
        )
    if len(leaves) > claimed.size:
        check.warn(
            f"{len(leaves) - claimed.size} entries after the checkpoint (seq {claimed.size} "
            "on) are signed by their devices but not yet covered by a school checkpoint: run "
            "`flask --app wsgi journal checkpoint` before exporting"
        )
    return report


def verify_log_directory(path: Path, verifier: note.Verifier) -> Report:
    """``journal-verify log DIR``: the files of a ``flask journal export`` directory."""
    files: dict[str, bytes] = {}
    for name in EXPORT_FILES:
        try:
            files[name] = (Path(path) / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot read {Path(path) / name}: {exc.strerror or exc}") from None
    return verify_log_files(files, verifier, subject=str(path))


def verify_proof(
    leaf: bytes, proof: bytes, verifier: note.Verifier, *, subject: str = ""
) -> Report:
    """``journal-verify proof``: a .tlog-proof for these leaf bytes, signed by ``verifier``."""
    report = Report("proof", subject)
    check = report.check("proof", "Inclusion proof (c2sp.org/tlog-proof@v1)")
    if leaf.endswith(b"\n") and not leaf.endswith(b"\n\n"):
        leaf = leaf[:-1]  # a line copied from entries.jsonl; log records never end in a newline
        check.note("the trailing newline of the leaf file is not part of the leaf")
    try:
        checkpoint = tlogproof.verify_tlog_proof(leaf, proof, verifier)
        index = tlogproof.parse_tlog_proof(proof).index
    except merkle.ProofError as exc:
        check.fail(subject, str(exc))
        return report
    check.note(
        f"the leaf is entry {index} of {checkpoint.origin}, in the checkpoint of size "
        f"{checkpoint.size} (root {base64.b64encode(checkpoint.root_hash).decode()}) signed by "
        f"{verifier.name}"
    )
    try:
        record = parse_leaf(leaf)
    except (PayloadError, ValueError, KeyError):
        check.note("the leaf is not a class-journal log record; only its inclusion was checked")
        return report
    if record.seq != index:
        check.fail(subject, f"the record says seq {record.seq}, the proof is for entry {index}")
    journal = record.payload.get("journal")
    if journal != checkpoint.origin:
        check.fail(subject, f"the record belongs to {journal!r}, not to {checkpoint.origin}")
    check.note(
        f"record: kind {record.payload.get('kind')!r}, entry_id {record.payload.get('entry_id')}, "
        f"received {record.received_at}, signed by key {record.kid} (signature not checked here)"
    )
    return report


def verify_upload(
    data: bytes,
    verifier: note.Verifier,
    *,
    name: str = "upload",
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    openssl: str | None = "openssl",
    trust: Sequence[x509.Certificate] = (),
) -> Report:
    """A file handed to the inspector page: a PDF printout, or a bag as zip or tar."""
    if data.startswith(b"%PDF-"):
        return verify_pdf(data, verifier, subject=name, trust=trust)
    try:
        files = read_archive(data, max_files=max_files, max_bytes=max_bytes)
    except ArchiveRefused as exc:
        report = Report("bag", name)
        report.check("bag", "BagIt structure and manifests").fail(name, str(exc))
        return report
    return verify_bag_files(files, verifier, subject=name, openssl=openssl, trust=trust)


# --- command line -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="journal-verify",
        description=(
            "Verify a class-journal archive bag, journal export, printout or inclusion proof "
            "offline."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    vkey_help = "the school's verifier key <name>+<key id>+<key>, or a file holding it"
    trust_help = (
        "a PEM file of root certificates whose PDF signatures count without a registration in "
        "the school's ledger log (e.g. the national certificate authority's); repeatable"
    )
    bag = commands.add_parser("bag", help="verify an archive bag (directory, .zip or .tar)")
    bag.add_argument("path", type=Path)
    bag.add_argument("--vkey", required=True, help=vkey_help)
    bag.add_argument("--trust", action="append", default=[], type=Path, help=trust_help)
    proof = commands.add_parser("proof", help="verify a .tlog-proof for a leaf")
    proof.add_argument("proof", type=Path)
    proof.add_argument("--leaf", required=True, type=Path, help="file with the leaf bytes")
    proof.add_argument("--vkey", required=True, help=vkey_help)
    export = commands.add_parser("log", help="verify a `flask journal export` directory")
    export.add_argument("directory", type=Path)
    export.add_argument("--vkey", required=True, help=vkey_help)
    printout = commands.add_parser("pdf", help="verify a printout's signer and embedded records")
    printout.add_argument("file", type=Path)
    printout.add_argument("--vkey", required=True, help=vkey_help)
    printout.add_argument("--trust", action="append", default=[], type=Path, help=trust_help)
    return parser


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_trust(paths: Sequence[Path]) -> list[x509.Certificate]:
    """The certificates of the ``--trust`` PEM files; UsageError when one holds none."""
    roots: list[x509.Certificate] = []
    for path in paths:
        try:
            found = cms.load_pem_certificates(_read(path))
        except cms.CmsError as exc:
            raise UsageError(f"--trust {path}: {exc}") from None
        if not found:
            raise UsageError(f"--trust {path} holds no PEM certificate")
        roots += found
    return roots


def _check_cryptography() -> None:
    import cryptography

    major = int(cryptography.__version__.split(".")[0])
    if major < MIN_CRYPTOGRAPHY:
        raise UsageError(
            f"this verifier needs the cryptography package {MIN_CRYPTOGRAPHY} or later, "
            f"found {cryptography.__version__} (pip install --upgrade cryptography)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        _check_cryptography()
        args = parser.parse_args(argv)
        verifier = read_vkey(args.vkey)
        if args.command == "bag":
            if not args.path.exists():
                raise UsageError(f"{args.path} does not exist")
            report = verify_bag(args.path, verifier, trust=read_trust(args.trust))
        elif args.command == "log":
            if not args.directory.is_dir():
                raise UsageError(f"{args.directory} is not a directory")
            report = verify_log_directory(args.directory, verifier)
        elif args.command == "proof":
            report = verify_proof(
                _read(args.leaf), _read(args.proof), verifier, subject=str(args.proof)
            )
        else:
            trust = read_trust(args.trust)
            report = verify_pdf(_read(args.file), verifier, subject=str(args.file), trust=trust)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"journal-verify: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(report.text())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
