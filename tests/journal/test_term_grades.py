"""Term grades on the teacher's grid (issue 5): the computed grade, its confirmation as a signed
term_grade entry, and the printout's use of the confirmed grade."""

from __future__ import annotations

import re

import pytest
from openapi_core import OpenAPI

from exports.queries import term_grades

from ..factories import NOW
from .test_sync import SPEC_PATH, Browser, grid_url, statuses


@pytest.fixture
def teacher_browser(app, world) -> Browser:  # type: ignore[no-untyped-def]
    browser = Browser(app, OpenAPI.from_file_path(str(SPEC_PATH)))
    browser.sign_in(world.teacher)
    return browser


def term_cell(html: str, student_id: int) -> dict[str, str]:
    """The data attributes of one student's term grade cell on the grid page."""
    match = re.search(
        rf'<td class="term-grade" data-student="{student_id}"([^>]*)>(.*?)</td>', html
    )
    assert match is not None, "no term grade cell for the student"
    attributes = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', match.group(1)))
    return {**attributes, "text": re.sub(r"<[^>]+>", "", match.group(2))}


def test_a_confirmed_term_grade_is_shown_on_the_grid_and_used_by_the_printout(
    teacher_browser, world
):
    fo = world.signed("grade", value={"score": 8})
    teacher_browser.upload(fo)
    html = teacher_browser.get(grid_url(world)).get_data(as_text=True)
    computed = term_cell(html, world.student.id)
    assert (computed["percent"], computed["grade"], computed["confirmed"]) == ("80.0", "4", "0")
    assert 'id="confirm-term"' in html and "Confirm term grades" in html
    button = re.search(r'<button type="button" id="confirm-term"([^>]*)>', html)
    assert button is not None
    rule = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', button.group(1)))
    assert (rule["subject"], rule["term"]) == (str(world.subject.id), str(world.q2.id))

    # What the grid's button signs, from the values the page carries.
    confirmation = world.signed(
        "term_grade",
        student=world.student.id,
        subject=int(rule["subject"]),
        term=int(rule["term"]),
        percent=computed["percent"],
        grade=int(computed["grade"]),
        rule={"id": rule["rule-id"], "version": int(rule["rule-version"])},
    )
    assert statuses(teacher_browser.upload(confirmation)) == [("accepted", None)]
    # A later, lower mark changes the computed grade but not the confirmed one.
    teacher_browser.upload(
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            value={"score": 2},
            supersedes=[fo["payload"]["entry_id"]],
            reason="Қайта тексерілді",
        )
    )

    html = teacher_browser.get(grid_url(world)).get_data(as_text=True)
    shown = term_cell(html, world.student.id)
    assert (shown["percent"], shown["grade"], shown["confirmed"]) == ("80.0", "4", "1")
    assert '<span class="v v-FO" data-state="synced">2</span>' in html
    assert "confirmed" in shown["text"]
    grades = term_grades(world.session, world.class_group, world.log, world.q2, None)
    assert grades[(world.subject.id, world.student.id)] == ("80.0", "4")


def test_a_term_grade_off_the_scale_is_refused_and_not_confirmed(teacher_browser, world):
    refused = world.signed(
        "term_grade",
        student=world.student.id,
        subject=world.subject.id,
        term=world.q2.id,
        percent="80.0",
        grade=11,
        rule={"id": "kz-criteria", "version": 1},
    )
    assert statuses(teacher_browser.upload(refused)) == [("rejected", "out_of_scale")]
    html = teacher_browser.get(grid_url(world)).get_data(as_text=True)
    assert term_cell(html, world.student.id)["confirmed"] == "0"


def test_a_closed_term_has_no_confirm_button(teacher_browser, world):
    world.q2.closed_at = NOW
    world.session.flush()
    html = teacher_browser.get(grid_url(world)).get_data(as_text=True)
    assert 'id="confirm-term"' not in html
