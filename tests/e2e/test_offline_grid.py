"""The teacher's grid offline and its sync (issue 4 acceptance), in real Chromium against a live
server on 127.0.0.1 with PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from journal.db import db
from journal.ledger import entry as ledger_entry
from journal.models import Entry

from .conftest import (
    GridWorld,
    Server,
    Teacher,
    enrol_device,
    new_device,
    open_grid,
    open_more,
    sign_in,
    unsynced,
    wait_unsynced,
)

pytestmark = pytest.mark.e2e


def device_entries(server: Server, kid: str) -> list[dict[str, Any]]:
    """The payloads a device's entries carry in the log, in seq order."""
    with server.app.app_context():
        leaves = db.session.scalars(
            select(Entry.leaf).where(Entry.device_kid == kid).order_by(Entry.seq)
        ).all()
    return [ledger_entry.parse_leaf(leaf).payload for leaf in leaves]


def count_entry(server: Server, entry_id: str) -> int:
    with server.app.app_context():
        return int(
            db.session.scalar(
                select(func.count()).select_from(Entry).where(Entry.entry_id == entry_id)
            )
        )


def kid_of(page: Any) -> str:
    return str(page.locator("#device-key").get_attribute("data-kid"))


def cell(page: Any, row: int, col: int) -> Any:
    return page.locator(f"#grid tbody tr:nth-child({row + 1}) td:nth-of-type({col + 1})")


def type_marks(page: Any, start_row: int, col: int, keys: list[str]) -> None:
    """Click a cell, then type each value followed by Enter (which moves down)."""
    cell(page, start_row, col).click()
    for key in keys:
        page.keyboard.type(key)
        page.keyboard.press("Enter")


def outbox_ids(page: Any) -> list[str]:
    return page.evaluate(
        """async () => {
            const { outboxRecords } = await import('/static/grid/outbox.js');
            return (await outboxRecords()).map((record) => record.entry_id);
        }"""
    )


