"""Grading rules as versioned data, and the pure computations that apply them.

A grading rule is configuration with an effective date and a version, never a code path keyed on
a school year (DESIGN §4). Every computed result records the ``rule_id`` and ``version`` used, so a
term grade computed under an old rule stays explainable after the ministry changes the weights.

Arithmetic
    Entries carry no floats and neither does this module. Weights and percents are ``Decimal`` at
    the interface; internally the term percent is computed *exactly* with
    :class:`fractions.Fraction` (integer numerator/denominator), so a value such as 84.95 is never
    pushed across a band boundary by a Decimal context's precision. The exact percent is then
    rounded **half up** to ``rule.percent_places`` decimal places (1 by default: 84.95 → 85.0,
    84.94 → 84.9): that is the percent shown (``TermResult.percent``). The grade bands compare
    against the exact percent rounded half up to ``rule.band_places`` places: version 1 of
    ``kz-criteria`` bands the shown percent itself (84.5 → 4); version 2, effective from a date
    the school's configuration gives, rounds to a whole percent first, as the national e-journal
    does (84.5 → 85 → 5, 84.917 → 85 → 5 while 84.9 is shown, 43.52 → 44).

Missing work (criteria rule)
    A component (FO, SOR or SOCh) with no work at all in the term is *not assessed*, not zero:
    its weight is redistributed proportionally over the components that are present, and its name
    is listed in ``TermResult.missing`` so the teacher sees it before confirming the grade. A zero
    score is recorded as ``points=0`` and counts. A term "has a SOCh" when a SOCh result is present
    or ``TermWork.soch_planned`` is true; such terms use the with-SOCh weights (FO 25, SOR 25,
    SOCh 50), other terms the no-SOCh weights (FO 50, SOR 50). A planned SOCh that the student did
    not write is reported as ``"no SOCh"`` and its weight is redistributed like any other. With
    no work at all the result has no percent and no grade.

The assessment plan (incomplete work)
    ``TermWork.sor_planned`` and ``soch_planned`` say what the plan of the class × subject × term
    asks for. A pupil with fewer SOR results than planned, or without the planned SOCh, is
    *incomplete*: ``TermResult.incomplete`` names what is missing and the result has no grade
    (the percent is still computed from what is there, marked provisional where it is shown),
    until a make-up result arrives or the school decides to count what is there
    (``TermWork.count_present``). Nothing is silently reweighted.

Pass/fail subjects
    A ``pass_fail`` rule computes the percent as the criteria rule does and gives
    ``TermResult.result`` "pass" when the banded percent reaches ``pass_percent``, else "fail".

Year results
    :func:`compute_year_result` takes the term (or half-year) results: the year grade is the mean
    of the term grades, rounded half up to a whole number; exempt and not-attested terms are left
    out; with no grade left, the year is "not attested" if any term was, else "exempt". A term
    without a result makes the year incomplete. Pass/fail subjects pass the year when every
    attested term passed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Any, Final, Literal, cast

RuleKind = Literal["criteria", "five_point_average", "no_grades", "pass_fail"]
RULE_KINDS: Final[frozenset[str]] = frozenset(
    {"criteria", "five_point_average", "no_grades", "pass_fail"}
)
#: Term and year results that are not grades (each given with a reason).
STATUSES: Final[tuple[str, ...]] = ("not_attested", "exempt")
PASS_FAIL: Final[tuple[str, ...]] = ("pass", "fail")

COMPONENTS: Final[tuple[str, ...]] = ("FO", "SOR", "SOCh", "mark")
FO_MIN, FO_MAX = 1, 10
MARK_MIN, MARK_MAX = 2, 5
SUMMATIVE_MAX_LIMIT = 100

_ZERO = Decimal(0)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class GradeValueError(ValueError):
    """A grade entry's value does not fit its component."""


class RuleError(ValueError):
    """A grading rule (or its JSON form) is malformed."""


class NoRuleError(LookupError):
    """No version of the rule is in effect on the requested date."""


