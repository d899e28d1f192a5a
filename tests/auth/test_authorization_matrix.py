"""Every role × every endpoint, from the app's own URL map.

Each view carries an ``access_rule`` (``auth.access``): "public", "signed_in", "login" or
("roles", {...}). An endpoint without one fails here, so a new page cannot ship unguarded. For
each principal the expected outcome follows from the rule alone:

- anonymous: only "public" opens; the rest sends to the sign-in page (401 under /api/);
- staff without a second factor: "public" and "signed_in" (the enrolment pages) open; the rest
  sends to the second factor (401 under /api/);
- each role, fully signed in: "login" opens, ("roles", S) opens for roles in S and is 403
  otherwise.

"Opens" means the access layer let the request through: the view may still refuse the data
(403 for another class or child), find nothing (404) or reject an empty form (400). The access
decorators note their refusals (``auth.access.REFUSED_BY``, shown to tests as the header
``X-Access-Refused``), so the test tells them from a view's own answers whatever error page a
blueprint renders. URL values come
from the world fixture by argument name.

The same run checks escaping: one student is named ``<script>alert(1)</script>``; no HTML
response may contain that raw, and every page that lists the world's class (it shows the other
student) must show the name escaped. Views marked ``@personal_data`` must leave an access-log row
naming the user for each view they serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.routing import Rule
from werkzeug.routing.converters import IntegerConverter

from auth import resets
from auth.access import public
from auth.models import ROLES, AccessLogEntry, User
from journal.db import db, utcnow
from journal.models import Enrollment, TeachingAssignment
from journal.recording.recorder import record_entry

from ..conftest import make_app
from ..factories import add_user
from .conftest import add_grant, csrf_token, sign_in

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PRINCIPALS = ("anonymous", "staff_without_second_factor", *ROLES)
KNOWN_RULES = {"public", "signed_in", "login"}


def access_rule(app: Flask, endpoint: str) -> object:
    return getattr(app.view_functions[endpoint], "access_rule", None)


def routed_endpoints(app: Flask) -> list[tuple[Rule, str]]:
    """(rule, method) for every endpoint except static files."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule, method))
    return sorted(found, key=lambda item: (item[0].rule, item[1]))


def rule_is_known(rule: object) -> bool:
    if rule in KNOWN_RULES:
        return True
    return (
        isinstance(rule, tuple)
        and len(rule) == 2
        and rule[0] == "roles"
        and set(rule[1]) <= set(ROLES)
        and bool(rule[1])
    )


def access_rule_problems(app: Flask) -> list[str]:
    problems = []
    for rule, _method in routed_endpoints(app):
        declared = access_rule(app, rule.endpoint)
        if declared is None:
            problems.append(f"{rule.rule} ({rule.endpoint}) has no access_rule")
        elif not rule_is_known(declared):
            problems.append(f"{rule.rule} ({rule.endpoint}) has an unknown rule {declared!r}")
    return problems


def test_every_endpoint_declares_a_known_access_rule(app):
    problems = access_rule_problems(app)
    assert not problems, "\n".join(problems)
    assert len(routed_endpoints(app)) >= 20  # the map really was read


def test_a_new_view_without_a_rule_is_caught(app, tmp_path):
    extra = make_app(app.config["DATABASE_URL"], tmp_path / "keys")
    extra.add_url_rule("/unguarded", "unguarded", lambda: "hello")
    extra.add_url_rule("/odd", "odd", public(lambda: "x"))
    extra.view_functions["odd"].access_rule = ("roles", frozenset({"janitor"}))
    assert access_rule_problems(extra) == [
        "/odd (odd) has an unknown rule ('roles', frozenset({'janitor'}))",
        "/unguarded (unguarded) has no access_rule",
    ]
    extra.extensions["journal_db"].engine.dispose()


def expected(declared: object, principal: str) -> str:
    if declared == "public":
        return "open"
    if principal == "anonymous":
        return "sign_in"
    if declared == "signed_in":
        return "open"
    if principal == "staff_without_second_factor":
        return "second_factor"
    if declared == "login":
        return "open"
    assert isinstance(declared, tuple)
    return "open" if principal in declared[1] else "forbidden"


def outcome(response) -> str:  # type: ignore[no-untyped-def]
    """What the access layer did: "open" (let the view answer) or the refusal it made."""
    refused = response.headers.get("X-Access-Refused")
    status = response.status_code
    location = urlsplit(response.headers.get("Location", "")).path
    if refused == "sign_in" and (status == 401 or location == "/login"):
        return "sign_in"
    if refused == "second_factor" and (status == 401 or location == "/second-factor"):
        return "second_factor"
    if refused == "role" and status == 403:
        return "forbidden"
    if refused is not None:
        return f"refused {refused} with {status}"
    if status >= 500:
        return "error"
    return "open"


