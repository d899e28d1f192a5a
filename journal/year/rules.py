"""The grading rule versions in force, from the app's configuration, and which rule a subject
of a class follows. Rules themselves are data (``journal.grading``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import current_app, has_app_context

from ..grading import GradingRule, rule_for, rules_from_json, rules_in_force
from ..models import ClassGroup, Subject

CRITERIA_RULE = "kz-criteria"
PASS_FAIL_RULE = "kz-pass-fail"  # noqa: S105 - a rule id
NO_GRADES_RULE = "kz-no-grades"
DEFAULT_WHOLE_PERCENT_FROM = "2026-09-01"


@lru_cache(maxsize=8)
def _rules(whole_percent_from: str, rules_file: str) -> tuple[GradingRule, ...]:
    extra = rules_from_json(Path(rules_file).read_text("utf-8")) if rules_file else ()
    start = dt.date.fromisoformat(whole_percent_from) if whole_percent_from else None
    return rules_in_force(start, extra)


def grading_rules(config: Mapping[str, Any] | None = None) -> tuple[GradingRule, ...]:
    """Every known rule version (the app's configuration, or the defaults outside an app)."""
    if config is None and has_app_context():
        config = current_app.config
    config = config or {}
    start = config.get("GRADING_WHOLE_PERCENT_FROM", DEFAULT_WHOLE_PERCENT_FROM)
    return _rules(str(start or ""), str(config.get("GRADING_RULES_FILE") or ""))


def rule_id_for(subject: Subject, class_group: ClassGroup) -> str:
    """First-graders and ungraded subjects get no grades; pass/fail subjects pass or fail."""
    if not subject.graded or class_group.grade_level <= 1:
        return NO_GRADES_RULE
    return PASS_FAIL_RULE if subject.pass_fail else CRITERIA_RULE


def rule_for_subject(subject: Subject, class_group: ClassGroup, on: dt.date) -> GradingRule:
    """The version of the subject's rule in force on a day (a term's last day)."""
    return rule_for(grading_rules(), rule_id_for(subject, class_group), on)


def term_kind_of(subject: Subject) -> str:
    return "half" if subject.by_half_year else "quarter"
