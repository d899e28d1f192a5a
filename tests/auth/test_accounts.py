"""Accounts made by one-time secrets: invitation codes for parents and students, welcome
letters for staff. Nobody is ever shown a password. (Resets: test_resets.py.)"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from auth import invitations, signin
from auth.models import AccessLogEntry, Invitation, User

from .conftest import PASSWORD, english_client, flashed_text, post_form, sign_in, signed_in_user_id

NEW_PASSWORD = "жаңа құпия сөз 2026"


def make_invitation(session, world, clock, role="parent", student_id=None):  # type: ignore[no-untyped-def]
    return invitations.create_invitation(
        session,
        student_id=student_id or world.student.id,
        role=role,
        actor=None,
        ip=None,
        now=clock.now,
    )


def join(client, app, code, username="aruzhan.parent", **extra):  # type: ignore[no-untyped-def]
    data = {
        "code": code,
        "username": username,
        "full_name": "Сәрсенбаева Аружан",
        "password": NEW_PASSWORD,
        "password_again": NEW_PASSWORD,
        **extra,
    }
    return post_form(client, app, "/join", data)


def test_admin_prints_an_invitation_and_the_parent_makes_their_own_account(
    app, world, people, clock, session
):
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    page = post_form(
        admin, app, "/admin/invitations", {"student_id": world.student.id, "role": "parent"}
    )
    assert page.status_code == 200
    code = re.search(r"<code>([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})</code>", page.text).group(1)
    stored = session.scalar(select(Invitation).where(Invitation.student_id == world.student.id))
    assert code.replace("-", "").encode() not in stored.code_hash  # only the hash is kept

    parent = english_client(app)
    response = join(parent, app, code.lower().replace("-", " "))
    assert response.status_code == 302, flashed_text(response.text)
    account = session.scalar(select(User).where(User.username == "aruzhan.parent"))
    assert signed_in_user_id(parent) == account.id
    assert [(g.role, g.student_id) for g in account.roles] == [("parent", world.student.id)]
    assert account.school_id == world.school.id
    assert parent.get(f"/account/children/{world.student.id}").status_code == 200
    assert parent.get(f"/account/children/{people.other_student_id}").status_code == 403


def test_an_invitation_works_once(app, world, clock, session):
    _invitation, code = make_invitation(session, world, clock)
    assert join(english_client(app), app, code).status_code == 302
    second = english_client(app)
    response = join(second, app, code, username="someone.else")
    assert "unknown or was used" in flashed_text(response.text)
    assert session.scalar(select(User).where(User.username == "someone.else")) is None
    assert signed_in_user_id(second) is None


def test_an_expired_invitation_is_refused(app, world, clock, session):
    _invitation, code = make_invitation(session, world, clock)
    clock.advance(days=31)
    response = join(english_client(app), app, code)
    assert "expired" in flashed_text(response.text)
    assert session.scalar(select(User).where(User.username == "aruzhan.parent")) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"username": "Aruzhan Parent"}, "A username has"),
        ({"password": "short", "password_again": "short"}, "at least 10 characters"),
        ({"password_again": "something else entirely"}, "differ"),
        ({"full_name": "   "}, "full name"),
    ],
)
def test_bad_account_details_write_nothing_and_keep_the_code(
    app, world, clock, session, fields, message
):
    invitation, code = make_invitation(session, world, clock)
    response = join(english_client(app), app, code, **fields)
    assert message in flashed_text(response.text)
    assert invitation.used_at is None
    assert join(english_client(app), app, code).status_code == 302  # the code still works


def test_a_taken_username_is_refused(app, world, people, clock, session):
    _invitation, code = make_invitation(session, world, clock)
    response = join(english_client(app), app, code, username=people["teacher"].username)
    assert "taken" in flashed_text(response.text)


def test_a_signed_in_parent_adds_a_second_child_with_its_code(app, world, people, clock, session):
    _invitation, code = make_invitation(session, world, clock, student_id=people.other_student_id)
    client = english_client(app)
    sign_in(client, people["parent"], at=clock.now)
    assert client.get(f"/account/children/{people.other_student_id}").status_code == 403
    response = post_form(client, app, "/join", {"code": code})
    assert response.status_code == 302
    assert client.get(f"/account/children/{people.other_student_id}").status_code == 200
    assert sorted(g.student_id for g in people["parent"].roles) == sorted(
        [world.student.id, people.other_student_id]
    )


def test_wrong_invitation_codes_are_throttled_per_address(app, world, clock, session):
    for n in range(signin.CODE_LIMIT):
        join(english_client(app), app, f"WRONG-CODE-{n:04d}")
    _invitation, code = make_invitation(session, world, clock)
    response = join(english_client(app), app, code)
    assert response.status_code == 429
    assert "Too many failed attempts" in flashed_text(response.text)
    assert session.scalar(select(User).where(User.username == "aruzhan.parent")) is None
    elsewhere = english_client(app)
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert join(elsewhere, app, code).status_code == 302
    clock.advance(seconds=60)  # one try a minute from the address that guessed
    assert join(english_client(app), app, code, username="late.parent").status_code == 200


def test_an_admin_invites_only_for_their_own_school(app, world, clock, session):
    from ..factories import add_user, build_world

    elsewhere = build_world(session, app.config["KEYS_DIR"])
    other_admin = add_user(session, elsewhere.school, "school_admin")
    client = english_client(app)
    sign_in(client, other_admin, at=clock.now)
    response = post_form(
        client, app, "/admin/invitations", {"student_id": world.student.id, "role": "parent"}
    )
    assert response.status_code == 403
    assert (
        session.scalar(select(Invitation).where(Invitation.student_id == world.student.id)) is None
    )
    listed = client.get("/admin/invitations").text
    assert f'value="{world.student.id}"' not in listed
    assert f'value="{elsewhere.student.id}"' in listed


def test_admin_creates_a_staff_account_with_a_welcome_letter(app, world, people, clock, session):
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    form = {"username": "gulnar.teacher", "full_name": "Нұрғалиева Гүлнар"}
    page = post_form(admin, app, "/admin/users/new", {**form, "roles": ["teacher", "operator"]})
    assert page.status_code == 200
    assert "To Нұрғалиева Гүлнар" in page.text and "gulnar.teacher" in page.text
    assert re.search(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", page.text)
    user = session.scalar(select(User).where(User.username == "gulnar.teacher"))
    assert [g.role for g in user.roles] == ["teacher"]  # operators only from the command line
    assert user.password_hash is None and user.school_id == world.school.id
    assert "Нұрғалиева Гүлнар" in admin.get("/admin/users").text
    actions = session.scalars(
        select(AccessLogEntry.action).where(AccessLogEntry.target_id == str(user.id))
    ).all()
    assert {"user.create", "user.letter.welcome"} <= set(actions)


def test_admin_cannot_manage_another_schools_people(app, world, people, clock, session):
    from ..factories import build_world

    elsewhere = build_world(session, app.config["KEYS_DIR"])
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    for action in ("reset", "lock", "unlock"):
        response = post_form(
            admin,
            app,
            f"/admin/users/{elsewhere.teacher.id}/{action}",
            {"kind": "password", "reason": "forgot"},
        )
        assert response.status_code == 403, action
    assert elsewhere.teacher.locked_at is None
    assert admin.get(f"/admin/users/{elsewhere.teacher.id}/reset").status_code == 403


def test_admin_lock_and_unlock(app, people, clock, session):
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    parent = people["parent"]
    post_form(admin, app, f"/admin/users/{parent.id}/lock")
    assert parent.locked_at == clock.now
    client = english_client(app)
    refused = post_form(client, app, "/login", {"username": parent.username, "password": PASSWORD})
    assert refused.status_code == 200 and "locked" in flashed_text(refused.text)
    assert signed_in_user_id(client) is None
    post_form(admin, app, f"/admin/users/{parent.id}/unlock")
    assert (
        post_form(
            client, app, "/login", {"username": parent.username, "password": PASSWORD}
        ).status_code
        == 302
    )
    actions = session.scalars(
        select(AccessLogEntry.action).where(AccessLogEntry.target_id == str(parent.id))
    ).all()
    assert {"user.lock", "user.unlock"} <= set(actions)


def test_no_log_in_as_exists(app):
    """No endpoint lets one person act as another."""
    names = " ".join(rule.rule + " " + rule.endpoint for rule in app.url_map.iter_rules()).lower()
    for word in ("impersonat", "login_as", "login-as", "become", "switch_user", "sudo"):
        assert word not in names
