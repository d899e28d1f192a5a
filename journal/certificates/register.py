"""Certificate-register records and the per-year view of a pupil's summary-ledger records.

Pure functions of record payloads (the ``payload`` of ledger-log leaves): the same code reads
records from the live ledger log and from archived ledger bags.

- ``certificate_issued``: series, number and date of a certificate, the pupil, the final grades
  over the certificate's subject list, the years it covers.
- ``certificate_duplicate``: a duplicate's own series, number and date, the reason, the same
  grades, and ``original`` = the origin, seq and leaf hash of the ``certificate_issued`` record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CERTIFICATE_KINDS = ("certificate_issued", "certificate_duplicate")
# Which classes a certificate covers: basic secondary (9) grades 5–9, general secondary (11) 10–11.
COVERED_LEVELS = {9: range(5, 10), 11: range(10, 12)}


class CertificateError(ValueError):
    pass


@dataclass(frozen=True)
class YearLine:
    """One pupil's one school year, however many classes they were in: per subject the term
    columns and the year grade (last column), and the classes in the order recorded."""

    school_year: str
    class_names: tuple[str, ...]
    grade_level: int | None
    grades: dict[str, tuple[str, ...]]
    absences_total: int
    absences_sick: int


def year_lines(records: Iterable[Mapping[str, Any]]) -> list[YearLine]:
    """Merge the ``ledger_record`` payloads of one pupil into ONE line per school year.

    A pupil who moved class mid-year has a record in each class; a term's column is the value
    sealed in whichever class had one. Where both did, the record reaching the later term wins
    (then the later one given): the class the pupil finished the year in gives the year grade,
    not the one they left, whatever order the classes were recorded in."""
    by_year: dict[str, list[Mapping[str, Any]]] = {}
    for payload in records:
        if payload.get("kind", "ledger_record") == "ledger_record":
            by_year.setdefault(str(payload["school_year"]), []).append(payload)
    lines = []
    for school_year in sorted(by_year):
        merged: dict[str, list[str]] = {}
        classes: list[str] = []
        level = None
        total = sick = 0
        for payload in sorted(by_year[school_year], key=_last_term):
            name = str(payload["class"]["name"])
            if name not in classes:
                classes.append(name)
            level = payload["class"].get("grade_level", level)
            total += int(payload["absences"]["total"])
            sick += int(payload["absences"]["sick"])
            for subject, values in payload["grades"].items():
                column = merged.setdefault(subject, [""] * len(values))
                column.extend([""] * (len(values) - len(column)))
                for index, value in enumerate(values):
                    if value not in ("", None):
                        column[index] = str(value)
        lines.append(
            YearLine(
                school_year,
                tuple(classes),
                level,
                {subject: tuple(values) for subject, values in sorted(merged.items())},
                total,
                sick,
            )
        )
    return lines


def _last_term(payload: Mapping[str, Any]) -> int:
    """The last term column (the year's excluded) any subject of a record has a value in."""
    last = -1
    for values in payload["grades"].values():
        for index, value in enumerate(values[:-1]):
            if value not in ("", None):
                last = max(last, index)
    return last


def certificate_grades(
    lines: Sequence[YearLine],
    subjects: Sequence[str] | None = None,
    finals: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """THE grades a certificate carries, per subject of its list (``subjects``; None: every
    subject graded in the years covered).

    A final grade of the graduating year (``finals``: journal.council.records.final_grades)
    wins; otherwise the sealed year grade of the latest year in which the subject has one (the
    last column of the summary-ledger records, made from the sealed year results)."""
    grades: dict[str, str] = {}
    for line in sorted(lines, key=lambda line: line.school_year):
        for subject, values in line.grades.items():
            if values and values[-1]:
                grades[subject] = values[-1]
    for subject, final in (finals or {}).items():
        grades[subject] = str(final)
    wanted = sorted(grades) if subjects is None else list(subjects)
    return {subject: grades.get(subject, "") for subject in wanted}


def covered_lines(lines: Sequence[YearLine], level: int) -> list[YearLine]:
    """The years a certificate of ``level`` (9 or 11) covers: grades 5–9, or 10–11."""
    if level not in COVERED_LEVELS:
        raise CertificateError("a certificate is issued after grade 9 or grade 11")
    covered = [line for line in lines if line.grade_level in COVERED_LEVELS[level]]
    if not covered:
        raise CertificateError(f"no summary-ledger record of grades {_levels(level)}")
    return covered


def _levels(level: int) -> str:
    span = COVERED_LEVELS[level]
    return f"{span[0]}–{span[-1]}"


def _check_number(series: str, number: str, issued_on: dt.date) -> None:
    if not series.strip() or not number.strip():
        raise CertificateError("give the certificate's series and number")
    if issued_on > dt.date.today() + dt.timedelta(days=1):
        raise CertificateError("the issue date is in the future")


def certificate_fields(
    student: Mapping[str, Any],
    lines: Sequence[YearLine],
    *,
    level: int,
    series: str,
    number: str,
    issued_on: dt.date,
    subjects: Sequence[str] | None = None,
    finals: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The fields of a ``certificate_issued`` record."""
    _check_number(series, number, issued_on)
    covered = covered_lines(lines, level)
    grades = certificate_grades(covered, subjects, finals)
    if not any(grades.values()):
        raise CertificateError("no final grade is sealed for this certificate's subjects")
    return {
        "certificate": {
            "level": level,
            "series": series.strip(),
            "number": number.strip(),
            "issued_on": issued_on.isoformat(),
        },
        "student": dict(student),
        "school_years": [line.school_year for line in covered],
        "grades": grades,
    }


def leaf_digest(leaf: bytes) -> str:
    """How a duplicate names its original: the SHA-256 of the original record's leaf, hex."""
    return hashlib.sha256(leaf).hexdigest()


def duplicate_fields(
    original: Mapping[str, Any],
    *,
    origin: str,
    seq: int,
    leaf: bytes,
    series: str,
    number: str,
    issued_on: dt.date,
    reason: str,
) -> dict[str, Any]:
    """The fields of a ``certificate_duplicate`` record for the ``certificate_issued`` payload
    ``original`` (leaf ``leaf`` at ``seq`` of log ``origin``)."""
    if original.get("kind") != "certificate_issued":
        raise CertificateError("a duplicate is issued for a recorded certificate")
    _check_number(series, number, issued_on)
    if not reason.strip():
        raise CertificateError("give the reason for the duplicate")
    first = original["certificate"]
    if (series.strip(), number.strip()) == (first["series"], first["number"]):
        raise CertificateError("a duplicate gets its own series and number")
    return {
        "certificate": {
            "level": first["level"],
            "series": series.strip(),
            "number": number.strip(),
            "issued_on": issued_on.isoformat(),
        },
        "reason": reason.strip(),
        "original": {
            "origin": origin,
            "seq": seq,
            "leaf_sha256": leaf_digest(leaf),
            "series": first["series"],
            "number": first["number"],
            "issued_on": first["issued_on"],
        },
        "student": dict(original["student"]),
        "school_years": list(original.get("school_years", [])),
        "grades": dict(original["grades"]),
    }
