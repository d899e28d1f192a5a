"""docs/formats.md is true: every known-answer example in it (a fenced block after a
``<!-- kat: NAME -->`` line) is what the code computes from the inputs the document gives.

Ed25519 signatures are deterministic, so every value is recomputed exactly; the ECDSA P-256
example (random by nature) is checked by verifying it. ``python -m tests.test_formats_doc``
prints every block, to paste after a deliberate change of format.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from archive.verify import seal
from journal.ledger import audit, merkle, note, tlogproof
from journal.ledger import entry as ledger_entry
from journal.ledger import signer as registrations

DOC = Path(__file__).resolve().parent.parent / "docs" / "formats.md"
DEVICE_SEED = bytes(range(32))  # the example device key: Ed25519 private key 00 01 02 ... 1f
SCHOOL_SEED = bytes(range(32, 64))  # the example school log key: 20 21 ... 3f
SCHOOL = "school7.example.kz"
ORIGIN = f"{SCHOOL}/journal/2026-2027/7"
RECEIVED = ["2026-11-16T09:05:00Z", "2026-11-16T09:06:00Z", "2026-11-16T09:07:30Z"]
# An ECDSA P-256 public key and one signature made with it over the example payload (ECDSA is
# randomized: any of many signatures is valid, so this one is given, and checked by verifying).
ECDSA_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEiejdrAMSh66R7NwWsb+yLfLrc93eSdIuoJXZir11M378vlf+XuijT2X"
    "l7xkRbkaXi/lsOMFa4qNZQUaZmJprpQ=="
)
ECDSA_SIGNATURE = (
    "MEYCIQDLLf1bpXoazh9Gx+HgrIKwZ3fUU2hRGm4oTokJ+AUisQIhAN/t8xNOlKKg08EMbmS0+HWp0VbCqtp6HvB/PVtA"
    "5m+x"
)


def _payloads(device_kid: str) -> list[dict[str, object]]:
    common = {"v": 1, "journal": ORIGIN, "device_id": device_kid, "author": 12}
    return [
        {
            **common,
            "entry_id": "0b9f6c1e-7d2a-4c3e-9a51-2f6d8e4b7c10",
            "kind": "grade",
            "device_seq": 0,
            "created_at": "2026-11-16T09:04:51Z",
            "lesson": 311,
            "student": 45,
            "component": "SOR",
            "value": {"points": 12, "max": 15},
        },
        {
            **common,
            "entry_id": "5c3d2e1f-0a9b-4c8d-b7e6-f5a4b3c2d1e0",
            "kind": "attendance",
            "device_seq": 1,
            "created_at": "2026-11-16T09:05:40Z",
            "lesson": 311,
            "student": 46,
            "value": "sick",
        },
        {
            **common,
            "entry_id": "9e8d7c6b-5a49-4382-a716-f5e4d3c2b1a0",
            "kind": "topic",
            "device_seq": 2,
            "created_at": "2026-11-16T09:07:02Z",
            "lesson": 311,
            "topic": "Бөлшектерді қосу",
            "homework": "№ 214, 215",
        },
    ]


def _certificate(school: Ed25519PrivateKey) -> x509.Certificate:
    """A certificate fixed in every byte (Ed25519 signs deterministically): the example of a
    registered signer. Real PDF certificates are RSA; the record does not depend on that."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "№ 7 мектеп"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SCHOOL),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(school.public_key())
        .serial_number(0x1CE5)
        .not_valid_before(dt.datetime(2026, 9, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2031, 9, 1, tzinfo=dt.UTC))
        .sign(school, None)
    )


