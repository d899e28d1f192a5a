#!/usr/bin/env python3
"""Check that one entry (a grade, an absence) is in the school's signed journal.

    python3 check_proof.py ENTRY.json ENTRY.tlog-proof SCHOOL.vkey

ENTRY.json    the entry exactly as the journal stores it (one line of entries.jsonl)
.tlog-proof   the inclusion proof (c2sp.org/tlog-proof@v1) with the school's signed checkpoint
SCHOOL.vkey   the school's published log key (C2SP signed-note verifier key)

Needs Python 3 and the `cryptography` package only; it does not talk to any server.
Prints VERIFIED and exits 0, or prints NOT VERIFIED with the reason and exits 1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space start each signature line


class NotVerified(Exception):
    pass


def school_key(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    name, key_id_hex, key_b64 = vkey.strip().split("+", 2)
    key = base64.b64decode(key_b64, validate=True)
    if len(key) != 33 or key[0] != 1:
        raise NotVerified("the school key is not an Ed25519 note key")
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise NotVerified("the school key's id does not match its name and key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(key[1:])


def open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """Origin, tree size and root hash of a checkpoint signed by the school's key."""
    name, key_id, public_key = school_key(vkey)
    split = note.rfind("\n\n")
    text, signatures = note[: split + 1], note[split + 2 :].splitlines()
    for line in signatures:
        signer, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        raw = base64.b64decode(encoded, validate=True)
        if line.startswith(SIGNATURE_PREFIX) and signer == name and raw[:4] == key_id:
            try:
                public_key.verify(raw[4:], text.encode())
            except InvalidSignature:
                raise NotVerified("the checkpoint's signature is not the school's") from None
            origin, size, root = text.splitlines()[:3]
            return origin, int(size), base64.b64decode(root, validate=True)
    raise NotVerified("the checkpoint is not signed by the school's key")


def root_from_inclusion(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: recompute the tree root from a leaf and its inclusion path."""
    if not 0 <= index < size:
        raise NotVerified("the entry's index is outside the checkpoint")
    fn, sn = index, size - 1
    node = hashlib.sha256(b"\x00" + leaf).digest()
    for sibling in path:
        if sn == 0:
            raise NotVerified("the proof is too long")
        if fn % 2 == 1 or fn == sn:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise NotVerified("the proof is too short")
    return node


def check(entry: bytes, proof: str, vkey: str) -> dict[str, object]:
    head, blank, note = proof.partition("\n\n")
    lines = head.split("\n")
    if not blank or lines[0] != "c2sp.org/tlog-proof@v1":
        raise NotVerified("the proof is not a c2sp.org/tlog-proof@v1 file")
    lines = [line for line in lines[1:] if not line.startswith("extra ")]
    if not lines or not lines[0].startswith("index "):
        raise NotVerified("the proof has no index line")
    index = int(lines[0].removeprefix("index "))
    path = [base64.b64decode(line, validate=True) for line in lines[1:]]
    origin, size, root = open_checkpoint(note, vkey)
    if root_from_inclusion(entry, index, size, path) != root:
        raise NotVerified("the entry is not in the signed journal (the hashes do not match)")
    record = json.loads(entry)
    if record.get("payload", {}).get("journal") != origin:
        raise NotVerified("the entry names another journal than the checkpoint")
    return {"journal": origin, "index": index, "size": size, "payload": record["payload"]}


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__)
        return 2
    with open(argv[1], "rb") as f:
        entry = f.read().rstrip(b"\n")
    with open(argv[2], encoding="utf-8") as f:
        proof = f.read()
    with open(argv[3], encoding="utf-8") as f:
        vkey = f.read()
    try:
        result = check(entry, proof, vkey)
    except (NotVerified, ValueError, KeyError, IndexError) as exc:
        print(f"NOT VERIFIED: {exc}")
        return 1
    print(f"VERIFIED: entry {result['index']} of {result['size']} in {result['journal']}")
    print(json.dumps(result["payload"], ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
