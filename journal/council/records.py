"""Council decisions and final-attestation grades as records signed by the school's log key in
its ledger log (kinds ``council_decision`` and ``attestation_grade``, docs/formats.md §10).

Both are made after the year is closed, from the sealed year grades. For each pupil (and, for
grades, each subject) the record with the highest seq is in force: a correction is a new record,
the old one stays. Before the first of them, the class's year records (``ledger_record``, one
per pupil) are written, so that the summary ledger printed from then on is made of ledger-log
records only and one checkpoint covers every value on it. Every function takes the session
first, validates everything before writing anything, flushes and never commits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User

from ..keys import LogKey
from ..models import ClassGroup, Entry, School, SchoolYear, Student, Subject, TeachingAssignment
from ..pupils import Pupil, class_pupils
from ..services import append_ledger_record, cut_checkpoint, ensure_journal_log, ensure_ledger_log
from ..year.closing import class_subjects
from ..year.results import YearBook
from ..year.rules import NO_GRADES_RULE, rule_id_for
from .rules import (
    ADMITTED,
    DECISIONS,
    GRADUATED,
    RULE_ID,
    PromotionRule,
    promotion_rule,
    propose,
)

DECISION_KIND = "council_decision"
GRADE_KIND = "attestation_grade"
GRADE_SCALE = range(2, 6)  # the five-point scale's grades: 2, 3, 4, 5
MAX_TEXT = 1000


def N_(message: str) -> str:
    """Mark a message for extraction; views translate it when they show it."""
    return message


class CouncilError(ValueError):
    """A decision or a grade that cannot be recorded; nothing was written."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params


def decision_cell(year: SchoolYear, class_group: ClassGroup, student_id: int) -> str:
    return f"council:{year.name}:{class_group.id}:{student_id}"


def grade_cell(year: SchoolYear, student_id: int, subject_id: int) -> str:
    return f"attestation:{year.name}:{student_id}:{subject_id}"


def _payload(entry: Entry) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(entry.leaf)["payload"]
    return payload


def _ledger_entries(session: Session, school: School, kind: str, prefix: str) -> list[Entry]:
    log = ensure_ledger_log(session, school)
    return list(
        session.scalars(
            select(Entry)
            .where(Entry.log_id == log.id, Entry.kind == kind, Entry.cell.startswith(prefix))
            .order_by(Entry.seq)
        )
    )


# -- reading ------------------------------------------------------------------------------------


def decision_records(session: Session, class_group: ClassGroup) -> list[Entry]:
    """Every council decision of the class's year, oldest first (the last per pupil counts)."""
    year = session.get_one(SchoolYear, class_group.school_year_id)
    school = session.get_one(School, class_group.school_id)
    return _ledger_entries(session, school, DECISION_KIND, f"council:{year.name}:{class_group.id}:")


def decisions(session: Session, class_group: ClassGroup) -> dict[int, dict[str, Any]]:
    """Student id → the payload of the council decision in force."""
    return {
        entry.student_id or 0: _payload(entry) for entry in decision_records(session, class_group)
    }


def grade_records(session: Session, class_group: ClassGroup) -> list[Entry]:
    """Every attestation grade of the class's pupils for its year, oldest first."""
    year = session.get_one(SchoolYear, class_group.school_year_id)
    school = session.get_one(School, class_group.school_id)
    pupils = {p.id for p in class_pupils(session, class_group, year.starts_on, year.ends_on)}
    return [
        entry
        for entry in _ledger_entries(session, school, GRADE_KIND, f"attestation:{year.name}:")
        if entry.student_id in pupils
    ]


def attestation(session: Session, class_group: ClassGroup) -> dict[int, dict[str, dict[str, Any]]]:
    """Student id → subject name → the attestation record in force (``exam``, ``final``)."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for entry in grade_records(session, class_group):
        payload = _payload(entry)
        found.setdefault(entry.student_id or 0, {})[payload["subject"]["name"]] = payload
    return found


def final_grades(session: Session, student: Student, school_year: SchoolYear) -> dict[str, int]:
    """THE lookup of a pupil's final grades for a year: subject name → final grade, from the
    ``attestation_grade`` records of the school ledger log (the latest per subject counts).
    Empty when none are recorded (not a graduating year, or not yet)."""
    school = session.get_one(School, school_year.school_id)
    log = ensure_ledger_log(session, school)
    found: dict[str, int] = {}
    for entry in session.scalars(
        select(Entry)
        .where(
            Entry.log_id == log.id,
            Entry.kind == GRADE_KIND,
            Entry.student_id == student.id,
            Entry.cell.startswith(f"attestation:{school_year.name}:"),
        )
        .order_by(Entry.seq)
    ):
        payload = _payload(entry)
        found[payload["subject"]["name"]] = int(payload["final"])
    return found


def sealed_year_grades(session: Session, class_group: ClassGroup) -> dict[int, dict[str, str]]:
    """Student id → subject name → the sealed year result's code ("5", "2", "pass", ...)."""
    log = ensure_journal_log(session, class_group)
    book = YearBook(session, class_group, log)
    year = book.year
    found: dict[int, dict[str, str]] = {}
    subjects = [
        s
        for s in class_subjects(session, class_group)
        if rule_id_for(s, class_group) != NO_GRADES_RULE
    ]
    for pupil in class_pupils(session, class_group, year.starts_on, year.ends_on):
        grades = found.setdefault(pupil.id, {})
        for subject in subjects:
            cell = book.cells.get(f"sealed:{subject.id}:year:{year.id}:{pupil.id}")
            if cell is None or not cell.history:
                continue
            payload = cell.history[0].payload
            code = next(
                (
                    str(payload[k])
                    for k in ("grade", "result", "status")
                    if payload.get(k) is not None
                ),
                "",
            )
            grades[subject.name] = code
    return found


