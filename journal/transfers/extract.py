"""The transfer extract: a JSON document signed by the old school's log key, and carrying it in.

``{"format": "journal-transfer/1", "extract": {...}, "note": "<signed note>"}``: the note's text
is ``journal-transfer/1\\n<SHA-256 of the canonical JSON of extract, hex>\\n``, signed with the
school's log key (the key whose vkey the school publishes). The receiving school verifies it
against a school key it trusts and records each value as a ``carried_in`` entry of the new
class's journal, with the SHA-256 of the whole document. Refused, writing nothing, when it does
not verify or is for another pupil.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from journal.cells import read_cells
from journal.db import utcnow
from journal.keys import LogKey
from journal.ledger import entry as ledger_entry
from journal.ledger import note
from journal.models import ClassGroup, Entry, Lesson, School, SchoolYear, Student, Subject
from journal.services import ServerRecord, append_server_records, ensure_journal_log
from journal.year.results import YearBook

FORMAT = "journal-transfer/1"
COMPONENTS = {"SOR": "СОР/БЖБ", "SOCh": "СОЧ/ТЖБ"}


class TransferError(ValueError):
    pass


def _note_text(extract: dict[str, Any]) -> str:
    digest = hashlib.sha256(ledger_entry.canonical_json(extract)).hexdigest()
    return f"{FORMAT}\n{digest}\n"


def transfer_extract(
    session: Session,
    log_key: LogKey,
    student: Student,
    class_group: ClassGroup,
    *,
    now: dt.datetime | None = None,
) -> bytes:
    """The signed extract of the current year's СОР/СОЧ results and the sealed term grades of
    ``student`` in ``class_group`` (their class in the school they leave)."""
    now = now or utcnow()
    school = session.get_one(School, class_group.school_id)
    if student.school_id != school.id:
        raise TransferError("no such pupil in this school")
    if not student.iin_hmac:
        raise TransferError("the pupil has no IIN: the new school could not match the extract")
    year = session.get_one(SchoolYear, class_group.school_year_id)
    log = ensure_journal_log(session, class_group)
    lessons = {
        lesson.id: lesson
        for lesson in session.scalars(select(Lesson).where(Lesson.class_group_id == class_group.id))
    }
    subjects = {s.id: s.name for s in session.scalars(select(Subject))}
    results = []
    for cell in read_cells(session, log.id, student_ids=[student.id]).values():
        component, lesson_id, _student = (cell.key.split(":") + ["", ""])[:3]
        if component not in COMPONENTS or not isinstance(cell.value, dict):
            continue
        lesson = lessons.get(int(lesson_id)) if lesson_id.isdigit() else None
        if lesson is None:
            continue
        results.append(
            {
                "subject": subjects[lesson.subject_id],
                "component": component,
                "date": lesson.date.isoformat(),
                "points": int(cell.value["points"]),
                "max": int(cell.value["max"]),
            }
        )
    results.sort(key=lambda r: (r["subject"], r["date"], r["component"]))
    book = YearBook(session, class_group, log, student_ids=[student.id])
    terms = []
    for subject_id in sorted({lesson.subject_id for lesson in lessons.values()}):
        subject = session.get_one(Subject, subject_id)
        for number, outcome in enumerate(book.term_outcomes(subject, student.id), 1):
            if outcome is not None and outcome.code:
                terms.append({"subject": subject.name, "term": number, "grade": outcome.code})
    extract = {
        "school": {"domain": school.domain, "name": school.name, "vkey": school.log_vkey},
        "school_year": year.name,
        "class": class_group.name,
        "student": {
            "last_name": student.last_name,
            "first_name": student.first_name,
            "patronymic": student.patronymic,
            "birth_date": student.birth_date.isoformat(),
            "iin_hmac": base64.b64encode(student.iin_hmac).decode(),
        },
        "issued_at": ledger_entry.format_timestamp(now),
        "results": results,
        "term_grades": terms,
    }
    signed = note.sign_note(_note_text(extract), log_key.name, log_key.private_key)
    document = {"format": FORMAT, "extract": extract, "note": signed}
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


def verify_extract(data: bytes, trusted_vkeys: Collection[str]) -> dict[str, Any]:
    """The extract of a transfer document that verifies against one of ``trusted_vkeys``."""
    try:
        document = json.loads(data)
        extract = document["extract"]
        vkey = extract["school"]["vkey"]
        if document.get("format") != FORMAT:
            raise TransferError("this is not a transfer extract")
    except (ValueError, KeyError, TypeError):
        raise TransferError("this is not a transfer extract") from None
    if vkey not in trusted_vkeys:
        raise TransferError("the extract is signed by a school key this server does not trust")
    try:
        text = note.open_note(str(document["note"]), note.parse_vkey(vkey))
    except (note.NoteError, KeyError):
        raise TransferError("the extract's signature does not verify") from None
    if text != _note_text(extract):
        raise TransferError("the extract was changed after it was signed")
    return dict(extract)


def carry_in(
    session: Session,
    log_key: LogKey,
    data: bytes,
    student: Student,
    class_group: ClassGroup,
    *,
    trusted_vkeys: Collection[str],
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Record what a verified transfer extract carries as ``carried_in`` entries of the new
    class's journal, each with the document's SHA-256. Flushes; nothing written on refusal."""
    extract = verify_extract(data, trusted_vkeys)
    if student.school_id != class_group.school_id:
        raise TransferError("no such pupil in this school")
    theirs = extract["student"].get("iin_hmac")
    if not student.iin_hmac or theirs != base64.b64encode(student.iin_hmac).decode():
        raise TransferError("the extract is for another pupil (the IIN does not match)")
    if extract["school"]["domain"] == session.get_one(School, class_group.school_id).domain:
        raise TransferError("the extract is from this school")
    digest = hashlib.sha256(data).hexdigest()
    log = ensure_journal_log(session, class_group)
    prefix = f"carried:{digest[:16]}:"
    if session.scalar(
        select(Entry.id).where(Entry.log_id == log.id, Entry.cell.startswith(prefix))
    ):
        raise TransferError("this extract has already been carried in")
    source = {
        "sha256": digest,
        "school": extract["school"]["domain"],
        "school_year": extract["school_year"],
        "class": extract["class"],
    }
    values = [{"result": r} for r in extract["results"]] + [
        {"term_grade": t} for t in extract["term_grades"]
    ]
    if not values:
        raise TransferError("the extract carries no result")
    records = [
        ServerRecord(
            "carried_in",
            {"carried_in": True, "source": source, **value},
            student.id,
            f"{prefix}{student.id}:{index}",
        )
        for index, value in enumerate(values)
    ]
    append_server_records(session, log, log_key, records, now=now)
    return [record.fields for record in records]


def carried_in(session: Session, class_group: ClassGroup, student: Student) -> list[dict[str, Any]]:
    """The ``carried_in`` entries of a pupil in a class's journal, oldest first."""
    log = ensure_journal_log(session, class_group)
    leaves = session.scalars(
        select(Entry.leaf)
        .where(Entry.log_id == log.id, Entry.kind == "carried_in", Entry.student_id == student.id)
        .order_by(Entry.seq)
    )
    return [json.loads(leaf)["payload"] for leaf in leaves]


__all__ = ["TransferError", "carried_in", "carry_in", "transfer_extract", "verify_extract"]
