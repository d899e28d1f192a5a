"""The access log: who saw which child's data or did which administrative act, when, from
where; append-only in the database; readable by the school's administrator only."""

from __future__ import annotations

import datetime as dt
import re

import flask_babel
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from auth import invitations, resets, services
from auth.access import PREFETCH_HEADER
from auth.models import AccessLogEntry
from journal.db import db
from journal.models import ClassGroup

from ..factories import build_world
from .conftest import english_client, sign_in


def test_viewing_a_childs_record_leaves_a_row_with_the_viewer(app, world, people, clock, session):
    client = english_client(app)
    client.environ_base["REMOTE_ADDR"] = "192.0.2.17"
    sign_in(client, people["class_teacher"], at=clock.now)
    assert client.get(f"/account/children/{world.student.id}").status_code == 200
    row = session.scalar(select(AccessLogEntry).order_by(AccessLogEntry.id.desc()))
    assert (row.actor_id, row.action, row.target_type, row.target_id) == (
        people["class_teacher"].id,
        "view:auth.child_record",
        "student",
        str(world.student.id),
    )
    assert row.ip == "192.0.2.17" and row.at == clock.now and row.school_id == world.school.id


def test_record_access_for_other_modules(world, people, clock, session):
    services.record_access(
        session, people["inspector"], "export.journal_pdf", "class_group", world.class_group.id,
        "198.51.100.4", now=clock.now,
    )  # fmt: skip
    services.record_access(session, None, "archive.run", "school", world.school.id, None)
    rows = session.execute(
        sa.select(AccessLogEntry.action, AccessLogEntry.school_id, AccessLogEntry.actor_id)
        .where(AccessLogEntry.action.in_(["export.journal_pdf", "archive.run"]))
        .order_by(AccessLogEntry.id)
    ).all()
    assert [tuple(row) for row in rows] == [
        ("export.journal_pdf", world.school.id, people["inspector"].id),
        ("archive.run", world.school.id, None),
    ]


def test_a_page_views_row_alone_does_not_wait_for_the_disk(fresh_app):
    """On PostgreSQL a page view's row, when it is all its transaction writes, is committed
    without waiting for the WAL flush; a transaction that wrote before it commits as ever."""
    with fresh_app.app_context():
        session = db.session
        world = build_world(session, fresh_app.config["KEYS_DIR"])
        session.commit()
        postgresql = session.get_bind().dialect.name == "postgresql"

        def logged_view(action: str) -> str | None:
            session.scalar(sa.text("SELECT 1"))  # a transaction is open (else see below)
            services.record_access(
                session, world.teacher, action, "student", world.student.id, None, page_view=True
            )
            setting = session.scalar(sa.text("SHOW synchronous_commit")) if postgresql else None
            session.commit()
            return setting

        assert logged_view("view:alone") == ("off" if postgresql else None)
        world.add_student(last_name="Жазылған")  # written (flushed) before the view's row
        assert logged_view("view:after a write") == ("on" if postgresql else None)
        world.student.first_name = "Өзгерген"  # pending, flushed by the view's row
        assert logged_view("view:after a pending change") == ("on" if postgresql else None)
        assert logged_view("view:alone again") == ("off" if postgresql else None)
        actions = session.scalars(
            select(AccessLogEntry.action).where(AccessLogEntry.actor_id == world.teacher.id)
        ).all()
        assert sorted(actions) == [
            "view:after a pending change",
            "view:after a write",
            "view:alone",
            "view:alone again",
        ]


def test_a_page_views_row_with_no_transaction_open_is_one_of_its_own(fresh_app):
    """On PostgreSQL, a page view whose request has no transaction open on the server (its
    reads ran alone) writes its row in one round trip: committed at once, before the
    request's own commit, as ``personal_data`` would have committed it right after."""
    with fresh_app.app_context():
        session = db.session
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite takes its write lock at BEGIN: every write is in a transaction")
        world = build_world(session, fresh_app.config["KEYS_DIR"])
        session.commit()
        services.record_access(
            session, world.teacher, "view:own", "student", world.student.id, None, page_view=True
        )
        count = select(sa.func.count()).where(AccessLogEntry.action == "view:own")
        with db.engine.connect() as other:
            assert other.scalar(count) == 1
        session.rollback()  # nothing left to undo
        assert session.scalar(count) == 1


