"""The pedagogical council's decisions and a graduating class's exam and final grades: signed
records in the school ledger log, proposed from the sealed year grades, refused whole on bad
input."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa

from journal.council.records import (
    Choice,
    CouncilError,
    final_grades,
    proposals,
    record_attestation_grade,
    record_decisions,
)
from journal.council.rules import (
    ADMITTED,
    EXTRA_ASSESSMENT,
    GRADUATED,
    PROMOTED,
    PROMOTION_RULES,
    RETAINED,
    promotion_rule,
    propose,
)
from journal.models import Entry, Lesson, Log
from journal.recording.recorder import record_entry
from journal.services import verify_journal
from journal.year.closing import close_term, close_year

from ..factories import NOW, add_user

Q1_DAY = dt.date(2026, 10, 1)
Q1_SICK_DAY = dt.date(2026, 10, 2)
LATE = dt.datetime(2027, 6, 1, 9, tzinfo=dt.UTC)


def test_the_proposing_rule_is_data_with_a_version():
    rule = promotion_rule(dt.date(2027, 5, 25))
    assert (rule.id, rule.version) == ("kz-promotion", 1) and rule in PROMOTION_RULES
    assert propose(rule, 5, ["5", "4", "pass"]) == PROMOTED
    assert propose(rule, 5, ["2", "4"]) == EXTRA_ASSESSMENT
    assert propose(rule, 5, ["2", "2", "4"]) == EXTRA_ASSESSMENT
    assert propose(rule, 5, ["2", "2", "2", "5"]) == RETAINED
    # Grade 1: no marks; retained only on the parents' application.
    assert propose(rule, 1, []) == PROMOTED
    assert propose(rule, 1, [], parents_application=True) == RETAINED
    assert propose(rule, 9, ["5", "4"]) == ADMITTED
    assert propose(rule, 9, ["5", "4"], final_grades=["5", "3"]) == GRADUATED
    assert propose(rule, 11, ["2", "2", "2"]) == RETAINED
    with pytest.raises(LookupError):
        promotion_rule(dt.date(2010, 5, 25))


def year_closed(world: Any, grade_level: int = 9) -> Any:
    """The world's class (grade ``grade_level``) with two pupils through a closed year: the
    first with an FO 8 in each quarter (year grade 4), the second with an FO 3 (year grade 2)
    and ill on another day of quarter 1."""
    session = world.session
    world.class_group.grade_level = grade_level
    world.class_group.name = f"{grade_level}А"
    world.other = world.add_student(last_name="Әбдіғали", first_name="Нұрлан")
    lessons = []
    for day in (Q1_DAY, Q1_SICK_DAY):
        lesson = Lesson(
            class_group_id=world.class_group.id, subject_id=world.subject.id, date=day, period=1
        )
        session.add(lesson)
        lessons.append(lesson)
    session.flush()
    for lesson in (lessons[0], world.lesson):  # one lesson of each quarter
        for student, score in ((world.student, 8), (world.other, 3)):
            record_entry(
                session,
                world.signed("grade", lesson=lesson.id, student=student.id, value={"score": score}),
                now=NOW,
            )
    record_entry(
        session,
        world.signed("attendance", lesson=lessons[1].id, student=world.other.id, value="sick"),
        now=NOW,
    )
    world.admin = add_user(session, world.school, "school_admin")
    close_term(session, world.q1, world.log_key, closed_by=world.admin, now=NOW, reason="test")
    world.q1_closed_size = world.log.size
    close_term(session, world.q2, world.log_key, closed_by=world.admin, now=LATE, reason="test")
    close_year(session, world.year, world.log_key, closed_by=world.admin, now=LATE)
    return world


def ledger_log(world: Any) -> Log:
    return world.session.scalar(
        sa.select(Log).where(Log.kind == "ledger", Log.school_id == world.school.id)
    )


def ledger_kinds(world: Any) -> list[str]:
    log = ledger_log(world)
    return list(
        world.session.scalars(
            sa.select(Entry.kind).where(Entry.log_id == log.id).order_by(Entry.seq)
        )
    )


def test_the_list_is_made_from_the_sealed_year_grades(world):
    year_closed(world, grade_level=7)
    lines = {line.pupil.id: line for line in proposals(world.session, world.class_group)}
    assert lines[world.student.id].year_grades == {"Математика": "4"}
    assert lines[world.student.id].proposed == PROMOTED
    assert lines[world.other.id].twos == ("Математика",)
    assert lines[world.other.id].proposed == EXTRA_ASSESSMENT


def test_no_list_before_the_year_is_closed(world):
    with pytest.raises(CouncilError, match="not closed"):
        proposals(world.session, world.class_group)


def test_decisions_are_signed_ledger_records_and_a_changed_one_keeps_its_reason(world):
    year_closed(world, grade_level=7)
    before = ledger_kinds(world)
    count = record_decisions(
        world.session,
        world.class_group,
        world.log_key,
        {
            world.student.id: Choice(PROMOTED),
            world.other.id: Choice(RETAINED, "Ата-анасының өтініші бойынша"),
        },
        decided_by=world.admin,
        protocol_number="7",
        protocol_date="2027-05-28",
        now=LATE,
    )
    assert count == 2
    after = ledger_kinds(world)[len(before) :]
    # The class's year records first (one per pupil), then the decisions.
    assert after == ["ledger_record", "ledger_record", "council_decision", "council_decision"]
    log = ledger_log(world)
    assert verify_journal(world.session, log).ok
    rows = world.session.scalars(
        sa.select(Entry).where(Entry.log_id == log.id, Entry.kind == "council_decision")
    ).all()
    payloads = {row.student_id: json.loads(row.leaf)["payload"] for row in rows}
    other = payloads[world.other.id]
    assert (other["decision"], other["proposed"]) == (RETAINED, EXTRA_ASSESSMENT)
    assert other["reason"] == "Ата-анасының өтініші бойынша"
    assert other["protocol"] == {"number": "7", "date": "2027-05-28"}
    assert other["year_grades"] == {"Математика": "2"}
    assert other["rule"] == {"id": "kz-promotion", "version": 1}
    assert other["author"] is None and other["device_id"] == world.log_key.kid


@pytest.mark.parametrize(
    ("choices", "protocol", "message"),
    [
        ({"other": Choice(RETAINED)}, ("7", "2027-05-28"), "needs a reason"),
        ({"student": Choice("expelled", "x")}, ("7", "2027-05-28"), "Unknown decision"),
        ({"student": Choice(PROMOTED)}, ("", "2027-05-28"), "protocol's number"),
        ({"student": Choice(PROMOTED)}, ("7", "28.05.2027"), "YYYY-MM-DD"),
        ({"student": Choice(PROMOTED)}, ("7", "2031-05-28"), "not in the school year"),
        ({"student": Choice(GRADUATED, "x")}, ("7", "2027-05-28"), "final attestation"),
        ({"stranger": Choice(PROMOTED)}, ("7", "2027-05-28"), "not in class"),
        # One good choice and one bad: neither is written.
        (
            {"student": Choice(PROMOTED), "other": Choice(PROMOTED)},
            ("7", "2027-05-28"),
            "needs a reason",
        ),
    ],
)
def test_a_bad_decision_writes_nothing(world, choices, protocol, message):
    year_closed(world, grade_level=7)
    stranger = world.add_student(enrolled=False)
    ids = {"student": world.student.id, "other": world.other.id, "stranger": stranger.id}
    before = ledger_kinds(world)
    with pytest.raises(CouncilError, match=message):
        record_decisions(
            world.session,
            world.class_group,
            world.log_key,
            {ids[who]: choice for who, choice in choices.items()},
            decided_by=world.admin,
            protocol_number=protocol[0],
            protocol_date=protocol[1],
        )
    assert ledger_kinds(world) == before


def test_a_graduating_pupils_exam_and_final_grades(world):
    year_closed(world, grade_level=9)
    session = world.session
    record_attestation_grade(
        session, world.class_group, world.student, world.subject, world.log_key,
        entered_by=world.admin, role="commission", exam="5", final="5", now=LATE,
    )  # fmt: skip
    # The subject's teacher may enter (here correct) it too; the latest record counts.
    record_attestation_grade(
        session, world.class_group, world.student, world.subject, world.log_key,
        entered_by=world.teacher, role="teacher", exam=None, final=4, now=LATE,
    )  # fmt: skip
    assert final_grades(session, world.student, world.year) == {"Математика": 4}
    assert final_grades(session, world.other, world.year) == {}
    line = {p.pupil.id: p for p in proposals(session, world.class_group)}[world.student.id]
    assert (line.finals, line.proposed) == ({"Математика": 4}, GRADUATED)
    assert verify_journal(session, ledger_log(world)).ok


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"final": "6"}, "2, 3, 4 or 5"),
        ({"final": "1"}, "2, 3, 4 or 5"),
        ({"exam": "five"}, "2, 3, 4 or 5"),
        ({"final": ""}, "required"),
        ({"who": "stranger"}, "not in class"),
        ({"by": "other_teacher", "role": "teacher"}, "subject's teacher"),
        ({"by": "teacher", "role": "commission"}, "school admin"),
        ({"role": "director"}, "teacher or the exam commission"),
        ({"level": 8}, "does not sit the final attestation"),
    ],
)
def test_a_bad_attestation_grade_writes_nothing(world, change, message):
    year_closed(world, grade_level=change.get("level", 9))
    stranger = world.add_student(enrolled=False)
    users = {
        "admin": world.admin,
        "teacher": world.teacher,
        "other_teacher": add_user(world.session, world.school, "teacher"),
    }
    before = ledger_kinds(world)
    with pytest.raises(CouncilError, match=message):
        record_attestation_grade(
            world.session,
            world.class_group,
            stranger if change.get("who") == "stranger" else world.student,
            world.subject,
            world.log_key,
            entered_by=users[change.get("by", "admin")],
            role=change.get("role", "commission"),
            exam=change.get("exam", "5"),
            final=change.get("final", "5"),
        )
    assert ledger_kinds(world) == before


def test_no_attestation_grade_before_the_year_is_closed(world):
    world.class_group.grade_level = 9
    admin = add_user(world.session, world.school, "school_admin")
    with pytest.raises(CouncilError, match="not closed"):
        record_attestation_grade(
            world.session, world.class_group, world.student, world.subject, world.log_key,
            entered_by=admin, role="commission", exam="5", final="5",
        )  # fmt: skip


# -- the admin's page ---------------------------------------------------------------------------


def test_the_admin_records_decisions_from_the_page_and_bad_input_writes_nothing(app, world):
    from ..auth.conftest import csrf_token
    from ..factories import signed_in_client

    year_closed(world, grade_level=7)
    world.session.commit()
    client = signed_in_client(app, world.admin)
    url = f"/admin/classes/{world.class_group.id}/council"
    assert url in client.get("/admin/terms").get_data(as_text=True)  # the closed year links it
    page = client.get(url)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Әбдіғали Нұрлан" in text
    before = ledger_kinds(world)
    token = csrf_token(client, app)
    form = {
        "csrf_token": token,
        "protocol_number": "7",
        "protocol_date": "2027-05-28",
        f"decision-{world.student.id}": PROMOTED,
        f"decision-{world.other.id}": RETAINED,  # not the proposal, and no reason
    }
    client.post(url, data=form)
    world.session.expire_all()
    assert ledger_kinds(world) == before
    # Without the CSRF token: refused, nothing written.
    assert client.post(url, data={**form, "csrf_token": ""}).status_code == 400
    form[f"reason-{world.other.id}"] = "Ата-анасының өтініші"
    response = client.post(url, data=form)
    assert response.status_code == 302
    world.session.expire_all()
    assert ledger_kinds(world)[len(before) :].count("council_decision") == 2


def test_only_the_schools_admin_may_use_the_council_page(app, world):
    from ..factories import build_world, signed_in_client

    year_closed(world, grade_level=7)
    other_school = build_world(world.session, app.config["KEYS_DIR"])
    outsider = add_user(world.session, other_school.school, "school_admin")
    world.session.commit()
    url = f"/admin/classes/{world.class_group.id}/council"
    assert signed_in_client(app, world.teacher).get(url).status_code == 403
    assert signed_in_client(app, outsider).get(url).status_code == 404


def test_the_council_commands_list_decide_and_attest(app, world):
    year_closed(world, grade_level=9)
    world.admin.username = f"admin-{world.school.id}"
    world.session.commit()
    runner = app.test_cli_runner()
    class_id = str(world.class_group.id)
    listed = runner.invoke(args=["council", "list", class_id])
    assert listed.exit_code == 0, listed.output
    assert "proposed: admitted_final_attestation" in listed.output
    assert "proposed: promoted_extra_assessment" in listed.output
    who = ["--as", world.admin.username]
    before = ledger_kinds(world)
    bad = runner.invoke(
        args=["council", "attest", class_id, "--pupil", str(world.student.id),
              "--subject", str(world.subject.id), "--final", "7", *who]
    )  # fmt: skip
    assert bad.exit_code == 1 and "2, 3, 4 or 5" in bad.output
    refused = runner.invoke(
        args=["council", "decide", class_id, "--protocol", "7", "--date", "2027-06-10", *who,
              "--pupil", f"{world.other.id}=retained"]
    )  # fmt: skip
    assert refused.exit_code == 1 and "needs a reason" in refused.output
    world.session.expire_all()
    assert ledger_kinds(world) == before
    attested = runner.invoke(
        args=["council", "attest", class_id, "--pupil", str(world.student.id),
              "--subject", str(world.subject.id), "--exam", "5", "--final", "5", *who]
    )  # fmt: skip
    assert attested.exit_code == 0, attested.output
    decided = runner.invoke(
        args=["council", "decide", class_id, "--protocol", "7", "--date", "2027-06-10", *who,
              "--all-proposed"]
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    assert "recorded 2 decision(s)" in decided.output
    world.session.expire_all()
    lines = {p.pupil.id: p for p in proposals(world.session, world.class_group)}
    assert lines[world.student.id].recorded["decision"] == GRADUATED
    assert lines[world.other.id].recorded["decision"] == EXTRA_ASSESSMENT


def test_the_subjects_teacher_enters_final_grades_from_their_page(app, world):
    from ..auth.conftest import csrf_token
    from ..factories import signed_in_client

    year_closed(world, grade_level=9)
    stranger = add_user(world.session, world.school, "teacher")
    world.session.commit()
    client = signed_in_client(app, world.teacher)
    home = client.get("/teacher/").get_data(as_text=True)
    url = f"/teacher/classes/{world.class_group.id}/attestation"
    assert url in home
    assert "Әбдіғали Нұрлан" in client.get(url).get_data(as_text=True)
    form = {
        "csrf_token": csrf_token(client, app),
        "student_id": world.student.id,
        "subject_id": world.subject.id,
        "exam": "",
        "final": "9",
    }
    before = ledger_kinds(world)
    client.post(url, data=form)
    world.session.expire_all()
    assert ledger_kinds(world) == before
    assert client.post(url, data={**form, "final": "4"}).status_code == 302
    world.session.expire_all()
    assert final_grades(world.session, world.student, world.year) == {"Математика": 4}
    # A teacher who does not teach in the class has no such page.
    assert signed_in_client(app, stranger).get(url).status_code == 404


def test_the_admin_records_the_commissions_grades_from_the_page(app, world):
    from ..auth.conftest import csrf_token
    from ..factories import build_world, signed_in_client

    year_closed(world, grade_level=11)
    elsewhere = build_world(world.session, app.config["KEYS_DIR"])
    world.session.commit()
    client = signed_in_client(app, world.admin)
    url = f"/admin/classes/{world.class_group.id}/attestation"
    form = {
        "csrf_token": csrf_token(client, app),
        "student_id": world.other.id,
        "subject_id": world.subject.id,
        "exam": "6",
        "final": "3",
    }
    before = ledger_kinds(world)
    assert client.post(url, data=form).status_code == 302
    assert client.post(url, data={**form, "student_id": elsewhere.student.id}).status_code == 404
    assert client.post(url, data={**form, "student_id": "x"}).status_code == 400
    world.session.expire_all()
    assert ledger_kinds(world) == before
    assert client.post(url, data={**form, "exam": "3"}).status_code == 302
    world.session.expire_all()
    assert final_grades(world.session, world.other, world.year) == {"Математика": 3}
    page = client.get(f"/admin/classes/{world.class_group.id}/council").get_data(as_text=True)
    assert "Математика: 3" in page
