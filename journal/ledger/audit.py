"""Check a whole log from its leaves, keys and checkpoints: the one verification routine shared by
``flask journal verify`` (rows from the database) and the standalone bag verifier (files).

Standard library and ``cryptography`` only: this folder is copied into every archive bag.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import merkle, note
from .entry import (
    KeyFormatError,
    PayloadError,
    parse_leaf,
    verify_payload,
)


@dataclass(frozen=True)
class DeviceKeyInfo:
    alg: str
    public_key: bytes
    user: int | None
    revoked_at: str | None


@dataclass(frozen=True)
class Problem:
    seq: int | None  # the first leaf concerned, when one can be named
    what: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.what}" if self.seq is not None else self.what


@dataclass
class AuditReport:
    origin: str
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    checkpoints_checked: list[int] = field(default_factory=list)
    consistency_checked: list[tuple[int, int]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, seq: int | None, what: str) -> None:
        self.problems.append(Problem(seq, what))

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK {self.origin}: {self.size} entries, root "
                f"{base64.b64encode(self.root).decode()}, "
                f"{len(self.checkpoints_checked)} checkpoint(s) verified"
            )
        first = self.first_bad_seq
        head = f"FAILED {self.origin}" + (f": first bad seq {first}" if first is not None else "")
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def device_keys_from_document(document: Mapping[str, Any]) -> dict[str, DeviceKeyInfo]:
    """Read ``device-keys.json``: ``{kid: {alg, public_key (base64), user, revoked_at}}``."""
    keys = {}
    for kid, info in document.items():
        keys[kid] = DeviceKeyInfo(
            alg=str(info["alg"]),
            public_key=base64.b64decode(info["public_key"], validate=True),
            user=info.get("user"),
            revoked_at=info.get("revoked_at"),
        )
    return keys


def parse_hash_lines(text: str) -> list[bytes]:
    """A consistency proof as stored: one base64 SHA-256 hash per line."""
    hashes = []
    for line in text.splitlines():
        if line:
            value = base64.b64decode(line, validate=True)
            if len(value) != 32:
                raise ValueError("a proof hash must be 32 bytes")
            hashes.append(value)
    return hashes


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def verify_log(
    leaves: Sequence[bytes],
    device_keys: Mapping[str, DeviceKeyInfo],
    checkpoint_notes: Sequence[str],
    verifier: note.Verifier,
    origin: str,
    *,
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None = None,
    stored_seqs: Sequence[int] | None = None,
    stored_leaf_hashes: Sequence[bytes] | None = None,
) -> AuditReport:
    """Check every leaf, the tree against every checkpoint, and the consistency proofs.

    ``stored_seqs`` and ``stored_leaf_hashes`` are the database's index columns, when there is a
    database: a mismatch with the leaf bytes names the tampered seq.
    """
    report = AuditReport(origin=origin, size=len(leaves))
    seen_ids: dict[str, int] = {}
    hashes: list[bytes] = []
    for index, line in enumerate(leaves):
        hashes.append(merkle.leaf_hash(line))
        if stored_seqs is not None and stored_seqs[index] != index:
            report.add(index, f"stored seq {stored_seqs[index]} where {index} was expected")
        if stored_leaf_hashes is not None and stored_leaf_hashes[index] != hashes[-1]:
            report.add(index, "the leaf bytes do not match their recorded hash")
        _check_leaf(report, index, line, device_keys, origin, seen_ids)

    # Walk the tree once, taking the root at every checkpoint size.
    parsed: list[note.Checkpoint] = []
    for text in checkpoint_notes:
        try:
            checkpoint = note.verify_checkpoint(text, verifier, origin)
        except (note.NoteError, ValueError) as exc:
            report.add(None, f"checkpoint signature or format invalid: {exc}")
            continue
        parsed.append(checkpoint)
    parsed.sort(key=lambda cp: cp.size)
    builder = merkle.TreeBuilder()
    previous_size = 0
    for checkpoint in parsed:
        if checkpoint.size > len(hashes):
            report.add(
                None,
                f"checkpoint of size {checkpoint.size} covers more entries than the "
                f"{len(hashes)} present: entries were removed",
            )
            continue
        for leaf_hash_value in hashes[builder.size : checkpoint.size]:
            builder.append(leaf_hash_value)
        if builder.root() != checkpoint.root_hash:
            # Name a seq only when no single leaf was found bad in the range: then the change
            # is somewhere in it and the range's start is the best first bad seq we can give.
            named = any(
                p.seq is not None and previous_size <= p.seq < checkpoint.size
                for p in report.problems
            )
            report.add(
                None if named or previous_size >= checkpoint.size else previous_size,
                f"the entries do not hash to the root of checkpoint {checkpoint.size} "
                f"(a change between seq {previous_size} and {checkpoint.size - 1})",
            )
        else:
            report.checkpoints_checked.append(checkpoint.size)
        previous_size = checkpoint.size
    for leaf_hash_value in hashes[builder.size :]:
        builder.append(leaf_hash_value)
    report.root = builder.root()

    if consistency:
        roots = {cp.size: cp.root_hash for cp in parsed}
        for (old_size, new_size), proof in sorted(consistency.items()):
            if old_size not in roots or new_size not in roots:
                report.add(None, f"consistency proof {old_size}->{new_size} names no checkpoint")
                continue
            try:
                merkle.verify_consistency(
                    old_size, new_size, roots[old_size], roots[new_size], list(proof)
                )
            except merkle.ProofError as exc:
                report.add(None, f"consistency proof {old_size}->{new_size} fails: {exc}")
            else:
                report.consistency_checked.append((old_size, new_size))
    return report


def _check_leaf(
    report: AuditReport,
    index: int,
    line: bytes,
    device_keys: Mapping[str, DeviceKeyInfo],
    origin: str,
    seen_ids: dict[str, int],
) -> None:
    try:
        record = parse_leaf(line)
    except (PayloadError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        report.add(index, f"the leaf is not a canonical log record: {exc}")
        return
    if record.seq != index:
        report.add(index, f"the leaf says seq {record.seq}")
    payload = record.payload
    if payload.get("journal") != origin:
        report.add(index, f"the entry belongs to {payload.get('journal')!r}, not this log")
    key = device_keys.get(record.kid)
    if key is None:
        report.add(index, f"signed by an unknown key {record.kid}")
        return
    if key.alg != record.alg:
        report.add(index, "the algorithm does not match the key")
        return
    if payload.get("device_id") != record.kid:
        report.add(index, "device_id does not name the signing key")
    if key.user is not None and payload.get("author") != key.user:
        report.add(index, "the author is not the key's owner")
    try:
        valid = verify_payload(record.alg, key.public_key, record.payload_bytes, record.sig)
    except KeyFormatError as exc:
        report.add(index, f"unusable key {record.kid}: {exc}")
        return
    if not valid:
        report.add(index, "the signature does not match the entry")
    if key.revoked_at is not None:
        try:
            if _parse_time(record.received_at) > _parse_time(key.revoked_at):
                report.add(index, "accepted after its key was revoked")
        except ValueError:
            report.add(index, "received_at is not a timestamp")
    entry_id = payload.get("entry_id")
    if isinstance(entry_id, str):
        if entry_id in seen_ids:
            report.add(index, f"entry_id also used at seq {seen_ids[entry_id]}")
        else:
            seen_ids[entry_id] = index


# -- a slice of a log, proven against a checkpoint -------------------------------------------
#
# A printout embeds the leaves [start, size) of its period and ``entries-range.txt``: the line
# "start <n>" followed by the compact range of the leaves before it (the roots of the perfect
# subtrees covering [0, start), largest first, base64, one per line). Appending the period's
# leaf hashes to that compact range must give the checkpoint's root at exactly its size.

RANGE_FILE = "entries-range.txt"


def format_range_file(start: int, prefix_hashes: Sequence[bytes]) -> str:
    lines = [f"start {start}"] + [base64.b64encode(h).decode() for h in prefix_hashes]
    return "\n".join(lines) + "\n"


def parse_range_file(text: str) -> tuple[int, list[bytes]]:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("start "):
        raise ValueError("entries-range.txt must begin with 'start <n>'")
    digits = lines[0][len("start ") :]
    if not digits.isdigit() or (len(digits) > 1 and digits.startswith("0")):
        raise ValueError("the start of the range is not a decimal number")
    return int(digits), parse_hash_lines("\n".join(lines[1:]))


def verify_range(
    start: int, prefix_hashes: Sequence[bytes], leaves: Sequence[bytes], checkpoint: note.Checkpoint
) -> None:
    """Raise ValueError unless ``leaves`` are exactly the log's leaves [start, checkpoint.size)."""
    builder = merkle.TreeBuilder.resume(start, prefix_hashes)
    for line in leaves:
        builder.append(merkle.leaf_hash(line))
    if builder.size != checkpoint.size:
        raise ValueError(
            f"the range ends at {builder.size}, the checkpoint covers {checkpoint.size} entries"
        )
    if builder.root() != checkpoint.root_hash:
        raise ValueError("the embedded entries do not hash to the checkpoint's root")
    for offset, line in enumerate(leaves):
        record = parse_leaf(line)
        if record.seq != start + offset:
            raise ValueError(f"embedded leaf {offset} says seq {record.seq}")
