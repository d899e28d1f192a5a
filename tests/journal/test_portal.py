"""The parent and student portal: a parent sees their own child's marks, each with a proof that
checks out offline, and never another child's, in the pages or in the API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from auth.models import AccessLogEntry, RoleGrant, User
from journal.ledger import note
from journal.ledger.tlogproof import parse_tlog_proof, verify_tlog_proof
from journal.models import Checkpoint
from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint

from ..factories import NOW, add_user
from .test_school_setup import accessibility_problems, sign_in

CHECK_PROOF = (
    Path(__file__).resolve().parents[2] / "journal" / "static" / "portal" / "check_proof.py"
)


def parent_of(session, school, *students, role: str = "parent") -> User:
    user = User(school_id=school.id, username=f"{role}-{students[0].id}", full_name="Ата-ана")
    for student in students:
        user.roles.append(RoleGrant(role=role, school_id=school.id, student_id=student.id))
    session.add(user)
    session.flush()
    return user


@pytest.fixture
def marks(world, session):
    """The child's FO 8 (then corrected to 9), SOR 67/100, an absence, the teacher's term
    grade (FO 45 + SOR 33.5 = 78.5 %, a whole 79 % gives 4); and a classmate's FO 3."""
    fo = world.signed("grade")
    record_entry(session, fo, now=NOW)
    sor = world.signed("grade", component="SOR", value={"points": 67, "max": 100})
    record_entry(session, sor, now=NOW)
    absence = world.signed("attendance", value="sick")
    record_entry(session, absence, now=NOW)
    correction = world.signed(
        "correction",
        corrects="grade",
        component="FO",
        value={"score": 9},
        supersedes=[fo["payload"]["entry_id"]],
        reason="Жұмыс қайта тексерілді",
    )
    record_entry(session, correction, now=NOW)
    term_grade = world.signed(
        "term_grade",
        student=world.student.id,
        subject=world.subject.id,
        term=world.q2.id,
        grade=4,
        percent="78.5",
        rule={"id": "kz-criteria", "version": 2},
    )
    record_entry(session, term_grade, now=NOW)
    classmate = world.add_student(last_name="Иванова", first_name="Мария")
    other = world.signed("grade", student=classmate.id, value={"score": 3})
    record_entry(session, other, now=NOW)
    return {
        "fo": fo["payload"]["entry_id"],
        "sor": sor["payload"]["entry_id"],
        "absence": absence["payload"]["entry_id"],
        "correction": correction["payload"]["entry_id"],
        "term_grade": term_grade["payload"]["entry_id"],
        "other": other["payload"]["entry_id"],
        "classmate": classmate,
    }


@pytest.fixture
def parent(world, session):
    return parent_of(session, world.school, world.student)


@pytest.fixture
def client(app, parent):
    browser = app.test_client()
    sign_in(browser, parent)
    return browser


