"""A live server on 127.0.0.1 (PostgreSQL) and real Chromium for the offline grid.

Signing a teacher in lives in ONE place, ``sign_in``: it goes through /login and the second
factor as a person does. The server's clock (``AUTH_CLOCK``) moves 30 s forward before each
TOTP code, because each code is accepted once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.exc import IntegrityError
from werkzeug.serving import make_server

from ..conftest import Databases, make_app, migrate
from ..external import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "e2e-grid-password-2026"  # noqa: S105 - a throwaway test account
STUDENTS = 30
LESSONS = 45
_usernames = itertools.count(1)


@dataclass
class Server:
    """The app served by werkzeug in a thread; remembers every request it saw."""

    app: Any
    url: str = ""
    clock_offset: dt.timedelta = dt.timedelta(0)
    requests: list[tuple[float, str, str]] = field(default_factory=list)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += dt.timedelta(seconds=seconds)

    def requests_since(self, moment: float) -> list[tuple[str, str]]:
        return [(method, path) for at, method, path in self.requests if at >= moment]


@dataclass(frozen=True)
class GridWorld:
    """Ids of the module's school: one class, one subject, a term with 45 lessons (in the
    grid's column order)."""

    school_id: int
    class_id: int
    subject_id: int
    term_id: int
    origin: str
    students: list[int]
    lessons: list[int]

    @property
    def grid_path(self) -> str:
        return f"/teacher/grid/{self.class_id}/{self.subject_id}/{self.term_id}"


