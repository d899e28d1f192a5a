"""Recording a certificate when it is issued: from the pupil's summary-ledger records in the
school ledger log, as a signed ``certificate_issued`` record. Flushes, never commits."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from journal.council.records import final_grades
from journal.keys import LogKey
from journal.models import Entry, School, SchoolYear, Student
from journal.services import append_ledger_record, ensure_ledger_log

from .register import (
    CERTIFICATE_KINDS,
    CertificateError,
    YearLine,
    certificate_fields,
    year_lines,
)


def ledger_payloads(session: Session, school: School, kinds: Sequence[str]) -> list[dict[str, Any]]:
    log = ensure_ledger_log(session, school)
    leaves = session.scalars(
        select(Entry.leaf).where(Entry.log_id == log.id, Entry.kind.in_(kinds)).order_by(Entry.seq)
    )
    return [json.loads(leaf)["payload"] for leaf in leaves]


def record_certificate(
    session: Session,
    school: School,
    log_key: LogKey,
    student: Student,
    *,
    level: int,
    series: str,
    number: str,
    issued_on: dt.date,
    subjects: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Record the certificate of ``level`` (9 or 11) issued to ``student``, with the grades of
    their summary-ledger records (``certificate_grades``). Refused, writing nothing, when the
    pupil has no such records, or the series and number are already in the register."""
    if student.school_id != school.id:
        raise CertificateError("no such pupil in this school")
    records = [
        p
        for p in ledger_payloads(session, school, ["ledger_record"])
        if p["student"].get("id") == student.id
    ]
    if not records:
        raise CertificateError("the pupil's summary-ledger records are not recorded yet")
    lines = year_lines(records)
    fields = certificate_fields(
        records[-1]["student"],
        lines,
        level=level,
        series=series,
        number=number,
        issued_on=issued_on,
        subjects=subjects,
        finals=_finals(session, school, student, lines),
    )
    number_of = (fields["certificate"]["series"], fields["certificate"]["number"])
    for payload in ledger_payloads(session, school, CERTIFICATE_KINDS):
        if (payload["certificate"]["series"], payload["certificate"]["number"]) == number_of:
            raise CertificateError("this series and number are already in the register")
    append_ledger_record(
        session,
        school,
        log_key,
        "certificate_issued",
        fields,
        now=now,
        student_id=student.id,
        cell=f"certificate:{student.id}:{fields['certificate']['series']}"
        f":{fields['certificate']['number']}",
    )
    return fields


def _finals(
    session: Session, school: School, student: Student, lines: Sequence[YearLine]
) -> dict[str, int]:
    """The exam commission's final grades of the pupil's latest recorded year, if any."""
    latest = max((line.school_year for line in lines), default=None)
    year = session.scalar(
        select(SchoolYear).where(SchoolYear.school_id == school.id, SchoolYear.name == latest)
    )
    return final_grades(session, student, year) if year is not None else {}
