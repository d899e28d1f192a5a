"""Resets of someone else's account need two people; nobody ends up holding a session, or a
signing key, as someone else.

The takeover the security review found: one administrator resets a parent's (or a teacher's)
password, opens the one-time link, sets a password and is the person; for a teacher, with the
second factor reset too, enrols an authenticator and a device key and signs journal entries in
the teacher's name.
"""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from auth import devices, factors, resets, signin
from auth.models import AccessLogEntry, AccountReset, DeviceKey, PasswordReset, User
from journal.ledger import entry as ledger_entry
from journal.models import Entry
from journal.recording.recorder import EntryRefused, record_entry

from ..factories import add_user
from .conftest import (
    PASSWORD,
    english_client,
    flashed_text,
    post_form,
    post_json,
    sign_in,
    signed_in_user_id,
)

NEW_PASSWORD = "жаңа құпия сөз 2026"
LETTER_CODE = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}")


@pytest.fixture
def second_admin(world, people, session, password_hash):  # type: ignore[no-untyped-def]
    other = add_user(session, world.school, "school_admin", full_name="Бекова Динара Асқарқызы")
    other.password_hash = password_hash
    session.flush()
    return other


def admin_client(app, user, clock):  # type: ignore[no-untyped-def]
    client = english_client(app)
    sign_in(client, user, at=clock.now)
    return client


def ask_for_reset(client, app, target, kind="password", reason="forgot the password"):  # type: ignore[no-untyped-def]
    return post_form(
        client, app, f"/admin/users/{target.id}/reset", {"kind": kind, "reason": reason}
    )


def pending_reset(session, target) -> AccountReset:  # type: ignore[no-untyped-def]
    return session.scalar(
        select(AccountReset)
        .where(AccountReset.user_id == target.id)
        .order_by(AccountReset.id.desc())
    )


def letters_of(session, user) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(
        select(func.count()).select_from(PasswordReset).where(PasswordReset.user_id == user.id)
    )


# -- one administrator alone -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["parent", "teacher"])
def test_one_administrator_alone_cannot_become_anyone(app, world, people, clock, session, role):
    """The review's sequence, tried by one administrator against a parent and a teacher: no
    code ever reaches the administrator, no session as the victim, no entry in their name."""
    victim = people[role]
    victim_browser = english_client(app)
    sign_in(victim_browser, victim, at=clock.now)
    keys_before = [(k.kid, k.revoked_at) for k in devices.device_keys_of(session, victim)]
    entries_before = session.scalar(select(func.count()).select_from(Entry))
    admin = admin_client(app, people["school_admin"], clock)

    # The old one-click endpoints are gone.
    for action in ("reset-password", "reset-second-factor"):
        assert post_form(admin, app, f"/admin/users/{victim.id}/{action}").status_code == 404
    # Asking works, and shows no code.
    for kind in ("both",):
        asked = ask_for_reset(admin, app, victim, kind)
        assert asked.status_code == 302
        assert not LETTER_CODE.search(admin.get("/admin/resets").text)
    reset = pending_reset(session, victim)
    assert reset.approved_at is None
    # Approving one's own request is refused, and so is printing a letter for it.
    post_form(admin, app, f"/admin/resets/{reset.id}/approve")
    letter = post_form(admin, app, f"/admin/resets/{reset.id}/letter", follow_redirects=True)
    assert not LETTER_CODE.search(letter.text)
    assert "approve" in flashed_text(letter.text) or "no letter" in flashed_text(letter.text)
    assert reset.approved_at is None and letters_of(session, victim) == 0
    # Nothing about the victim changed: their password, factor, keys and session still stand.
    assert signin.authenticate(session, victim.username, PASSWORD, address=None, now=clock.now)
    assert [(k.kid, k.revoked_at) for k in devices.device_keys_of(session, victim)] == keys_before
    assert signed_in_user_id(victim_browser) == victim.id
    assert session.scalar(select(func.count()).select_from(Entry)) == entries_before
    # And the administrator's own browser is signed in as nobody but the administrator.
    assert signed_in_user_id(admin) == people["school_admin"].id


