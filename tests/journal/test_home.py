"""Home pages with today's work: a teacher's lessons today and tomorrow, a class teacher's
early warnings (and nobody else's)."""

from __future__ import annotations

import datetime as dt

from auth.models import RoleGrant
from journal.clock import today_at
from journal.models import Lesson, Term
from journal.recording.recorder import record_entry

from ..factories import NOW, add_user, signed_in_client


def _today_with_term(world) -> dt.date:
    today = today_at(world.session, world.school.id)
    if not (world.q1.covers(today) or world.q2.covers(today)):
        world.session.add(
            Term(
                school_year_id=world.year.id,
                kind="quarter",
                number=3,
                starts_on=today - dt.timedelta(days=30),
                ends_on=today + dt.timedelta(days=30),
            )
        )
        world.session.flush()
    return today


def _lesson(world, day: dt.date, period: int) -> Lesson:
    lesson = Lesson(
        class_group_id=world.class_group.id, subject_id=world.subject.id, date=day, period=period
    )
    world.session.add(lesson)
    world.session.flush()
    return lesson


def test_the_teachers_home_lists_todays_lessons_with_what_is_missing(app, world):
    today = _today_with_term(world)
    lesson = _lesson(world, today, 3)
    payload = world.payload("topic", lesson=lesson.id, topic="Бөлшектер")
    del payload["homework"]  # a topic written, the homework not yet
    record_entry(world.session, world.device.sign(payload), now=NOW)
    world.teacher.language = "en"
    html = signed_in_client(app, world.teacher).get("/").get_data(as_text=True)
    today_section = html.split('id="today"', 1)[1].split("</section>", 1)[0]
    assert "Математика" in today_section and world.class_group.name in today_section
    row = today_section.split('class="home-lesson"', 1)[1].split("</tr>", 1)[0]
    assert "attendance" in row and "homework" in row and "topic" not in row
    assert f"/teacher/grid/{world.class_group.id}/{world.subject.id}/" in row
    assert f"lesson={lesson.id}" in row


def test_a_teacher_without_lessons_today_is_told_so(app, world):
    _today_with_term(world)
    world.teacher.language = "en"
    html = signed_in_client(app, world.teacher).get("/").get_data(as_text=True)
    assert "No lessons today or tomorrow." in html


def test_early_warnings_show_unexcused_absences_to_the_class_teacher_only(app, world):
    today = _today_with_term(world)
    truant = world.student
    ill = world.add_student(last_name="Науқас", first_name="Дана")
    for days_ago in (1, 3, 5):
        lesson = _lesson(world, today - dt.timedelta(days=days_ago), 1)
        record_entry(
            world.session,
            world.signed("attendance", lesson=lesson.id, student=truant.id, value="absent"),
            now=dt.datetime.now(dt.UTC),
        )
        record_entry(
            world.session,
            world.signed("attendance", lesson=lesson.id, student=ill.id, value="excused"),
            now=dt.datetime.now(dt.UTC),
        )
    class_teacher = add_user(world.session, world.school, "teacher")
    class_teacher.roles.append(RoleGrant(role="class_teacher", school_id=world.school.id))
    class_teacher.language = "en"
    world.class_group.class_teacher_id = class_teacher.id
    other = add_user(world.session, world.school, "teacher")
    other.roles.append(RoleGrant(role="class_teacher", school_id=world.school.id))
    other.language = "en"
    world.session.flush()

    html = signed_in_client(app, class_teacher).get("/").get_data(as_text=True)
    warnings = html.split('id="early-warnings"', 1)[1].split("</section>", 1)[0]
    assert truant.last_name in warnings
    assert "3 unexcused absences in two weeks" in warnings
    assert (today - dt.timedelta(days=5)).strftime("%d.%m") in warnings  # the evidence
    assert ill.last_name not in warnings

    html = signed_in_client(app, other).get("/").get_data(as_text=True)
    warnings = html.split('id="early-warnings"', 1)[1].split("</section>", 1)[0]
    assert truant.last_name not in warnings and "No pupil needs attention." in warnings


def test_the_operators_home_shows_the_last_archive_run_and_the_commands(app, world):
    from archive.models import ArchiveRun

    world.session.add(
        ArchiveRun(school_id=world.school.id, kind="archive", status="done", bags_done=7)
    )
    operator = add_user(world.session, world.school, "operator")
    operator.language = "en"
    world.session.flush()
    html = signed_in_client(app, operator).get("/").get_data(as_text=True)
    section = html.split('id="operations"', 1)[1].split("</section>", 1)[0]
    assert "7 packages" in section
    assert "flask --app wsgi backup drill" in section


def test_the_admins_home_shows_where_the_quarter_stands(app, world):
    today = _today_with_term(world)
    _lesson(world, today - dt.timedelta(days=1), 1)
    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    world.session.flush()
    html = signed_in_client(app, admin).get("/").get_data(as_text=True)
    section = html.split('id="term-state"', 1)[1].split("</section>", 1)[0]
    row = section.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert world.class_group.name in row and world.subject.name in row
    assert "<td>1</td>" in row  # yesterday's lesson has no topic yet
