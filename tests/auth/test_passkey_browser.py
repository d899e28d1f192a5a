"""Passkeys in real Chromium with a virtual authenticator: the page's script (CSP: no inline
code) registers a passkey and a parent then signs in with it and no password."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..e2e.conftest import chromium, journal_server  # noqa: F401 - fixtures reused here

pytestmark = pytest.mark.e2e

PARENT_PASSWORD = "parent-e2e-password-2026"  # noqa: S105 - a throwaway test account


@pytest.fixture
def parent(journal_server) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    from auth.models import RoleGrant, User
    from auth.passwords import hash_password
    from journal.db import db

    from ..factories import build_world

    app = journal_server.app
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        user = User(
            school_id=world.school.id,
            username=f"parent-e2e-{time.time_ns() % 10**9}",
            full_name="Сәрсенбаев Ерлан",
            password_hash=hash_password(PARENT_PASSWORD),
        )
        user.roles.append(
            RoleGrant(role="parent", school_id=world.school.id, student_id=world.student.id)
        )
        db.session.add(user)
        db.session.commit()
        return user.username


def test_a_parent_registers_a_passkey_and_signs_in_with_it(chromium, journal_server, parent):  # noqa: F811
    # WebAuthn needs a domain (not an IP) as the relying party: localhost is one, and secure.
    base = journal_server.url.replace("127.0.0.1", "localhost")
    context = chromium.new_context(base_url=base, locale="en-US")
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options: dict[str, Any] = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})

    page.goto("/login")
    page.fill("input[name=username]", parent)
    page.fill("input[name=password]", PARENT_PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state()
    page.goto("/account/security")
    page.fill("[data-passkey-label]", "Менің телефоным")
    page.click("[data-passkey-start]")
    page.wait_for_selector("text=Менің телефоным >> xpath=ancestor::table")

    page.click("header form.logout button")
    page.wait_for_url("**/login")
    page.click("[data-passkey-start]")
    page.wait_for_url(lambda url: "/login" not in url)
    assert "Сәрсенбаев Ерлан" in page.content()
    assert not [p for p in problems if "Content Security Policy" in p], problems
    context.close()