def known_answers() -> dict[str, str]:
    device = Ed25519PrivateKey.from_private_bytes(DEVICE_SEED)
    school = Ed25519PrivateKey.from_private_bytes(SCHOOL_SEED)
    alg, raw = ledger_entry.public_key_bytes(device.public_key())
    kid = ledger_entry.key_id(alg, raw)
    payloads = _payloads(kid)
    payload_bytes = ledger_entry.canonical_json(payloads[0])
    signature = ledger_entry.sign_payload(device, payload_bytes)
    leaves = [
        ledger_entry.leaf_bytes(
            seq,
            RECEIVED[seq],
            payload,
            alg,
            kid,
            ledger_entry.sign_payload(device, ledger_entry.canonical_json(payload)),
        )
        for seq, payload in enumerate(payloads)
    ]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    tree = merkle.MerkleTree(hashes)
    checkpoint = note.sign_checkpoint(note.Checkpoint(ORIGIN, 3, tree.root(3)), SCHOOL, school)
    first = note.sign_checkpoint(note.Checkpoint(ORIGIN, 2, tree.root(2)), SCHOOL, school)
    school_raw = ledger_entry.public_key_bytes(school.public_key())[1]
    school_kid = ledger_entry.key_id("ed25519", school_raw)
    device_keys = {
        kid: {
            "alg": "ed25519",
            "public_key": base64.b64encode(raw).decode(),
            "revoked_at": None,
            "user": 12,
            "username": "s.kairatkyzy",
        },
        ledger_entry.key_id("ecdsa-p256", base64.b64decode(ECDSA_PUBLIC_KEY)): {
            "alg": "ecdsa-p256",
            "public_key": ECDSA_PUBLIC_KEY,
            "revoked_at": "2027-01-10T08:00:00Z",
            "user": 12,
            "username": "s.kairatkyzy",
        },
        school_kid: {
            "alg": "ed25519",
            "public_key": base64.b64encode(school_raw).decode(),
            "revoked_at": None,
            "user": None,
            "username": SCHOOL,
        },
    }
    cert = _certificate(school)
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    ledger_origin = f"{SCHOOL}/ledger"
    registration = {
        **registrations.registration_fields(cert_der),
        "v": 1,
        "entry_id": "3f2e1d0c-b9a8-4765-8432-10fedcba9876",
        "journal": ledger_origin,
        "kind": registrations.KIND,
        "device_id": school_kid,
        "device_seq": 0,
        "author": None,
        "created_at": "2026-09-01T08:00:00Z",
    }
    sealed = {
        "v": 1,
        "entry_id": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
        "journal": ledger_origin,
        "kind": "journal_sealed",
        "device_id": school_kid,
        "device_seq": 1,
        "author": None,
        "created_at": "2027-01-05T02:30:00Z",
        "package": {
            "key": f"{SCHOOL}/journal-2026-2027-class7-q2.tar",
            "kind": "journal_quarter",
            "tier": "journal-5y",
            "sha512": hashlib.sha512(b"the bag's tar").hexdigest(),
            "size": 13,
            "bagging_date": "2027-01-05",
            "retain_until": "2032-05-25",
            "storage": "s3://school-archive",
            "version_id": "671172de2014fde49cfde3f7043bf0c5",
        },
        "school_year": "2026-2027",
        "class_group": 7,
        "class_name": "7Ә",
        "quarter": 2,
        "checkpoint": checkpoint,
    }
    ledger_leaves = [
        ledger_entry.leaf_bytes(
            record["device_seq"],  # type: ignore[arg-type]
            str(record["created_at"]),
            record,
            "ed25519",
            school_kid,
            ledger_entry.sign_payload(school, ledger_entry.canonical_json(record)),
        )
        for record in (registration, sealed)
    ]
    ledger_tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in ledger_leaves])
    ledger_checkpoint = note.sign_checkpoint(
        note.Checkpoint(ledger_origin, 2, ledger_tree.root(2)), SCHOOL, school
    )
    prefix = merkle.TreeBuilder()
    prefix.append(hashes[0])
    top = {
        "bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        "bag-info.txt": b"External-Identifier: school7.example.kz/journal-2026-2027-class7-q2\n",
    }
    return {
        "device-public-key": base64.b64encode(raw).decode(),
        "device-key-id": kid,
        "payload": payload_bytes.decode(),
        "signature": base64.b64encode(signature).decode(),
        "ecdsa-public-key": ECDSA_PUBLIC_KEY,
        "ecdsa-key-id": ledger_entry.key_id("ecdsa-p256", base64.b64decode(ECDSA_PUBLIC_KEY)),
        "ecdsa-signature": ECDSA_SIGNATURE,
        "leaves": b"\n".join(leaves).decode(),
        "leaf-hashes": "\n".join(h.hex() for h in hashes),
        "root": f"size 2: {base64.b64encode(tree.root(2)).decode()}\n"
        f"size 3: {base64.b64encode(tree.root(3)).decode()}",
        "vkey": note.vkey(SCHOOL, school.public_key()),
        "checkpoint": checkpoint.rstrip("\n"),
        "consistency": "\n".join(
            base64.b64encode(h).decode() for h in tree.consistency_proof(2, 3)
        ),
        "tlog-proof": tlogproof.format_tlog_proof(
            tlogproof.make_tlog_proof(tree, 1, checkpoint)
        ).rstrip("\n"),
        "entries-range": audit.format_range_file(2, [*_prefix_two(hashes)]).rstrip("\n"),
        "device-keys": json.dumps(device_keys, indent=2, sort_keys=True),
        "seal": seal.seal_text(top).rstrip("\n"),
        "seal-note": note.sign_note(seal.seal_text(top), SCHOOL, school).rstrip("\n"),
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode().rstrip("\n"),
        "registration-leaf": ledger_leaves[0].decode(),
        "sealed-leaf": ledger_leaves[1].decode(),
        "ledger-checkpoint": ledger_checkpoint.rstrip("\n"),
        "first-checkpoint": first.rstrip("\n"),
    }


