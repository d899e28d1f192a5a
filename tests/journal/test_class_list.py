"""The admin's class list has one row per class with its subjects and teachers inside the row;
a teacher's "My classes" has one row per class × subject with the terms side by side."""

from __future__ import annotations

from journal.models import Subject, TeachingAssignment

from ..factories import add_user, signed_in_client


def test_the_class_list_has_one_row_per_class_with_its_subjects_and_teachers(app, world):
    physics = Subject(school_id=world.school.id, name="Физика")
    world.session.add(physics)
    world.session.flush()
    colleague = add_user(world.session, world.school, "teacher", full_name="Бекова Ая")
    world.session.add_all(
        [
            TeachingAssignment(
                user_id=colleague.id, class_group_id=world.class_group.id, subject_id=physics.id
            ),
            TeachingAssignment(
                user_id=colleague.id,
                class_group_id=world.class_group.id,
                subject_id=world.subject.id,
            ),
        ]
    )
    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    world.session.flush()
    html = (
        signed_in_client(app, admin)
        .get(f"/setup/years/{world.year.id}/classes")
        .get_data(as_text=True)
    )
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 1 and body.count(world.class_group.name) >= 1
    assert "Subjects and teachers" in html
    subjects = body.split('class="class-subjects"', 1)[1].split("</td>", 1)[0]
    assert f"Математика: {colleague.full_name}, {world.teacher.full_name}" in subjects or (
        f"Математика: {world.teacher.full_name}, {colleague.full_name}" in subjects
    )
    assert f"Физика: {colleague.full_name}" in subjects
    assert '<td><div class="links">' in body  # the set-up links stay inside a real cell


def test_my_classes_has_one_row_per_class_and_subject(app, world):
    world.teacher.language = "en"
    world.session.flush()
    html = signed_in_client(app, world.teacher).get("/teacher/").get_data(as_text=True)
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 1
    assert "quarter 1" in body and "quarter 2" in body
