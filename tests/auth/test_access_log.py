"""The access log: who saw which child's data or did which administrative act, when, from
where; append-only in the database; readable by the school's administrator only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from auth import invitations, services
from auth.models import AccessLogEntry

from ..factories import build_world
from .conftest import english_client, sign_in


def test_viewing_a_childs_record_leaves_a_row_with_the_viewer(app, world, people, clock, session):
    client = english_client(app)
    client.environ_base["REMOTE_ADDR"] = "192.0.2.17"
    sign_in(client, people["class_teacher"], at=clock.now)
    assert client.get(f"/account/children/{world.student.id}").status_code == 200
    row = session.scalar(select(AccessLogEntry).order_by(AccessLogEntry.id.desc()))
    assert (row.actor_id, row.action, row.target_type, row.target_id) == (
        people["class_teacher"].id,
        "view:auth.child_record",
        "student",
        str(world.student.id),
    )
    assert row.ip == "192.0.2.17" and row.at == clock.now and row.school_id == world.school.id


def test_record_access_for_other_modules(world, people, clock, session):
    services.record_access(
        session, people["inspector"], "export.journal_pdf", "class_group", world.class_group.id,
        "198.51.100.4", now=clock.now,
    )  # fmt: skip
    services.record_access(session, None, "archive.run", "school", world.school.id, None)
    rows = session.execute(
        sa.select(AccessLogEntry.action, AccessLogEntry.school_id, AccessLogEntry.actor_id)
        .where(AccessLogEntry.action.in_(["export.journal_pdf", "archive.run"]))
        .order_by(AccessLogEntry.id)
    ).all()
    assert [tuple(row) for row in rows] == [
        ("export.journal_pdf", world.school.id, people["inspector"].id),
        ("archive.run", world.school.id, None),
    ]


def test_the_admin_reads_their_schools_log(app, world, people, clock, session):
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    services.record_access(
        session, people["parent"], "view:test", "student", world.student.id, "203.0.113.9"
    )
    services.record_access(session, None, "secret:elsewhere", "student", elsewhere.student.id, None)
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    page = admin.get("/admin/access-log")
    assert page.status_code == 200
    assert "view:test" in page.text and "203.0.113.9" in page.text
    assert people["parent"].full_name in page.text
    assert "secret:elsewhere" not in page.text
    teacher = english_client(app)
    sign_in(teacher, people["teacher"], at=clock.now)
    assert teacher.get("/admin/access-log").status_code == 403


def test_admin_actions_are_logged(app, world, people, clock, session):
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    invitations.create_invitation(
        session, student_id=world.student.id, role="parent", actor=people["school_admin"],
        ip="127.0.0.1", now=clock.now,
    )  # fmt: skip
    row = session.scalar(select(AccessLogEntry).order_by(AccessLogEntry.id.desc()))
    assert row.action == "invitation.create.parent" and row.actor_id == people["school_admin"].id


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET action = 'x'", "DELETE FROM access_log"]
)
def test_the_log_is_append_only_in_the_database(world, people, session, statement):
    services.record_access(
        session, people["parent"], "view:test", "student", world.student.id, None
    )
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), session.begin_nested():
        session.execute(sa.text(statement))


@pytest.mark.parametrize(("hops", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.5")])
def test_the_logged_address_comes_from_the_proxy_only_when_configured(tmp_path, hops, seen):
    """Behind a proxy (JOURNAL_PROXY_HOPS=1) the access log records the client's address from
    X-Forwarded-For; without one, a client forging the header does not change it."""
    from auth.access import client_address

    from ..conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "keys", PROXY_HOPS=hops)
    app.add_url_rule("/test-address", "test_address", client_address)
    response = app.test_client().get(
        "/test-address", headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}
    )
    assert response.get_data(as_text=True) == seen
