"""Numbers no row can carry, in URLs and in form and query fields, answer 404 or 400, never 500.

The crawl takes every route with an integer argument from the app's URL map and, in every role
of the authorization matrix, sends each argument as a 25-digit number, numbers just past the
INTEGER and BIGINT ranges, a negative number and a word. The integer fields of forms and
queries get the same values from the roles that reach them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import Rule
from werkzeug.routing.converters import IntegerConverter

from auth.models import AccessLogEntry, Invitation
from journal.db import db
from journal.ids import ROW_ID_MAX, parse_id
from journal.models import (
    ClassGroup,
    Enrollment,
    LateCorrectionApproval,
    TeachingAssignment,
    TimetableSlot,
)

from .conftest import csrf_token, sign_in
from .test_authorization_matrix import (  # noqa: F401 - the matrix fixture is used here
    PRINCIPALS,
    build_url,
    matrix,
    routed_endpoints,
)

HUGE = "1" + "0" * 24
BAD_IDS = {
    "25 digits": HUGE,
    "past INTEGER": str(ROW_ID_MAX + 1),
    "past BIGINT": str(2**63),
    "negative": "-1",
    "a word": "abc",
}
# Also refused in fields (a URL path cannot carry them the same way).
BAD_FIELDS = {**BAD_IDS, "superscript two": "²", "spaced": " 7", "underscored": "1_0"}
SENTINEL = 3_141_592_653  # stands for the argument under test while the URL is built


def integer_arguments(rule: Rule) -> list[str]:
    return [
        name
        for name, converter in rule._converters.items()  # noqa: SLF001
        if isinstance(converter, IntegerConverter)
    ]


def integer_routes(app: Flask) -> list[tuple[Rule, str, str]]:
    return [
        (rule, method, name)
        for rule, method in routed_endpoints(app)
        for name in integer_arguments(rule)
    ]


def test_every_integer_argument_is_bounded(app):
    routes = integer_routes(app)
    assert len(routes) >= 30  # the map really was read
    unbounded = [
        rule.rule
        for rule, _method, name in routes
        if rule._converters[name].max != ROW_ID_MAX  # type: ignore[attr-defined]  # noqa: SLF001
    ]
    assert not unbounded


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_out_of_range_ids_in_urls_answer_404_in_every_role(app, matrix, principal):  # noqa: F811
    client = app.test_client()
    user = None if principal == "anonymous" else matrix.users[principal]
    problems = []
    for rule, method, name in integer_routes(app):
        url = build_url(rule, {**matrix.values, name: SENTINEL})
        assert url.count(str(SENTINEL)) == 1, url
        for label, bad in BAD_IDS.items():
            if user is not None:
                sign_in(client, user, second_factor=principal != "staff_without_second_factor")
            path = url.replace(str(SENTINEL), bad)
            headers = {"X-CSRFToken": csrf_token(client, app)} if method != "GET" else {}
            try:
                if path.startswith("/api/") and method != "GET":
                    response = client.open(path, method=method, json={}, headers=headers)
                else:
                    response = client.open(path, method=method, data={}, headers=headers)
            except Exception as exc:  # noqa: BLE001 - reported with the route that raised
                db.session.rollback()
                problems.append(f"{method} {path} ({name}: {label}): raised {exc!r}")
                continue
            if response.status_code != 404:
                problems.append(f"{method} {path} ({name}: {label}): {response.status_code}")
    assert not problems, f"{principal}:\n" + "\n".join(problems)


# -- form and query fields -------------------------------------------------------------------


def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


@dataclass(frozen=True)
class FieldRequest:
    role: str
    method: str
    path: str
    fields: dict[str, object]
    name: str  # the field under test
    unchanged: type | None = None  # a table that must not grow or change
    big: bool = False  # a BIGINT id: numbers past INTEGER are fine there
    answer: str = "400"  # "400", or "form": the page again with the field's error

    def bad_values(self) -> dict[str, str]:
        return {k: v for k, v in BAD_FIELDS.items() if not (self.big and k == "past INTEGER")}


def field_requests(values: dict[str, object]) -> list[FieldRequest]:
    admin, teacher = "school_admin", "teacher"
    journal, lesson, student = values["journal_id"], values["lesson_id"], values["student_id"]
    late = {"journal": journal, "what": "att", "reason": "r"}
    setup_class = f"/setup/classes/{values['class_id']}"
    setup_year = f"/setup/years/{values['year_id']}"
    return [
        FieldRequest(admin, "GET", "/admin/access-log", {}, "before", big=True),
        FieldRequest(
            admin, "POST", "/admin/invitations", {"role": "parent"}, "student_id", Invitation
        ),
        FieldRequest(
            admin,
            "POST",
            "/admin/late-corrections",
            {**late, "student": student},
            "lesson",
            LateCorrectionApproval,
        ),
        FieldRequest(
            admin,
            "POST",
            "/admin/late-corrections",
            {**late, "lesson": lesson},
            "student",
            LateCorrectionApproval,
        ),
        FieldRequest(admin, "POST", f"{setup_class}/class-teacher", {}, "class_teacher"),
        FieldRequest(admin, "POST", f"{setup_class}/timetable", {}, "slot-0-1", TimetableSlot),
        FieldRequest(
            admin,
            "POST",
            f"{setup_year}/assignments",
            {"class_group": values["class_id"], "subject": values["subject_id"]},
            "teacher",
            TeachingAssignment,
            answer="form",
        ),
        FieldRequest(
            admin,
            "POST",
            f"{setup_year}/admit",
            {"iin": "000000000000", "on_date": "2026-11-20"},
            "class_group",
            Enrollment,
            answer="form",
        ),
        FieldRequest(teacher, "GET", "/api/sync/pull", {"journal": "x"}, "cursor"),
        FieldRequest(teacher, "GET", "/api/sync/pull", {"journal": "x"}, "limit"),
        FieldRequest(teacher, "GET", "/api/sync/pull", {"journal": "x"}, "subject"),
    ]


def test_out_of_range_numbers_in_fields_are_refused_and_write_nothing(app, matrix, session):  # noqa: F811
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    problems = []
    for request in field_requests(matrix.values):
        for label, bad in request.bad_values().items():
            sign_in(client, matrix.users[request.role])
            watched = [m for m in (AccessLogEntry, request.unchanged) if m is not None]
            before = {m: _count(session, m) for m in watched}
            data = {**request.fields, request.name: bad}
            seen = (
                f"{request.role} {request.method} {request.path} {request.name}={bad!r} ({label})"
            )
            try:
                if request.method == "GET":
                    response = client.get(request.path, query_string=data)
                else:
                    token = csrf_token(client, app)
                    response = client.post(request.path, data={"csrf_token": token, **data})
            except Exception as exc:  # noqa: BLE001
                db.session.rollback()
                problems.append(f"{seen}: raised {exc!r}")
                continue
            if request.answer == "400" and response.status_code != 400:
                problems.append(f"{seen}: {response.status_code}")
            if request.answer == "form" and (
                response.status_code != 200
                or not re.search("Not a valid choice|Invalid Choice", response.text)
            ):
                problems.append(f"{seen}: {response.status_code} without the field's error")
            for model in watched:
                if model is not AccessLogEntry and _count(session, model) != before[model]:
                    problems.append(f"{seen}: wrote {model.__name__}")
    assert not problems, "\n".join(problems)


def test_the_class_teacher_stays_when_the_form_sends_a_bad_number(app, matrix, session):  # noqa: F811
    client = app.test_client()
    sign_in(client, matrix.users["school_admin"])
    group = session.get(ClassGroup, matrix.values["class_id"])
    teacher_before = group.class_teacher_id
    assert teacher_before is not None
    response = client.post(
        f"/setup/classes/{group.id}/class-teacher",
        data={"csrf_token": csrf_token(client, app), "class_teacher": "abc"},
    )
    assert response.status_code == 400
    session.expire_all()
    assert session.get(ClassGroup, group.id).class_teacher_id == teacher_before


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("7", 7), (str(ROW_ID_MAX), ROW_ID_MAX)],
)
def test_parse_id_reads_plain_numbers(text, expected):
    assert parse_id(text) == expected


@pytest.mark.parametrize("text", [*BAD_FIELDS.values(), "", "+7", "7 ", "٣", None, 7])
def test_parse_id_refuses_everything_else(text):
    with pytest.raises(ValueError):
        parse_id(text)


def test_views_parse_numbers_through_the_shared_helper():
    """``type=int`` and ``int(request...)`` accept numbers no row can carry: views use
    ``journal.ids`` instead (commands keep click's ``type=int``)."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("journal", "auth", "archive", "exports"):
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "cli.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"type=int\b|int\(request\.", line):
                    offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_url_converter_bounds_ids_in_its_pattern():
    """The bound lives in the converter's regular expression (werkzeug checks methods before
    converters, so a bound checked later would answer 405 on paths with a GET and a POST view)."""
    import random
    import re

    from journal.ids import ROW_ID_MAX, digits_at_most

    for limit in (0, 9, 10, 305, 1000, ROW_ID_MAX, 2**63 - 1):
        pattern = re.compile(digits_at_most(limit))
        numbers = [
            *range(1200),
            limit,
            limit + 1,
            *(random.randrange(3 * limit + 1) for _ in range(2000)),
        ]
        for n in numbers:
            assert bool(pattern.fullmatch(str(n))) == (n <= limit), (limit, n)
        assert not pattern.fullmatch("01") and not pattern.fullmatch("-1")