@dataclass(frozen=True)
class Proposal:
    """One pupil's line of the council's list."""

    pupil: Pupil
    year_grades: dict[str, str]
    finals: dict[str, int]
    proposed: str
    recorded: dict[str, Any] | None = None
    twos: tuple[str, ...] = field(default=())


def _year_closed(session: Session, class_group: ClassGroup) -> SchoolYear:
    year = session.get_one(SchoolYear, class_group.school_year_id)
    if year.closed_at is None:
        raise CouncilError(
            N_("The school year %(name)s is not closed: its year grades are not sealed yet."),
            name=year.name,
        )
    return year


def rule_of(year: SchoolYear) -> PromotionRule:
    return promotion_rule(year.ends_on)


def proposals(
    session: Session, class_group: ClassGroup, applications: frozenset[int] = frozenset()
) -> list[Proposal]:
    """The council's list, made from the sealed year grades (refused before the year is
    closed): each pupil with the decision the rule proposes and the one recorded, if any.
    ``applications``: first-graders whose parents applied for retention."""
    year = _year_closed(session, class_group)
    rule = rule_of(year)
    grades = sealed_year_grades(session, class_group)
    recorded = decisions(session, class_group)
    finals = attestation(session, class_group)
    found = []
    for pupil in class_pupils(session, class_group, year.starts_on, year.ends_on):
        mine = grades.get(pupil.id, {})
        pupil_finals = {s: int(p["final"]) for s, p in finals.get(pupil.id, {}).items()}
        proposed = propose(
            rule,
            class_group.grade_level,
            mine.values(),
            parents_application=pupil.id in applications,
            final_grades=[str(g) for g in pupil_finals.values()] if pupil_finals else None,
        )
        found.append(
            Proposal(
                pupil,
                mine,
                pupil_finals,
                proposed,
                recorded.get(pupil.id),
                tuple(sorted(s for s, g in mine.items() if g == "2")),
            )
        )
    return found


# -- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The council's decision for one pupil, as the admin enters it."""

    decision: str
    reason: str = ""
    parents_application: bool = False


def _class_block(class_group: ClassGroup) -> dict[str, Any]:
    return {"id": class_group.id, "name": class_group.name, "grade_level": class_group.grade_level}


def _student_block(student: Student) -> dict[str, Any]:
    return {
        "id": student.id,
        "last_name": student.last_name,
        "first_name": student.first_name,
        "patronymic": student.patronymic,
        "birth_date": student.birth_date.isoformat(),
    }


def parse_protocol(number: str, day: str, year: SchoolYear) -> tuple[str, dt.date]:
    number = (number or "").strip()
    if not number or len(number) > 40:
        raise CouncilError(N_("Give the council protocol's number (at most 40 characters)."))
    try:
        date = dt.date.fromisoformat((day or "").strip())
    except ValueError:
        raise CouncilError(N_("Give the council protocol's date as YYYY-MM-DD.")) from None
    if not year.starts_on <= date <= year.ends_on + dt.timedelta(days=120):
        raise CouncilError(
            N_("The protocol's date %(day)s is not in the school year %(name)s."),
            day=date.isoformat(),
            name=year.name,
        )
    return number, date


def _ensure_year_records(session: Session, class_group: ClassGroup, log_key: LogKey) -> None:
    from exports.queries import record_summary_ledger  # the year records: exports' ledger data

    record_summary_ledger(session, class_group, log_key)


