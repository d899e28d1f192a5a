"""School set-up: what the school admin builds (year, terms, holidays, classes, subjects,
assignments, timetable, lessons, transfers), what it refuses, and who may do it."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from auth.iin import check_digit, encrypt_iin, iin_lookup_hash
from auth.models import AccessLogEntry
from journal.models import (
    ClassGroup,
    Enrollment,
    Holiday,
    Lesson,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
    TimetableSlot,
)
from journal.recording.recorder import record_entry
from journal.setup import SetupError
from journal.setup.calendar import add_holiday, add_term
from journal.setup.classes import generate_lessons, regenerate_lessons, set_timetable
from journal.setup.enrollment import admit_transferred_student, transfer_student

from ..conftest import TEST_IIN_ENCRYPTION_KEY, TEST_IIN_HMAC_KEY
from ..factories import LESSON_DAY, NOW, add_user, browser_state, build_world

# -- signing in and posting forms, as a browser does --------------------------------------------


def sign_in(client, user, language: str = "en") -> None:
    """Sign ``user`` in on this test client (past the second factor), reading ``language``."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    session = object_session(user)
    if session is None:  # a user of a finished app context: its session row, committed
        from auth.models import User
        from journal.db import db

        with client.application.app_context():
            state = browser_state(db.session, db.session.get_one(User, user.id))
            db.session.commit()
    else:
        state = browser_state(session, user)
    with client.session_transaction() as browser_session:
        browser_session.update(state)


def csrf_token(client, page: str = "/") -> str:
    html = client.get(page, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def flashes(html: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", m).strip()
        for m in re.findall(r'class="flash[^"]*"[^>]*>(.*?)</p>', html, re.S)
    ]


class ControlLabels(HTMLParser):
    """Collects form controls that a screen reader could not name."""

    def __init__(self) -> None:
        super().__init__()
        self.labels_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.open_labels = 0
        self.positive_tabindex: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if (attributes.get("tabindex") or "0").lstrip("-").isdigit() and int(
            attributes.get("tabindex") or "0"
        ) > 0:
            self.positive_tabindex.append(tag)
        if tag == "label":
            self.open_labels += 1
            if attributes.get("for"):
                self.labels_for.add(str(attributes["for"]))
        elif tag in ("input", "select", "textarea"):
            if attributes.get("type") in ("hidden", "submit", "button"):
                return
            attributes["wrapped"] = "yes" if self.open_labels else None
            self.controls.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1

    def unlabelled(self) -> list[str]:
        return [
            str(c.get("name") or c.get("id"))
            for c in self.controls
            if not (
                c.get("aria-label")
                or c.get("aria-labelledby")
                or c.get("wrapped")
                or (c.get("id") and c["id"] in self.labels_for)
            )
        ]


def accessibility_problems(html: str) -> list[str]:
    """Unlabelled controls, positive tabindex, and buttons without a name."""
    parser = ControlLabels()
    parser.feed(html)
    problems = [f"unlabelled control {name}" for name in parser.unlabelled()]
    problems += [f"tabindex > 0 on {tag}" for tag in parser.positive_tabindex]
    for button in re.findall(r"<button[^>]*>(.*?)</button>", html, re.S):
        if not re.sub(r"<[^>]+>", "", button).strip():
            problems.append("a button without text")
    if re.search(r"\sstyle=|\son[a-z]+=", html):
        problems.append("inline style or event handler (the CSP forbids them)")
    return problems


@pytest.fixture
def admin(world):
    return add_user(world.session, world.school, "school_admin")


@pytest.fixture
def client(app, admin):
    browser = app.test_client()
    sign_in(browser, admin)
    return browser


@pytest.fixture
def post(client):
    token = csrf_token(client, "/setup/")

    def send(url: str, **data):
        return client.post(url, data={"csrf_token": token, **data}, follow_redirects=True)

    return send


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


# -- the school year, terms and holidays -------------------------------------------------------


def test_admin_creates_a_year_with_quarters_and_a_holiday(world, post, session):
    page = post("/setup/years", name="2027-2028", starts_on="2027-09-01", ends_on="2028-05-25")
    assert page.status_code == 200
    year = session.scalar(select(SchoolYear).where(SchoolYear.name == "2027-2028"))
    assert year is not None and year.school_id == world.school.id
    quarters = [
        ("2027-09-01", "2027-10-27"),
        ("2027-11-04", "2027-12-28"),
        ("2028-01-08", "2028-03-19"),
        ("2028-03-30", "2028-05-25"),
    ]
    for number, (first, last) in enumerate(quarters, 1):
        post(
            f"/setup/years/{year.id}/terms",
            **{"term-kind": "quarter", "term-number": number, "term-starts_on": first},
            **{"term-ends_on": last},
        )
    holiday = post(
        f"/setup/years/{year.id}/holidays",
        **{"holiday-name": "Наурыз мейрамы", "holiday-starts_on": "2028-03-21"},
        **{"holiday-ends_on": "2028-03-23"},
    )
    assert "Наурыз мейрамы" in holiday.get_data(as_text=True)
    terms = session.scalars(select(Term).where(Term.school_year_id == year.id)).all()
    assert sorted(t.number for t in terms) == [1, 2, 3, 4]
    assert count(session, Holiday) == 1


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-10-20", "2026-11-10", "overlap another term"),
        ("2026-08-20", "2026-09-10", "inside the school year"),
        ("2026-12-20", "2026-12-01", "must end after it starts"),
    ],
)
def test_bad_term_dates_are_refused_and_nothing_is_written(
    world, post, session, first, last, message
):
    page = post(
        f"/setup/years/{world.year.id}/terms",
        **{"term-kind": "quarter", "term-number": 3, "term-starts_on": first, "term-ends_on": last},
    )
    assert any(message in text for text in flashes(page.get_data(as_text=True)))
    assert session.scalar(select(func.count()).select_from(Term).where(Term.number == 3)) == 0


