"""Signing out leaves no child's data in the browser and keeps unsent entries for their author
(issue 13, point 7), in real Chromium against a live server on 127.0.0.1.

What the browser keeps is read from the page (Cache Storage, IndexedDB, localStorage); what
reached the journal is read from the server's database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from journal.db import db
from journal.ledger import entry as ledger_entry
from journal.models import Entry, Student

from .conftest import (
    GridWorld,
    Server,
    Teacher,
    add_teacher,
    enrol_device,
    new_device,
    open_grid,
    open_more,
    sign_in,
    unsynced,
    wait_unsynced,
)

pytestmark = pytest.mark.e2e

# Everything the journal's origin keeps in this browser, as text (keys shown as "[key]").
STORED_TEXT = """async () => {
    const parts = [];
    for (const name of await caches.keys()) {
        const cache = await caches.open(name);
        for (const request of await cache.keys()) {
            const response = await cache.match(request);
            parts.push(`cache ${name} ${request.url}`, await response.text());
        }
    }
    for (const { name } of await indexedDB.databases()) {
        const database = await new Promise((resolve, reject) => {
            const request = indexedDB.open(name);
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
        });
        for (const store of database.objectStoreNames) {
            const rows = await new Promise((resolve, reject) => {
                const request = database.transaction(store).objectStore(store).getAll();
                request.onsuccess = () => resolve(request.result);
                request.onerror = () => reject(request.error);
            });
            const text = JSON.stringify(rows, (key, value) =>
                value instanceof CryptoKey ? "[key]" : value);
            parts.push(`indexeddb ${name} ${store}`, text);
        }
        database.close();
    }
    for (let i = 0; i < localStorage.length; i += 1) {
        const key = localStorage.key(i);
        parts.push(`localStorage ${key}`, localStorage.getItem(key));
    }
    return parts.join("\\n");
}"""

PAGE_CACHES = """async () => (await caches.keys()).filter(
    (name) => name.startsWith('class-journal-pages'))"""


def stored_text(page: Any) -> str:
    return str(page.evaluate(STORED_TEXT))


def pupil_names(server: Server, world: GridWorld) -> list[str]:
    with server.app.app_context():
        students = db.session.scalars(select(Student).where(Student.id.in_(world.students)))
        return [student.last_name for student in students]


def names_in(text: str, names: list[str]) -> list[str]:
    return [name for name in names if name in text]


def wait_pages_forgotten(page: Any) -> None:
    page.wait_for_function(f"async () => ({PAGE_CACHES})().then((names) => !names.length)")


def outbox(page: Any) -> list[dict[str, Any]]:
    """Every record in this browser's outbox, whoever wrote it."""
    return page.evaluate(
        """async () => {
            const { outboxRecords } = await import('/static/grid/outbox.js');
            return (await outboxRecords()).map((record) => ({
                entry_id: record.entry_id, author: record.submission.payload.author,
            }));
        }"""
    )


def stored_entries(server: Server, entry_id: str) -> list[dict[str, Any]]:
    with server.app.app_context():
        leaves = db.session.scalars(select(Entry.leaf).where(Entry.entry_id == entry_id)).all()
    return [ledger_entry.parse_leaf(leaf).payload for leaf in leaves]


def quarantined(server: Server, entry_id: str) -> int:
    from journal.sync import QuarantinedSubmission

    with server.app.app_context():
        return int(
            db.session.scalar(
                select(func.count())
                .select_from(QuarantinedSubmission)
                .where(QuarantinedSubmission.entry_id == entry_id)
            )
        )


def cell(page: Any, row: int, col: int) -> Any:
    return page.locator(f"#grid tbody tr:nth-child({row + 1}) td:nth-of-type({col + 1})")


def type_mark(page: Any, row: int, col: int, key: str) -> None:
    cell(page, row, col).click()
    page.keyboard.type(key)
    page.keyboard.press("Enter")


def sign_out(page: Any) -> None:
    page.locator("form.logout button[type=submit]").click()
    page.wait_for_load_state()


