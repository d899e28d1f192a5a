"""The school's PDF signer and its anchor in the school ledger log.

A printout's signature proves only that someone holding the certificate's key signed it. What
makes the certificate the *school's* is a ``pdf_signer_registered`` record in the school ledger
log, signed by the school's published log key (``journal/ledger/signer.py``). Every printout and
extract embeds that record (``signer.jsonl``) and its inclusion proof (``signer.tlog-proof``, with
a ledger checkpoint signed by the log key), so ``journal-verify pdf --vkey`` can tell the school's
certificate from a self-made one with the school's names.

The signer comes from ``KEYS_DIR``: ``<domain>.pdf-signer.p12`` (a PKCS#12 file, e.g. issued by the
national certificate authority; its passphrase in ``PDF_SIGNER_PASSPHRASE``), else the PEM files
``<domain>.pdf-key.pem``, ``.pdf-cert.pem`` and ``.pdf-chain.pem``. The first printout signed with
a certificate registers it (the period defaults to the certificate's validity); ``flask --app
wsgi export signer`` shows the registration, registers ahead of time, or ends a certificate's
period early (``--until``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from journal.db import utcnow
from journal.keys import LogKey, load_log_key, load_pdf_signer
from journal.ledger import signer as registrations
from journal.ledger import tlogproof
from journal.models import Entry, School
from journal.services import (
    append_ledger_record,
    cut_checkpoint,
    ensure_ledger_log,
    latest_checkpoint,
    leaf_hashes,
)

from .pdf import PdfSigner

PRINTOUT_FILE = "printout.json"  # what the printout is: kind, class, period, log range


class SignerError(LookupError):
    """The school's PDF signer cannot be used (the message says why)."""


def pkcs12_path(keys_dir: str | Path, domain: str) -> Path:
    return Path(keys_dir) / f"{domain}.pdf-signer.p12"


def school_signer(config: Mapping[str, Any], school: School) -> PdfSigner:
    """The school's signer from KEYS_DIR: its PKCS#12 file when there is one, else PEM files."""
    p12 = pkcs12_path(config["KEYS_DIR"], school.domain)
    if p12.is_file():
        passphrase = config.get("PDF_SIGNER_PASSPHRASE")
        return PdfSigner(
            key_pem=b"",
            cert_pem=b"",
            location=school.name,
            pkcs12=p12.read_bytes(),
            pkcs12_passphrase=str(passphrase).encode() if passphrase else None,
        )
    files = load_pdf_signer(config["KEYS_DIR"], school.domain)
    return PdfSigner(
        key_pem=files.key_pem,
        cert_pem=files.cert_pem,
        chain_pem=files.chain_pem,
        location=school.name,
    )


