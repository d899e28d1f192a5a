"""Charts drawn on the server: a pupil's term percent week by week (portal and class page) and
the class's attendance calendar (class page). What a reader notices: the points and cells for
known numbers, the translated titles, a clear "no marks yet", nobody else's child."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from journal.charts.heatmap import HeatmapText, SchoolDay, attendance_heatmap
from journal.charts.percent import Band, PercentPanel, Week, percent_chart, x_of, y_of
from journal.charts.series import term_weeks
from journal.grading import CRITERIA_BANDS
from journal.models import Holiday, Lesson
from journal.recording.recorder import record_entry

from ..factories import NOW, add_user, signed_in_client
from .test_portal import parent_of
from .test_school_setup import accessibility_problems, sign_in

BANDS = tuple(Band(minimum, str(grade)) for minimum, grade in CRITERIA_BANDS)
WEEKS = tuple(Week(str(n), f"week {n}") for n in range(1, 9))


def panel(values, heading="Алгебра <b>") -> str:
    return str(
        percent_chart(
            PercentPanel("p-1", heading, f"{heading}: by week", "Percent by week.", values),
            WEEKS,
            BANDS,
            fmt=lambda v: f"{v} %",
            no_value="nothing yet",
            axis_label="Weeks",
        )
    )


def test_a_percent_panel_draws_each_known_week_and_the_grade_bands():
    svg = panel((None, Decimal("80.0"), Decimal("72.5")))
    points = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"[^>]*data-percent="([\d.]+)"', svg)
    assert [(float(x), float(y), p) for x, y, p in points] == [
        (pytest.approx(x_of(1, 8), abs=0.01), pytest.approx(y_of(80), abs=0.01), "80.0"),
        (
            pytest.approx(x_of(2, 8), abs=0.01),
            pytest.approx(y_of(Decimal("72.5")), abs=0.01),
            "72.5",
        ),
    ]
    # The step: from week 2 at 80 % across to week 3, then down to 72.5 %.
    assert re.search(r'd="M[\d.]+ 54 H[\d.]+ V63"', svg)
    # Guides at 85, 65 and 40 (dashed), the grades 5..2 in the margin, the last value written.
    assert svg.count('stroke-dasharray="4 3"') == 3
    for grade in "5432":
        assert f'font-weight="bold" fill="#4a525c">{grade}</text>' in svg
    assert re.search(r'class="last"[^>]*>72.5 %</text>', svg)
    # Accessible and safe: named, described with the numbers, escaped, no inline style.
    assert 'role="img"' in svg and 'aria-labelledby="p-1-title"' in svg
    stated = "Percent by week. week 1: nothing yet; week 2: 80.0 %; week 3: 72.5 %."
    assert f'<desc id="p-1-desc">{stated}</desc>' in svg
    assert "Алгебра &lt;b&gt;" in svg and "<b>" not in svg
    assert "style=" not in svg and "<script" not in svg


def test_a_panel_refuses_more_values_than_weeks():
    with pytest.raises(ValueError):
        panel((Decimal(1),) * 9)


def heatmap(days) -> str:
    texts = HeatmapText(
        title="Attendance <7Ә>",
        summary="By day.",
        weekdays=("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"),
        legend=("100 %", "95–99 %", "90–94 %", "80–89 %", "below 80 %", "day off", "to come"),
    )
    return str(
        attendance_heatmap(
            chart_id="a-1",
            starts_on=dt.date(2026, 11, 3),
            ends_on=dt.date(2026, 11, 22),
            days=days,
            texts=texts,
        )
    )


def test_the_calendar_shades_and_labels_each_school_day():
    days = [
        SchoolDay(dt.date(2026, 11, 3), "held", "Tue 3 Nov: 100 %", 60, 60),
        SchoolDay(dt.date(2026, 11, 4), "held", "Wed 4 Nov: 75 %", 45, 60),
        SchoolDay(dt.date(2026, 11, 6), "holiday", "Fri 6 Nov: day off"),
        SchoolDay(dt.date(2026, 11, 20), "pending", "Fri 20 Nov: to come"),
    ]
    svg = heatmap(days)
    cells = dict(re.findall(r'data-date="([\d-]+)"(?: data-percent="(\d+)")?', svg))
    assert cells == {"2026-11-03": "100", "2026-11-04": "75", "2026-11-06": "", "2026-11-20": ""}
    # Three weeks as columns (from Monday 2 Nov), five rows: no Saturday lessons, no Saturday row.
    assert ">02.11<" in svg and ">16.11<" in svg and ">Sa<" not in svg and ">Fr<" in svg
    # 100 % is the lightest shade, 75 % the darkest with white text; both write the number.
    assert re.search(r'fill="#eef5fc"[^>]*/><text[^>]*fill="#1b1f24">100<', svg)
    assert re.search(r'fill="#0b3d75"[^>]*/><text[^>]*fill="#ffffff">75<', svg)
    assert 'class="day holiday"' in svg and 'fill="url(#a-1-hatch)"' in svg
    assert 'class="day pending"' in svg
    assert "Attendance &lt;7Ә&gt;" in svg and "style=" not in svg
    assert "By day. Tue 3 Nov: 100 %; Wed 4 Nov: 75 %; Fri 6 Nov: day off" in svg
    saturday = heatmap([*days, SchoolDay(dt.date(2026, 11, 7), "held", "Sat", 1, 1)])
    assert ">Sa<" in saturday and ">Su<" not in saturday


def test_weeks_run_monday_to_sunday_cut_to_the_term(world):
    weeks = term_weeks(world.q2)  # Tuesday 3 November to Monday 28 December
    assert (weeks[0].starts_on, weeks[0].ends_on) == (dt.date(2026, 11, 3), dt.date(2026, 11, 8))
    assert weeks[2].starts_on == dt.date(2026, 11, 16)
    assert (weeks[-1].starts_on, weeks[-1].ends_on) == (dt.date(2026, 12, 28),) * 2


# -- the pages -----------------------------------------------------------------------------------


def lesson_on(world, day: dt.date, period: int = 1) -> Lesson:
    lesson = Lesson(
        class_group_id=world.class_group.id, subject_id=world.subject.id, date=day, period=period
    )
    world.session.add(lesson)
    world.session.flush()
    return lesson


@pytest.fixture
def seeded(world):
    """Week 3 of the second quarter (16 Nov): FO 8 → 80 %; week 4 (23 Nov): SOR 13/20 → the
    no-SOCh weights give 50 × 0.8 + 50 × 0.65 = 72.5 %. A classmate misses 16 Nov (sick)."""
    classmate = world.add_student(last_name="Иванова", first_name="Мария")
    later = lesson_on(world, dt.date(2026, 11, 23))
    record_entry(world.session, world.signed("grade", value={"score": 8}), now=NOW)
    record_entry(
        world.session,
        world.signed("grade", lesson=later.id, component="SOR", value={"points": 13, "max": 20}),
        now=NOW + dt.timedelta(days=3),
    )
    record_entry(
        world.session, world.signed("attendance", student=classmate.id, value="sick"), now=NOW
    )
    world.session.add(
        Holiday(
            school_year_id=world.year.id,
            name="Тәуелсіздік күні",
            starts_on=dt.date(2026, 12, 16),
            ends_on=dt.date(2026, 12, 16),
        )
    )
    world.session.flush()
    return classmate


def chart_points(html: str) -> list[str]:
    """The percents drawn, a repeat of the week before left out (the pages draw up to today's
    week: the weeks after 23 Nov keep its 72.5 %)."""
    points = re.findall(r'class="point" data-percent="([\d.]+)"', html)
    return [p for i, p in enumerate(points) if i == 0 or points[i - 1] != p]


@pytest.mark.parametrize(
    ("language", "title", "empty"),
    [
        ("kk", "Математика: кезең пайызы апта бойынша", "Бұл кезеңде әлі баға жоқ"),
        ("ru", "Математика: процент за период по неделям", "В этом периоде ещё нет отметок"),
    ],
)
def test_the_portal_shows_the_childs_percent_by_week(world, seeded, app, language, title, empty):
    parent = parent_of(world.session, world.school, world.student)
    parent.language = language
    world.session.flush()
    browser = app.test_client()
    sign_in(browser, parent, language)
    html = browser.get(f"/portal/students/{world.student.id}").get_data(as_text=True)
    assert 'data-chart="progress"' in html
    assert chart_points(html) == ["80.0", "72.5"]
    assert f">{title}</title>" in html
    assert "72,5 %" in html  # the last value, written the local way
    assert "Иванова" not in html
    assert accessibility_problems(html) == []
    # A child with no marks: the words, not an empty frame.
    other = parent_of(world.session, world.school, seeded)
    other.username = f"other-{language}"
    other.language = language
    world.session.flush()
    browser = app.test_client()
    sign_in(browser, other, language)
    html = browser.get(f"/portal/students/{seeded.id}").get_data(as_text=True)
    assert empty in html and 'data-chart="progress"' not in html and "<svg" not in html


def test_a_parent_cannot_see_another_childs_chart(world, seeded, app):
    parent = parent_of(world.session, world.school, world.student)
    browser = app.test_client()
    sign_in(browser, parent)
    answer = browser.get(f"/portal/students/{seeded.id}")
    assert answer.status_code == 403 and "<svg" not in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    ("language", "title"),
    [
        ("kk", "7Ә сыныбының күндер бойынша қатысуы, 2-тоқсан"),
        ("ru", "Посещаемость класса 7Ә по дням, 2-я четверть"),
    ],
)
def test_the_class_page_shows_the_attendance_calendar_and_a_pupils_chart(
    world, seeded, app, language, title
):
    world.class_group.class_teacher_id = world.teacher.id
    world.teacher.language = language
    world.session.flush()
    client = signed_in_client(app, world.teacher)
    base = f"/teacher/class/{world.class_group.id}?term={world.q2.id}"
    html = client.get(base).get_data(as_text=True)
    assert f">{title}</title>" in html
    days = dict(re.findall(r'data-date="([\d-]+)"(?: data-percent="(\d+)")?', html))
    # 16 Nov: two pupils, one lesson each, one sick: 50 %; 23 Nov: everybody came.
    assert days["2026-11-16"] == "50" and days["2026-11-23"] == "100"
    assert days["2026-12-16"] == ""  # the holiday, hatched
    assert 'class="day holiday"' in html
    # The page draws the calendar from the cells its summary read: the same days as reading
    # the term's attendance on its own.
    from journal.charts.series import class_attendance
    from journal.grid.summary import class_summary

    today = dt.date(2026, 12, 20)
    read_alone = class_attendance(world.session, world.class_group, world.q2, today)
    summary = class_summary(world.session, world.class_group, world.q2)
    assert summary.cells and read_alone == class_attendance(
        world.session, world.class_group, world.q2, today, summary.cells
    )
    assert "<svg" in html and 'data-chart="progress"' not in html  # no pupil chosen yet
    assert accessibility_problems(html) == []
    page = client.get(f"{base}&pupil={world.student.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and chart_points(html) == ["80.0", "72.5"]
    assert f'<option value="{world.student.id}" selected>' in html
    empty = client.get(f"{base}&pupil={seeded.id}").get_data(as_text=True)
    assert 'data-chart="progress-empty"' in empty


def test_the_class_page_charts_no_pupil_of_another_class(world, seeded, app):
    from journal.models import ClassGroup, Enrollment

    world.class_group.class_teacher_id = world.teacher.id
    other_class = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="7Б", grade_level=7
    )
    world.session.add(other_class)
    world.session.flush()
    stranger = world.add_student(enrolled=False, last_name="Бөтен")
    world.session.add(
        Enrollment(
            student_id=stranger.id, class_group_id=other_class.id, starts_on=world.q1.starts_on
        )
    )
    world.session.flush()
    client = signed_in_client(app, world.teacher)
    base = f"/teacher/class/{world.class_group.id}?term={world.q2.id}"
    assert client.get(f"{base}&pupil={stranger.id}").status_code == 404
    # A teacher who is not the class teacher sees neither chart.
    outsider = signed_in_client(app, add_user(world.session, world.school, "teacher"))
    assert outsider.get(f"{base}&pupil={world.student.id}").status_code == 403


def test_a_class_without_lessons_held_says_so(world, app):
    world.class_group.class_teacher_id = world.teacher.id
    world.teacher.language = "en"
    world.session.flush()
    client = signed_in_client(app, world.teacher)
    term = world.q1  # no lessons in the first quarter
    html = client.get(f"/teacher/class/{world.class_group.id}?term={term.id}").get_data(
        as_text=True
    )
    assert "No lessons held in this term yet" in html and "<svg" not in html
