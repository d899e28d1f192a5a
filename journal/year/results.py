"""Term and year results as the journal holds them, for one class journal.

For each pupil × subject × term there is, in order of precedence:

1. a **sealed** result: the record written into the journal when the term was closed (how it
   came about: confirmed by the teacher, or computed by rule R version V), which nothing changes;
2. a **confirmed** result: the head of the teacher's ``term_grade`` cell (a grade equal to the
   computed one when it was signed, pass/fail, or a status: not attested, exempt);
3. the **computed** result: the subject's rule applied to the pupil's marks, with the
   assessment plan (a missing planned СОР or СОЧ makes the pupil *incomplete*) and the admin's
   decisions (count what is there).

Year results follow the same order, computed from the sealed term results once every term of
the year is closed. Nothing here writes; ``journal.year.closing`` seals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cells import Cell, cell_values, read_cells, term_works
from ..grading import GradingRule, TermMark, TermResult, TermWork, compute_term, compute_year_result
from ..models import AssessmentPlan, ClassGroup, Lesson, Log, SchoolYear, Subject, Term
from .rules import rule_for_subject, term_kind_of

SEALED_TERM = "sealed_term_grade"
SEALED_YEAR = "sealed_year_grade"
DECISION = "assessment_decision"


def term_grade_cell(subject_id: int, term_id: int, student_id: int) -> str:
    return f"term_grade:{subject_id}:term:{term_id}:{student_id}"


def year_grade_cell(subject_id: int, student_id: int) -> str:
    return f"year_grade:{subject_id}:year:{student_id}"


def sealed_term_cell(subject_id: int, term_id: int, student_id: int) -> str:
    return f"sealed:{subject_id}:term:{term_id}:{student_id}"


def sealed_year_cell(subject_id: int, year_id: int, student_id: int) -> str:
    return f"sealed:{subject_id}:year:{year_id}:{student_id}"


def decision_cell(subject_id: int, term_id: int, student_id: int) -> str:
    return f"decision:{subject_id}:term:{term_id}:{student_id}"


@dataclass(frozen=True)
class Outcome:
    """One pupil's term (or year) result in one subject, and where it comes from."""

    student_id: int
    how: str  # "sealed", "confirmed", "computed" or "none"
    grade: int | None = None
    result: str | None = None  # "pass" / "fail"
    status: str | None = None  # "not_attested" / "exempt"
    percent: str = ""
    incomplete: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    rule_id: str = ""
    rule_version: int = 0
    reason: str | None = None
    confirmation: str | None = None  # the entry id of the confirmed head
    conflict: bool = False  # two confirmations made offline: neither counts
    computed: Outcome | None = field(default=None, compare=False)  # what the rule gives now

    @property
    def code(self) -> str:
        """What is shown in a term column: "5", "pass", "fail", "not_attested", "exempt",
        "incomplete" or "" (nothing yet). The same code on the grid, on paper and in the
        portal."""
        if self.grade is not None:
            return str(self.grade)
        if self.result is not None:
            return self.result
        if self.status is not None:
            return self.status
        if self.incomplete:
            return "incomplete"
        return ""

    @property
    def sealed(self) -> bool:
        return self.how == "sealed"

    @property
    def stale(self) -> bool:
        """A confirmed grade that the rule no longer gives (marks were corrected since)."""
        if self.how != "confirmed" or self.status is not None or self.computed is None:
            return False
        return (self.grade, self.result) != (self.computed.grade, self.computed.result)

    def mark(self) -> TermMark:
        return TermMark(self.grade, self.result, self.status)


def outcome_of_result(student_id: int, result: TermResult) -> Outcome:
    return Outcome(
        student_id=student_id,
        how="computed" if result.percent is not None or result.grade is not None else "none",
        grade=result.grade,
        result=result.result,
        percent="" if result.percent is None else str(result.percent),
        incomplete=result.incomplete,
        missing=result.missing,
        rule_id=result.rule_id,
        rule_version=result.rule_version,
    )


def outcome_of_payload(student_id: int, payload: Mapping[str, Any], how: str) -> Outcome:
    """A confirmation's or a sealed record's fields as an outcome."""
    rule = payload.get("rule") or {}
    return Outcome(
        student_id=student_id,
        how=how,
        grade=payload.get("grade"),
        result=payload.get("result"),
        status=payload.get("status"),
        percent=payload.get("percent") or "",
        incomplete=tuple(payload.get("incomplete") or ()),
        rule_id=str(rule.get("id", "")),
        rule_version=int(rule.get("version", 0)),
        reason=payload.get("reason"),
        confirmation=payload.get("confirmation") if how == "sealed" else None,
    )


