"""Signing in: throttles that slow guessing but lock nobody out, the same answer for every
account state, redirect targets, session rotation, cookies, CSRF and security headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from auth import services, signin
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
    assert flashed_text(wrong.text) == flashed_text(unknown.text)
    assert flashed_text(wrong.text).startswith("Wrong username or password")
    assert signed_in_user_id(client) is None


def fail(client, app, username: str, times: int):  # type: ignore[no-untyped-def]
    for attempt in range(times):
        response = login(client, app, username, f"wrong {attempt}")
        assert response.status_code == 200, (attempt, flashed_text(response.text))


def from_address(app, address: str):  # type: ignore[no-untyped-def]
    client = english_client(app)
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_guessing_one_account_from_one_address_is_slowed_to_one_try_a_minute(
    app, people, clock, fast_hashing
):
    teacher = people["teacher"]
    attacker = from_address(app, "203.0.113.7")
    fail(attacker, app, teacher.username, signin.PAIR_LIMIT)
    refused = login(attacker, app, teacher.username, PASSWORD)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "Wait 60 seconds" in flashed_text(refused.text)
    # Never longer than a minute: then one attempt goes through (here the right password).
    clock.advance(seconds=61)
    assert login(attacker, app, teacher.username, PASSWORD).status_code == 302


def test_a_stranger_cannot_keep_a_person_out_from_elsewhere(app, people, clock, fast_hashing):
    """Failures from other addresses do not slow the person's own address down until the
    account's own limit; and then only for a minute at a time."""
    parent = people["parent"]
    for n in range(signin.ACCOUNT_LIMIT - 1):
        fail(from_address(app, f"198.51.100.{n}"), app, parent.username, 1)
    assert login(from_address(app, "10.0.0.5"), app, parent.username, PASSWORD).status_code == 302
    fail(from_address(app, "198.51.100.200"), app, parent.username, 1)
    held = login(from_address(app, "10.0.0.5"), app, parent.username, PASSWORD)
    assert held.status_code == 429 and int(held.headers["Retry-After"]) <= 60
    clock.advance(seconds=60)
    assert login(from_address(app, "10.0.0.5"), app, parent.username, PASSWORD).status_code == 302


def test_a_known_device_is_never_slowed_by_anybody_elses_failures(app, people, clock, fast_hashing):
    """A school behind one NAT, an attacker in it: the person's own browser still signs in."""
    parent = people["parent"]
    own = from_address(app, "192.0.2.1")
    assert login(own, app, parent.username, PASSWORD).status_code == 302
    post_form(own, app, "/logout")
    attacker = from_address(app, "192.0.2.1")  # the same address
    fail(attacker, app, parent.username, signin.PAIR_LIMIT)
    for n in range(signin.ACCOUNT_LIMIT - signin.PAIR_LIMIT):  # and helpers elsewhere
        fail(from_address(app, f"198.51.100.{n}"), app, parent.username, 1)
    for n in range(signin.ADDRESS_LIMIT - signin.PAIR_LIMIT):
        fail(attacker, app, f"someone{n}", 1)
    assert login(attacker, app, parent.username, PASSWORD).status_code == 429
    assert login(attacker, app, "someone-new", PASSWORD).status_code == 429
    assert login(own, app, parent.username, PASSWORD).status_code == 302


def test_a_known_devices_own_failures_count_against_it(app, people, clock, fast_hashing):
    parent = people["parent"]
    own = from_address(app, "192.0.2.1")
    assert login(own, app, parent.username, PASSWORD).status_code == 302
    post_form(own, app, "/logout")
    fail(own, app, parent.username, signin.DEVICE_LIMIT)
    # Past its own limit the device counts as unknown: its address is slowed like anyone's.
    assert login(own, app, parent.username, PASSWORD).status_code == 429


def test_one_address_guessing_many_accounts_waits_a_minute_and_others_do_not(
    app, people, clock, fast_hashing
):
    for n in range(signin.ADDRESS_LIMIT):
        fail(from_address(app, "203.0.113.9"), app, f"someone{n}", 1)
    held = login(from_address(app, "203.0.113.9"), app, people["parent"].username, PASSWORD)
    assert held.status_code == 429 and int(held.headers["Retry-After"]) <= 60
    assert signed_in_user_id(from_address(app, "203.0.113.9")) is None
    elsewhere = from_address(app, "10.0.0.2")
    assert login(elsewhere, app, people["parent"].username, PASSWORD).status_code == 302
    clock.advance(seconds=60)
    later = login(from_address(app, "203.0.113.9"), app, people["parent"].username, PASSWORD)
    assert later.status_code == 302


def test_the_throttle_says_the_same_for_an_unknown_name(app, people, clock, fast_hashing):
    """Whether an account exists cannot be read from when the throttle starts."""
    real, unknown = from_address(app, "203.0.113.20"), from_address(app, "203.0.113.21")
    fail(real, app, people["parent"].username, signin.PAIR_LIMIT)
    fail(unknown, app, "nobody-at-all", signin.PAIR_LIMIT)
    first = login(real, app, people["parent"].username, "wrong")
    second = login(unknown, app, "nobody-at-all", "wrong")
    assert first.status_code == second.status_code == 429
    assert flashed_text(first.text) == flashed_text(second.text)


