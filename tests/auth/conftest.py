"""Fixtures for accounts and trust: one person per role in the world's school, a movable clock,
signed-in test clients and CSRF tokens."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.orm import object_session

from auth.models import ROLES, RoleGrant, User
from auth.passwords import hash_password

from ..factories import add_user, browser_state

PASSWORD = "correct horse battery"
_CSRF_RAW = "c" * 40


class Clock:
    """``app.config["AUTH_CLOCK"]``: the time every auth view and service sees."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setitem(app.config, "AUTH_CLOCK", clock)
    return clock


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters for tests that check many passwords (the production
    parameters are checked in test_login.py)."""
    from argon2 import PasswordHasher

    import auth.passwords

    monkeypatch.setattr(auth.passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class People:
    """One account per role, scoped to the world's school, class and student."""

    by_role: dict[str, User]
    other_student_id: int  # a child in the same school nobody here is linked to

    def __getitem__(self, role: str) -> User:
        return self.by_role[role]


@pytest.fixture
def people(world, session, password_hash) -> People:  # type: ignore[no-untyped-def]
    by_role: dict[str, User] = {"teacher": world.teacher}
    world.teacher.password_hash = password_hash
    for role in ROLES:
        if role == "teacher":
            continue
        user = add_user(session, world.school, role, username=f"{role}-{world.school.id}")
        user.password_hash = password_hash
        if role in ("parent", "student"):
            user.roles[0].student_id = world.student.id
        if role == "operator":
            user.school_id = None
            user.roles[0].school_id = None
        by_role[role] = user
    world.class_group.class_teacher_id = by_role["class_teacher"].id
    other = world.add_student(last_name="Тоқтарбекова", first_name="Мадина")
    session.flush()
    return People(by_role, other.id)


def csrf_token(client: FlaskClient, app: Flask) -> str:
    """A valid CSRF token for the client's session (Flask-WTF's own format)."""
    with client.session_transaction() as state:
        state["csrf_token"] = _CSRF_RAW
    return str(
        URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="wtf-csrf-token").dumps(_CSRF_RAW)
    )


def sign_in(
    client: FlaskClient,
    user: User,
    *,
    second_factor: bool = True,
    at: dt.datetime | None = None,
) -> None:
    """Put the user's signed-in session in the client, as login_user would."""
    values = browser_state(
        object_session(user),  # type: ignore[arg-type]
        user,
        second_factor=second_factor,
        at=at or dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    with client.session_transaction() as state:
        state.clear()
        state.update(values)


def post_form(client: FlaskClient, app: Flask, path: str, data: dict | None = None, **kwargs):  # type: ignore[no-untyped-def]
    token = csrf_token(client, app)
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


def post_json(client: FlaskClient, app: Flask, path: str, body: object = None):  # type: ignore[no-untyped-def]
    token = csrf_token(client, app)
    return client.post(path, json=body if body is not None else {}, headers={"X-CSRFToken": token})


def signed_in_user_id(client: FlaskClient) -> int | None:
    """Whose standing server-side session the client's cookie names (None: nobody's)."""
    from auth.sessions import find_session
    from journal.db import db

    with client.session_transaction() as state:
        token = state.get("sid")
    if not isinstance(token, str):
        return None
    row = find_session(db.session, token, dt.datetime.now(dt.UTC))
    return row.user_id if row is not None else None


def flashed_text(html: str) -> str:
    return " ".join(re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', html, re.S))


def add_grant(user: User, role: str, school_id: int | None, student_id: int | None = None) -> None:
    user.roles.append(RoleGrant(role=role, school_id=school_id, student_id=student_id))


def english_client(app: Flask) -> FlaskClient:
    """A browser that asks for English (the journal speaks Kazakh unless told otherwise)."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client