def _one_head(cell: Cell | None) -> Mapping[str, Any] | None:
    if cell is None or len(cell.heads) != 1:
        return None
    return cell.heads[0].payload


def plans_of(session: Session, class_group_id: int, term_id: int) -> dict[int, AssessmentPlan]:
    return {
        plan.subject_id: plan
        for plan in session.scalars(
            select(AssessmentPlan).where(
                AssessmentPlan.class_group_id == class_group_id, AssessmentPlan.term_id == term_id
            )
        )
    }


def term_lessons(session: Session, class_group_id: int, term: Term) -> dict[int, list[int]]:
    """Each subject's lesson ids in the term's dates, in date and period order."""
    by_subject: dict[int, list[int]] = {}
    for lesson_id, subject_id in session.execute(
        select(Lesson.id, Lesson.subject_id)
        .where(
            Lesson.class_group_id == class_group_id,
            Lesson.date >= term.starts_on,
            Lesson.date <= term.ends_on,
        )
        .order_by(Lesson.date, Lesson.period)
    ):
        by_subject.setdefault(subject_id, []).append(lesson_id)
    return by_subject


class TermBook:
    """Everything one class journal holds about one term's results: read once, asked often.

    ``until_seq`` reads the log as it was at a checkpoint; ``student_ids`` limits the reading to
    some pupils (the server checking one confirmation); ``values`` replaces the cells' values
    (the grid computes from its own heads, read up to its cursor).
    """

    def __init__(
        self,
        session: Session,
        class_group: ClassGroup,
        log: Log,
        term: Term,
        *,
        until_seq: int | None = None,
        student_ids: Iterable[int] | None = None,
        values: Mapping[str, Any] | None = None,
        cells: Mapping[str, Cell] | None = None,
    ) -> None:
        self.class_group = class_group
        self.term = term
        if cells is None:
            cells = read_cells(
                session,
                log.id,
                student_ids=None if student_ids is None else list(student_ids),
                until_seq=until_seq,
            )
        self.cells = cells
        self.values = cell_values(cells) if values is None else values
        self.lessons = term_lessons(session, class_group.id, term)
        self.plans = plans_of(session, class_group.id, term.id)
        self._rules: dict[int, GradingRule] = {}
        self._works: dict[int, dict[int, TermWork]] = {}

    def rule(self, subject: Subject) -> GradingRule:
        if subject.id not in self._rules:
            self._rules[subject.id] = rule_for_subject(subject, self.class_group, self.term.ends_on)
        return self._rules[subject.id]

    def work(self, subject: Subject, student_id: int, student_ids: Iterable[int]) -> TermWork:
        if subject.id not in self._works or student_id not in self._works[subject.id]:
            wanted = set(student_ids) | {student_id}
            self._works[subject.id] = term_works(
                self.values, wanted, self.lessons.get(subject.id, [])
            )
        work = self._works[subject.id][student_id]
        plan = self.plans.get(subject.id)
        decided = _one_head(self.cells.get(decision_cell(subject.id, self.term.id, student_id)))
        return replace(
            work,
            soch_planned=bool(plan and plan.soch_planned),
            sor_planned=plan.sor_count if plan else 0,
            count_present=bool(decided and decided.get("decision") == "count_present"),
        )

    def computed(
        self, subject: Subject, student_id: int, student_ids: Iterable[int] = ()
    ) -> Outcome:
        result = compute_term(self.rule(subject), self.work(subject, student_id, student_ids))
        return outcome_of_result(student_id, result)

    def confirmation_cell(self, subject_id: int, student_id: int) -> Cell | None:
        return self.cells.get(term_grade_cell(subject_id, self.term.id, student_id))

    def sealed(self, subject_id: int, student_id: int) -> Mapping[str, Any] | None:
        cell = self.cells.get(sealed_term_cell(subject_id, self.term.id, student_id))
        return cell.history[0].payload if cell is not None and cell.history else None

    def outcome(
        self, subject: Subject, student_id: int, student_ids: Iterable[int] = ()
    ) -> Outcome:
        sealed = self.sealed(subject.id, student_id)
        if sealed is not None:
            return outcome_of_payload(student_id, sealed, "sealed")
        computed = self.computed(subject, student_id, student_ids)
        cell = self.confirmation_cell(subject.id, student_id)
        confirmed = _one_head(cell)
        if confirmed is not None:
            assert cell is not None
            return replace(
                outcome_of_payload(student_id, confirmed, "confirmed"),
                confirmation=cell.heads[0].entry_id,
                computed=computed,
            )
        if cell is not None and len(cell.heads) > 1:
            return replace(computed, conflict=True, computed=computed)
        return replace(computed, computed=computed)

    def outcomes(self, subject: Subject, student_ids: Iterable[int]) -> dict[int, Outcome]:
        ids = list(student_ids)
        return {student_id: self.outcome(subject, student_id, ids) for student_id in ids}