def test_a_holiday_outside_the_year_is_refused(world, session):
    with pytest.raises(SetupError, match="inside the school year"):
        add_holiday(session, world.year, "Жаз", dt.date(2027, 6, 1), dt.date(2027, 8, 31))
    with pytest.raises(SetupError, match="exists already"):
        add_term(session, world.year, "quarter", 1, dt.date(2026, 9, 1), dt.date(2026, 10, 1))


def test_classes_and_subjects_are_added_once(world, post, session):
    post(f"/setup/years/{world.year.id}/classes", name="8Б", grade_level=8, class_teacher="")
    again = post(
        f"/setup/years/{world.year.id}/classes", name="8Б", grade_level=8, class_teacher=""
    )
    assert any("exists already" in text for text in flashes(again.get_data(as_text=True)))
    added = session.scalars(select(ClassGroup).where(ClassGroup.name == "8Б")).all()
    assert len(added) == 1
    post("/setup/subjects", name="Физика", graded="y")
    post("/setup/subjects", name="Сынып сағаты")  # an unchecked box: not graded
    subjects = {s.name: s.graded for s in session.scalars(select(Subject))}
    assert subjects["Физика"] is True and subjects["Сынып сағаты"] is False


def test_the_class_teacher_is_chosen_among_the_schools_teachers(world, post, session):
    colleague = add_user(session, world.school, "teacher", full_name="Иванова Ольга")
    page = post(f"/setup/classes/{world.class_group.id}/class-teacher", class_teacher=colleague.id)
    assert "Иванова Ольга" in page.get_data(as_text=True)
    assert world.class_group.class_teacher_id == colleague.id
    stranger_school = School(name="Басқа мектеп", domain="other-class-teacher.example.kz")
    session.add(stranger_school)
    session.flush()
    stranger = add_user(session, stranger_school, "teacher")
    refused = post(
        f"/setup/classes/{world.class_group.id}/class-teacher", class_teacher=stranger.id
    )
    assert any("No such teacher" in text for text in flashes(refused.get_data(as_text=True)))
    assert world.class_group.class_teacher_id == colleague.id


def test_a_teacher_from_another_school_cannot_be_assigned(world, post, session):
    stranger_school = School(name="Басқа мектеп", domain="other-setup.example.kz")
    session.add(stranger_school)
    session.flush()
    stranger = add_user(session, stranger_school, "teacher")
    assigned = count(session, TeachingAssignment)
    page = post(
        f"/setup/years/{world.year.id}/assignments",
        teacher=stranger.id,
        class_group=world.class_group.id,
        subject=world.subject.id,
    )
    assert page.status_code == 200
    assert count(session, TeachingAssignment) == assigned
    colleague = add_user(session, world.school, "teacher", full_name="Нұрғалиева Гүлнар")
    post(
        f"/setup/years/{world.year.id}/assignments",
        teacher=colleague.id,
        class_group=world.class_group.id,
        subject=world.subject.id,
    )
    assert count(session, TeachingAssignment) == assigned + 1


