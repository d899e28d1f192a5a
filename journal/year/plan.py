"""The assessment plan: per class × subject × term, whether a СОЧ is written and how many СОР.
Set-up data that the admin changes until the term closes (``AssessmentPlan``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import AssessmentPlan, ClassGroup, Subject, Term
from .rules import term_kind_of

MAX_SOR = 20


def N_(message: str) -> str:
    return message


class PlanError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def set_plan(
    session: Session,
    class_group: ClassGroup,
    subject: Subject,
    term: Term,
    *,
    soch_planned: bool,
    sor_count: int,
) -> AssessmentPlan:
    if term.closed_at is not None:
        raise PlanError(N_("The term is closed: its plan cannot change."))
    if term.kind != term_kind_of(subject) or term.school_year_id != class_group.school_year_id:
        raise PlanError(N_("This subject is not graded by this kind of term."))
    if not 0 <= sor_count <= MAX_SOR:
        raise PlanError(N_("The number of SOR must be from 0 to 20."))
    plan = session.scalar(
        select(AssessmentPlan).where(
            AssessmentPlan.class_group_id == class_group.id,
            AssessmentPlan.subject_id == subject.id,
            AssessmentPlan.term_id == term.id,
        )
    )
    if plan is None:
        plan = AssessmentPlan(class_group_id=class_group.id, subject_id=subject.id, term_id=term.id)
        session.add(plan)
    plan.soch_planned = soch_planned
    plan.sor_count = sor_count
    session.flush()
    return plan
