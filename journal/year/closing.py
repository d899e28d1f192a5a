"""Closing a term and closing the year: deliberate, checked acts that seal the results.

Closing a term (:func:`close_term`):

- is refused before the term's last day (in the school's time zone) and while an earlier term
  of the same kind is open, unless the admin writes a reason, which goes into the ledger log
  with the closure;
- seals, in every class journal of the year, each pupil's result in each subject graded by
  that kind of term: a record signed by the school's log key with the result in force (the
  teacher's confirmation, or the rule's computed grade, with the rule id and version), or the
  status; then cuts the checkpoint that covers those records and every entry of the term;
- writes ``term_closed`` to the school ledger log, with each journal's checkpoint.

:func:`pre_close_report` lists what an admin should see first: lessons without a topic,
pupils without a term result, results computed with a component missing, pupils incomplete
under the assessment plan, confirmations that the marks no longer give, open late corrections.

Closing the year (:func:`close_year`) needs every term closed; it seals the year results the
same way. Every function takes the session first, flushes and never commits.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User

from ..db import utcnow
from ..keys import LogKey
from ..ledger import entry as ledger_entry
from ..models import (
    ClassGroup,
    Entry,
    LateCorrectionApproval,
    Lesson,
    Log,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
    TermClosure,
)
from ..pupils import class_pupils
from ..school_time import school_today
from ..services import (
    ServerRecord,
    append_ledger_record,
    append_server_records,
    cut_checkpoint,
    ensure_journal_log,
    ensure_ledger_log,
)
from .results import (
    DECISION,
    SEALED_TERM,
    SEALED_YEAR,
    Outcome,
    TermBook,
    YearBook,
    decision_cell,
    sealed_term_cell,
    sealed_year_cell,
)
from .rules import rule_id_for, term_kind_of


def N_(message: str) -> str:
    """Mark a message for extraction; views translate it when they show it."""
    return message


class TermError(ValueError):
    """A closing (or approval) that cannot be done; nothing was written."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params


# -- what is in the way -------------------------------------------------------------------------


def _school(session: Session, year: SchoolYear) -> School:
    return session.get_one(School, year.school_id)


def closing_holds(session: Session, term: Term, now: dt.datetime) -> list[str]:
    """Why closing the term now needs a written reason ([] when it does not)."""
    year = session.get_one(SchoolYear, term.school_year_id)
    today = school_today(_school(session, year).time_zone, now)
    holds = []
    if today < term.ends_on:
        holds.append("early")
    earlier_open = session.scalar(
        select(Term.id).where(
            Term.school_year_id == term.school_year_id,
            Term.kind == term.kind,
            Term.number < term.number,
            Term.closed_at.is_(None),
        )
    )
    if earlier_open is not None:
        holds.append("out_of_order")
    return holds


HOLD_MESSAGES = {
    "early": N_("The term's last day (%(day)s) has not come yet."),
    "out_of_order": N_("An earlier term of the same kind is still open."),
}


# -- the pre-close report -----------------------------------------------------------------------


@dataclass
class SubjectReport:
    """One class × subject before closing."""

    class_group: ClassGroup
    subject: Subject
    lessons_without_topic: list[dt.date] = field(default_factory=list)
    without_result: list[str] = field(default_factory=list)
    incomplete: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)
    missing_component: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    computed_only: int = 0  # results the teacher has not confirmed (sealed as computed)
    confirmed: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.lessons_without_topic
            or self.without_result
            or self.incomplete
            or self.missing_component
            or self.stale
            or self.conflicts
        )


@dataclass
class CloseReport:
    term: Term
    holds: list[str]
    subjects: list[SubjectReport]
    pending_late_corrections: list[tuple[ClassGroup, LateCorrectionApproval]]

    @property
    def findings(self) -> int:
        return sum(not s.clean for s in self.subjects) + len(self.pending_late_corrections)


def year_journals(session: Session, year: SchoolYear) -> list[tuple[ClassGroup, Log]]:
    from ..collation import class_key

    classes = session.scalars(select(ClassGroup).where(ClassGroup.school_year_id == year.id))
    found = [(c, ensure_journal_log(session, c)) for c in classes]
    return sorted(found, key=lambda pair: class_key(pair[0].name, pair[0].grade_level))