# -- timetable and lessons ---------------------------------------------------------------------


def test_lessons_follow_the_timetable_and_skip_holidays(world, session):
    set_timetable(session, world.class_group, {(0, 1): world.subject.id, (2, 3): world.subject.id})
    add_holiday(
        session, world.year, "Республика күні", dt.date(2026, 10, 26), dt.date(2026, 10, 26)
    )
    created = generate_lessons(session, world.class_group)
    lessons = session.scalars(
        select(Lesson).where(Lesson.class_group_id == world.class_group.id)
    ).all()
    made = [lesson for lesson in lessons if lesson.id != world.lesson.id]
    assert created == len(made) > 0
    assert {(lesson.date.weekday(), lesson.period) for lesson in made} == {(0, 1), (2, 3)}
    assert all(world.q1.starts_on <= one.date <= world.q2.ends_on for one in made)
    assert dt.date(2026, 10, 26) not in {one.date for one in made}  # a Monday, but a holiday
    assert generate_lessons(session, world.class_group) == 0  # running it again adds nothing


def test_regenerating_keeps_lessons_that_carry_entries(world, session):
    # world.lesson is Monday 16 November, period 2; it gets a grade, then the timetable moves.
    record_entry(session, world.signed("grade"), now=NOW)
    set_timetable(session, world.class_group, {(0, 2): world.subject.id})
    generate_lessons(session, world.class_group)
    set_timetable(session, world.class_group, {(1, 4): world.subject.id})
    changes = regenerate_lessons(session, world.class_group, LESSON_DAY)
    remaining = session.scalars(
        select(Lesson).where(
            Lesson.class_group_id == world.class_group.id, Lesson.date >= LESSON_DAY
        )
    ).all()
    assert world.lesson in remaining and changes.kept_with_entries == 1
    assert changes.removed > 0 and changes.created > 0
    others = [one for one in remaining if one.id != world.lesson.id]
    assert {(one.date.weekday(), one.period) for one in others} == {(1, 4)}


def test_timetable_page_saves_the_grid(world, post, session):
    page = post(
        f"/setup/classes/{world.class_group.id}/timetable",
        **{"slot-0-1": str(world.subject.id), "slot-4-6": str(world.subject.id), "slot-1-1": ""},
    )
    assert page.status_code == 200
    slots = session.scalars(select(TimetableSlot)).all()
    assert sorted((s.weekday, s.period) for s in slots) == [(0, 1), (4, 6)]
    made = post(f"/setup/classes/{world.class_group.id}/lessons", from_date="2026-09-01")
    assert any("Lessons created" in text for text in flashes(made.get_data(as_text=True)))


# -- transfers ---------------------------------------------------------------------------------


def test_a_transfer_closes_one_enrollment_and_opens_another(world, session):
    parallel = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="7Б", grade_level=7
    )
    session.add(parallel)
    session.flush()
    enrollment = session.scalar(select(Enrollment).where(Enrollment.student_id == world.student.id))
    moved = transfer_student(session, enrollment, parallel, dt.date(2026, 11, 9))
    assert enrollment.ends_on == dt.date(2026, 11, 8)
    assert (moved.class_group_id, moved.starts_on, moved.ends_on) == (
        parallel.id,
        dt.date(2026, 11, 9),
        None,
    )


def test_a_transfer_before_recorded_entries_is_refused(world, session):
    record_entry(session, world.signed("grade"), now=NOW)  # 16 November, in 7Ә
    parallel = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="7В", grade_level=7
    )
    session.add(parallel)
    session.flush()
    enrollment = session.scalar(select(Enrollment).where(Enrollment.student_id == world.student.id))
    with pytest.raises(SetupError, match="already has 1 entries"):
        transfer_student(session, enrollment, parallel, dt.date(2026, 11, 10))
    assert enrollment.ends_on is None
    assert count(session, Enrollment) == 1


def _student_with_iin(session, school, iin: str) -> Student:
    student = Student(
        school_id=school.id,
        last_name="Қасым",
        first_name="Ұлжан",
        birth_date=dt.date(2013, 5, 1),
        iin_encrypted=encrypt_iin(iin, TEST_IIN_ENCRYPTION_KEY),
        iin_hmac=iin_lookup_hash(iin, TEST_IIN_HMAC_KEY),
    )
    session.add(student)
    session.flush()
    return student


