"""PDF signer registrations: the school ledger record that anchors a document-signing certificate
to the school's published log key.

A PDF signature says only that *someone holding this certificate's key* signed. Who may sign for
the school is said by the school's log key: a ``pdf_signer_registered`` record in the school
ledger log (origin ``<school domain>/ledger``) names the certificate by its SHA-256 and the
period it may sign in. Every printout embeds that record (``signer.jsonl``, the leaf) with its
inclusion proof (``signer.tlog-proof``, C2SP tlog-proof against a checkpoint signed by the log
key), so a verifier holding only the school's vkey can tell the school's certificate from a
self-made one bearing the school's names.

Payload fields, besides the common ones every ledger record has (DESIGN §5, ``docs/formats.md``)::

    "certificate": {"sha256": "<hex of the DER certificate>", "subject": "<RFC 4514>",
                    "issuer": "<RFC 4514>", "serial": "<hex>",
                    "not_before": "<RFC 3339>", "not_after": "<RFC 3339>"},
    "chain_sha256": ["<hex>", ...],          the issuing certificates, signer's issuer first
    "valid_from": "<RFC 3339>", "valid_until": "<RFC 3339>"

A signature counts for the school only when its signing time lies in [valid_from, valid_until].

Standard library and ``cryptography`` only: this folder is copied into every archive bag.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from . import merkle, note, tlogproof
from .entry import (
    PayloadError,
    format_timestamp,
    key_id,
    parse_leaf,
    parse_timestamp,
    public_key_bytes,
    verify_payload,
)

KIND = "pdf_signer_registered"
RECORD_FILE = "signer.jsonl"
PROOF_FILE = "signer.tlog-proof"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class RegistrationError(ValueError):
    """An embedded registration that does not hold: the message says why."""


@dataclass(frozen=True)
class Registration:
    """A verified registration: which certificate may sign for the school, and when."""

    sha256: str
    subject: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    seq: int
    checkpoint: note.Checkpoint

    def covers(self, moment: dt.datetime) -> bool:
        return self.valid_from <= moment <= self.valid_until


def certificate_sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _moment(value: dt.datetime) -> str:
    return format_timestamp(value.astimezone(dt.UTC).replace(microsecond=0))


def registration_fields(
    certificate_der: bytes,
    chain_der: Sequence[bytes] = (),
    *,
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
) -> dict[str, Any]:
    """The record's own fields for a certificate; the period defaults to its validity."""
    cert = x509.load_der_x509_certificate(certificate_der)
    return {
        "certificate": {
            "sha256": certificate_sha256(certificate_der),
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": _moment(cert.not_valid_before_utc),
            "not_after": _moment(cert.not_valid_after_utc),
        },
        "chain_sha256": [certificate_sha256(der) for der in chain_der],
        "valid_from": _moment(valid_from or cert.not_valid_before_utc),
        "valid_until": _moment(valid_until or cert.not_valid_after_utc),
    }


def ledger_origin(verifier: note.Verifier) -> str:
    """The school ledger log's origin: the log key's name is the school's domain."""
    return f"{verifier.name}/ledger"


def verify_registration(leaf: bytes, proof: bytes | str, verifier: note.Verifier) -> Registration:
    """Check an embedded registration against the school's key; RegistrationError says why not.

    The leaf must be a canonical ``pdf_signer_registered`` record of the school's ledger log,
    signed by the school's log key itself, and proven by ``proof`` to be in a checkpoint of that
    log signed by the same key.
    """
    if leaf.endswith(b"\n") and not leaf.endswith(b"\n\n"):
        leaf = leaf[:-1]  # one line of a .jsonl file
    try:
        record = parse_leaf(leaf)
    except (PayloadError, ValueError, KeyError) as exc:
        raise RegistrationError(f"is not a log record: {exc}") from None
    payload = record.payload
    origin = ledger_origin(verifier)
    if payload.get("kind") != KIND:
        raise RegistrationError(
            f"is a {payload.get('kind')!r} record, not a PDF signer registration"
        )
    if payload.get("journal") != origin:
        raise RegistrationError(
            f"belongs to the log {payload.get('journal')!r}, not to the school's ledger log "
            f"{origin}"
        )
    raw = public_key_bytes(verifier.public_key)[1]
    if record.alg != "ed25519" or record.kid != key_id("ed25519", raw):
        raise RegistrationError("is not signed by the school's log key")
    if not verify_payload("ed25519", raw, record.payload_bytes, record.sig):
        raise RegistrationError("has a signature that does not verify with the school's log key")
    try:
        checkpoint = tlogproof.verify_tlog_proof(leaf, proof, verifier, origin)
        index = tlogproof.parse_tlog_proof(proof).index
    except merkle.ProofError as exc:
        raise RegistrationError(f"is not proven in the school's ledger log: {exc}") from None
    if index != record.seq:
        raise RegistrationError(f"says seq {record.seq}, its proof is for entry {index}")
    try:
        certificate = payload["certificate"]
        sha256 = str(certificate["sha256"])  # type: ignore[index]
        subject = str(certificate["subject"])  # type: ignore[index]
        valid_from = parse_timestamp(str(payload["valid_from"]))
        valid_until = parse_timestamp(str(payload["valid_until"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistrationError(f"lacks a field or has a bad one: {exc}") from None
    if not _SHA256_HEX.fullmatch(sha256):
        raise RegistrationError("does not name a certificate by its SHA-256")
    return Registration(sha256, subject, valid_from, valid_until, record.seq, checkpoint)