def test_the_admin_reads_their_schools_log(app, world, people, clock, session):
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    services.record_access(
        session, people["parent"], "view:test", "student", world.student.id, "203.0.113.9"
    )
    services.record_access(session, None, "secret:elsewhere", "student", elsewhere.student.id, None)
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    page = admin.get("/admin/access-log")
    assert page.status_code == 200
    assert "view:test" in page.text and "203.0.113.9" in page.text
    assert people["parent"].full_name in page.text
    assert "secret:elsewhere" not in page.text
    teacher = english_client(app)
    sign_in(teacher, people["teacher"], at=clock.now)
    assert teacher.get("/admin/access-log").status_code == 403


def test_admin_actions_are_logged(app, world, people, clock, session):
    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    invitations.create_invitation(
        session, student_id=world.student.id, role="parent", actor=people["school_admin"],
        ip="127.0.0.1", now=clock.now,
    )  # fmt: skip
    row = session.scalar(select(AccessLogEntry).order_by(AccessLogEntry.id.desc()))
    assert row.action == "invitation.create.parent" and row.actor_id == people["school_admin"].id


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET action = 'x'", "DELETE FROM access_log"]
)
def test_the_log_is_append_only_in_the_database(world, people, session, statement):
    services.record_access(
        session, people["parent"], "view:test", "student", world.student.id, None
    )
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), session.begin_nested():
        session.execute(sa.text(statement))


@pytest.mark.parametrize(("hops", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.5")])
def test_the_logged_address_comes_from_the_proxy_only_when_configured(tmp_path, hops, seen):
    """Behind a proxy (JOURNAL_PROXY_HOPS=1) the access log records the client's address from
    X-Forwarded-For; without one, a client forging the header does not change it."""
    from auth.access import client_address

    from ..conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "keys", PROXY_HOPS=hops)
    app.add_url_rule("/test-address", "test_address", client_address)
    response = app.test_client().get(
        "/test-address", headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}
    )
    assert response.get_data(as_text=True) == seen


# -- the log in words (issue 17) ------------------------------------------------------------------

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.122 Mobile Safari/537.36"
)
# 04:05 UTC is 09:05 in Almaty (UTC+5 since March 2024).
MORNING = dt.datetime(2026, 11, 16, 4, 5, 7, tzinfo=dt.UTC)


def grid_path(world) -> str:  # type: ignore[no-untyped-def]
    return f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{world.q2.id}"


def admin_page(app, people, clock, query: str = "", language: str = "en"):  # type: ignore[no-untyped-def]
    flask_babel.refresh()  # the tests' app context keeps the last request's language
    admin = app.test_client()
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    sign_in(admin, people["school_admin"], at=clock.now)
    return admin.get(f"/admin/access-log{query}")


def log_table(html: str) -> str:
    """The table's text, tags dropped (what a person reads)."""
    table = html[html.index("<table") : html.index("</table>")]
    return " ".join(re.sub(r"<[^>]+>", " ", table).split())


def test_the_log_says_who_opened_which_journal_when_on_the_school_clock_and_from_what(
    app, world, people, clock, session
):
    clock.now = MORNING
    teacher = english_client(app)
    teacher.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    sign_in(teacher, people["teacher"], at=clock.now)
    assert teacher.get(grid_path(world)).status_code == 200

    page = admin_page(app, people, clock)
    assert page.status_code == 200
    text = log_table(page.text)
    assert "2026-11-16 09:05:07" in text and "Asia/Almaty" in page.text
    assert (
        f"{people['teacher'].full_name} {people['teacher'].username} Opened: class journal "
        "view:teacher.grid 7Ә Математика, quarter 2 Chrome on Android"
    ) in text
    assert "class_group" not in text  # no internal codes for the record

    kazakh = log_table(admin_page(app, people, clock, language="kk").text)
    assert "Ашты: сынып журналы" in kazakh and "7Ә Математика, 2-тоқсан" in kazakh
    russian = log_table(admin_page(app, people, clock, language="ru").text)
    assert "Открыл(а): классный журнал" in russian and "7Ә Математика, 2-я четверть" in russian


def test_admin_actions_read_as_sentences_about_people(app, world, people, clock, session):
    target = people["teacher"]
    resets.request_reset(
        session, target, "password", "forgot it", actor=people["school_admin"], ip="192.0.2.1",
        now=clock.now,
    )  # fmt: skip
    text = log_table(admin_page(app, people, clock).text)
    assert f"Asked for a password reset user.reset.request.password {target.full_name}" in text