def class_subjects(session: Session, class_group: ClassGroup) -> list[Subject]:
    """The subjects of a class: assigned to a teacher or in its timetable's lessons."""
    assigned = select(TeachingAssignment.subject_id).where(
        TeachingAssignment.class_group_id == class_group.id
    )
    taught = select(Lesson.subject_id).where(Lesson.class_group_id == class_group.id)
    subjects = session.scalars(
        select(Subject).where(Subject.id.in_(assigned.union(taught))).order_by(Subject.name)
    ).all()
    return list(subjects)


def graded_subjects(session: Session, class_group: ClassGroup, kind: str) -> list[Subject]:
    """The subjects of a class whose results a term of ``kind`` seals."""
    return [
        s
        for s in class_subjects(session, class_group)
        if term_kind_of(s) == kind and rule_id_for(s, class_group) != "kz-no-grades"
    ]


def pre_close_report(
    session: Session, term: Term, *, now: dt.datetime | None = None
) -> CloseReport:
    now = now or utcnow()
    year = session.get_one(SchoolYear, term.school_year_id)
    report = CloseReport(term, closing_holds(session, term, now), [], [])
    for class_group, log in year_journals(session, year):
        pupils = class_pupils(session, class_group, term.starts_on, term.ends_on)
        names = {p.id: p.full_name for p in pupils}
        book = TermBook(session, class_group, log, term)
        for subject in class_subjects(session, class_group):
            if term_kind_of(subject) != term.kind:
                continue
            line = SubjectReport(class_group, subject)
            for lesson_id, day in session.execute(
                select(Lesson.id, Lesson.date)
                .where(
                    Lesson.class_group_id == class_group.id,
                    Lesson.subject_id == subject.id,
                    Lesson.date >= term.starts_on,
                    Lesson.date <= term.ends_on,
                )
                .order_by(Lesson.date, Lesson.period)
            ):
                topic = book.cells.get(f"topic:{lesson_id}")
                if topic is None or topic.value is None:
                    line.lessons_without_topic.append(day)
            if rule_id_for(subject, class_group) != "kz-no-grades":
                outcomes = book.outcomes(subject, list(names))
                for student_id, outcome in outcomes.items():
                    _report_outcome(line, student_id, names[student_id], outcome)
            report.subjects.append(line)
        report.pending_late_corrections += [
            (class_group, approval) for approval in open_late_corrections(session, log, now)
        ]
    return report


def _report_outcome(line: SubjectReport, student_id: int, name: str, outcome: Outcome) -> None:
    computed = outcome.computed or outcome
    if outcome.conflict:
        line.conflicts.append(name)
    if outcome.how == "confirmed":
        line.confirmed += 1
        if outcome.stale:
            line.stale.append(name)
        return
    if computed.incomplete:
        line.incomplete.append((student_id, name, computed.incomplete))
    elif not outcome.code:
        line.without_result.append(name)
    elif computed.missing:
        line.missing_component.append((name, computed.missing))
    line.computed_only += 1


def open_late_corrections(
    session: Session, log: Log, now: dt.datetime
) -> list[LateCorrectionApproval]:
    """Approvals still running whose correction has not arrived."""
    approvals = session.scalars(
        select(LateCorrectionApproval).where(
            LateCorrectionApproval.log_id == log.id, LateCorrectionApproval.expires_at >= now
        )
    ).all()
    waiting = []
    for approval in approvals:
        arrived = session.scalar(
            select(Entry.id).where(
                Entry.log_id == log.id,
                Entry.cell == approval.cell,
                Entry.kind == "correction",
                Entry.received_at >= approval.approved_at,
            )
        )
        if arrived is None:
            waiting.append(approval)
    return waiting


# -- sealing ------------------------------------------------------------------------------------


def _result_fields(outcome: Outcome) -> dict[str, Any]:
    return {
        "grade": outcome.grade,
        "result": outcome.result,
        "status": outcome.status,
        "percent": outcome.percent or None,
        "incomplete": list(outcome.incomplete),
        "how": outcome.how,
        "confirmation": outcome.confirmation,
        "rule": {"id": outcome.rule_id, "version": outcome.rule_version},
        "reason": outcome.reason,
    }


