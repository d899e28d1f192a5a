"""Who signed a printout: the certificate the school registered in its ledger log, or one that
chains to a trust list the operator gives; nothing else, whatever names it bears.

The forgeries are what an audit built (issue 16): invented grades on the page, the genuine
printout's embedded records, checkpoint, proofs and keys copied in, signed with a self-made
certificate bearing the school's names. `journal-verify pdf` (the installed command, as an
inspector runs it) exits 1 for each and says why, and 0 for the genuine printout and extract.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from archive.registrar import FoundRecord, issue_extract
from exports import printouts, signing
from exports.documents import (
    JournalDocument,
    LedgerDocument,
    LedgerRow,
    LessonColumn,
    ProofBundle,
    StudentRow,
    SubjectSheet,
)
from exports.pdf import PdfSigner, extract_embedded_files, render_journal_pdf, render_ledger_pdf
from exports.queries import record_summary_ledger
from journal.keys import pdf_key_paths
from journal.ledger import merkle, note, tlogproof
from journal.ledger import signer as registrations
from journal.models import Entry
from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint, ensure_ledger_log, latest_checkpoint
from tests.archive.school import _pdf_signer
from tests.factories import NOW, add_user, build_world

JOURNAL_VERIFY = Path(sys.executable).parent / "journal-verify"
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def verify(path: Path, vkey: str, *trust: Path) -> subprocess.CompletedProcess[str]:
    command = [str(JOURNAL_VERIFY), "pdf", str(path), "--vkey", vkey]
    for root in trust:
        command += ["--trust", str(root)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def certificate(
    subject: x509.Name, key: Any, issuer: tuple[x509.Name, Any] | None = None, *, ca: bool = False
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def school_names(school: Any) -> x509.Name:
    """The names the school's own certificate bears (journal.keys.create_demo_pdf_signer)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, school.name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, school.domain),
        ]
    )


def pem_signer(key: Any, cert: x509.Certificate, *chain: x509.Certificate) -> PdfSigner:
    return PdfSigner(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        cert.public_bytes(PEM),
        tuple(c.public_bytes(PEM) for c in chain),
    )


def self_made(school: Any) -> PdfSigner:
    """A self-made CA and a certificate bearing the school's names."""
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{school.name} CA")])
    ca = certificate(ca_name, ca_key, ca=True)
    key = rsa.generate_private_key(65537, 2048)
    return pem_signer(key, certificate(school_names(school), key, (ca_name, ca_key)), ca)


def forge(
    genuine: bytes,
    signer: PdfSigner,
    *,
    replace: dict[str, bytes | None] | None = None,
    extract: bool = False,
) -> bytes:
    """Invented grades on the page; the genuine printout's embedded files (some replaced or
    dropped with ``replace``); signed by ``signer``."""
    files = extract_embedded_files(genuine)
    for name, data in (replace or {}).items():
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    checkpoint = note.parse_checkpoint(note.split_note(files["checkpoint"].decode())[0])
    proofs = tuple(
        (name, data.decode())
        for name, data in sorted(files.items())
        if name.endswith(".tlog-proof") and name != registrations.PROOF_FILE
    )
    kept = {"entries.jsonl", "checkpoint", "log.vkey", *(name for name, _ in proofs)}
    bundle = ProofBundle(
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        checkpoint_note=files["checkpoint"].decode(),
        vkey=files["log.vkey"].decode(),
        entries_jsonl=files["entries.jsonl"],
        tlog_proofs=proofs,
        extra_files=tuple((n, d) for n, d in sorted(files.items()) if n not in kept),
    )
    moment = dt.datetime.now(dt.UTC)
    if extract:
        forged_ledger = LedgerDocument(
            school_name="Forged",
            class_name="7Ә",
            school_year="2026-2027",
            subjects=("Математика",),
            rows=(LedgerRow("Өмірзақ Іңкәр", {"Математика": ("5", "5", "5", "5", "5")}),),
            proof=bundle,
            generated_at=moment,
            title="Выписка",
            charts=False,
        )
        return render_ledger_pdf(forged_ledger, signer)
    sheet = SubjectSheet(
        "Математика",
        "Forged",
        (LessonColumn(dt.date(2026, 11, 16), "Тақырып"),),
        (StudentRow("Өмірзақ Іңкәр", (("10",),), "100", "5"),),
    )
    forged = JournalDocument("Forged", "7Ә", "2026-2027", 2, moment, (sheet,), bundle)
    return render_journal_pdf(forged, signer)


