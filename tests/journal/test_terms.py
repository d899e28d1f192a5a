"""Closing a term, and the admin-approved late corrections that are the only way back in."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from journal.models import Entry, Log, Term, TermClosure
from journal.recording.recorder import EntryRefused, record_entry
from journal.services import verify_journal
from journal.year.closing import TermError, approve_late_correction, close_term

from ..factories import NOW, add_user


@pytest.fixture
def closed(world):
    first = record_entry(world.session, world.signed("grade"), now=NOW)
    admin = add_user(world.session, world.school, "school_admin")
    # In November, before quarter 2 ends and with quarter 1 open: only with a reason.
    close_term(world.session, world.q2, world.log_key, closed_by=admin, now=NOW, reason="test")
    world.first = first
    world.admin = admin
    return world


def test_close_term_seals_every_journal_and_records_the_event(closed):
    closure = closed.session.scalar(sa.select(TermClosure))
    # The grade and the pupil's sealed result, both covered by the closing checkpoint.
    assert (closure.log_id, closure.checkpoint_size) == (closed.log.id, 2)
    sealed = closed.session.scalar(
        sa.select(Entry).where(Entry.log_id == closed.log.id, Entry.seq == 1)
    )
    result = json.loads(sealed.leaf)["payload"]
    assert result["kind"] == "sealed_term_grade" and sealed.student_id == closed.student.id
    assert (result["grade"], result["percent"], result["how"]) == (4, "80.0", "computed")
    assert result["rule"] == {"id": "kz-criteria", "version": 2}
    assert result["author"] is None  # signed by the school's log key, not a device
    assert verify_journal(closed.session, closed.log).ok
    ledger = closed.session.scalar(sa.select(Log).where(Log.kind == "ledger"))
    (record,) = closed.session.scalars(sa.select(Entry).where(Entry.log_id == ledger.id)).all()
    payload = json.loads(record.leaf)["payload"]
    assert payload["kind"] == "term_closed"
    assert payload["journals"] == [
        {"origin": closed.log.origin, "size": 2, "root": payload["journals"][0]["root"]}
    ]
    # Closed in November, before the quarter's end and with quarter 1 open: the reason is kept.
    assert (payload["early"], payload["out_of_order"], payload["reason"]) == (True, True, "test")
    assert verify_journal(closed.session, ledger).ok


def test_a_closed_term_cannot_be_closed_again(closed):
    with pytest.raises(TermError):
        close_term(
            closed.session, closed.q2, closed.log_key, closed_by=closed.admin, now=NOW, reason="x"
        )


def correction(world):
    return world.signed(
        "correction",
        corrects="grade",
        component="FO",
        supersedes=[world.first.entry_id],
        reason="marked the wrong student",
        value={"score": 5},
    )


def test_entries_and_corrections_are_refused_after_close(closed):
    with pytest.raises(EntryRefused) as caught:
        record_entry(closed.session, correction(closed), now=NOW)
    assert caught.value.code == "closed_term"


def test_an_approved_late_correction_is_accepted_and_the_approval_is_an_entry(closed):
    cell = f"FO:{closed.lesson.id}:{closed.student.id}"
    approve_late_correction(
        closed.session,
        closed.log,
        cell,
        closed.log_key,
        approved_by=closed.admin,
        reason="parent's complaint",
        now=NOW,
    )
    accepted = record_entry(closed.session, correction(closed), now=NOW + dt.timedelta(hours=1))
    assert accepted.status == "accepted"
    ledger = closed.session.scalar(sa.select(Log).where(Log.kind == "ledger"))
    kinds = [
        json.loads(leaf)["payload"]["kind"]
        for leaf in closed.session.scalars(
            sa.select(Entry.leaf).where(Entry.log_id == ledger.id).order_by(Entry.seq)
        )
    ]
    assert kinds == ["term_closed", "late_correction_approved"]
    # The approval covers that one cell only, and only corrections.
    with pytest.raises(EntryRefused):
        record_entry(closed.session, closed.signed("grade"), now=NOW)


def test_an_approval_expires(closed):
    cell = f"FO:{closed.lesson.id}:{closed.student.id}"
    approve_late_correction(
        closed.session,
        closed.log,
        cell,
        closed.log_key,
        approved_by=closed.admin,
        reason="complaint",
        now=NOW,
    )
    with pytest.raises(EntryRefused) as caught:
        record_entry(closed.session, correction(closed), now=NOW + dt.timedelta(days=8))
    assert caught.value.code == "closed_term"


def test_an_approval_needs_a_reason(closed):
    with pytest.raises(TermError):
        approve_late_correction(
            closed.session,
            closed.log,
            "FO:1:1",
            closed.log_key,
            approved_by=closed.admin,
            reason="  ",
            now=NOW,
        )


# -- closing is a deliberate, checked act ----------------------------------------------------------

DECEMBER_6 = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)  # 09:00 in Almaty


def add_quarters(world):
    q3 = Term(
        school_year_id=world.year.id,
        kind="quarter",
        number=3,
        starts_on=dt.date(2027, 1, 8),
        ends_on=dt.date(2027, 3, 19),
    )
    q4 = Term(
        school_year_id=world.year.id,
        kind="quarter",
        number=4,
        starts_on=dt.date(2027, 3, 30),
        ends_on=dt.date(2027, 5, 25),
    )
    world.session.add_all([q3, q4])
    world.session.flush()
    return q3, q4


def ledger_payloads(world):
    ledger = world.session.scalar(
        sa.select(Log).where(Log.kind == "ledger", Log.school_id == world.school.id)
    )
    return [
        json.loads(leaf)["payload"]
        for leaf in world.session.scalars(
            sa.select(Entry.leaf).where(Entry.log_id == ledger.id).order_by(Entry.seq)
        )
    ]


def test_closing_quarter_4_in_december_needs_a_written_reason(world):
    _q3, q4 = add_quarters(world)
    admin = add_user(world.session, world.school, "school_admin")
    with pytest.raises(TermError) as refused:
        close_term(world.session, q4, world.log_key, closed_by=admin, now=DECEMBER_6)
    assert "reason" in str(refused.value)
    assert q4.closed_at is None and ledger_payloads(world) == []
    assert world.session.scalar(sa.select(TermClosure)) is None

    close_term(
        world.session,
        q4,
        world.log_key,
        closed_by=admin,
        now=DECEMBER_6,
        reason="The school closes for renovation",
    )
    (closed,) = ledger_payloads(world)
    assert closed["term"] == {"kind": "quarter", "number": 4}
    assert closed["early"] and closed["out_of_order"]
    assert closed["reason"] == "The school closes for renovation"


def test_closing_in_order_on_the_last_day_needs_no_reason_in_the_school_time_zone(world):
    admin = add_user(world.session, world.school, "school_admin")
    # 24 October, 23:30 in Almaty (18:30 UTC): the day before quarter 1's last day.
    before = dt.datetime(2026, 10, 24, 18, 30, tzinfo=dt.UTC)
    with pytest.raises(TermError):
        close_term(world.session, world.q1, world.log_key, closed_by=admin, now=before)
    # 25 October, 00:30 in Almaty, still the 24th in UTC: the last day has come.
    on_the_day = dt.datetime(2026, 10, 24, 19, 30, tzinfo=dt.UTC)
    close_term(world.session, world.q1, world.log_key, closed_by=admin, now=on_the_day)
    (closed,) = ledger_payloads(world)
    assert "reason" not in closed and "early" not in closed


def test_closing_out_of_order_needs_a_reason(world):
    admin = add_user(world.session, world.school, "school_admin")
    after_q2 = dt.datetime(2026, 12, 29, 6, 0, tzinfo=dt.UTC)
    with pytest.raises(TermError):
        close_term(world.session, world.q2, world.log_key, closed_by=admin, now=after_q2)
    close_term(world.session, world.q1, world.log_key, closed_by=admin, now=after_q2)
    close_term(world.session, world.q2, world.log_key, closed_by=admin, now=after_q2)
    assert [p["term"]["number"] for p in ledger_payloads(world)] == [1, 2]


def test_the_pre_close_report_lists_a_missing_soch_and_lessons_without_topic(world):
    from journal.models import AssessmentPlan
    from journal.year.closing import pre_close_report

    second = world.add_student(last_name="Әбілқайыр", first_name="Дана")
    world.session.add(
        AssessmentPlan(
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
            term_id=world.q2.id,
            soch_planned=True,
            sor_count=0,
        )
    )
    world.session.flush()
    for entry in (
        world.signed("grade", value={"score": 9}),
        world.signed("grade", component="SOCh", value={"points": 18, "max": 20}),
        world.signed("grade", student=second.id, value={"score": 7}),
    ):
        record_entry(world.session, entry, now=NOW)
    report = pre_close_report(world.session, world.q2, now=DECEMBER_6)
    (line,) = report.subjects
    assert [(name, missing) for _id, name, missing in line.incomplete] == [
        ("Әбілқайыр Дана", ("SOCh",))
    ]
    assert line.lessons_without_topic == [world.lesson.date]
    assert report.holds == ["early", "out_of_order"]


def test_an_incomplete_pupil_is_sealed_without_a_grade_unless_the_admin_decides(world):
    from journal.models import AssessmentPlan
    from journal.year.closing import decide_incomplete

    world.session.add(
        AssessmentPlan(
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
            term_id=world.q2.id,
            soch_planned=True,
            sor_count=0,
        )
    )
    second = world.add_student()
    world.session.flush()
    record_entry(world.session, world.signed("grade", value={"score": 9}), now=NOW)
    record_entry(world.session, world.signed("grade", student=second.id), now=NOW)
    admin = add_user(world.session, world.school, "school_admin")
    with pytest.raises(TermError):
        decide_incomplete(
            world.session,
            world.class_group,
            world.subject,
            world.q2,
            second,
            world.log_key,
            decided_by=admin,
            reason=" ",
        )
    decide_incomplete(
        world.session,
        world.class_group,
        world.subject,
        world.q2,
        second,
        world.log_key,
        decided_by=admin,
        reason="ill during the СОЧ (certificate 17)",
        now=NOW,
    )
    close_term(world.session, world.q2, world.log_key, closed_by=admin, now=NOW, reason="x")
    sealed = {
        row.student_id: json.loads(row.leaf)["payload"]
        for row in world.session.scalars(
            sa.select(Entry).where(Entry.kind == "sealed_term_grade", Entry.log_id == world.log.id)
        )
    }
    assert sealed[world.student.id]["grade"] is None
    assert sealed[world.student.id]["incomplete"] == ["SOCh"]
    assert (sealed[second.id]["grade"], sealed[second.id]["percent"]) == (4, "80.0")


def test_close_term_command_prints_the_report_and_needs_yes(fresh_app):
    from journal.db import db

    from ..factories import build_world

    with fresh_app.app_context():
        world = build_world(db.session, fresh_app.config["KEYS_DIR"])
        q3, q4 = add_quarters(world)
        year_id = world.year.id
        db.session.commit()
    runner = fresh_app.test_cli_runner()
    shown = runner.invoke(args=["journal", "close-term", str(year_id), "4"])
    assert shown.exit_code == 1, shown.output
    assert "Pre-close report for quarter 4" in shown.output
    assert "Nothing closed" in shown.output and "needs a reason" in shown.output
    refused = runner.invoke(args=["journal", "close-term", str(year_id), "4", "--yes"])
    assert refused.exit_code == 1 and "reason" in refused.output
    done = runner.invoke(
        args=["journal", "close-term", str(year_id), "4", "--yes", "--reason", "renovation"]
    )
    assert done.exit_code == 0, done.output
    with fresh_app.app_context():
        assert db.session.get(Term, q4.id).closed_at is not None
        assert db.session.get(Term, q3.id).closed_at is None


def test_the_admin_sees_the_report_and_must_confirm(app, world):
    from ..factories import signed_in_client

    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    client = signed_in_client(app, admin)
    page = client.get(f"/admin/terms/{world.q2.id}/close")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="pre-close-report"' in html and "Lessons without a topic" in html
    token = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    unconfirmed = client.post(
        f"/admin/terms/{world.q2.id}/close", data={"csrf_token": token, "reason": "x"}
    )
    assert unconfirmed.status_code == 302 and world.q2.closed_at is None
    no_reason = client.post(
        f"/admin/terms/{world.q2.id}/close", data={"csrf_token": token, "confirm": "yes"}
    )
    assert no_reason.status_code == 302
    world.session.refresh(world.q2)
    assert world.q2.closed_at is None
    closed = client.post(
        f"/admin/terms/{world.q2.id}/close",
        data={"csrf_token": token, "confirm": "yes", "reason": "inspection visit"},
    )
    assert closed.status_code == 302
    world.session.refresh(world.q2)
    assert world.q2.closed_at is not None
    assert ledger_payloads(world)[-1]["reason"] == "inspection visit"
