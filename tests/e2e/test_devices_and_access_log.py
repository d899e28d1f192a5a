"""Named devices and an honest access log (issue 17), in real Chromium: the grid enrols its key
under a name taken from the browser, which the teacher can change there; the service worker's
background copies of the week's grids are logged as pre-fetches, not as the teacher's views."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from auth.models import AccessLogEntry, DeviceKey
from journal.db import db

from .conftest import GridWorld, Server, Teacher, new_device, open_more, sign_in

pytestmark = pytest.mark.e2e

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.122 Mobile Safari/537.36"
)


def label_of(server: Server, kid: str) -> str | None:
    with server.app.app_context():
        key = db.session.get(DeviceKey, kid)
        return key.label if key is not None else None


def actions_of(server: Server, teacher: Teacher) -> list[str]:
    with server.app.app_context():
        return list(
            db.session.scalars(
                select(AccessLogEntry.action)
                .where(AccessLogEntry.actor_id == teacher.id)
                .order_by(AccessLogEntry.id)
            )
        )


def open_and_enrol(context: Any, server: Server, teacher: Teacher, world: GridWorld) -> Any:
    """Sign in with the second factor (fresh, so the grid enrols its key itself) and wait until
    the page is kept for work offline."""
    page = sign_in(context, server, teacher, world.grid_path)
    page.wait_for_selector("body[data-grid-ready='1']")
    page.wait_for_selector("#device-state[data-enrolment='enrolled']")
    page.wait_for_selector("#offline-ready[data-ready='1']")
    return page


def test_the_grid_enrols_its_device_under_a_name_the_teacher_can_change(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server, user_agent=ANDROID_CHROME)
    page = open_and_enrol(context, journal_server, teacher, grid_world)
    kid = str(page.locator("#device-key").get_attribute("data-kid"))
    assert label_of(journal_server, kid) == "Chrome on Android"
    assert page.locator("#device-name").input_value() == "Chrome on Android"

    open_more(page)
    page.fill("#device-name", "Кабинет 12 планшет")
    page.click("#device-name-save")
    page.wait_for_function("() => document.getElementById('device-name-state').textContent !== ''")
    assert page.locator("#device-name-state").text_content() == "The name is saved."
    assert label_of(journal_server, kid) == "Кабинет 12 планшет"

    page.goto("/devices")
    row = page.locator(f"#key-{kid}")
    assert row.locator("input.device-name").input_value() == "Кабинет 12 планшет"
    assert "not used yet" in (row.text_content() or "")
    page.goto(f"/devices/{kid}/revoke")
    assert page.locator("h1").text_content() == "Revoke «Кабинет 12 планшет»?"
    context.close()


def test_the_workers_background_copies_are_prefetches_not_views(
    chromium, journal_server: Server, grid_world: GridWorld, teacher: Teacher
):
    context = new_device(chromium, journal_server)
    open_and_enrol(context, journal_server, teacher, grid_world)
    actions = actions_of(journal_server, teacher)
    # The teacher opened the grid once; the worker kept it (and the week's grids) without
    # anyone looking.
    assert actions.count("view:teacher.grid") == 1, actions
    assert actions.count("prefetch:teacher.grid") >= 1, actions
    context.close()