@dataclass(frozen=True)
class GradingRule:
    """One version of a grading rule. See the module docstring for rounding and missing work.

    ``bands`` are ``(min_percent, grade)`` pairs in descending ``min_percent`` order; the first
    band whose minimum the rounded percent reaches gives the grade (the last band should start at
    0). ``percent_places`` is the number of decimal places the shown term percent is rounded to
    (half up); ``band_places`` the places the percent is rounded to before the bands are applied
    (None: the shown percent is banded). ``pass_percent``: the lowest passing banded percent of a
    ``pass_fail`` rule.
    """

    rule_id: str
    version: int
    effective_from: date
    kind: RuleKind
    fo_weight: Decimal = _ZERO
    sor_weight: Decimal = _ZERO
    soch_weight: Decimal = _ZERO
    fo_weight_no_soch: Decimal = _ZERO
    sor_weight_no_soch: Decimal = _ZERO
    bands: tuple[tuple[Decimal, int], ...] = ()
    percent_places: int = 1
    description: str = ""
    band_places: int | None = None
    pass_percent: Decimal = _ZERO

    def __post_init__(self) -> None:
        if not self.rule_id or not isinstance(self.rule_id, str):
            raise RuleError("rule_id must be a non-empty string")
        if not _is_int(self.version) or self.version < 1:
            raise RuleError(f"{self.rule_id}: version must be an int >= 1")
        if not isinstance(self.effective_from, date):
            raise RuleError(f"{self.rule_id}: effective_from must be a date")
        if self.kind not in RULE_KINDS:
            raise RuleError(f"{self.rule_id}: unknown kind {self.kind!r}")
        weights = (
            self.fo_weight,
            self.sor_weight,
            self.soch_weight,
            self.fo_weight_no_soch,
            self.sor_weight_no_soch,
        )
        for weight in weights:
            if not isinstance(weight, Decimal) or not weight.is_finite() or weight < 0:
                raise RuleError(f"{self.rule_id}: weights must be finite Decimals >= 0")
        if not _is_int(self.percent_places) or not 0 <= self.percent_places <= 4:
            raise RuleError(f"{self.rule_id}: percent_places must be an int in 0..4")
        if self.band_places is not None and (
            not _is_int(self.band_places) or not 0 <= self.band_places <= self.percent_places
        ):
            raise RuleError(f"{self.rule_id}: band_places must be an int in 0..percent_places")
        if (
            not isinstance(self.pass_percent, Decimal)
            or not self.pass_percent.is_finite()
            or not 0 <= self.pass_percent <= 100
        ):
            raise RuleError(f"{self.rule_id}: pass_percent must be a Decimal in 0..100")
        if self.kind in ("criteria", "pass_fail"):
            if self.fo_weight + self.sor_weight + self.soch_weight <= 0:
                raise RuleError(f"{self.rule_id}: with-SOCh weights must not all be zero")
            if self.fo_weight_no_soch + self.sor_weight_no_soch <= 0:
                raise RuleError(f"{self.rule_id}: no-SOCh weights must not all be zero")
            if self.kind == "criteria" and not self.bands:
                raise RuleError(f"{self.rule_id}: a criteria rule needs grade bands")
        previous: Decimal | None = None
        for band in self.bands:
            if len(band) != 2:
                raise RuleError(f"{self.rule_id}: a band is (min_percent, grade)")
            minimum, grade = band
            if not isinstance(minimum, Decimal) or not minimum.is_finite():
                raise RuleError(f"{self.rule_id}: band minimum must be a finite Decimal")
            if not _is_int(grade):
                raise RuleError(f"{self.rule_id}: band grade must be an int")
            if previous is not None and minimum >= previous:
                raise RuleError(f"{self.rule_id}: bands must be in descending min_percent order")
            previous = minimum

    def grade_for_percent(self, percent: Decimal) -> int | None:
        """The band grade for an already rounded percent (None if below every band)."""
        for minimum, grade in self.bands:
            if percent >= minimum:
                return grade
        return None


