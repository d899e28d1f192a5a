"""Duplicate certificates from the archive alone (DESIGN §2, issue 7).

Years later the live database may hold nothing of a former student: the registrar searches the
archived summary-ledger bags (25-year tier) for the student's ledger records, proves each one
against its bag's signed checkpoint with a C2SP tlog-proof, and issues a signed extract that
carries those proofs. The issuance itself is recorded in the school ledger log.

The certificate register (journal/certificates): a certificate recorded when issued
(``certificate_issued``) is found in the archive like the ledger records; a duplicate
(:func:`issue_duplicate`) gets its own number and the reason, links to the original record, and
is itself recorded (``certificate_duplicate``), so a later registrar sees it
(:func:`register_payloads`).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import policy
from auth.models import User
from exports.documents import LedgerDocument, LedgerRow, ProofBundle
from exports.pdf import render_ledger_pdf
from exports.printouts import pdf_timestamper, with_files
from exports.signing import anchor_for, printout_file
from journal.certificates.register import (
    CERTIFICATE_KINDS,
    CertificateError,
    duplicate_fields,
    year_lines,
)
from journal.db import utcnow
from journal.keys import load_log_key
from journal.ledger import merkle, note, tlogproof
from journal.ledger.audit import device_keys_from_document, verify_log
from journal.models import Entry, Log, School
from journal.services import append_ledger_record

from .storage import ArchiveStorage, fetch_bag


class RegistrarError(LookupError):
    pass


RECORD_KINDS = ("ledger_record", *CERTIFICATE_KINDS)


@dataclass(frozen=True)
class FoundRecord:
    """One summary-ledger record of a student, proven against its bag's last checkpoint."""

    bag_key: str
    origin: str
    school_name: str
    seq: int
    leaf: bytes
    payload: Mapping[str, Any]
    checkpoint_note: str
    vkey: str
    tlog_proof: str

    @property
    def student(self) -> Mapping[str, Any]:
        value: Mapping[str, Any] = self.payload["student"]
        return value

    @property
    def kind(self) -> str:
        return str(self.payload["kind"])

    @property
    def school_year(self) -> str:
        if self.kind == "ledger_record":
            return str(self.payload["school_year"])
        return ", ".join(self.payload.get("school_years", []))

    @property
    def class_name(self) -> str:
        if self.kind == "ledger_record":
            return str(self.payload["class"]["name"])
        return ""


@dataclass(frozen=True)
class Query:
    """By IIN (its keyed hash), or by last name, first name and birth date."""

    iin_hmac: str | None = None  # base64, as in the records
    last_name: str | None = None
    first_name: str | None = None
    birth_date: dt.date | None = None
    match_all: bool = False  # the register listing: every pupil

    def matches(self, student: Mapping[str, Any]) -> bool:
        if self.match_all:
            return True
        if self.iin_hmac is not None:
            return bool(student.get("iin_hmac")) and student.get("iin_hmac") == self.iin_hmac
        if not (self.last_name and self.first_name and self.birth_date):
            return False
        return (
            str(student.get("last_name", "")).casefold() == self.last_name.strip().casefold()
            and str(student.get("first_name", "")).casefold() == self.first_name.strip().casefold()
            and student.get("birth_date") == self.birth_date.isoformat()
        )


def ledger_bag_keys(storage: ArchiveStorage, prefixes: list[str] | None = None) -> Iterator[str]:
    """The ledger bags under each prefix (``<school-domain>/``), or all of them (None)."""
    for prefix in [""] if prefixes is None else prefixes:
        for stored in storage.list(prefix):
            name = stored.key.rsplit("/", 1)[-1]
            if name.startswith("ledger-") and name.endswith(".tar"):
                yield stored.key


def find_records(
    storage: ArchiveStorage,
    query: Query,
    *,
    trusted_vkeys: set[str],
    prefixes: list[str] | None = None,
    pinned: Mapping[str, str | None] | None = None,
    kinds: tuple[str, ...] = ("ledger_record",),
) -> list[FoundRecord]:
    """Search the archived ledger bags under ``prefixes`` (None: every bag). A bag counts only
    when it verifies against a school key the registrar trusts (``trusted_vkeys``): a bag's own
    key file proves nothing.

    ``pinned`` maps the keys of ledger bags this server sealed to the version it wrote: those are
    read by that version, even when another version was put on top or a delete marker hides them.
    Other ledger bags in the store (sealed by a server whose database is gone) are read as found.
    """
    pinned = {
        key: version
        for key, version in (pinned or {}).items()
        if prefixes is None or any(key.startswith(prefix) for prefix in prefixes)
    }
    found: list[FoundRecord] = []
    for key in sorted(set(ledger_bag_keys(storage, prefixes)) | set(pinned)):
        with tempfile.TemporaryDirectory() as tmp:
            bag_dir = fetch_bag(storage, key, Path(tmp), pinned.get(key))  # BagIt-validated
            found.extend(_records_in_bag(key, bag_dir, query, trusted_vkeys, kinds))
    found.sort(key=lambda r: (r.school_year, r.origin, r.seq))
    return found


