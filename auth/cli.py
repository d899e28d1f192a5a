"""``flask --app wsgi user ...``: accounts from the server's command line.

Nothing here prints a password: new accounts and resets get a one-time letter code. Each
command is an administrative action and lands in the access log as a server command. The
operator is the second person for resets in a school with one administrator
(``user approve-reset``), and may reset an account on their own (``user reset``): they run the
server and its database already.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from journal.db import db, utcnow
from journal.keys import LogKey, load_log_key
from journal.models import School

from . import invitations, resets, services
from .models import STAFF_ROLES, AccountReset, User
from .services import AuthError

user_cli = AppGroup(
    "user",
    help="Accounts: create, invite, reset, resets, approve-reset, lock.",
)


def _base_url() -> str:
    return str(current_app.config.get("PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/")


def _user_or_exit(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise click.UsageError(f"no user {username!r}")
    return user


def _log_key(user: User) -> LogKey | None:
    school = db.session.get(School, user.school_id) if user.school_id is not None else None
    if school is None:
        return None
    try:
        return load_log_key(current_app.config["KEYS_DIR"], school.domain)
    except (LookupError, ValueError):
        return None


def _echo_letter(letter: resets.Letter) -> None:
    click.echo(f"Letter for {letter.user.full_name} ({letter.user.username}), shown only now:")
    click.echo(f"  go to {_base_url()}/reset and type the code {letter.code}")
    click.echo(f"  (or open {_base_url()}/reset/{letter.path_code})")
    click.echo(f"  valid until {letter.expires_at:%Y-%m-%d %H:%M} UTC")


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
    """Create a staff account and print its welcome letter (the code to set a password)."""
    session = db.session
    school_id = None
    if domain:
        school = session.scalar(select(School).where(School.domain == domain))
        if school is None:
            raise click.UsageError(f"no school {domain!r}")
        school_id = school.id
    try:
        user = services.create_account(
            session,
            school_id=school_id,
            username=username,
            full_name=full_name,
            roles=list(roles),
            actor=None,
            ip=None,
            now=utcnow(),
        )
        letter = resets.welcome_letter(session, user, actor=None, ip=None, now=utcnow())
    except AuthError as error:
        raise click.ClickException(error.message) from None
    session.commit()
    click.echo(f"Created {user.username} ({', '.join(roles)}).")
    _echo_letter(letter)


@user_cli.command("invite")
@click.option("--student-id", type=int, required=True, help="The child's student id.")
@click.option("--role", type=click.Choice(["parent", "student"]), default="parent")
def invite(student_id: int, role: str) -> None:
    """Print a one-time invitation code for a parent or the student."""
    session = db.session
    try:
        invitation, code = invitations.create_invitation(
            session, student_id=student_id, role=role, actor=None, ip=None, now=utcnow()
        )
    except AuthError as error:
        raise click.ClickException(error.message) from None
    session.commit()
    click.echo(f"Invitation for {role} of student {student_id}: {code}")
    click.echo(f"Redeem at {_base_url()}/join before {invitation.expires_at:%Y-%m-%d}.")


@user_cli.command("reset")
@click.argument("username")
@click.option(
    "--kind",
    type=click.Choice(resets.RESET_KINDS),
    default="both",
    show_default=True,
    help="What to reset: the password, the second factor, or both.",
)
@click.option("--reason", required=True, help="Why (kept with the reset, shown to the person).")
def reset(username: str, kind: str, reason: str) -> None:
    """Reset an account as the operator: applied at once (sessions end, device keys are
    revoked), and for a password, the letter is printed here."""
    session = db.session
    user = _user_or_exit(username)
    now = utcnow()
    try:
        account_reset = resets.request_reset(
            session, user, kind, reason, actor=None, ip=None, now=now, log_key=_log_key(user)
        )
        letter = (
            resets.print_letter(session, account_reset, actor=None, ip=None, now=now)
            if account_reset.resets_password
            else None
        )
    except AuthError as error:
        raise click.ClickException(error.message) from None
    session.commit()
    click.echo(f"{user.username}: {kind} reset, every session ended, device keys revoked.")
    if letter is not None:
        _echo_letter(letter)
    else:
        click.echo(f"{user.username} enrols a new second factor at the next sign-in.")


@user_cli.command("resets")
@click.option("--school", "domain", help="Only this school's (its domain).")
def list_resets(domain: str | None) -> None:
    """Resets waiting for approval."""
    session = db.session
    query = select(AccountReset).where(
        AccountReset.approved_at.is_(None),
        AccountReset.cancelled_at.is_(None),
        AccountReset.expires_at > utcnow(),
    )
    if domain:
        school = session.scalar(select(School).where(School.domain == domain))
        if school is None:
            raise click.UsageError(f"no school {domain!r}")
        query = query.where(AccountReset.school_id == school.id)
    rows = session.scalars(query.order_by(AccountReset.id)).all()
    if not rows:
        click.echo("No reset waits for approval.")
    for row in rows:
        target = session.get_one(User, row.user_id)
        asker = session.get(User, row.requested_by_id) if row.requested_by_id else None
        click.echo(
            f"{row.id:>5}  {row.requested_at:%Y-%m-%d %H:%M}  {row.kind:<13} "
            f"{target.username} ({target.full_name}), asked by "
            f"{asker.username if asker else 'the operator'}: {row.reason}"
        )


@user_cli.command("approve-reset")
@click.argument("reset_id", type=int)
def approve_reset(reset_id: int) -> None:
    """Approve a reset an administrator asked for (the second person, in a school with one
    administrator). The administrator then prints the letter."""
    session = db.session
    row = session.get(AccountReset, reset_id)
    if row is None:
        raise click.UsageError(f"no reset {reset_id} (see `flask --app wsgi user resets`)")
    target = session.get_one(User, row.user_id)
    try:
        resets.approve_reset(
            session, row, approver=None, ip=None, now=utcnow(), log_key=_log_key(target)
        )
    except AuthError as error:
        raise click.ClickException(error.message) from None
    session.commit()
    click.echo(
        f"Approved: {target.username}'s sessions ended and device keys revoked. "
        + (
            "The administrator who asked prints the letter on the Resets page."
            if row.resets_password
            else "They enrol a new second factor at the next sign-in."
        )
    )


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