CRITERIA_BANDS: Final[tuple[tuple[Decimal, int], ...]] = (
    (Decimal(85), 5),
    (Decimal(65), 4),
    (Decimal(40), 3),
    (Decimal(0), 2),
)

_CRITERIA_TEXT: Final = (
    "Criteria-based assessment, grades 2-11: FO mean/10 x 25 + SOR sum/max x 25 + "
    "SOCh/max x 50 (no SOCh: FO 50 + SOR 50); 85-100 -> 5, 65-84 -> 4, 40-64 -> 3, "
    "below 40 -> 2"
)

DEFAULT_RULES: Final[tuple[GradingRule, ...]] = (
    GradingRule(
        rule_id="kz-criteria",
        version=1,
        effective_from=date(2016, 9, 1),
        kind="criteria",
        fo_weight=Decimal(25),
        sor_weight=Decimal(25),
        soch_weight=Decimal(50),
        fo_weight_no_soch=Decimal(50),
        sor_weight_no_soch=Decimal(50),
        bands=CRITERIA_BANDS,
        percent_places=1,
        description=_CRITERIA_TEXT + "; the percent rounded to one place is banded",
    ),
    GradingRule(
        rule_id="kz-five-point",
        version=1,
        effective_from=date(2016, 9, 1),
        kind="five_point_average",
        description="Five-point scale: mean of marks 2..5, rounded half up to a whole grade",
    ),
    GradingRule(
        rule_id="kz-no-grades",
        version=1,
        effective_from=date(2016, 9, 1),
        kind="no_grades",
        description="Subjects without grades (grade 1): attendance and topics only",
    ),
    GradingRule(
        rule_id="kz-pass-fail",
        version=1,
        effective_from=date(2016, 9, 1),
        kind="pass_fail",
        fo_weight=Decimal(25),
        sor_weight=Decimal(25),
        soch_weight=Decimal(50),
        fo_weight_no_soch=Decimal(50),
        sor_weight_no_soch=Decimal(50),
        percent_places=1,
        band_places=0,
        pass_percent=Decimal(40),
        description=(
            "Pass/fail subjects: the criteria percent, rounded to a whole percent; "
            "40 and more passes"
        ),
    ),
)


def whole_percent_criteria(effective_from: date) -> GradingRule:
    """Version 2 of ``kz-criteria``: the weighted percent is rounded half up to a whole percent
    before banding (the national e-journal's practice), and shown with one decimal."""
    return GradingRule(
        rule_id="kz-criteria",
        version=2,
        effective_from=effective_from,
        kind="criteria",
        fo_weight=Decimal(25),
        sor_weight=Decimal(25),
        soch_weight=Decimal(50),
        fo_weight_no_soch=Decimal(50),
        sor_weight_no_soch=Decimal(50),
        bands=CRITERIA_BANDS,
        percent_places=1,
        band_places=0,
        description=_CRITERIA_TEXT + "; the percent rounded half up to a whole percent is banded",
    )


def rules_in_force(
    whole_percent_from: date | None, extra: Iterable[GradingRule] = ()
) -> tuple[GradingRule, ...]:
    """Every known rule version: the defaults, ``kz-criteria`` version 2 from the configured
    date (none when it is None) and any further versions a school configures."""
    rules = list(DEFAULT_RULES)
    if whole_percent_from is not None:
        rules.append(whole_percent_criteria(whole_percent_from))
    rules.extend(extra)
    seen: set[tuple[str, int]] = set()
    for rule in rules:
        if (rule.rule_id, rule.version) in seen:
            raise RuleError(f"{rule.rule_id} version {rule.version} is defined twice")
        seen.add((rule.rule_id, rule.version))
    return tuple(rules)


def rule_for(rules: Iterable[GradingRule], rule_id: str, on: date) -> GradingRule:
    """The version of ``rule_id`` in effect on ``on``.

    That is the version with the latest ``effective_from`` not after ``on``; when two versions
    share an effective date the higher version wins.
    """
    candidates = [r for r in rules if r.rule_id == rule_id and r.effective_from <= on]
    if not candidates:
        raise NoRuleError(f"no version of grading rule {rule_id!r} is in effect on {on}")
    return max(candidates, key=lambda r: (r.effective_from, r.version))


