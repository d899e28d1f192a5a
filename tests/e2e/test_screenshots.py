"""Screenshots of the grid, the portal and the set-up screens in Kazakh, Russian and English,
taken in real Chromium against a live server with the demo school.

The run saves them under test-artifacts/screenshots/<language>/<page>.png; ``make screenshots``
runs this test alone with JOURNAL_SCREENSHOTS_DIR=docs/screenshots and
JOURNAL_SCREENSHOT_LANGUAGES="kk ru" to refresh the pictures the README and the docs show. Each
page is also
checked: it answers 200, is in the chosen language, shows no untranslated string, breaks no
Content-Security-Policy rule, starts keyboard navigation at the skip link, and (phone pages)
fits a phone's width.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from ..conftest import make_app, migrate
from ..external import missing, need_tool
from ..test_translations import compile_catalogs, english_msgids, untranslated_on_page

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("JOURNAL_SCREENSHOTS_DIR", "test-artifacts/screenshots")
LANGUAGES = tuple(os.environ.get("JOURNAL_SCREENSHOT_LANGUAGES", "kk ru en").split())
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Every screenshot, in one place: (file name, demo login, address, phone-sized).
# {grid} is the first grid link on the teacher's home page, {summary} the class teacher's first
# class summary, {entry} the first mark on the parent's portal page: the test follows the
# links a person would. The other {names} come from the demo school's rows.
PAGES = [
    ("sign-in", None, "/login", False),
    ("home-teacher", "teacher", "/", False),
    ("grid", "teacher", "{grid}", False),
    ("teacher-classes", "teacher", "/teacher/", False),
    ("home-class-teacher", "classteacher", "/", False),
    ("class-summary", "classteacher", "{summary}", False),
    ("home-admin", "admin", "/", False),
    ("home-operator", "operator", "/", False),
    ("home-registrar", "registrar", "/", False),
    ("home-inspector", "inspector", "/", False),
    ("setup-overview", "admin", "/setup/", False),
    ("setup-year", "admin", "/setup/years/{year_id}", False),
    ("setup-classes", "admin", "/setup/years/{year_id}/classes", False),
    ("setup-teachers", "admin", "/setup/years/{year_id}/assignments", False),
    ("setup-timetable", "admin", "/setup/classes/{class_id}/timetable", False),
    ("setup-students", "admin", "/setup/classes/{class_id}/students", False),
    ("setup-roster", "admin", "/setup/years/{year_id}/roster", False),
    ("setup-admission", "admin", "/setup/years/{year_id}/admit", False),
    ("portal", "parent", "/portal/students/{student_id}", True),
    ("portal-entry", "parent", "{entry}", True),
]
# make screenshots keeps in docs/ what a reader of the README and the guides looks at: each
# role's home, the grid, the class summary and the portal (the set-up screens change often).
if "JOURNAL_SCREENSHOTS_DIR" in os.environ:
    PAGES = [page for page in PAGES if not page[0].startswith("setup-")]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """The demo school served on 127.0.0.1 from a fresh SQLite database."""
    from auth.models import RoleGrant, User
    from journal.db import db
    from journal.demo import DEMO_DOMAIN, seed_demo
    from journal.keys import create_log_key
    from journal.models import ClassGroup, SchoolYear

    compile_catalogs()
    root = tmp_path_factory.mktemp("e2e")
    app = make_app(f"sqlite:///{root / 'journal.db'}", root / "keys")
    migrate(app)
    with app.app_context():
        config = app.config
        seed_demo(
            db.session,
            log_key=create_log_key(config["KEYS_DIR"], DEMO_DOMAIN),
            iin_encryption_key=config["IIN_ENCRYPTION_KEY"],
            iin_hmac_key=config["IIN_HMAC_KEY"],
            # The pictures in docs/ show a class of a real size; the checks need only a few.
            students_per_class=24 if "JOURNAL_SCREENSHOTS_DIR" in os.environ else 4,
            classes=2,
        )
        db.session.commit()
        ids = {
            "year_id": db.session.scalar(select(SchoolYear.id)),
            "class_id": db.session.scalar(select(ClassGroup.id).order_by(ClassGroup.id)),
            "student_id": db.session.scalar(
                select(RoleGrant.student_id).where(
                    RoleGrant.role == "parent", RoleGrant.student_id.is_not(None)
                )
            ),
            # Each demo staff account's own random authenticator secret.
            "totp": {user.username: user.totp_secret for user in db.session.scalars(select(User))},
        }
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", ids
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["journal_db"].engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = need_tool("chromium")["chromium"]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def sign_in(page: Any, base: str, username: str, totp_secret: str | None) -> None:
    """The real sign-in: password, then the demo account's authenticator code for staff."""
    from journal.demo import DEMO_PASSWORD

    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    page.locator("#password").press("Enter")
    page.wait_for_load_state()
    if "/second-factor" in page.url:
        assert totp_secret, username
        page.fill("#code", pyotp.TOTP(totp_secret).now())
        page.locator("#code").press("Enter")
        page.wait_for_load_state()
    assert "/login" not in page.url and "/second-factor" not in page.url, page.url