@pytest.fixture
def school(world: Any, app: Any) -> Any:
    """The world's school with its PDF certificate and a few entries in quarter 2."""
    _pdf_signer(app.config["KEYS_DIR"], world.school.domain)
    for _ in range(3):
        record_entry(world.session, world.signed("grade"), now=NOW)
    cut_checkpoint(world.session, world.log, world.log_key)
    return world


def genuine_extract(session: Any, app: Any, world: Any) -> bytes:
    """A duplicate-certificate extract as the registrar issues it (records with their proofs)."""
    record_summary_ledger(session, world.class_group, world.log_key)
    ledger = ensure_ledger_log(session, world.school)
    checkpoint = latest_checkpoint(session, ledger)
    rows = session.scalars(
        sa.select(Entry).where(Entry.log_id == ledger.id).order_by(Entry.seq)
    ).all()
    tree = merkle.MerkleTree([row.leaf_hash for row in rows[: checkpoint.size]])
    import json

    records = [
        FoundRecord(
            "archive/ledger.tar",
            ledger.origin,
            world.school.name,
            row.seq,
            row.leaf,
            json.loads(row.leaf)["payload"],
            checkpoint.note,
            world.school.log_vkey,
            tlogproof.format_tlog_proof(tlogproof.make_tlog_proof(tree, row.seq, checkpoint.note)),
        )
        for row in rows
        if row.kind == "ledger_record"
    ]
    registrar = add_user(session, world.school, "registrar")
    return issue_extract(session, app.config, records, registrar=registrar)


def test_only_the_schools_registered_certificate_signs_for_it(
    school: Any, app: Any, session: Any, tmp_path: Path
) -> None:
    vkey = school.school.log_vkey
    journal = printouts.journal_pdf(session, app.config, school.class_group, 2)
    extract = genuine_extract(session, app, school)
    embedded = extract_embedded_files(journal)
    assert {registrations.RECORD_FILE, registrations.PROOF_FILE, "printout.json"} <= set(embedded)
    described = embedded["printout.json"].decode()
    assert '"document": "journal_quarter"' in described and '"quarter": 2' in described
    genuine = {"journal.pdf": journal, "extract.pdf": extract}
    for name, data in genuine.items():
        (tmp_path / name).write_bytes(data)
        done = verify(tmp_path / name, vkey)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "with the certificate the school registered in its ledger log" in done.stdout

    # Failure 1 of the issue: a self-made certificate with the school's names.
    impostor = self_made(school.school)
    forgeries = {
        "forged-journal.pdf": forge(journal, impostor),
        "forged-extract.pdf": forge(extract, impostor, extract=True),
        "forged-unregistered.pdf": forge(
            journal,
            impostor,
            replace={registrations.RECORD_FILE: None, registrations.PROOF_FILE: None},
        ),
    }
    for name, data in forgeries.items():
        (tmp_path / name).write_bytes(data)
        done = verify(tmp_path / name, vkey)
        assert done.returncode == 1, (name, done.stdout)
        assert "a certificate the school did not register in its ledger log" in done.stdout
        assert "anyone can make a certificate with the school's names" in done.stdout
        assert "RESULT: FAILED" in done.stdout
    assert (
        "embeds no registration of its signer"
        in verify(tmp_path / "forged-unregistered.pdf", vkey).stdout
    )
    assert "the school registered SHA-256" in verify(tmp_path / "forged-journal.pdf", vkey).stdout


def test_another_schools_registered_certificate_does_not_sign_for_this_one(
    school: Any, app: Any, session: Any, tmp_path: Path
) -> None:
    """One CA issues both schools' certificates (as a national CA would); the other school's
    certificate is registered, in its own ledger log, under its own key."""
    other = build_world(session, app.config["KEYS_DIR"])
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Shared CA (test)")])
    ca = certificate(ca_name, ca_key, ca=True)
    keys = {}
    for world in (school, other):
        key = rsa.generate_private_key(65537, 2048)
        cert = certificate(school_names(world.school), key, (ca_name, ca_key))
        keys[world.school.domain] = pem_signer(key, cert, ca)
        key_path, cert_path, chain_path = pdf_key_paths(app.config["KEYS_DIR"], world.school.domain)
        key_path.write_bytes(keys[world.school.domain].key_pem)
        cert_path.write_bytes(keys[world.school.domain].cert_pem)
        chain_path.write_bytes(ca.public_bytes(PEM))
    journal = printouts.journal_pdf(session, app.config, school.class_group, 2)
    other_signer = keys[other.school.domain]
    other_anchor = signing.signer_anchor(session, other.school, other.log_key, other_signer)
    vkey = school.school.log_vkey
    cases = {
        "with-this-schools-registration.pdf": (
            forge(journal, other_signer),
            "the school registered SHA-256",
        ),
        "with-the-other-schools-registration.pdf": (
            forge(journal, other_signer, replace=dict(other_anchor.files)),
            f"belongs to the log '{other.school.domain}/ledger', not to the school's ledger log",
        ),
    }
    assert verify_written(tmp_path, "genuine.pdf", journal, vkey).returncode == 0
    for name, (data, why) in cases.items():
        done = verify_written(tmp_path, name, data, vkey)
        assert done.returncode == 1 and why in done.stdout, (name, done.stdout)
    # Verified with the other school's key, its own registration does hold: the check is the key.
    as_other = forge(journal, other_signer, replace=dict(other_anchor.files))
    done = verify_written(tmp_path, "as-the-other.pdf", as_other, other.school.log_vkey)
    assert "the certificate the school registered" in done.stdout


