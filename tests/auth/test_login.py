"""Signing in: lockout with growing backoff, per-address limit, session rotation, cookies,
CSRF and security headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from auth import services
from auth.models import LoginFailure

from ..conftest import make_app
from .conftest import (
    PASSWORD,
    csrf_token,
    english_client,
    flashed_text,
    post_form,
    signed_in_user_id,
)


def login(client, app, username: str, password: str):  # type: ignore[no-untyped-def]
    return post_form(client, app, "/login", {"username": username, "password": password})


def test_parent_signs_in_with_password(app, people, clock):
    client = english_client(app)
    parent = people["parent"]
    response = login(client, app, parent.username, PASSWORD)
    assert response.status_code == 302
    assert signed_in_user_id(client) == parent.id
    assert client.get("/account/children").status_code == 200


def test_staff_are_sent_to_the_second_factor_after_the_password(app, people, clock):
    client = english_client(app)
    response = login(client, app, people["teacher"].username, PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/second-factor")
    assert client.get("/").headers["Location"].startswith("/second-factor")


def test_wrong_password_is_refused_with_one_message_for_unknown_users_too(app, people, clock):
    client = english_client(app)
    wrong = login(client, app, people["parent"].username, "not the password")
    unknown = login(client, app, "nobody-here", PASSWORD)
    assert wrong.status_code == unknown.status_code == 200
    assert flashed_text(wrong.text) == flashed_text(unknown.text) == "Wrong username or password."
    assert signed_in_user_id(client) is None


def test_twenty_wrong_passwords_lock_the_account_and_the_lock_ends(
    app, people, clock, session, fast_hashing
):
    client = english_client(app)
    teacher = people["teacher"]
    for attempt in range(1, 20):
        response = login(client, app, teacher.username, f"wrong {attempt}")
        assert response.status_code == 200, attempt
    locking = login(client, app, teacher.username, "wrong 20")
    assert locking.status_code == 429
    assert "locked" in flashed_text(locking.text)

    # The right password during the lockout is refused.
    refused = login(client, app, teacher.username, PASSWORD)
    assert refused.status_code == 429
    assert "locked" in flashed_text(refused.text)
    assert signed_in_user_id(client) is None

    clock.advance(minutes=14)
    assert login(client, app, teacher.username, PASSWORD).status_code == 429

    # The backoff ends: after 15 minutes the right password works.
    clock.advance(minutes=1, seconds=1)
    response = login(client, app, teacher.username, PASSWORD)
    assert response.status_code == 302
    assert signed_in_user_id(client) == teacher.id


def test_each_failure_after_a_lock_doubles_the_lock(app, people, clock, session):
    parent = people["parent"]
    parent.failed_logins = 19
    parent.last_failed_login_at = clock.now
    session.flush()
    client = english_client(app)
    login(client, app, parent.username, "wrong")
    assert parent.locked_until == clock.now + dt.timedelta(minutes=15)
    clock.advance(minutes=16)
    login(client, app, parent.username, "wrong again")
    assert parent.locked_until == clock.now + dt.timedelta(minutes=30)
    clock.advance(minutes=31)
    login(client, app, parent.username, "and again")
    assert parent.locked_until == clock.now + dt.timedelta(minutes=60)
    # The right password after the lock starts afresh.
    clock.advance(minutes=61)
    assert login(client, app, parent.username, PASSWORD).status_code == 302
    assert parent.failed_logins == 0


def test_lock_times_grow_and_stop_at_a_day():
    assert services.lock_time(19) is None
    assert services.lock_time(20) == dt.timedelta(minutes=15)
    assert services.lock_time(22) == dt.timedelta(hours=1)
    assert services.lock_time(200) == dt.timedelta(hours=24)


def test_one_address_is_limited_across_accounts(app, people, clock, session):
    """Guessing one password against many accounts trips the per-address limit."""
    for n in range(services.ADDRESS_LIMIT):
        session.add(LoginFailure(address="127.0.0.1", username=f"someone{n}", at=clock.now))
    session.flush()
    client = english_client(app)
    response = login(client, app, people["parent"].username, PASSWORD)
    assert response.status_code == 429
    assert "network" in flashed_text(response.text)
    assert signed_in_user_id(client) is None
    # Another address is not affected, and the window passes.
    elsewhere = english_client(app)
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.2"
    assert login(elsewhere, app, people["parent"].username, PASSWORD).status_code == 302
    clock.advance(minutes=16)
    assert login(client, app, people["parent"].username, PASSWORD).status_code == 302


def test_an_administrators_lock_refuses_the_right_password(app, people, clock, session):
    parent = people["parent"]
    services.lock_account(session, parent, actor=None, ip=None, now=clock.now)
    client = english_client(app)
    response = login(client, app, parent.username, PASSWORD)
    assert "locked" in flashed_text(response.text)
    assert signed_in_user_id(client) is None


def test_signing_in_starts_a_new_session(app, people, clock):
    """Nothing an attacker planted in the session before sign-in survives it."""
    client = english_client(app)
    with client.session_transaction() as state:
        state["planted"] = "value"
        state["second_factor_ok"] = True
    login(client, app, people["teacher"].username, PASSWORD)
    with client.session_transaction() as state:
        assert "planted" not in state
        assert state["second_factor_ok"] is False
        assert state["user_id"] == people["teacher"].id


def test_password_reset_and_lock_end_existing_sessions(app, people, clock, session):
    client = english_client(app)
    login(client, app, people["parent"].username, PASSWORD)
    assert client.get("/account/children").status_code == 200
    services.lock_account(session, people["parent"], actor=None, ip=None, now=clock.now)
    response = client.get("/account/children")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_sessions_expire(app, people, clock):
    client = english_client(app)
    login(client, app, people["parent"].username, PASSWORD)
    clock.advance(days=15)
    assert client.get("/account/children").headers["Location"].startswith("/login")


def test_logout_ends_the_session(app, people, clock):
    client = english_client(app)
    login(client, app, people["parent"].username, PASSWORD)
    assert post_form(client, app, "/logout").status_code == 302
    assert signed_in_user_id(client) is None
    assert client.get("/account/children").headers["Location"].startswith("/login")


def test_forms_without_a_csrf_token_are_refused(app, people, clock):
    client = english_client(app)
    response = client.post(
        "/login", data={"username": people["parent"].username, "password": PASSWORD}
    )
    assert response.status_code == 400
    assert signed_in_user_id(client) is None


def test_security_headers_on_every_page(app, clock):
    response = english_client(app).get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_session_cookie_is_secure_httponly_and_samesite(app, tmp_path: Path):
    """With production cookie settings (the test app turns Secure off for plain http)."""
    production = make_app(app.config["DATABASE_URL"], tmp_path / "keys", SESSION_COOKIE_SECURE=True)
    client = english_client(production)
    response = client.get("/login", base_url="https://localhost")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    production.extensions["journal_db"].engine.dispose()


def test_passwords_are_stored_as_argon2id_with_the_librarys_parameters(people):
    from argon2 import PasswordHasher, Type

    from auth import passwords

    assert people["parent"].password_hash.startswith("$argon2id$")
    assert passwords._hasher.type is Type.ID
    assert passwords._hasher.memory_cost >= PasswordHasher().memory_cost


@pytest.mark.parametrize("username", ["ab", "Bad Name", "x" * 101, "имя"])
def test_bad_usernames_are_refused(session, world, username):
    with pytest.raises(services.AuthError) as refused:
        services.check_username(session, username)
    assert refused.value.code == "bad_username"


def test_csrf_helper_matches_flask_wtf(app, people, clock):
    """The fixtures' token is the one Flask-WTF accepts (else every POST test proves nothing)."""
    client = english_client(app)
    token = csrf_token(client, app)
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": people["parent"].username, "password": PASSWORD},
    )
    assert response.status_code == 302
