"""One pupil order everywhere (issue 14): the alphabet of the class's language through ICU, the
same № on the grid, the printout, the portal and the class summary; classes 7А, 7Ә, 7Б."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from flask_babel import refresh

from exports import queries
from journal.collation import class_key, in_pupil_order
from journal.models import Student
from journal.pupils import sql_collation
from journal.services import cut_checkpoint

from ..factories import signed_in_client
from .test_portal import parent_of
from .test_school_setup import sign_in

SURNAMES = ["Үсенов", "Ілиясов", "Қасымов", "Бекова", "Абаев", "Ғалымов", "Әбенов", "Өмірбек"]
KAZAKH_ORDER = [
    "Абаев",
    "Әбенов",
    "Бекова",
    "Ғалымов",
    "Қасымов",
    "Өмірбек",
    "Өмірзақ",  # the world's own pupil, Өмірзақ Іңкәр
    "Үсенов",
    "Ілиясов",
]


def class_of_nine(world):
    for surname in SURNAMES:
        world.add_student(last_name=surname, first_name="Ерлан")
    return KAZAKH_ORDER


def grid_names(app, world):
    client = signed_in_client(app, world.teacher)
    html = client.get(
        f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{world.q2.id}"
    ).get_data(as_text=True)
    state = json.loads(html.split('id="grid-state">', 1)[1].split("</script>", 1)[0])
    numbered = re.findall(r'<th scope="row">(\d+)\. ([^<]+)</th>', html)
    return [name for _id, name, _spans in state["students"]], numbered


def test_one_order_on_the_grid_the_printout_the_portal_and_the_summary(app, world):
    expected = class_of_nine(world)
    names, numbered = grid_names(app, world)
    assert [name.split()[0] for name in names] == expected
    assert [int(n) for n, _name in numbered] == list(range(1, 10))

    cut_checkpoint(world.session, world.log, world.log_key)
    document = queries.journal_document(world.session, world.class_group, 2)
    (sheet,) = document.subjects
    assert [row.student_name for row in sheet.rows] == names  # the PDF numbers rows in order

    # The portal tells each parent their child's № in the class: the grid's.
    students = {s.last_name: s for s in world.session.scalars(sa.select(Student))}
    for number, surname in ((2, "Әбенов"), (4, "Ғалымов"), (9, "Ілиясов")):
        parent = parent_of(world.session, world.school, students[surname])
        parent.language = "en"
        browser = app.test_client()
        sign_in(browser, parent, "en")
        refresh()  # the tests' requests share one app context, where Flask-Babel keeps the locale
        html = browser.get(f"/portal/students/{students[surname].id}").get_data(as_text=True)
        assert f"№ {number} in the list of class 7Ә" in html

    # The class teacher's summary lists the same pupils with the same numbers.
    world.class_group.class_teacher_id = world.teacher.id
    world.session.flush()
    summary = (
        signed_in_client(app, world.teacher)
        .get(f"/teacher/class/{world.class_group.id}?term={world.q2.id}")
        .get_data(as_text=True)
    )
    rows = re.findall(r'<tr data-student="\d+"><td>(\d+)</td><th scope="row">([^<]+)</th>', summary)
    assert [name for _n, name in rows] == names
    assert [int(n) for n, _name in rows] == list(range(1, 10))


def test_russian_classes_sort_by_the_russian_alphabet():
    rows = [("Ілиясов", 1), ("Иванов", 2), ("Қасымов", 3), ("Ким", 4)]
    kazakh = in_pupil_order("kk", rows, lambda r: (r[0], "", None, r[1]))
    russian = in_pupil_order("ru", rows, lambda r: (r[0], "", None, r[1]))
    assert [r[0] for r in kazakh] == ["Иванов", "Ким", "Қасымов", "Ілиясов"]
    assert [r[0] for r in russian] == ["Иванов", "Ілиясов", "Ким", "Қасымов"]


def test_classes_sort_7a_7a_schwa_7b_then_10():
    names = [("7Б", 7), ("10А", 10), ("7Ә", 7), ("7А", 7), ("8Ғ", 8), ("8Г", 8)]
    ordered = sorted(names, key=lambda n: class_key(n[0], n[1]))
    assert [n for n, _g in ordered] == ["7А", "7Ә", "7Б", "8Г", "8Ғ", "10А"]


def test_postgresql_sorts_as_icu_does(world):
    class_of_nine(world)
    collation = sql_collation(world.session, "kk")
    if collation is None:
        pytest.skip("SQLite has no ICU collation: the journal sorts in Python there")
    column = Student.last_name.collate(collation)
    in_sql = list(
        world.session.scalars(
            sa.select(Student.last_name)
            .where(Student.school_id == world.school.id)
            .order_by(column)
        )
    )
    assert in_sql == KAZAKH_ORDER


def test_the_class_teacher_reads_every_grid_of_their_class_read_only(app, world):
    from ..factories import add_user

    colleague = add_user(world.session, world.school, "teacher")
    colleague.language = "en"
    world.class_group.class_teacher_id = colleague.id
    world.session.flush()
    client = signed_in_client(app, colleague)
    url = f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{world.q2.id}"
    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    state = json.loads(html.split('id="grid-state">', 1)[1].split("</script>", 1)[0])
    assert state["readonly"] and 'id="confirm-term"' not in html
    assert "as the class teacher: it is read-only" in html
    index = client.get("/teacher/").get_data(as_text=True)
    assert f"/teacher/class/{world.class_group.id}" in index
    # Another teacher of the school, neither assigned nor class teacher, sees nothing.
    stranger = signed_in_client(app, add_user(world.session, world.school, "teacher"))
    assert stranger.get(url).status_code == 403
    assert stranger.get(f"/teacher/class/{world.class_group.id}").status_code == 403


def test_the_class_summary_counts_absences_in_lessons_and_days(app, world):
    from journal.models import Lesson
    from journal.recording.recorder import record_entry

    from ..factories import NOW

    second = Lesson(
        class_group_id=world.class_group.id,
        subject_id=world.subject.id,
        date=world.lesson.date,
        period=3,
    )
    other_day = Lesson(
        class_group_id=world.class_group.id,
        subject_id=world.subject.id,
        date=world.lesson.date.replace(day=17),
        period=1,
    )
    world.session.add_all([second, other_day])
    world.session.flush()
    for lesson, value in ((world.lesson, "sick"), (second, "sick"), (other_day, "late")):
        record_entry(
            world.session, world.signed("attendance", lesson=lesson.id, value=value), now=NOW
        )
    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)
    world.class_group.class_teacher_id = world.teacher.id
    world.teacher.language = "en"
    world.session.flush()
    html = (
        signed_in_client(app, world.teacher)
        .get(f"/teacher/class/{world.class_group.id}?term={world.q2.id}")
        .get_data(as_text=True)
    )
    row = html.split(f'<tr data-student="{world.student.id}">', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    # 80.0 % provisional in mathematics; 2 lessons missed, both ill; 1 whole day, ill.
    assert "80.0%" in cells[1] and "provisional" in cells[1]
    assert cells[-4:] == ["2", "2", "1", "1"]
