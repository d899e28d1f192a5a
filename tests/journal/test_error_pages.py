"""Error pages in the reader's language (issue 17): 400, 403, 404, 405, 429, 500 and 503 from
one template, in Kazakh, Russian and English, with no English words on a Kazakh or Russian page;
the same sentences as JSON under /api/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import abort
from flask_babel import gettext as _

from auth.access import public

from ..auth.conftest import csrf_token, sign_in
from ..conftest import make_app
from ..test_translations import latin_words

TITLES = {
    "en": {
        400: "The request is not valid",
        403: "Not allowed",
        404: "Page not found",
        405: "This address does not take this kind of request",
        429: "Too many requests",
        500: "Something went wrong on the server",
        503: "The journal is not available right now",
    },
    "kk": {
        400: "Сұрау дұрыс емес",
        403: "Рұқсат жоқ",
        404: "Бет табылмады",
        405: "Бұл мекенжай мұндай сұрауды қабылдамайды",
        429: "Сұраулар тым көп",
        500: "Серверде бірдеңе дұрыс болмады",
        503: "Журнал қазір қолжетімсіз",
    },
    "ru": {
        400: "Неверный запрос",
        403: "Нет доступа",
        404: "Страница не найдена",
        405: "Этот адрес не принимает такой запрос",
        429: "Слишком много запросов",
        500: "На сервере что-то пошло не так",
        503: "Журнал сейчас недоступен",
    },
}
LANGUAGES = ("kk", "ru", "en")


def heading(html: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", html, re.S).group(1).strip()


def check_page(response, status: int, language: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert heading(html) == TITLES[language][status]
    assert f'<html lang="{language}">' in html
    if language != "en":
        assert latin_words(html) == set(), html


@pytest.fixture
def client_in(app):  # type: ignore[no-untyped-def]
    def make(language: str):  # type: ignore[no-untyped-def]
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
        return client

    return make


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_missing_page_a_wrong_method_and_a_form_without_its_token(client_in, language):
    client = client_in(language)
    check_page(client.get("/no-such-page"), 404, language)
    check_page(client.get("/logout"), 405, language)
    refused = client.post("/language", data={"language": "ru"})  # no CSRF token
    check_page(refused, 400, language)
    assert "CSRF" not in refused.get_data(as_text=True)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_page_of_another_role(client_in, world, session, language):
    client = client_in(language)
    sign_in(client, world.teacher)
    check_page(client.get("/admin/users"), 403, language)


def test_a_bad_number_says_which_in_the_readers_language(app, world, session):
    from ..factories import add_user

    admin = add_user(session, world.school, "school_admin")
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    sign_in(client, admin)
    token = csrf_token(client, app)
    response = client.post(
        "/admin/invitations", data={"csrf_token": token, "student_id": "1x", "role": "parent"}
    )
    check_page(response, 400, "ru")
    assert "Число в запросе недопустимо: student_id." in response.get_data(as_text=True)


# -- errors only a test route can raise ----------------------------------------------------------


@pytest.fixture(scope="module")
def raising_app(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An app with routes that fail on purpose (nobody is signed in: no table is read)."""
    tmp = tmp_path_factory.mktemp("errors")
    app = make_app(f"sqlite:///{tmp / 'unused.db'}", Path(tmp) / "keys", PROPAGATE_EXCEPTIONS=False)

    def too_many() -> None:
        abort(429)

    def maintenance() -> None:
        abort(503)

    def crash() -> None:
        raise RuntimeError("a bug")

    def with_reason() -> None:
        abort(400, description=_("A number in this request is not valid: %(name)s.", name="n"))

    for name, view in [
        ("too_many", too_many),
        ("maintenance", maintenance),
        ("crash", crash),
        ("with_reason", with_reason),
    ]:
        app.add_url_rule(f"/test/{name}", name, public(view))
        app.add_url_rule(f"/api/test/{name}", f"api_{name}", public(view))
    yield app
    app.extensions["journal_db"].engine.dispose()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("path", "status"), [("too_many", 429), ("maintenance", 503), ("crash", 500)]
)
def test_throttled_unavailable_and_broken_pages(raising_app, language, path, status):
    client = raising_app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    response = client.get(f"/test/{path}")
    check_page(response, status, language)
    assert "a bug" not in response.get_data(as_text=True)
    if status == 429:
        assert response.headers["Retry-After"] == "60"


def test_the_reason_a_view_gives_is_shown(raising_app):
    client = raising_app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "kk"
    response = client.get("/test/with_reason")
    check_page(response, 400, "kk")
    assert "Сұраудағы сан жарамсыз: n." in response.get_data(as_text=True)


@pytest.mark.parametrize("language", ["kk", "ru"])
def test_the_api_answers_the_same_in_json(raising_app, language):
    client = raising_app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    for path, status in [("crash", 500), ("too_many", 429), ("no-such", 404)]:
        response = client.get(f"/api/test/{path}")
        assert response.status_code == status and response.is_json
        assert response.json["error"] and not re.search("[A-Za-z]{3,}", response.json["message"])


# -- form validation ------------------------------------------------------------------------------


def flashed(html: str) -> list[str]:
    found = re.findall(r'<(?:p|span) class="flash flash-error"[^>]*>(.*?)</(?:p|span)>', html, re.S)
    return [" ".join(text.split()) for text in found]


@pytest.mark.parametrize("language", ["kk", "ru"])
def test_form_validation_messages_are_in_the_readers_language(app, world, session, language):
    """WTForms' own messages (required, not a date, a length) and the journal's (an IIN's 12
    digits) on the admin's set-up forms and the registrar's search."""
    from ..factories import add_user

    admin = add_user(session, world.school, "school_admin")
    registrar = add_user(session, world.school, "registrar")
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    sign_in(client, admin)
    token = csrf_token(client, app)
    year = {"csrf_token": token, "name": "", "starts_on": "2026-13-45", "ends_on": ""}
    client.post("/setup/years", data=year)
    messages = flashed(client.get("/setup/").get_data(as_text=True))
    admit = {"csrf_token": token, "iin": "123", "on_date": "soon"}
    page = client.post(f"/setup/years/{world.year.id}/admit", data=admit, follow_redirects=True)
    messages += flashed(page.get_data(as_text=True))

    sign_in(client, registrar)
    token = csrf_token(client, app)
    for iin in ("12345", "131301500012", "130501500013"):
        page = client.post("/archive/registrar", data={"csrf_token": token, "iin": iin})
        assert page.status_code == 200
        messages += flashed(page.get_data(as_text=True))

    assert len(messages) >= 9, messages
    english = [m for m in messages if re.search(r"(?<!\w)[A-Za-z]{3,}(?!\w)", m)]
    assert english == []
    expected = {
        "kk": ("12 цифр", "Бұл өріс міндетті"),
        "ru": ("12 цифр", "Обязательное поле"),
    }[language]
    assert all(any(part in m for m in messages) for part in expected), messages