# --- work and results -------------------------------------------------------------------------


@dataclass(frozen=True)
class TermWork:
    """A student's graded work in one subject and term (current values, corrections applied).

    ``fo``: formative scores 1..10; ``sor``: (points, max) per unit summative; ``soch``:
    (points, max) of the term summative or None; ``marks``: 2..5 marks for five-point rules;
    ``soch_planned``: the term has a SOCh even if this student has no result for it;
    ``sor_planned``: how many SOR the plan asks for; ``count_present``: the school decided that
    an incomplete pupil's grade is computed from the work there is.
    """

    fo: tuple[int, ...] = ()
    sor: tuple[tuple[int, int], ...] = ()
    soch: tuple[int, int] | None = None
    marks: tuple[int, ...] = ()
    soch_planned: bool = False
    sor_planned: int = 0
    count_present: bool = False


@dataclass(frozen=True)
class TermResult:
    """A computed term grade, with the rule version that produced it."""

    percent: Decimal | None
    grade: int | None
    rule_id: str
    rule_version: int
    missing: tuple[str, ...] = field(default=())
    #: What the assessment plan asks for and the pupil has not written ("SOCh", "SOR").
    incomplete: tuple[str, ...] = field(default=())
    #: "pass" or "fail" under a pass/fail rule.
    result: str | None = None


def compute_term(rule: GradingRule, work: TermWork) -> TermResult:
    """Apply ``rule`` to one student's term work."""
    _check_work(work)
    return _compute_term(rule, work)


# Exact fractions cost about a quarter of a millisecond a student, and a grid opened after one
# new mark asks again for 34 unchanged works of 35. Only checked work gets here, so values that
# compare equal (True == 1) cannot share a result.
@lru_cache(maxsize=4096)
def _compute_term(rule: GradingRule, work: TermWork) -> TermResult:
    if rule.kind in ("criteria", "pass_fail"):
        result = _compute_criteria(rule, work)
        incomplete = _incomplete(rule, work)
        if incomplete and not work.count_present:
            return replace(result, grade=None, result=None, incomplete=incomplete)
        return result
    if rule.kind == "five_point_average":
        if not work.marks:
            return TermResult(None, None, rule.rule_id, rule.version, ("no marks",))
        grade = _round_half_up_int(Fraction(sum(work.marks), len(work.marks)))
        return TermResult(None, grade, rule.rule_id, rule.version, ())
    return TermResult(None, None, rule.rule_id, rule.version, ())


def _incomplete(rule: GradingRule, work: TermWork) -> tuple[str, ...]:
    missing = []
    if len(work.sor) < work.sor_planned:
        missing.append("SOR")
    if work.soch_planned and work.soch is None:
        missing.append("SOCh")
    return tuple(missing)


def _compute_criteria(rule: GradingRule, work: TermWork) -> TermResult:
    has_soch = work.soch is not None or work.soch_planned
    parts: list[tuple[Fraction, Fraction | None, str]] = []
    fo_share = Fraction(sum(work.fo), FO_MAX * len(work.fo)) if work.fo else None
    sor_max = sum(m for _, m in work.sor)
    sor_share = Fraction(sum(p for p, _ in work.sor), sor_max) if work.sor else None
    if has_soch:
        soch_share = Fraction(work.soch[0], work.soch[1]) if work.soch is not None else None
        parts = [
            (Fraction(rule.fo_weight), fo_share, "no FO"),
            (Fraction(rule.sor_weight), sor_share, "no SOR"),
            (Fraction(rule.soch_weight), soch_share, "no SOCh"),
        ]
    else:
        parts = [
            (Fraction(rule.fo_weight_no_soch), fo_share, "no FO"),
            (Fraction(rule.sor_weight_no_soch), sor_share, "no SOR"),
        ]
    missing = tuple(label for _, share, label in parts if share is None)
    present = [(weight, share) for weight, share, _ in parts if share is not None and weight > 0]
    total_weight = sum((weight for weight, _ in present), Fraction(0))
    if total_weight == 0:
        return TermResult(None, None, rule.rule_id, rule.version, missing)
    exact = Fraction(100) * sum((w * s for w, s in present), Fraction(0)) / total_weight
    percent = _round_half_up(exact, rule.percent_places)
    banded = percent if rule.band_places is None else _round_half_up(exact, rule.band_places)
    if rule.kind == "pass_fail":
        passed = "pass" if banded >= rule.pass_percent else "fail"
        return TermResult(percent, None, rule.rule_id, rule.version, missing, result=passed)
    return TermResult(percent, rule.grade_for_percent(banded), rule.rule_id, rule.version, missing)