def test_an_administrator_cannot_approve_a_reset_of_themselves(
    app, people, clock, session, second_admin
):
    admin = people["school_admin"]
    ask_for_reset(admin_client(app, second_admin, clock), app, admin)
    reset = pending_reset(session, admin)
    response = post_form(admin_client(app, admin, clock), app, f"/admin/resets/{reset.id}/approve")
    assert response.status_code == 403
    assert reset.approved_at is None


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"kind": "password", "reason": "   "}, "Write why"),
        ({"kind": "everything", "reason": "forgot"}, "Choose what to reset"),
        ({"kind": "password", "reason": "x" * 501}, "Write why"),
    ],
)
def test_a_bad_request_writes_nothing(app, people, clock, session, form, message):
    admin = admin_client(app, people["school_admin"], clock)
    response = post_form(admin, app, f"/admin/users/{people['parent'].id}/reset", form)
    assert response.status_code == 200 and message in flashed_text(response.text)
    assert pending_reset(session, people["parent"]) is None


def test_one_request_at_a_time_and_a_cancelled_one_is_never_applied(
    app, people, clock, session, second_admin
):
    admin = admin_client(app, people["school_admin"], clock)
    parent = people["parent"]
    ask_for_reset(admin, app, parent)
    again = ask_for_reset(admin, app, parent)
    assert "already waiting" in flashed_text(again.text)
    reset = pending_reset(session, parent)
    post_form(admin, app, f"/admin/resets/{reset.id}/cancel")
    assert reset.cancelled_at is not None
    post_form(admin_client(app, second_admin, clock), app, f"/admin/resets/{reset.id}/approve")
    assert reset.approved_at is None
    assert parent.password_hash is not None


def test_an_unapproved_request_lapses(app, people, clock, session, second_admin):
    ask_for_reset(admin_client(app, people["school_admin"], clock), app, people["parent"])
    reset = pending_reset(session, people["parent"])
    clock.advance(days=8)
    response = post_form(
        admin_client(app, second_admin, clock), app, f"/admin/resets/{reset.id}/approve",
        follow_redirects=True,
    )  # fmt: skip
    assert "lapsed" in flashed_text(response.text)
    assert reset.approved_at is None


# -- with a second person ----------------------------------------------------------------------


