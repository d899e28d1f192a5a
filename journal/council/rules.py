"""The rules that *propose* a council decision from a pupil's sealed year grades: versioned
data, like the grading rules (``journal.grading``), because they come from draft regulations.

A proposal is only that: the admin records the council's decision, and a decision other than
the proposal needs a written reason (kept in the record).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

PROMOTED = "promoted"
EXTRA_ASSESSMENT = "promoted_extra_assessment"
RETAINED = "retained"
ADMITTED = "admitted_final_attestation"
GRADUATED = "graduated"
LEFT = "left"
DECISIONS = (PROMOTED, EXTRA_ASSESSMENT, RETAINED, ADMITTED, GRADUATED, LEFT)

RULE_ID = "kz-promotion"


@dataclass(frozen=True)
class PromotionRule:
    """One version of the proposing rule.

    ``retained_from_twos``: this many year grades "2" or more propose retention; fewer (but
    some) propose promotion with an extra summative assessment; none, promotion.
    ``graduating_levels``: classes whose pupils sit the final attestation instead of being
    promoted (admitted when no "2", then graduated once their final grades have no "2").
    ``first_grade_on_application``: grade 1 is retained only on the parents' application.
    """

    id: str
    version: int
    valid_from: dt.date
    retained_from_twos: int
    graduating_levels: tuple[int, ...]
    first_grade_on_application: bool = True


#: Every known version, oldest first. A new version is a new line, never an edit.
PROMOTION_RULES: tuple[PromotionRule, ...] = (
    PromotionRule(RULE_ID, 1, dt.date(2016, 9, 1), 3, (9, 11)),
)


def promotion_rule(on: dt.date, rules: Iterable[PromotionRule] = PROMOTION_RULES) -> PromotionRule:
    """The version in force on a day (the school year's last day)."""
    found = [r for r in rules if r.valid_from <= on]
    if not found:
        raise LookupError(f"no promotion rule in force on {on.isoformat()}")
    return max(found, key=lambda r: (r.valid_from, r.version))


def propose(
    rule: PromotionRule,
    grade_level: int,
    year_grades: Iterable[str],
    *,
    parents_application: bool = False,
    final_grades: Iterable[str] | None = None,
) -> str:
    """The decision the rule proposes for a pupil's sealed year grades (codes: "5", "2",
    "pass", ...); for a graduating class, ``final_grades`` once they are recorded."""
    if grade_level <= 1 and rule.first_grade_on_application:
        return RETAINED if parents_application else PROMOTED
    twos = sum(str(g) == "2" for g in year_grades)
    if grade_level in rule.graduating_levels:
        if final_grades is not None:
            finals = list(final_grades)
            if finals and not any(str(g) == "2" for g in finals):
                return GRADUATED
        if twos == 0:
            return ADMITTED
    elif twos == 0:
        return PROMOTED
    if twos >= rule.retained_from_twos:
        return RETAINED
    return EXTRA_ASSESSMENT