def _iin(first_eleven: str = "13050160012") -> str:
    while check_digit(first_eleven) is None:
        first_eleven = first_eleven[:-1] + str((int(first_eleven[-1]) + 1) % 10)
    return first_eleven + str(check_digit(first_eleven))


def test_admission_refuses_an_unknown_or_invalid_iin(world, session):
    with pytest.raises(SetupError, match="not valid"):
        admit_transferred_student(
            session, world.school, "123", world.class_group, NOW.date(), hmac_key=TEST_IIN_HMAC_KEY
        )
    with pytest.raises(SetupError, match="No student with this IIN in this school"):
        admit_transferred_student(
            session,
            world.school,
            _iin("12020250033"),
            world.class_group,
            NOW.date(),
            hmac_key=TEST_IIN_HMAC_KEY,
        )


def test_transfer_and_leaving_through_the_page(world, post, session):
    parallel = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="7Г", grade_level=7
    )
    session.add(parallel)
    session.flush()
    enrollment = session.scalar(select(Enrollment).where(Enrollment.student_id == world.student.id))
    page = post(
        f"/setup/enrollments/{enrollment.id}/transfer", to_class=parallel.id, on_date="2026-12-01"
    )
    assert "Өмірзақ" in page.get_data(as_text=True)
    moved = session.scalar(select(Enrollment).where(Enrollment.class_group_id == parallel.id))
    assert moved.starts_on == dt.date(2026, 12, 1)
    post(f"/setup/enrollments/{moved.id}/leave", last_day="2026-12-20")
    assert session.get(Enrollment, moved.id).ends_on == dt.date(2026, 12, 20)


# -- who may do it -----------------------------------------------------------------------------


def test_only_the_school_admin_reaches_set_up(world, app, session):
    teacher = app.test_client()
    sign_in(teacher, world.teacher)
    assert teacher.get("/setup/").status_code == 403
    assert app.test_client().get("/setup/").status_code == 302  # to the sign-in page


def test_an_admin_cannot_touch_another_schools_year_or_class(world, app, client, session):
    other = build_world(session, app.config["KEYS_DIR"])
    for url in (
        f"/setup/years/{other.year.id}",
        f"/setup/years/{other.year.id}/classes",
        f"/setup/classes/{other.class_group.id}/timetable",
        f"/setup/classes/{other.class_group.id}/students",
        f"/setup/years/{other.year.id}/roster",
    ):
        assert client.get(url).status_code == 404, url
    token = csrf_token(client, "/setup/")
    enrollment = session.scalar(select(Enrollment).where(Enrollment.student_id == other.student.id))
    answer = client.post(
        f"/setup/enrollments/{enrollment.id}/leave",
        data={"csrf_token": token, "last_day": "2026-12-01"},
    )
    assert answer.status_code == 404
    assert session.get(Enrollment, enrollment.id).ends_on is None


def test_posting_without_the_csrf_token_is_refused(world, client, session):
    answer = client.post("/setup/subjects", data={"name": "Химия"})
    assert answer.status_code == 400
    assert session.scalar(select(Subject).where(Subject.name == "Химия")) is None


def test_viewing_a_class_roster_is_in_the_access_log(world, client, admin, session):
    assert client.get(f"/setup/classes/{world.class_group.id}/students").status_code == 200
    logged = session.scalars(
        select(AccessLogEntry).where(AccessLogEntry.actor_id == admin.id)
    ).all()
    assert any(row.target_id == str(world.class_group.id) for row in logged)


def test_set_up_pages_label_every_control(world, client):
    pages = [
        "/setup/",
        "/setup/subjects",
        f"/setup/years/{world.year.id}",
        f"/setup/years/{world.year.id}/classes",
        f"/setup/years/{world.year.id}/assignments",
        f"/setup/years/{world.year.id}/roster",
        f"/setup/years/{world.year.id}/admit",
        f"/setup/classes/{world.class_group.id}/timetable",
        f"/setup/classes/{world.class_group.id}/students",
    ]
    for page in pages:
        answer = client.get(page)
        assert answer.status_code == 200, page
        assert accessibility_problems(answer.get_data(as_text=True)) == [], page
