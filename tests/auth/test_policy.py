"""Authorization on the data (``auth.policy``): who writes which journal, who reads which class
and which child. A parent cannot reach another child by changing an id, in pages or the API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from auth import devices, policy, services
from auth.models import AccessLogEntry, DeviceKey
from journal.db import utcnow
from journal.models import Enrollment, Subject, TeachingAssignment
from journal.recording.recorder import record_entry

from ..factories import add_user, build_world
from .conftest import add_grant, english_client, sign_in


def test_a_teacher_writes_only_for_an_assigned_class_and_subject(world, people, session):
    teacher = people["teacher"]
    other_subject = Subject(school_id=world.school.id, name="Қазақ тілі")
    session.add(other_subject)
    session.flush()
    assert policy.can_write_journal(teacher, world.class_group, world.subject)
    assert policy.can_write_journal(teacher, world.class_group.id, world.subject.id)
    assert not policy.can_write_journal(teacher, world.class_group, other_subject)
    for role in ("class_teacher", "school_admin", "inspector", "registrar", "operator", "parent"):
        assert not policy.can_write_journal(people[role], world.class_group, world.subject), role


def test_a_teacher_who_lost_the_role_writes_nothing(world, people, session):
    teacher = people["teacher"]
    teacher.roles.clear()
    session.flush()
    assert session.scalar(
        select(TeachingAssignment).where(TeachingAssignment.user_id == teacher.id)
    )
    assert not policy.can_write_journal(teacher, world.class_group, world.subject)
    assert not policy.can_read_student(teacher, world.student.id)


def test_who_reads_the_whole_class(world, people, session):
    readers = {
        role for role in people.by_role if policy.can_read_class(people[role], world.class_group)
    }
    assert readers == {"class_teacher", "school_admin"}
    assert policy.can_read_class_subject(people["teacher"], world.class_group, world.subject)
    assert not policy.can_read_class(None, world.class_group)


def test_a_class_teacher_reads_only_their_own_class(app, world, people, session):
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    assert policy.can_read_class(people["class_teacher"], world.class_group)
    assert not policy.can_read_class(people["class_teacher"], elsewhere.class_group)
    assert not policy.can_read_student(people["class_teacher"], elsewhere.student.id)


def test_school_staff_read_only_their_own_school(app, world, people, session):
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    assert policy.can_read_student(people["school_admin"], world.student.id)
    assert not policy.can_read_student(people["school_admin"], elsewhere.student.id)
    assert not policy.can_read_student(people["operator"], world.student.id)


def test_inspectors_and_registrars_read_no_live_grades(app, world, people, session):
    """DESIGN gives inspectors verification and registrars the archive: no live journal, in
    their own school or, for a grant that covers every school, in any."""
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    regional = add_user(session, elsewhere.school, "inspector")
    regional.roles[0].school_id = None  # an inspector for every school
    regional_registrar = add_user(session, elsewhere.school, "registrar")
    regional_registrar.roles[0].school_id = None
    for user in (people["inspector"], people["registrar"], regional, regional_registrar):
        assert not policy.can_read_student(user, world.student.id)
        assert not policy.can_read_class(user, world.class_group)
        assert not policy.can_read_class_subject(user, world.class_group, world.subject)


def test_a_registrar_works_for_their_own_school_only(app, world, people, session):
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    registrar = people["registrar"]
    assert policy.registrar_schools(registrar) == {world.school.id}
    assert policy.can_issue_extract(registrar, world.school.id)
    assert not policy.can_issue_extract(registrar, elsewhere.school.id)
    assert policy.registrar_schools(people["school_admin"]) == set()
    regional = add_user(session, elsewhere.school, "registrar")
    regional.roles[0].school_id = None  # a registrar for every school
    assert policy.registrar_schools(regional) is None
    assert policy.can_issue_extract(regional, world.school.id)


def test_who_reads_a_student(world, people, session):
    readers = {
        role for role in people.by_role if policy.can_read_student(people[role], world.student.id)
    }
    assert readers == {
        "teacher",
        "class_teacher",
        "school_admin",
        "parent",
        "student",
    }
    assert not policy.can_read_student(None, world.student.id)
    assert not policy.can_read_student(people["teacher"], 999_999)


def test_a_parent_reads_only_their_own_children(world, people, session):
    parent = people["parent"]
    assert policy.can_read_student(parent, world.student.id)
    assert not policy.can_read_student(parent, people.other_student_id)
    assert policy.readable_students(parent, [world.student.id, people.other_student_id]) == [
        world.student.id
    ]
    add_grant(parent, "parent", world.school.id, people.other_student_id)
    assert policy.can_read_student(parent, people.other_student_id)


def test_a_former_students_records_stay_readable_by_their_parent_only(world, people, session):
    """A transfer ends the enrollment; the parent link is to the child, not to the class."""
    enrollment = session.scalar(select(Enrollment).where(Enrollment.student_id == world.student.id))
    enrollment.ends_on = enrollment.starts_on
    assert policy.can_read_student(people["parent"], world.student.id)


def test_nobody_may_edit_an_entry():
    """There is no policy question that could allow editing or deleting an entry."""
    names = [name for name in dir(policy) if name.startswith("can_")]
    assert names and not [n for n in names if "edit" in n or "delete" in n or "update" in n]


def test_services_refuse_without_the_view(world, people, session):
    """The service itself checks: a view that forgot the check still cannot leak."""
    with pytest.raises(policy.Forbidden):
        services.student_record(session, people["parent"], people.other_student_id)
    with pytest.raises(policy.Forbidden):
        devices.revoke_device_key(
            session, session.get(DeviceKey, world.device.kid),
            actor=people["parent"], ip=None, now=utcnow(),
        )  # fmt: skip


# -- the parent cannot change an id in the URL or the API ---------------------------------------


@pytest.fixture
def graded(world, people, session):  # type: ignore[no-untyped-def]
    """A grade for the parent's child and one for another child."""
    mine = record_entry(session, world.signed("grade", value={"score": 9}))
    other = session.get_one(type(world.student), people.other_student_id)
    theirs = record_entry(session, world.signed("grade", student=other.id, value={"score": 3}))
    return mine, theirs