def test_a_parent_sees_their_childs_marks(world, marks, client):
    index = client.get("/portal/")
    assert index.status_code == 302  # one child: straight to their page
    page = client.get(index.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Өмірзақ Іңкәр" in html
    assert re.search(r'class="value">9</span>\s*<span class="component">FO', html)
    assert "67/100" in html and "Sick" in html and "corrected" in html
    # The quarter is open: the running percent, marked provisional, and no term grade yet.
    assert "78.5 %" in html and "(provisional)" in html and ">4</a>" not in html
    assert 'class="value">8<' not in html  # the superseded FO 8 is gone
    assert "Иванова" not in html and 'class="value">3<' not in html


def test_a_parent_cannot_open_another_childs_pages(world, marks, client, session):
    classmate = marks["classmate"].id
    for url in (
        f"/portal/students/{classmate}",
        f"/portal/students/{classmate}/entries/{marks['other']}",
        f"/portal/students/{classmate}/entries/{marks['other']}.tlog-proof",
        f"/portal/students/{classmate}/entries/{marks['other']}.json",
        f"/api/portal/students/{classmate}",
        f"/api/portal/students/{classmate}/entries/{marks['other']}/proof",
    ):
        answer = client.get(url)
        assert answer.status_code == 403, url
        assert "Иванова" not in answer.get_data(as_text=True)
    # Nor a classmate's entry through their own child's address.
    own = world.student.id
    assert client.get(f"/portal/students/{own}/entries/{marks['other']}").status_code == 404
    assert (
        client.get(f"/api/portal/students/{own}/entries/{marks['other']}/proof").status_code == 404
    )
    denied = session.scalars(
        select(AccessLogEntry).where(AccessLogEntry.action.like("denied:%"))
    ).all()
    assert {row.target_id for row in denied} == {str(classmate)}


def test_the_api_lists_only_own_children_and_their_marks(world, marks, client, session):
    listed = client.get("/api/portal/students").get_json()["students"]
    assert [s["id"] for s in listed] == [world.student.id]
    record = client.get(f"/api/portal/students/{world.student.id}").get_json()
    grades = {(g["component"], str(g["value"])) for g in record["grades"]}
    assert grades == {("FO", "{'score': 9}"), ("SOR", "{'max': 100, 'points': 67}")}
    assert [a["value"] for a in record["attendance"]] == ["sick"]
    assert record["term_grades"] == []  # sealed only when the school closes the quarter
    assert [(p["percent"], p["result"], p["provisional"]) for p in record["provisional"]] == [
        ("78.5", "4", True)
    ]
    corrected = next(g for g in record["grades"] if g.get("corrected"))
    assert corrected["entry_id"] == marks["correction"]
    assert corrected["reason"] == "Жұмыс қайта тексерілді"
    assert marks["other"] not in str(record) and marks["fo"] not in str(record)
    views = session.scalar(
        select(func.count())
        .select_from(AccessLogEntry)
        .where(AccessLogEntry.target_type == "student", AccessLogEntry.action.like("view:%"))
    )
    assert views == 1


def test_signed_out_visitors_get_nothing(world, marks, app):
    anonymous = app.test_client()
    assert anonymous.get("/api/portal/students").status_code == 401
    assert anonymous.get(f"/api/portal/students/{world.student.id}").status_code == 401
    assert anonymous.get(f"/portal/students/{world.student.id}").status_code == 302


def test_a_student_account_sees_itself_only(world, marks, app, session):
    own = parent_of(session, world.school, world.student, role="student")
    browser = app.test_client()
    sign_in(browser, own)
    assert browser.get(f"/api/portal/students/{world.student.id}").status_code == 200
    assert browser.get(f"/api/portal/students/{marks['classmate'].id}").status_code == 403


def test_a_proof_checks_out_offline_and_names_no_other_student(
    world, marks, client, session, tmp_path
):
    assert session.scalar(select(func.count()).select_from(Checkpoint)) == 0
    answer = client.get(f"/api/portal/students/{world.student.id}/entries/{marks['sor']}/proof")
    assert answer.status_code == 200
    body = answer.get_json()
    # No checkpoint covered the entry: one was cut for it.
    assert body["checkpoint_size"] == world.log.size == 6
    verifier = note.parse_vkey(body["vkey"])
    verify_tlog_proof(body["leaf"].encode(), body["tlog_proof"], verifier, world.log.origin)
    proof = parse_tlog_proof(body["tlog_proof"])
    assert proof.index == body["leaf_index"] == 1
    assert "Иванова" not in body["tlog_proof"] and marks["other"] not in body["tlog_proof"]
    assert str(marks["classmate"].id) not in body["leaf"].split('"student":')[1][:3]

    base = f"/portal/students/{world.student.id}"
    files = {
        "entry.json": client.get(f"{base}/entries/{marks['sor']}.json").data,
        "entry.tlog-proof": client.get(f"{base}/entries/{marks['sor']}.tlog-proof").data,
        "school.vkey": client.get(f"{base}/school.vkey").data,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    check = [sys.executable, str(CHECK_PROOF), "entry.json", "entry.tlog-proof", "school.vkey"]
    verified = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and verified.stdout.startswith("VERIFIED"), verified.stdout
    tampered = files["entry.json"].replace(b'"points":67', b'"points":97')
    (tmp_path / "entry.json").write_bytes(tampered)
    refused = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert refused.returncode == 1 and "NOT VERIFIED" in refused.stdout


def test_a_proof_uses_the_latest_checkpoint_that_covers_the_entry(world, marks, client, session):
    first = cut_checkpoint(session, world.log, world.log_key)
    record_entry(session, world.signed("attendance", value="late"), now=NOW)
    body = client.get(
        f"/api/portal/students/{world.student.id}/entries/{marks['absence']}/proof"
    ).get_json()
    assert body["checkpoint_size"] == first.size == 6  # no new checkpoint needed
    assert session.scalar(select(func.count()).select_from(Checkpoint)) == 1


def test_the_entry_page_explains_how_to_check(world, marks, client):
    html = client.get(
        f"/portal/students/{world.student.id}/entries/{marks['correction']}"
    ).get_data(as_text=True)
    assert "How to check it" in html and "check_proof.py" in html
    assert world.school.log_vkey in html
    assert "Жұмыс қайта тексерілді" in html


def test_portal_pages_label_every_control_and_fit_a_phone(world, marks, client):
    pages = [
        "/portal/",
        f"/portal/students/{world.student.id}",
        f"/portal/students/{world.student.id}/entries/{marks['sor']}",
    ]
    for page in pages:
        html = client.get(page, follow_redirects=True).get_data(as_text=True)
        assert accessibility_problems(html) == [], page
        assert 'name="viewport" content="width=device-width' in html


def test_a_parent_of_two_children_chooses_between_them(world, marks, app, session):
    both = parent_of(session, world.school, world.student, marks["classmate"])
    browser = app.test_client()
    sign_in(browser, both)
    html = browser.get("/portal/").get_data(as_text=True)
    assert "Өмірзақ Іңкәр" in html and "Иванова Мария" in html
    listed = browser.get("/api/portal/students").get_json()["students"]
    assert len(listed) == 2


def test_a_teacher_without_a_child_sees_no_portal_children(world, app, session):
    teacher = add_user(session, world.school, "teacher")
    browser = app.test_client()
    sign_in(browser, teacher)
    assert browser.get("/api/portal/students").get_json() == {"students": []}


@pytest.mark.parametrize(
    ("language", "day", "percent", "component"),
    [
        ("kk", "16 қар.", "78,5 %", "ҚБ"),
        ("ru", "16 нояб.", "78,5 %", "ФО"),
        ("en", "16 Nov", "78.5 %", "FO"),
    ],
)
def test_dates_numbers_and_grade_names_follow_the_language(
    world, marks, parent, app, language, day, percent, component
):
    browser = app.test_client()
    sign_in(browser, parent, language)
    html = browser.get(f"/portal/students/{world.student.id}").get_data(as_text=True)
    assert f'<html lang="{language}">' in html
    assert day in html and percent in html
    assert f'<span class="component">{component}</span>' in html


def test_parents_see_the_quarters_grades_right_after_closing(world, marks, client, session):
    from journal.year.closing import close_term

    admin = add_user(session, world.school, "school_admin")
    close_term(session, world.q2, world.log_key, closed_by=admin, now=NOW, reason="test")
    html = client.get(f"/portal/students/{world.student.id}").get_data(as_text=True)
    assert ">4</a>" in html and "78.5 %" in html and "(provisional)" not in html
    record = client.get(f"/api/portal/students/{world.student.id}").get_json()
    (sealed,) = record["term_grades"]
    assert (sealed["grade"], sealed["percent"], sealed["sealed"]) == (4, "78.5", True)
    assert record["provisional"] == []
    # The sealed grade has its own proof, like any entry.
    proof = client.get(
        f"/api/portal/students/{world.student.id}/entries/{sealed['entry_id']}/proof"
    ).get_json()
    assert '"kind":"sealed_term_grade"' in proof["leaf"]
