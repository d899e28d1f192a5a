"""`flask --app wsgi user create|invite|reset-2fa|lock|reset-password`."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from auth import services
from auth.models import AccessLogEntry, Invitation, User

from .conftest import PASSWORD


@pytest.fixture
def cli(app, session):  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(args=["user", *args], catch_exceptions=False)

    return invoke


def test_create_prints_a_one_time_link_and_no_password(cli, world, session):
    result = cli(
        "create", "Saule.Admin", "--full-name", "Жұмабаева Сәуле", "--role", "school_admin",
        "--school", world.school.domain,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User).where(User.username == "saule.admin"))
    assert [g.role for g in user.roles] == ["school_admin"] and user.school_id == world.school.id
    token = re.search(r"/reset/([A-Za-z0-9_-]{40,})", result.output).group(1)
    assert services.find_password_reset(session, token, services.utcnow()).user_id == user.id
    assert user.password_hash is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--full-name", "X", "--role", "teacher"], "a username is 3-100"),
        (["create", "newuser", "--full-name", "X", "--role", "parent"], "is not one of"),
        (
            ["create", "newuser", "--full-name", "X", "--role", "teacher", "--school", "nowhere"],
            "no school",
        ),
    ],
)
def test_create_refuses_bad_input(cli, world, session, args, message):
    result = cli(*args)
    assert result.exit_code != 0 and message in result.output
    assert session.scalar(select(User).where(User.username == "newuser")) is None


def test_invite_prints_a_code_that_works_once(cli, world, session):
    result = cli("invite", "--student-id", str(world.student.id), "--role", "parent")
    assert result.exit_code == 0, result.output
    code = re.search(r"([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})", result.output).group(1)
    user = services.redeem_invitation(
        session, code, address=None, now=services.utcnow(), username="new.parent",
        full_name="Ата-ана", password="a long enough password",
    )  # fmt: skip
    assert [(g.role, g.student_id) for g in user.roles] == [("parent", world.student.id)]
    assert session.scalar(select(Invitation.used_by_id)) == user.id


def test_invite_for_an_unknown_student_fails(cli, world):
    result = cli("invite", "--student-id", "999999")
    assert result.exit_code == 1 and "no such student" in result.output


def test_reset_2fa_and_lock(cli, people, session, clock):
    teacher = people["teacher"]
    teacher.totp_secret = services.new_totp_secret()
    teacher.totp_confirmed_at = clock.now
    version = teacher.auth_version
    assert cli("reset-2fa", teacher.username).exit_code == 0
    assert teacher.totp_secret is None and teacher.auth_version == version + 1

    assert cli("lock", teacher.username).exit_code == 0
    with pytest.raises(services.AuthError) as refused:
        services.authenticate(session, teacher.username, PASSWORD, address=None, now=clock.now)
    assert refused.value.code == "disabled"
    assert cli("lock", teacher.username, "--unlock").exit_code == 0
    assert services.authenticate(session, teacher.username, PASSWORD, address=None, now=clock.now)
    actions = session.scalars(
        select(AccessLogEntry.action).where(AccessLogEntry.target_id == str(teacher.id))
    ).all()
    assert actions == ["user.reset_second_factor", "user.lock", "user.unlock"]


def test_unknown_user_is_a_usage_error(cli, world):
    result = cli("lock", "nobody-at-all")
    assert result.exit_code == 2 and "no user" in result.output


def test_reset_password_prints_a_link(cli, people, session):
    result = cli("reset-password", people["parent"].username)
    assert result.exit_code == 0 and "/reset/" in result.output


def test_demo_logins_print_a_totp_key_for_staff(app, session):
    runner = app.test_cli_runner()
    output = runner.invoke(args=["demo", "logins"], catch_exceptions=False).output
    teacher_line = next(line for line in output.splitlines() if line.split()[:1] == ["teacher"])
    parent_line = next(line for line in output.splitlines() if line.split()[:1] == ["parent"])
    secret = services.demo_totp_secret("teacher")
    assert secret in teacher_line
    assert re.search(r"code now (\d{6})", teacher_line)
    assert "TOTP" not in parent_line