def test_failures_older_than_the_window_are_forgotten_and_pruned(
    app, people, clock, session, fast_hashing
):
    client = from_address(app, "203.0.113.30")
    fail(client, app, people["parent"].username, signin.PAIR_LIMIT)
    clock.advance(minutes=16)
    fail(client, app, "someone-else", 1)
    assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1
    assert login(client, app, people["parent"].username, PASSWORD).status_code == 302


def test_wrong_second_factor_codes_lock_with_growing_backoff():
    assert signin.lock_time(signin.LOCK_AFTER - 1) is None
    assert signin.lock_time(signin.LOCK_AFTER) == dt.timedelta(minutes=15)
    assert signin.lock_time(signin.LOCK_AFTER + 2) == dt.timedelta(hours=1)
    assert signin.lock_time(200) == dt.timedelta(hours=24)


@pytest.fixture
def count_argon2(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verification the sign-in makes (its hashes), to compare the work done."""
    from auth import passwords

    calls: list[str] = []
    real = passwords._hasher

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(passwords, "_hasher", Counting())
    return calls


def test_every_account_state_gets_the_same_answer_and_the_same_work(
    app, people, clock, session, count_argon2
):
    """Unknown, no password yet, locked by an administrator, or simply a wrong password: the
    same page, status and words, and exactly one argon2 verification each (so the time is the
    same too). A locked account's right password is refused the same way."""
    locked, without = people["parent"], people["student"]
    services.lock_account(session, locked, actor=None, ip=None, now=clock.now)
    without.password_hash = None
    session.flush()
    answers = []
    for username, password in [
        ("nobody-at-all", PASSWORD),
        (without.username, PASSWORD),
        (locked.username, PASSWORD),
        (people["teacher"].username, "not the password"),
    ]:
        client = english_client(app)
        count_argon2.clear()
        response = login(client, app, username, password)
        answers.append((response.status_code, flashed_text(response.text)))
        assert len(count_argon2) == 1, username
        assert all(h.startswith("$argon2id$") for h in count_argon2)
        assert signed_in_user_id(client) is None
    assert len(set(answers)) == 1, answers
    assert answers[0][0] == 200 and "Wrong username or password" in answers[0][1]


# -- where people are sent after signing in ------------------------------------------------------


def browser_reading(location: str) -> str:
    """A Location header as a browser reads it: tabs and newlines dropped, backslash as slash."""
    return "".join(ch for ch in location if ch not in "\t\r\n").replace("\\", "/")


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example/phish",  # what next=/%09/evil.example/phish arrives as
        "//evil.example/phish",
        "/\\evil.example/phish",
        "\\\\evil.example/phish",
        "https://evil.example/phish",
        "javascript:alert(1)",
        "/\x00/evil.example",
        " //evil.example",
        "evil.example",
    ],
)
def test_only_paths_of_this_site_are_redirect_targets(app, people, clock, target):
    client = english_client(app)
    response = post_form(
        client,
        app,
        "/login",
        {"username": people["parent"].username, "password": PASSWORD, "next": target},
    )
    assert response.status_code == 302
    read = browser_reading(response.headers["Location"])
    assert read.startswith("/") and not read.startswith("//"), read
    assert urlsplit(read).netloc == "" and urlsplit(read).scheme == ""
    assert "evil.example" not in read


def test_language_switch_never_sends_to_another_site(app, clock):
    client = english_client(app)
    response = post_form(client, app, "/language", {"language": "ru", "next": "/\t/evil.example"})
    assert response.status_code == 302
    read = browser_reading(response.headers["Location"])
    assert read.startswith("/") and not read.startswith("//") and "evil.example" not in read


@pytest.mark.parametrize("path", ["/login", "/language"])
def test_a_cr_or_lf_in_next_is_a_bad_request_and_signs_nobody_in(app, people, clock, path):
    client = english_client(app)
    response = post_form(
        client,
        app,
        path,
        {
            "username": people["parent"].username,
            "password": PASSWORD,
            "language": "ru",
            "next": "/home\r\nSet-Cookie: planted=1",
        },
    )
    assert response.status_code == 400
    assert signed_in_user_id(client) is None
    assert "planted" not in response.headers.get("Set-Cookie", "")


def test_a_local_next_is_kept(app, people, clock):
    client = english_client(app)
    response = post_form(
        client,
        app,
        "/login",
        {"username": people["parent"].username, "password": PASSWORD, "next": "/portal/?x=1"},
    )
    assert response.headers["Location"] == "/portal/?x=1"


# -- sessions ------------------------------------------------------------------------------------


def test_signing_in_starts_a_new_session(app, people, clock):
    """Nothing an attacker planted in the session before sign-in survives it."""
    client = english_client(app)
    with client.session_transaction() as state:
        state["planted"] = "value"
        state["sid"] = "a session id the attacker chose"
    login(client, app, people["teacher"].username, PASSWORD)
    with client.session_transaction() as state:
        assert "planted" not in state
        assert state["sid"] != "a session id the attacker chose"
    assert signed_in_user_id(client) == people["teacher"].id
    # Staff are signed in, but not past the second factor yet.
    assert client.get("/").headers["Location"].startswith("/second-factor")


def test_the_cookie_holds_only_a_random_session_id(app, people, clock):
    client = english_client(app)
    login(client, app, people["parent"].username, PASSWORD)
    with client.session_transaction() as state:
        assert set(state) <= {"sid", "language", "csrf_token", "_permanent"}, dict(state)
        assert len(state["sid"]) >= 40


def test_a_lock_ends_existing_sessions(app, people, clock, session):
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
