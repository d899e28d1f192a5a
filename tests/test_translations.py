"""Three languages: every UI string in the code and templates has a Kazakh and a Russian
translation, placeholders survive translation, and no page shows an untranslated string.

Run ``python -m tests.test_translations`` (``make translations-update`` does) to list the strings
that still need a translation.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "journal" / "translations"
LANGUAGES = ("kk", "ru", "en")
# Keep in step with BABEL_EXTRACT in the Makefile.
EXTRACT_ARGS = ["-F", "babel.cfg", "-k", "_l", "-k", "lazy_gettext"]
SOURCES = ["journal", "auth", "exports", "archive"]


def po_path(language: str) -> Path:
    return TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"


def read_catalog(language: str) -> Catalog:
    with po_path(language).open("rb") as fh:
        return read_po(fh, locale=language)


def extract() -> Catalog:
    """Every msgid in the code and templates, as ``make translations-update`` extracts them."""
    with tempfile.TemporaryDirectory() as tmp:
        pot = Path(tmp) / "messages.pot"
        sources = [name for name in SOURCES if (ROOT / name).is_dir()]
        cwd = os.getcwd()
        os.chdir(ROOT)  # babel.cfg patterns are relative to the source folders
        try:
            CommandLineInterface().run(
                ["pybabel", "-q", "extract", *EXTRACT_ARGS, "-o", str(pot), *sources]
            )
        finally:
            os.chdir(cwd)
        with pot.open("rb") as fh:
            return read_po(fh)


def untranslated(template: Catalog, catalog: Catalog) -> list[str]:
    """The msgids of ``template`` with no usable translation in ``catalog``."""
    missing = []
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, message.context)
        strings = found.string if found else None
        texts = list(strings) if isinstance(strings, tuple | list) else [strings]
        if found is None or found.fuzzy or not all(texts):
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def compile_catalogs() -> None:
    """Write each .mo next to its .po when older (atomically: test workers may race)."""
    for language in LANGUAGES:
        po = po_path(language)
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        catalog = read_catalog(language)
        with tempfile.NamedTemporaryFile("wb", dir=mo.parent, delete=False) as fh:
            write_mo(fh, catalog)
        os.replace(fh.name, mo)


# Pages rendered by any test need the compiled catalogs; `make test` compiles them first, and
# collecting this module does it too (a no-op when the .mo files are up to date).
compile_catalogs()


@pytest.fixture(scope="module")
def extracted() -> Catalog:
    return extract()


@pytest.mark.parametrize("language", ["kk", "ru"])
def test_every_string_has_a_translation(extracted, language):
    missing = untranslated(extracted, read_catalog(language))
    assert missing == [], f"{len(missing)} strings lack a {language} translation: {missing[:20]}"


def test_the_english_catalog_lists_every_string(extracted):
    catalog = read_catalog("en")
    absent = [m.id for m in extracted if m.id and catalog.get(m.id, m.context) is None]
    assert absent == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_their_placeholders(language):
    catalog = read_catalog(language)
    problems = [
        f"{message.id!r}: {error}"
        for message, errors in catalog.check()
        for error in errors
        if message.string
    ]
    assert problems == []
    assert catalog.num_plurals == (3 if language == "ru" else 2)


def test_kazakh_and_russian_use_their_own_letters():
    kazakh = " ".join(str(m.string) for m in read_catalog("kk") if m.id)
    assert re.search("[әғқңөұүһі]", kazakh)
    # No Kazakh letters slipped into Russian (unless the English names them too).
    slipped = [
        m.id
        for m in read_catalog("ru")
        if m.id and re.search("[әғқңөұү]", str(m.string)) and not re.search("[әғқңөұү]", str(m.id))
    ]
    assert slipped == []


# -- pages ---------------------------------------------------------------------------------------


class VisibleText(HTMLParser):
    """Text a person sees or hears: text nodes and the labelling attributes."""

    ATTRIBUTES = ("aria-label", "title", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code", "pre"):
            self.hidden += 1
        for name, value in attrs:
            if name in self.ATTRIBUTES and value:
                self.texts.append(value)
        if tag == "input" and dict(attrs).get("type") in ("submit", "button"):
            self.texts.append(dict(attrs).get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code", "pre"):
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.texts.append(data)


def english_msgids() -> set[str]:
    """Plain msgids (no placeholders) whose Kazakh or Russian translation differs."""
    ids = set()
    for language in ("kk", "ru"):
        for message in read_catalog(language):
            plain = isinstance(message.id, str) and message.id and "%(" not in message.id
            if plain and message.string and message.string != message.id:
                ids.add(" ".join(message.id.split()))
    return ids


def untranslated_on_page(html: str, msgids: set[str]) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return sorted({" ".join(t.split()) for t in parser.texts} & msgids)


# Latin-script words a Kazakh or Russian page may show: the language menu's own name for
# English, names of things that are not translated (browsers, standards, file formats, the
# grading rule's id) and the demo school's data (usernames, domains).
LATIN_ALLOWED = {
    "English",
    # browsers and systems ("Chrome on Android"), authenticator apps, programs, keys
    "Chrome", "Firefox", "Safari", "Edge", "Opera", "Android", "Windows", "Linux", "macOS",
    "iPhone", "iPad", "ChromeOS", "Yandex", "Browser", "Samsung", "Internet",
    "Aegis", "Google", "Authenticator", "FreeOTP", "Excel", "Python", "cryptography",
    "VERIFIED", "Enter", "Delete",
    # standards and formats
    "TOTP", "PDF", "JSON", "CSV", "XLSX", "UTF", "IIN", "BagIt", "QR", "UTC", "RFC",
    # the default time zone's name
    "Asia", "Almaty",
}  # fmt: skip
# File names, commands and addresses in a sentence ("journal-verify", "entry-….json", ".zip").
_FILE_LIKE = re.compile(r"\S*[A-Za-z]\S*[._/-]\S*|\S*[._/-]\S*[A-Za-z]\S*")


def latin_words(html: str) -> set[str]:
    """Words in Latin letters a person sees on the page (text, labels, buttons), but file
    names, commands and the names in LATIN_ALLOWED."""
    parser = VisibleText()
    parser.feed(html)
    texts = [_FILE_LIKE.sub(" ", text) for text in parser.texts]
    # Whole words only: a hex id ("f9be88c7") is not English.
    words = {word for text in texts for word in re.findall(r"(?<!\w)[A-Za-z]{2,}(?!\w)", text)}
    return words - LATIN_ALLOWED


def page_urls(app, ids: dict[str, object]) -> Iterator[str]:
    """Every GET page whose arguments we can fill from ``ids`` (ours and other engineers')."""
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        if rule.rule.startswith("/api/") or re.search(
            r"\.(json|tlog-proof|vkey|pdf|csv)", rule.rule
        ):
            continue
        if rule.rule.endswith((".js", ".json", ".webmanifest")):
            continue
        if not all(arg in ids for arg in rule.arguments):
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = re.sub(rf"<(?:[^:<>]+:)?{arg}>", str(ids[arg]), path)
        yield path


@pytest.fixture
def demo_app(fresh_app):
    """A demo school (with signed entries) in a fresh database, and the compiled catalogs."""
    from journal.db import db
    from journal.demo import seed_demo
    from journal.keys import create_log_key

    compile_catalogs()
    with fresh_app.app_context():
        config = fresh_app.config
        seed_demo(
            db.session,
            log_key=create_log_key(config["KEYS_DIR"], "mektep17.example.kz"),
            iin_encryption_key=config["IIN_ENCRYPTION_KEY"],
            iin_hmac_key=config["IIN_HMAC_KEY"],
            students_per_class=3,
            classes=1,
        )
        db.session.commit()
    return fresh_app


def demo_ids(app) -> dict[str, object]:
    from sqlalchemy import select

    from auth.models import DeviceKey, User
    from journal.db import db
    from journal.models import ClassGroup, Entry, Lesson, Log, SchoolYear, Subject, Term

    with app.app_context():
        session = db.session
        entry = session.scalar(select(Entry).where(Entry.kind == "grade").order_by(Entry.id))
        class_group = session.scalar(select(ClassGroup).order_by(ClassGroup.id))
        lesson = session.scalar(select(Lesson).order_by(Lesson.id))
        ids: dict[str, object] = {
            "year_id": session.scalar(select(SchoolYear.id)),
            "class_id": class_group.id,
            "class_group_id": class_group.id,
            "subject_id": session.scalar(select(Subject.id).order_by(Subject.id)),
            "term_id": session.scalar(select(Term.id).order_by(Term.id)),
            "lesson_id": lesson.id,
            "student_id": entry.student_id,
            "entry_id": entry.entry_id,
            "journal_id": session.scalar(select(Log.id).where(Log.kind == "journal")),
            "log_id": session.scalar(select(Log.id).where(Log.kind == "journal")),
            "kid": session.scalar(select(DeviceKey.kid).order_by(DeviceKey.created_at)),
        }
        ids["users"] = {u.username: u.id for u in session.scalars(select(User))}
        ids["user_id"] = ids["users"]["teacher"]  # type: ignore[index]
    return ids


def signed_in(app, username: str, language: str):  # type: ignore[no-untyped-def]
    """A browser of the demo's ``username``, second factor just passed, asking for
    ``language``."""
    from sqlalchemy import select

    from auth.models import User
    from journal.db import db

    from .factories import browser_state

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        state = browser_state(db.session, user)
        db.session.commit()
    with client.session_transaction() as browser_session:
        browser_session.update(state)
    return client


def pages_behind_forms(demo_app, language: str) -> dict[str, tuple[int, str]]:  # type: ignore[no-untyped-def]
    """(status, html) of the templates no GET reaches: letters and codes printed once, the
    reset notice, a refusal, the registrar's search, the service worker's offline pages. Run
    after the crawl: it resets the demo teacher's password."""
    from flask import render_template
    from sqlalchemy import select

    from auth import resets
    from auth.models import User
    from journal.db import db, utcnow
    from journal.models import Enrollment

    from .auth.conftest import csrf_token

    ids = demo_ids(demo_app)
    with demo_app.app_context():
        parent = db.session.scalar(select(User).where(User.username == "parent"))
        own = {grant.student_id for grant in parent.roles if grant.student_id is not None}
        stranger = db.session.scalar(
            select(Enrollment).where(Enrollment.student_id.not_in(own)).limit(1)
        )
        stranger.ends_on = utcnow().date()  # left the school: a transfer code may be printed
        leaver = stranger.student_id
        db.session.commit()
    pages: dict[str, tuple[int, str]] = {}

    def keep(name: str, answer) -> None:  # type: ignore[no-untyped-def]
        pages[name] = (answer.status_code, answer.get_data(as_text=True))

    admin = signed_in(demo_app, "admin", language)
    token = csrf_token(admin, demo_app)
    new_user = {"csrf_token": token, "username": f"new-{language}", "full_name": "Жаңа Мұғалім"}
    keep("letter", admin.post("/admin/users/new", data={**new_user, "roles": "teacher"}))
    invitation = {"csrf_token": token, "student_id": ids["student_id"], "role": "parent"}
    keep("invitation", admin.post("/admin/invitations", data=invitation))
    code = admin.post(f"/setup/students/{leaver}/transfer-code", data={"csrf_token": token})
    keep("transfer code", code)
    keep("recovery codes", admin.post("/account/recovery-codes", data={"csrf_token": token}))

    registrar = signed_in(demo_app, "registrar", language)
    search = {"csrf_token": csrf_token(registrar, demo_app), "iin": "12345"}
    keep("registrar", registrar.post("/archive/registrar", data=search))
    keep("refusal", signed_in(demo_app, "parent", language).get(f"/account/children/{leaver}"))

    with demo_app.app_context():  # the operator's reset, told at the next sign-in
        teacher = db.session.scalar(select(User).where(User.username == "teacher"))
        resets.request_reset(
            db.session, teacher, "password", "ұмытып қалды", actor=None, ip=None, now=utcnow()
        )
        db.session.commit()
    keep("reset notice", signed_in(demo_app, "teacher", language).get("/account/reset-notice"))

    with demo_app.test_request_context(headers={"Accept-Language": language}):
        for name in ("teacher/offline.html", "teacher/signed_out_offline.html"):
            pages[name] = (200, render_template(name))

    return pages


def demo_data_words(app) -> set[str]:  # type: ignore[no-untyped-def]
    """Latin-letter words of the demo school's data: usernames, the domain, device names."""
    from sqlalchemy import select

    from auth.models import DeviceKey, User
    from journal.db import db
    from journal.models import School

    with app.app_context():
        texts = [u.username for u in db.session.scalars(select(User))]
        texts += [s.domain for s in db.session.scalars(select(School))]
        texts += [k.label or "" for k in db.session.scalars(select(DeviceKey))]
    return {word for text in texts for word in re.findall(r"[A-Za-z]{2,}", text)}


@pytest.mark.parametrize("language", ["kk", "ru"])
def test_no_page_shows_an_untranslated_string(demo_app, language):
    """Every GET page each demo person can open, then the pages behind forms: no msgid left in
    English, and no English word outside data and names (``latin_words``)."""
    from auth.models import User
    from journal.db import db

    from .factories import browser_state

    msgids = english_msgids()
    ids = demo_ids(demo_app)
    clients = []
    for username in ("admin", "teacher", "classteacher", "parent", "registrar", None):
        client = demo_app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
        if username:
            user_id = ids["users"][username]  # type: ignore[index]
            with demo_app.app_context():
                user = db.session.get_one(User, user_id)
                state = browser_state(db.session, user, language=language)
                db.session.commit()
            with client.session_transaction() as browser_session:
                browser_session.update(state)
        clients.append(client)
    shown: dict[str, list[str]] = {}
    latin: dict[str, list[str]] = {}
    data_words = demo_data_words(demo_app)
    crashed: dict[str, str] = {}
    for url in page_urls(demo_app, ids):
        for client in clients:
            try:
                answer = client.get(url)
            except Exception as exc:  # another page's bug must not hide the others
                crashed[url] = repr(exc)
                break
            if answer.status_code == 200 and answer.mimetype == "text/html":
                html = answer.get_data(as_text=True)
                shown[url] = untranslated_on_page(html, msgids)
                latin[url] = sorted(latin_words(html) - data_words)
                break
    assert len(shown) >= 12, sorted(shown)  # set-up, portal, sign-in, grid pages...
    print("pages checked:", *sorted(shown), sep="\n  ")
    problems = {url: found for url, found in shown.items() if found}
    assert problems == {}
    english = {url: found for url, found in latin.items() if found}
    assert english == {}
    assert crashed == {}

    behind = pages_behind_forms(demo_app, language)
    statuses = {name: status for name, (status, _html) in behind.items()}
    assert statuses == {**{name: 200 for name in behind}, "refusal": 403}
    english = {
        name: sorted(latin_words(html) - data_words) + untranslated_on_page(html, msgids)
        for name, (_status, html) in behind.items()
    }
    assert {name: found for name, found in english.items() if found} == {}


def main() -> int:
    """List the msgids that lack a Kazakh or Russian translation."""
    template = extract()
    status = 0
    for language in ("kk", "ru"):
        missing = untranslated(template, read_catalog(language))
        print(f"{language}: {len(missing)} strings to translate")
        for msgid in missing:
            print(f"  {msgid}")
        status |= bool(missing)
    return status


if __name__ == "__main__":
    sys.exit(main())


def test_the_language_choice_is_remembered_per_user(fresh_app):
    from auth.models import User
    from journal.db import db
    from journal.models import School

    from .factories import add_user
    from .journal.test_school_setup import csrf_token, sign_in

    with fresh_app.app_context():
        school = School(name="№1 мектеп", domain="lang.example.kz")
        db.session.add(school)
        db.session.flush()
        admin = add_user(db.session, school, "school_admin")
        db.session.commit()
    first = fresh_app.test_client()
    sign_in(first, admin, "en")
    token = csrf_token(first, "/setup/")
    switched = first.post(
        "/language", data={"csrf_token": token, "language": "ru", "next": "/setup/"}
    )
    assert switched.status_code == 302 and switched.headers["Location"] == "/setup/"
    with fresh_app.app_context():
        assert db.session.get(User, admin.id).language == "ru"
    elsewhere = fresh_app.test_client()  # another browser, asking for English
    sign_in(elsewhere, admin, "en")
    html = elsewhere.get("/setup/").get_data(as_text=True)
    assert '<html lang="ru">' in html and "Учебные годы" in html