def test_marks_made_offline_reach_the_log_exactly_once(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    kid = kid_of(page)

    context.set_offline(True)
    offline_since = time.monotonic()
    page.reload()  # served by the service worker from its cache
    page.wait_for_selector("body[data-grid-ready='1']")
    assert page.locator("#net-state").get_attribute("data-state") == "offline"
    # At a person's pace: each mark is in the outbox before the next is typed. (Typed faster,
    # two marks' signatures may finish in the other order and take each other's device_seq.)
    cell(page, 0, 0).click()
    for done, key in enumerate(["1", "2", "3", "4", "1", "2"] * 5, start=1):
        page.keyboard.type(key)
        page.keyboard.press("Enter")
        wait_unsynced(page, done)
    assert cell(page, 29, 0).locator(".v-att").get_attribute("data-state") == "pending"
    assert journal_server.requests_since(offline_since) == []

    context.set_offline(False)
    wait_unsynced(page, 0)
    payloads = device_entries(journal_server, kid)
    assert len(payloads) == 30
    assert len({p["entry_id"] for p in payloads}) == 30
    assert sorted(p["student"] for p in payloads) == sorted(grid_world.students)
    assert [p["value"] for p in payloads[:4]] == ["absent", "late", "sick", "excused"]
    assert [p["device_seq"] for p in payloads] == list(range(30))
    page.wait_for_selector("#grid tbody tr:nth-child(30) .v-att[data-state='synced']")
    context.close()


def test_a_lost_response_is_retried_and_answered_duplicate(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    answers: list[dict[str, Any]] = []

    def commit_then_lose(route: Any) -> None:
        response = route.fetch()  # the server stores the batch...
        answers.append(response.json())
        route.abort("connectionreset")  # ...and the page never hears of it

    page.route("**/api/sync/entries", commit_then_lose, times=1)
    with page.expect_response("**/api/sync/entries", timeout=30_000) as retry:
        type_marks(page, 0, 1, ["1"])
    assert [r["status"] for r in answers[0]["results"]] == ["accepted"]
    assert [r["status"] for r in retry.value.json()["results"]] == ["duplicate"]
    wait_unsynced(page, 0)
    entry_id = answers[0]["results"][0]["entry_id"]
    assert count_entry(journal_server, entry_id) == 1
    assert outbox_ids(page) == []
    context.close()


def test_a_tampered_entry_is_rejected_and_shown_on_its_cell(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    type_marks(page, 3, 2, ["1"])
    wait_unsynced(page, 1)
    entry_id = page.evaluate(
        """async () => {
            const { openDb, done } = await import('/static/grid/store.js');
            const db = await openDb();
            const tx = db.transaction('outbox', 'readwrite');
            const store = tx.objectStore('outbox');
            const records = await new Promise((resolve) => {
                const request = store.getAll();
                request.onsuccess = () => resolve(request.result);
            });
            const record = records[0];
            record.submission.payload.value = 'excused';  // changed after signing
            store.put(record);
            await done(tx);
            return record.entry_id;
        }"""
    )
    context.set_offline(False)
    rejected = cell(page, 3, 2).locator(".v-att[data-state='error']")
    rejected.wait_for()
    cell(page, 3, 2).click()
    assert "the signature does not match the entry" in page.locator("#cell-info").inner_text()
    assert count_entry(journal_server, entry_id) == 0
    assert unsynced(page) == 1  # kept, and shown, until the teacher discards it
    page.locator("#cell-info button.discard").click()
    wait_unsynced(page, 0)
    context.close()


def test_two_devices_offline_on_one_cell_are_both_stored_and_shown_as_a_conflict(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    phone, laptop = new_device(chromium, journal_server), new_device(chromium, journal_server)
    on_phone = open_grid(phone, journal_server, teacher, grid_world)
    on_laptop = open_grid(laptop, journal_server, teacher, grid_world)
    for page, mark in ((on_phone, "7"), (on_laptop, "9")):
        page.context.set_offline(True)
        page.locator("#layers [data-layer=FO]").click()
        type_marks(page, 5, 5, [mark])
        wait_unsynced(page, 1)
    for page in (on_phone, on_laptop):
        page.context.set_offline(False)
        wait_unsynced(page, 0)
    stored = device_entries(journal_server, kid_of(on_phone)) + device_entries(
        journal_server, kid_of(on_laptop)
    )
    assert sorted(p["value"]["score"] for p in stored) == [7, 9]

    on_phone.locator("#sync-now").click()  # pulls the laptop's mark
    for page in (on_phone, on_laptop):
        conflict = cell(page, 5, 5).locator(".v-FO[data-state='conflict']")
        conflict.wait_for()
        assert sorted(conflict.inner_text().split(" | ")) == ["7", "9"]

    type_marks(on_laptop, 5, 5, ["8"])  # the teacher settles it with a correction
    on_laptop.locator("#reason-input").fill("Екі құрылғыда екі түрлі баға қойылған")
    on_laptop.keyboard.press("Enter")
    cell(on_laptop, 5, 5).locator(".v-FO[data-state='synced']").wait_for()
    assert cell(on_laptop, 5, 5).locator(".v-FO").inner_text() == "8"
    correction = device_entries(journal_server, kid_of(on_laptop))[-1]
    assert correction["kind"] == "correction"
    assert sorted(correction["supersedes"]) == sorted(p["entry_id"] for p in stored)
    phone.close()
    laptop.close()


def test_two_thousand_queued_entries_drain_completely(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    page.evaluate(
        """async ({ students, lessons }) => {
            const { grid } = await import('/static/grid/grid.js');
            let made = 0;
            for (const lesson of lessons) {
                for (const student of students) {
                    for (const field of [
                        { kind: 'attendance', value: 'late' },
                        { kind: 'grade', component: 'FO', value: { score: 5 } },
                    ]) {
                        if (made === 2000) return;
                        await grid.queue({
                            journal: grid.state.journal, author: grid.state.author,
                            lesson, student, ...field,
                        });
                        made += 1;
                    }
                }
            }
        }""",
        # The other tests write in the first ten columns.
        {"students": grid_world.students, "lessons": grid_world.lessons[10:]},
    )
    assert unsynced(page) == 2000
    context.set_offline(False)
    wait_unsynced(page, 0, timeout=180_000)
    payloads = device_entries(journal_server, kid_of(page))
    assert len(payloads) == 2000
    assert [p["device_seq"] for p in payloads] == list(range(2000))
    context.close()


def test_an_app_update_with_a_full_outbox_loses_nothing(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    old_version = page.locator("#app-version").inner_text()
    context.set_offline(True)
    type_marks(page, 10, 3, ["2", "2", "2", "2", "2"])
    wait_unsynced(page, 5)
    queued = sorted(outbox_ids(page))

    journal_server.app.config["OFFLINE_APP_VERSION"] = f"update-{time.time_ns()}"
    try:
        # Back online, but the sync API is unreachable while the new version installs.
        page.route("**/api/sync/entries", lambda route: route.abort("connectionrefused"))
        context.set_offline(False)
        page.reload()
        page.wait_for_selector("body[data-grid-ready='1']")
        new_version = page.locator("#app-version").inner_text()
        assert new_version != old_version
        page.wait_for_function(
            """async (version) => {
                const names = await caches.keys();
                const shells = names.filter((name) => name.startsWith('class-journal-shell-'));
                return shells.length === 1 && shells[0].endsWith(version)
                    && navigator.serviceWorker.controller !== null;
            }""",
            arg=new_version,
        )
        assert sorted(outbox_ids(page)) == queued
        page.unroute("**/api/sync/entries")
        page.locator("#sync-now").click()
        wait_unsynced(page, 0)
    finally:
        journal_server.app.config.pop("OFFLINE_APP_VERSION", None)
    assert sorted(p["entry_id"] for p in device_entries(journal_server, kid_of(page))) == queued
    context.close()


def test_a_session_that_ended_offline_flushes_after_signing_in_again(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    type_marks(page, 12, 4, ["3", "3", "3"])
    wait_unsynced(page, 3)
    journal_server.advance(13 * 3600)  # past the 12-hour staff session while offline
    context.clear_cookies()  # and the cookie is gone too, as a closed browser would lose it

    context.set_offline(False)
    banner = page.locator("#signed-out")
    banner.wait_for(state="visible")
    assert unsynced(page) == 3
    assert device_entries(journal_server, kid_of(page)) == []

    page.locator("#signin-link").click()
    page = sign_in(context, journal_server, teacher, grid_world.grid_path)
    page.wait_for_selector("body[data-grid-ready='1']")
    wait_unsynced(page, 0)
    assert [p["value"] for p in device_entries(journal_server, kid_of(page))] == ["sick"] * 3
    context.close()


def test_unsynced_entries_travel_on_a_file_and_import_once(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher, tmp_path
):
    context = new_device(chromium, journal_server, accept_downloads=True)
    page = open_grid(context, journal_server, teacher, grid_world)
    context.set_offline(True)
    type_marks(page, 20, 6, ["4", "4"])
    wait_unsynced(page, 2)
    with page.expect_download() as download:
        open_more(page)
        page.locator("#export").click()
    exported = tmp_path / "unsynced.json"
    download.value.save_as(exported)
    assert len(json.loads(exported.read_text())["entries"]) == 2

    # In the room with internet, on another computer:
    office = new_device(chromium, journal_server)
    importing = sign_in(office, journal_server, teacher, "/teacher/import")
    importing.set_input_files("input[name=file]", str(exported))
    importing.locator("form:has(input[name=file]) button[type=submit]").click()
    assert "2 accepted, 0 already stored, 0 not stored." in importing.inner_text("main")
    office.close()

    context.set_offline(False)  # the device itself syncs later: nothing doubles
    wait_unsynced(page, 0)
    assert len(device_entries(journal_server, kid_of(page))) == 2
    context.close()


TRICKY_VALUES = [
    {"b": 1, "a": [True, False, None], "ә": "Қазақ тілі", "A": -9007199254740991},
    {"text": 'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f \u2028'},
    {"😀": "keys sort by UTF-16 code units", "\uffff": 0, "z": {"nested": []}},
]


def test_the_browser_signs_the_same_bytes_as_the_server_and_p256_works(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    context.add_init_script("localStorage.setItem('class-journal.key-alg', 'ecdsa-p256')")
    page = open_grid(context, journal_server, teacher, grid_world)
    assert page.locator("#device-key").get_attribute("data-alg") == "ecdsa-p256"
    in_browser = page.evaluate(
        """async (values) => {
            const { canonicalJson } = await import('/static/grid/jcs.js');
            return values.map((value) => canonicalJson(value));
        }""",
        TRICKY_VALUES,
    )
    assert [text.encode() for text in in_browser] == [
        ledger_entry.canonical_json(value) for value in TRICKY_VALUES
    ]
    type_marks(page, 25, 7, ["1"])
    cell(page, 25, 7).locator(".v-att[data-state='synced']").wait_for()
    wait_unsynced(page, 0)
    assert [p["value"] for p in device_entries(journal_server, kid_of(page))] == ["absent"]
    context.close()


def test_entries_of_a_device_not_yet_enrolled_are_held_then_let_in(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    """The accounts API refuses the enrolment (a stale second factor): the server holds the
    device's entries in quarantine, and takes them once the key is enrolled."""
    from journal.sync import QuarantinedSubmission

    context = new_device(chromium, journal_server)
    context.route(
        "**/api/devices",
        lambda route: route.fulfill(
            status=403,
            json={"error": "second_factor_required", "message": "Confirm it is you."},
        ),
    )
    page = sign_in(context, journal_server, teacher, grid_world.grid_path)
    page.wait_for_selector("#device-state[data-enrolment='needs-second-factor']")
    assert page.locator("#enrol-link").is_visible()
    kid = kid_of(page)
    type_marks(page, 27, 8, ["2"])
    cell(page, 27, 8).locator(".v-att[data-state='pending']").wait_for()
    with page.expect_response("**/api/sync/entries") as answer:
        page.locator("#sync-now").click()
    assert [r["status"] for r in answer.value.json()["results"]] == ["quarantined"]
    with journal_server.app.app_context():
        held = db.session.scalars(
            select(QuarantinedSubmission.entry_id).where(QuarantinedSubmission.kid == kid)
        ).all()
    assert held == outbox_ids(page)
    assert device_entries(journal_server, kid) == []

    enrol_device(page, journal_server, teacher)
    page.locator("#sync-now").click()
    wait_unsynced(page, 0)
    assert [p["value"] for p in device_entries(journal_server, kid)] == ["late"]
    context.close()


def test_confirming_term_grades_signs_one_entry_per_unconfirmed_grade(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    kid = kid_of(page)
    page.locator("#layers [data-layer=FO]").click()
    type_marks(page, 20, 9, ["9", "6", "3"])  # column 9: no other test writes FO there
    for row in (20, 21, 22):  # stored: the counter alone may read 0 before they are queued
        cell(page, row, 9).locator(".v-FO[data-state='synced']").wait_for()
    wait_unsynced(page, 0)
    page.reload()  # the server computes the term grades from the synced marks
    page.wait_for_selector("body[data-grid-ready='1']")
    waiting = page.eval_on_selector_all(
        "#grid td.term-grade[data-confirmed='0']",
        """(cells) => cells.filter((td) => td.dataset.grade !== '').map((td) => (
            [Number(td.dataset.student), td.dataset.percent, Number(td.dataset.grade)]))""",
    )
    rows = page.eval_on_selector_all(
        "#grid tbody td.term-grade", "(cells) => cells.map((td) => Number(td.dataset.student))"
    )
    # Other tests' marks may count too: the grades typed here make these three gradable.
    assert {rows[20], rows[21], rows[22]} <= {student for student, _percent, _grade in waiting}

    page.locator("#confirm-term").focus()  # reachable and usable from the keyboard
    page.keyboard.press("Enter")
    for student, _percent, _grade in waiting:  # confirmed once the server has stored it
        page.wait_for_selector(f"#grid td.term-grade[data-student='{student}'][data-confirmed='1']")
    wait_unsynced(page, 0)
    confirmed = [p for p in device_entries(journal_server, kid) if p["kind"] == "term_grade"]
    assert sorted((p["student"], p["percent"], p["grade"]) for p in confirmed) == sorted(
        (student, percent, grade) for student, percent, grade in waiting
    )
    assert {(p["subject"], p["term"]) for p in confirmed} == {
        (grid_world.subject_id, grid_world.term_id)
    }
    assert all(p["rule"]["id"] and isinstance(p["rule"]["version"], int) for p in confirmed)
    page.locator("#confirm-term").click()  # nothing is left to confirm: nothing more is signed
    strings = json.loads(str(page.locator("#grid-strings").text_content()))
    assert page.locator("#grid-message").inner_text() == strings["termNothing"]
    assert unsynced(page) == 0
    context.close()


def test_the_device_refuses_marks_for_a_lesson_that_has_not_taken_place(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    """Issue 14: offline too, by the device's clock in the school's time zone."""
    context = new_device(chromium, journal_server)
    page = open_grid(context, journal_server, teacher, grid_world)
    # 3 November, 09:00 in Almaty: column 5 is a lesson of 4 November.
    page.clock.set_fixed_time("2026-11-03T04:00:00Z")
    before = outbox_ids(page)
    cell(page, 2, 5).click()
    page.keyboard.type("1")
    assert "has not taken place" in page.locator("#grid-message").inner_text()
    page.keyboard.press("Enter")
    assert outbox_ids(page) == before and unsynced(page) == 0
    # A lesson of the day itself (3 November) takes the mark as usual.
    type_marks(page, 2, 0, ["2"])
    wait_unsynced(page, 0)
    context.close()