def exact_percent_result(rule: GradingRule, exact: Fraction) -> tuple[Decimal, int | None]:
    """(shown percent, grade) for an exact weighted percent: the rounding table of a rule."""
    percent = _round_half_up(exact, rule.percent_places)
    banded = percent if rule.band_places is None else _round_half_up(exact, rule.band_places)
    return percent, rule.grade_for_percent(banded)


def compute_year(rule: GradingRule, term_grades: Sequence[int | None]) -> int | None:
    """The year grade: the mean of the term grades present, rounded half up.

    Terms without a grade (None) are left out; with no term grade at all, or under a no-grades
    rule, the result is None.
    """
    if rule.kind == "no_grades":
        return None
    grades = [g for g in term_grades if g is not None]
    for grade in grades:
        if not _is_int(grade):
            raise TypeError(f"term grades must be ints, got {grade!r}")
    if not grades:
        return None
    return _round_half_up_int(Fraction(sum(grades), len(grades)))


@dataclass(frozen=True)
class TermMark:
    """A term's result as it counts for the year: a grade, pass/fail, a status, or nothing."""

    grade: int | None = None
    result: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class YearResult:
    grade: int | None
    result: str | None
    status: str | None
    rule_id: str
    rule_version: int
    #: Terms (1-based positions) without any result: the year cannot be computed yet.
    incomplete: tuple[int, ...] = ()


def compute_year_result(rule: GradingRule, terms: Sequence[TermMark]) -> YearResult:
    """The year result from the term (or half-year) results, in term order (module docstring)."""
    missing = tuple(
        i
        for i, mark in enumerate(terms, 1)
        if mark.grade is None and mark.result is None and mark.status is None
    )
    if rule.kind == "no_grades":
        return YearResult(None, None, None, rule.rule_id, rule.version)
    if missing or not terms:
        return YearResult(None, None, None, rule.rule_id, rule.version, missing or (0,))
    for mark in terms:
        if mark.status is not None and mark.status not in STATUSES:
            raise ValueError(f"unknown status {mark.status!r}")
        if mark.result is not None and mark.result not in PASS_FAIL:
            raise ValueError(f"unknown pass/fail result {mark.result!r}")
        if mark.grade is not None and not _is_int(mark.grade):
            raise TypeError(f"term grades must be ints, got {mark.grade!r}")
    attested = [m for m in terms if m.status is None]
    if not attested:
        status = "not_attested" if any(m.status == "not_attested" for m in terms) else "exempt"
        return YearResult(None, None, status, rule.rule_id, rule.version)
    if rule.kind == "pass_fail":
        passed = all(m.result == "pass" for m in attested)
        return YearResult(None, "pass" if passed else "fail", None, rule.rule_id, rule.version)
    grades = [m.grade for m in attested if m.grade is not None]
    if not grades:
        return YearResult(None, None, None, rule.rule_id, rule.version, (0,))
    grade = _round_half_up_int(Fraction(sum(grades), len(grades)))
    return YearResult(grade, None, None, rule.rule_id, rule.version)


