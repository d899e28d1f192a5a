"""`flask --app wsgi user create|invite|reset|resets|approve-reset|lock`, and the demo
commands' care for what is secret."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from auth import factors, invitations, resets, services, signin
from auth.models import AccessLogEntry, AccountReset, DeviceKey, Invitation, User
from journal.db import utcnow

from .conftest import PASSWORD


@pytest.fixture
def cli(app, session):  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(args=["user", *args], catch_exceptions=False)

    return invoke


LETTER_CODE = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}")


def test_create_prints_a_welcome_letter_and_no_password(cli, world, session):
    result = cli(
        "create", "Saule.Admin", "--full-name", "Жұмабаева Сәуле", "--role", "school_admin",
        "--school", world.school.domain,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User).where(User.username == "saule.admin"))
    assert [g.role for g in user.roles] == ["school_admin"] and user.school_id == world.school.id
    code = LETTER_CODE.search(result.output).group(0)
    claim = resets.claim_code(session, code, address=None, now=utcnow())
    assert resets.claimed_letter(session, claim, utcnow()).user_id == user.id
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
    user = invitations.redeem_invitation(
        session, code, address=None, now=utcnow(), username="new.parent",
        full_name="Ата-ана", password="a long enough password",
    )  # fmt: skip
    assert [(g.role, g.student_id) for g in user.roles] == [("parent", world.student.id)]
    assert session.scalar(select(Invitation.used_by_id)) == user.id


def test_invite_for_an_unknown_student_fails(cli, world):
    result = cli("invite", "--student-id", "999999")
    assert result.exit_code == 1 and "no such student" in result.output


def test_the_operators_reset_applies_at_once(cli, world, people, session, clock):
    teacher = people["teacher"]
    teacher.totp_secret = factors.new_totp_secret()
    teacher.totp_confirmed_at = clock.now
    result = cli("reset", teacher.username, "--kind", "second_factor", "--reason", "lost phone")
    assert result.exit_code == 0, result.output
    assert teacher.totp_secret is None and teacher.password_hash is not None
    assert session.get_one(DeviceKey, world.device.kid).revoked_at is not None
    assert not LETTER_CODE.search(result.output)
    reset = session.scalar(select(AccountReset).where(AccountReset.user_id == teacher.id))
    assert reset.requested_by_id is None and reset.approved_at is not None

    parent = people["parent"]
    printed = cli("reset", parent.username, "--kind", "password", "--reason", "forgot")
    assert printed.exit_code == 0 and LETTER_CODE.search(printed.output)
    assert parent.password_hash is None


def test_the_operator_is_the_second_person_in_a_school_with_one_admin(cli, people, session, clock):
    parent = people["parent"]
    reset = resets.request_reset(
        session, parent, "password", "forgot", actor=people["school_admin"], ip=None,
        now=utcnow(),
    )  # fmt: skip
    listed = cli("resets")
    assert str(reset.id) in listed.output and parent.username in listed.output
    assert "forgot" in listed.output
    approved = cli("approve-reset", str(reset.id))
    assert approved.exit_code == 0, approved.output
    assert reset.approved_at is not None and reset.approved_by_id is None
    assert not LETTER_CODE.search(approved.output)  # the administrator who asked prints it
    assert cli("approve-reset", str(reset.id)).exit_code == 1  # once
    assert cli("approve-reset", "999999").exit_code == 2
    assert "No reset waits" in cli("resets").output


def test_a_reset_without_a_reason_is_refused(cli, people, session):
    result = cli("reset", people["parent"].username, "--reason", "  ")
    assert result.exit_code == 1 and "say why" in result.output
    assert session.scalar(select(AccountReset)) is None


def test_lock_and_unlock(cli, people, session, clock):
    teacher = people["teacher"]
    assert cli("lock", teacher.username).exit_code == 0
    with pytest.raises(services.AuthError) as refused:
        signin.authenticate(session, teacher.username, PASSWORD, address=None, now=clock.now)
    assert refused.value.code == "bad_credentials"  # the same answer as a wrong password
    assert cli("lock", teacher.username, "--unlock").exit_code == 0
    assert signin.authenticate(session, teacher.username, PASSWORD, address=None, now=clock.now)
    actions = session.scalars(
        select(AccessLogEntry.action).where(AccessLogEntry.target_id == str(teacher.id))
    ).all()
    assert actions == ["user.lock", "user.unlock"]


def test_unknown_user_is_a_usage_error(cli, world):
    result = cli("lock", "nobody-at-all")
    assert result.exit_code == 2 and "no user" in result.output