@dataclass
class Matrix:
    users: dict[str, User]
    values: dict[str, object]
    other_student_name: str


@pytest.fixture
def matrix(world, people, session) -> Matrix:  # type: ignore[no-untyped-def]
    world.student.last_name = XSS
    # A second child for the parent, so that pages listing "my children" list.
    second_child = world.add_student(last_name="Жұмабекова", first_name="Әсем")
    add_grant(people["parent"], "parent", world.school.id, second_child.id)
    recorded = record_entry(session, world.signed("grade"))
    target = add_user(session, world.school, "teacher", username=f"target-{world.school.id}")
    assignment = session.scalar(
        select(TeachingAssignment.id).where(TeachingAssignment.user_id == world.teacher.id)
    )
    enrollment = session.scalar(
        select(Enrollment.id).where(Enrollment.student_id == world.student.id)
    )
    reset = resets.request_reset(
        session, target, "second_factor", "matrix", actor=people["school_admin"], ip=None,
        now=utcnow(),
    )  # fmt: skip
    values: dict[str, object] = {
        "reset_id": reset.id,
        "student_id": world.student.id,
        "class_id": world.class_group.id,
        "class_group_id": world.class_group.id,
        "subject_id": world.subject.id,
        "lesson_id": world.lesson.id,
        "term_id": world.q2.id,
        "quarter": world.q2.number,
        "year_id": world.year.id,
        "school_year_id": world.year.id,
        "school_id": world.school.id,
        "journal_id": world.log.id,
        "log_id": world.log.id,
        "user_id": target.id,
        "kid": world.device.kid,
        "entry_id": recorded.entry_id,
        "assignment_id": assignment,
        "enrollment_id": enrollment,
        "passkey_id": 999_999,
        "holiday_id": 999_999,
        "token": "no-such-token",
    }
    users = dict(people.by_role)
    users["staff_without_second_factor"] = world.teacher
    other = session.get_one(type(world.student), people.other_student_id)
    session.commit()  # a view's rollback after an error must not take the world with it
    return Matrix(users, values, other.last_name)


def build_url(rule: Rule, values: dict[str, object]) -> str:
    arguments = {}
    for name in rule.arguments:
        if name in values:
            arguments[name] = values[name]
        else:
            converter = rule._converters[name]  # noqa: SLF001
            arguments[name] = 999_999 if isinstance(converter, IntegerConverter) else "unknown"
    return rule.build(arguments, append_unknown=False)[1]  # type: ignore[index]


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_authorization_matrix(app, matrix, principal):
    client = app.test_client()
    user = None if principal == "anonymous" else matrix.users[principal]
    problems = []
    html_pages = 0
    for rule, method in routed_endpoints(app):
        declared = access_rule(app, rule.endpoint)
        if declared is None:
            continue  # reported by test_every_endpoint_declares_a_known_access_rule
        want = expected(declared, principal)
        url = build_url(rule, matrix.values)
        if user is not None:
            sign_in(client, user, second_factor=principal != "staff_without_second_factor")
        else:
            with client.session_transaction() as state:
                state.clear()
        headers = {"X-CSRFToken": csrf_token(client, app)} if method != "GET" else {}
        try:
            if method == "GET":
                response = client.get(url)
            elif url.startswith("/api/"):
                response = client.open(url, method=method, json={}, headers=headers)
            else:
                response = client.open(url, method=method, data={}, headers=headers)
        except Exception as exc:  # noqa: BLE001 - reported with the endpoint that raised
            db.session.rollback()
            problems.append(f"{method} {url} ({rule.endpoint}): raised {exc!r}")
            continue
        got = outcome(response)
        if got != want:
            problems.append(
                f"{method} {url} ({rule.endpoint}, rule {declared!r}): expected {want}, "
                f"got {got} ({response.status_code})"
            )
        if response.mimetype == "text/html":
            html_pages += 1
            body = response.get_data(as_text=True)
            if XSS in body:
                problems.append(f"{method} {url}: the student's name is not escaped")
            if matrix.other_student_name in body and XSS_ESCAPED not in body:
                problems.append(f"{method} {url}: lists the class but not the escaped name")
    assert not problems, f"{principal}:\n" + "\n".join(problems)
    assert html_pages > 0


def personal_data_endpoints(app: Flask) -> list[Rule]:
    return [
        rule
        for rule, method in routed_endpoints(app)
        if method == "GET" and getattr(app.view_functions[rule.endpoint], "personal_data", None)
    ]