def _check_work(work: TermWork) -> None:
    for score in work.fo:
        _check_int("FO score", score, FO_MIN, FO_MAX)
    summatives = list(work.sor) + ([work.soch] if work.soch is not None else [])
    for points, maximum in summatives:
        _check_int("max", maximum, 1, SUMMATIVE_MAX_LIMIT)
        _check_int("points", points, 0, maximum)
    for mark in work.marks:
        _check_int("mark", mark, MARK_MIN, MARK_MAX)
    _check_int("planned SOR", work.sor_planned, 0, 20)


def _round_half_up(value: Fraction, places: int) -> Decimal:
    scale = 10**places
    scaled = value * scale
    rounded = (scaled.numerator * 2 + scaled.denominator) // (scaled.denominator * 2)
    return Decimal(rounded).scaleb(-places)


def _round_half_up_int(value: Fraction) -> int:
    return (value.numerator * 2 + value.denominator) // (value.denominator * 2)


# --- entry value validation -------------------------------------------------------------------


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not _is_int(value):
        raise GradeValueError(f"{name} must be an integer, got {value!r}")
    number = cast(int, value)
    if not low <= number <= high:
        raise GradeValueError(f"{name} must be between {low} and {high}, got {number}")


_VALUE_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "FO": frozenset({"score"}),
    "SOR": frozenset({"points", "max"}),
    "SOCh": frozenset({"points", "max"}),
    "mark": frozenset({"mark"}),
}


def check_grade_value(component: str, value: dict[str, Any]) -> None:
    """Validate the ``value`` of a grade entry for ``component``.

    Shapes: ``FO`` ``{"score": 1..10}``; ``SOR`` and ``SOCh`` ``{"points": 0..max,
    "max": 1..100}``; ``mark`` ``{"mark": 2..5}``. Numbers must be JSON integers (no floats,
    no booleans) and no other keys are allowed. Raises :class:`GradeValueError`.
    """
    if component not in _VALUE_KEYS:
        raise GradeValueError(
            f"unknown grade component {component!r}; expected one of {', '.join(COMPONENTS)}"
        )
    if not isinstance(value, dict):
        raise GradeValueError(f"{component} value must be an object, got {type(value).__name__}")
    expected = _VALUE_KEYS[component]
    if value.keys() != expected:  # one comparison for the usual case (entries come by thousands)
        missing = sorted(expected - value.keys())
        if missing:
            raise GradeValueError(f"{component} value is missing {', '.join(missing)}")
        extra = sorted(str(k) for k in value.keys() - expected)
        raise GradeValueError(f"{component} value has unexpected keys: {', '.join(extra)}")
    if component == "FO":
        _check_int("FO score", value["score"], FO_MIN, FO_MAX)
    elif component == "mark":
        _check_int("mark", value["mark"], MARK_MIN, MARK_MAX)
    else:
        _check_int(f"{component} max", value["max"], 1, SUMMATIVE_MAX_LIMIT)
        _check_int(f"{component} points", value["points"], 0, value["max"])


# --- JSON configuration -----------------------------------------------------------------------

_WEIGHT_FIELDS: Final[tuple[str, ...]] = (
    "fo_weight",
    "sor_weight",
    "soch_weight",
    "fo_weight_no_soch",
    "sor_weight_no_soch",
)
_JSON_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "rule_id",
        "version",
        "effective_from",
        "kind",
        "bands",
        "percent_places",
        "band_places",
        "pass_percent",
        "description",
    }
    | set(_WEIGHT_FIELDS)
)


def rule_to_dict(rule: GradingRule) -> dict[str, Any]:
    """The JSON-ready form of a rule: decimals as strings, the date as ISO 8601."""
    out: dict[str, Any] = {
        "rule_id": rule.rule_id,
        "version": rule.version,
        "effective_from": rule.effective_from.isoformat(),
        "kind": rule.kind,
    }
    for name in _WEIGHT_FIELDS:
        out[name] = str(getattr(rule, name))
    out["bands"] = [[str(minimum), grade] for minimum, grade in rule.bands]
    out["percent_places"] = rule.percent_places
    if rule.band_places is not None:
        out["band_places"] = rule.band_places
    if rule.kind == "pass_fail":
        out["pass_percent"] = str(rule.pass_percent)
    out["description"] = rule.description
    return out


