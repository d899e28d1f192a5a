"""``flask --app wsgi user ...``: accounts from the server's command line.

Nothing here prints a password: new accounts and resets get a one-time link. Each command is an
administrative action and lands in the access log as a server command.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from journal.db import db, utcnow
from journal.models import School

from . import services
from .models import STAFF_ROLES, User
from .services import AuthError

user_cli = AppGroup("user", help="Accounts: create, invite, reset-2fa, lock, reset-password.")


def _base_url() -> str:
    return str(current_app.config.get("PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/")


def _user_or_exit(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise click.UsageError(f"no user {username!r}")
    return user


@user_cli.command("create")
@click.argument("username")
@click.option("--full-name", required=True, help="The person's full name.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(sorted(STAFF_ROLES)),
    help="A staff role (repeat for several). Parents and students join by invitation.",
)
@click.option("--school", "domain", help="The school's domain (omit for an operator).")
def create(username: str, full_name: str, roles: tuple[str, ...], domain: str | None) -> None:
    """Create a staff account and print a one-time link to set its password."""
    session = db.session
    school_id = None
    if domain:
        school = session.scalar(select(School).where(School.domain == domain))
        if school is None:
            raise click.UsageError(f"no school {domain!r}")
        school_id = school.id
    try:
        user, token = services.create_account(
            session,
            school_id=school_id,
            username=username,
            full_name=full_name,
            roles=list(roles),
            actor=None,
            ip=None,
            now=utcnow(),
        )
    except AuthError as error:
        raise click.ClickException(error.message) from None
    session.commit()
    click.echo(f"Created {user.username} ({', '.join(roles)}).")
    click.echo(f"One-time link to set the password (48 hours): {_base_url()}/reset/{token}")


@user_cli.command("invite")
@click.option("--student-id", type=int, required=True, help="The child's student id.")
@click.option("--role", type=click.Choice(["parent", "student"]), default="parent")
def invite(student_id: int, role: str) -> None:
    """Print a one-time invitation code for a parent or the student."""
    session = db.session
    try:
        invitation, code = services.create_invitation(
            session, student_id=student_id, role=role, actor=None, ip=None, now=utcnow()
        )
    except AuthError as error:
        raise click.ClickException(error.message) from None
    session.commit()
    click.echo(f"Invitation for {role} of student {student_id}: {code}")
    click.echo(f"Redeem at {_base_url()}/join before {invitation.expires_at:%Y-%m-%d}.")


@user_cli.command("reset-2fa")
@click.argument("username")
def reset_2fa(username: str) -> None:
    """Forget the user's TOTP, recovery codes and passkeys; sign them out everywhere."""
    session = db.session
    user = _user_or_exit(username)
    services.reset_second_factor(session, user, actor=None, ip=None, now=utcnow())
    session.commit()
    click.echo(f"{user.username} enrols a new second factor at the next sign-in.")


@user_cli.command("lock")
@click.argument("username")
@click.option("--unlock", is_flag=True, help="Lift the lock (and any automatic lockout).")
def lock(username: str, unlock: bool) -> None:
    """Lock an account (signs it out everywhere) or, with --unlock, let it sign in again."""
    session = db.session
    user = _user_or_exit(username)
    if unlock:
        services.unlock_account(session, user, actor=None, ip=None, now=utcnow())
        message = f"{user.username} may sign in again."
    else:
        services.lock_account(session, user, actor=None, ip=None, now=utcnow())
        message = f"{user.username} is locked and signed out everywhere."
    session.commit()
    click.echo(message)


@user_cli.command("reset-password")
@click.argument("username")
def reset_password(username: str) -> None:
    """Print a one-time link for the user to set a new password."""
    session = db.session
    user = _user_or_exit(username)
    token = services.issue_password_reset(session, user, actor=None, ip=None, now=utcnow())
    session.commit()
    click.echo(f"One-time link for {user.username} (48 hours): {_base_url()}/reset/{token}")