def test_with_approval_the_person_completes_the_reset_and_old_keys_sign_no_more(
    app, world, people, clock, session, second_admin
):
    teacher, asker = people["teacher"], people["school_admin"]
    victim_browser = english_client(app)
    sign_in(victim_browser, teacher, at=clock.now)
    teacher.totp_secret = factors.new_totp_secret()
    teacher.totp_confirmed_at = clock.now
    session.flush()
    assert record_entry(session, world.signed("grade"), now=clock.now).status == "accepted"

    ask_for_reset(admin_client(app, asker, clock), app, teacher, "both", "lost phone and password")
    reset = pending_reset(session, teacher)
    approver = admin_client(app, second_admin, clock)
    assert post_form(approver, app, f"/admin/resets/{reset.id}/approve").status_code == 302

    # Applied at approval: sessions end, keys revoked, password and second factor cleared.
    assert reset.approved_by_id == second_admin.id
    assert victim_browser.get("/").headers["Location"].startswith("/login")
    assert world.device.kid in {k.kid for k in devices.device_keys_of(session, teacher)}
    assert all(k.revoked_at is not None for k in devices.device_keys_of(session, teacher))
    assert teacher.password_hash is None and teacher.totp_secret is None
    with pytest.raises(EntryRefused) as held:
        record_entry(session, world.signed("grade"), now=clock.now)
    assert (held.value.status, held.value.code) == ("quarantined", "revoked_key")
    revocations = session.scalars(
        select(Entry.leaf).where(Entry.kind == "key_revoked", Entry.log_id != world.log.id)
    ).all()
    payloads = [ledger_entry.parse_leaf(leaf).payload for leaf in revocations]
    assert [p["after_reset"]["id"] for p in payloads if p["key"]["kid"] == world.device.kid] == [
        reset.id
    ]

    # The asker prints the letter, once; the approver or anyone else cannot print it again.
    page = post_form(admin_client(app, asker, clock), app, f"/admin/resets/{reset.id}/letter")
    assert page.status_code == 200
    code = LETTER_CODE.search(page.text).group(0)
    assert teacher.full_name in page.text and "lost phone and password" in page.text
    assert NEW_PASSWORD not in page.text and PASSWORD not in page.text
    twice = post_form(approver, app, f"/admin/resets/{reset.id}/letter", follow_redirects=True)
    assert not LETTER_CODE.search(twice.text) and "shown only once" in flashed_text(twice.text)
    stored = session.scalar(select(PasswordReset).where(PasswordReset.user_id == teacher.id))
    assert code.replace("-", "").encode() not in stored.token_hash

    # The teacher types the code, sets a password, and is not signed in by it.
    person = english_client(app)
    typed = post_form(person, app, "/reset", {"code": code.lower().replace("-", " ")})
    assert typed.headers["Location"] == "/reset"
    done = post_form(
        person, app, "/reset", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert done.headers["Location"].startswith("/login")
    assert signed_in_user_id(person) is None
    assert reset.completed_at == clock.now

    # At the next sign-in: a new second factor first, then who reset the account and when.
    signing = english_client(app)
    post_form(signing, app, "/login", {"username": teacher.username, "password": NEW_PASSWORD})
    enrol = signing.get("/second-factor/enrol")
    secret = re.search(r"<code>([A-Z2-7 ]{20,})</code>", enrol.text)
    assert secret, enrol.text
    secret_value = secret.group(1).replace(" ", "")
    clock.advance(seconds=30)
    enrolled = post_form(
        signing, app, "/second-factor/enrol",
        {"code": factors.current_totp_code(secret_value, clock.now)},
    )  # fmt: skip
    onward = re.search(r'href="([^"]+)">[^<]*continue', enrolled.text).group(1)
    assert onward.startswith("/account/reset-notice")
    notice = signing.get(onward.replace("&amp;", "&"))
    text = notice.text
    assert asker.full_name in text and second_admin.full_name in text
    assert "lost phone and password" in text
    assert post_form(signing, app, onward.replace("&amp;", "&")).status_code == 302
    assert reset.acknowledged_at == clock.now
    assert signing.get("/account/reset-notice").status_code == 302  # told once

    # A key enrolled now is marked as enrolled after the reset, in the list and the log.
    private_key = Ed25519PrivateKey.generate()
    raw = private_key.public_key().public_bytes_raw()
    key, created = devices.enrol_device_key(
        session, teacher, alg="ed25519", public_key=base64.b64encode(raw).decode(),
        label="new phone", ip=None, now=clock.now,
    )  # fmt: skip
    assert created and key.after_reset_id == reset.id
    assert "enrolled after the account reset" in signing.get("/devices").text
    assert session.scalar(
        select(AccessLogEntry.id).where(AccessLogEntry.action == "device_key.enrol.after_reset")
    )
    actions = set(
        session.scalars(
            select(AccessLogEntry.action).where(AccessLogEntry.target_id == str(teacher.id))
        )
    )
    assert {"user.reset.request.both", "user.reset.approve.both", "user.letter.reset"} <= actions
    assert {"user.password_set"} <= actions


def test_a_parents_reset_with_approval_and_the_notice(app, people, clock, session, second_admin):
    parent = people["parent"]
    asker = admin_client(app, people["school_admin"], clock)
    ask_for_reset(asker, app, parent, "password", "forgot it at the parents' meeting")
    reset = pending_reset(session, parent)
    post_form(admin_client(app, second_admin, clock), app, f"/admin/resets/{reset.id}/approve")
    code = LETTER_CODE.search(post_form(asker, app, f"/admin/resets/{reset.id}/letter").text)
    person = english_client(app)
    assert person.get(f"/reset/{code.group(0).replace('-', '')}").status_code == 302
    post_form(person, app, "/reset", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    signed = post_form(
        person, app, "/login", {"username": parent.username, "password": NEW_PASSWORD}
    )
    assert signed.headers["Location"].startswith("/account/reset-notice")
    assert "forgot it at the parents" in person.get(signed.headers["Location"]).text


# -- the letter's code ---------------------------------------------------------------------------


def operator_letter(session, user, clock) -> str:  # type: ignore[no-untyped-def]
    reset = resets.request_reset(
        session, user, "password", "test", actor=None, ip=None, now=clock.now
    )
    return resets.print_letter(session, reset, actor=None, ip=None, now=clock.now).path_code


def test_a_letters_link_is_exchanged_on_first_use_for_a_clean_url(app, people, clock, session):
    code = operator_letter(session, people["parent"], clock)
    first = english_client(app)
    opened = first.get(f"/reset/{code}")
    assert opened.status_code == 302 and opened.headers["Location"] == "/reset"
    with first.session_transaction() as state:
        assert code not in str(dict(state))
    assert "New password" in first.get("/reset").text
    # The URL, read later from a proxy's log, is worth nothing; so is typing its code.
    later = english_client(app)
    assert later.get(f"/reset/{code}").status_code == 404
    typed = post_form(english_client(app), app, "/reset", {"code": code})
    assert "opened in another browser" in flashed_text(typed.text)
    done = post_form(
        first, app, "/reset", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert done.headers["Location"].startswith("/login")
    assert signin.authenticate(
        session, people["parent"].username, NEW_PASSWORD, address=None, now=clock.now
    )


def test_a_letter_expires_and_a_newer_one_replaces_it(app, people, clock, session):
    parent = people["parent"]
    old = operator_letter(session, parent, clock)
    new = operator_letter(session, parent, clock)
    assert english_client(app).get(f"/reset/{old}").status_code == 404
    clock.advance(days=8)
    assert english_client(app).get(f"/reset/{new}").status_code == 404
    assert parent.password_hash is None


def test_wrong_letter_codes_are_throttled_per_address(app, people, clock, session):
    code = operator_letter(session, people["parent"], clock)
    guesser = english_client(app)
    for n in range(signin.CODE_LIMIT):
        post_form(guesser, app, "/reset", {"code": f"WRONG-CODE-{n:04d}-XXXX"})
    held = post_form(guesser, app, "/reset", {"code": code})
    assert held.status_code == 429 and int(held.headers["Retry-After"]) <= 60
    assert "New password" not in held.text
    elsewhere = english_client(app)
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.1.1"
    assert post_form(elsewhere, app, "/reset", {"code": code}).headers["Location"] == "/reset"


def test_a_weak_password_keeps_the_letter_usable(app, people, clock, session):
    code = operator_letter(session, people["parent"], clock)
    person = english_client(app)
    person.get(f"/reset/{code}")
    weak = post_form(person, app, "/reset", {"password": "short", "password_again": "short"})
    assert "at least 10 characters" in flashed_text(weak.text)
    assert people["parent"].password_hash is None
    done = post_form(
        person, app, "/reset", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert done.headers["Location"].startswith("/login")


def test_a_reset_ends_a_second_factor_lockout(app, people, clock, session):
    teacher = people["teacher"]
    teacher.failed_logins = 25
    teacher.locked_until = clock.now.replace(year=clock.now.year + 1)
    resets.request_reset(
        session, teacher, "second_factor", "locked out", actor=None, ip=None, now=clock.now
    )
    assert teacher.locked_until is None and teacher.failed_logins == 0


def test_other_schools_resets_are_invisible(app, world, people, clock, session):
    from ..factories import build_world

    elsewhere = build_world(session, app.config["KEYS_DIR"])
    foreign_admin = add_user(session, elsewhere.school, "school_admin")
    reset = resets.request_reset(
        session, people["parent"], "password", "x", actor=people["school_admin"], ip=None,
        now=clock.now,
    )  # fmt: skip
    client = admin_client(app, foreign_admin, clock)
    for action in ("approve", "cancel", "letter"):
        assert post_form(client, app, f"/admin/resets/{reset.id}/{action}").status_code == 404
    assert people["parent"].full_name not in client.get("/admin/resets").text
    assert reset.approved_at is None and reset.cancelled_at is None


def test_the_api_lists_a_key_enrolled_after_a_reset(app, people, clock, session):
    teacher = people["teacher"]
    resets.request_reset(
        session, teacher, "second_factor", "lost phone", actor=None, ip=None, now=clock.now
    )
    client = english_client(app)
    sign_in(client, teacher, at=clock.now)
    private_key = Ed25519PrivateKey.generate()
    body = {
        "alg": "ed25519",
        "public_key": base64.b64encode(private_key.public_key().public_bytes_raw()).decode(),
        "label": "",
    }
    assert post_json(client, app, "/api/devices", body).status_code == 201
    listed = client.get("/api/devices").json["devices"]
    assert [d["after_reset"] for d in listed if d["revoked_at"] is None] == [True]
    assert session.scalar(
        select(func.count()).select_from(DeviceKey).where(DeviceKey.user_id == teacher.id)
    )
    assert isinstance(session.get(User, teacher.id), User)