def verify_written(tmp_path: Path, name: str, data: bytes, vkey: str, *trust: Path) -> Any:
    (tmp_path / name).write_bytes(data)
    return verify(tmp_path / name, vkey, *trust)


def test_a_registration_whose_period_is_over_does_not_sign(
    school: Any, app: Any, session: Any, tmp_path: Path
) -> None:
    genuine = printouts.journal_pdf(session, app.config, school.class_group, 2)
    signer = signing.school_signer(app.config, school.school)
    yesterday = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    retired = signing.register_signer(
        session, school.school, school.log_key, signer, valid_until=yesterday
    )
    with pytest.raises(signing.SignerError, match="registered to sign from"):
        printouts.journal_pdf(session, app.config, school.class_group, 2)  # the app refuses
    files = signing.anchor_files(session, school.school, school.log_key, retired)
    late = forge(genuine, signer, replace=dict(files))  # the old key, used after its period
    done = verify_written(tmp_path, "late.pdf", late, school.school.log_vkey)
    assert done.returncode == 1, done.stdout
    assert "outside the period its certificate is registered for" in done.stdout
    assert "the school did not let this certificate sign then" in done.stdout


def test_pkcs12_from_a_national_ca_signs_and_its_root_is_a_trust_list(
    school: Any, app: Any, session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-made CA stands in for the national certificate authority (НУЦ РК): the school's
    key arrives as a PKCS#12 file with a passphrase, and pyHanko signs with it."""
    root_key = rsa.generate_private_key(65537, 3072)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ҰКО РК test root")])
    root = certificate(root_name, root_key, ca=True)
    key = rsa.generate_private_key(65537, 3072)
    cert = certificate(school_names(school.school), key, (root_name, root_key))
    p12 = pkcs12.serialize_key_and_certificates(
        b"school", key, cert, [root], serialization.BestAvailableEncryption(b"s3cret")
    )
    signing.pkcs12_path(app.config["KEYS_DIR"], school.school.domain).write_bytes(p12)
    roots = tmp_path / "national-roots.pem"
    roots.write_bytes(root.public_bytes(PEM))
    vkey = school.school.log_vkey

    monkeypatch.setitem(app.config, "PDF_SIGNER_PASSPHRASE", "wrong")
    with pytest.raises(signing.SignerError, match="PDF_SIGNER_PASSPHRASE"):
        printouts.journal_pdf(session, app.config, school.class_group, 2)
    monkeypatch.setitem(app.config, "PDF_SIGNER_PASSPHRASE", "s3cret")
    journal = printouts.journal_pdf(session, app.config, school.class_group, 2)
    done = verify_written(tmp_path, "p12.pdf", journal, vkey)
    assert done.returncode == 0, done.stdout
    registered = registrations.certificate_sha256(cert.public_bytes(DER))
    assert f"SHA-256 {registered[:16]}" in done.stdout

    # Without its registration the same signature counts only with the operator's trust list.
    bare = forge(
        journal,
        signing.school_signer(app.config, school.school),
        replace={registrations.RECORD_FILE: None, registrations.PROOF_FILE: None},
    )
    assert verify_written(tmp_path, "bare.pdf", bare, vkey).returncode == 1
    trusted = verify(tmp_path / "bare.pdf", vkey, roots)
    assert trusted.returncode == 0, trusted.stdout
    assert "chains to CN=ҰКО РК test root, a root of the trust list given (--trust)" in (
        trusted.stdout
    )
    # The self-made certificate with the school's names is not rescued by the trust list.
    forged = forge(journal, self_made(school.school))
    assert verify_written(tmp_path, "forged.pdf", forged, vkey, roots).returncode == 1