def test_personal_data_views_escape_names_and_leave_an_access_log_row(app, matrix, session):
    """Each personal-data view served leaves a row naming its viewer; names render escaped.

    A page about one student (``@personal_data("student", "student_id")``) must show the name
    to everyone it opens for; a list page must show it to at least one role (a teacher's list
    of their own children is empty)."""
    rules = personal_data_endpoints(app)
    assert {"auth.child_record", "auth.children", "auth.admin_invitations"} <= {
        rule.endpoint for rule in rules
    }
    client = app.test_client()
    problems = []
    served: dict[str, int] = {}
    named: set[str] = set()
    for rule in rules:
        declared = access_rule(app, rule.endpoint)
        about_one_student = app.view_functions[rule.endpoint].personal_data[1] is not None
        url = build_url(rule, matrix.values)
        for role in ROLES:
            if expected(declared, role) != "open":
                continue
            user = matrix.users[role]
            sign_in(client, user)
            before = session.scalar(select(AccessLogEntry.id).order_by(AccessLogEntry.id.desc()))
            response = client.get(url)
            rows = list(
                session.scalars(select(AccessLogEntry).where(AccessLogEntry.id > (before or 0)))
            )
            if 200 <= response.status_code < 300:
                served[rule.endpoint] = served.get(rule.endpoint, 0) + 1
                if not any(
                    row.actor_id == user.id and row.action == f"view:{rule.endpoint}"
                    for row in rows
                ):
                    problems.append(f"{role} GET {url}: no access-log row for the view")
                if response.mimetype == "text/html":
                    body = response.get_data(as_text=True)
                    if XSS in body:
                        problems.append(f"{role} GET {url}: the student's name is not escaped")
                    if XSS_ESCAPED in body:
                        named.add(rule.endpoint)
                    elif about_one_student:
                        problems.append(f"{role} GET {url}: the student's name is missing")
            elif response.status_code == 403 and not any(row.actor_id == user.id for row in rows):
                problems.append(f"{role} GET {url}: refused without an access-log row")
    assert not problems, "\n".join(problems)
    missing = [rule.endpoint for rule in rules if rule.endpoint not in served]
    assert not missing, f"personal-data views no role could open with the world's values: {missing}"
    html_lists = {
        rule.endpoint
        for rule in rules
        if not app.view_functions[rule.endpoint].personal_data[1]
        and not rule.rule.startswith("/api/")
    }
    assert html_lists <= named, f"list pages that showed the name to nobody: {html_lists - named}"


# Who reads a child's live grades and attendance (DESIGN §2): the family, the child's teachers,
# the class teacher and the school's admin. Inspectors verify and registrars work from the
# archive: neither reads the live journal, nor does the operator.
LIVE_READERS = {"parent", "student", "teacher", "class_teacher", "school_admin"}


def test_live_grades_only_for_the_family_the_teachers_and_the_admin(app, matrix):
    """Personal-data pages show the world's child to the roles in LIVE_READERS only, and each
    page about the child opens for every one of them."""
    client = app.test_client()
    problems = []
    for rule in personal_data_endpoints(app):
        url = build_url(rule, matrix.values)
        about_the_child = app.view_functions[rule.endpoint].personal_data[1] == "student_id"
        for role in ROLES:
            sign_in(client, matrix.users[role])
            response = client.get(url)
            status = response.status_code
            # A list of "my children" opens for everyone, empty for staff; the world's child's
            # name ("alert(1)" in each of its escaped forms) must not be in it.
            shown = about_the_child or "alert(1)" in response.get_data(as_text=True)
            if role not in LIVE_READERS and status < 300 and shown:
                problems.append(f"{role} GET {url}: {status}, live data for a role without it")
            if role in LIVE_READERS and about_the_child and status != 200:
                problems.append(f"{role} GET {url}: {status}, the child's reader refused")
    assert not problems, "\n".join(problems)


def test_matrix_values_cover_every_url_argument(app, matrix):
    """A new URL argument needs a world value here, or the matrix tests it only on a 404."""
    unknown = sorted(
        {
            f"{name} ({rule.endpoint})"
            for rule, _method in routed_endpoints(app)
            for name in rule.arguments
            if name not in matrix.values
        }
    )
    assert not unknown, "add world values for: " + ", ".join(unknown)


def test_every_form_and_api_write_needs_the_csrf_token(app, matrix, session):
    """CSRF everywhere: a write without the token is refused before any view runs."""
    client = app.test_client()
    writes = [(rule, method) for rule, method in routed_endpoints(app) if method != "GET"]
    assert len(writes) >= 10
    accepted = []
    for rule, method in writes:
        sign_in(client, matrix.users["school_admin"])
        url = build_url(rule, matrix.values)
        if url.startswith("/api/"):
            response = client.open(url, method=method, json={})
        else:
            response = client.open(url, method=method, data={})
        if response.status_code != 400 or "X-Access-Refused" in response.headers:
            accepted.append(f"{method} {url}: {response.status_code}")
    assert not accepted, "\n".join(accepted)