def switch_language(page: Any, language: str) -> None:
    """The language switch in the header (remembered on the account of a signed-in user)."""
    page.select_option("#language-select", language)
    page.locator("form.language button[type=submit]").click()
    page.wait_for_load_state()


def check_page(page: Any, language: str, msgids: set[str], phone: bool) -> list[str]:
    problems = []
    lang = page.get_attribute("html", "lang")
    if lang != language:
        problems.append(f"html lang is {lang}")
    if language != "en":
        problems += [f"untranslated: {s}" for s in untranslated_on_page(page.content(), msgids)]
    # Keyboard users start at the skip link, unless the page put the focus somewhere on
    # purpose (the grid focuses its first cell).
    if page.evaluate("document.activeElement === document.body"):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.className") != "skip":
            problems.append("the first Tab does not reach the skip link")
    if phone and page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1"):
        problems.append("wider than a phone screen")
    return problems


def test_screenshots_in_three_languages(live_server, chromium):
    base, ids = live_server
    msgids = english_msgids()
    problems: dict[str, list[str]] = {}
    saved = []
    by_login: dict[str | None, list[tuple[str, str, bool]]] = {}
    for name, login, address, phone in PAGES:
        by_login.setdefault(login, []).append((name, address, phone))
    for login, pages in by_login.items():
        phone = all(p for _n, _a, p in pages)
        context = chromium.new_context(viewport=PHONE if phone else DESKTOP, locale="kk-KZ")
        page = context.new_page()
        csp_violations: list[str] = []
        page.on(
            "console",
            lambda message, seen=csp_violations: (
                seen.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        if login:
            sign_in(page, base, login, ids["totp"].get(login))
        else:
            page.goto(base + "/login")
        for language in LANGUAGES:
            switch_language(page, language)
            for name, address, phone_page in pages:
                url = base + resolve(page, base, address, ids)
                answer = page.goto(url)
                page.wait_for_load_state("load")
                page.wait_for_timeout(400)  # the grid's scripts draw after load; it never idles
                key = f"{language}/{name}"
                assert answer is not None and answer.status == 200, (key, url)
                target = SCREENSHOTS / language / f"{name}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(target), full_page=True)
                saved.append(target)
                found = check_page(page, language, msgids, phone_page)
                if found:
                    problems[key] = found
        if csp_violations:
            problems[f"{login}: CSP"] = csp_violations
        context.close()
    assert problems == {}
    assert len(saved) == len(PAGES) * len(LANGUAGES)
    assert all(path.stat().st_size > 5000 for path in saved)


def resolve(page: Any, base: str, address: str, ids: dict[str, Any]) -> str:
    """Fill an address of PAGES: {grid} and {entry} are found by following the pages' links."""
    if address == "{grid}":
        # Today's or tomorrow's lesson on the home page (the current quarter), else any grid.
        for start in ("/", "/teacher/"):
            page.goto(base + start)
            link = page.locator("a[href^='/teacher/grid/']").first
            if link.count():
                return str(link.get_attribute("href"))
        raise AssertionError("the teacher's pages link to no grid")
    if address == "{summary}":
        page.goto(base + "/teacher/")
        link = page.locator("a[href^='/teacher/class/']").first
        assert link.count(), "the class teacher's page links to no class summary"
        return str(link.get_attribute("href"))
    if address == "{entry}":
        page.goto(base + f"/portal/students/{ids['student_id']}")
        link = page.locator("ul.marks a").first
        assert link.count(), "the demo child has no marks on the portal"
        return str(link.get_attribute("href"))
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), address)