def seal_term(
    session: Session,
    class_group: ClassGroup,
    log: Log,
    term: Term,
    log_key: LogKey,
    *,
    now: dt.datetime,
) -> int:
    """Write each pupil's result in force, per subject of the term's kind, into the journal."""
    year = session.get_one(SchoolYear, term.school_year_id)
    pupils = class_pupils(session, class_group, term.starts_on, term.ends_on)
    book = TermBook(session, class_group, log, term)
    records = []
    for subject in graded_subjects(session, class_group, term.kind):
        outcomes = book.outcomes(subject, [p.id for p in pupils])
        for pupil in pupils:
            outcome = outcomes[pupil.id]
            records.append(
                ServerRecord(
                    SEALED_TERM,
                    {
                        "school_year": year.name,
                        "term": {"id": term.id, "kind": term.kind, "number": term.number},
                        "class": {"id": class_group.id, "name": class_group.name},
                        "subject": {"id": subject.id, "name": subject.name},
                        "student": pupil.id,
                        **_result_fields(outcome),
                    },
                    pupil.id,
                    sealed_term_cell(subject.id, term.id, pupil.id),
                )
            )
    append_server_records(session, log, log_key, records, now=now)
    return len(records)


def close_term(
    session: Session,
    term: Term,
    log_key: LogKey,
    *,
    closed_by: User | None,
    now: dt.datetime | None = None,
    reason: str | None = None,
    timestamper: Any = None,
) -> list[TermClosure]:
    """Close a term: seal every journal's results, cut the checkpoint that covers them, record
    which checkpoint seals the term, and write the event (with its reason) to the ledger log."""
    if term.closed_at is not None:
        raise TermError(N_("The term is already closed."))
    now = now or utcnow()
    holds = closing_holds(session, term, now)
    reason = (reason or "").strip()
    if holds and not reason:
        raise TermError(
            N_(
                "Closing now needs a written reason: the term ends on %(day)s, or an earlier "
                "term is still open."
            ),
            day=term.ends_on.isoformat(),
        )
    year = session.get_one(SchoolYear, term.school_year_id)
    school = _school(session, year)
    term.closed_at = now
    closures = []
    journals = []
    sealed = 0
    for class_group, log in year_journals(session, year):
        sealed += seal_term(session, class_group, log, term, log_key, now=now)
        checkpoint = cut_checkpoint(session, log, log_key, now=now, timestamper=timestamper)
        closure = TermClosure(
            term_id=term.id,
            log_id=log.id,
            checkpoint_size=checkpoint.size,
            closed_by_id=closed_by.id if closed_by else None,
            closed_at=now,
        )
        session.add(closure)
        closures.append(closure)
        journals.append(
            {
                "origin": log.origin,
                "size": checkpoint.size,
                "root": base64.b64encode(checkpoint.root_hash).decode(),
            }
        )
    fields: dict[str, Any] = {
        "school_year": year.name,
        "term": {"kind": term.kind, "number": term.number},
        "closed_by": closed_by.id if closed_by else None,
        "journals": journals,
        "sealed_results": sealed,
    }
    if holds:
        fields.update(early="early" in holds, out_of_order="out_of_order" in holds, reason=reason)
    append_ledger_record(session, school, log_key, "term_closed", fields, now=now)
    cut_checkpoint(
        session, ensure_ledger_log(session, school), log_key, now=now, timestamper=timestamper
    )
    session.flush()
    return closures


def year_holds(session: Session, year: SchoolYear, now: dt.datetime) -> list[str]:
    today = school_today(_school(session, year).time_zone, now)
    return ["early"] if today < year.ends_on else []