def student_paths(app, student_id: int, entry_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Every GET URL in the app that takes a student id (the portal's too), for this student."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "student_id" not in rule.arguments or "GET" not in (rule.methods or ()):
            continue
        values = {"student_id": student_id, "entry_id": entry_id}
        if set(rule.arguments) <= set(values):
            paths.append(rule.build({k: values[k] for k in rule.arguments})[1])
    return sorted(paths)


def test_a_parent_cannot_read_another_childs_grades_by_changing_the_id(
    app, world, people, graded, session
):
    mine, theirs = graded
    client = english_client(app)
    sign_in(client, people["parent"])
    own_paths = student_paths(app, world.student.id, mine.entry_id)
    other_paths = student_paths(app, people.other_student_id, theirs.entry_id)
    assert f"/account/children/{world.student.id}" in own_paths
    assert f"/api/account/children/{world.student.id}/grades" in own_paths
    assert len(other_paths) == len(own_paths) >= 3

    for path in own_paths:
        assert client.get(path).status_code == 200, path
    own = client.get(f"/api/account/children/{world.student.id}/grades").json
    assert [e["value"] for e in own["entries"]] == ["9"]

    for path in other_paths:
        response = client.get(path)
        assert response.status_code in (403, 404), path
        assert "Тоқтарбекова" not in response.get_data(as_text=True), path
    # A made-up id and the other child's entry under the parent's own child both fail too.
    assert client.get("/account/children/999999").status_code in (403, 404)
    mixed = student_paths(app, world.student.id, theirs.entry_id)
    for path in set(mixed) - set(own_paths):
        assert client.get(path).status_code in (403, 404), path

    denied = session.scalars(
        select(AccessLogEntry).where(
            AccessLogEntry.actor_id == people["parent"].id,
            AccessLogEntry.action.startswith("denied:"),
            AccessLogEntry.target_id == str(people.other_student_id),
        )
    ).all()
    assert len(denied) >= 2  # the attempts are in the access log for the admin to see


def test_a_student_account_reads_only_itself(app, world, people, graded):
    client = english_client(app)
    sign_in(client, people["student"])
    assert client.get(f"/account/children/{world.student.id}").status_code == 200
    assert client.get(f"/account/children/{people.other_student_id}").status_code == 403
