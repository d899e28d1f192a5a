"""Duplicate certificates from the archive alone (DESIGN §2, issue 7).

Years later the live database may hold nothing of a former student: the registrar searches the
archived summary-ledger bags (25-year tier) for the student's ledger records, proves each one
against its bag's signed checkpoint with a C2SP tlog-proof, and issues a signed extract that
carries those proofs. The issuance itself is recorded in the school ledger log.
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
from journal.db import utcnow
from journal.keys import load_log_key
from journal.ledger import merkle, note, tlogproof
from journal.ledger.audit import device_keys_from_document, verify_log
from journal.models import School
from journal.services import append_ledger_record

from .storage import ArchiveStorage, fetch_bag


class RegistrarError(LookupError):
    pass


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
    def school_year(self) -> str:
        return str(self.payload["school_year"])

    @property
    def class_name(self) -> str:
        return str(self.payload["class"]["name"])


@dataclass(frozen=True)
class Query:
    """By IIN (its keyed hash), or by last name, first name and birth date."""

    iin_hmac: str | None = None  # base64, as in the records
    last_name: str | None = None
    first_name: str | None = None
    birth_date: dt.date | None = None

    def matches(self, student: Mapping[str, Any]) -> bool:
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
            found.extend(_records_in_bag(key, bag_dir, query, trusted_vkeys))
    found.sort(key=lambda r: (r.school_year, r.origin, r.seq))
    return found


def _records_in_bag(
    key: str, bag_dir: Path, query: Query, trusted_vkeys: set[str]
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
        if b'"ledger_record"' not in leaf:
            continue
        payload = json.loads(leaf)["payload"]
        if payload.get("kind") != "ledger_record" or not query.matches(payload["student"]):
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


def extract_document(records: list[FoundRecord], *, generated_at: dt.datetime) -> LedgerDocument:
    """The extract: one line per school year found, the year's grades, the records' proofs."""
    if not records:
        raise RegistrarError("no records to issue")
    first = records[0]
    if len({r.origin for r in records}) != 1:
        raise RegistrarError("records from several schools: issue one extract per school")
    student = first.student
    name = " ".join(
        str(part)
        for part in (student["last_name"], student["first_name"], student.get("patronymic"))
        if part
    )
    subjects: list[str] = []
    rows = []
    for record in records:
        grades = {subject: tuple(values) for subject, values in record.payload["grades"].items()}
        subjects.extend(s for s in grades if s not in subjects)
        rows.append(
            LedgerRow(
                student_name=f"{name}, {record.school_year} ({record.class_name})",
                grades=grades,  # type: ignore[arg-type]
                absences_total=int(record.payload["absences"]["total"]),
                absences_sick=int(record.payload["absences"]["sick"]),
            )
        )
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
        class_name=records[-1].class_name,
        school_year=", ".join(sorted({r.school_year for r in records})),
        subjects=tuple(subjects),
        rows=tuple(rows),
        proof=proof,
        generated_at=generated_at,
        title=f"Выписка для дубликата документа об образовании · {name}, {student['birth_date']}",
        charts=False,
    )


def issue_extract(
    session: Session,
    config: Mapping[str, Any],
    records: list[FoundRecord],
    *,
    registrar: User,
    now: dt.datetime | None = None,
) -> bytes:
    """Render and sign the extract, and record the issuance in the school ledger log."""
    now = now or utcnow()
    domain = records[0].origin.split("/", 1)[0] if records else ""
    school = session.scalar(select(School).where(School.domain == domain))
    if school is None:
        raise RegistrarError(
            f"the school {domain} is not registered on this server: restore it first"
        )
    if not policy.can_issue_extract(registrar, school.id):
        raise RegistrarError(f"you are not a registrar of {domain}")
    document = extract_document(records, generated_at=now)
    signer, anchor = anchor_for(session, config, school)  # who may sign for the school
    assert document.proof is not None
    described = printout_file(
        {
            "document": "duplicate_extract",
            "school_years": sorted({r.school_year for r in records}),
            "log": document.proof.origin,
            "records": [r.seq for r in records],
            "checkpoint_size": document.proof.tree_size,
        }
    )
    proof = with_files(document.proof, *anchor.files, described)
    data = render_ledger_pdf(replace(document, proof=proof), signer, pdf_timestamper(config))
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
