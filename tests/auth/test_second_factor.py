"""The second factor: TOTP enrolment and replay, recovery codes, passkeys, and staff kept out of
everything but enrolment until they have one."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import sqlalchemy as sa

from auth import factors, resets
from auth.models import Passkey, RecoveryCode, UserSession
from auth.services import AuthError

from .conftest import (
    PASSWORD,
    english_client,
    flashed_text,
    post_form,
    post_json,
    sign_in,
    signed_in_user_id,
)
from .softkey import SoftAuthenticator, b64url


def server_session(client, session) -> UserSession:  # type: ignore[no-untyped-def]
    """The server-side session the client's cookie names."""
    from auth.sessions import find_session

    with client.session_transaction() as state:
        token = state["sid"]
    row = find_session(session, token, dt.datetime.now(dt.UTC))
    assert row is not None
    return row


def password_step(client, app, user):  # type: ignore[no-untyped-def]
    response = post_form(client, app, "/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.text
    return response


def enrol_totp(session, user, clock) -> str:  # type: ignore[no-untyped-def]
    secret = factors.new_totp_secret()
    code = factors.current_totp_code(secret, clock.now)
    factors.confirm_totp(session, user, secret, code, now=clock.now)
    clock.advance(seconds=30)  # the enrolment used this step's code
    return secret


def test_staff_enrol_totp_get_recovery_codes_and_get_in(app, people, clock, session):
    client = english_client(app)
    teacher = people["teacher"]
    password_step(client, app, teacher)
    assert client.get("/second-factor").headers["Location"].startswith("/second-factor/enrol")
    page = client.get("/second-factor/enrol")
    assert page.status_code == 200 and "data:image/svg+xml" in page.text
    with client.session_transaction() as state:
        assert "totp_pending" not in state  # the secret stays on the server
    secret = server_session(client, session).totp_pending
    assert " ".join(secret[i : i + 4] for i in range(0, 32, 4)) in page.text
    assert client.get("/second-factor/enrol").text.count(secret[:4]) >= 1  # the same secret
    assert server_session(client, session).totp_pending == secret

    wrong = post_form(client, app, "/second-factor/enrol", {"code": "000000"})
    assert "Wrong code" in flashed_text(wrong.text)
    assert client.get("/").status_code == 302

    code = pyotp.TOTP(secret).at(clock.now)
    done = post_form(client, app, "/second-factor/enrol", {"code": code})
    assert done.status_code == 200
    codes = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", done.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert teacher.totp_secret == secret
    assert client.get("/").status_code == 200
    # Only hashes are stored.
    assert factors.unused_recovery_codes(session, teacher) == 10
    stored = {row.code_hash for row in session.scalars(sa.select(RecoveryCode))}
    assert not any(code.encode() in value for value in stored for code in codes)


def test_a_replayed_totp_code_is_refused(app, people, clock, session):
    teacher = people["teacher"]
    secret = enrol_totp(session, teacher, clock)
    code = pyotp.TOTP(secret).at(clock.now)

    first = english_client(app)
    password_step(first, app, teacher)
    assert post_form(first, app, "/second-factor", {"code": code}).status_code == 302
    assert first.get("/").status_code == 200

    # The same code, seconds later, from another browser (someone who watched it typed).
    clock.advance(seconds=5)
    second = english_client(app)
    password_step(second, app, teacher)
    replay = post_form(second, app, "/second-factor", {"code": code})
    assert replay.status_code == 200
    assert "used already" in flashed_text(replay.text)
    assert second.get("/").headers["Location"].startswith("/second-factor")

    # An older code (the step before) is refused too; the next step's code works.
    older = pyotp.TOTP(secret).at(clock.now.timestamp() - 30)
    assert "used already" in flashed_text(
        post_form(second, app, "/second-factor", {"code": older}).text
    )
    clock.advance(seconds=30)
    fresh = pyotp.TOTP(secret).at(clock.now)
    assert post_form(second, app, "/second-factor", {"code": fresh}).status_code == 302
    assert second.get("/").status_code == 200


def test_totp_allows_one_step_of_clock_drift_but_not_two(session, people, clock):
    teacher = people["teacher"]
    secret = enrol_totp(session, teacher, clock)
    clock.advance(seconds=30)
    behind = pyotp.TOTP(secret).at(clock.now.timestamp() - 30)  # a phone 30 s slow
    assert factors.verify_second_factor(session, teacher, behind, address=None, now=clock.now)
    clock.advance(seconds=90)
    too_old = pyotp.TOTP(secret).at(clock.now.timestamp() - 60)
    with pytest.raises(AuthError) as refused:
        factors.verify_second_factor(session, teacher, too_old, address=None, now=clock.now)
    assert refused.value.code == "bad_code"


def test_a_recovery_code_works_once(app, people, clock, session):
    teacher = people["teacher"]
    enrol_totp(session, teacher, clock)
    codes = factors.replace_recovery_codes(session, teacher, now=clock.now)
    client = english_client(app)
    password_step(client, app, teacher)
    assert post_form(client, app, "/second-factor", {"code": codes[3].upper()}).status_code == 302
    assert client.get("/").status_code == 200
    again = english_client(app)
    password_step(again, app, teacher)
    assert "Wrong code" in flashed_text(
        post_form(again, app, "/second-factor", {"code": codes[3]}).text
    )
    assert factors.unused_recovery_codes(session, teacher) == 9


def test_twenty_wrong_codes_lock_the_account(app, people, clock, session):
    teacher = people["teacher"]
    enrol_totp(session, teacher, clock)
    client = english_client(app)
    password_step(client, app, teacher)
    for _attempt in range(19):
        post_form(client, app, "/second-factor", {"code": "123456"})
    locked = post_form(client, app, "/second-factor", {"code": "123456"})
    assert locked.headers["Location"].startswith("/login")
    assert signed_in_user_id(client) is None
    assert teacher.locked_until is not None and teacher.locked_until > clock.now


def test_staff_without_a_second_factor_reach_only_enrolment(app, people, clock):
    client = english_client(app)
    sign_in(client, people["school_admin"], second_factor=False, at=clock.now)
    for path in ["/", "/admin/users", "/admin/access-log", "/devices", "/account/security"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/second-factor"), path
    assert client.get("/api/devices").status_code == 401
    assert client.get("/second-factor/enrol").status_code == 200


def test_a_stolen_password_cannot_replace_an_enrolled_factor(app, people, clock, session):
    teacher = people["teacher"]
    secret = enrol_totp(session, teacher, clock)
    attacker = english_client(app)
    password_step(attacker, app, teacher)
    assert attacker.get("/second-factor/enrol").headers["Location"].startswith("/second-factor")
    other_secret = factors.new_totp_secret()
    server_session(attacker, session).totp_pending = other_secret
    post_form(
        attacker, app, "/second-factor/enrol", {"code": pyotp.TOTP(other_secret).at(clock.now)}
    )
    assert teacher.totp_secret == secret
    options = post_json(attacker, app, "/account/passkeys/options")
    assert options.status_code == 403
    assert attacker.get("/").headers["Location"].startswith("/second-factor")


def test_admin_reset_of_the_second_factor_makes_the_person_enrol_again(app, people, clock, session):
    teacher = people["teacher"]
    enrol_totp(session, teacher, clock)
    victim_session = english_client(app)
    sign_in(victim_session, teacher, at=clock.now)
    assert victim_session.get("/").status_code == 200

    resets.request_reset(
        session, teacher, "second_factor", "lost phone", actor=None, ip=None, now=clock.now
    )
    assert teacher.totp_secret is None and teacher.totp_confirmed_at is None
    assert victim_session.get("/").headers["Location"].startswith("/login")
    client = english_client(app)
    password_step(client, app, teacher)
    assert client.get("/second-factor").headers["Location"].startswith("/second-factor/enrol")


# -- passkeys ----------------------------------------------------------------------------------


def register_passkey(client, app, label: str = "my phone") -> SoftAuthenticator:  # type: ignore[no-untyped-def]
    authenticator = SoftAuthenticator()
    options = post_json(client, app, "/account/passkeys/options")
    assert options.status_code == 200, options.text
    assert options.json["rp"]["id"] == "localhost"
    credential = authenticator.create(options.json)
    done = post_json(client, app, "/account/passkeys", {"credential": credential, "label": label})
    assert done.status_code == 200, done.text
    return authenticator


def test_staff_enrol_a_passkey_as_their_second_factor_and_use_it(app, people, clock, session):
    teacher = people["teacher"]
    client = english_client(app)
    password_step(client, app, teacher)
    authenticator = register_passkey(client, app)
    assert client.get("/").status_code == 200
    assert (
        session.scalar(sa.select(Passkey.label).where(Passkey.user_id == teacher.id)) == "my phone"
    )

    later = english_client(app)
    password_step(later, app, teacher)
    assert later.get("/").headers["Location"].startswith("/second-factor")
    options = post_json(later, app, "/second-factor/passkey/options").json
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(authenticator.credential_id)]
    assertion = authenticator.get(options)
    assert post_json(later, app, "/second-factor/passkey", assertion).status_code == 200
    assert later.get("/").status_code == 200


def test_a_passkey_assertion_cannot_be_replayed(app, people, clock):
    teacher = people["teacher"]
    client = english_client(app)
    password_step(client, app, teacher)
    authenticator = register_passkey(client, app)
    other = english_client(app)
    password_step(other, app, teacher)
    options = post_json(other, app, "/second-factor/passkey/options").json
    assertion = authenticator.get(options)
    assert post_json(other, app, "/second-factor/passkey", assertion).status_code == 200
    third = english_client(app)
    password_step(third, app, teacher)
    post_json(third, app, "/second-factor/passkey/options")
    replay = post_json(third, app, "/second-factor/passkey", assertion)
    assert replay.status_code == 400 and replay.json["error"] == "bad_passkey"
    assert third.get("/").headers["Location"].startswith("/second-factor")


def test_parents_sign_in_with_a_passkey_and_no_password(app, people, clock):
    parent = people["parent"]
    client = english_client(app)
    sign_in(client, parent, at=clock.now)
    authenticator = register_passkey(client, app)

    browser = english_client(app)
    options = post_json(browser, app, "/login/passkey/options").json
    assert "allowCredentials" not in options or options["allowCredentials"] == []
    signed = post_json(browser, app, "/login/passkey", authenticator.get(options))
    assert signed.status_code == 200, signed.text
    assert signed_in_user_id(browser) == parent.id
    assert browser.get("/account/children").status_code == 200


def test_staff_cannot_skip_the_password_with_a_passkey(app, people, clock):
    teacher = people["teacher"]
    client = english_client(app)
    password_step(client, app, teacher)
    authenticator = register_passkey(client, app)
    browser = english_client(app)
    options = post_json(browser, app, "/login/passkey/options").json
    refused = post_json(browser, app, "/login/passkey", authenticator.get(options))
    assert refused.status_code == 403 and refused.json["error"] == "staff_use_password"
    assert signed_in_user_id(browser) is None


def test_an_unknown_passkey_is_refused(app, people, clock):
    browser = english_client(app)
    options = post_json(browser, app, "/login/passkey/options").json
    stranger = SoftAuthenticator()
    refused = post_json(browser, app, "/login/passkey", stranger.get(options))
    assert refused.status_code == 400 and refused.json["error"] == "unknown_passkey"
    assert signed_in_user_id(browser) is None


def test_a_passkey_made_for_another_site_is_refused(app, people, clock):
    client = english_client(app)
    sign_in(client, people["parent"], at=clock.now)
    phishing = SoftAuthenticator(origin="https://evil.example")
    options = post_json(client, app, "/account/passkeys/options").json
    refused = post_json(client, app, "/account/passkeys", {"credential": phishing.create(options)})
    assert refused.status_code == 400 and refused.json["error"] == "bad_passkey"


def test_the_database_holds_the_totp_secret_sealed(app, people, clock, session):
    """A copy of the database alone gives no second factor away: the stored value is sealed
    with a key derived from the IIN encryption key, and the app reads the secret back."""
    teacher = people["teacher"]
    secret = enrol_totp(session, teacher, clock)
    stored = session.execute(
        sa.text("SELECT totp_secret FROM users WHERE id = :id"), {"id": teacher.id}
    ).scalar_one()
    assert stored.startswith("sealed:v1:") and secret not in stored
    session.expire(teacher)
    assert teacher.totp_secret == secret
    # Two users with the same seed would still store different values (a fresh nonce each).
    other = people["school_admin"]
    other.totp_secret = secret
    session.flush()
    again = session.execute(
        sa.text("SELECT totp_secret FROM users WHERE id = :id"), {"id": other.id}
    ).scalar_one()
    assert again != stored


def test_a_secret_stored_before_sealing_still_signs_in(app, people, clock, session):
    """Rows written before the sealing migration (with no key at hand) keep working."""
    teacher = people["teacher"]
    secret = enrol_totp(session, teacher, clock)
    session.execute(
        sa.text("UPDATE users SET totp_secret = :secret WHERE id = :id"),
        {"secret": secret, "id": teacher.id},
    )
    session.expire(teacher)
    assert teacher.totp_secret == secret
    code = factors.current_totp_code(secret, clock.now)
    assert factors.verify_second_factor(session, teacher, code, address=None, now=clock.now) == (
        "totp"
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_sealing_migration_seals_the_secrets_already_stored(databases, tmp_path, backend):
    from flask_migrate import upgrade

    from auth.models import User
    from journal.db import db

    from ..conftest import make_app

    app = make_app(databases.create(backend), tmp_path / "keys")
    secret = factors.new_totp_secret()
    with app.app_context():
        upgrade(revision="0009merge")
        db.session.execute(
            sa.text(
                "INSERT INTO users (username, full_name, created_at, totp_secret) "
                "VALUES ('old', 'Ескі Мұғалім', CURRENT_TIMESTAMP, :secret)"
            ),
            {"secret": secret},
        )
        db.session.commit()
        upgrade()
        stored = db.session.execute(sa.text("SELECT totp_secret FROM users")).scalar_one()
        assert stored.startswith("sealed:v1:") and secret not in stored
        user = db.session.scalars(sa.select(User)).one()
        assert user.totp_secret == secret
        db.session.close()
    app.extensions["journal_db"].engine.dispose()