def close_year(
    session: Session,
    year: SchoolYear,
    log_key: LogKey,
    *,
    closed_by: User | None,
    now: dt.datetime | None = None,
    reason: str | None = None,
    timestamper: Any = None,
) -> int:
    """Close the school year: every term must be closed; seals each pupil's year result in
    every journal, checkpoints them and records ``year_closed`` in the ledger log."""
    if year.closed_at is not None:
        raise TermError(N_("The school year is already closed."))
    open_terms = [t for t in year.terms if t.closed_at is None]
    if open_terms or not year.terms:
        raise TermError(N_("Every term must be closed before the year."))
    now = now or utcnow()
    reason = (reason or "").strip()
    holds = year_holds(session, year, now)
    if holds and not reason:
        raise TermError(
            N_("Closing the year before its last day (%(day)s) needs a written reason."),
            day=year.ends_on.isoformat(),
        )
    school = _school(session, year)
    year.closed_at = now
    journals = []
    sealed = 0
    for class_group, log in year_journals(session, year):
        pupils = class_pupils(session, class_group, year.starts_on, year.ends_on)
        book = YearBook(session, class_group, log)
        records = []
        for kind in ("quarter", "half"):
            for subject in graded_subjects(session, class_group, kind):
                for pupil in pupils:
                    outcome = book.outcome(subject, pupil.id)
                    if outcome is None:
                        continue
                    records.append(
                        ServerRecord(
                            SEALED_YEAR,
                            {
                                "school_year": year.name,
                                "class": {"id": class_group.id, "name": class_group.name},
                                "subject": {"id": subject.id, "name": subject.name},
                                "student": pupil.id,
                                **_result_fields(outcome),
                            },
                            pupil.id,
                            sealed_year_cell(subject.id, year.id, pupil.id),
                        )
                    )
        append_server_records(session, log, log_key, records, now=now)
        sealed += len(records)
        checkpoint = cut_checkpoint(session, log, log_key, now=now, timestamper=timestamper)
        journals.append(
            {
                "origin": log.origin,
                "size": checkpoint.size,
                "root": base64.b64encode(checkpoint.root_hash).decode(),
            }
        )
    fields: dict[str, Any] = {
        "school_year": year.name,
        "closed_by": closed_by.id if closed_by else None,
        "journals": journals,
        "sealed_results": sealed,
    }
    if holds:
        fields.update(early=True, reason=reason)
    append_ledger_record(session, school, log_key, "year_closed", fields, now=now)
    cut_checkpoint(
        session, ensure_ledger_log(session, school), log_key, now=now, timestamper=timestamper
    )
    session.flush()
    return sealed


# -- the admin's decisions and approvals --------------------------------------------------------


def decide_incomplete(
    session: Session,
    class_group: ClassGroup,
    subject: Subject,
    term: Term,
    student: Student,
    log_key: LogKey,
    *,
    decided_by: User,
    reason: str,
    now: dt.datetime | None = None,
) -> None:
    """The school decides that an incomplete pupil's result is computed from the work there is
    (illness, an excused absence from the СОЧ): a record in the class journal, with the reason."""
    if not reason.strip():
        raise TermError(N_("A decision must state its reason."))
    if term.closed_at is not None:
        raise TermError(N_("The term is already closed."))
    if term.kind != term_kind_of(subject):
        raise TermError(N_("This subject is not graded by this kind of term."))
    log = ensure_journal_log(session, class_group)
    append_server_records(
        session,
        log,
        log_key,
        [
            ServerRecord(
                DECISION,
                {
                    "decision": "count_present",
                    "subject": subject.id,
                    "term": term.id,
                    "student": student.id,
                    "reason": reason.strip(),
                    "decided_by": decided_by.id,
                },
                student.id,
                decision_cell(subject.id, term.id, student.id),
            )
        ],
        now=now,
    )
    session.flush()


def approve_late_correction(
    session: Session,
    log: Log,
    cell: str,
    log_key: LogKey,
    *,
    approved_by: User,
    reason: str,
    now: dt.datetime | None = None,
    valid_for: dt.timedelta = dt.timedelta(days=7),
) -> LateCorrectionApproval:
    """Let corrections of one cell of a closed term in for a while; the approval is an entry."""
    if not reason.strip():
        raise TermError(N_("An approval must state its reason."))
    now = now or utcnow()
    approval = LateCorrectionApproval(
        log_id=log.id,
        cell=cell,
        reason=reason,
        approved_by_id=approved_by.id,
        approved_at=now,
        expires_at=now + valid_for,
    )
    session.add(approval)
    append_ledger_record(
        session,
        session.get_one(School, log.school_id),
        log_key,
        "late_correction_approved",
        {
            "target": log.origin,
            "cell": cell,
            "reason": reason,
            "approved_by": approved_by.id,
            "expires_at": ledger_entry.format_timestamp(approval.expires_at),
        },
        now=now,
    )
    session.flush()
    return approval


def term_closure(session: Session, term: Term, log: Log) -> TermClosure | None:
    return session.scalar(
        select(TermClosure).where(TermClosure.term_id == term.id, TermClosure.log_id == log.id)
    )