@pytest.fixture(scope="session")
def journal_server(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    url = databases.create("postgresql")
    server = Server(app=None)
    app = make_app(url, tmp_path_factory.mktemp("e2e-keys") / "keys", AUTH_CLOCK=server.now)
    migrate(app)
    server.app = app
    inner = app.wsgi_app

    def logged(environ: dict[str, Any], start_response: Any) -> Any:
        server.requests.append(
            (time.monotonic(), environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        )
        return inner(environ, start_response)

    app.wsgi_app = logged  # type: ignore[method-assign]
    http = make_server("127.0.0.1", 0, app, threaded=True)
    server.url = f"http://127.0.0.1:{http.server_port}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield server
    http.shutdown()
    thread.join(timeout=10)
    app.extensions["journal_db"].engine.dispose()


@pytest.fixture(scope="module")
def grid_world(journal_server: Server) -> GridWorld:
    """A school whose second quarter has 45 lessons of one subject for 30 students, all in
    early November: the server refuses marks for lessons after today."""
    from journal.db import db
    from journal.models import Lesson

    from ..factories import LESSON_DAY, build_world

    app = journal_server.app
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        students = [world.student.id] + [world.add_student().id for _ in range(STUDENTS - 1)]
        lessons = [(world.lesson.date, world.lesson.period, world.lesson.id)]
        day = world.q2.starts_on
        while len(lessons) < LESSONS:
            # Five lessons each weekday from 3 November: done by mid-November.
            periods = [1, 2, 3, 4, 5] if day.weekday() < 5 else []
            for period in periods:
                if (day, period) == (LESSON_DAY, world.lesson.period) or len(lessons) == LESSONS:
                    continue
                lesson = Lesson(
                    class_group_id=world.class_group.id,
                    subject_id=world.subject.id,
                    date=day,
                    period=period,
                )
                db.session.add(lesson)
                db.session.flush()
                lessons.append((day, period, lesson.id))
            day += dt.timedelta(days=1)
        assert day <= world.q2.ends_on
        result = GridWorld(
            world.school.id,
            world.class_group.id,
            world.subject.id,
            world.q2.id,
            world.log.origin,
            students,
            [lesson_id for _day, _period, lesson_id in sorted(lessons)],
        )
        db.session.commit()
    return result


@dataclass(frozen=True)
class Teacher:
    id: int
    username: str
    totp_secret: str | None


@pytest.fixture
def teacher(journal_server: Server, grid_world: GridWorld) -> Teacher:
    """A new teacher of the module's class and subject (each test its own devices)."""
    return add_teacher(journal_server, grid_world)


def add_teacher(server: Server, world: GridWorld) -> Teacher:
    import pyotp

    from auth.models import RoleGrant, User
    from auth.passwords import hash_password
    from journal.db import db
    from journal.models import TeachingAssignment

    with server.app.app_context():
        user = User(
            school_id=world.school_id,
            username=f"e2e-teacher-{next(_usernames)}-{time.time_ns() % 10**6}",
            full_name="Сейітқалиева Гүлнұр Әбілқызы",
            password_hash=hash_password(PASSWORD),
        )
        user.roles.append(RoleGrant(role="teacher", school_id=world.school_id))
        secret = None
        if hasattr(User, "totp_secret"):
            secret = pyotp.random_base32()
            user.totp_secret = secret
            user.totp_confirmed_at = server.now()
        db.session.add(user)
        db.session.flush()
        db.session.add(
            TeachingAssignment(
                user_id=user.id, class_group_id=world.class_id, subject_id=world.subject_id
            )
        )
        db.session.commit()
        return Teacher(user.id, user.username, secret)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is not installed (scripts/install-debian-packages.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_device(chromium: Any, server: Server, **options: Any) -> Any:
    """A browser context: one device, with its own IndexedDB, key and service worker."""
    context = chromium.new_context(base_url=server.url, locale="en-US", **options)
    context.set_default_timeout(20_000)
    return context


def sign_in(context: Any, server: Server, teacher: Teacher, next_path: str) -> Any:
    """Sign the teacher in through /login and the second factor; returns the page at next."""
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(f"/login?next={quote(next_path)}")
    page.fill("input[name=username]", teacher.username)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state()
    if "/second-factor" in page.url:
        code = page.locator("input[name=code]")
        if teacher.totp_secret and code.count():
            import pyotp

            server.advance(30)  # a code is accepted once: take the next time step
            code.fill(pyotp.TOTP(teacher.totp_secret).at(server.now()))
            code.press("Enter")
            page.wait_for_load_state()
        else:
            _pass_second_factor_by_cookie(context, server)
    if not page.url.endswith(next_path):
        page.goto(next_path)
    return page


def _pass_second_factor_by_cookie(context: Any, server: Server) -> None:
    """For a teacher without an authenticator: mark the browser's server-side session as past
    the second factor, as a passed check does."""
    from auth.sessions import find_session
    from journal.db import db

    serializer = server.app.session_interface.get_signing_serializer(server.app)
    cookie = next(c for c in context.cookies() if c["name"] == "session")
    token = serializer.loads(cookie["value"])["sid"]
    with server.app.app_context():
        row = find_session(db.session, token, server.now())
        assert row is not None
        row.second_factor_at = server.now()
        db.session.commit()


def enrol_device(page: Any, server: Server, teacher: Teacher) -> str:
    """The page's device key, enrolled: by the page itself through /api/devices when the
    accounts flow allows it, else here as an administrator would. Returns the kid."""
    import base64

    from auth.models import DeviceKey
    from journal.db import db

    page.wait_for_selector("#device-state[data-enrolment]:not([data-enrolment=asking])")
    badge = page.locator("#device-key")
    kid = badge.get_attribute("data-kid")
    with server.app.app_context():
        if db.session.get(DeviceKey, kid) is None:
            db.session.add(
                DeviceKey(
                    kid=kid,
                    user_id=teacher.id,
                    alg=badge.get_attribute("data-alg"),
                    public_key=base64.b64decode(badge.get_attribute("data-public-key")),
                    label="e2e",
                )
            )
            try:
                db.session.commit()
            except IntegrityError:  # the page enrolled it a moment ago
                db.session.rollback()
    return str(kid)


def open_grid(context: Any, server: Server, teacher: Teacher, world: GridWorld) -> Any:
    """Sign in, open the grid online, enrol the device and wait until it works offline."""
    page = sign_in(context, server, teacher, world.grid_path)
    page.wait_for_selector("body[data-grid-ready='1']")
    enrol_device(page, server, teacher)
    page.wait_for_selector("#offline-ready[data-ready='1']")
    return page


def unsynced(page: Any) -> int:
    return int(page.locator("#unsynced").text_content())


def wait_unsynced(page: Any, count: int, timeout: float = 30_000) -> None:
    # A function, not an expression: the page's CSP forbids eval, and Playwright would use it.
    page.wait_for_function(
        "(n) => document.getElementById('unsynced').textContent === String(n)",
        arg=count,
        timeout=timeout,
    )


def open_more(page: Any) -> None:
    """Open the grid's "More" disclosure (export, the device's name, help), if it is closed."""
    if page.locator("#grid-more").get_attribute("open") is None:
        page.locator("#grid-more summary").click()