def signer_certificates(signer: PdfSigner) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The signing certificate and the certificates that issued it (signer's issuer first)."""
    if signer.pkcs12:
        from cryptography.hazmat.primitives.serialization import pkcs12

        try:
            _key, cert, others = pkcs12.load_key_and_certificates(
                signer.pkcs12, signer.pkcs12_passphrase
            )
        except ValueError as exc:
            raise SignerError(
                f"the PKCS#12 file cannot be opened (is PDF_SIGNER_PASSPHRASE right?): {exc}"
            ) from None
        if cert is None:
            raise SignerError("the PKCS#12 file holds no certificate")
        pool = [*others, *(c for pem in signer.chain_pem for c in _pems(pem))]
    else:
        cert = x509.load_pem_x509_certificate(signer.cert_pem)
        pool = [c for pem in signer.chain_pem for c in _pems(pem)]
    return cert, _issuers(cert, pool)


def _pems(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def _issuers(cert: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """The chain above ``cert`` in issuing order, as far as ``pool`` goes."""
    chain: list[x509.Certificate] = []
    current = cert
    while current.issuer != current.subject and len(chain) < 8:
        issuer = next((c for c in pool if c.subject == current.issuer and c not in chain), None)
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    return chain


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def chain_pem(signer: PdfSigner) -> tuple[bytes, bytes]:
    """``(signer certificate PEM, issuing certificates PEM)``: what a bag carries in data/keys/
    so an inspector can build the NSS database ``pdfsig -nssdir`` needs."""
    cert, chain = signer_certificates(signer)
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), b"".join(c.public_bytes(pem) for c in chain)


# -- the registration ------------------------------------------------------------------------


def _cell(sha256: str) -> str:
    return f"pdf-signer:{sha256}"


def latest_registration(session: Session, school: School, sha256: str) -> Entry | None:
    """The newest registration of this certificate in the school ledger log (a later one may
    end its period early)."""
    ledger = ensure_ledger_log(session, school)
    return session.scalar(
        select(Entry)
        .where(
            Entry.log_id == ledger.id,
            Entry.kind == registrations.KIND,
            Entry.cell == _cell(sha256),
        )
        .order_by(Entry.seq.desc())
        .limit(1)
    )


def register_signer(
    session: Session,
    school: School,
    log_key: LogKey,
    signer: PdfSigner,
    *,
    valid_until: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Entry:
    """Record the signer's certificate in the school ledger log and checkpoint the log. Flushes.

    ``valid_until`` ends the certificate's period before the certificate itself expires (a key
    taken out of use); a new registration supersedes the earlier ones of the same certificate.
    """
    cert, chain = signer_certificates(signer)
    fields = registrations.registration_fields(
        _der(cert), [_der(c) for c in chain], valid_until=valid_until
    )
    sha256 = fields["certificate"]["sha256"]
    append_ledger_record(
        session, school, log_key, registrations.KIND, fields, now=now, cell=_cell(sha256)
    )
    cut_checkpoint(session, ensure_ledger_log(session, school), log_key, now=now)
    entry = latest_registration(session, school, sha256)
    assert entry is not None
    return entry


@dataclass(frozen=True)
class Anchor:
    """The registration of the signer and its proof: the files every printout embeds."""

    registration: Entry
    files: tuple[tuple[str, bytes], ...]
    valid_until: dt.datetime


def signer_anchor(
    session: Session,
    school: School,
    log_key: LogKey,
    signer: PdfSigner,
    *,
    now: dt.datetime | None = None,
) -> Anchor:
    """The signer's registration (made now if there is none) with its inclusion proof against
    the latest ledger checkpoint. Refuses (SignerError) a certificate whose registered period
    is over or has not begun: a printout signed then would not verify."""
    now = now or utcnow()
    cert, _chain = signer_certificates(signer)
    sha256 = registrations.certificate_sha256(_der(cert))
    entry = latest_registration(session, school, sha256)
    if entry is None:
        entry = register_signer(session, school, log_key, signer, now=now)
    payload = json.loads(entry.leaf)["payload"]
    valid_from = dt.datetime.fromisoformat(payload["valid_from"].replace("Z", "+00:00"))
    valid_until = dt.datetime.fromisoformat(payload["valid_until"].replace("Z", "+00:00"))
    if not valid_from <= now <= valid_until:
        raise SignerError(
            f"the school's PDF certificate (SHA-256 {sha256[:16]}…) is registered to sign from "
            f"{payload['valid_from']} to {payload['valid_until']}, not now: install and register "
            "a new one"
        )
    return Anchor(entry, anchor_files(session, school, log_key, entry, now=now), valid_until)


def anchor_files(
    session: Session,
    school: School,
    log_key: LogKey,
    registration: Entry,
    *,
    now: dt.datetime | None = None,
) -> tuple[tuple[str, bytes], ...]:
    """``signer.jsonl`` and ``signer.tlog-proof``: the registration's leaf and its inclusion
    proof against the latest ledger checkpoint (cut now when none covers it yet)."""
    ledger = ensure_ledger_log(session, school)
    checkpoint = latest_checkpoint(session, ledger)
    if checkpoint is None or checkpoint.size <= registration.seq:
        checkpoint = cut_checkpoint(session, ledger, log_key, now=now)
    proof = tlogproof.make_tlog_proof(
        leaf_hashes(session, ledger, checkpoint.size), registration.seq, checkpoint.note
    )
    return (
        (registrations.RECORD_FILE, registration.leaf + b"\n"),
        (registrations.PROOF_FILE, tlogproof.format_tlog_proof(proof).encode()),
    )


def anchor_for(
    session: Session, config: Mapping[str, Any], school: School
) -> tuple[PdfSigner, Anchor]:
    """The school's signer and its anchor, the log key read from KEYS_DIR."""
    signer = school_signer(config, school)
    log_key = load_log_key(config["KEYS_DIR"], school.domain)
    if school.log_vkey != log_key.vkey:
        raise SignerError(f"the log key in KEYS_DIR is not {school.domain}'s published key")
    return signer, signer_anchor(session, school, log_key, signer)


def printout_file(description: Mapping[str, Any]) -> tuple[str, bytes]:
    """``printout.json``: what the printout is, for a verifier to bind it to a bag's class and
    period (sorted keys, UTF-8)."""
    return PRINTOUT_FILE, json.dumps(
        dict(description), sort_keys=True, ensure_ascii=False, indent=1
    ).encode() + b"\n"
