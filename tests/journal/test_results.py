"""Term and year results as the server takes them (issue 14): a confirmation must be what the
rule computes from the journal (or a status), under the version in force; it is replaced only
by naming it; year grades exist once every term is closed; marks for lessons that have not
taken place are refused; a correction must name an entry the server holds (issue 13, 9); a term
of the wrong kind is refused (issue 13, 10)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from journal.models import Entry, Lesson, Term
from journal.recording.recorder import EntryRefused, record_entry
from journal.year.closing import TermError, close_term, close_year

from ..factories import NOW, add_user


def refused(world, submission, now=NOW):
    with pytest.raises(EntryRefused) as caught:
        record_entry(world.session, submission, now=now)
    return caught.value


def confirmation(world, **fields):
    values = {
        "student": world.student.id,
        "subject": world.subject.id,
        "term": world.q2.id,
        "grade": 4,
        "percent": "80.0",
        "rule": {"id": "kz-criteria", "version": 2},
    }
    values.update(fields)
    return world.signed("term_grade", **values)


def count(world, kind):
    return world.session.scalar(
        sa.select(sa.func.count()).select_from(Entry).where(Entry.kind == kind)
    )


def test_a_confirmed_grade_must_be_the_computed_one(world):
    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)  # 80.0 -> 4
    wrong = refused(world, confirmation(world, grade=5))
    assert wrong.code == "not_computed_grade" and "gives 4 (80.0 %)" in wrong.message
    assert refused(world, confirmation(world, percent="81.0")).code == "not_computed_grade"
    made_up = refused(world, confirmation(world, rule={"id": "made-up", "version": 1}))
    assert made_up.code == "bad_rule"
    # Version 1 is known, but version 2 is the one in force on quarter 2's last day.
    old = refused(world, confirmation(world, rule={"id": "kz-criteria", "version": 1}))
    assert old.code == "bad_rule" and "version 2" in old.message
    assert count(world, "term_grade") == 0
    assert record_entry(world.session, confirmation(world), now=NOW).status == "accepted"


def test_a_confirmation_is_replaced_only_by_naming_it_with_a_reason(world):
    fo = world.signed("grade", value={"score": 8})
    record_entry(world.session, fo, now=NOW)
    first = confirmation(world)
    record_entry(world.session, first, now=NOW)
    record_entry(
        world.session,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            value={"score": 9},
            supersedes=[fo["payload"]["entry_id"]],
            reason="Қайта тексерілді",
        ),
        now=NOW,
    )
    again = confirmation(world, grade=5, percent="90.0")
    assert refused(world, again).code == "already_confirmed"  # never silently lost
    named = confirmation(
        world,
        grade=5,
        percent="90.0",
        supersedes=[first["payload"]["entry_id"]],
        reason="the FO was corrected",
    )
    assert record_entry(world.session, named, now=NOW).status == "accepted"
    from journal.year.results import TermBook

    book = TermBook(world.session, world.class_group, world.log, world.q2)
    outcome = book.outcome(world.subject, world.student.id)
    assert (outcome.how, outcome.grade, outcome.confirmation) == (
        "confirmed",
        5,
        named["payload"]["entry_id"],
    )


def test_statuses_need_a_reason_and_are_sealed(world):
    no_reason = world.signed(
        "term_grade",
        student=world.student.id,
        subject=world.subject.id,
        term=world.q2.id,
        status="exempt",
        rule={"id": "kz-criteria", "version": 2},
    )
    assert refused(world, no_reason).code == "reason_required"
    exempt = world.signed(
        "term_grade",
        student=world.student.id,
        subject=world.subject.id,
        term=world.q2.id,
        status="exempt",
        reason="medical certificate № 12",
        rule={"id": "kz-criteria", "version": 2},
    )
    assert record_entry(world.session, exempt, now=NOW).status == "accepted"
    admin = add_user(world.session, world.school, "school_admin")
    close_term(world.session, world.q2, world.log_key, closed_by=admin, now=NOW, reason="x")
    sealed = json.loads(
        world.session.scalar(sa.select(Entry.leaf).where(Entry.kind == "sealed_term_grade"))
    )["payload"]
    assert (sealed["status"], sealed["reason"], sealed["how"]) == (
        "exempt",
        "medical certificate № 12",
        "confirmed",
    )
    assert sealed["confirmation"] == exempt["payload"]["entry_id"]


def test_pass_fail_subjects_confirm_a_result_not_a_grade(world):
    world.subject.pass_fail = True
    world.session.flush()
    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)
    graded = confirmation(world, rule={"id": "kz-pass-fail", "version": 1})
    assert refused(world, graded).code == "not_computed_grade"
    passed = confirmation(
        world, grade=None, result="pass", rule={"id": "kz-pass-fail", "version": 1}
    )
    assert record_entry(world.session, passed, now=NOW).status == "accepted"


def close_all(world, admin, now):
    for term in sorted(world.year.terms, key=lambda t: (t.kind, t.number)):
        if term.closed_at is None:
            close_term(world.session, term, world.log_key, closed_by=admin, now=now)


def year_grade(world, **fields):
    values = {
        "student": world.student.id,
        "subject": world.subject.id,
        "grade": 4,
        "rule": {"id": "kz-criteria", "version": 2},
    }
    values.update(fields)
    return world.signed("year_grade", **values)


def test_a_year_grade_is_refused_before_the_year_is_over_and_accepted_after(world):
    in_q1 = Lesson(
        class_group_id=world.class_group.id,
        subject_id=world.subject.id,
        date=dt.date(2026, 10, 5),
        period=1,
    )
    world.session.add(in_q1)
    world.session.flush()
    record_entry(world.session, world.signed("grade", lesson=in_q1.id, value={"score": 9}), now=NOW)
    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)
    assert refused(world, year_grade(world)).code == "year_open"
    admin = add_user(world.session, world.school, "school_admin")
    after = dt.datetime(2027, 5, 26, 6, 0, tzinfo=dt.UTC)
    world.session.refresh(world.year)
    close_all(world, admin, after)
    # Quarter 1 gave 5 (90.0 %), quarter 2 gave 4 (80.0 %): 4.5 rounds to 5.
    assert refused(world, year_grade(world, grade=4), now=after).code == "not_computed_grade"
    accepted = record_entry(world.session, year_grade(world, grade=5), now=after)
    assert accepted.status == "accepted"
    sealed = close_year(world.session, world.year, world.log_key, closed_by=admin, now=after)
    assert sealed == 1
    record = json.loads(
        world.session.scalar(sa.select(Entry.leaf).where(Entry.kind == "sealed_year_grade"))
    )["payload"]
    assert (record["grade"], record["how"]) == (5, "confirmed")
    assert refused(world, year_grade(world, grade=5), now=after).code == "closed_year"
    with pytest.raises(TermError):
        close_year(world.session, world.year, world.log_key, closed_by=admin, now=after)


def test_no_year_can_close_with_a_term_open(world):
    admin = add_user(world.session, world.school, "school_admin")
    with pytest.raises(TermError):
        close_year(world.session, world.year, world.log_key, closed_by=admin, now=NOW)


def test_marks_for_a_lesson_later_than_today_are_refused(world):
    later = Lesson(
        class_group_id=world.class_group.id,
        subject_id=world.subject.id,
        date=dt.date(2026, 12, 22),
        period=1,
    )
    world.session.add(later)
    world.session.flush()
    for kind, fields in (("grade", {}), ("attendance", {})):
        answer = refused(world, world.signed(kind, lesson=later.id, **fields))
        assert answer.code == "future_lesson"
    # A topic may be planned ahead.
    topic = world.signed("topic", lesson=later.id, topic="Келесі сабақ")
    assert record_entry(world.session, topic, now=NOW).status == "accepted"
    # On the lesson's day in Almaty (21 December, 19:30 UTC is the 22nd at 00:30), it is taken.
    on_the_day = dt.datetime(2026, 12, 21, 19, 30, tzinfo=dt.UTC)
    grade = world.signed("grade", lesson=later.id)
    assert record_entry(world.session, grade, now=on_the_day).status == "accepted"


def test_a_correction_of_an_unknown_entry_is_refused_and_hides_nothing(world):
    """Issue 13, 9: an unknown id in supersedes would hide whatever arrives under it later."""
    grade = world.signed("grade", value={"score": 3})
    correction = world.signed(
        "correction",
        corrects="grade",
        component="FO",
        value={"score": 8},
        supersedes=[grade["payload"]["entry_id"]],
        reason="Қате жазылды",
    )
    answer = refused(world, correction)
    assert answer.code == "bad_supersedes"
    assert count(world, "correction") == 0
    record_entry(world.session, grade, now=NOW)
    # Sent again once the entry is in (the grid's outbox does), it is taken.
    assert record_entry(world.session, correction, now=NOW).status == "accepted"


def test_a_term_grade_of_the_wrong_kind_of_term_is_refused(world):
    """Issue 13, 10: a half-year for a subject graded by quarters, and the reverse."""
    half = Term(
        school_year_id=world.year.id,
        kind="half",
        number=1,
        starts_on=dt.date(2026, 9, 1),
        ends_on=dt.date(2026, 12, 28),
    )
    world.session.add(half)
    world.session.flush()
    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)
    assert refused(world, confirmation(world, term=half.id)).code == "wrong_term_kind"
    world.subject.by_half_year = True
    world.session.flush()
    from journal.recording.recorder import Recorder

    assert refused(world, confirmation(world)).code == "wrong_term_kind"
    accepted = Recorder(world.session, now=NOW).record(confirmation(world, term=half.id))
    assert accepted.status == "accepted"


def test_the_admin_sets_a_subject_up_as_pass_fail(world):
    from journal.setup.classes import add_subject
    from journal.year.rules import rule_id_for

    subject = add_subject(world.session, world.school, "Өзін-өзі тану", pass_fail=True)
    assert rule_id_for(subject, world.class_group) == "kz-pass-fail"
    ungraded = add_subject(
        world.session, world.school, "Сынып сағаты", graded=False, pass_fail=True
    )
    assert not ungraded.pass_fail and rule_id_for(ungraded, world.class_group) == "kz-no-grades"


def test_the_last_terms_grid_offers_the_year_results_once_every_term_is_closed(app, world):
    import re

    from ..factories import signed_in_client

    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)
    client = signed_in_client(app, world.teacher)
    url = f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{world.q2.id}"
    assert 'id="year-grades"' not in client.get(url).get_data(as_text=True)
    admin = add_user(world.session, world.school, "school_admin")
    after = dt.datetime(2026, 12, 29, 6, 0, tzinfo=dt.UTC)
    close_all(world, admin, after)
    html = client.get(url).get_data(as_text=True)
    cell = re.search(
        rf'<td class="year-grade" data-student="{world.student.id}" data-code="([^"]*)" '
        r'data-confirmed="0"',
        html,
    )
    # Quarter 1 has no marks (sealed without a result): the year waits for it.
    assert cell is not None and cell.group(1) == "incomplete"
    assert 'id="confirm-year"' in html