@contextmanager
def slow_server(server: Server, prefix: str, seconds: float) -> Iterator[None]:
    """The server answers paths under ``prefix`` only after ``seconds`` (past the service
    worker's 6 s network timeout)."""
    app = server.app
    inner = app.wsgi_app

    def slow(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith(prefix):
            time.sleep(seconds)
        return inner(environ, start_response)

    app.wsgi_app = slow  # type: ignore[method-assign]
    try:
        yield
    finally:
        app.wsgi_app = inner  # type: ignore[method-assign]


def assert_not_shown(page: Any, path: str, names: list[str]) -> None:
    """Opening ``path`` shows no child's name (the service worker's no-network page)."""
    response = page.goto(path, timeout=30_000)
    assert names_in(page.content(), names) == []
    assert response is not None and response.status == 503
    assert page.locator("#grid").count() == 0


def test_signing_out_forgets_the_pages_and_keeps_the_entries_for_their_author(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    names = pupil_names(journal_server, grid_world)
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    kid_a = page.locator("#device-key").get_attribute("data-kid")
    assert names_in(stored_text(page), names)  # the grid is kept for a day without network

    context.set_offline(True)
    type_mark(page, 2, 1, "3")
    wait_unsynced(page, 1)
    [entry] = outbox(page)
    assert entry["author"] == teacher.id
    # Back online but the sync API unreachable: the entry is still unsent at sign-out.
    page.route("**/api/sync/entries", lambda route: route.abort("connectionrefused"))
    context.set_offline(False)
    sign_out(page)
    assert "/login" in page.url
    wait_pages_forgotten(page)
    page.unroute("**/api/sync/entries")

    assert names_in(stored_text(page), names) == []
    assert outbox(page) == [entry]
    assert stored_entries(journal_server, entry["entry_id"]) == []
    page.go_back()  # not the grid from the back/forward cache
    page.wait_for_load_state()
    assert names_in(page.content(), names) == []
    context.set_offline(True)
    for path in (grid_world.grid_path, "/teacher/"):
        assert_not_shown(page, path, names)
    context.set_offline(False)

    # A colleague on the same browser neither sees nor sends the entry.
    colleague = add_teacher(journal_server, grid_world)
    page = sign_in(context, journal_server, colleague, grid_world.grid_path)
    page.wait_for_selector("body[data-grid-ready='1']")
    enrol_device(page, journal_server, colleague)
    assert page.locator("#device-key").get_attribute("data-kid") != kid_a
    assert unsynced(page) == 0
    assert cell(page, 2, 1).locator(".v").count() == 0
    type_mark(page, 4, 1, "2")  # the colleague's own mark is sent...
    cell(page, 4, 1).locator(".v-att[data-state='synced']").wait_for()
    wait_unsynced(page, 0)
    open_more(page)
    page.locator("#export").click()  # ...and there is nothing of theirs left to export
    strings = json.loads(str(page.locator("#grid-strings").text_content()))
    expect(page.locator("#grid-message")).to_have_text(strings["nothingToExport"])
    assert stored_entries(journal_server, entry["entry_id"]) == []
    assert quarantined(journal_server, entry["entry_id"]) == 0
    assert outbox(page) == [entry]
    sign_out(page)
    wait_pages_forgotten(page)

    # The author signs in again: the entry reaches the journal, once.
    page = sign_in(context, journal_server, teacher, grid_world.grid_path)
    page.wait_for_selector("body[data-grid-ready='1']")
    wait_unsynced(page, 0)
    cell(page, 2, 1).locator(".v-att[data-state='synced']").wait_for()
    [stored] = stored_entries(journal_server, entry["entry_id"])
    assert (stored["author"], stored["device_id"], stored["value"]) == (teacher.id, kid_a, "sick")
    assert outbox(page) == []
    context.close()


def test_a_session_ended_by_the_server_takes_the_kept_pages_with_it(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    names = pupil_names(journal_server, grid_world)
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    type_mark(page, 6, 2, "1")
    wait_unsynced(page, 1)
    assert names_in(stored_text(page), names)

    journal_server.advance(13 * 3600)  # past the 12-hour staff session
    context.set_offline(False)
    page.locator("#signed-out").wait_for(state="visible")  # the server answered 401
    wait_pages_forgotten(page)
    assert names_in(stored_text(page), names) == []
    assert unsynced(page) == 1 and len(outbox(page)) == 1
    context.set_offline(True)
    assert_not_shown(page, grid_world.grid_path, names)
    context.close()


def test_a_signed_out_browser_is_not_shown_kept_pages_even_by_a_slow_server(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    """Nothing on the page cleans up here: the cookies are gone (the session with them), and
    the service worker alone must refuse to show what it kept."""
    names = pupil_names(journal_server, grid_world)
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    page.goto("/static/journal.css")  # no grid code running from here on
    assert names_in(stored_text(page), names)
    context.clear_cookies()

    with slow_server(journal_server, "/teacher/", 8):
        started = time.monotonic()
        assert_not_shown(page, grid_world.grid_path, names)
        assert time.monotonic() - started >= 5  # the worker's network timeout, not an answer
    context.set_offline(True)
    assert_not_shown(page, "/teacher/", names)
    context.set_offline(False)
    page.goto("/static/journal.css")
    assert names_in(stored_text(page), names) == []
    context.close()


def test_signing_out_without_network_forgets_the_pages_on_this_device(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    names = pupil_names(journal_server, grid_world)
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    type_mark(page, 8, 3, "4")
    wait_unsynced(page, 1)
    [entry] = outbox(page)

    sign_out(page)
    assert "signed out on this device only" in page.inner_text("h1")
    assert names_in(stored_text(page), names) == []
    assert outbox(page) == [entry]
    assert_not_shown(page, grid_world.grid_path, names)

    # The server never heard of it: the session is still there, as the page said.
    context.set_offline(False)
    page.goto(grid_world.grid_path)
    page.wait_for_selector("body[data-grid-ready='1']")
    wait_unsynced(page, 0)
    assert len(stored_entries(journal_server, entry["entry_id"])) == 1
    context.close()


def wait_until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_entries_left_unsent_go_at_the_next_sign_in_wherever_it_lands(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    type_mark(page, 10, 4, "2")
    wait_unsynced(page, 1)
    [entry] = outbox(page)
    page.route("**/api/sync/entries", lambda route: route.abort("connectionrefused"))
    context.set_offline(False)
    sign_out(page)
    page.unroute("**/api/sync/entries")
    assert stored_entries(journal_server, entry["entry_id"]) == []

    page = sign_in(context, journal_server, teacher, "/")  # the home page, no grid
    wait_until(lambda: len(stored_entries(journal_server, entry["entry_id"])) == 1)
    page.wait_for_function(
        """async () => {
            const { outboxRecords } = await import('/static/grid/outbox.js');
            return (await outboxRecords()).length === 0;
        }"""
    )
    context.close()