def test_background_prefetches_are_not_views(app, world, people, clock, session):
    """The service worker marks the pages it keeps for work offline; the log says so."""
    teacher = english_client(app)
    sign_in(teacher, people["teacher"], at=clock.now)
    prefetched = teacher.get(grid_path(world), headers={PREFETCH_HEADER: "offline-copy"})
    assert prefetched.status_code == 200
    row = session.scalar(select(AccessLogEntry).order_by(AccessLogEntry.id.desc()))
    assert row.action == "prefetch:teacher.grid" and row.actor_id == people["teacher"].id
    assert row.target_id == str(world.class_group.id)  # the personal data is logged all the same
    text = log_table(admin_page(app, people, clock).text)
    assert "Fetched in the background for work offline, not opened: class journal" in text
    assert "Opened: class journal" not in text
    # The worker sends the header with every page it keeps.
    assert PREFETCH_HEADER in teacher.get("/sw.js").text


def record(session, actor, target_type, target_id, at):  # type: ignore[no-untyped-def]
    services.record_access(
        session, actor, f"view:test.{target_type}", target_type, target_id, None, now=at
    )


def test_the_admin_filters_by_person_pupil_and_day(app, world, people, clock, session):
    other_class = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="9Б", grade_level=9
    )
    session.add(other_class)
    session.flush()
    pupil, classmate = world.student, people.other_student_id
    day = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
    record(session, people["parent"], "student", pupil.id, day)
    record(session, people["teacher"], "student", classmate, day)
    record(session, people["teacher"], "class_group", world.class_group.id, day)  # pupil's class
    record(session, people["teacher"], "class_group", other_class.id, day)
    # 20:30 UTC on the 11th is already the 12th in Almaty.
    record(session, people["class_teacher"], "student", pupil.id, day.replace(day=11, hour=20))

    def shown(query: str) -> list[tuple[str, str]]:
        page = admin_page(app, people, clock, query)
        assert page.status_code == 200, page.text
        if "<table" not in page.text:
            return []
        rows = re.findall(r"<tr[^>]*>\s*<td>(.*?)</tr>", page.text, re.S)
        return [
            (
                re.search(r"<td>([^<]*?) <code", row).group(1).strip(),
                log_table(f"<table>{row}</table>"),
            )
            for row in rows
            if "view:test." in row
        ]

    by_pupil = shown(f"?pupil={pupil.id}")
    assert sorted(who for who, _text in by_pupil) == sorted(
        [people["parent"].full_name, people["teacher"].full_name, people["class_teacher"].full_name]
    )
    assert not any("9Б" in text for _who, text in by_pupil)
    assert {who for who, _text in shown(f"?person={people['teacher'].id}")} == {
        people["teacher"].full_name
    }
    on_the_12th = shown("?from=2026-11-12&to=2026-11-12")
    assert [who for who, _text in on_the_12th] == [people["class_teacher"].full_name]
    assert shown(f"?pupil={pupil.id}&from=2026-11-10&to=2026-11-11") and all(
        who != people["class_teacher"].full_name
        for who, _text in shown(f"?pupil={pupil.id}&from=2026-11-10&to=2026-11-11")
    )


@pytest.mark.parametrize(
    "query",
    [
        "?person=abc",
        "?person=99999999999999",
        "?person=-1",
        "?pupil=1.5",
        "?pupil=999999",
        "?from=2026-13-01",
        "?from=2026-1-1",
        "?to=1999-12-31",
        "?from=2026-11-12&to=2026-11-11",
        "?before=x",
        "?from=" + "9" * 500,
    ],
)
def test_a_filter_that_is_not_one_answers_400_and_writes_nothing(
    app, world, people, clock, session, query
):
    before = session.scalar(select(sa.func.count()).select_from(AccessLogEntry))
    page = admin_page(app, people, clock, query)
    assert page.status_code == 400
    assert 'role="alert"' in page.text and "<table" not in page.text
    assert session.scalar(select(sa.func.count()).select_from(AccessLogEntry)) == before


def test_people_and_pupils_of_another_school_are_not_filters(app, world, people, clock, session):
    elsewhere = build_world(session, app.config["KEYS_DIR"])
    elsewhere.student.last_name = "Басқамектептегі"
    session.flush()
    for query in (f"?person={elsewhere.teacher.id}", f"?pupil={elsewhere.student.id}"):
        page = admin_page(app, people, clock, query)
        assert page.status_code == 400 and "Басқамектептегі" not in page.text
