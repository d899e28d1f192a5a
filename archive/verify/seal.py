"""The bag seal: the school's log key signs the sha512 of every top-level file of a bag.

BagIt manifests detect accidents, not an attacker: whoever rewrites a file can rewrite the
manifests too. The entries and checkpoints are protected by the school's log key, but the other
files (device keys, printouts, timestamp tokens, certificates, ``bag-info.txt``) are not signed by
it. The seal closes that gap: ``bag-seal.note`` is a C2SP signed note, signed by the same key as
the checkpoints (the key the inspector gets from the school, not from the bag), whose text is::

    class-journal/bag-seal/v1
    <sha512 hex>  bag-info.txt
    <sha512 hex>  bagit.txt
    <sha512 hex>  manifest-sha512.txt
    <sha512 hex>  tagmanifest-sha512.txt
    <sha512 hex>  tagmanifest-sha512.txt.tsr      (and any other top-level file)

The tag manifest lists the payload manifest, which lists every payload file, so one signature
covers every byte of the bag. The lines after the first are in ``sha512sum`` format. The seal is
written last (after the tag manifest's timestamp token) by :func:`seal_bag`; BagIt allows such
unlisted tag files, and ``bagit.py --validate`` ignores it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING or __package__:
    from journal.ledger import note
else:  # run from a bag: data/verify/ holds this file and the ledger package
    from ledger import note

SEAL_FILE = "bag-seal.note"
HEADER = "class-journal/bag-seal/v1"
_LINE = re.compile(r"([0-9a-f]{128})  ([^/\n]+)")


class SealError(ValueError):
    """A seal that is missing, malformed, not signed by the key, or not matching the files."""


def seal_text(top_files: Mapping[str, bytes]) -> str:
    """The note text over these top-level files (name → bytes), the seal itself excluded."""
    lines = [HEADER]
    for name in sorted(top_files):
        if name == SEAL_FILE:
            continue
        if "/" in name or not name or not name.isprintable():
            raise ValueError(f"{name!r} is not a top-level file name")
        lines.append(f"{hashlib.sha512(top_files[name]).hexdigest()}  {name}")
    return "\n".join(lines) + "\n"


def seal_bag(bag_dir: Path, key_name: str, private_key: Ed25519PrivateKey) -> Path:
    """Sign every top-level file of a finished bag; write and return ``bag-seal.note``.

    Call it after everything else is in place (``build_bag``, the tag manifest's timestamp).
    """
    bag_dir = Path(bag_dir)
    top = {
        path.name: path.read_bytes()
        for path in sorted(bag_dir.iterdir())
        if path.is_file() and path.name != SEAL_FILE
    }
    text = seal_text(top)
    path = bag_dir / SEAL_FILE
    path.write_text(note.sign_note(text, key_name, private_key), encoding="utf-8")
    return path


def check_seal(
    seal: bytes, top_files: Mapping[str, bytes], verifier: note.Verifier
) -> dict[str, str]:
    """Open the seal with ``verifier`` and compare it with the top-level files; SealError if
    anything differs. Returns the sha512 (hex) the seal gives for each file."""
    try:
        text = note.open_note(seal, verifier)
    except note.NoteError as exc:
        raise SealError(f"{SEAL_FILE} is not signed by the school's key: {exc}") from None
    lines = text[:-1].split("\n")
    if lines[0] != HEADER:
        raise SealError(f"{SEAL_FILE} does not start with {HEADER}")
    sealed: dict[str, str] = {}
    for line in lines[1:]:
        match = _LINE.fullmatch(line)
        if not match:
            raise SealError(f"{SEAL_FILE} has a malformed line {line[:60]!r}")
        digest, name = match.groups()
        if name in sealed or name == SEAL_FILE:
            raise SealError(f"{SEAL_FILE} lists {name} twice")
        sealed[name] = digest
    if list(sealed) != sorted(sealed):
        raise SealError(f"{SEAL_FILE} lines are not sorted by file name")
    present = {name for name in top_files if name != SEAL_FILE}
    problems = [f"{name} is sealed but missing" for name in sorted(set(sealed) - present)]
    problems += [f"{name} is not covered by the seal" for name in sorted(present - set(sealed))]
    problems += [
        f"{name} changed after the bag was sealed"
        for name in sorted(present & set(sealed))
        if hashlib.sha512(top_files[name]).hexdigest() != sealed[name]
    ]
    if problems:
        raise SealError("; ".join(problems))
    return sealed
