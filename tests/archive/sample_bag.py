"""A complete archive bag made without a database, for the verifier's tests and benchmark.

``build_sample_bag`` writes what the archive job writes (DESIGN §5): signed entries from a few
devices, checkpoints with consistency proofs and RFC 3161 tokens (``openssl ts -reply`` with the
test PKI of ``tests/archive/services.py``), the tag manifest's token, device keys, the TSA CA,
a signed and timestamped PDF printout of a prefix of the log, the standalone verifier, and the
seal. ``attacker_rewrites_manifests`` recomputes what someone editing a bag would recompute.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from archive.bag import build_bag
from archive.verify import seal
from archive.verify.verify import read_bag_directory
from journal.ledger import audit, merkle, note, tlogproof
from journal.ledger import entry as ledger_entry
from tests.archive.services import ServiceUnavailable, make_test_pki, write_tsa_config

REPO = Path(__file__).resolve().parent.parent.parent
KEY_NAME = "school7.example.kz"
ORIGIN = f"{KEY_NAME}/journal/2026-2027/7"
RECEIVED = dt.datetime(2026, 11, 16, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class SampleBag:
    path: Path
    vkey: str
    key_name: str
    log_key: Ed25519PrivateKey
    origin: str
    leaves: tuple[bytes, ...]

    def files(self) -> dict[str, bytes]:
        return read_bag_directory(self.path)


@dataclass(frozen=True)
class SampleLog:
    leaves: list[bytes]
    device_keys: dict[str, dict[str, object]]
    notes: dict[int, str]
    proofs: dict[tuple[int, int], str]


def make_log(
    count: int,
    checkpoint_sizes: tuple[int, ...],
    log_key: Ed25519PrivateKey,
    *,
    origin: str = ORIGIN,
    devices: int = 2,
    seed: int = 7,
) -> SampleLog:
    """``count`` signed grade entries from ``devices`` Ed25519 keys, and signed checkpoints."""
    rng = random.Random(seed)
    keys = []
    document: dict[str, dict[str, object]] = {}
    for user in range(1, devices + 1):
        private = Ed25519PrivateKey.generate()
        alg, raw = ledger_entry.public_key_bytes(private.public_key())
        kid = ledger_entry.key_id(alg, raw)
        keys.append((kid, private, user))
        document[kid] = {
            "alg": alg,
            "public_key": base64.b64encode(raw).decode(),
            "user": user,
            "username": f"teacher{user}",
            "revoked_at": None,
        }
    device_seq = dict.fromkeys(document, 0)
    leaves = []
    for seq in range(count):
        kid, private, user = keys[seq % devices]
        payload = {
            "v": 1,
            "entry_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "journal": origin,
            "kind": "grade",
            "device_id": kid,
            "device_seq": device_seq[kid],
            "author": user,
            "created_at": "2026-11-16T09:05:00Z",
            "lesson": 100 + seq // 30,
            "student": 1 + seq % 30,
            "component": "FO",
            "value": {"score": 1 + rng.randrange(10)},
        }
        device_seq[kid] += 1
        sig = ledger_entry.sign_payload(private, ledger_entry.canonical_json(payload))
        received = ledger_entry.format_timestamp(RECEIVED + dt.timedelta(seconds=seq))
        leaves.append(ledger_entry.leaf_bytes(seq, received, payload, "ed25519", kid, sig))
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    tree = merkle.MerkleTree(hashes)
    notes = {
        size: note.sign_checkpoint(
            note.Checkpoint(origin, size, tree.root(size)), KEY_NAME, log_key
        )
        for size in checkpoint_sizes
    }
    proofs = {}
    for old, new in zip(checkpoint_sizes, checkpoint_sizes[1:], strict=False):
        proofs[(old, new)] = "".join(
            base64.b64encode(h).decode() + "\n" for h in tree.consistency_proof(old, new)
        )
    return SampleLog(leaves, document, notes, proofs)


class LocalTimestamper:
    """RFC 3161 tokens from ``openssl ts -reply`` with the test PKI, no HTTP server."""

    def __init__(self, directory: Path) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ServiceUnavailable(
                "openssl is not installed (scripts/install-debian-packages.sh)"
            )
        self.openssl = openssl
        self.directory = directory
        self.ca_cert, self.tsa_cert, self.tsa_key = make_test_pki(directory)
        self.config = write_tsa_config(directory, self.tsa_cert, self.tsa_key)

    def timestamp(self, data: bytes) -> bytes:
        with tempfile.TemporaryDirectory(dir=self.directory) as work:
            paths = [Path(work) / name for name in ("data", "query.tsq", "reply.tsr")]
            paths[0].write_bytes(data)
            run = [self.openssl, "ts"]
            subprocess.run(
                [*run, "-query", "-data", paths[0], "-sha256", "-cert", "-out", paths[1]],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*run, "-reply", "-config", self.config, "-queryfile", paths[1], "-out", paths[2]],
                check=True,
                capture_output=True,
            )
            return paths[2].read_bytes()


def _certificate(
    subject: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def make_registration(
    log_key: Ed25519PrivateKey,
    certificate: x509.Certificate,
    chain: tuple[x509.Certificate, ...] = (),
    *,
    key_name: str = KEY_NAME,
    valid_until: dt.datetime | None = None,
    records_before: int = 2,
) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """``signer.jsonl`` and ``signer.tlog-proof`` as the school ledger log would give them: a
    ``pdf_signer_registered`` record signed by the log key after ``records_before`` others, in a
    checkpoint of that log signed by the same key."""
    from journal.ledger import signer as registrations

    der = serialization.Encoding.DER
    raw = ledger_entry.public_key_bytes(log_key.public_key())[1]
    kid = ledger_entry.key_id("ed25519", raw)
    origin = f"{key_name}/ledger"
    leaves = []
    for seq in range(records_before + 1):
        fields: dict[str, object] = {"note": f"record {seq}"}
        kind = "term_closed"
        if seq == records_before:
            kind = registrations.KIND
            fields = registrations.registration_fields(
                certificate.public_bytes(der),
                [c.public_bytes(der) for c in chain],
                valid_until=valid_until,
            )
        payload = {
            **fields,
            "v": 1,
            "entry_id": str(uuid.UUID(int=seq + 1, version=4)),
            "journal": origin,
            "kind": kind,
            "device_id": kid,
            "device_seq": seq,
            "author": None,
            "created_at": "2026-09-01T08:00:00Z",
        }
        sig = ledger_entry.sign_payload(log_key, ledger_entry.canonical_json(payload))
        leaves.append(
            ledger_entry.leaf_bytes(seq, "2026-09-01T08:00:00Z", payload, "ed25519", kid, sig)
        )
    tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in leaves])
    checkpoint = note.sign_checkpoint(
        note.Checkpoint(origin, len(leaves), tree.root(len(leaves))), key_name, log_key
    )
    proof = tlogproof.format_tlog_proof(tlogproof.make_tlog_proof(tree, records_before, checkpoint))
    return (
        (registrations.RECORD_FILE, leaves[-1] + b"\n"),
        (registrations.PROOF_FILE, proof.encode()),
    )


def make_signer(
    subject: str = "Мектеп 7 мөрі",
) -> tuple[object, x509.Certificate, x509.Certificate]:
    """A PdfSigner with a certificate from a test CA: (signer, certificate, CA certificate)."""
    from exports.pdf import PdfSigner

    pem = serialization.Encoding.PEM
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = _certificate("Мектеп 7 test CA", ca_key, None)
    key = rsa.generate_private_key(65537, 2048)
    cert = _certificate(subject, key, (ca.subject, ca_key))
    signer = PdfSigner(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        cert.public_bytes(pem),
        (ca.public_bytes(pem),),
    )
    return signer, cert, ca


def make_printout(
    log: SampleLog,
    size: int,
    vkey: str,
    *,
    timestamper: LocalTimestamper | None,
    origin: str = ORIGIN,
    start: int = 0,
    chosen: tuple[int, ...] | None = None,
    log_key: Ed25519PrivateKey | None = None,
    signer: tuple[object, x509.Certificate, x509.Certificate] | None = None,
    anchor: tuple[tuple[str, bytes], ...] | None = None,
    described: dict[str, object] | None = None,
) -> bytes:
    """A signed (and, with a TSA, document-timestamped) journal PDF showing the entries
    [``start``, ``size``) with ``entries-range.txt`` when ``start`` > 0 (as a quarter's journal
    does), or only the ``chosen`` ones, each with its inclusion proof (as a student's extract
    does); with the checkpoint of ``size`` and the device keys embedded. With ``log_key`` the
    signer's registration is embedded too (``anchor`` gives other files instead); ``signer``
    (from :func:`make_signer`) signs instead of a new test certificate; ``described`` is
    embedded as ``printout.json``."""
    from exports.documents import (
        JournalDocument,
        LessonColumn,
        ProofBundle,
        StudentRow,
        SubjectSheet,
    )
    from exports.pdf import render_journal_pdf

    pdf_signer, cert, ca = signer or make_signer()
    hashes = [merkle.leaf_hash(leaf) for leaf in log.leaves[:size]]
    tree = merkle.MerkleTree(hashes)
    seqs = list(chosen) if chosen is not None else list(range(start, size))
    proved = seqs if chosen is not None else [seqs[5]]
    extra = [("device-keys.json", json.dumps(log.device_keys).encode())]
    if anchor is not None:
        extra += list(anchor)
    elif log_key is not None:
        extra += list(make_registration(log_key, cert, (ca,)))
    if described is not None:
        extra.append(("printout.json", json.dumps(described, sort_keys=True).encode()))
    if start and chosen is None:
        prefix = merkle.TreeBuilder()
        for leaf_hash in hashes[:start]:
            prefix.append(leaf_hash)
        extra.append((audit.RANGE_FILE, audit.format_range_file(start, prefix.hashes).encode()))
    bundle = ProofBundle(
        origin=origin,
        tree_size=size,
        root_hash=tree.root(size),
        checkpoint_note=log.notes[size],
        vkey=vkey,
        entries_jsonl=b"".join(log.leaves[seq] + b"\n" for seq in seqs),
        tlog_proofs=tuple(
            (
                f"entry-{seq}.tlog-proof",
                tlogproof.format_tlog_proof(tlogproof.make_tlog_proof(tree, seq, log.notes[size])),
            )
            for seq in proved
        ),
        extra_files=tuple(extra),
    )
    lessons = tuple(LessonColumn(dt.date(2026, 11, 16 + i), f"Тақырып {i}") for i in range(3))
    rows = tuple(
        StudentRow(name, (("8",), (), ("н",))) for name in ("Әлібек Нұрлан", "Іңкәр Өмірзақ")
    )
    doc = JournalDocument(
        school_name="№ 7 мектеп",
        class_name="7Ә",
        school_year="2026-2027",
        quarter=2,
        generated_at=dt.datetime(2026, 12, 28, 12, 0, tzinfo=dt.UTC),
        subjects=(SubjectSheet("Алгебра", "Сәуле Қайратқызы", lessons, rows),),
        proof=bundle,
    )
    document_timestamper = None
    if timestamper is not None:
        from pyhanko.keys import load_cert_from_pemder, load_private_key_from_pemder
        from pyhanko.sign.timestamps import DummyTimeStamper

        document_timestamper = DummyTimeStamper(
            tsa_cert=load_cert_from_pemder(str(timestamper.tsa_cert)),
            tsa_key=load_private_key_from_pemder(str(timestamper.tsa_key), None),
        )
    return render_journal_pdf(doc, pdf_signer, document_timestamper)  # type: ignore[arg-type]


def build_sample_bag(
    dest: Path,
    *,
    entries: int = 60,
    checkpoints: tuple[int, ...] = (20, 40, 60),
    printout_size: int | None = 40,
    timestamps: bool = True,
    sealed: bool = True,
    devices: int = 2,
) -> SampleBag:
    """Write a bag at ``dest`` (which must not exist) the way the archive job does."""
    log_key = Ed25519PrivateKey.generate()
    vkey = note.vkey(KEY_NAME, log_key.public_key())
    log = make_log(entries, checkpoints, log_key, devices=devices)
    work = Path(tempfile.mkdtemp(prefix="sample-bag-"))
    try:
        timestamper = LocalTimestamper(work / "tsa") if timestamps else None
        files: dict[str, bytes] = {
            "entries.jsonl": b"".join(leaf + b"\n" for leaf in log.leaves),
            "keys/log.vkey": (vkey + "\n").encode(),
            "keys/device-keys.json": json.dumps(log.device_keys, indent=2, sort_keys=True).encode()
            + b"\n",
            "VERIFY.md": (REPO / "archive" / "verify" / "VERIFY.md").read_bytes(),
        }
        for size, text in log.notes.items():
            files[f"checkpoints/{size}.checkpoint"] = text.encode()
            if timestamper is not None:
                files[f"checkpoints/{size}.tsr"] = timestamper.timestamp(text.encode())
        for (old, new), text in log.proofs.items():
            files[f"checkpoints/consistency-{old}-{new}.txt"] = text.encode()
        if timestamper is not None:
            files["keys/tsa-ca.pem"] = timestamper.ca_cert.read_bytes()
        if printout_size is not None:
            files["printouts/journal-q2.pdf"] = make_printout(
                log,
                printout_size,
                vkey,
                timestamper=timestamper,
                log_key=log_key,
                described={
                    "document": "journal_quarter",
                    "school_year": "2026-2027",
                    "class_id": 7,
                    "class_name": "7Ә",
                    "quarter": 2,
                    "log": ORIGIN,
                    "first_seq": 0,
                    "checkpoint_size": printout_size,
                },
            )
        files.update(verifier_files())
        info = {
            "Bagging-Date": "2026-12-29",
            "External-Identifier": f"{KEY_NAME}/journal-2026-2027-class7-q2",
            "Source-Organization": "№ 7 мектеп",
            "Tier": "journal-5y",
            "School-Year": "2026-2027",
            "Class-Name": "7Ә",
            "Class-Id": "7",
            "Quarter": "2",
            "Log-Origin": ORIGIN,
            "Checkpoint-Size": str(max(checkpoints)),
            "Checkpoint-Root": base64.b64encode(
                note.parse_checkpoint(note.split_note(log.notes[max(checkpoints)])[0]).root_hash
            ).decode(),
        }
        if printout_size is not None:  # a bag without printouts (the benchmark's) says no kind
            info["Bag-Kind"] = "journal_quarter"
            info["Printouts"] = " ".join(sorted(n for n in files if n.startswith("printouts/")))
        build_bag(dest, files, info)
        if timestamper is not None:
            tagmanifest = (dest / "tagmanifest-sha512.txt").read_bytes()
            (dest / "tagmanifest-sha512.txt.tsr").write_bytes(timestamper.timestamp(tagmanifest))
        if sealed:
            seal.seal_bag(dest, KEY_NAME, log_key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return SampleBag(dest, vkey, KEY_NAME, log_key, ORIGIN, tuple(log.leaves))


def verifier_files() -> dict[str, bytes]:
    """``verify/``: the verifier and the ledger package, as the archive job copies them."""
    files = {
        f"verify/{path.name}": path.read_bytes()
        for path in sorted((REPO / "archive" / "verify").glob("*.py"))
    }
    files.update(
        {
            f"verify/ledger/{path.name}": path.read_bytes()
            for path in sorted((REPO / "journal" / "ledger").glob("*.py"))
        }
    )
    return files


def attacker_rewrites_manifests(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The bag as someone who changed payload files would leave it: manifests recomputed."""
    out = dict(files)
    payload = sorted(name for name in out if name.startswith("data/"))
    out["manifest-sha512.txt"] = "".join(
        f"{hashlib.sha512(out[name]).hexdigest()}  {name}\n" for name in payload
    ).encode()
    tags = ("bag-info.txt", "bagit.txt", "manifest-sha512.txt")
    out["tagmanifest-sha512.txt"] = "".join(
        f"{hashlib.sha512(out[name]).hexdigest()}  {name}\n" for name in tags
    ).encode()
    return out
