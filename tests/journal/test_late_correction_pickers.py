"""The late-correction form picks class → subject → lesson → pupil by name, never by an
internal number, and the server refuses a choice that does not belong to the one before."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from journal.models import ClassGroup, LateCorrectionApproval, Lesson
from journal.services import ensure_journal_log

from ..factories import add_user, signed_in_client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert found is not None
    return found.group(1)


def test_the_pickers_show_names_and_dates_step_by_step(app, world):
    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    client = signed_in_client(app, admin)
    first = client.get("/admin/late-corrections").get_data(as_text=True)
    assert world.class_group.name in first and 'name="lesson"' not in first
    second = client.get(f"/admin/late-corrections?journal={world.log.id}").get_data(as_text=True)
    assert world.subject.name in second and 'name="lesson"' not in second
    third = client.get(
        f"/admin/late-corrections?journal={world.log.id}&subject={world.subject.id}"
    ).get_data(as_text=True)
    assert world.lesson.date.strftime("%d.%m.%Y") in third
    assert f"{world.student.last_name} {world.student.first_name}" in third
    assert "Lesson number" not in third and "Student number" not in third


def test_a_lesson_of_another_class_is_refused_and_nothing_is_written(app, world):
    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    other_class = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="8Б", grade_level=8
    )
    world.session.add(other_class)
    world.session.flush()
    ensure_journal_log(world.session, other_class)
    other_lesson = Lesson(
        class_group_id=other_class.id,
        subject_id=world.subject.id,
        date=world.lesson.date,
        period=4,
    )
    world.session.add(other_lesson)
    world.session.flush()
    client = signed_in_client(app, admin)
    page = client.get(
        f"/admin/late-corrections?journal={world.log.id}&subject={world.subject.id}"
    ).get_data(as_text=True)
    before = world.session.scalar(select(func.count()).select_from(LateCorrectionApproval))
    answer = client.post(
        "/admin/late-corrections",
        data={
            "csrf_token": _csrf(page),
            "journal": world.log.id,
            "subject": world.subject.id,
            "lesson": other_lesson.id,
            "student": world.student.id,
            "what": "att",
            "reason": "a wrong mark",
        },
    )
    assert answer.status_code == 400
    assert "No such lesson in this class." in answer.get_data(as_text=True)
    after = world.session.scalar(select(func.count()).select_from(LateCorrectionApproval))
    assert after == before


def test_a_pupil_of_another_class_is_refused_and_nothing_is_written(app, world):
    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    stranger = world.add_student(enrolled=False, last_name="Бөгде")
    client = signed_in_client(app, admin)
    page = client.get(
        f"/admin/late-corrections?journal={world.log.id}&subject={world.subject.id}"
    ).get_data(as_text=True)
    assert stranger.last_name not in page
    before = world.session.scalar(select(func.count()).select_from(LateCorrectionApproval))
    answer = client.post(
        "/admin/late-corrections",
        data={
            "csrf_token": _csrf(page),
            "journal": world.log.id,
            "subject": world.subject.id,
            "lesson": world.lesson.id,
            "student": stranger.id,
            "what": "att",
            "reason": "a wrong mark",
        },
    )
    assert answer.status_code == 400
    assert "No such pupil in this class." in answer.get_data(as_text=True)
    after = world.session.scalar(select(func.count()).select_from(LateCorrectionApproval))
    assert after == before