def _prefix_two(hashes: list[bytes]) -> list[bytes]:
    builder = merkle.TreeBuilder()
    for value in hashes[:2]:
        builder.append(value)
    return list(builder.hashes)


_KAT = re.compile(r"<!-- kat: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?)\n```", re.S)


def documented() -> dict[str, str]:
    return {name: body for name, body in _KAT.findall(DOC.read_text(encoding="utf-8"))}


def test_every_known_answer_in_the_document_is_what_the_code_computes() -> None:
    expected = known_answers()
    found = documented()
    assert set(found) == set(expected), set(found) ^ set(expected)
    for name, value in expected.items():
        assert found[name] == value, f"docs/formats.md, example {name!r} differs"


def test_the_ecdsa_example_signature_verifies() -> None:
    assert ledger_entry.verify_payload(
        "ecdsa-p256",
        base64.b64decode(ECDSA_PUBLIC_KEY),
        known_answers()["payload"].encode(),
        base64.b64decode(ECDSA_SIGNATURE),
    )


def test_the_registration_example_verifies_as_printouts_embed_it() -> None:
    answers = known_answers()
    verifier = note.parse_vkey(answers["vkey"])
    leaves = [answers["registration-leaf"].encode(), answers["sealed-leaf"].encode()]
    tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in leaves])
    proof = tlogproof.format_tlog_proof(
        tlogproof.make_tlog_proof(tree, 0, answers["ledger-checkpoint"] + "\n")
    )
    registration = registrations.verify_registration(leaves[0], proof, verifier)
    cert = x509.load_pem_x509_certificate(answers["certificate"].encode())
    assert registration.sha256 == registrations.certificate_sha256(
        cert.public_bytes(serialization.Encoding.DER)
    )
    assert note.verify_checkpoint(answers["checkpoint"] + "\n", verifier).size == 3
    assert (
        tlogproof.verify_tlog_proof(
            answers["leaves"].split("\n")[1].encode(), answers["tlog-proof"] + "\n", verifier
        ).size
        == 3
    )


if __name__ == "__main__":
    for key, text in known_answers().items():
        print(f"<!-- kat: {key} -->\n```\n{text}\n```\n")