def _records_in_bag(
    key: str,
    bag_dir: Path,
    query: Query,
    trusted_vkeys: set[str],
    kinds: tuple[str, ...] = ("ledger_record",),
) -> list[FoundRecord]:
    data = bag_dir / "data"
    vkey = (data / "keys" / "log.vkey").read_text().strip()
    if vkey not in trusted_vkeys:
        raise RegistrarError(f"{key} is signed with a key that is not a trusted school key")
    verifier = note.parse_vkey(vkey)
    leaves = (data / "entries.jsonl").read_bytes().splitlines()
    notes = [p.read_text() for p in sorted((data / "checkpoints").glob("*.checkpoint"))]
    if not notes:
        raise RegistrarError(f"{key} holds no checkpoint")
    latest = max((note.verify_checkpoint(n, verifier) for n in notes), key=lambda c: c.size)
    latest_note = next(
        n for n in notes if note.parse_checkpoint(n.split("\n\n")[0] + "\n") == latest
    )
    keys = device_keys_from_document(json.loads((data / "keys" / "device-keys.json").read_text()))
    report = verify_log(leaves[: latest.size], keys, notes, verifier, latest.origin)
    if not report.ok:
        raise RegistrarError(f"{key} does not verify: {report.summary()}")
    school_name = _bag_info(bag_dir).get("Source-Organization", "")
    tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in leaves[: latest.size]])
    found = []
    for seq, leaf in enumerate(leaves[: latest.size]):
        if not any(f'"{kind}"'.encode() in leaf for kind in kinds):
            continue
        payload = json.loads(leaf)["payload"]
        if payload.get("kind") not in kinds or not query.matches(payload["student"]):
            continue
        proof = tlogproof.format_tlog_proof(tlogproof.make_tlog_proof(tree, seq, latest_note))
        found.append(
            FoundRecord(
                key, latest.origin, school_name, seq, leaf, payload, latest_note, vkey, proof
            )
        )
    return found


def _bag_info(bag_dir: Path) -> dict[str, str]:
    info = {}
    for line in (bag_dir / "bag-info.txt").read_text().splitlines():
        if ":" in line and not line.startswith((" ", "\t")):
            label, value = line.split(":", 1)
            info[label.strip()] = value.strip()
    return info


# The extract's own words, in the language it is issued in (its tables take the printouts'
# labels, exports.pdf.LABELS).
_EXTRACT_TEXT: dict[str, dict[str, str]] = {
    "kk": {
        "extract": "Білім туралы құжат телнұсқасына үзінді көшірме",
        "duplicate": "Аттестат телнұсқасы",
        "final": "қорытынды бағалар",
    },
    "ru": {
        "extract": "Выписка для дубликата документа об образовании",
        "duplicate": "Дубликат аттестата",
        "final": "итоговые оценки",
    },
}