def rule_to_json(rule: GradingRule) -> str:
    """One rule as a JSON object (sorted keys, decimals as strings)."""
    return json.dumps(rule_to_dict(rule), sort_keys=True, ensure_ascii=False, indent=2)


def rules_to_json(rules: Iterable[GradingRule]) -> str:
    """Several rules as a JSON array."""
    return json.dumps(
        [rule_to_dict(r) for r in rules], sort_keys=True, ensure_ascii=False, indent=2
    )


def _reject_float(text: str) -> Any:
    raise RuleError(f"numbers with a fraction must be strings in rule JSON, got {text}")


def _reject_constant(text: str) -> Any:
    raise RuleError(f"{text} is not allowed in rule JSON")


def rules_from_json(text: str) -> tuple[GradingRule, ...]:
    """Parse rules from JSON: one rule object or an array of them (see :func:`rule_to_json`)."""
    try:
        data = json.loads(text, parse_float=_reject_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RuleError(f"rule JSON does not parse: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    return tuple(rule_from_dict(item) for item in items)


def _decimal(name: str, raw: object) -> Decimal:
    if not isinstance(raw, str):
        raise RuleError(f"{name} must be a decimal string, got {raw!r}")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise RuleError(f"{name} is not a decimal: {raw!r}") from exc
    if not value.is_finite():
        raise RuleError(f"{name} must be finite, got {raw!r}")
    return value


def rule_from_dict(data: object) -> GradingRule:
    """Build a rule from its JSON-ready form, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise RuleError("a rule must be a JSON object")
    unknown = sorted(set(data) - _JSON_FIELDS)
    if unknown:
        raise RuleError(f"unknown rule keys: {', '.join(unknown)}")
    for required in ("rule_id", "version", "effective_from", "kind"):
        if required not in data:
            raise RuleError(f"rule is missing {required}")
    rule_id = data["rule_id"]
    if not isinstance(rule_id, str):
        raise RuleError("rule_id must be a string")
    version = data["version"]
    if not _is_int(version):
        raise RuleError(f"{rule_id}: version must be an integer")
    raw_date = data["effective_from"]
    if not isinstance(raw_date, str):
        raise RuleError(f"{rule_id}: effective_from must be an ISO date string")
    try:
        effective_from = date.fromisoformat(raw_date)
    except ValueError as exc:
        raise RuleError(f"{rule_id}: effective_from is not an ISO date: {raw_date!r}") from exc
    kind = data["kind"]
    if kind not in RULE_KINDS:
        raise RuleError(f"{rule_id}: unknown kind {kind!r}")
    weights = {
        name: _decimal(f"{rule_id}.{name}", data[name]) if name in data else _ZERO
        for name in _WEIGHT_FIELDS
    }
    raw_bands = data.get("bands", [])
    if not isinstance(raw_bands, list):
        raise RuleError(f"{rule_id}: bands must be a list of [min_percent, grade]")
    bands: list[tuple[Decimal, int]] = []
    for band in raw_bands:
        if not isinstance(band, list) or len(band) != 2 or not _is_int(band[1]):
            raise RuleError(f'{rule_id}: each band is ["min_percent", grade]')
        bands.append((_decimal(f"{rule_id}.bands", band[0]), band[1]))
    places = data.get("percent_places", 1)
    if not _is_int(places):
        raise RuleError(f"{rule_id}: percent_places must be an integer")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"{rule_id}: description must be a string")
    band_places = data.get("band_places")
    if band_places is not None and not _is_int(band_places):
        raise RuleError(f"{rule_id}: band_places must be an integer")
    pass_percent = (
        _decimal(f"{rule_id}.pass_percent", data["pass_percent"])
        if "pass_percent" in data
        else _ZERO
    )
    return GradingRule(
        rule_id=rule_id,
        version=version,
        effective_from=effective_from,
        kind=cast(RuleKind, kind),
        bands=tuple(bands),
        percent_places=places,
        description=description,
        band_places=band_places,
        pass_percent=pass_percent,
        **weights,
    )