def year_terms(session: Session, year: SchoolYear, kind: str) -> list[Term]:
    return list(
        session.scalars(
            select(Term)
            .where(Term.school_year_id == year.id, Term.kind == kind)
            .order_by(Term.number)
        )
    )


def enrolled_in_term(periods: Iterable[tuple[dt.date, dt.date | None]], term: Term) -> bool:
    return any(
        start <= term.ends_on and (end is None or end >= term.starts_on) for start, end in periods
    )


class YearBook:
    """One class journal's year results: from the sealed term results, once every term of the
    subject's kind is closed."""

    def __init__(
        self,
        session: Session,
        class_group: ClassGroup,
        log: Log,
        *,
        until_seq: int | None = None,
        student_ids: Iterable[int] | None = None,
    ) -> None:
        self.session = session
        self.class_group = class_group
        self.year = session.get_one(SchoolYear, class_group.school_year_id)
        self.cells = read_cells(
            session,
            log.id,
            student_ids=None if student_ids is None else list(student_ids),
            kinds=[SEALED_TERM, SEALED_YEAR, "year_grade"],
            until_seq=until_seq,
        )
        self.terms = {kind: year_terms(session, self.year, kind) for kind in ("quarter", "half")}

    def terms_closed(self, subject: Subject) -> bool:
        terms = self.terms[term_kind_of(subject)]
        return bool(terms) and all(t.closed_at is not None for t in terms)

    def rule(self, subject: Subject) -> GradingRule:
        return rule_for_subject(subject, self.class_group, self.year.ends_on)

    def term_outcomes(self, subject: Subject, student_id: int) -> list[Outcome | None]:
        found: list[Outcome | None] = []
        for term in self.terms[term_kind_of(subject)]:
            cell = self.cells.get(sealed_term_cell(subject.id, term.id, student_id))
            payload = cell.history[0].payload if cell is not None and cell.history else None
            found.append(
                None if payload is None else outcome_of_payload(student_id, payload, "sealed")
            )
        return found

    def computed(self, subject: Subject, student_id: int) -> Outcome:
        rule = self.rule(subject)
        # Terms the pupil spent in another class have no record here and do not count.
        marks = [o.mark() for o in self.term_outcomes(subject, student_id) if o is not None]
        result = compute_year_result(rule, marks)
        return Outcome(
            student_id=student_id,
            how="computed"
            if (result.grade, result.result, result.status) != (None,) * 3
            else "none",
            grade=result.grade,
            result=result.result,
            status=result.status,
            incomplete=("term",) if result.incomplete else (),
            rule_id=result.rule_id,
            rule_version=result.rule_version,
        )

    def outcome(self, subject: Subject, student_id: int) -> Outcome | None:
        """None while a term of the year is open: no year grade exists before that."""
        sealed = self.cells.get(sealed_year_cell(subject.id, self.year.id, student_id))
        if sealed is not None and sealed.history:
            return outcome_of_payload(student_id, sealed.history[0].payload, "sealed")
        if not self.terms_closed(subject):
            return None
        computed = self.computed(subject, student_id)
        cell = self.cells.get(year_grade_cell(subject.id, student_id))
        confirmed = _one_head(cell)
        if confirmed is not None:
            assert cell is not None
            return replace(
                outcome_of_payload(student_id, confirmed, "confirmed"),
                confirmation=cell.heads[0].entry_id,
                computed=computed,
            )
        if cell is not None and len(cell.heads) > 1:
            return replace(computed, conflict=True, computed=computed)
        return replace(computed, computed=computed)