def extract_document(
    records: list[FoundRecord],
    *,
    generated_at: dt.datetime,
    certificate: Mapping[str, Any] | None = None,
    language: str = "kk",
) -> LedgerDocument:
    """The extract: ONE line per school year found (a pupil who changed class in a year has one
    line, see ``year_lines``), and, for a certificate, a line of its final grades; the proofs of
    every record used. ``language``: "kk" or "ru" (PRINTOUT_LANGUAGES)."""
    if language not in _EXTRACT_TEXT:
        raise RegistrarError(f"an extract is issued in {' or '.join(_EXTRACT_TEXT)}")
    text = _EXTRACT_TEXT[language]
    ledger = [r for r in records if r.kind == "ledger_record"]
    if not ledger:
        raise RegistrarError("no records to issue")
    first = ledger[0]
    if len({r.origin for r in records}) != 1:
        raise RegistrarError("records from several schools: issue one extract per school")
    student = first.student
    name = " ".join(
        str(part)
        for part in (student["last_name"], student["first_name"], student.get("patronymic"))
        if part
    )
    lines = year_lines(r.payload for r in ledger)
    subjects: list[str] = []
    widths: dict[str, int] = {}
    rows = []
    for line in lines:
        subjects.extend(s for s in line.grades if s not in subjects)
        for subject, values in line.grades.items():
            widths[subject] = max(widths.get(subject, 0), len(values))
        rows.append(
            LedgerRow(
                student_name=f"{name}, {line.school_year} ({' → '.join(line.class_names)})",
                grades=line.grades,  # type: ignore[arg-type]
                absences_total=line.absences_total,
                absences_sick=line.absences_sick,
            )
        )
    title = f"{text['extract']} · {name}, {student['birth_date']}"
    if certificate is not None:
        number = certificate["certificate"]
        label = f"{number['series']} № {number['number']} ({number['issued_on']})"
        final = {
            subject: (*([""] * (widths.get(subject, 5) - 1)), str(grade))
            for subject, grade in certificate["grades"].items()
        }
        subjects.extend(s for s in final if s not in subjects)
        rows.append(
            LedgerRow(
                student_name=f"{name}: {text['final']}, {label}",
                grades=final,  # type: ignore[arg-type]
                absences_total=0,
                absences_sick=0,
            )
        )
        title = f"{text['duplicate']} {label} · {name}, {student['birth_date']}"
    latest = note.parse_checkpoint(first.checkpoint_note.split("\n\n")[0] + "\n")
    proof = ProofBundle(
        origin=first.origin,
        tree_size=latest.size,
        root_hash=latest.root_hash,
        checkpoint_note=first.checkpoint_note,
        vkey=first.vkey,
        entries_jsonl=b"".join(r.leaf + b"\n" for r in records),
        tlog_proofs=tuple((f"{r.seq}{tlogproof.FILE_EXTENSION}", r.tlog_proof) for r in records),
    )
    return LedgerDocument(
        school_name=first.school_name,
        class_name=lines[-1].class_names[-1],
        school_year=", ".join(line.school_year for line in lines),
        subjects=tuple(subjects),
        rows=tuple(rows),
        proof=proof,
        generated_at=generated_at,
        title=title,
        charts=False,
    )


def _school_for(session: Session, records: list[FoundRecord], registrar: User) -> School:
    domain = records[0].origin.split("/", 1)[0] if records else ""
    school = session.scalar(select(School).where(School.domain == domain))
    if school is None:
        raise RegistrarError(
            f"the school {domain} is not registered on this server: restore it first"
        )
    if not policy.can_issue_extract(registrar, school.id):
        raise RegistrarError(f"you are not a registrar of {domain}")
    return school


def _render_extract(
    session: Session,
    config: Mapping[str, Any],
    school: School,
    document: LedgerDocument,
    records: list[FoundRecord],
    kind: str,
    language: str,
) -> bytes:
    signer, anchor = anchor_for(session, config, school)  # who may sign for the school
    assert document.proof is not None
    described = printout_file(
        {
            "document": kind,
            "school_years": sorted({r.school_year for r in records if r.kind == "ledger_record"}),
            "log": document.proof.origin,
            "records": [r.seq for r in records],
            "checkpoint_size": document.proof.tree_size,
        }
    )
    proof = with_files(document.proof, *anchor.files, described)
    return render_ledger_pdf(
        replace(document, proof=proof), signer, pdf_timestamper(config), language=language
    )


def issue_extract(
    session: Session,
    config: Mapping[str, Any],
    records: list[FoundRecord],
    *,
    registrar: User,
    now: dt.datetime | None = None,
    language: str = "kk",
) -> bytes:
    """Render and sign the extract in ``language`` ("kk" or "ru"), and record the issuance in
    the school ledger log."""
    now = now or utcnow()
    records = [r for r in records if r.kind == "ledger_record"]
    school = _school_for(session, records, registrar)
    document = extract_document(records, generated_at=now, language=language)
    data = _render_extract(
        session, config, school, document, records, "duplicate_extract", language
    )
    append_ledger_record(
        session,
        school,
        load_log_key(config["KEYS_DIR"], school.domain),
        "duplicate_issued",
        {
            "issued_by": registrar.id,
            "student": {
                "last_name": records[0].student["last_name"],
                "first_name": records[0].student["first_name"],
                "birth_date": records[0].student["birth_date"],
            },
            "records": [{"bag": r.bag_key, "origin": r.origin, "seq": r.seq} for r in records],
        },
        now=now,
    )
    return data


@dataclass(frozen=True)
class DuplicateRequest:
    """What the registrar types: the duplicate's own series, number and date, and the reason."""

    series: str
    number: str
    issued_on: dt.date
    reason: str


