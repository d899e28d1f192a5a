"""The summary ledger's content, read so that it prints only what its checkpoint proves.

Two sources, never mixed in one printout:

- **the school ledger log**, once the class's year records (``ledger_record``) are written
  (the archive job, or the first council decision or attestation grade): each pupil's year
  record, the council decision and the exam and final grades in force, every one embedded with
  its own tlog-proof against the ledger log's latest checkpoint;
- before that, **the class journal** up to a sealing checkpoint: the latest one once the year
  is closed, else the one that sealed the last closed term (before any, the latest, and then
  nothing but the names is printed). Only sealed results are read, at that checkpoint, with
  every leaf up to it embedded; mid-year the ledger has no year column and says the year is not
  finished.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from journal.council.records import attestation, decision_records, decisions, grade_records
from journal.council.rules import promotion_rule
from journal.db import utcnow
from journal.models import Checkpoint, ClassGroup, School, SchoolYear, Term, TermClosure
from journal.services import ensure_journal_log, ensure_ledger_log, latest_checkpoint
from journal.year.rules import rule_id_for

from .documents import LedgerDocument, LedgerRow
from .queries import (
    ExportError,
    _subjects,
    _vkey,
    ledger_records,
    range_proof,
    records_proof,
    summary_ledger,
)


def _graduating(year: SchoolYear, grade_level: int) -> bool:
    return grade_level in promotion_rule(year.ends_on).graduating_levels


def ledger_document(
    session: Session, class_group: ClassGroup, *, generated_at: dt.datetime | None = None
) -> LedgerDocument:
    school = session.get_one(School, class_group.school_id)
    year = session.get_one(SchoolYear, class_group.school_year_id)
    records = ledger_records(session, class_group)
    if records:
        return _from_ledger_log(session, class_group, school, year, records, generated_at)
    return _from_journal(session, class_group, school, year, generated_at)


def _decided(payload: dict[str, Any] | None) -> tuple[str, str, str]:
    if payload is None:
        return "", "", ""
    protocol = payload.get("protocol") or {}
    return (
        str(payload.get("decision") or ""),
        str(protocol.get("number") or ""),
        str(protocol.get("date") or ""),
    )


def _from_ledger_log(
    session: Session,
    class_group: ClassGroup,
    school: School,
    year: SchoolYear,
    records: list[Any],
    generated_at: dt.datetime | None,
) -> LedgerDocument:
    decided = decisions(session, class_group)
    attested = attestation(session, class_group)
    rows = []
    subjects: set[str] = set()
    grade_level = class_group.grade_level
    for record in records:
        payload = json.loads(record.leaf)["payload"]
        grade_level = int(payload["class"].get("grade_level") or grade_level)
        student = payload["student"]
        name = " ".join(
            p for p in (student["last_name"], student["first_name"], student["patronymic"]) if p
        )
        grades = {s: tuple(v) for s, v in payload["grades"].items()}
        subjects.update(grades)
        absences = payload.get("absences") or {}
        mine = attested.get(record.student_id or 0, {})
        decision, number, date = _decided(decided.get(record.student_id or 0))
        rows.append(
            LedgerRow(
                student_name=name,
                grades=grades,
                absences_total=int(absences.get("total", 0)),
                absences_sick=int(absences.get("sick", 0)),
                days_total=int(absences.get("days", 0)),
                days_sick=int(absences.get("sick_days", 0)),
                exam={s: "" if p["exam"] is None else str(p["exam"]) for s, p in mine.items()},
                final={s: str(p["final"]) for s, p in mine.items()},
                decision=decision,
                protocol_number=number,
                protocol_date=date,
            )
        )
    proven = sorted(
        [*records, *decision_records(session, class_group), *grade_records(session, class_group)],
        key=lambda entry: entry.seq,
    )
    proof = records_proof(session, ensure_ledger_log(session, school), proven, _vkey(school))
    return LedgerDocument(
        school_name=school.name,
        class_name=class_group.name,
        school_year=year.name,
        subjects=tuple(sorted(subjects)),
        rows=tuple(rows),
        proof=proof,
        generated_at=generated_at or utcnow(),
        time_zone=school.time_zone,
        full=True,
        graduating=_graduating(year, grade_level),
        year_finished=year.closed_at is not None,
    )


def sealing_checkpoint(
    session: Session, class_group: ClassGroup, year: SchoolYear
) -> tuple[Checkpoint, dt.date]:
    """The journal's checkpoint the ledger is printed at, and the last day it covers: the
    latest checkpoint once the year is closed, else the one that sealed the last closed term."""
    log = ensure_journal_log(session, class_group)
    if year.closed_at is not None:
        checkpoint = latest_checkpoint(session, log)
        if checkpoint is None:
            raise ExportError(f"{log.origin} has no checkpoint yet")
        return checkpoint, year.ends_on
    closed = session.execute(
        select(TermClosure.checkpoint_size, Term.ends_on)
        .join(Term, Term.id == TermClosure.term_id)
        .where(TermClosure.log_id == log.id, Term.school_year_id == year.id)
    ).all()
    if not closed:
        # Nothing sealed yet (or a year kept before closing existed): the latest checkpoint,
        # and no term, year or absence printed, since none of them is final.
        checkpoint = latest_checkpoint(session, log)
        if checkpoint is None:
            raise ExportError(f"{log.origin} has no checkpoint yet")
        return checkpoint, year.starts_on - dt.timedelta(days=1)
    size = max(size for size, _day in closed)
    checkpoint = session.scalar(
        select(Checkpoint).where(Checkpoint.log_id == log.id, Checkpoint.size == size)
    )
    if checkpoint is None:
        raise ExportError(f"{log.origin} has no checkpoint of size {size}")
    return checkpoint, max(day for _size, day in closed)


def _from_journal(
    session: Session,
    class_group: ClassGroup,
    school: School,
    year: SchoolYear,
    generated_at: dt.datetime | None,
) -> LedgerDocument:
    checkpoint, last_day = sealing_checkpoint(session, class_group, year)
    lines = summary_ledger(session, class_group, until_seq=checkpoint.size, last_day=last_day)
    subjects = tuple(
        subject.name
        for subject, _ in _subjects(session, class_group)
        if rule_id_for(subject, class_group) != "kz-no-grades"
    )
    rows = tuple(
        LedgerRow(
            student_name=line.student.full_name,
            grades=line.grades,
            absences_total=line.absences_total,
            absences_sick=line.absences_sick,
            days_total=line.days_total,
            days_sick=line.days_sick,
        )
        for line in lines
    )
    log = ensure_journal_log(session, class_group)
    return LedgerDocument(
        school_name=school.name,
        class_name=class_group.name,
        school_year=year.name,
        subjects=subjects,
        rows=rows,
        proof=range_proof(session, log, 0, checkpoint, _vkey(school)),
        generated_at=generated_at or utcnow(),
        time_zone=school.time_zone,
        full=True,
        graduating=_graduating(year, class_group.grade_level),
        year_finished=year.closed_at is not None,
    )
