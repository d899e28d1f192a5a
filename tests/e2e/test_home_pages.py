"""Home pages with today's work (issue 17) in real Chromium: the teacher's home lists today's
lessons (a timetable lesson seeded for today on the school's clock), the class teacher's early
warnings list a pupil with three unexcused absences in the last two weeks and not one with
three excused absences; the outbox section names what waits in this browser. Kazakh at
1366×768, 1920×1080 and 390×844, Russian at 1366×768: one sign-in per language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import GridWorld, Server, Teacher, add_teacher, sign_in

pytestmark = pytest.mark.e2e

SIZES = {"laptop": (1366, 768), "wide": (1920, 1080), "phone": (390, 844)}
CASES = [(language, size) for language in ("kk", "ru") for size in SIZES]


@dataclass(frozen=True)
class HomeWorld:
    place: GridWorld
    teacher: Teacher  # teaches the subject and is the class teacher
    subject: str
    class_name: str
    truant: str
    ill: str
    today_lesson: int
    today: dt.date


@pytest.fixture(scope="module")
def home_world(journal_server: Server) -> HomeWorld:
    from auth.models import RoleGrant, User
    from journal.clock import today_at
    from journal.db import db
    from journal.models import ClassGroup, Lesson, Term
    from journal.recording.recorder import record_entry

    from ..factories import build_world

    app = journal_server.app
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        today = today_at(db.session, world.school.id, journal_server.now())
        term = next((t for t in (world.q1, world.q2) if t.covers(today)), None)
        if term is None:  # outside the factory's quarters: a quarter around today
            term = Term(
                school_year_id=world.year.id,
                kind="quarter",
                number=3,
                starts_on=today - dt.timedelta(days=30),
                ends_on=today + dt.timedelta(days=30),
            )
            db.session.add(term)
            db.session.flush()

        def lesson(day: dt.date, period: int) -> Lesson:
            found = Lesson(
                class_group_id=world.class_group.id,
                subject_id=world.subject.id,
                date=day,
                period=period,
            )
            db.session.add(found)
            db.session.flush()
            return found

        today_lesson = lesson(today, 2)
        truant = world.student
        ill = world.add_student(last_name="Науқасова", first_name="Дана")
        for days_ago in (1, 4, 9):
            past = lesson(today - dt.timedelta(days=days_ago), 1)
            for student, value in ((truant, "absent"), (ill, "excused")):
                record_entry(
                    db.session,
                    world.signed("attendance", lesson=past.id, student=student.id, value=value),
                    now=journal_server.now(),
                )
        place = GridWorld(
            world.school.id,
            world.class_group.id,
            world.subject.id,
            term.id,
            world.log.origin,
            [truant.id, ill.id],
            [today_lesson.id],
        )
        result = (world.subject.name, world.class_group.name, truant.last_name, ill.last_name)
        db.session.commit()
    teacher = add_teacher(journal_server, place)
    with app.app_context():
        user = db.session.get_one(User, teacher.id)
        user.roles.append(RoleGrant(role="class_teacher", school_id=place.school_id))
        db.session.get_one(ClassGroup, place.class_id).class_teacher_id = user.id
        db.session.commit()
    return HomeWorld(place, teacher, *result, today_lesson=today_lesson.id, today=today)


@pytest.fixture(scope="module")
def home_pages(chromium, journal_server: Server, home_world: HomeWorld) -> Iterator[dict]:
    """One signed-in page per language, made on first use."""
    pages: dict[str, Any] = {}
    contexts = []

    def page_in(language: str) -> Any:
        if language not in pages:
            from auth.models import User
            from journal.db import db

            with journal_server.app.app_context():
                db.session.get_one(User, home_world.teacher.id).language = language
                db.session.commit()
            context = chromium.new_context(base_url=journal_server.url, locale=language)
            context.set_default_timeout(20_000)
            contexts.append(context)
            pages[language] = sign_in(context, journal_server, home_world.teacher, "/")
        return pages[language]

    yield page_in  # type: ignore[misc]
    for context in contexts:
        context.close()


@pytest.mark.parametrize(("language", "size"), CASES)
def test_home_lists_todays_lessons_and_early_warnings(home_pages, home_world, language, size):
    page = home_pages(language)
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == language

    lessons = page.locator("#today .home-lesson")
    assert lessons.count() == 1
    row = lessons.first
    row.scroll_into_view_if_needed()
    assert row.is_visible()
    assert home_world.subject in row.inner_text() and home_world.class_name in row.inner_text()
    link = row.locator("a")
    assert f"lesson={home_world.today_lesson}" in str(link.get_attribute("href"))
    if size == CASES[0][1] and language == CASES[0][0]:
        # The link opens the grid with the focus in that lesson's column, today's date above.
        link.click()
        page.wait_for_selector("body[data-grid-ready='1']")
        heading = page.evaluate(
            """() => document.querySelector("thead tr.dates")
                 .cells[document.activeElement.cellIndex].textContent"""
        )
        assert heading.startswith(home_world.today.strftime("%d.%m")), heading
        page.goto("/")

    warnings = page.locator("#early-warnings")
    warnings.scroll_into_view_if_needed()
    listed = page.locator("#early-warnings .pupil-attention")
    assert listed.count() == 1
    assert home_world.truant in listed.first.inner_text()
    assert listed.first.locator(".early-warning").is_visible()
    assert home_world.ill not in warnings.inner_text()

    # Nothing waits in this browser: the outbox section says nothing.
    assert page.locator("#outbox-waiting").is_hidden()
    # Nothing wider than the window (the page scrolls only vertically).
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    wide = page.evaluate(
        """() => [...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
          .map((e) => `${e.tagName}#${e.id}.${e.className}`).slice(0, 8)"""
    )
    assert overflow <= 1, f"{overflow}px wider than the window at {size}: {wide}"


def test_the_outbox_section_counts_what_waits_in_this_browser(home_pages, home_world):
    """An entry left in this browser's outbox (here: put there directly) is counted under its
    class and subject, with a link to the grid that sends it."""
    page = home_pages("kk")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/")
    page.evaluate(
        """([journal, author, lesson]) => new Promise((resolve, reject) => {
          const request = indexedDB.open("class-journal", 1);
          request.onsuccess = () => {
            const db = request.result;
            const transaction = db.transaction("outbox", "readwrite");
            transaction.objectStore("outbox").put({
              entry_id: "00000000-0000-4000-8000-000000000001", kid: "e2e-home", device_seq: 0,
              journal, cell: `topic:${lesson}`, state: "pending", created: Date.now(),
              submission: { alg: "ed25519", kid: "e2e-home", sig: "",
                payload: { journal, author, kind: "topic", lesson, topic: "x" } },
            });
            transaction.oncomplete = () => resolve();
            transaction.onerror = () => reject(transaction.error);
          };
          request.onerror = () => reject(request.error);
        })""",
        [home_world.place.origin, home_world.teacher.id, home_world.today_lesson],
    )
    page.goto("/")
    section = page.locator("#outbox-waiting")
    section.wait_for(state="visible")
    row = section.locator("tbody tr")
    assert row.count() == 1
    text = row.first.inner_text()
    assert home_world.class_name in text and home_world.subject in text and "1" in text
    assert "/teacher/grid/" in str(row.first.locator("a").get_attribute("href"))