def record_decisions(
    session: Session,
    class_group: ClassGroup,
    log_key: LogKey,
    choices: Mapping[int, Choice],
    *,
    decided_by: User,
    protocol_number: str,
    protocol_date: str,
    now: dt.datetime | None = None,
) -> int:
    """Record the council's decisions (one protocol) for some pupils of the class: every choice
    is checked first, and one bad choice writes nothing. A decision other than the proposed one
    needs a reason, which is kept in the record."""
    year = _year_closed(session, class_group)
    school = session.get_one(School, class_group.school_id)
    number, date = parse_protocol(protocol_number, protocol_date, year)
    rule = rule_of(year)
    if not choices:
        raise CouncilError(N_("Choose a decision for at least one pupil."))
    applications = frozenset(sid for sid, c in choices.items() if c.parents_application)
    lines = {p.pupil.id: p for p in proposals(session, class_group, applications)}
    graduating = class_group.grade_level in rule.graduating_levels
    records = []
    for student_id, choice in choices.items():
        line = lines.get(student_id)
        if line is None:
            raise CouncilError(N_("This pupil is not in class %(name)s."), name=class_group.name)
        name = line.pupil.full_name
        if choice.decision not in DECISIONS:
            raise CouncilError(N_("Unknown decision for %(pupil)s."), pupil=name)
        if choice.decision in (ADMITTED, GRADUATED) and not graduating:
            raise CouncilError(
                N_("Class %(name)s does not sit the final attestation."), name=class_group.name
            )
        if choice.decision == GRADUATED and not line.finals:
            raise CouncilError(
                N_("%(pupil)s has no final grades recorded: graduation needs them."), pupil=name
            )
        reason = (choice.reason or "").strip()
        if len(reason) > MAX_TEXT:
            raise CouncilError(N_("A reason is at most 1000 characters."))
        if choice.decision != line.proposed and not reason:
            raise CouncilError(
                N_("%(pupil)s: a decision other than the proposed one needs a reason."), pupil=name
            )
        records.append((student_id, choice, line, reason))
    _ensure_year_records(session, class_group, log_key)
    students = {s.id: s for s in session.scalars(select(Student).where(Student.id.in_(choices)))}
    for student_id, choice, line, reason in records:
        append_ledger_record(
            session,
            school,
            log_key,
            DECISION_KIND,
            {
                "school_year": year.name,
                "class": _class_block(class_group),
                "student": _student_block(students[student_id]),
                "decision": choice.decision,
                "proposed": line.proposed,
                "reason": reason or None,
                "parents_application": choice.parents_application,
                "protocol": {"number": number, "date": date.isoformat()},
                "year_grades": dict(sorted(line.year_grades.items())),
                "rule": {"id": RULE_ID, "version": rule.version},
                "decided_by": decided_by.id,
            },
            now=now,
            student_id=student_id,
            cell=decision_cell(year, class_group, student_id),
        )
    cut_checkpoint(session, ensure_ledger_log(session, school), log_key, now=now)
    session.flush()
    return len(records)


def _grade(value: str | int | None, *, required: bool) -> int | None:
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            raise CouncilError(N_("The final grade is required."))
        return None
    if not text.isdigit() or int(text) not in GRADE_SCALE:
        raise CouncilError(N_("A grade is 2, 3, 4 or 5, not %(value)s."), value=text[:10])
    return int(text)


def record_attestation_grade(
    session: Session,
    class_group: ClassGroup,
    student: Student,
    subject: Subject,
    log_key: LogKey,
    *,
    entered_by: User,
    role: str,
    exam: str | int | None,
    final: str | int | None,
    now: dt.datetime | None = None,
) -> None:
    """A graduating pupil's exam grade (when the subject has an exam) and final grade in one
    subject, entered by the subject's teacher or, for the exam commission, by the school admin.
    Refused (nothing written) outside a graduating class, before the year is closed, for a
    pupil not in the class or a subject it does not have, or off the scale."""
    year = _year_closed(session, class_group)
    school = session.get_one(School, class_group.school_id)
    rule = rule_of(year)
    if class_group.grade_level not in rule.graduating_levels:
        raise CouncilError(
            N_("Class %(name)s does not sit the final attestation."), name=class_group.name
        )
    if student.school_id != school.id or student.id not in {
        p.id for p in class_pupils(session, class_group, year.starts_on, year.ends_on)
    }:
        raise CouncilError(N_("This pupil is not in class %(name)s."), name=class_group.name)
    if subject.id not in {
        s.id
        for s in class_subjects(session, class_group)
        if rule_id_for(s, class_group) != NO_GRADES_RULE
    }:
        raise CouncilError(N_("Class %(name)s has no graded subject %(subject)s."),
                           name=class_group.name, subject=subject.name)  # fmt: skip
    if role == "teacher":
        teaches = session.scalar(
            select(TeachingAssignment.id).where(
                TeachingAssignment.user_id == entered_by.id,
                TeachingAssignment.class_group_id == class_group.id,
                TeachingAssignment.subject_id == subject.id,
            )
        )
        if teaches is None:
            raise CouncilError(N_("Only the subject's teacher in this class enters its grade."))
    elif role == "commission":
        if not any(g.role == "school_admin" and g.school_id == school.id for g in entered_by.roles):
            raise CouncilError(N_("The exam commission's grades are entered by the school admin."))
    else:
        raise CouncilError(N_("Grades are entered by the teacher or the exam commission."))
    exam_grade = _grade(exam, required=False)
    final_grade = _grade(final, required=True)
    _ensure_year_records(session, class_group, log_key)
    append_ledger_record(
        session,
        school,
        log_key,
        GRADE_KIND,
        {
            "school_year": year.name,
            "class": _class_block(class_group),
            "student": _student_block(student),
            "subject": {"id": subject.id, "name": subject.name},
            "exam": exam_grade,
            "final": final_grade,
            "entered_by": {"user": entered_by.id, "as": role},
        },
        now=now,
        student_id=student.id,
        cell=grade_cell(year, student.id, subject.id),
    )
    cut_checkpoint(session, ensure_ledger_log(session, school), log_key, now=now)
    session.flush()