def original_certificate(records: list[FoundRecord]) -> FoundRecord:
    """The pupil's recorded certificate among the records found (the latest one issued)."""
    originals = [r for r in records if r.kind == "certificate_issued"]
    if not originals:
        raise RegistrarError("no certificate of this pupil is recorded in the archive")
    return max(originals, key=lambda r: (r.payload["certificate"]["issued_on"], r.seq))


def issue_duplicate(
    session: Session,
    config: Mapping[str, Any],
    records: list[FoundRecord],
    request: DuplicateRequest,
    *,
    registrar: User,
    now: dt.datetime | None = None,
    language: str = "kk",
) -> tuple[bytes, dict[str, Any]]:
    """A duplicate certificate from the archive alone: ``records`` are the pupil's archived
    ledger and certificate records (``find_records(..., kinds=RECORD_KINDS)``). Records a
    signed ``certificate_duplicate`` in the school ledger log (its own number, the reason, a
    link to the original record) and returns the signed extract (in ``language``, "kk" or
    "ru") and the record's fields. Flushes; writes nothing when refused."""
    now = now or utcnow()
    school = _school_for(session, records, registrar)
    original = original_certificate(records)
    try:
        fields = duplicate_fields(
            original.payload,
            origin=original.origin,
            seq=original.seq,
            leaf=original.leaf,
            series=request.series,
            number=request.number,
            issued_on=request.issued_on,
            reason=request.reason,
        )
    except CertificateError as exc:
        raise RegistrarError(str(exc)) from None
    taken = {
        (p["certificate"]["series"], p["certificate"]["number"])
        for p in register_payloads(session, school, records)
    }
    if (fields["certificate"]["series"], fields["certificate"]["number"]) in taken:
        raise RegistrarError("this series and number are already in the certificate register")
    covered = set(original.payload.get("school_years", []))  # grades 5–9, or 10–11
    used = [r for r in records if r.kind == "ledger_record" and r.school_year in covered]
    used.append(original)
    document = extract_document(used, generated_at=now, certificate=fields, language=language)
    data = _render_extract(
        session, config, school, document, used, "certificate_duplicate", language
    )
    append_ledger_record(
        session,
        school,
        load_log_key(config["KEYS_DIR"], school.domain),
        "certificate_duplicate",
        {**fields, "issued_by": registrar.id},
        now=now,
    )
    return data, fields


def register_payloads(
    session: Session, school: School, archived: list[FoundRecord]
) -> list[dict[str, Any]]:
    """The certificate register of a school: the certificate records found in its archive and
    those in its live ledger log (issued since its last ledger bag), each once, in order."""
    seen: set[bytes] = set()
    payloads: list[dict[str, Any]] = []
    for record in archived:
        if record.kind in CERTIFICATE_KINDS and record.leaf not in seen:
            seen.add(record.leaf)
            payloads.append(dict(record.payload))
    log = session.scalar(select(Log).where(Log.school_id == school.id, Log.kind == "ledger"))
    if log is not None:
        for leaf in session.scalars(
            select(Entry.leaf)
            .where(Entry.log_id == log.id, Entry.kind.in_(CERTIFICATE_KINDS))
            .order_by(Entry.seq)
        ):
            if leaf not in seen:
                seen.add(leaf)
                payloads.append(json.loads(leaf)["payload"])
    return payloads


def registrar_scope(
    session: Session, config: Mapping[str, Any], user: User
) -> tuple[set[str], list[str] | None]:
    """The school keys a registrar trusts and the archive prefixes they search: their own
    schools' (``policy.registrar_schools``); every school's, and the keys configured for
    schools whose live data is gone (ARCHIVE_TRUSTED_VKEYS), for a registrar of a region."""
    school_ids = policy.registrar_schools(user)
    if school_ids is None:
        keys = {vkey for vkey in session.scalars(select(School.log_vkey)) if vkey}
        keys.update(config.get("ARCHIVE_TRUSTED_VKEYS") or ())
        return keys, None
    schools = session.scalars(select(School).where(School.id.in_(school_ids))).all()
    return {s.log_vkey for s in schools if s.log_vkey}, [f"{s.domain}/" for s in schools]


def pinned_ledger_bags(session: Session) -> dict[str, str | None]:
    """The ledger bags this server sealed, by key, with the version it wrote (read that one)."""
    from .models import ArchivedBag

    rows = session.execute(
        select(ArchivedBag.key, ArchivedBag.version_id).where(
            ArchivedBag.kind == "ledger_year", ArchivedBag.state == "sealed"
        )
    )
    return {key: version_id for key, version_id in rows}
