"""Sessions live on the server: a copy of the cookie is worth nothing once the session ends
(logout, "sign out everywhere", a reset, a lock, new roles); and what the server binds to its
own address (passkeys, letters) never comes from the request's Host header."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from auth import resets, services
from auth.models import AccessLogEntry, UserSession

from ..conftest import make_app
from .conftest import PASSWORD, english_client, post_form, post_json, sign_in, signed_in_user_id


def signed_in(app, user):  # type: ignore[no-untyped-def]
    client = english_client(app)
    response = post_form(client, app, "/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.text
    return client


def copy_of(app, client):  # type: ignore[no-untyped-def]
    """Another browser holding a stolen copy of the client's session cookie."""
    thief = english_client(app)
    cookie = client.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    return thief


def test_a_copy_of_the_cookie_reads_nothing_after_logout(app, people, clock):
    parent = signed_in(app, people["parent"])
    thief = copy_of(app, parent)
    assert thief.get("/api/portal/students").status_code == 200
    post_form(parent, app, "/logout")
    assert thief.get("/api/portal/students").status_code == 401
    assert thief.get("/portal/").headers["Location"].startswith("/login")


def test_the_cookie_is_sent_again_only_when_it_changes(app, people, clock):
    parent = signed_in(app, people["parent"])
    cookie = parent.get_cookie("session").value
    for _ in range(2):
        response = parent.get("/api/portal/students")
        assert response.status_code == 200
        assert not any(h.startswith("session=") for h in response.headers.getlist("Set-Cookie"))
    assert parent.get_cookie("session").value == cookie
    post_form(parent, app, "/logout")  # a change: the cookie goes
    assert parent.get_cookie("session") is None or parent.get_cookie("session").value != cookie


def test_sign_out_everywhere_ends_every_session_of_the_person(app, people, clock, session):
    parent = people["parent"]
    phone, laptop = signed_in(app, parent), signed_in(app, parent)
    other = signed_in(app, people["student"])
    page = phone.get("/account/security").text
    assert len(re.findall(r"<tr>\s*<td>", page)) == 2  # both sessions are listed
    assert "(this browser)" in page
    response = post_form(phone, app, "/account/sessions/end-all")
    assert response.headers["Location"].startswith("/login")
    for client in (phone, laptop):
        assert client.get("/api/portal/students").status_code == 401
        assert signed_in_user_id(client) is None
    assert other.get("/api/portal/students").status_code == 200
    reasons = session.scalars(
        select(UserSession.end_reason).where(UserSession.user_id == parent.id)
    ).all()
    assert set(reasons) == {"everywhere"}
    assert session.scalar(
        select(AccessLogEntry.id).where(AccessLogEntry.action == "user.sessions.end_all")
    )


def test_new_roles_and_an_approved_reset_end_the_sessions(app, people, clock, session):
    teacher = people["teacher"]
    client = english_client(app)
    sign_in(client, teacher, at=clock.now)
    assert client.get("/teacher/").status_code == 200
    services.set_roles(
        session, teacher, ["teacher", "inspector"], actor=None, ip=None, now=clock.now
    )
    assert client.get("/teacher/").headers["Location"].startswith("/login")

    parent = signed_in(app, people["parent"])
    resets.request_reset(
        session, people["parent"], "second_factor", "lost phone", actor=None, ip=None,
        now=clock.now,
    )  # fmt: skip
    assert parent.get("/api/portal/students").status_code == 401


def test_staff_sessions_end_after_twelve_hours(app, people, clock):
    client = english_client(app)
    sign_in(client, people["school_admin"], at=clock.now)
    assert client.get("/admin/users").status_code == 200
    clock.advance(hours=12, minutes=1)
    assert client.get("/admin/users").headers["Location"].startswith("/login")


def test_a_session_id_that_was_never_issued_signs_nobody_in(app, people, clock):
    client = english_client(app)
    with client.session_transaction() as state:
        state["sid"] = "x" * 43
        state["user_id"] = people["school_admin"].id  # what the old cookie format held
    assert client.get("/admin/users").headers["Location"].startswith("/login")


def test_the_grid_read_with_the_session_check_is_refused_as_every_page_is(
    app, world, people, clock, session
):
    """The grid's frame is read in the same statement as the session's check
    (``with_session_lookup``): an ended, expired or re-roled session still reads nothing, and
    a grid that does not exist is still 404."""
    from sqlalchemy import event

    grid = f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{world.q2.id}"
    teacher = english_client(app)
    sign_in(teacher, people["teacher"], at=clock.now)
    thief = copy_of(app, teacher)
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = app.extensions["journal_db"].engine
    teacher.get(grid)  # the body is built and kept: the next view reads only the frame
    event.listen(engine, "before_cursor_execute", note)
    try:
        assert teacher.get(grid).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", note)
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 and "user_sessions" in selects[0] and "class_groups" in selects[0]

    missing = f"/teacher/grid/{world.class_group.id + 1000}/{world.subject.id}/{world.q2.id}"
    assert teacher.get(missing).status_code == 404
    assert thief.get(grid).status_code == 200
    post_form(teacher, app, "/logout")
    assert thief.get(grid).headers["Location"].startswith("/login")

    again = english_client(app)
    sign_in(again, people["teacher"], at=clock.now)
    assert again.get(grid).status_code == 200
    clock.advance(hours=12, minutes=1)
    assert again.get(grid).headers["Location"].startswith("/login")

    clock.advance(minutes=1)
    third = english_client(app)
    sign_in(third, people["teacher"], at=clock.now)
    assert third.get(grid).status_code == 200
    services.set_roles(
        session, people["teacher"], ["inspector"], actor=None, ip=None, now=clock.now
    )
    assert third.get(grid).headers["Location"].startswith("/login")


# -- the address the server answers for -------------------------------------------------------


@pytest.fixture
def public_url(app, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "PUBLIC_URL", "https://journal.example.kz")


def test_passkeys_are_bound_to_the_public_url_not_the_host_header(app, clock, public_url):
    client = english_client(app)
    client.environ_base["HTTP_HOST"] = "evil.example"
    options = post_json(client, app, "/login/passkey/options")
    assert options.json["rpId"] == "journal.example.kz"


def test_production_refuses_to_start_without_a_public_url(app, tmp_path: Path):
    with pytest.raises(RuntimeError, match="JOURNAL_PUBLIC_URL"):
        make_app(app.config["DATABASE_URL"], tmp_path / "keys", TESTING=False, ENV="production")
    with pytest.raises(RuntimeError, match="JOURNAL_PUBLIC_URL must look like"):
        make_app(app.config["DATABASE_URL"], tmp_path / "keys", PUBLIC_URL="journal.example.kz")
    with pytest.raises(RuntimeError, match="JOURNAL_ENV"):
        make_app(app.config["DATABASE_URL"], tmp_path / "keys", ENV="staging")


def test_a_development_server_answers_for_its_own_host(app, clock):
    client = english_client(app)
    options = post_json(client, app, "/login/passkey/options")
    assert options.json["rpId"] == "localhost"


def test_letters_link_to_the_public_url(app, people, clock, public_url):
    """The letter an administrator prints names the public address, whatever Host the
    administrator's request came with."""
    client = english_client(app)
    client.environ_base["HTTP_HOST"] = "evil.example"
    sign_in(client, people["school_admin"], at=clock.now)
    page = post_form(
        client, app, "/admin/users/new",
        {"username": "new.teacher", "full_name": "Жаңа Мұғалім", "roles": ["teacher"]},
    )  # fmt: skip
    assert "https://journal.example.kz/reset" in page.text
    assert "evil.example" not in page.text
