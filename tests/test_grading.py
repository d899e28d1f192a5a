"""Grading rules: hand-computed term percents, band boundaries, versions, JSON, value checks."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from journal.grading import (
    DEFAULT_RULES,
    GradeValueError,
    GradingRule,
    NoRuleError,
    RuleError,
    TermMark,
    TermResult,
    TermWork,
    check_grade_value,
    compute_term,
    compute_year,
    compute_year_result,
    exact_percent_result,
    rule_for,
    rule_to_json,
    rules_from_json,
    rules_in_force,
    rules_to_json,
    whole_percent_criteria,
)

TODAY = date(2025, 10, 20)
CRITERIA = rule_for(DEFAULT_RULES, "kz-criteria", TODAY)
FIVE_POINT = rule_for(DEFAULT_RULES, "kz-five-point", TODAY)
NO_GRADES = rule_for(DEFAULT_RULES, "kz-no-grades", TODAY)


def term(work: TermWork) -> TermResult:
    return compute_term(CRITERIA, work)


# --- criteria rule: hand-computed mixes ---------------------------------------------------------


def test_fo_sor_soch_mix():
    # FO mean 7/10 x 25 = 17.5; SOR (12+8)/(15+10) = 0.8 x 25 = 20; SOCh 18/25 x 50 = 36
    result = term(TermWork(fo=(8, 6), sor=((12, 15), (8, 10)), soch=(18, 25)))
    assert result == TermResult(Decimal("73.5"), 4, "kz-criteria", 1, ())


def test_sor_is_sum_of_points_over_sum_of_max_not_mean_of_ratios():
    # (1 + 20) / (2 + 20) = 21/22; the mean of ratios would be 0.75
    # FO 10/10 x 25 = 25; SOR 21/22 x 25 = 23.8636..; SOCh 50/50 x 50 = 50 -> 98.8636.. -> 98.9
    result = term(TermWork(fo=(10,), sor=((1, 2), (20, 20)), soch=(50, 50)))
    assert result.percent == Decimal("98.9")
    assert result.grade == 5


def test_term_without_soch_uses_fo_50_sor_50():
    # FO mean 9/10 x 50 = 45; SOR 7/10 x 50 = 35 -> 80.0
    result = term(TermWork(fo=(10, 9, 8), sor=((7, 10),)))
    assert result == TermResult(Decimal("80.0"), 4, "kz-criteria", 1, ())


def test_percent_is_rounded_half_up_to_one_place():
    # FO 2/3 x 50 = 33.333..; SOR 1/3 x 50 = 16.666.. -> 50 exactly
    assert term(TermWork(fo=(5, 10, 5), sor=((1, 3),))).percent == Decimal("50.0")
    # FO 10 x 50 = 50; SOR 2/3 x 50 = 33.333.. -> 83.3
    assert term(TermWork(fo=(10,), sor=((2, 3),))).percent == Decimal("83.3")
    # FO 10 x 50 = 50; SOR 5/6 x 50 = 41.666.. -> 91.7
    assert term(TermWork(fo=(10,), sor=((5, 6),))).percent == Decimal("91.7")


def test_all_zero_points_is_grade_two_not_missing():
    result = term(TermWork(fo=(1,), sor=((0, 10),), soch=(0, 20)))
    # FO 1/10 x 25 = 2.5, the rest 0
    assert result == TermResult(Decimal("2.5"), 2, "kz-criteria", 1, ())


# --- band boundaries ------------------------------------------------------------------------

BOUNDARIES = [
    # (work, exact percent worked by hand, rounded percent, grade)
    # FO 4/10 x 25 = 10; SOR 10/10 x 25 = 25; SOCh 25/25 x 50 = 50
    (TermWork(fo=(4,), sor=((10, 10),), soch=(25, 25)), "85", "85.0", 5),
    # FO 6/10 x 25 = 15; SOR (85+21)/125 x 25 = 21.2; SOCh 39/40 x 50 = 48.75 -> 84.95 rounds up
    (TermWork(fo=(6,), sor=((85, 100), (21, 25)), soch=(39, 40)), "84.95", "85.0", 5),
    # FO 5/10 x 25 = 12.5; SOR (90+22)/125 x 25 = 22.4; SOCh 10/10 x 50 = 50
    (TermWork(fo=(5,), sor=((90, 100), (22, 25)), soch=(10, 10)), "84.9", "84.9", 4),
    # no SOCh: FO 7/10 x 50 = 35; SOR 49/50 x 50 = 49
    (TermWork(fo=(7,), sor=((49, 50),)), "84", "84.0", 4),
    # FO 1/10 x 25 = 2.5; SOR 5/10 x 25 = 12.5; SOCh 20/20 x 50 = 50
    (TermWork(fo=(1,), sor=((5, 10),), soch=(20, 20)), "65", "65.0", 4),
    # FO 1/10 x 25 = 2.5; SOR 106/125 x 25 = 21.2; SOCh 33/40 x 50 = 41.25 -> 64.95 rounds up
    (TermWork(fo=(1,), sor=((85, 100), (21, 25)), soch=(33, 40)), "64.95", "65.0", 4),
    # no SOCh: FO (4+5)/20 x 50 = 22.5; SOR 106/125 x 50 = 42.4
    (TermWork(fo=(4, 5), sor=((85, 100), (21, 25))), "64.9", "64.9", 3),
    # no SOCh: FO 3/10 x 50 = 15; SOR 49/50 x 50 = 49
    (TermWork(fo=(3,), sor=((49, 50),)), "64", "64.0", 3),
    # FO 1/10 x 25 = 2.5; SOR 0/10; SOCh 75/100 x 50 = 37.5
    (TermWork(fo=(1,), sor=((0, 10),), soch=(75, 100)), "40", "40.0", 3),
    # FO 1/10 x 25 = 2.5; SOR 106/125 x 25 = 21.2; SOCh 13/40 x 50 = 16.25 -> 39.95 rounds up
    (TermWork(fo=(1,), sor=((85, 100), (21, 25)), soch=(13, 40)), "39.95", "40.0", 3),
    # no SOCh: FO (1+2)/20 x 50 = 7.5; SOR 81/125 x 50 = 32.4
    (TermWork(fo=(1, 2), sor=((60, 100), (21, 25))), "39.9", "39.9", 2),
    # no SOCh: FO 1/10 x 50 = 5; SOR 34/50 x 50 = 34
    (TermWork(fo=(1,), sor=((34, 50),)), "39", "39.0", 2),
]


@pytest.mark.parametrize(("work", "exact", "rounded", "grade"), BOUNDARIES)
def test_band_boundaries(work: TermWork, exact: str, rounded: str, grade: int):
    result = term(work)
    assert result.percent == Decimal(rounded), f"exact {exact}"
    assert str(result.percent) == rounded
    assert result.grade == grade
    assert result.missing == ()


def test_grade_for_percent_edges():
    assert CRITERIA.grade_for_percent(Decimal("100.0")) == 5
    assert CRITERIA.grade_for_percent(Decimal("85.0")) == 5
    assert CRITERIA.grade_for_percent(Decimal("84.9")) == 4
    assert CRITERIA.grade_for_percent(Decimal("65.0")) == 4
    assert CRITERIA.grade_for_percent(Decimal("64.9")) == 3
    assert CRITERIA.grade_for_percent(Decimal("40.0")) == 3
    assert CRITERIA.grade_for_percent(Decimal("39.9")) == 2
    assert CRITERIA.grade_for_percent(Decimal("0.0")) == 2


# --- missing work ---------------------------------------------------------------------------


def test_no_work_at_all_has_no_grade():
    result = term(TermWork())
    assert result.percent is None and result.grade is None
    assert result.missing == ("no FO", "no SOR")
    planned = term(TermWork(soch_planned=True))
    assert planned.grade is None
    assert planned.missing == ("no FO", "no SOR", "no SOCh")


def test_missing_sor_weight_goes_to_fo_in_a_term_without_soch():
    # only FO: 8/10 carries the whole weight -> 80.0
    assert term(TermWork(fo=(8,))) == TermResult(Decimal("80.0"), 4, "kz-criteria", 1, ("no SOR",))


def test_missing_fo_weight_goes_to_sor():
    # only SOR: 9/20 -> 45.0
    assert term(TermWork(sor=((9, 20),))) == TermResult(
        Decimal("45.0"), 3, "kz-criteria", 1, ("no FO",)
    )


def test_missing_sor_is_redistributed_proportionally_with_soch():
    # FO 6/10 weight 25, SOCh 40/50 weight 50: (25 x 0.6 + 50 x 0.8) / 75 = 73.333.. -> 73.3
    result = term(TermWork(fo=(6,), soch=(40, 50)))
    assert result == TermResult(Decimal("73.3"), 4, "kz-criteria", 1, ("no SOR",))


def test_planned_soch_not_written_is_incomplete_not_reweighted():
    # FO 10/10 weight 25, SOR 10/20 weight 25 -> (25 + 12.5) / 50 = 75.0, shown provisional
    result = term(TermWork(fo=(10,), sor=((10, 20),), soch_planned=True))
    assert result == TermResult(
        Decimal("75.0"), None, "kz-criteria", 1, ("no SOCh",), incomplete=("SOCh",)
    )
    # The school decides to count what is there: the weights are then redistributed.
    decided = term(TermWork(fo=(10,), sor=((10, 20),), soch_planned=True, count_present=True))
    assert decided == TermResult(Decimal("75.0"), 4, "kz-criteria", 1, ("no SOCh",))


def test_fewer_sor_than_planned_is_incomplete_until_a_make_up():
    work = TermWork(fo=(8,), sor=((5, 10),), soch=(20, 25), sor_planned=2)
    assert term(work).incomplete == ("SOR",) and term(work).grade is None
    made_up = replace(work, sor=((5, 10), (9, 10)))
    assert term(made_up).incomplete == () and term(made_up).grade == 4


def test_only_soch():
    result = term(TermWork(soch=(17, 20)))
    assert result == TermResult(Decimal("85.0"), 5, "kz-criteria", 1, ("no FO", "no SOR"))


# --- five-point and no-grade rules, year grades --------------------------------------------


def test_five_point_average_rounds_half_up():
    assert compute_term(FIVE_POINT, TermWork(marks=(4, 5))).grade == 5  # 4.5 -> 5
    assert compute_term(FIVE_POINT, TermWork(marks=(3, 4, 4))).grade == 4  # 3.67 -> 4
    assert compute_term(FIVE_POINT, TermWork(marks=(3, 3, 4))).grade == 3  # 3.33 -> 3
    assert compute_term(FIVE_POINT, TermWork(marks=(2, 3))).grade == 3  # 2.5 -> 3
    result = compute_term(FIVE_POINT, TermWork(marks=(5,)))
    assert (result.percent, result.rule_id, result.rule_version) == (None, "kz-five-point", 1)
    assert compute_term(FIVE_POINT, TermWork()) == TermResult(
        None, None, "kz-five-point", 1, ("no marks",)
    )


def test_no_grades_rule():
    result = compute_term(NO_GRADES, TermWork(fo=(7,)))
    assert result == TermResult(None, None, "kz-no-grades", 1, ())
    assert compute_year(NO_GRADES, [None, None, None, None]) is None


def test_compute_year():
    assert compute_year(CRITERIA, [4, 5, 4, 5]) == 5  # 4.5 -> 5
    assert compute_year(CRITERIA, [4, 4, 4, 5]) == 4  # 4.25
    assert compute_year(CRITERIA, [3, 4, 4, 4]) == 4  # 3.75
    assert compute_year(CRITERIA, [5, None, 4, None]) == 5  # transferred in: 4.5
    assert compute_year(CRITERIA, [3, 2]) == 3  # half-year subject: 2.5 -> 3
    assert compute_year(CRITERIA, [None, None]) is None
    assert compute_year(CRITERIA, []) is None


# --- rounding: version 2 rounds to a whole percent before banding --------------------------

WHOLE = whole_percent_criteria(date(2026, 9, 1))
ROUNDING_TABLE = [
    # exact percent, (shown, grade) under version 1, (shown, grade) under version 2
    ("84.5", ("84.5", 4), ("84.5", 5)),
    ("84.917", ("84.9", 4), ("84.9", 5)),
    ("64.5", ("64.5", 3), ("64.5", 4)),
    ("39.5", ("39.5", 2), ("39.5", 3)),
    ("39.958", ("40.0", 3), ("40.0", 3)),
    ("43.11", ("43.1", 3), ("43.1", 3)),
    ("43.52", ("43.5", 3), ("43.5", 3)),
    ("84.49", ("84.5", 4), ("84.5", 4)),  # 84.49 -> 84: still 4 under version 2
]


@pytest.mark.parametrize(("exact", "old", "new"), ROUNDING_TABLE)
def test_the_rounding_table(exact: str, old: tuple[str, int], new: tuple[str, int]):
    value = Fraction(Decimal(exact))
    assert exact_percent_result(CRITERIA, value) == (Decimal(old[0]), old[1])
    assert exact_percent_result(WHOLE, value) == (Decimal(new[0]), new[1])


def test_version_2_applies_from_its_date_and_version_1_before():
    rules = rules_in_force(date(2026, 9, 1))
    assert rule_for(rules, "kz-criteria", date(2026, 8, 31)).version == 1
    assert rule_for(rules, "kz-criteria", date(2026, 12, 28)) == WHOLE
    # FO 8.5 x 25 = 21.25; SOR 17/20 x 25 = 21.25; SOCh 21/25 x 50 = 42 -> 84.5
    work = TermWork(fo=(9, 8), sor=((17, 20),), soch=(21, 25))
    assert compute_term(WHOLE, work) == TermResult(Decimal("84.5"), 5, "kz-criteria", 2, ())
    assert compute_term(CRITERIA, work) == TermResult(Decimal("84.5"), 4, "kz-criteria", 1, ())
    assert rules_in_force(None) == DEFAULT_RULES
    with pytest.raises(RuleError):
        rules_in_force(date(2026, 9, 1), [WHOLE])


def test_pass_fail_rule():
    rule = rule_for(DEFAULT_RULES, "kz-pass-fail", TODAY)
    # FO 4/10 x 50 = 20; SOR 39/100 x 50 = 19.5 -> 39.5 -> 40: pass
    assert compute_term(rule, TermWork(fo=(4,), sor=((39, 100),))).result == "pass"
    low = compute_term(rule, TermWork(fo=(4,), sor=((38, 100),)))  # 39.0
    assert (low.percent, low.grade, low.result) == (Decimal("39.0"), None, "fail")


def test_year_results():
    grade = [TermMark(grade=g) for g in (4, 5, 4, 5)]
    assert compute_year_result(WHOLE, grade).grade == 5
    assert compute_year_result(WHOLE, [TermMark(grade=3), TermMark(grade=2)]).grade == 3
    exempt_once = [TermMark(grade=4), TermMark(status="exempt"), TermMark(grade=5)]
    assert compute_year_result(WHOLE, exempt_once).grade == 5  # 4.5
    missing = compute_year_result(WHOLE, [TermMark(grade=4), TermMark()])
    assert (missing.grade, missing.incomplete) == (None, (2,))
    assert compute_year_result(WHOLE, [TermMark(status="exempt")] * 2).status == "exempt"
    mixed = [TermMark(status="exempt"), TermMark(status="not_attested")]
    assert compute_year_result(WHOLE, mixed).status == "not_attested"
    pass_fail = rule_for(DEFAULT_RULES, "kz-pass-fail", TODAY)
    passes = [TermMark(result="pass"), TermMark(result="pass")]
    assert compute_year_result(pass_fail, passes).result == "pass"
    failed = [TermMark(result="pass"), TermMark(result="fail")]
    assert compute_year_result(pass_fail, failed).result == "fail"


# --- versions by date -----------------------------------------------------------------------

V2 = GradingRule(
    rule_id="kz-criteria",
    version=2,
    effective_from=date(2026, 1, 1),
    kind="criteria",
    fo_weight=Decimal(20),
    sor_weight=Decimal(30),
    soch_weight=Decimal(50),
    fo_weight_no_soch=Decimal(40),
    sor_weight_no_soch=Decimal(60),
    bands=((Decimal(86), 5), (Decimal(65), 4), (Decimal(40), 3), (Decimal(0), 2)),
)


def test_rule_version_change_in_the_middle_of_a_year():
    rules = (*DEFAULT_RULES, V2)
    q2 = rule_for(rules, "kz-criteria", date(2025, 12, 26))
    q3 = rule_for(rules, "kz-criteria", date(2026, 3, 20))
    assert (q2.version, q3.version) == (1, 2)
    assert rule_for(rules, "kz-criteria", date(2026, 1, 1)).version == 2
    assert rule_for(rules, "kz-criteria", date(2025, 12, 31)).version == 1

    work = TermWork(fo=(9,), sor=((14, 20),), soch=(43, 50))
    # v1: 22.5 + 17.5 + 43 = 83.0; v2: 18 + 21 + 43 = 82.0
    assert compute_term(q2, work) == TermResult(Decimal("83.0"), 4, "kz-criteria", 1, ())
    assert compute_term(q3, work) == TermResult(Decimal("82.0"), 4, "kz-criteria", 2, ())
    # the same work lands on 85.0 under both versions: a 5 under v1, a 4 under v2 (band at 86)
    # v1: 25 + 25 + 35 = 85; v2: 20 + 30 + 35 = 85
    at_85 = TermWork(fo=(10,), sor=((10, 10),), soch=(35, 50))
    assert compute_term(q2, at_85) == TermResult(Decimal("85.0"), 5, "kz-criteria", 1, ())
    assert compute_term(q3, at_85) == TermResult(Decimal("85.0"), 4, "kz-criteria", 2, ())
    # year grade from terms graded under different versions is still the mean of the grades
    assert compute_year(q3, [4, 5, 4, 4]) == 4


def test_same_effective_date_higher_version_wins():
    fix = replace(V2, version=3, fo_weight=Decimal(25), sor_weight=Decimal(25))
    assert rule_for((*DEFAULT_RULES, V2, fix), "kz-criteria", date(2026, 2, 1)) is fix


def test_rule_for_unknown_or_too_early():
    with pytest.raises(NoRuleError, match="kz-criteria"):
        rule_for(DEFAULT_RULES, "kz-criteria", date(2000, 1, 1))
    with pytest.raises(NoRuleError):
        rule_for(DEFAULT_RULES, "nope", TODAY)


# --- JSON configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule", [*DEFAULT_RULES, V2, WHOLE], ids=lambda r: f"{r.rule_id}-v{r.version}"
)
def test_json_round_trip(rule: GradingRule):
    text = rule_to_json(rule)
    assert rules_from_json(text) == (rule,)
    data = json.loads(text)
    assert all(isinstance(w, str) for w in (data["fo_weight"], data["soch_weight"]))


def test_json_round_trip_of_a_list_keeps_decimal_exactness():
    odd = replace(V2, version=4, fo_weight=Decimal("12.345"), sor_weight=Decimal("37.655"))
    rules = (*DEFAULT_RULES, odd)
    parsed = rules_from_json(rules_to_json(rules))
    assert parsed == rules
    assert parsed[-1].fo_weight == Decimal("12.345")


def test_json_rejects_floats_and_unknown_keys():
    data = json.loads(rule_to_json(CRITERIA))
    with pytest.raises(RuleError, match="strings"):
        rules_from_json(json.dumps(data).replace('"25"', "25.0", 1))
    with pytest.raises(RuleError, match="decimal string"):
        rules_from_json(json.dumps({**data, "fo_weight": 25}))
    with pytest.raises(RuleError, match="unknown rule keys"):
        rules_from_json(json.dumps({**data, "year": 2025}))
    with pytest.raises(RuleError, match="descending"):
        rules_from_json(json.dumps({**data, "bands": [["40", 3], ["85", 5]]}))
    with pytest.raises(RuleError, match="kind"):
        rules_from_json(json.dumps({**data, "kind": "magic"}))
    with pytest.raises(RuleError, match="parse"):
        rules_from_json("{")


# --- entry value validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "value"),
    [
        ("FO", {"score": 1}),
        ("FO", {"score": 10}),
        ("SOR", {"points": 0, "max": 15}),
        ("SOR", {"points": 15, "max": 15}),
        ("SOCh", {"points": 100, "max": 100}),
        ("mark", {"mark": 2}),
        ("mark", {"mark": 5}),
    ],
)
def test_valid_grade_values(component: str, value: dict[str, int]):
    check_grade_value(component, value)


@pytest.mark.parametrize(
    ("component", "value", "message"),
    [
        ("FO", {"score": 0}, "FO score must be between 1 and 10, got 0"),
        ("FO", {"score": 11}, "between 1 and 10"),
        ("FO", {"score": 7.0}, "FO score must be an integer, got 7.0"),
        ("FO", {"score": True}, "must be an integer, got True"),
        ("FO", {"score": "7"}, "must be an integer"),
        ("FO", {}, "FO value is missing score"),
        ("FO", {"score": 5, "comment": "x"}, "unexpected keys: comment"),
        ("SOR", {"points": 16, "max": 15}, "SOR points must be between 0 and 15, got 16"),
        ("SOR", {"points": -1, "max": 15}, "between 0 and 15"),
        ("SOR", {"points": 1, "max": 0}, "SOR max must be between 1 and 100, got 0"),
        ("SOR", {"points": 1, "max": 101}, "between 1 and 100"),
        ("SOR", {"points": 1}, "SOR value is missing max"),
        ("SOCh", {"points": 1.5, "max": 20}, "SOCh points must be an integer"),
        ("SOCh", {"points": 1, "max": False}, "SOCh max must be an integer"),
        ("mark", {"mark": 1}, "mark must be between 2 and 5, got 1"),
        ("mark", {"mark": 6}, "between 2 and 5"),
        ("grade", {"mark": 5}, "unknown grade component 'grade'"),
        ("fo", {"score": 5}, "unknown grade component"),
    ],
)
def test_invalid_grade_values(component: str, value: dict[str, object], message: str):
    with pytest.raises(GradeValueError, match=message.replace("(", r"\(")) as info:
        check_grade_value(component, value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_non_dict_value():
    with pytest.raises(GradeValueError, match="must be an object"):
        check_grade_value("FO", [5])  # type: ignore[arg-type]


def test_compute_term_rejects_out_of_range_work():
    with pytest.raises(GradeValueError):
        term(TermWork(fo=(11,)))
    with pytest.raises(GradeValueError):
        term(TermWork(sor=((5, 4),)))
    with pytest.raises(GradeValueError):
        compute_term(FIVE_POINT, TermWork(marks=(1,)))


def test_rule_validation():
    with pytest.raises(RuleError):
        replace(CRITERIA, version=0)
    with pytest.raises(RuleError):
        replace(CRITERIA, fo_weight=Decimal(-1))
    with pytest.raises(RuleError):
        replace(CRITERIA, bands=())
    with pytest.raises(RuleError):
        replace(CRITERIA, fo_weight_no_soch=Decimal(0), sor_weight_no_soch=Decimal(0))
